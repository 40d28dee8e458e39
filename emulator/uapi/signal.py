"""emulator.uapi.signal: <signal.h>, with C names and argument order.

A handler is a Python callable ``handler(signo)`` (or SIG_DFL, SIG_IGN); a
signal set is a ``set[int]``.  Where C fills an output argument (``oldact``,
``oldset``), pass an object to fill (a `struct_sigaction`, a ``set``) or
None.  Failing calls raise ``OSError`` as the rest of the emulated libc does,
except the pthread functions, which return the error number as in C.
``raise()`` is `raise_` (``raise`` is a Python keyword).

A handler runs on the thread the kernel delivered the signal to, when the
kernel returns to its user space (emulator.kernel.signal says when); it may
call the emulated libc, and other signals may nest in it.
"""

import errno as _errno

from ..errors import UsageError
from ..kernel.signal import (  # noqa: F401  (re-exported: <signal.h>)
    SA_NODEFER, SA_ONSTACK, SA_RESETHAND, SA_RESTART, SA_SIGINFO, SIG_BLOCK, SIG_DFL, SIG_IGN,
    SIG_SETMASK, SIG_UNBLOCK, SIGABRT, SIGALRM, SIGBUS, SIGCHLD, SIGCONT, SIGFPE, SIGHUP,
    SIGILL, SIGINT, SIGIO, SIGKILL, SIGPIPE, SIGPROF, SIGPWR, SIGQUIT, SIGSEGV, SIGSTKFLT,
    SIGSTOP, SIGSYS, SIGTERM, SIGTRAP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGUSR1, SIGUSR2,
    SIGVTALRM, SIGWINCH, SIGXCPU, SIGXFSZ,
)
from .libc import _check, _int_arg, _self, _syscall, pthread_t

__all__ = [
    "struct_sigaction", "sigaction", "signal", "kill", "tgkill", "raise_", "pthread_kill",
    "sigprocmask", "pthread_sigmask", "sigpending", "sigemptyset", "sigfillset", "abort",
    "SIG_DFL", "SIG_IGN", "SIG_BLOCK", "SIG_UNBLOCK", "SIG_SETMASK", "SA_NODEFER", "SA_ONSTACK",
    "SA_RESETHAND", "SA_RESTART", "SA_SIGINFO", "SIGRTMIN", "SIGRTMAX", "NSIG",
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
    "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD",
    "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ",
    "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
]

SIGRTMIN = 34           # glibc's: the kernel's 32, less the two NPTL keeps
SIGRTMAX = 64
NSIG = 65


class struct_sigaction:
    __slots__ = ("sa_handler", "sa_mask", "sa_flags")

    def __init__(self, sa_handler=SIG_DFL, sa_mask=(), sa_flags=0):
        self.sa_handler = sa_handler
        self.sa_mask = set(sa_mask)
        self.sa_flags = sa_flags

    def __repr__(self):
        h = {SIG_DFL: "SIG_DFL", SIG_IGN: "SIG_IGN"}.get(self.sa_handler) \
            if isinstance(self.sa_handler, int) else getattr(self.sa_handler, "__name__", "?")
        return f"struct_sigaction({h}, mask={sorted(self.sa_mask)}, flags={self.sa_flags:#x})"


def _sig_arg(sig):
    _int_arg(sig, "a signal number")
    if sig in (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT):
        raise UsageError(f"signal {sig}: job control is not modelled")
    return sig


def _to_mask(sigs):
    if sigs is None:
        return None
    mask = 0
    for s in sigs:
        _sig_arg(s)
        if not 1 <= s <= 64:
            _check(-_errno.EINVAL)
        mask |= 1 << (s - 1)
    return mask


def _to_set(mask):
    return {bit + 1 for bit in range(64) if mask >> bit & 1}


def _fill(out, mask):
    if out is not None:
        out.clear()
        out.update(_to_set(mask))


def sigemptyset(sigset):
    sigset.clear()
    return 0


def sigfillset(sigset):
    sigset.clear()
    sigset.update(range(1, 65))
    return 0


def sigaction(signum, act, oldact=None):
    """Install *act* (a struct_sigaction, or None to only query) for *signum*."""
    u = _self()
    _sig_arg(signum)
    if act is not None:
        handler = act.sa_handler
        if not (handler in (SIG_DFL, SIG_IGN) or callable(handler)):
            raise UsageError("sa_handler must be SIG_DFL, SIG_IGN or a callable(signo)")
        kact = (handler, _to_mask(act.sa_mask), act.sa_flags)
    else:
        kact = None
    old = _check(_syscall(u, "sys_rt_sigaction", signum, kact))
    if oldact is not None:
        oldact.sa_handler, oldact.sa_flags = old[0], old[2]
        oldact.sa_mask = _to_set(old[1])
    return 0


def signal(signum, handler):
    """glibc's signal(): BSD semantics (SA_RESTART); returns the old handler."""
    old = struct_sigaction()
    sigaction(signum, struct_sigaction(handler, (), SA_RESTART), old)
    return old.sa_handler


def kill(pid, sig):
    u = _self()
    _int_arg(pid, "pid")
    _sig_arg(sig)
    if pid <= 0:
        raise UsageError("kill(): process groups are not modelled; give a pid > 0")
    return _check(_syscall(u, "sys_kill", pid, sig))


def tgkill(tgid, tid, sig):
    u = _self()
    _int_arg(tgid, "tgid")
    _int_arg(tid, "tid")
    _sig_arg(sig)
    return _check(_syscall(u, "sys_tgkill", tgid, tid, sig))


def raise_(sig):
    """C raise(): the signal to the calling thread; delivered before it returns."""
    u = _self()
    _sig_arg(sig)
    t = u.task
    return _check(_syscall(u, "sys_tgkill", t.tgid, t.pid, sig))


def pthread_kill(thread, sig):
    """Returns 0, ESRCH or EINVAL (an error number, as pthread functions do)."""
    u = _self()
    if not isinstance(thread, pthread_t):
        raise UsageError("pthread_kill: not a pthread_t")
    _sig_arg(sig)
    t = thread.task
    if t is None or t.exit_state or thread.tid_word == 0:
        return _errno.ESRCH
    ret = _syscall(u, "sys_tgkill", t.tgid, t.pid, sig)
    return -ret if ret < 0 else 0


def sigprocmask(how, sigset, oldset=None):
    u = _self()
    _int_arg(how, "how")
    old = _check(_syscall(u, "sys_rt_sigprocmask", how, _to_mask(sigset)))
    _fill(oldset, old)
    return 0


def pthread_sigmask(how, sigset, oldset=None):
    try:
        return sigprocmask(how, sigset, oldset)
    except OSError as exc:
        return exc.errno


def sigpending(sigset):
    u = _self()
    _fill(sigset, _syscall(u, "sys_rt_sigpending"))
    return 0


def abort():
    """<stdlib.h> abort(): SIGABRT, unblocked and, if it returns, with SIG_DFL.
    Does not return."""
    u = _self()
    t = u.task
    sigprocmask(SIG_UNBLOCK, {SIGABRT})
    _syscall(u, "sys_tgkill", t.tgid, t.pid, SIGABRT)
    sigaction(SIGABRT, struct_sigaction(SIG_DFL))
    _syscall(u, "sys_tgkill", t.tgid, t.pid, SIGABRT)
    raise UsageError("abort() returned")            # not reached: SIGABRT kills
