"""emulator.uapi.libc: the libc an emulated body calls, with C names and argument order.

Python types stand in for C ones: a CPU set is a ``set[int]``, a thread is a
`pthread_t`, a sleep takes an int.  A failing system call raises ``OSError``
with the errno, as Python's ``os`` module does; ``pthread_mutex_t.trylock()``
returns 0 or EBUSY as in C.  A bad argument (a wrong type, a CPU number that
does not fit a cpu_set_t) raises `UsageError` with one line.

What runs in user space runs inline, on the body's own thread, while it holds
the baton (reading the rseq area, an uncontended mutex).  What the kernel does
is a system call: the body hands the baton to the kernel and waits.  Each call
costs ``USER_CALL_NS`` of user CPU time, charged once ``USER_CHARGE_NS`` have
accumulated, so a body polling in a loop lets virtual time pass.
"""

import errno as _errno
import os

from ..engine import current_host
from ..errors import UsageError
from ..kernel.cpumask import cpus_of

__all__ = [
    "pthread_t", "pthread_create", "pthread_join", "pthread_exit", "pthread_self",
    "pthread_equal", "pthread_setaffinity_np", "pthread_getaffinity_np", "pthread_mutex_t",
    "pthread_barrier_t", "PTHREAD_BARRIER_SERIAL_THREAD", "sched_getaffinity",
    "sched_setaffinity", "sched_getcpu", "sched_yield", "usleep", "nanosleep", "getpid",
    "gettid", "get_nprocs", "get_nprocs_conf", "exit", "fork", "vfork", "execve", "waitpid",
    "busy_wait", "CPU_SETSIZE", "EBUSY", "sched_setscheduler", "SCHED_OTHER", "SCHED_FIFO",
    "SCHED_RR",
]

CPU_SETSIZE = 1024
PTHREAD_BARRIER_SERIAL_THREAD = -1
EBUSY = _errno.EBUSY
USER_CALL_NS = 50
USER_CHARGE_NS = 10_000


# -- plumbing --------------------------------------------------------------------------

def _self():
    ctx = current_host()
    if ctx is None:
        raise UsageError("the emulator API was called outside an emulated thread")
    return ctx.owner


def _user_call():
    """An inline (user-space) call: charge its cost."""
    u = _self()
    u.debt += USER_CALL_NS
    if u.debt >= USER_CHARGE_NS:
        debt, u.debt = u.debt, 0
        _call(u, ("busy", debt))
    return u


def _call(u, request):
    """Hand *request* to the kernel; back in user space, run the handlers of
    the signals it delivered (their frames, the last one set up first), each
    followed by rt_sigreturn()."""
    reply = u.ctx.call(request)
    if u.sigframes:
        frames, u.sigframes = u.sigframes, []
        for frame in reversed(frames):
            frame.handler(frame.signo)
            _call(u, ("call", u.k.sys_rt_sigreturn, (frame,)))
    return reply


def _syscall(u, name, *args):
    return _call(u, ("call", getattr(u.k, name), args))


def _check(ret):
    if isinstance(ret, int) and ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return ret


def _int_arg(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be an int, not {type(value).__name__}")
    return value


def _cpuset(cpus):
    """A cpu_set_t from a set of ints."""
    if isinstance(cpus, (str, bytes)) or not hasattr(cpus, "__iter__"):
        raise UsageError(f"a CPU set is a set of ints, not {type(cpus).__name__}")
    mask = 0
    for cpu in cpus:
        _int_arg(cpu, "a CPU number")
        if not 0 <= cpu < CPU_SETSIZE:
            raise UsageError(f"CPU {cpu} does not fit a cpu_set_t (0..{CPU_SETSIZE - 1})")
        mask |= 1 << cpu
    return mask


# -- threads -----------------------------------------------------------------------------

class pthread_t:
    """A thread handle: equal to another exactly when both name the same thread."""

    __slots__ = ("task", "tid_word", "retval", "joined", "__weakref__")

    def __init__(self):
        self.task = None
        self.tid_word = 0       # the word CLONE_CHILD_CLEARTID clears at exit
        self.retval = None
        self.joined = False

    def __repr__(self):
        return f"pthread_t(tid={self.task.pid if self.task else '?'})"


def inherit_tls(user, t):
    """The rseq TLS of a fork() or vfork() child (*user*, of task *t*): fork()
    copies the memory and inherits the registration; vfork() borrows the
    parent's memory, TLS included (rseq_fork() clears t->rseq)."""
    ptls = user.parent.tls_rseq
    if user.vfork:
        user.tls_rseq = ptls
    else:
        user.tls_rseq = t.rseq if t.rseq is not None else ptls.copy(t.mm)
    user.libc_rseq_registered = user.parent.libc_rseq_registered


def exec_main_image(user, k):
    """The first exec of a run's main image (*user*.image), as a shell's
    execve() of the program: a failure ends the task with status 127."""
    image, user.image = user.image, None
    if k.do_execve(image, getattr(image, "comm", None) or _comm(image)) < 0:
        k.do_exit(127 << 8)


class HostUser:
    """The user side of a task whose body is Python on a host thread."""

    is_host = True

    def __init__(self, machine, fn, role, arg=None, parent=None, vfork=False, image=None):
        self.machine = machine
        self.k = machine.kernel
        self.fn = fn
        self.arg = arg
        self.role = role            # "main" returns into exit(); "thread" into pthread_exit()
        self.parent = parent        # the forking thread's HostUser (fork/vfork)
        self.vfork = vfork
        self.image = image          # the program of the first exec (machine.run)
        self.pthread = pthread_t()
        self.ctx = None
        self.task = None
        self.tls_rseq = None
        self.libc_rseq_registered = False
        self.debt = 0
        self.regs_ip = 0            # the user instruction pointer (critical sections)
        self.slice = 1              # user time to run inline before a hand-off (uapi.rseq)
        self.sigframes = []         # signal frames set up, their handlers not yet run

    # kernel side

    def start(self, k, t):
        """Runs on the new task's kernel stack before its first return to user."""
        self.pthread.task = t
        self.pthread.tid_word = t.pid
        if self.image is not None:
            exec_main_image(self, k)
            return
        if self.parent is not None:
            inherit_tls(self, t)
            t.signal.user_nthreads = 1
            t.clear_child_tid = self.pthread        # glibc's set_tid_address()
            return
        self.tls_rseq = k.rseq_alloc_area(t.mm)
        k.glibc_thread_start(t)

    def resume(self, reply):
        ctx = self.ctx
        if ctx is None:
            ctx = self.ctx = self.k.engine.new_host(f"{self.task.comm}[{self.task.pid}]",
                                                    self._body, self)
        return ctx.resume(reply)

    def exit(self):
        if self.ctx is not None:
            self.ctx.terminate()

    @staticmethod
    def can_exec(image):
        return callable(image)

    def exec_start(self, image):
        """After the point of no return: the old body is gone, *image* runs next."""
        old, self.ctx = self.ctx, None
        if old is not None:
            old.terminate()
        t = self.task
        self.fn, self.arg, self.role, self.parent, self.vfork = image, None, "main", None, False
        self.pthread = pthread_t()
        self.pthread.task = t
        self.pthread.tid_word = t.pid
        t.clear_child_tid = self.pthread            # glibc's set_tid_address()
        t.signal.user_nthreads = 1
        self.regs_ip = 0
        self.sigframes = []
        self.tls_rseq = self.k.rseq_alloc_area(t.mm)
        self.k.glibc_thread_start(t)

    # body side

    def _body(self):
        if self.role == "thread":
            pthread_exit(self.fn(self.arg))
        status = self.fn()
        if status is None:
            status = 0
        if isinstance(status, bool) or not isinstance(status, int):
            raise UsageError(f"main returned {status!r}; return an int exit status")
        exit(status)


def _comm(fn):
    return getattr(fn, "__name__", "main")[:15]


def pthread_create(start_routine, arg=None):
    """Start a thread running ``start_routine(arg)``; returns its pthread_t."""
    u = _self()
    if not callable(start_routine):
        raise UsageError("pthread_create: start_routine must be callable")
    child = HostUser(u.machine, start_routine, "thread", arg)
    sig = u.task.signal
    sig.user_nthreads += 1
    ret = _syscall(u, "sys_clone_thread", child)
    if ret < 0:
        sig.user_nthreads -= 1
        _check(ret)
    child.pthread.tid_word = ret
    return child.pthread


def pthread_join(thread):
    """Wait for *thread* to end; returns what it returned or passed to pthread_exit()."""
    u = _user_call()
    if not isinstance(thread, pthread_t):
        raise UsageError("pthread_join: not a pthread_t")
    if thread is u.pthread:
        _check(-_errno.EDEADLK)
    if thread.joined or thread.task is None:
        _check(-_errno.EINVAL)
    thread.joined = True
    while thread.tid_word != 0:
        _syscall(u, "sys_futex_wait", thread, lambda: thread.tid_word != 0)
    return thread.retval


def pthread_exit(retval=None):
    """End the calling thread; the process ends with its last thread (exit(0))."""
    u = _self()
    u.pthread.retval = retval
    sig = u.task.signal
    sig.user_nthreads -= 1
    if sig.user_nthreads == 0:
        _syscall(u, "sys_exit_group", 0)
    _syscall(u, "sys_exit", 0)


def pthread_self():
    return _user_call().pthread


def pthread_equal(t1, t2):
    return t1 is t2


def _thread_tid(thread):
    if not isinstance(thread, pthread_t):
        raise UsageError("not a pthread_t")
    t = thread.task
    if t is None or t.exit_state:
        _check(-_errno.ESRCH)
    return t.pid


def pthread_setaffinity_np(thread, cpus):
    u = _user_call()
    mask = _cpuset(cpus)
    _check(_syscall(u, "sys_sched_setaffinity", _thread_tid(thread), mask))
    return 0


def pthread_getaffinity_np(thread):
    u = _user_call()
    _thread_tid(thread)
    return set(cpus_of(thread.task.cpus_mask & u.k.active_mask))


class pthread_mutex_t:
    """A default (normal) mutex on a futex word: 0 unlocked, 1 locked, 2 contended.

    Departure from glibc's normal mutex: unlocking a mutex that is not locked
    raises EPERM (as an error-checking mutex would) instead of being undefined."""

    __slots__ = ("futex", "owner")

    def __init__(self):
        self.futex = 0
        self.owner = None

    def __repr__(self):
        return f"pthread_mutex_t(owner={self.owner!r})"

    def lock(self):
        u = _user_call()
        if self.futex == 0:
            self.futex = 1
            self.owner = u.pthread
            return 0
        # lll_lock_wait(): while (atomic_exchange(futex, 2) != 0) futex_wait(futex, 2)
        c, self.futex = self.futex, 2
        while c != 0:
            _syscall(u, "sys_futex_wait", self, lambda: self.futex == 2)
            c, self.futex = self.futex, 2
        self.owner = u.pthread
        return 0

    def trylock(self):
        u = _user_call()
        if self.futex == 0:
            self.futex = 1
            self.owner = u.pthread
            return 0
        return EBUSY

    def unlock(self):
        u = _user_call()
        if self.futex == 0:
            _check(-_errno.EPERM)
        old, self.futex, self.owner = self.futex, 0, None
        if old == 2:
            _syscall(u, "sys_futex_wake", self, 1)
        return 0

    def destroy(self):
        if self.futex:
            _check(-_errno.EBUSY)
        return 0


class pthread_barrier_t:
    """pthread_barrier_init(&b, NULL, count); ``wait()`` returns
    PTHREAD_BARRIER_SERIAL_THREAD in one thread of each round, 0 in the others."""

    __slots__ = ("count", "arrived", "round")

    def __init__(self, count):
        _int_arg(count, "barrier count")
        if count <= 0:
            _check(-_errno.EINVAL)
        self.count = count
        self.arrived = 0
        self.round = 0

    def __repr__(self):
        return f"pthread_barrier_t({self.arrived}/{self.count} arrived)"

    def wait(self):
        u = _user_call()
        self.arrived += 1
        if self.arrived == self.count:
            self.arrived = 0
            self.round += 1
            _syscall(u, "sys_futex_wake", self, 0)
            return PTHREAD_BARRIER_SERIAL_THREAD
        r = self.round
        while self.round == r:
            _syscall(u, "sys_futex_wait", self, lambda: self.round == r)
        return 0

    def destroy(self):
        if self.arrived:
            _check(-_errno.EBUSY)
        return 0


# -- scheduling ---------------------------------------------------------------------------

def sched_getaffinity(pid):
    u = _user_call()
    _int_arg(pid, "pid")
    t = u.k.find_task_by_vpid(pid)
    if t is None:
        _check(-_errno.ESRCH)
    return set(cpus_of(t.cpus_mask & u.k.active_mask))


def sched_setaffinity(pid, cpus):
    u = _user_call()
    _int_arg(pid, "pid")
    mask = _cpuset(cpus)
    _check(_syscall(u, "sys_sched_setaffinity", pid, mask))
    return 0


SCHED_OTHER, SCHED_FIFO, SCHED_RR = 0, 1, 2


def sched_setscheduler(pid, policy, priority):
    """sched_setscheduler(pid, policy, &(struct sched_param){priority})."""
    u = _user_call()
    _int_arg(pid, "pid")
    _int_arg(policy, "policy")
    _int_arg(priority, "priority")
    return _check(_syscall(u, "sys_sched_setscheduler", pid, policy, priority))


def sched_getcpu():
    return _user_call().task.cpu


def sched_yield():
    u = _self()
    _syscall(u, "sys_sched_yield")
    return 0


def usleep(usec):
    _int_arg(usec, "usec")
    return nanosleep(usec * 1000)


def nanosleep(ns):
    u = _self()
    _int_arg(ns, "ns")
    if ns < 0:
        _check(-_errno.EINVAL)
    _check(_syscall(u, "sys_nanosleep", ns))
    return 0


def busy_wait(ns):
    """Burn *ns* of virtual CPU time on the current CPU (preemptible)."""
    u = _self()
    _int_arg(ns, "ns")
    if ns < 0:
        raise UsageError("busy_wait: ns must be >= 0")
    if ns:
        _call(u, ("busy", ns))
    return 0


# -- processes ------------------------------------------------------------------------------

def getpid():
    return _user_call().task.tgid


def gettid():
    return _user_call().task.pid


def get_nprocs():
    return _user_call().k.nr_online


def get_nprocs_conf():
    return _user_call().k.nr_cpu_ids


def exit(status):
    """End the process (exit_group) with *status* & 0xff."""
    u = _self()
    _int_arg(status, "status")
    _syscall(u, "sys_exit_group", status)


def fork(child_main):
    """The child runs ``child_main()`` in a copy of the mm; returns its pid."""
    u = _self()
    if not callable(child_main):
        raise UsageError("fork: child_main must be callable")
    child = HostUser(u.machine, child_main, "main", parent=u)
    return _check(_syscall(u, "sys_fork", child))


def vfork(child_main):
    """The child borrows the mm; the parent waits until it execs or exits."""
    u = _self()
    if not callable(child_main):
        raise UsageError("vfork: child_main must be callable")
    child = HostUser(u.machine, child_main, "main", parent=u, vfork=True)
    return _check(_syscall(u, "sys_vfork", child))


def execve(new_main):
    """Replace the program by ``new_main()`` (a callable).  A string is a path
    that does not exist (ENOENT); anything else is not an executable (ENOEXEC).
    Returns only on failure, raising OSError."""
    u = _self()
    _check(_syscall(u, "sys_execve", new_main, _comm(new_main) if callable(new_main) else "exec"))


def waitpid(pid):
    """Wait for child *pid* (-1 or 0: any); returns ``(pid, wstatus)`` as os.waitpid does."""
    u = _self()
    _int_arg(pid, "pid")
    return _check(_syscall(u, "sys_wait4", pid))
