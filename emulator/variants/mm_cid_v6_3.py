"""v6.3: af7f588d8f73 "sched: Introduce per-memory-map concurrency ID".

Copies the merged commit (mm_cid.md 3.1): a task holds a concurrency id only
while it runs, allocated as the first zero bit of the per-mm ``mm_cidmask``
under ``mm->cid_lock`` at schedule-in and released at schedule-out, except on
a switch between two threads of one mm, which hands the id over without
touching the mask.

Departure: v6.3 calls switch_mm_cid(prev, next) from prepare_task_switch()
right after rseq_preempt(prev), before the mm switch; the model's single call
site is context_switch() after the mm switch (the v6.4 position).  The v6.3
code touches neither active_mm nor barriers, so the order does not change it.
"""

from ..kernel.cpumask import Cpumask, cpumask_first_zero
from ..kernel.locking import (
    _cpumask_clear_cpu, _cpumask_set_cpu, raw_spin_lock, raw_spin_unlock, raw_spinlock_t,
)
from ..errors import KernelBug
from ..observe.cid_watch import tracing_cids, watch_task_field
from . import register
from .base import SchedMmCid


@register
class MmCidV6_3(SchedMmCid):
    name = "v6.3"
    copies = "af7f588d8f73 sched: Introduce per-memory-map concurrency ID (v6.3)"

    def init_task_fields(self, t):
        # dup_task_struct()
        t.mm_cid = -1
        t.mm_cid_active = 0
        self.watch_task_cid(t)          # not kernel code: the mm_cid tracepoints

    def mm_init_cid(self, mm, p):
        mm.cid_lock = raw_spinlock_t(f"{mm!r}->cid_lock")
        mm.cidmask = Cpumask()          # mm_cidmask(mm)
        self.watch_cids(mm)             # not kernel code: the mm_cid tracepoints

    def exec_mmap(self, mm):
        self.mm_init_cid(mm, None)

    @staticmethod
    def mm_cidmask(mm):
        return mm.cidmask

    def _mm_cid_get(self, mm):
        """__mm_cid_get(): first zero bit; the caller holds mm->cid_lock."""
        cpumask = self.mm_cidmask(mm)
        cid = cpumask_first_zero(cpumask.bits)
        if cid >= self.k.nr_cpu_ids:
            return -1
        _cpumask_set_cpu(cid, cpumask)
        return cid

    def mm_cid_get(self, mm):
        self.k.lockdep_assert_irqs_disabled()
        raw_spin_lock(mm.cid_lock)
        ret = self._mm_cid_get(mm)
        raw_spin_unlock(mm.cid_lock)
        return ret

    def mm_cid_put(self, mm, cid):
        self.k.lockdep_assert_irqs_disabled()
        if cid < 0:
            return
        raw_spin_lock(mm.cid_lock)
        _cpumask_clear_cpu(cid, self.mm_cidmask(mm))
        raw_spin_unlock(mm.cid_lock)

    def switch_mm_cid(self, rq, prev, next):
        if prev.mm_cid_active:
            if next.mm_cid_active and next.mm is prev.mm:
                # Context switch between threads in same mm, hand over
                # the mm_cid from prev to next.
                next.mm_cid = prev.mm_cid
                prev.mm_cid = -1
                return
            self.mm_cid_put(prev.mm, prev.mm_cid)
            prev.mm_cid = -1
        if next.mm_cid_active:
            next.mm_cid = self.mm_cid_get(next.mm)

    def sched_mm_cid_fork(self, t):
        if t.flags & 0x00200000 or t.mm is None or t.mm_cid != -1:   # PF_KTHREAD
            raise KernelBug(f"WARNING: sched_mm_cid_fork({t!r}): kthread, no mm or cid set")
        t.mm_cid_active = 1

    def sched_mm_cid_exit_signals(self, t):
        mm = t.mm
        if mm is None:
            return
        flags = self.k.local_irq_save()
        self.mm_cid_put(mm, t.mm_cid)
        t.mm_cid = -1
        t.mm_cid_active = 0
        self.k.local_irq_restore(flags)

    def sched_mm_cid_before_execve(self, t):
        mm = t.mm
        if mm is None:
            return
        flags = self.k.local_irq_save()
        self.mm_cid_put(mm, t.mm_cid)
        t.mm_cid = -1
        t.mm_cid_active = 0
        self.k.local_irq_restore(flags)

    def sched_mm_cid_after_execve(self, t):
        mm = t.mm
        if mm is None:
            return
        flags = self.k.local_irq_save()
        t.mm_cid = self.mm_cid_get(mm)
        t.mm_cid_active = 1
        self.k.local_irq_restore(flags)
        self.k.rseq_set_notify_resume(t)

    def task_mm_cid(self, t):
        return t.mm_cid

    def cid_active(self, t):
        return t.mm_cid_active and t.mm_cid >= 0

    # A v6.3 cid is owned by the task holding it.
    keeps_cid_bitmap = True

    def task_cid_value(self, t):
        return t.mm_cid

    def owned_cid(self, kind, value):
        return value if kind == "task" and value >= 0 else -1

    def watch_task_cid(self, t):
        if tracing_cids(self.k):
            watch_task_field(t, "mm_cid")

    def cidmask_bits(self, mm):
        return mm.cidmask.bits

    def cpu_state(self, rq):
        curr = rq.curr
        if curr.mm is None:
            return ""
        return f"mm_cid={curr.mm_cid} cidmask={self.mm_cidmask(curr.mm)!r}"
