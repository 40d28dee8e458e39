"""Lazy-TLB mm references: the kernel's side of the lazy_tlb subsystem.

include/linux/sched/mm.h's helpers, mmgrab_lazy_tlb(), mmdrop_lazy_tlb() and
mmdrop_lazy_tlb_sched(), are the selected lazy_tlb variant's (x86's
CONFIG_MMU_LAZY_TLB_REFCOUNT: plain mm_count references; the shootdown and
generation schemes: none).  The kernel calls them where it does: a switch
from a user task to a kernel thread or idle (context_switch()), the switch
back (finish_task_switch(), rq->prev_mm), exit_mm(), exec_mmap(),
kthread_use_mm()/kthread_unuse_mm() (kernel/kthread.py) and CPU hotplug
(kernel/cpu.py).  __mmdrop() calls cleanup_lazy_tlbs() first (kernel/fork.c,
v6.4), which a shootdown variant answers with IPIs; the generation scheme
defers the free instead (it returns False and frees later, mmdrop_free()).
kernel/smp.c's on_each_cpu_mask() is here too (the IPIs themselves are
kernel/membarrier.py's smp_call_function_many()).

What is not kernel code: the bookkeeping the lazy-TLB invariants
(checks/lazy_tlb.py: P6 at the free, P8-P10) and ``--stats`` read.  The
helpers count each call per mm (``lazy_refs``: grabs minus drops), the
atomics the variant did on ``mm_count`` in them (and the distinct CPUs doing
so per mm and millisecond: the cache-line bounce proxy), the IPIs of the
shootdowns (total, and to CPUs in ``isolated_mask`` if the machine has one),
and for every mm the time from its last mmput() to its free.
"""

from ..checks.kasan import is_freed
from ..errors import KernelBug


class LazyTlbStats:
    """What ``Machine.stats()`` reports of the lazy_tlb subsystem."""

    def __init__(self):
        self.atomics = 0              # RMWs on mm_count inside the lazy helpers
        self.shootdowns = 0           # cleanup_lazy_tlbs() calls that sent IPIs or ran locally
        self.shootdown_ipis = 0       # IPIs of those (remote CPUs)
        self.isolated_ipis = 0        # of which to isolated CPUs
        self.debug_ipis = 0           # DEBUG_VM_SHOOT_LAZIES's on_each_cpu() sweeps' IPIs
        self.debug_isolated_ipis = 0  # of which to isolated CPUs
        # The bounce proxy: per live mm, the millisecond its mm_count was last
        # written in and the mask of CPUs that wrote it then; a finished
        # millisecond (or a freed mm's last) is folded into the two sums, so
        # the dict holds only live mms (a long run does not grow it).
        self.writers = {}             # mm -> [ms, mask of CPUs that wrote its mm_count]
        self.writer_cpus = 0          # sum over finished (mm, ms) of the CPUs writing
        self.writer_windows = 0       # number of finished (mm, ms) with a write
        self.mmput_ns = {}            # mm -> virtual time of its last mmput() (__mmput())
        self.free_wait_ns = []        # per freed mm: its free - its last mmput()
        self.deferred = 0             # frees a variant deferred (generation scheme)
        self.deferred_wait_ns = []    # per deferred free: free - deferral
        self.max_dead_unfreed = 0     # most dead (mmput()) mms not yet freed at once

    def wrote(self, mm, ms, cpu):
        """CPU *cpu* wrote *mm*'s mm_count in millisecond *ms*."""
        w = self.writers.get(mm)
        if w is None:
            self.writers[mm] = [ms, 1 << cpu]
        elif w[0] == ms:
            w[1] |= 1 << cpu
        else:
            self.writer_cpus += w[1].bit_count()
            self.writer_windows += 1
            w[0], w[1] = ms, 1 << cpu

    def forget(self, mm):
        """*mm* is freed: its last millisecond is folded in."""
        w = self.writers.pop(mm, None)
        if w is not None:
            self.writer_cpus += w[1].bit_count()
            self.writer_windows += 1

    def bounce_proxy(self):
        """Mean number of distinct CPUs writing one mm's mm_count in one
        millisecond where any did (1.0: no bouncing)."""
        cpus = self.writer_cpus + sum(w[1].bit_count() for w in self.writers.values())
        windows = self.writer_windows + len(self.writers)
        return cpus / windows if windows else 0.0


class LazyTlbMm:
    """Mixin."""

    def lazy_tlb_init(self):
        self.lazy_refs = {}           # mm -> lazy grabs - drops (not kernel state)
        self.lazy_stats = LazyTlbStats()

    # -- include/linux/sched/mm.h -------------------------------------------------------

    def mmgrab_lazy_tlb(self, mm):
        if mm is not self.init_mm:
            self.lazy_refs[mm] = self.lazy_refs.get(mm, 0) + 1
        before = self.counters.atomic
        self.lazy_tlb.mmgrab_lazy_tlb(mm)
        self._lazy_atomics(mm, before)

    def mmdrop_lazy_tlb(self, mm):
        self._lazy_drop(mm)
        before = self.counters.atomic
        self.lazy_tlb.mmdrop_lazy_tlb(mm)
        self._lazy_atomics(mm, before)

    def mmdrop_lazy_tlb_sched(self, mm):
        self._lazy_drop(mm)
        before = self.counters.atomic
        self.lazy_tlb.mmdrop_lazy_tlb_sched(mm)
        self._lazy_atomics(mm, before)

    def _lazy_drop(self, mm):
        if mm is self.init_mm or mm is None:
            return
        left = self.lazy_refs.get(mm, 0) - 1
        self.lazy_refs[mm] = left
        if left < 0 and self.invariants is not None and self.lazy_tlb.refcounts_lazy:
            from ..checks.lazy_tlb import P8_lazy_drop_without_grab
            P8_lazy_drop_without_grab(self, mm)

    def _lazy_atomics(self, mm, before):
        """Count the atomics the variant's helper just did on *mm*'s mm_count
        (called after it returned, so that it is in no call chain a report
        prints)."""
        done = self.counters.atomic - before
        if done and mm is not self.init_mm:
            stats = self.lazy_stats
            stats.atomics += done
            if not is_freed(mm):             # (the drop that freed it was counted)
                stats.wrote(mm, self.engine.now // 1_000_000, self.cpu)

    # -- kernel/fork.c ------------------------------------------------------------------

    def tlb_finish_mmu(self, mm):
        """exit_mmap()'s end (__mmput()): the final TLB flush of the whole mm
        is the arch's (powerpc radix may shoot lazy users down with it: the
        variant's tlb_flush_fullmm())."""
        stats = self.lazy_stats
        stats.mmput_ns[mm] = self.engine.now
        self.lazy_tlb.tlb_flush_fullmm(mm)
        if len(stats.mmput_ns) > stats.max_dead_unfreed:      # popped at the free
            stats.max_dead_unfreed = len(stats.mmput_ns)

    def cleanup_lazy_tlbs(self, mm):
        """First thing in __mmdrop(): the variant's cleanup_lazy_tlbs()
        (a shootdown: no CPU uses *mm* lazily after it).  Returns whether the
        free goes on now (False: the variant deferred it)."""
        v = self.lazy_tlb
        if v.shoots_lazies and self.invariants is not None:
            from ..checks.lazy_tlb import P9_lazy_users_in_mask
            P9_lazy_users_in_mask(self, mm)
        return v.cleanup_lazy_tlbs(mm)

    def mmdrop_free(self, mm, deferred_since=None):
        """The bookkeeping of a free (__mmdrop() past cleanup_lazy_tlbs()),
        and the check that no CPU still uses *mm* (P6)."""
        if self.invariants is not None:
            from ..checks.lazy_tlb import P6_no_lazy_user_at_free
            P6_no_lazy_user_at_free(self, mm)
        stats = self.lazy_stats
        put = stats.mmput_ns.pop(mm, None)
        if put is not None:
            stats.free_wait_ns.append(self.engine.now - put)
        if deferred_since is not None:
            stats.deferred_wait_ns.append(self.engine.now - deferred_since)
        stats.forget(mm)
        self.lazy_refs.pop(mm, None)

    # -- kernel/smp.c ---------------------------------------------------------------------

    def on_each_cpu_mask(self, mask, func, info, wait):
        """Run ``func(info)`` on each online CPU of *mask*: the others by IPI
        (smp_call_function_many(), which waits with *wait*), this one here
        with interrupts off.  Preemption is off throughout.  Departure: the
        local call comes after the remote ones were waited for (the kernel
        calls it before waiting)."""
        if self.in_irq:
            raise KernelBug("WARNING: on_each_cpu_mask() in interrupt context "
                            "(WARN_ON_ONCE(!in_task()))")
        t = self.cur
        t.preempt_count += 1
        this = self.cpu
        remote = mask & self.online_mask & ~(1 << this)
        if remote:
            self.smp_call_function_many(remote, func, info, wait)
        if mask >> this & 1:
            flags = self.local_irq_save()
            func(info)
            self.local_irq_restore(flags)
        t.preempt_count -= 1
        return remote

    def on_each_cpu(self, func, info, wait):
        return self.on_each_cpu_mask(self.online_mask, func, info, wait)

    # -- what the invariants and reports read --------------------------------------------

    def lazy_tlb_stats(self):
        """``--stats`` lines of the lazy_tlb subsystem: mm_count atomics in the
        lazy helpers per context switch, the bounce proxy (distinct CPUs
        writing one mm's mm_count per ms), shootdowns and their IPIs (to
        isolated CPUs), the IPIs of the DEBUG_VM_SHOOT_LAZIES sweeps (apart:
        a debug option), the wait from an mm's last mmput() to its free
        (avg/max, ms), deferred frees and their wait, and the dead mms not
        yet freed (now, and at most at once)."""
        s = self.lazy_stats
        switches = max(1, self.nr_switches)
        waits = s.free_wait_ns
        deferred = s.deferred_wait_ns
        out = {
            "lazy_tlb_atomics_per_switch": s.atomics / switches,
            "lazy_tlb_bounce_cpus_per_mm_ms": round(s.bounce_proxy(), 3),
            "lazy_tlb_shootdowns": s.shootdowns,
            "lazy_tlb_shootdown_ipis": s.shootdown_ipis,
            "lazy_tlb_shootdown_ipis_isolated": s.isolated_ipis,
            "lazy_tlb_debug_vm_ipis": s.debug_ipis,
            "lazy_tlb_debug_vm_ipis_isolated": s.debug_isolated_ipis,
            "lazy_tlb_mmput_to_free_ms": (f"avg/max={sum(waits) / len(waits) / 1e6:.3f}/"
                                          f"{max(waits) / 1e6:.3f} n={len(waits)}" if waits else "-"),
            "lazy_tlb_deferred_frees": s.deferred,
            "lazy_tlb_deferred_wait_ms": (f"avg/max={sum(deferred) / len(deferred) / 1e6:.3f}/"
                                          f"{max(deferred) / 1e6:.3f}" if deferred else "-"),
            "lazy_tlb_dead_unfreed": f"now={len(s.mmput_ns)} max={s.max_dead_unfreed}",
        }
        return out


    def lazy_coverage_state(self, mm):
        """What a search's coverage (explore/coverage.py) records of *mm* when
        a lazy_tlb function is entered for it: whether it still has users,
        how many CPUs its mask holds (0, 1, more), and whether this CPU is in
        it and has it loaded."""
        bits = mm.cpu_bitmap
        return ("lazy", mm.mm_users.counter > 0, min(bits.bit_count(), 2),
                bool(bits >> self.cpu & 1), self.rqs[self.cpu].loaded_mm is mm)

    def lazy_users(self, mm):
        """Who uses *mm* lazily now: tasks without an mm whose active_mm it is
        (a kernel thread or idle borrowing it, an exiting task after
        exit_mm()), and runqueues whose prev_mm it is (to be dropped in
        finish_task_switch())."""
        users = [t for t in self._lazy_candidates() if t.mm is None and t.active_mm is mm]
        users += [rq for rq in self.rqs if rq.prev_mm is mm]
        return users

    def _lazy_candidates(self):
        seen = set()
        for rq in self.rqs:
            for t in (rq.idle, rq.curr):
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    yield t
        for t in self.tasks.values():
            if id(t) not in seen:
                seen.add(id(t))
                yield t

