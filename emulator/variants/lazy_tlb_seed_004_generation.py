"""Seed 004: Peter Zijlstra's mm-switch generation counter (reply to "lazy
tlb: shoot lazies", 2020-12-02, lore 20201202141957.GJ3021@hirez.programming.
kicks-ass.net), completed where the sketch leaves holes.

As in the sketch: context_switch() counts rq->nr_mm_switches after
switch_mm_irqs_off() in its to-user branch (the kernel model counts it for
every variant; only this one reads it); mm_gen_tick(cpu, rq), from
scheduler_tick() under the rq lock, snapshots that count into the per-CPU
``switches[2]`` slot of the generation's parity and, on the CPU's first
update of a generation with a switch since its last one, decrements
``complete``; the CPU that brings it to zero resets it to the number of
online CPUs and increments ``generation`` (after smp_wmb()), and the tick
then wakes the waiters (mm_gen_wake()).  A would-be free waits until the
generation has moved twice past its snapshot ("the first increment might
already be in progress"): mm_gen_wait()'s ``generation - gen > 1``.  Lazy
users hold no reference (mmgrab_lazy_tlb() does nothing, mmdrop_lazy_tlb()
is a smp_mb(), as under shootdown, which the sketch replaces).

Completed here (the sketch's holes, each marked "completion" in the code):

- what drives the deferral: __mmdrop() cannot sleep (it runs from
  finish_task_switch()), so cleanup_lazy_tlbs() queues the mm with its
  generation and returns False (the free is taken over); mm_gen_wake()
  queues a work item on system_unbound_wq that frees every queued mm whose
  generation has moved twice (mm_gen_wait()'s condition), as mmdrop_async()
  defers to a work item;
- bootstrap ("complete = -1, // XXX bootstrap"): ``complete`` starts at the
  number of online CPUs and ``members`` records which CPUs the count was set
  for; a CPU's first tick as a member seeds its slots as if it had updated
  in the previous generation, so it completes this one at its first switch;
- hotplug ("XXX hotplug"): a CPU coming online is a member from the next
  reset on (which counts the online CPUs); a dead CPU (a PREPARE-section
  teardown, run once it no longer uses any mm) leaves the members and, if it
  had not completed the generation, completes it on its behalf.

Known to be unbounded (Andy Lutomirski: "A CPU can go idle with lazy mm and
nohz forever. This could lead to unbounded memory use on a lightly loaded
system"; Peter: "Hurm.. quite so indeed"): a CPU that stops ticking (idle,
nohz) or stops switching to user mms (a long computation, kernel threads
only) stops the generation, and every deferred free waits for it.
tests/test_lazy_tlb.py measures it: no generation in 300 ms with one CPU
idle; on a nohz_full CPU running one task for 60 ms, 22 dead mms, all
unfreed at once, waiting up to 65.7 ms.  A model departure slows it
further: an idle CPU stops its tick at once (the kernel keeps it when the
next timer is due within a tick), so on a load that idles for microseconds
(compare's lazy-tlb workload) a CPU ticks a few times in 20 ms and frees
wait 14-23 ms on average instead of the two or three ticks of a busy
machine (2.7 ms in the happy-path test).

Why two increments: a CPU's snapshot is rewritten at every tick of a
generation in which it switched, so its update in the generation after the
deferral needs a switch after its last tick of the deferral's generation.
Whether that tick can precede a switch to the mm and its exit with the
increment still to come, and so free an mm under a kernel thread that
borrows it, is not shown either way: a search of 200 timings on 3 CPUs
(kworker borrowing the mm, the free in the same generation) found none.
"""

from ..kernel.cpu import CPUHP_BP_PREPARE_DYN
from ..kernel.locking import (
    READ_ONCE, WRITE_ONCE, atomic_dec_and_test, atomic_set, atomic_t, raw_spin_lock,
    raw_spin_unlock, raw_spinlock_t, smp_mb,
)
from ..kernel.workqueue import work_struct
from . import register
from .base import LazyTlb
from .lazy_tlb_shootdown_v6_4 import ShootdownV64


@register
class MmGeneration(LazyTlb):
    name = "seed-004-generation"
    copies = "Peter Zijlstra's sketch, 2020-12-02 (seed 004), completed"
    refcounts_lazy = False
    min_generations = 2            # mm_gen_wait(): generation - gen > 1

    NOT_KERNEL_FUNCTIONS = LazyTlb.NOT_KERNEL_FUNCTIONS + (
        "coverage_state", "stalling_cpus")

    def coverage_state(self, mm):
        """What a search's coverage records of *mm* (not kernel code)."""
        return self.k.lazy_coverage_state(mm)

    def __init__(self, kernel):
        super().__init__(kernel)
        k = kernel
        self.generation = 0
        # completion (bootstrap): the sketch's "complete = -1, // XXX bootstrap, hotplug"
        self.complete = atomic_t(k.nr_online)
        self.members = k.online_mask             # the CPUs ``complete`` was set for
        self.seeded = 0                          # members whose slots are seeded
        self.done_gen = [-1] * k.nr_cpu_ids      # generation each CPU last completed
        self.switches = [[0, 0] for _ in range(k.nr_cpu_ids)]   # per-CPU switches[2]
        self.lock = raw_spinlock_t("mm_gen_lock")
        self.deferred = []                       # [mm, generation, since]
        self.free_work = work_struct(self.mm_gen_free_work, "mm_gen_free")
        # completion (hotplug)
        k.cpuhp_setup_state_nocalls(CPUHP_BP_PREPARE_DYN, "mm/lazy_tlb:gen", None,
                                    self.mm_gen_cpu_dead)

    # No lazy references, as under shootdown, which the sketch replaces.
    mmgrab_lazy_tlb = ShootdownV64.mmgrab_lazy_tlb
    mmdrop_lazy_tlb = ShootdownV64.mmdrop_lazy_tlb
    mmdrop_lazy_tlb_sched = ShootdownV64.mmdrop_lazy_tlb_sched

    # -- the sketch ----------------------------------------------------------------------

    def mm_gen_tick(self, cpu, rq):
        """scheduler_tick(), rq lock held; True: wake the waiters."""
        bit = 1 << cpu
        if not self.members & bit:
            return False                         # completion: not counted in ``complete``
        switches = rq.nr_mm_switches
        idx = READ_ONCE(self, "generation") & 1
        slots = self.switches[cpu]
        if not self.seeded & bit:
            # completion: as if this CPU had updated in the last generation,
            # so that its next switch completes this one.
            slots[idx ^ 1], slots[idx] = switches, switches - 1
            self.seeded |= bit
            return False
        prev = slots[idx ^ 1]
        curr = slots[idx]
        # we haven't switched since the last generation
        if prev == switches:
            return False
        slots[idx] = switches
        # If @curr is less than @prev, this is the first update of this
        # generation, per the above, switches has also increased since, so
        # mark our CPU complete.
        if curr - prev < 0:
            self.done_gen[cpu] = self.generation
            if atomic_dec_and_test(self.complete):
                self._next_generation()
                return True
        return False

    def _next_generation(self):
        """All CPUs are complete, IOW they all switched at least once since
        the last generation.  Reset the completion counter and increment the
        generation."""
        k = self.k
        self.members = k.online_mask
        self.seeded &= self.members
        atomic_set(self.complete, k.nr_online)
        smp_mb()                                 # smp_wmb()
        WRITE_ONCE(self, "generation", self.generation + 1)

    def mm_gen_wake(self):
        # completion: the waiters are the deferred frees' work item.
        if any(self.generation - gen >= self.min_generations for _, gen, _ in self.deferred):
            self.k.queue_work(self.k.system_unbound_wq, self.free_work)

    # -- completion: what drives the deferral ------------------------------------------------

    def cleanup_lazy_tlbs(self, mm):
        """__mmdrop(): the free waits for the generation to move on."""
        k = self.k
        flags = k.local_irq_save()
        raw_spin_lock(self.lock)
        self.deferred.append([mm, READ_ONCE(self, "generation"), k.engine.now])
        raw_spin_unlock(self.lock)
        k.local_irq_restore(flags)
        k.lazy_stats.deferred += 1
        return False

    def mm_gen_free_work(self, work):
        """mm_gen_wait()'s condition met: free what waited long enough."""
        k = self.k
        flags = k.local_irq_save()
        raw_spin_lock(self.lock)
        gen = READ_ONCE(self, "generation")
        ripe = [d for d in self.deferred if gen - d[1] >= self.min_generations]
        self.deferred = [d for d in self.deferred if gen - d[1] < self.min_generations]
        raw_spin_unlock(self.lock)
        k.local_irq_restore(flags)
        for mm, _gen, since in ripe:
            k._mmdrop(mm, deferred_since=since)

    # -- completion: hotplug -----------------------------------------------------------------

    def mm_gen_cpu_dead(self, cpu):
        """On a surviving CPU, once *cpu* is dead (it uses no mm): it leaves
        the members, completing the generation for itself if it had not."""
        bit = 1 << cpu
        self.seeded &= ~bit
        if self.members & bit:
            self.members &= ~bit
            if self.done_gen[cpu] != self.generation and atomic_dec_and_test(self.complete):
                self._next_generation()
                self.mm_gen_wake()
        return 0

    # -- what reports read (not kernel code) ---------------------------------------------------

    def stalling_cpus(self):
        """The members that have not completed the current generation."""
        return [cpu for cpu in range(self.k.nr_cpu_ids)
                if self.members >> cpu & 1 and self.done_gen[cpu] != self.generation]
