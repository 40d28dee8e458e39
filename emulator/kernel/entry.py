"""kernel/entry/common.c: entering the kernel from user space and going back.

A task's user side is a *user context*: a host thread running a Python body
(`HostUser`) or a synthetic program (`ProgramUser`, in emulator.workload).
Either hands the kernel a request when it enters the kernel:

    ("call", fn, args)   a system call: ``fn(*args)`` runs on the task's kernel stack
    ("busy", ns)         user-mode computation for ns of CPU time (preemptible)
    ("crash", exc)       the body raised: the run fails naming the task

and gets the system call's return value back when the task returns to user.
Every return to user goes through exit_to_user_mode(), which reschedules,
delivers signals (a fatal one ends the task; a handled one pushes a frame
the user side runs, emulator.kernel.signal), runs task_work and updates
rseq, in the kernel's order (exit_to_user_mode_loop()).

A body's user-mode instructions (emulator.uapi.rseq's critical sections)
run inline on its host thread while no event is due; `user_event_due()`
tells it when one is, and it then hands the time it has used to the kernel as
a ("busy", ns) request, during which the tick, an IPI, a migration or a
signal comes at the instruction its ``regs_ip`` names.
"""

from ..errors import KernelBug, TaskCrashed
from .rseq import RSEQ_SIG

SIGKILL = 9


class Entry:
    """Mixin."""

    def user_entry(self, t):
        """First return to user space of a new user task (ret_from_fork)."""
        t.user.start(self, t)
        self.exit_to_user_mode(t)
        self.user_loop(t)

    def user_loop(self, t):
        reply = None
        cpu_run = self.cpu_run
        while True:
            request = t.user.resume(reply)
            kind = request[0]
            if kind == "call":
                t.kdebt += self.syscall_ns
                reply = request[1](*request[2])
            elif kind == "busy":
                cpu_run(request[1], True)
                reply = None
            elif kind == "busy_call":
                # a computation and the system call that follows it
                cpu_run(request[1] + self.syscall_ns, True)
                reply = None if t.sigkill else request[2](*request[3])
            elif kind == "crash":
                exc = request[1]
                raise TaskCrashed(
                    f"{t!r} raised {type(exc).__name__}: {exc} on CPU {t.cpu} "
                    f"at virtual time {self.engine.now} ns", _format_exc(exc)) from None
            else:
                raise KernelBug(f"BUG: unknown request {request!r} from {t!r}")
            if t.kdebt and t.user.is_host:
                # The body's next step comes after the kernel time it is owed.
                cpu_run(0, False)
            self.exit_to_user_mode(t)

    def exit_to_user_mode(self, t):
        """exit_to_user_mode_loop(): loop until no work is left."""
        t.relax_since = None
        while True:
            if t.need_resched:
                self.preempt_schedule()
                continue
            if t.sigkill:
                self.do_group_exit(SIGKILL)
            if t.sigpending:
                self.arch_do_signal_or_restart(t)
                continue
            if t.notify_resume:
                # resume_user_mode_work()
                t.notify_resume = False
                if t.task_works:
                    self.task_work_run()
                self.rseq_handle_notify_resume(t)
                continue
            return

    def user_event_due(self, t, ns):
        """Whether something can happen (an event is due) within the next *ns*
        of *t*'s user time, counted from now with the kernel time it owes."""
        queue = self.engine._queue
        return bool(queue) and queue[0][2] <= self.engine.now + t.kdebt + ns

    def glibc_thread_start(self, t):
        """What glibc >= 2.35 does before user code: register the thread's rseq
        area (unless GLIBC_TUNABLES=glibc.pthread.rseq=0)."""
        if self.glibc_rseq:
            ret = self.sys_rseq(t.user.tls_rseq, 32, 0, RSEQ_SIG)
            t.user.libc_rseq_registered = ret == 0


def _format_exc(exc):
    import traceback
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(lines).rstrip()
