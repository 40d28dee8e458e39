"""Synthetic tasks: programs of phases the kernel runs without a host thread.

A program is a sequence of phases::

    Program(repeat(1000, run(200_000), sleep(50_000)), fork(child), comm="stress")

``run(ns)`` computes in user mode (preemptible), ``sleep(ns)`` is nanosleep,
``yield_()`` is sched_yield, ``fork(program)`` and ``thread(program)`` create a
process or a thread running *program*, ``wait()`` is ``waitpid(-1, &status, 0)``
(it reaps a child, sleeping until one has exited; ECHILD at once if there is
none; a child not waited for stays a zombie until its parent exits),
``exec_(program)`` replaces the
program, ``exit_(code)`` ends the process, ``repeat(n, *phases)`` loops,
``setaffinity(cpus)`` changes the task's own affinity and ``kill(pid, sig)``
signals a process (``kill(-1, SIGKILL)``: every other one); ``exec_("/no/such/file")``
is an execve() that fails and returns to the old program.  A program that runs
out of phases returns from main (exit(0)) or, in a thread, pthread_exit().
Each phase goes through the same system call and return-to-user paths as a
Python body, so the same hooks, tracepoints and checks see it.

What the workloads of ``python -m emulator compare`` (emulator/workloads/)
need, with C names:

- ``pthread_join()`` joins every thread the program created and has not
  joined (futex waits on each thread's CLONE_CHILD_CLEARTID word, as glibc);
  ``spin_until_started()`` is sched_yield() until each of those threads has
  started (stress-ng's spin on its ``pthread_count``);
- ``pthread_cond_wait(cond)`` sleeps (FUTEX_WAIT) until a
  ``pthread_cond_broadcast(cond)`` made after the waiting thread was created,
  the flag stress-ng's threads test (``keep_thread_running_flag``, set
  before it creates them, cleared with the broadcast); a *cond* is a
  ``pthread_cond_t()``;
- ``r = pipe()`` is a pipe made when the program is built (the kernel's
  pipe_inode_info, emulator/kernel/pipe.py); ``read(r, n)`` and
  ``write(r, n)`` move *n* bytes through it, sleeping while it is empty or
  full (no file descriptors: the program names the pipe);
- ``clock_nanosleep(interval, probe)`` is cyclictest's loop step:
  ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next)`` then
  ``next += interval``, the first *next* one interval after the phase first
  runs; back in user space it calls ``probe(cpu, irq_ns, thread_ns)`` with
  how late the timer's interrupt and the thread's return to user space were
  (the kernel time the task owes before its user code runs counted in).
"""

from .errors import KernelBug, UsageError
from .kernel.cpumask import mask_of
from .kernel.task import SCHED_FIFO, SCHED_NORMAL, SCHED_RR
from .uapi.libc import exec_main_image, pthread_t


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
        if kind == "kill":
            return f"kill({p[1]}, {p[2]})"
        if kind in _C_CALLS:
            return f"{kind}({', '.join(repr(a) for a in p[1:] if a is not None)})"
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
                "setaffinity": setaffinity, "kill": kill}

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


def kill(pid, sig):
    """kill(pid, sig): *pid* > 0, or -1 for every process but init and the
    caller's own (``kill -9 -1``, how a test script ends its loads)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or not (pid > 0 or pid == -1) or \
            isinstance(sig, bool) or not isinstance(sig, int) or not 0 <= sig <= 64:
        raise UsageError(f"kill() takes a pid > 0 or -1 and a signal 0..64, not {pid!r}, {sig!r}")
    return ("kill", pid, sig)


def repeat(n, *phases):
    for phase in phases:
        _check_phase(phase)
    return ("repeat", n, phases)


class pthread_cond_t:
    """A condition variable of synthetic programs (its futex word is ``seq``,
    the number of broadcasts so far)."""

    __slots__ = ("name", "seq")

    def __init__(self, name="cond"):
        self.name = name
        self.seq = 0

    def __repr__(self):
        return self.name


def pthread_cond_wait(cond):
    if not isinstance(cond, pthread_cond_t):
        raise UsageError(f"pthread_cond_wait() takes a pthread_cond_t, not {cond!r}")
    return ("pthread_cond_wait", cond)


def pthread_cond_broadcast(cond):
    if not isinstance(cond, pthread_cond_t):
        raise UsageError(f"pthread_cond_broadcast() takes a pthread_cond_t, not {cond!r}")
    return ("pthread_cond_broadcast", cond)


def pthread_join():
    """Join every thread this program created and has not joined yet."""
    return ("pthread_join",)


def spin_until_started():
    """sched_yield() until every thread created since the last pthread_join() runs."""
    return ("spin_until_started",)


class Pipe:
    """A pipe of synthetic programs: the kernel makes its pipe_inode_info
    when the first program uses it, on that program's machine."""

    __slots__ = ("name", "inode")

    def __init__(self, name="pipe"):
        self.name = name
        self.inode = None

    def __repr__(self):
        return self.name


def pipe(name="pipe"):
    return Pipe(name)


def read(fd, count):
    if not isinstance(fd, Pipe) or not isinstance(count, int) or count <= 0:
        raise UsageError(f"read() takes a pipe() and a positive count, not {fd!r}, {count!r}")
    return ("read", fd, count)


def write(fd, count):
    if not isinstance(fd, Pipe) or not isinstance(count, int) or count <= 0:
        raise UsageError(f"write() takes a pipe() and a positive count, not {fd!r}, {count!r}")
    return ("write", fd, count)


def clock_nanosleep(interval, probe=None):
    if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
        raise UsageError(f"clock_nanosleep() takes a positive int interval of ns, not {interval!r}")
    if probe is not None and not callable(probe):
        raise UsageError(f"clock_nanosleep()'s probe must be callable, not {probe!r}")
    return ("clock_nanosleep", interval, probe)


_C_CALLS = ("pthread_cond_wait", "pthread_cond_broadcast", "pthread_join", "spin_until_started",
            "read", "write", "clock_nanosleep")
_KINDS = ("run", "sleep", "yield", "wait", "fork", "thread", "exec", "exit", "repeat",
          "setaffinity", "kill") + _C_CALLS


def _conds_waited(phases, out):
    """The condition variables *phases* wait on (nested programs excluded)."""
    for p in phases:
        if p[0] == "pthread_cond_wait":
            out.add(p[1])
        elif p[0] == "repeat":
            _conds_waited(p[2], out)
    return out


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
        self.threads = []           # the ProgramUsers of its threads not joined yet
        self._sample = None         # (probe, expires, timer) of a clock_nanosleep() under way
        self._next = {}             # clock_nanosleep() op -> its next expiry
        # Broadcasts a waiter of each condition variable has seen: those
        # made before it was created (it is created now).
        body = program if program is not None else image
        self.cond_seen = {c: c.seq for c in _conds_waited(body.phases, set())} \
            if isinstance(body, Program) else {}

    def start(self, k, t):
        if self.image is not None:
            exec_main_image(self, k)
            return
        if self.role == "main":
            t.signal.user_nthreads = 1      # a forked child: glibc's __nptl_nthreads after fork()
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
            elif kind == "kill":
                op = ("call", k.sys_kill, (phase[1], phase[2]))
            elif kind == "repeat":
                if phase[1] <= 0:
                    continue
                op = ("repeat", phase[1], self._compile(phase[2]))
            elif kind in ("read", "write"):
                fd = phase[1]
                if fd.inode is None:
                    fd.inode = k.create_pipe(fd.name)
                op = ("call", k.sys_read if kind == "read" else k.sys_write, (fd.inode, phase[2]))
            else:
                op = phase                             # fork, thread: built when run
            if op[0] == "call" and ops and ops[-1][0] == "busy":
                ops[-1] = ("busy_call", ops[-1][1], op[1], op[2])
            else:
                ops.append(op)
        return ops

    def resume(self, reply):
        """The next request of the program."""
        if self._sample is not None:
            self._record_sample()
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
                child = ProgramUser(self.machine, op[1], "thread")
                child.pthread = pthread_t()
                child.pthread.tid_word = 1      # CLONE_CHILD_CLEARTID clears it at exit
                self.threads.append(child)
                return ("call", self.k.sys_clone_thread, (child,))
            if kind in _C_CALLS:
                request = self._c_call(op)
                if request is None:
                    continue
                if request[0] == "again":       # the same phase once the call returns
                    frame[1] = i
                    request = request[1]
                return request
            return op
        return self._end()

    def _c_call(self, op):
        """The request of a C-named phase (or ("again", request): the phase
        runs again once it returns), or None when it has nothing to do."""
        kind = op[0]
        k = self.k
        if kind == "pthread_cond_wait":
            cond = op[1]
            seen = self.cond_seen.get(cond, cond.seq)
            if cond.seq == seen:
                return ("again", ("call", k.sys_futex_wait, (cond, lambda: cond.seq == seen)))
            self.cond_seen[cond] = cond.seq
            return None
        if kind == "pthread_cond_broadcast":
            cond = op[1]
            cond.seq += 1
            return ("call", k.sys_futex_wake, (cond, 0))
        if kind == "pthread_join":
            for child in self.threads:
                pt = child.pthread
                if pt.tid_word:
                    return ("again", ("call", k.sys_futex_wait, (pt, lambda: pt.tid_word != 0)))
            self.threads.clear()
            return None
        if kind == "spin_until_started":
            for child in self.threads:
                if child._frames is None:
                    return ("again", ("call", k.sys_sched_yield, ()))
            return None
        if kind == "clock_nanosleep":
            interval = op[1]
            expires = self._next.get(id(op))
            expires = k.engine.now + interval if expires is None else expires + interval
            self._next[id(op)] = expires
            if op[2] is not None:
                self._sample = (op[2], expires)
            return ("call", k.sys_clock_nanosleep, (expires,))
        raise KernelBug(f"BUG: unknown phase {op!r}")

    def _record_sample(self):
        """cyclictest's measurement, back in user space after clock_nanosleep()."""
        (probe, expires), self._sample = self._sample, None
        t = self.task
        timer = t.sleep_timer
        irq = timer.fired - expires if timer is not None and timer.fired >= expires else 0
        probe(t.cpu, irq, self.k.engine.now + t.kdebt - expires)

    def _end(self):
        k = self.k
        sig = self.task.signal
        if self.role == "thread":
            sig.user_nthreads -= 1
            if sig.user_nthreads > 0:
                return ("call", k.sys_exit, (0,))
        return ("call", k.sys_exit_group, (0,))


__all__ = ["Program", "program_from_data", "program_to_data", "run", "sleep", "yield_", "wait", "fork", "thread", "exec_", "exit_", "repeat",
           "setaffinity", "kill", "SCHED_FIFO", "SCHED_RR", "SCHED_NORMAL",
           "pthread_cond_t", "pthread_cond_wait", "pthread_cond_broadcast", "pthread_join",
           "spin_until_started", "pipe", "read", "write", "clock_nanosleep"]
