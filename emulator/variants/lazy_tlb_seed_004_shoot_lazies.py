"""Seed 004's subject: Nicholas Piggin's "lazy tlb: shoot lazies, a
non-refcounting lazy tlb option" (v1 6/8, 2020-11-29, lore
20201128160141.1003903-7-npiggin@gmail.com), as posted.

From the posting (../shared/reference/pcp_and_lazytlb.md B.3): under
MMU_LAZY_TLB_SHOOTDOWN the _lazy_tlb helpers do no atomics; __mmdrop() calls
shoot_lazy_tlbs() first, on_each_cpu_mask(mm_cpumask(mm), do_shoot_lazy_tlb,
mm, 1); do_shoot_lazy_tlb() switches a CPU whose current->active_mm is mm to
init_mm and calls the arch's exit_lazy_tlb(); with CONFIG_DEBUG_VM it then
checks every CPU (on_each_cpu(do_check_lazy_tlb)).  powerpc 64s enabled it
later in the series.

Where it differs from shootdown-v6.4 in the model: the name of the cleanup,
the exit_lazy_tlb() hook (a no-op here, as the arches' were), and no radix
piggyback (e43c0a0c3c28 came with v6 of the series), so every CPU still in
the mask is IPIed at the final mmdrop.  Not confirmed from the v1 text:
whether its mmdrop_lazy_tlb() was already a smp_mb() (v6.4's is; barriers are
scheduling points only in this model either way) and what v1 did to
kthread_use_mm() (the model runs v6.4's).  It inherits v6.4's hotplug exit
race (the switch in idle_task_exit()) and that finding.
"""

from . import register
from .lazy_tlb_shootdown_v6_4 import ShootdownV64


@register
class ShootLaziesV1(ShootdownV64):
    name = "seed-004-shoot-lazies"
    copies = "Piggin, lazy tlb: shoot lazies, v1 6/8, 2020-11-29 (seed 004's subject)"
    exit_flush_piggyback = False

    def exit_lazy_tlb(self, mm, tsk):
        pass

    def do_shoot_lazy_tlb(self, mm):
        k = self.k
        cur = k.cur
        was = cur.active_mm is mm
        super().do_shoot_lazy_tlb(mm)
        if was:
            self.exit_lazy_tlb(mm, cur)

    def shoot_lazy_tlbs(self, mm):
        return super().cleanup_lazy_tlbs(mm)

    def cleanup_lazy_tlbs(self, mm):
        # v1's __mmdrop() calls shoot_lazy_tlbs() (the later name is the
        # interface's call site).
        return self.shoot_lazy_tlbs(mm)
