"""fs/exec.c: execve() with the mm_cid hooks where v6.3 has them.

The order is v6.3's: alloc_bprm() allocates the new mm; bprm_execve() calls
sched_mm_cid_before_execve() before opening the file, and
sched_mm_cid_after_execve() on success (before rseq_execve()) and on failure;
a failing exec keeps the old mm and frees the new one (free_bprm()).

The "file" is the new program: a callable runs as the new image's main; a
string is a path that does not exist (ENOENT); anything else is a file with no
binary handler (ENOEXEC).
"""

from ..observe.trace import SchedProcessExecFields
from .task import TASK_KILLABLE

ENOENT = 2
ENOEXEC = 8
EAGAIN = 11


class Exec:
    """Mixin."""

    def do_execve(self, image, comm):
        """Replace the current program by *image*; returns 0 or -errno."""
        self.charge(self.costs["exec_ns"])
        bprm_mm = self.mm_alloc()                   # alloc_bprm() -> bprm_mm_init()
        retval = self.bprm_execve(image, bprm_mm, comm)
        if retval < 0:
            self.mmput(bprm_mm)                     # free_bprm()
        return retval

    def bprm_execve(self, image, bprm_mm, comm):
        me = self.cur
        me.in_execve = True                         # current->in_execve = 1
        retval = self._bprm_execve(me, image, bprm_mm, comm)
        me.in_execve = False
        return retval

    def _bprm_execve(self, me, image, bprm_mm, comm):
        old_pid = me.pid                            # exec_binprm(): before de_thread() changes it
        self.mm_cid.sched_mm_cid_before_execve(me)
        if isinstance(image, str):
            retval = -ENOENT                        # do_open_execat()
        elif not me.user.can_exec(image):
            retval = -ENOEXEC                       # search_binary_handler()
        else:
            retval = self.begin_new_exec(image, bprm_mm, comm)
        if retval < 0:
            self.mm_cid.sched_mm_cid_after_execve(me)
            # rseq_force_update() (v6.19+; before, sched_mm_cid_after_execve()
            # itself called rseq_set_notify_resume()): the ids are rewritten
            # on the way back to the old program.
            self.rseq_set_notify_resume(me)
            return retval
        self.mm_cid.sched_mm_cid_after_execve(me)
        if self.invariants is not None:
            self.invariants.index(me.cpu, me)
        self.rseq_execve(me)
        if self.tp.sched_process_exec:
            self.tp.emit("sched_process_exec", SchedProcessExecFields((
                SchedProcessExecFields, comm, me.pid, old_pid)))
        me.user.exec_start(image)
        return 0

    def begin_new_exec(self, image, bprm_mm, comm):
        """The point of no return: other threads die, the new mm goes in."""
        me = self.cur
        ret = self.de_thread(me)
        if ret < 0:
            return ret
        self.exec_mmap(bprm_mm)
        self.flush_signal_handlers(me)              # caught signals back to SIG_DFL
        me.comm = comm
        return 0

    def de_thread(self, tsk):
        sig = tsk.signal
        if sig.live > 1:
            if sig.group_exit or sig.group_exec_task is not None:
                # Another group action in progress, just
                # return so that the signal is processed.
                return -EAGAIN
            sig.group_exec_task = tsk
            self.zap_other_threads(tsk)
            while sig.live > 1:
                tsk.state = TASK_KILLABLE
                tsk.wait_reason = "de_thread"
                if tsk.sigkill:                     # killed:
                    tsk.state = 0
                    sig.group_exec_task = None
                    return -EAGAIN
                self.schedule()
            tsk.state = 0
            sig.group_exec_task = None
        leader = tsk.group_leader
        if leader is not tsk:
            # exchange_tids(): the exec'ing thread takes the leader's pid.
            old_pid = tsk.pid
            self.release_task(leader)
            self.tasks.pop(old_pid, None)
            tsk.pid = leader.pid
            self.tasks[tsk.pid] = tsk
            leader.pid = old_pid
            for t in sig.threads:
                t.group_leader = tsk
            tsk.group_leader = tsk
            sig.threads.remove(tsk)
            sig.threads.insert(0, tsk)
        return 0

    def exec_mmap(self, mm):
        tsk = self.cur
        old_mm = tsk.mm
        self.exec_mm_release(tsk, old_mm)
        active_mm = tsk.active_mm
        tsk.active_mm = mm
        tsk.mm = mm
        self.mm_cid.exec_mmap(mm)
        self.switch_mm_irqs_off(active_mm, mm, tsk)    # activate_mm()
        if old_mm is not None:
            self.mmput(old_mm)
            return 0
        self.mmdrop_lazy_tlb(active_mm)
        return 0
