"""Lazy-TLB references counted in mm_count: CONFIG_MMU_LAZY_TLB_REFCOUNT=y.

Copies include/linux/sched/mm.h as aa464ba9a1e4 and 88e3009b5283 (v6.4) have
it with REFCOUNT=y: mmgrab_lazy_tlb() is mmgrab(), mmdrop_lazy_tlb() is
mmdrop(), mmdrop_lazy_tlb_sched() is mmdrop_sched().  That is what every arch
did at the lazy sites before v6.4 (plain mmgrab()/mmdrop()) and what x86, which
does not select MMU_LAZY_TLB_SHOOTDOWN, still does.  A CPU stays in an mm's
mm_cpumask() once it ran it ("x86": the model never clears it).

Two atomics on the shared mm_count per user -> kernel -> user round trip
(the cost the shootdown series removes); an mm is freed when its last lazy
user switches to another user mm, so a CPU that idles for good keeps a dead
mm pinned (safe, but memory held).

Departures: kthread_use_mm() is v6.4's (6cad87b0d216: its own mmgrab(),
mmdrop_lazy_tlb() of the old active_mm; before v6.4 a lazy reference to the
same mm was converted instead: same count, one atomic pair fewer); CPU
hotplug leaves the lazy mm in idle_task_exit() on the dead CPU, as before the
hotplug exit race fix (harmless here: the idle task holds its reference until
finish_cpu()); mmdrop_sched() does not defer to RCU (PREEMPT_RT).
"""

from . import register
from .base import LazyTlb


@register
class Refcount(LazyTlb):
    """Lazy users hold mm_count references (the interface's defaults)."""

    name = "refcount"
    copies = "88e3009b5283 (v6.4) with MMU_LAZY_TLB_REFCOUNT=y: x86, every arch before v6.4"
    # seed 004's tick hooks are no kernel function of this one (nor traced).
    NOT_KERNEL_FUNCTIONS = LazyTlb.NOT_KERNEL_FUNCTIONS + (
        "coverage_state", "mm_gen_tick", "mm_gen_wake")

    def coverage_state(self, mm):
        """What a search's coverage records of *mm* (not kernel code)."""
        return self.k.lazy_coverage_state(mm)
