"""kernel/exit.c: do_exit(), group exit, zombies and wait.

Exit status is the kernel's wait status: ``(code & 0xff) << 8`` for exit(),
the signal number for a fatal signal (only SIGKILL is modelled).
"""

from ..errors import KernelBug
from ..observe.trace import SchedProcessExitFields
from .locking import raw_spin_lock, raw_spin_unlock
from .task import (
    EXIT_DEAD, EXIT_ZOMBIE, PF_EXITING, PF_KTHREAD, TASK_DEAD, TASK_INTERRUPTIBLE,
    TASK_WAKEKILL,
)

SIGKILL = 9
ECHILD = 10
EINTR = 4


class Exit:
    """Mixin."""

    def do_exit(self, code):
        tsk = self.cur
        if self.in_irq:
            raise KernelBug("BUG: do_exit() in interrupt context")
        if tsk.flags & PF_EXITING:
            raise KernelBug(f"BUG: recursive do_exit() by {tsk!r}")
        tsk.in_do_exit = True
        self.charge(self.costs["exit_ns"])
        self.mm_cid.sched_mm_cid_exit(tsk)
        self.exit_signals(tsk)
        sig = tsk.signal
        sig.live -= 1
        group_dead = sig.live == 0
        tsk.exit_code = code
        if self.tp.sched_process_exit:
            self.tp.emit("sched_process_exit", SchedProcessExitFields((
                SchedProcessExitFields, tsk.comm, tsk.pid, tsk.prio)))
        self.exit_mm()
        self.exit_task_work(tsk)
        self.exit_notify(tsk, group_dead)
        if tsk.user is not None:
            tsk.user.exit()
        self.do_task_dead()

    def exit_signals(self, tsk):
        """The task stops taking signals; the v6.3-v6.18 mm_cid exit hook runs here."""
        self.mm_cid.sched_mm_cid_exit_signals(tsk)
        tsk.flags |= PF_EXITING

    def set_special_state(self, state):
        """include/linux/sched.h: a state a wake-up must not undo (TASK_DEAD,
        TASK_STOPPED) is set under current's pi_lock, which try_to_wake_up()
        holds from its state check to its enqueue: a wake-up already in
        flight (a SIGKILL's signal_wake_up() from a sibling's exit_group())
        finishes first, and one after it sees the new state and stops.
        Without the lock a waker paused inside ttwu re-queued a dead task
        (found by the systematic search; regression story in tests/test_mm.py)."""
        t = self.cur
        flags = self.local_irq_save()
        raw_spin_lock(t.pi_lock)
        t.state = state
        raw_spin_unlock(t.pi_lock)
        self.local_irq_restore(flags)

    def do_task_dead(self):
        t = self.cur
        # Causes final put_task_struct in finish_task_switch():
        t.preempt_count += 1                    # preempt_disable()
        self.set_special_state(TASK_DEAD)
        self._schedule(False)
        raise KernelBug(f"BUG: {t!r} ran again after do_task_dead()")

    def do_group_exit(self, exit_code):
        sig = self.cur.signal
        if sig.group_exit:
            exit_code = sig.group_exit_code
        elif sig.group_exec_task is not None:
            exit_code = 0
        else:
            sig.group_exit = True
            sig.group_exit_code = exit_code
            self.zap_other_threads(self.cur)
        self.do_exit(exit_code)

    def zap_other_threads(self, p):
        """Send SIGKILL to every other live thread of *p*'s group."""
        for t in list(p.signal.threads):     # a woken thread may exit meanwhile
            if t is p or t.exit_state or t.flags & PF_EXITING:
                continue
            t.sigkill = True
            self.signal_wake_up(t)

    def signal_wake_up(self, t):
        """Wake a sleeping task for a fatal signal; kick a running one."""
        if not self.try_to_wake_up(t, TASK_INTERRUPTIBLE | TASK_WAKEKILL):
            if t.on_cpu and self.rqs[t.cpu].curr is t and t is not self.cur:
                self.smp_send_reschedule(self.rqs[t.cpu])

    # -- the mm ------------------------------------------------------------------------------

    def mm_release(self, tsk, mm):
        """Wake a pthread_join() waiter and a vfork() parent."""
        ptid = tsk.clear_child_tid
        if ptid is not None:
            if mm.mm_users.counter > 1:
                ptid.tid_word = 0
                self.futex_wake(ptid, 1)
            tsk.clear_child_tid = None
        if tsk.vfork_done is not None:
            done, tsk.vfork_done = tsk.vfork_done, None
            self.complete(done)

    exit_mm_release = mm_release
    exec_mm_release = mm_release

    def exit_mm(self):
        tsk = self.cur
        mm = tsk.mm
        if mm is None:
            return
        self.exit_mm_release(tsk, mm)
        self.mmgrab_lazy_tlb(mm)
        if mm is not tsk.active_mm:
            raise KernelBug(f"BUG: exit_mm(): mm {mm!r} is not active_mm {tsk.active_mm!r}")
        tsk.mm = None
        self.mmput(mm)

    # -- zombies ------------------------------------------------------------------------------

    def exit_notify(self, tsk, group_dead):
        sig = tsk.signal
        tsk.exit_state = EXIT_ZOMBIE
        if not tsk.flags & PF_KTHREAD and tsk.user is not None:
            self.nr_user_tasks -= 1
        if group_dead:
            leader = tsk.group_leader
            sig.exit_status = sig.group_exit_code if sig.group_exit else leader.exit_code
            self.forget_original_parent(sig)
            parent = sig.parent
            if parent is None or parent is self.init_signal or parent.exit_status is not None:
                self.reap(sig)
            else:
                self.wake_up(parent.wait_chldexit)
        if tsk is not tsk.group_leader or (group_dead and sig.reaped):
            self.release_task(tsk)
        if sig.group_exec_task is not None and sig.live == 1:
            self.wake_up_process(sig.group_exec_task)
        if self.stop_condition():
            self.engine.stopped = True

    def forget_original_parent(self, sig):
        """Children of a dead process go to init, which reaps them at once."""
        for child in list(sig.children):
            child.parent = self.init_signal
            if child.exit_status is not None:
                self.reap(child)

    def release_task(self, p):
        if p.exit_state == EXIT_DEAD:
            return
        p.exit_state = EXIT_DEAD
        self.tasks.pop(p.pid, None)
        if p in p.signal.threads:
            p.signal.threads.remove(p)
        self.nr_threads -= 1
        if p.state == TASK_DEAD and p.stack is None:      # switched out for good already
            self.free_task(p)

    def reap(self, sig):
        """release_task() of a dead process's leader; its status is final."""
        sig.reaped = True
        if sig.parent is not None and sig in sig.parent.children:
            sig.parent.children.remove(sig)
        self.process_status[sig.tgid] = sig.exit_status
        for t in list(sig.threads):
            if t.exit_state:
                self.release_task(t)

    def kernel_wait4(self, pid):
        """waitpid(pid, &status, 0): returns (pid, status) or -errno.  pid -1
        is any child; 0 is any child in the caller's process group, which in
        this model (no setpgid) is every child."""
        me = self.cur
        sig = me.signal
        while True:
            candidates = [c for c in sig.children if pid in (-1, 0) or c.tgid == pid]
            if not candidates:
                return -ECHILD
            for child in candidates:
                if child.exit_status is not None:
                    self.reap(child)
                    return (child.tgid, child.exit_status)
            self.prepare_to_wait(sig.wait_chldexit, TASK_INTERRUPTIBLE)
            if me.sigkill:
                self.finish_wait(sig.wait_chldexit)
                return -EINTR
            self.schedule()
            self.finish_wait(sig.wait_chldexit)
