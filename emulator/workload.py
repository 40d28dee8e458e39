"""Synthetic tasks: programs of phases the kernel runs without a host thread.

A program is a sequence of phases::

    Program(repeat(1000, run(200_000), sleep(50_000)), fork(child), comm="stress")

``run(ns)`` computes in user mode (preemptible), ``sleep(ns)`` is nanosleep,
``yield_()`` is sched_yield, ``fork(program)`` and ``thread(program)`` create a
process or a thread running *program*, ``exec_(program)`` replaces the
program, ``exit_(code)`` ends the process, ``repeat(n, *phases)`` loops and
``setaffinity(cpus)`` changes the task's own affinity.  A program that runs
out of phases returns from main (exit(0)) or, in a thread, pthread_exit().
Each phase goes through the same system call and return-to-user paths as a
Python body, so the same hooks, tracepoints and checks see it.
"""

from .errors import UsageError
from .kernel.task import SCHED_FIFO, SCHED_NORMAL, SCHED_RR


class Program:
    def __init__(self, *phases, comm="synthetic", policy=SCHED_NORMAL, priority=0):
        for phase in phases:
            _check_phase(phase)
        self.phases = phases
        self.comm = comm[:15]
        self.policy = policy
        self.priority = priority

    def __repr__(self):
        return f"Program({self.comm}, {len(self.phases)} phases)"


def _check_phase(phase):
    if not (isinstance(phase, tuple) and phase and phase[0] in _KINDS):
        raise UsageError(f"not a workload phase: {phase!r}")
    if phase[0] in ("run", "sleep") and (not isinstance(phase[1], int) or phase[1] < 0):
        raise UsageError(f"{phase[0]}() takes a non-negative int of ns, not {phase[1]!r}")


def run(ns):
    return ("run", ns)


def sleep(ns):
    return ("sleep", ns)


def yield_():
    return ("yield",)


def fork(program):
    return ("fork", _program(program))


def thread(program):
    return ("thread", _program(program))


def exec_(program):
    return ("exec", _program(program))


def exit_(code=0):
    return ("exit", code)


def setaffinity(cpus):
    return ("setaffinity", frozenset(cpus))


def repeat(n, *phases):
    for phase in phases:
        _check_phase(phase)
    return ("repeat", n, phases)


_KINDS = ("run", "sleep", "yield", "fork", "thread", "exec", "exit", "repeat", "setaffinity")


def _program(p):
    if not isinstance(p, Program):
        raise UsageError(f"expected a Program, not {p!r}")
    return p


class ProgramUser:
    """The user side of a synthetic task."""

    def __init__(self, machine, program, role, image=None):
        self.machine = machine
        self.k = machine.kernel
        self.program = program
        self.role = role
        self.image = image
        self.pthread = None
        self.task = None
        self.tls_rseq = None
        self.libc_rseq_registered = False
        self._steps = None

    def start(self, k, t):
        if self.image is not None:
            image, self.image = self.image, None
            if k.do_execve(image, image.comm) < 0:
                k.do_exit(127 << 8)
            return
        self._begin(t)

    def _begin(self, t):
        k = self.k
        self.tls_rseq = k.rseq_alloc_area(t.mm)
        k.glibc_thread_start(t)
        if self.program.policy != SCHED_NORMAL:
            k.sched_setscheduler(t, self.program.policy, self.program.priority)
        self._steps = self._interpret(self.program.phases)

    def resume(self, reply):
        return self._steps.send(reply) if self._started else self._first()

    _started = False

    def _first(self):
        self._started = True
        return next(self._steps)

    def exit(self):
        pass

    @staticmethod
    def can_exec(image):
        return isinstance(image, Program)

    def exec_start(self, image):
        self.program = image
        self.role = "main"
        self._started = False
        self.task.signal.user_nthreads = 1
        self._begin(self.task)

    def _interpret(self, phases):
        k = self.k
        yield from self._phases(phases)
        sig = self.task.signal
        if self.role == "thread":
            sig.user_nthreads -= 1
            if sig.user_nthreads > 0:
                yield ("call", k.sys_exit, (0,))
        yield ("call", k.sys_exit_group, (0,))

    def _phases(self, phases):
        k = self.k
        m = self.machine
        for phase in phases:
            kind = phase[0]
            if kind == "run":
                yield ("busy", phase[1])
            elif kind == "sleep":
                yield ("call", k.sys_nanosleep, (phase[1],))
            elif kind == "yield":
                yield ("call", k.sys_sched_yield, ())
            elif kind == "repeat":
                for _ in range(phase[1]):
                    yield from self._phases(phase[2])
            elif kind == "fork":
                yield ("call", k.sys_fork, (ProgramUser(m, phase[1], "main"),))
            elif kind == "thread":
                self.task.signal.user_nthreads += 1
                yield ("call", k.sys_clone_thread, (ProgramUser(m, phase[1], "thread"),))
            elif kind == "exec":
                yield ("call", k.sys_execve, (phase[1], phase[1].comm))
            elif kind == "exit":
                yield ("call", k.sys_exit_group, (phase[1],))
            elif kind == "setaffinity":
                mask = 0
                for cpu in phase[1]:
                    mask |= 1 << cpu
                yield ("call", k.sys_sched_setaffinity, (0, mask))


__all__ = ["Program", "run", "sleep", "yield_", "fork", "thread", "exec_", "exit_", "repeat",
           "setaffinity", "SCHED_FIFO", "SCHED_RR", "SCHED_NORMAL"]
