"""kernel/signal.c and arch/x86/kernel/signal.c: sending, blocking and delivering signals.

Signals are masks with bit ``sig - 1``: ``t.blocked`` and ``t.pending`` per
thread, ``signal.shared_pending`` for signals sent to the process (kill()),
and the handler table ``signal.sighand`` (sig -> (handler, sa_mask, sa_flags);
absent is SIG_DFL), shared by the threads of a process as CLONE_SIGHAND shares
it, copied by fork() and reset by execve() (flush_signal_handlers()).

Sending follows __send_signal_locked(): an ignored signal is dropped
(prepare_signal()), a pending non-realtime one is not queued twice, and
complete_signal() picks the thread that takes it.  A signal whose default
action kills and that nothing blocks starts the group exit at once, as the
kernel's fast path does (every thread gets SIGKILL); the coredump signals
are dequeued first, by get_signal(), which "dumps" (see ``rlimit_core``) and
exits the group with the signal as the wait status, 0x80 set if a core was
written.

Delivery runs on the way back to user space, in exit_to_user_mode()
(emulator.kernel.entry), after a reschedule and before TIF_NOTIFY_RESUME's
work, as arch_do_signal_or_restart() does: get_signal() dequeues one signal,
handle_signal() lets rseq abort an interrupted critical section
(rseq_signal_deliver()), pushes a frame (the saved mask and instruction
pointer) and blocks ``sa_mask`` and the signal itself.  The user side runs
the handler, a Python callable ``handler(signo)``, when its body next has
control, and then rt_sigreturn() restores the mask and the instruction
pointer (emulator.uapi.libc).

Departures:
- TIF_SIGPENDING is ``t.sigpending``; signal_wake_up() also raises the
  model's TIF_NOTIFY_RESUME flag, through which an interrupt's return
  (irq_exit(), cpu_run()) sends a user task into exit_to_user_mode().  Its
  only other effect is one more rseq_handle_notify_resume().
- A handled signal does not interrupt a sleep or a futex wait (they are
  resumed, as with SA_RESTART, and the handler runs when the call returns),
  and it reaches a body in the middle of a computation (busy_wait()) when that
  computation ends; a critical section is aborted at the signal all the same.
- No siglock (a signal operation is not a scheduling point), no siginfo, no
  job control (the uapi refuses the stop signals and SIGCONT), no process
  groups (kill() takes a pid > 0), no real-time signal queueing (each signal is
  pending once), no ptrace.
"""

from ..observe.trace import SignalDeliverFields, SignalGenerateFields
from .locking import raw_spin_lock, raw_spin_unlock
from .task import PF_EXITING, PF_KTHREAD, TASK_INTERRUPTIBLE, TASK_WAKEKILL

SIGHUP = 1
SIGINT = 2
SIGQUIT = 3
SIGILL = 4
SIGTRAP = 5
SIGABRT = 6
SIGBUS = 7
SIGFPE = 8
SIGKILL = 9
SIGUSR1 = 10
SIGSEGV = 11
SIGUSR2 = 12
SIGPIPE = 13
SIGALRM = 14
SIGTERM = 15
SIGSTKFLT = 16
SIGCHLD = 17
SIGCONT = 18
SIGSTOP = 19
SIGTSTP = 20
SIGTTIN = 21
SIGTTOU = 22
SIGURG = 23
SIGXCPU = 24
SIGXFSZ = 25
SIGVTALRM = 26
SIGPROF = 27
SIGWINCH = 28
SIGIO = 29
SIGPWR = 30
SIGSYS = 31
SIGRTMIN = 32            # the kernel's; glibc reserves two and reports 34
_NSIG = 64

SIG_DFL = 0
SIG_IGN = 1

SIG_BLOCK = 0
SIG_UNBLOCK = 1
SIG_SETMASK = 2

SA_SIGINFO = 0x00000004
SA_ONSTACK = 0x08000000
SA_RESTART = 0x10000000
SA_NODEFER = 0x40000000
SA_RESETHAND = 0x80000000

EINVAL = 22
ESRCH = 3


def sigmask(sig):
    return 1 << (sig - 1)


def _mask(*sigs):
    m = 0
    for s in sigs:
        m |= sigmask(s)
    return m


# include/linux/signal.h
SIG_KERNEL_ONLY_MASK = _mask(SIGKILL, SIGSTOP)
SIG_KERNEL_STOP_MASK = _mask(SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU)
SIG_KERNEL_COREDUMP_MASK = _mask(SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGFPE, SIGSEGV, SIGBUS,
                                 SIGSYS, SIGXCPU, SIGXFSZ)
SIG_KERNEL_IGNORE_MASK = _mask(SIGCONT, SIGCHLD, SIGWINCH, SIGURG)
# kernel/signal.c: dequeued before the others
SYNCHRONOUS_MASK = _mask(SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGSYS)
_ALL = (1 << _NSIG) - 1


def valid_signal(sig):
    return 0 <= sig <= _NSIG


class sigframe:
    """What setup_rt_frame() saves on the user stack: the signal, its
    handler, the mask and the instruction pointer to restore."""

    __slots__ = ("signo", "handler", "saved_blocked", "saved_ip")

    def __init__(self, signo, handler, saved_blocked, saved_ip):
        self.signo = signo
        self.handler = handler
        self.saved_blocked = saved_blocked
        self.saved_ip = saved_ip

    def __repr__(self):
        return f"sigframe(sig={self.signo} ip={self.saved_ip:#x})"


class Signal:
    """Mixin."""

    # -- the handler table ---------------------------------------------------------------

    @staticmethod
    def sig_handler(t, sig):
        return t.signal.sighand.get(sig, (SIG_DFL, 0, 0))[0]

    def copy_sighand(self, clone_flags, p):
        """copy_process(): a thread shares its process's table (CLONE_SIGHAND
        comes with CLONE_THREAD); a new process gets a copy.  The blocked
        mask is inherited (the task_struct copy); nothing is pending."""
        cur = self.cur
        p.blocked = cur.blocked
        p.pending = 0
        p.sigpending = False
        if not clone_flags & 0x00010000 and cur.signal is not None:     # !CLONE_THREAD
            p.signal.sighand = dict(cur.signal.sighand)

    def flush_signal_handlers(self, t, force_default=False):
        """execve(): caught signals go back to SIG_DFL; ignored ones stay ignored."""
        table = t.signal.sighand
        for sig, (handler, _mask_, _flags) in list(table.items()):
            if force_default or handler != SIG_IGN:
                del table[sig]
            else:
                table[sig] = (SIG_IGN, 0, 0)

    def sys_rt_sigaction(self, sig, act):
        """sigaction(): *act* is (handler, sa_mask, sa_flags) or None; returns
        the old action or -EINVAL."""
        if not 1 <= sig <= _NSIG or (act is not None and sigmask(sig) & SIG_KERNEL_ONLY_MASK):
            return -EINVAL
        t = self.cur
        table = t.signal.sighand
        old = table.get(sig, (SIG_DFL, 0, 0))
        if act is not None:
            handler, mask, flags = act
            mask &= ~SIG_KERNEL_ONLY_MASK
            if handler == SIG_DFL and not mask and not flags:
                table.pop(sig, None)
            else:
                table[sig] = (handler, mask, flags)
            # POSIX 3.3.1.3: setting a signal to be ignored (or to a default
            # action that ignores it) discards it where it is pending.
            if self.sig_handler_ignored(handler, sig):
                bit = sigmask(sig)
                t.signal.shared_pending &= ~bit
                for thread in t.signal.threads:
                    thread.pending &= ~bit
        return old

    @staticmethod
    def sig_handler_ignored(handler, sig):
        return handler == SIG_IGN or (handler == SIG_DFL and sigmask(sig) & SIG_KERNEL_IGNORE_MASK)

    # -- the mask -------------------------------------------------------------------------

    def sys_rt_sigprocmask(self, how, mask):
        """Returns the old mask, or -EINVAL.  SIGKILL and SIGSTOP cannot be blocked."""
        t = self.cur
        old = t.blocked
        if mask is not None:
            mask &= ~SIG_KERNEL_ONLY_MASK
            if how == SIG_BLOCK:
                new = old | mask
            elif how == SIG_UNBLOCK:
                new = old & ~mask
            elif how == SIG_SETMASK:
                new = mask
            else:
                return -EINVAL
            self.set_current_blocked(new)
        return old

    def sys_rt_sigpending(self):
        t = self.cur
        return (t.pending | t.signal.shared_pending) & t.blocked

    def set_current_blocked(self, new):
        t = self.cur
        t.blocked = new & ~SIG_KERNEL_ONLY_MASK & _ALL
        self.recalc_sigpending(t)

    def recalc_sigpending(self, t):
        if (t.pending | t.signal.shared_pending) & ~t.blocked:
            t.sigpending = True
            t.notify_resume = True          # see the module docstring
        elif not t.sigkill:
            t.sigpending = False

    # -- sending -----------------------------------------------------------------------------

    def sys_kill(self, pid, sig):
        """kill(pid, sig) for pid > 0, or -1 (kill_something_info(): every
        process but init and the caller's own, "kill -9 -1"); process groups
        (pid 0 and below -1) are not modelled (the caller checks)."""
        if pid != -1:
            return self.do_send_specific(pid, pid, sig, group=True)
        if not valid_signal(sig):
            return -EINVAL
        cur = self.cur
        count = 0
        # read_lock(&tasklist_lock): no fork adds a process meanwhile, so a
        # parent killed here cannot leave a child that escapes (its
        # copy_process() finds the SIGKILL pending once it has the lock).
        flags = self.local_irq_save()
        raw_spin_lock(self.tasklist_lock)
        try:
            for p in list(self.tasks.values()):     # for_each_process(p)
                # A leader that has exited while its threads live still names
                # its process (for_each_process() walks the leaders).
                if p is not p.group_leader or p.pid <= 1 or p.flags & PF_KTHREAD or \
                        p.signal is cur.signal or not p.signal.live:
                    continue
                count += 1
                if sig:
                    self.send_signal_locked(sig, p, True)
        finally:
            raw_spin_unlock(self.tasklist_lock)
            self.local_irq_restore(flags)
        return 0 if count else -ESRCH

    def sys_tgkill(self, tgid, pid, sig):
        """do_tkill(): a signal to one thread of a process."""
        if pid <= 0 or tgid <= 0:
            return -EINVAL
        return self.do_send_specific(tgid, pid, sig, group=False)

    def do_send_specific(self, tgid, pid, sig, group):
        """Task *pid* of process *tgid*, if it lives; signal 0 only checks."""
        if not valid_signal(sig):
            return -EINVAL
        p = self.tasks.get(pid)
        if p is None or p.exit_state or p.flags & PF_KTHREAD or p.tgid != tgid:
            return -ESRCH
        if sig == 0:
            return 0
        return self.send_signal_locked(sig, p, group)

    def send_signal_locked(self, sig, t, group):
        """__send_signal_locked(): queue *sig* for *t* (its process if *group*)."""
        if not self.prepare_signal(sig, t):
            return 0
        bit = sigmask(sig)
        sig_struct = t.signal
        if group:
            if sig_struct.shared_pending & bit:         # legacy_queue()
                return 0
            sig_struct.shared_pending |= bit
        else:
            if t.pending & bit:
                return 0
            t.pending |= bit
        if self.tp.signal_generate:
            self.tp.emit("signal_generate", SignalGenerateFields((
                SignalGenerateFields, sig, t.comm, t.pid, int(group))))
        self.complete_signal(sig, t, group)
        return 0

    def prepare_signal(self, sig, p):
        """False if *sig* is to be dropped: the group is dying (only SIGKILL
        goes on), or the signal is ignored and not blocked (sig_ignored())."""
        if p.signal.group_exit:
            return sig == SIGKILL
        if p.blocked & sigmask(sig):
            return True
        return not self.sig_handler_ignored(self.sig_handler(p, sig), sig)

    def wants_signal(self, sig, p):
        if p.blocked & sigmask(sig):
            return False
        if p.flags & PF_EXITING or p.exit_state:
            return False
        if sig == SIGKILL:
            return True
        return self.rqs[p.cpu].curr is p or not p.sigpending

    def sig_fatal(self, p, sig):
        bit = sigmask(sig)
        return not bit & (SIG_KERNEL_IGNORE_MASK | SIG_KERNEL_STOP_MASK) and \
            self.sig_handler(p, sig) == SIG_DFL

    def complete_signal(self, sig, p, group):
        """Find a thread to take *sig* and wake it; start the group exit at
        once for a fatal signal that needs no core dump."""
        sig_struct = p.signal
        if self.wants_signal(sig, p):
            t = p
        elif not group or len(sig_struct.threads) == 1:
            return                  # the target will find it when it unblocks it
        else:
            t = next((c for c in sig_struct.threads if self.wants_signal(sig, c)), None)
            if t is None:
                return
        if self.sig_fatal(p, sig) and not sig_struct.group_exit and \
                not t.blocked & sigmask(sig) and not sigmask(sig) & SIG_KERNEL_COREDUMP_MASK:
            # Start a group exit and wake everybody up.
            sig_struct.group_exit = True
            sig_struct.group_exit_code = sig
            # (The kernel holds siglock, so no thread leaves the list meanwhile;
            # the model's wake-ups are scheduling points where one may exit.)
            for c in list(sig_struct.threads):
                if c.exit_state or c.flags & PF_EXITING:
                    continue
                c.sigkill = True
                c.sigpending = True
                self.signal_wake_up(c)
            return
        self.signal_wake_up_state(t, TASK_WAKEKILL if sig == SIGKILL else 0)

    def signal_wake_up_state(self, t, state):
        """TIF_SIGPENDING, then wake *t* from an interruptible sleep or make it
        enter the kernel if it runs on another CPU (kick_process())."""
        t.sigpending = True
        t.notify_resume = True              # see the module docstring
        if not self.try_to_wake_up(t, state | TASK_INTERRUPTIBLE):
            self.kick_process(t)

    def force_sig(self, sig, t=None):
        """force_sig_info_to_task(..., HANDLER_CURRENT): a signal the task
        caused; if it is blocked or ignored it is unblocked and its handler
        reset, so that it kills."""
        t = t or self.cur
        table = t.signal.sighand
        handler = self.sig_handler(t, sig)
        blocked = t.blocked & sigmask(sig)
        if blocked or handler == SIG_IGN:
            table.pop(sig, None)
            if blocked:
                t.blocked &= ~sigmask(sig)
        self.send_signal_locked(sig, t, group=False)

    def force_sigsegv(self, sig):
        """force_sigsegv(): SIGSEGV, fatal for certain if it came up while a
        SIGSEGV was being delivered (force_fatal_sig())."""
        t = self.cur
        if sig == SIGSEGV:
            t.signal.sighand.pop(SIGSEGV, None)
            t.blocked &= ~sigmask(SIGSEGV)
        self.force_sig(SIGSEGV, t)

    # -- delivery ------------------------------------------------------------------------------

    def dequeue_signal(self, t):
        """The next unblocked pending signal (synchronous ones first, then the
        lowest number), taken off the thread's queue or the process's; 0 if none."""
        for queue_owner, attr in ((t, "pending"), (t.signal, "shared_pending")):
            ready = getattr(queue_owner, attr) & ~t.blocked
            if ready:
                sync = ready & SYNCHRONOUS_MASK
                pick = sync or ready
                bit = pick & -pick
                setattr(queue_owner, attr, getattr(queue_owner, attr) & ~bit)
                return bit.bit_length()
        return 0

    def arch_do_signal_or_restart(self, t):
        """get_signal() then handle_signal(), for one signal; a fatal one does
        not return."""
        t.sigpending = False
        while True:
            sig = self.dequeue_signal(t)
            if not sig:
                break
            handler, mask, flags = t.signal.sighand.get(sig, (SIG_DFL, 0, 0))
            if handler == SIG_IGN:
                continue
            if handler != SIG_DFL:
                if flags & SA_RESETHAND:
                    t.signal.sighand.pop(sig, None)
                self.handle_signal(t, sig, handler, mask, flags)
                break
            bit = sigmask(sig)
            if bit & SIG_KERNEL_IGNORE_MASK:
                continue
            # Anything else is fatal, maybe with a core dump.
            code = sig
            if bit & SIG_KERNEL_COREDUMP_MASK and getattr(self, "rlimit_core", 0) > 0:
                code |= 0x80                # do_coredump(): WCOREDUMP
            if self.tp.signal_deliver:
                self.tp.emit("signal_deliver",
                             SignalDeliverFields((SignalDeliverFields, sig, 0, 0, False)))
            self.do_group_exit(code)
        self.recalc_sigpending(t)

    def handle_signal(self, t, sig, handler, mask, flags):
        """rseq first (an interrupted critical section aborts), then the frame."""
        user = t.user
        frames = getattr(user, "sigframes", None)
        if frames is None:
            # A synthetic task has no handler to run: as if its frame
            # could not be set up (signal_setup_done(failed=1)).
            self.force_sigsegv(sig)
            return
        self.rseq_signal_deliver(t, sig)
        if self.tp.signal_deliver:
            self.tp.emit("signal_deliver", SignalDeliverFields((
                SignalDeliverFields, sig, getattr(handler, "__name__", handler), flags, True)))
        frames.append(sigframe(sig, handler, t.blocked, user.regs_ip))
        user.regs_ip = 0                    # the handler's code: no critical section
        blocked = t.blocked | mask
        if not flags & SA_NODEFER:
            blocked |= sigmask(sig)
        t.blocked = blocked & ~SIG_KERNEL_ONLY_MASK

    def sys_rt_sigreturn(self, frame):
        """Back from a handler: the saved mask and instruction pointer."""
        t = self.cur
        t.user.regs_ip = frame.saved_ip
        self.set_current_blocked(frame.saved_blocked)
        return 0
