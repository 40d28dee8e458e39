"""Synthetic tasks: programs of phases the kernel runs without a host thread.

A program is a sequence of phases::

    Program(repeat(1000, run(200_000), sleep(50_000)), fork(child), comm="stress")

``run(ns)`` computes in user mode (preemptible), ``sleep(ns)`` is nanosleep,
``yield_()`` is sched_yield, ``fork(program)`` and ``thread(program)`` create a
process or a thread running *program*, ``wait()`` is ``waitpid(-1, &status, 0)``
(it reaps a child, sleeping until one has exited; ECHILD at once if there is
none; a child not waited for stays a zombie until its parent exits),
``exec_(program)`` replaces the
program, ``exit_(code)`` ends the process, ``repeat(n, *phases)`` loops and
``setaffinity(cpus)`` changes the task's own affinity; ``exec_("/no/such/file")``
is an execve() that fails and returns to the old program.  A program that runs
out of phases returns from main (exit(0)) or, in a thread, pthread_exit().
Each phase goes through the same system call and return-to-user paths as a
Python body, so the same hooks, tracepoints and checks see it.
"""

from .errors import UsageError
from .kernel.cpumask import mask_of
from .kernel.task import SCHED_FIFO, SCHED_NORMAL, SCHED_RR
from .uapi.libc import exec_main_image


class Program:
    def __init__(self, *phases, comm="synthetic", policy=SCHED_NORMAL, priority=0):
        for phase in phases:
            _check_phase(phase)
        self.phases = phases
        self.comm = comm[:15]
        self.policy = policy
        self.priority = priority

    def __repr__(self):
        return describe(self)


def describe(program, indent=0):
    """*program* as the calls that build it (what Hypothesis prints)."""
    def phase(p):
        kind = p[0]
        if kind in ("run", "sleep"):
            return f"{kind}({p[1]})"
        if kind == "yield":
            return "yield_()"
        if kind == "wait":
            return "wait()"
        if kind == "exit":
            return f"exit_({p[1]})"
        if kind == "setaffinity":
            return f"setaffinity({sorted(p[1])})"
        if kind == "repeat":
            return f"repeat({p[1]}, {', '.join(phase(q) for q in p[2])})"
        if kind == "exec" and isinstance(p[1], str):
            return f"exec_({p[1]!r})"
        return f"{'exec_' if kind == 'exec' else kind}({describe(p[1], indent + 4)})"
    pad = "\n" + " " * (indent + 4)
    phases = [phase(p) for p in program.phases] + [f"comm={program.comm!r}"]
    if program.policy != SCHED_NORMAL:
        phases += [f"policy={program.policy}", f"priority={program.priority}"]
    return f"Program({pad}" + ("," + pad).join(phases) + ")"


def program_to_data(program):
    """*program* as plain data (lists, numbers, strings) for a replay key."""
    def phase(p):
        kind = p[0]
        if kind in ("fork", "thread") or (kind == "exec" and not isinstance(p[1], str)):
            return [kind, program_to_data(p[1])]
        if kind == "setaffinity":
            return [kind, sorted(p[1])]
        if kind == "repeat":
            return [kind, p[1], [phase(q) for q in p[2]]]
        return list(p)
    return {"comm": program.comm, "policy": program.policy, "priority": program.priority,
            "phases": [phase(p) for p in program.phases]}


def program_from_data(data):
    """The Program that :func:`program_to_data` gave *data* for; anything else
    is a UsageError."""
    builders = {"run": run, "sleep": sleep, "yield": yield_, "wait": wait, "exit": exit_,
                "setaffinity": setaffinity}

    def phase(p):
        kind, args = p[0], p[1:]
        if kind in ("fork", "thread", "exec") and args and isinstance(args[0], dict):
            return {"fork": fork, "thread": thread, "exec": exec_}[kind](program_from_data(args[0]))
        if kind == "exec":
            return exec_(*args)
        if kind == "repeat":
            return repeat(args[0], *[phase(q) for q in args[1]])
        return builders[kind](*args)
    try:
        return Program(*[phase(p) for p in data["phases"]], comm=data["comm"],
                       policy=data["policy"], priority=data["priority"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UsageError(f"not a workload program: {type(exc).__name__}: {exc}") from None

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


def wait():
    """waitpid(-1, &status, 0): reap one child (any), or ECHILD if there is none."""
    return ("wait",)


def thread(program):
    return ("thread", _program(program))


def exec_(program):
    """execve() of *program*, or of a path (a str) that does not exist: that exec
    fails with ENOENT and the task goes on with its old program and mm."""
    if isinstance(program, str):
        return ("exec", program)
    return ("exec", _program(program))


def exit_(code=0):
    return ("exit", code)


def setaffinity(cpus):
    return ("setaffinity", frozenset(cpus))


def repeat(n, *phases):
    for phase in phases:
        _check_phase(phase)
    return ("repeat", n, phases)


_KINDS = ("run", "sleep", "yield", "wait", "fork", "thread", "exec", "exit", "repeat", "setaffinity")


def _program(p):
    if not isinstance(p, Program):
        raise UsageError(f"expected a Program, not {p!r}")
    return p


class ProgramUser:
    """The user side of a synthetic task."""

    is_host = False

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
        self._frames = None

    def start(self, k, t):
        if self.image is not None:
            exec_main_image(self, k)
            return
        self._begin(t)

    def _begin(self, t):
        k = self.k
        self.tls_rseq = k.rseq_alloc_area(t.mm)
        k.glibc_thread_start(t)
        if self.program.policy != SCHED_NORMAL:
            k.sched_setscheduler(t, self.program.policy, self.program.priority)
        # The program counter: a stack of [ops, index, loops left].
        self._frames = [[self._compile(self.program.phases), 0, 1]]

    def exit(self):
        pass

    @staticmethod
    def can_exec(image):
        return isinstance(image, Program)

    def exec_start(self, image):
        self.program = image
        self.role = "main"
        self.task.signal.user_nthreads = 1
        self._begin(self.task)

    def _compile(self, phases):
        """Turn *phases* into a list of ops: a ready request, a nested
        ``("repeat", n, ops)``, or a phase that builds its request when it runs
        (fork, thread).  A computation followed by a system call is one
        request, ``busy_call``: nothing observable happens between the two."""
        k = self.k
        ops = []
        for phase in phases:
            kind = phase[0]
            if kind == "run":
                op = ("busy", phase[1])
            elif kind == "sleep":
                op = ("call", k.sys_nanosleep, (phase[1],))
            elif kind == "yield":
                op = ("call", k.sys_sched_yield, ())
            elif kind == "wait":
                op = ("call", k.sys_wait4, (-1,))
            elif kind == "exec":
                image = phase[1]
                op = ("call", k.sys_execve, (image, image if isinstance(image, str) else image.comm))
            elif kind == "exit":
                op = ("call", k.sys_exit_group, (phase[1],))
            elif kind == "setaffinity":
                op = ("call", k.sys_sched_setaffinity, (0, mask_of(phase[1])))
            elif kind == "repeat":
                if phase[1] <= 0:
                    continue
                op = ("repeat", phase[1], self._compile(phase[2]))
            else:
                op = phase                             # fork, thread: built when run
            if op[0] == "call" and ops and ops[-1][0] == "busy":
                ops[-1] = ("busy_call", ops[-1][1], op[1], op[2])
            else:
                ops.append(op)
        return ops

    def resume(self, reply):
        """The next request of the program."""
        frames = self._frames
        while frames:
            frame = frames[-1]
            ops, i = frame[0], frame[1]
            if i == len(ops):
                frame[2] -= 1
                if frame[2] > 0 and ops:
                    frame[1] = 0
                else:
                    frames.pop()
                continue
            frame[1] = i + 1
            op = ops[i]
            kind = op[0]
            if kind == "repeat":
                frames.append([op[2], 0, op[1]])
                continue
            if kind == "fork":
                return ("call", self.k.sys_fork, (ProgramUser(self.machine, op[1], "main"),))
            if kind == "thread":
                self.task.signal.user_nthreads += 1
                return ("call", self.k.sys_clone_thread,
                        (ProgramUser(self.machine, op[1], "thread"),))
            return op
        return self._end()

    def _end(self):
        k = self.k
        sig = self.task.signal
        if self.role == "thread":
            sig.user_nthreads -= 1
            if sig.user_nthreads > 0:
                return ("call", k.sys_exit, (0,))
        return ("call", k.sys_exit_group, (0,))


__all__ = ["Program", "program_from_data", "program_to_data", "run", "sleep", "yield_", "wait", "fork", "thread", "exec_", "exit_", "repeat",
           "setaffinity", "SCHED_FIFO", "SCHED_RR", "SCHED_NORMAL"]
