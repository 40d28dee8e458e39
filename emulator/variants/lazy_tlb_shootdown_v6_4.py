"""Lazy-TLB mm shootdown, as merged: MMU_LAZY_TLB_SHOOTDOWN (v6.4).

Copies 2655421ae69f "lazy tlb: shoot lazies, non-refcounting lazy tlb mm
reference handling scheme" (kernel/fork.c, include/linux/sched/mm.h) with
DEBUG_VM_SHOOT_LAZIES, on powerpc 64s radix, the only arch that selects it
(77f68ebeee20):

    mmgrab_lazy_tlb()        nothing
    mmdrop_lazy_tlb(_sched)  smp_mb() (membarrier relies on the barrier)
    cleanup_lazy_tlbs(mm)    first in __mmdrop(): on_each_cpu_mask(
                             mm_cpumask(mm), do_shoot_lazy_tlb, mm, 1), then
                             (DEBUG_VM_SHOOT_LAZIES) on_each_cpu(
                             do_check_lazy_tlb, mm, 1)
    do_shoot_lazy_tlb(mm)    a CPU whose current uses mm lazily switches it to
                             init_mm (WARN if current->mm)

and the radix piggyback, e43c0a0c3c28 "powerpc/64s/radix: combine final TLB
flush and lazy tlb mm shootdown IPIs" (the commit named by a later Fixes:
tag; its release not confirmed): exit_mmap()'s final flush IPIs
mm_cpumask(mm) (smp_call_function_many(), this CPU excluded) with
do_exit_flush_lazy_tlb(), which moves a lazy user to init_mm and clears the
CPU from the mask (exit_lazy_flush_tlb()), so cleanup_lazy_tlbs() often IPIs
only its own CPU.  On this arch __cpu_disable() clears a CPU going offline
from every mm_cpumask() (cleanup_cpu_mmu_context()).

Known to fail: CPU hotplug leaves the lazy mm in idle_task_exit(), after
__cpu_disable() has taken the CPU out of cpu_online_mask and (radix) out of
every mask; an mm whose last reference goes in that window is freed while
the outgoing CPU still has it loaded, a use after free ("lazy tlb: fix
hotplug exit race with MMU_LAZY_TLB_SHOOTDOWN", Piggin and Herton, linux-next
a08311b423ad, moves the switch to sched_cpu_wait_empty(); mainline release
not confirmed).  P9 reports it when the shootdown starts without the
outgoing CPU (P6, at the free, if P9 is off; tests/test_lazy_tlb.py).

Departures: the TLB flushes themselves are not modelled (only the lazy
switches and mask trimming they carry); mm->context.active_cpus and the
copro checks are left out; the IPIs are kernel/membarrier.py's
smp_call_function_many().
"""

from ..checks.invariants import InvariantViolation
from ..errors import KernelBug
from ..kernel.locking import smp_mb
from . import register
from .base import Finding, LazyTlb

HOTPLUG_RACE = "lazy mm in use on a CPU past __cpu_disable()"


@register
class ShootdownV64(LazyTlb):
    """Lazy users hold no reference; __mmdrop() shoots them down by IPI."""

    name = "shootdown-v6.4"
    copies = "2655421ae69f (v6.4) + DEBUG_VM_SHOOT_LAZIES, powerpc radix (77f68ebeee20, e43c0a0c3c28)"
    arch = "powerpc-radix"
    refcounts_lazy = False
    shoots_lazies = True
    debug_vm_shoot_lazies = True      # CONFIG_DEBUG_VM_SHOOT_LAZIES
    exit_flush_piggyback = True       # e43c0a0c3c28 (radix__tlb_flush())
    NOT_KERNEL_FUNCTIONS = LazyTlb.NOT_KERNEL_FUNCTIONS + (
        "coverage_state", "mm_gen_tick", "mm_gen_wake", "count_ipis")

    def coverage_state(self, mm):
        """What a search's coverage records of *mm* (not kernel code)."""
        return self.k.lazy_coverage_state(mm)

    known_findings = (
        Finding(InvariantViolation, HOTPLUG_RACE,
                "the CPU hotplug exit race: the outgoing CPU keeps its lazy mm until "
                "idle_task_exit(), after __cpu_disable() took it out of the masks the "
                "shootdown IPIs (fixed by moving the switch to sched_cpu_wait_empty())",
                invariant="P9", offline=True),
    )

    def mmgrab_lazy_tlb(self, mm):
        pass

    def mmdrop_lazy_tlb(self, mm):
        smp_mb()

    def mmdrop_lazy_tlb_sched(self, mm):
        smp_mb()

    # -- kernel/fork.c ---------------------------------------------------------------

    def do_check_lazy_tlb(self, mm):
        if self.k.cur.active_mm is mm:
            raise KernelBug(f"WARNING: do_check_lazy_tlb(): CPU {self.k.cpu} ({self.k.cur!r}) "
                            f"still uses {mm!r} lazily after the shootdown")

    def do_shoot_lazy_tlb(self, mm):
        k = self.k
        cur = k.cur
        if cur.active_mm is mm:
            if cur.mm is not None:
                raise KernelBug(f"WARNING: do_shoot_lazy_tlb(): {cur!r} has mm {cur.mm!r}")
            cur.active_mm = k.init_mm
            k.switch_mm_irqs_off(mm, k.init_mm, cur)       # switch_mm()

    def cleanup_lazy_tlbs(self, mm):
        """Lazy mm shootdown does not refcount "lazy tlb mm" usage, rather it
        adds IPIs to clean up remaining lazy usage at the final mmdrop: every
        CPU in mm_cpumask(mm) that may still use it lazily is IPIed (the arch
        must keep every such CPU in the mask)."""
        k = self.k
        sent = k.on_each_cpu_mask(mm.cpu_bitmap, self.do_shoot_lazy_tlb, mm, True)
        self.count_ipis(sent)
        if self.debug_vm_shoot_lazies:
            swept = k.on_each_cpu(self.do_check_lazy_tlb, mm, True)
            stats = k.lazy_stats
            stats.debug_ipis += swept.bit_count()
            stats.debug_isolated_ipis += (swept & (k.isolated_mask | k.nohz_full_mask)).bit_count()
        return True

    def count_ipis(self, mask):
        stats = self.k.lazy_stats
        stats.shootdowns += 1
        stats.shootdown_ipis += mask.bit_count()
        stats.isolated_ipis += (mask & (self.k.isolated_mask | self.k.nohz_full_mask)).bit_count()

    # -- arch/powerpc/mm/book3s64/radix_tlb.c ---------------------------------------------

    def tlb_flush_fullmm(self, mm):
        """radix__tlb_flush() of the fullmm teardown: "Shootdown based lazy
        tlb mm refcounting means we have to IPI everyone in the mm_cpumask
        anyway soon when the mm goes away, so might as well do it as part of
        the final flush now.\""""
        if self.exit_flush_piggyback:
            self.exit_flush_lazy_tlbs(mm)

    def exit_flush_lazy_tlbs(self, mm):
        k = self.k
        k.cur.preempt_count += 1
        remote = mm.cpu_bitmap & k.online_mask & ~(1 << k.cpu)
        k.smp_call_function_many(remote, self.do_exit_flush_lazy_tlb, mm, True)
        k.cur.preempt_count -= 1
        self.count_ipis(remote)
        k.lazy_stats.shootdowns -= 1          # counted as part of the teardown's IPIs

    def do_exit_flush_lazy_tlb(self, mm):
        """exit_lazy_flush_tlb(mm, always_flush): a kernel thread using mm as
        its lazy tlb goes to init_mm, and the CPU leaves mm_cpumask()."""
        k = self.k
        cur = k.cur
        if cur.mm is mm:
            return
        if cur.active_mm is mm:
            if cur.mm is not None:
                raise KernelBug(f"WARNING: exit_lazy_flush_tlb(): {cur!r} has mm {cur.mm!r}")
            k.mmgrab_lazy_tlb(k.init_mm)
            cur.active_mm = k.init_mm
            k.switch_mm_irqs_off(mm, k.init_mm, cur)
            k.mmdrop_lazy_tlb(mm)
        mm.cpu_bitmap &= ~(1 << k.cpu)
