"""kernel/kthread.c: a kernel thread adopting a user mm (kthread_use_mm()).

As since v6.4 (6cad87b0d216 "kthread: simplify kthread_use_mm refcounting"):
kthread_use_mm() always takes an mm_count reference of its own (mmgrab())
and drops the lazy one of the active_mm it leaves (mmdrop_lazy_tlb()), even
when that is the same mm, "because these references are not equivalent";
kthread_unuse_mm() turns the mm into the thread's lazy mm
(mmgrab_lazy_tlb()) and drops its own reference.  Before v6.4 a kthread
whose active_mm was already the mm converted the lazy reference into the use
reference; the lazy_tlb variants all run with the v6.4 form, which is the
only one a non-refcounting (shootdown) variant can use.

The callers (vhost, io_uring's SQPOLL thread, USB gadget AIO) hold an
mm_users reference (mmget_not_zero()) across the use.
"""

from ..errors import KernelBug
from .task import PF_KTHREAD


class Kthread:
    """Mixin."""

    def kthread_use_mm(self, mm):
        tsk = self.cur
        if not tsk.flags & PF_KTHREAD or tsk.mm is not None:
            raise KernelBug(f"WARNING: kthread_use_mm() by {tsk!r} (mm {tsk.mm!r})")
        # It is possible for mm to be the same as tsk->active_mm, but we must
        # still mmgrab(mm) and mmdrop_lazy_tlb(active_mm), because these
        # references are not equivalent.
        self.mmgrab(mm)
        # Hold off tlb flush IPIs while switching mm's
        flags = self.local_irq_save()
        active_mm = tsk.active_mm
        tsk.active_mm = mm
        tsk.mm = mm
        self.switch_mm_irqs_off(active_mm, mm, tsk)
        self.local_irq_restore(flags)
        # A full memory barrier for membarrier {PRIVATE,GLOBAL}_EXPEDITED is
        # implicitly provided by mmdrop_lazy_tlb().
        self.mmdrop_lazy_tlb(active_mm)

    def kthread_unuse_mm(self, mm):
        tsk = self.cur
        if not tsk.flags & PF_KTHREAD or tsk.mm is None:
            raise KernelBug(f"WARNING: kthread_unuse_mm() by {tsk!r} without an mm")
        flags = self.local_irq_save()
        tsk.mm = None
        self.mmgrab_lazy_tlb(mm)
        # active_mm is still 'mm'
        self.lazy_tlb.enter_lazy_tlb(mm, tsk)
        self.local_irq_restore(flags)
        self.mmdrop(mm)
