"""v6.13: 7e019dcc470f "sched: Improve cache locality of RSEQ concurrency IDs
for intermittent workloads" (as merged: tip sched/core 2024-10-14, tip-bot2
mail of 2024-10-18; lore 20240823185946.418340-1-mathieu.desnoyers@efficios.com).

On top of v6.4 (223baf9d17f2, the base class), mm_cid.md 3.4:

- ``struct mm_cid`` gains ``recent_cid``: the cid this mm last used on this
  CPU, tried first when the CPU needs a cid again (cache locality);
- the mm keeps the union of its threads' allowed CPUs (``mm_cpus_allowed()``,
  grow-only, set from ``__do_set_cpus_allowed()`` through
  ``mm_set_cpus_allowed()`` under ``mm->cpus_allowed_lock``), its weight
  ``mm->nr_cpus_allowed``, and ``atomic_t mm->max_nr_cid``;
- ``__mm_cid_try_get(t, mm)``: recent_cid, then expansion of ``max_nr_cid``
  up to ``min(nr_cpus_allowed, mm_users)``, then the first zero bit, now
  bounded by ``READ_ONCE(mm->nr_cpus_allowed)`` instead of ``nr_cpu_ids``;
- ``mm_cid_get()`` records ``recent_cid``; migration clears the source's
  recent_cid when it steals the cid and sets the destination's when it moves
  it; ``sched_mm_cid_migrate_to()`` treats the destination as set if its cid
  *or* its recent_cid is set and compares ``mm_users`` with the mm's
  ``nr_cpus_allowed`` (was the task's).

The mainline fixes between v6.4 and v6.13 that touch this code:

- fe90f3967bdb "sched: Add missing memory barrier in switch_mm_cid" (v6.9):
  ``smp_mb__after_switch_mm()`` on every user -> user switch (generic
  ``smp_mb()``; a no-op on x86, which the model does not single out): copied,
  it changes the barrier count per switch;
- 73ab05aa46b0 "sched/core: Disable page allocation in task_tick_mm_cid()"
  (v6.12): ``TWAF_NO_ALLOC``; the model's task_work_add() allocates nothing,
  so it is behaviour-neutral here (task_tick_mm_cid() is inherited);
- c1753fd02a00 (v6.5, mm_count in its own cache line) and the alloc-tagging
  rename mm_alloc_cid_noprof() (v6.10) change no behaviour the model has.

Departures, as in v6.4: ``rcu_dereference(rq->curr)`` is a READ_ONCE (no RCU);
barriers are counted scheduling points (``smp_mb__after_mmgrab()`` and
``smp_mb__after_switch_mm()`` count as ``smp_mb()``); ``__this_cpu_read()`` /
``__this_cpu_write()`` are READ_ONCE/WRITE_ONCE of this CPU's slot; the mm's
CPU masks are ints (``Cpumask``); the scan charges 250 ns per CPU (v6.4).
``alloc_percpu()`` makes each CPU's slot when first touched (kernel/percpu.py:
no reader can tell); exec_mmap() re-runs
mm_init_cid(mm, tsk) as the kernel does; init_mm, which the kernel initialises
statically (no pcpu_cid), gets an empty state.

Not confirmed: no v6.13 tree was read.  The functions 7e019dcc470f changes
are copied from its tip-bot2 diff; the ones it does not change are 223baf9d17f2
plus the fixes above, checked against the pre-rewrite core.c text that Thomas
Gleixner's v6.19 series deletes (v6.18; it differs from v6.13 only by
guard()/scoped_guard() conversions) and against the context lines of Gabriele
Monaco's v2 patch 1.  Whether other mainline commits between v6.4 and v6.13
touched this code was checked only against mm_cid.md 3.4.
"""

from ..kernel.cpumask import Cpumask, cpumask_first_zero, cpumask_weight
from ..kernel.locking import (
    READ_ONCE, WRITE_ONCE, atomic_read, atomic_set, atomic_t, cpu_relax,
    cpumask_test_and_set_cpu, preempt_disable, preempt_enable_no_resched, raw_spin_lock,
    raw_spin_unlock, raw_spinlock_t, smp_mb, try_cmpxchg,
)
from ..kernel.percpu import alloc_percpu, touched
from . import register
from .mm_cid_v6_4 import (
    MM_CID_UNSET, MmCidV6_4, _cid_repr, mm_cid_clear_lazy_put, mm_cid_is_lazy_put,
    mm_cid_is_unset, mm_cid_is_valid, mm_cid_set_lazy_put,
)


class mm_cid:
    """struct mm_cid: one per mm per CPU."""

    __slots__ = ("time", "cid", "recent_cid")

    def __init__(self):
        self.time = 0
        self.cid = MM_CID_UNSET
        self.recent_cid = MM_CID_UNSET

    def __repr__(self):
        return (f"mm_cid(cid={_cid_repr(self.cid)}, recent_cid={_cid_repr(self.recent_cid)}, "
                f"time={self.time})")


def smp_mb__after_switch_mm():
    """asm-generic: smp_mb() (x86 defines it empty; the model counts it)."""
    smp_mb()


@register
class MmCidV6_13(MmCidV6_4):
    name = "v6.13"
    copies = ("7e019dcc470f sched: Improve cache locality of RSEQ concurrency IDs for "
              "intermittent workloads (v6.13)")

    # -- include/linux/mm_types.h, kernel/fork.c, fs/exec.c ---------------------------------

    def mm_alloc_cid(self, mm, p):
        """mm_alloc_cid_noprof(), from mm_init()."""
        # alloc_percpu(); the two masks sit after mm->cpu_bitmap in the
        # struct (mm_cid_size() = 2 * cpumask_size()).
        mm.pcpu_cid = alloc_percpu(mm_cid, self.k.nr_cpu_ids)
        mm.cpus_allowed = Cpumask()          # mm_cpus_allowed(mm)
        mm.cidmask = Cpumask()               # mm_cidmask(mm)
        mm.max_nr_cid = atomic_t(0)
        # mm_alloc() zeroes the struct; dup_mm() copied the parent's
        # mm_cid_next_scan.
        if not hasattr(mm, "mm_cid_next_scan"):
            mm.mm_cid_next_scan = 0
        self.mm_init_cid(mm, p)
        self.watch_cids(mm)             # not kernel code: the mm_cid tracepoints
        return 0

    def mm_init_cid(self, mm, p):
        if p is None:
            # The machine's init_mm: the kernel's is static (mm/init-mm.c),
            # never mm_alloc_cid()'ed, and no task of it holds a cid.
            mm.pcpu_cid = None
            mm.cpus_allowed = Cpumask()
            mm.cidmask = Cpumask()
            mm.nr_cpus_allowed = 0
            mm.max_nr_cid = atomic_t(0)
            return
        for _, pcpu_cid in touched(mm.pcpu_cid):    # for_each_possible_cpu(i); the
            pcpu_cid.cid = MM_CID_UNSET                 # others are made so (mm_cid())
            pcpu_cid.recent_cid = MM_CID_UNSET
            pcpu_cid.time = 0
        mm.nr_cpus_allowed = p.nr_cpus_allowed
        atomic_set(mm.max_nr_cid, 0)
        mm.cpus_allowed_lock = raw_spinlock_t(f"{mm!r}->cpus_allowed_lock")  # raw_spin_lock_init()
        self.mm_cpus_allowed(mm).bits = p.cpus_mask      # cpumask_copy()
        self.mm_cidmask(mm).bits = 0                     # cpumask_clear()

    def exec_mmap(self, mm):
        # exec_mmap(): tsk->mm = mm; mm_init_cid(mm, tsk);
        self.mm_init_cid(mm, self.k.cur)

    @staticmethod
    def mm_cpus_allowed(mm):
        """mm_cpus_allowed: Union of all mm's threads allowed CPUs."""
        return mm.cpus_allowed

    def mm_set_cpus_allowed(self, mm, cpumask):
        if mm is None:
            return
        mm_allowed = self.mm_cpus_allowed(mm)
        # The mm_cpus_allowed is the union of each thread allowed CPUs masks.
        raw_spin_lock(mm.cpus_allowed_lock)
        mm_allowed.bits |= cpumask                       # cpumask_or()
        WRITE_ONCE(mm, "nr_cpus_allowed", cpumask_weight(mm_allowed.bits))
        raw_spin_unlock(mm.cpus_allowed_lock)

    # -- kernel/sched/sched.h ----------------------------------------------------------------

    def _mm_cid_try_get(self, t, mm):
        """__mm_cid_try_get()"""
        cidmask = self.mm_cidmask(mm)
        pcpu_cid = mm.pcpu_cid[self.k.cpu]
        cid = READ_ONCE(pcpu_cid, "recent_cid")          # __this_cpu_read()
        # Try to re-use recent cid. This improves cache locality.
        if not mm_cid_is_unset(cid) and not cpumask_test_and_set_cpu(cid, cidmask):
            return cid
        # Expand cid allocation if the maximum number of concurrency
        # IDs allocated (max_nr_cid) is below the number cpus allowed
        # and number of threads. Expanding cid allocation as much as
        # possible improves cache locality.
        cid = atomic_read(mm.max_nr_cid)
        while cid < READ_ONCE(mm, "nr_cpus_allowed") and cid < atomic_read(mm.mm_users):
            ok, cid_found = try_cmpxchg(mm.max_nr_cid, "counter", cid, cid + 1)
            if not ok:                                   # atomic_try_cmpxchg()
                cid = cid_found
                continue
            if not cpumask_test_and_set_cpu(cid, cidmask):
                return cid
        # Find the first available concurrency id.
        # Retry finding first zero bit if the mask is temporarily
        # filled. This only happens during concurrent remote-clear
        # which owns a cid without holding a rq lock.
        while True:
            cid = cpumask_first_zero(READ_ONCE(cidmask, "bits"))
            if cid < READ_ONCE(mm, "nr_cpus_allowed"):
                break
            cpu_relax()
        if cpumask_test_and_set_cpu(cid, cidmask):
            return -1
        return cid

    def _mm_cid_get(self, rq, t, mm):
        """__mm_cid_get(): all allocations (even those using the cid_lock) are
        lock-free.  If use_cid_lock is set, hold the cid_lock to perform cid
        allocation to guarantee forward progress."""
        if not READ_ONCE(self, "use_cid_lock"):
            cid = self._mm_cid_try_get(t, mm)
            if cid >= 0:
                self.mm_cid_snapshot_time(rq, mm)          # goto end
                return cid
            raw_spin_lock(self.cid_lock)
        else:
            raw_spin_lock(self.cid_lock)
            cid = self._mm_cid_try_get(t, mm)
            if cid >= 0:
                raw_spin_unlock(self.cid_lock)             # goto unlock
                self.mm_cid_snapshot_time(rq, mm)
                return cid
        # cid concurrently allocated. Retry while forcing following
        # allocations to use the cid_lock to ensure forward progress.
        WRITE_ONCE(self, "use_cid_lock", 1)
        # Set use_cid_lock before allocation. Only care about program order
        # because this is only required for forward progress.
        # (barrier(): a compiler barrier, nothing in the model.)
        #
        # Retry until it succeeds. It is guaranteed to eventually succeed once
        # all newcoming allocations observe the use_cid_lock flag set.
        while True:                                        # do { ... } while (cid < 0);
            cid = self._mm_cid_try_get(t, mm)
            cpu_relax()
            if cid >= 0:
                break
        # Allocate before clearing use_cid_lock. Only care about program order
        # because this is for forward progress.  (barrier())
        WRITE_ONCE(self, "use_cid_lock", 0)
        raw_spin_unlock(self.cid_lock)                     # unlock:
        self.mm_cid_snapshot_time(rq, mm)                  # end:
        return cid

    def mm_cid_get(self, rq, t, mm):
        pcpu_cid = mm.pcpu_cid[rq.cpu]
        self.k.lockdep_assert_rq_held(rq)
        cid = READ_ONCE(pcpu_cid, "cid")                   # __this_cpu_read()
        if mm_cid_is_valid(cid):
            self.mm_cid_snapshot_time(rq, mm)
            return cid
        if mm_cid_is_lazy_put(cid):
            ok, _ = try_cmpxchg(pcpu_cid, "cid", cid, MM_CID_UNSET)
            if ok:
                self._mm_cid_put(mm, mm_cid_clear_lazy_put(cid))
        cid = self._mm_cid_get(rq, t, mm)
        WRITE_ONCE(pcpu_cid, "cid", cid)                   # __this_cpu_write()
        WRITE_ONCE(pcpu_cid, "recent_cid", cid)
        return cid

    def switch_mm_cid(self, rq, prev, next):
        # Provide a memory barrier between rq->curr store and load of
        # {prev,next}->mm->pcpu_cid[cpu] on rq->curr->mm transition.
        #
        # Should be adapted if context_switch() is modified.
        if next.mm is None:                     # to kernel
            # user -> kernel transition does not guarantee a barrier, but
            # we can use the fact that it performs an atomic operation in
            # mmgrab().
            if prev.mm is not None:             # from user
                smp_mb()                        # smp_mb__after_mmgrab()
            # kernel -> kernel transition does not change rq->curr->mm
            # state. It stays NULL.
        else:                                   # to user
            # kernel -> user transition does not provide a barrier
            # between rq->curr store and load of {prev,next}->mm->pcpu_cid[cpu].
            # Provide it here.
            if prev.mm is None:                 # from kernel
                smp_mb()
            else:                               # from user
                # user->user transition relies on an implicit
                # memory barrier in switch_mm() when
                # current->mm changes. If the architecture
                # switch_mm() does not have an implicit memory
                # barrier, it is emitted here.  If current->mm
                # is unchanged, no barrier is needed.
                smp_mb__after_switch_mm()
        if prev.mm_cid_active:
            self.mm_cid_snapshot_time(rq, prev.mm)
            self.mm_cid_put_lazy(prev)
            prev.mm_cid = -1
        if next.mm_cid_active:
            next.last_mm_cid = next.mm_cid = self.mm_cid_get(rq, next, next.mm)

    # -- kernel/sched/core.c: migration ---------------------------------------------------------

    def _sched_mm_cid_migrate_from_try_steal_cid(self, src_rq, t, src_pcpu_cid, src_cid):
        mm = t.mm
        if src_cid == -1:
            return -1
        # Attempt to clear the source cpu cid to move it to the destination
        # cpu.
        lazy_cid = mm_cid_set_lazy_put(src_cid)
        ok, _ = try_cmpxchg(src_pcpu_cid, "cid", src_cid, lazy_cid)
        if not ok:
            return -1
        # The implicit barrier after cmpxchg per-mm/cpu cid before loading
        # rq->curr->mm matches the scheduler barrier in context_switch()
        # between store to rq->curr and load of prev and next task's
        # per-mm/cpu cid.
        #
        # The implicit barrier after cmpxchg per-mm/cpu cid before loading
        # rq->curr->mm_cid_active matches the barrier in
        # sched_mm_cid_exit_signals(), sched_mm_cid_before_execve(), and
        # sched_mm_cid_after_execve() between store to t->mm_cid_active and
        # load of per-mm/cpu cid.
        #
        # If we observe an active task using the mm on this rq after setting
        # the lazy-put flag, this task will be responsible for transitioning
        # from lazy-put flag set to MM_CID_UNSET.
        src_task = READ_ONCE(src_rq, "curr")              # rcu_dereference()
        if READ_ONCE(src_task, "mm_cid_active") and src_task.mm is mm:
            # We observed an active task for this mm, there is therefore
            # no point in moving this cid to the destination cpu.
            t.last_mm_cid = -1
            return -1
        # The src_cid is unused, so it can be unset.
        ok, _ = try_cmpxchg(src_pcpu_cid, "cid", lazy_cid, MM_CID_UNSET)
        if not ok:
            return -1
        WRITE_ONCE(src_pcpu_cid, "recent_cid", MM_CID_UNSET)
        return src_cid

    def sched_mm_cid_migrate_to(self, dst_rq, t):
        """Migration to dst cpu. Called with dst_rq lock held.
        Interrupts are disabled, which keeps the window of cid ownership
        without the source rq lock held small."""
        mm = t.mm
        self.k.lockdep_assert_rq_held(dst_rq)
        if mm is None:
            return
        src_cpu = t.migrate_from_cpu
        if src_cpu == -1:
            t.last_mm_cid = -1
            return
        # Move the src cid if the dst cid is unset. This keeps id
        # allocation closest to 0 in cases where few threads migrate around
        # many CPUs.
        #
        # If destination cid or recent cid is already set, we may have
        # to just clear the src cid to ensure compactness in frequent
        # migrations scenarios.
        #
        # It is not useful to clear the src cid when the number of threads is
        # greater or equal to the number of allowed CPUs, because user-space
        # can expect that the number of allowed cids can reach the number of
        # allowed CPUs.
        dst_pcpu_cid = mm.pcpu_cid[dst_rq.cpu]
        dst_cid_is_set = (not mm_cid_is_unset(READ_ONCE(dst_pcpu_cid, "cid")) or
                          not mm_cid_is_unset(READ_ONCE(dst_pcpu_cid, "recent_cid")))
        if dst_cid_is_set and atomic_read(mm.mm_users) >= READ_ONCE(mm, "nr_cpus_allowed"):
            return
        src_pcpu_cid = mm.pcpu_cid[src_cpu]
        src_rq = self.k.cpu_rq(src_cpu)
        src_cid = self._sched_mm_cid_migrate_from_fetch_cid(src_rq, t, src_pcpu_cid)
        if src_cid == -1:
            return
        src_cid = self._sched_mm_cid_migrate_from_try_steal_cid(src_rq, t, src_pcpu_cid, src_cid)
        if src_cid == -1:
            return
        if dst_cid_is_set:
            self._mm_cid_put(mm, src_cid)
            return
        # Move src_cid to dst cpu.
        self.mm_cid_snapshot_time(dst_rq, mm)
        WRITE_ONCE(dst_pcpu_cid, "cid", src_cid)
        WRITE_ONCE(dst_pcpu_cid, "recent_cid", src_cid)

    # -- kernel/sched/core.c: exec --------------------------------------------------------------

    def sched_mm_cid_after_execve(self, t):
        mm = t.mm
        if mm is None:
            return
        preempt_disable()
        rq = self.k.this_rq()
        flags = self.k.rq_lock_irqsave(rq)
        preempt_enable_no_resched()     # holding spinlock
        WRITE_ONCE(t, "mm_cid_active", 1)
        # Store t->mm_cid_active before loading per-mm/cpu cid.
        # Matches barrier in sched_mm_cid_remote_clear_old().
        smp_mb()
        t.last_mm_cid = t.mm_cid = self.mm_cid_get(rq, t, mm)
        self.k.rq_unlock_irqrestore(rq, flags)
        self.k.rseq_set_notify_resume(t)

    # -- what the invariants ask ---------------------------------------------------------------

    def cid_bound(self, mm):
        """P2: allocation is bounded by the mm's nr_cpus_allowed (grow-only)."""
        return mm.nr_cpus_allowed

    def cid_mm_state(self, mm):
        return f"max_nr_cid={mm.max_nr_cid.counter} nr_cpus_allowed={mm.nr_cpus_allowed}"

    def cpu_state(self, rq):
        curr = rq.curr
        if curr.mm is None or getattr(curr.mm, "pcpu_cid", None) is None:
            return ""
        mm = curr.mm
        pcpu_cid = mm.pcpu_cid[rq.cpu]
        return (f"mm_cid={curr.mm_cid} pcpu_cid={_cid_repr(pcpu_cid.cid)} "
                f"recent_cid={_cid_repr(pcpu_cid.recent_cid)} cidmask={mm.cidmask!r} "
                f"max_nr_cid={mm.max_nr_cid.counter} nr_cpus_allowed={mm.nr_cpus_allowed}")

