"""v6.4: 223baf9d17f2 "sched: Fix performance regression introduced by mm_cid" (as merged).

Copies the merged diff (tip-bot2, 2023-04-21; quoted in full in Swapnil Sapkal's
report of 2023-06-20), mm_cid.md 3.3:

- per-mm/per-CPU ``struct mm_cid {time, cid}``; a CPU keeps its cid across
  switches (lazy put); the per-CPU slot moves UNSET -> valid only under that
  CPU's rq lock, valid -> LAZY and LAZY -> UNSET by cmpxchg from anywhere;
- allocation is lock-free (test_and_set on the cidmask) with a global
  ``cid_lock``/``use_cid_lock`` for forward progress;
- migration moves the source CPU's cid to the destination (migrate_from only
  records the source CPU; migrate_to steals and moves);
- ``task_mm_cid_work``, queued from the tick as task_work when the mm's
  ``mm_cid_next_scan`` is due, remote-clears cids unused for 100 ms and cids
  at or above the bitmap weight.

Departures: rcu_read_lock()/rcu_dereference() of ``rq->curr`` is a READ_ONCE
(the model has no RCU); the barriers are counted scheduling points
(smp_mb__after_mmgrab() is counted as smp_mb()); the scan costs 250 ns of
virtual CPU time per CPU scanned, charged as it goes (seed 000: about 30-35 us
for 128 CPUs).
"""

from ..errors import InvariantViolation, KernelBug
from ..kernel.cpumask import Cpumask, cpumask_first_zero, cpumask_weight
from ..kernel.locking import (
    READ_ONCE, WRITE_ONCE, cmpxchg, cpu_relax, cpumask_clear_cpu, cpumask_test_and_set_cpu,
    preempt_disable, preempt_enable_no_resched, raw_spin_lock, raw_spin_unlock,
    raw_spinlock_t, smp_mb, try_cmpxchg,
)
from ..kernel.percpu import alloc_percpu, touched
from ..kernel.task import PF_EXITING, PF_KTHREAD
from ..kernel.task_work import TWA_RESUME, callback_head
from . import register
from .base import Finding, SchedMmCid

MM_CID_UNSET = 0xFFFFFFFF          # -1U: "Unset state has lazy_put flag set."
MM_CID_LAZY_PUT = 1 << 31
SCHED_MM_CID_PERIOD_NS = 100 * 1_000_000   # 100ms
MM_CID_SCAN_DELAY = 100                    # 100ms
SCAN_NS_PER_CPU = 250

# The cause of v6.4's recorded finding (known_findings below), noted when it happens.
CLEARED_CID_IN_USE = ("a remote clear of a CPU's cid (a migration's steal or the scan) read "
                      "that CPU's rq->curr from before a user -> user switch into the mm whose "
                      "switch_mm_cid() had taken, or then took, the cid it cleared")

V6_4_MISSING_SWITCH_MM_BARRIER = (
    "v6.4 as merged (223baf9d17f2) relies on switch_mm() for the full barrier between the "
    "store to rq->curr and the load of the per-mm/cpu cid on a user -> user switch, which "
    "arm64's switch_mm() does not have.  A CPU switching in a thread of the mm reads its "
    "cid as valid, while a remote path (a migration stealing the cid, or the scan) sets "
    "it lazy-put, reads rq->curr from before the switch, takes it as unused and clears it "
    "(store buffering: neither side sees the other's store).  The running thread keeps a "
    "cid whose bit is clear (P11) or that the thread it moved to also has (P1).  Under "
    "--memory-model weak only (tso: x86's CR3 write serializes).  Found by the stress "
    "search (explore --variant v6.4 --memory-model weak --workload stress, campaign seed "
    "0, in its first 360 runs); fe90f3967bdb \"sched: Add missing memory barrier in "
    "switch_mm_cid\" (levi.yun's arm64 report) added smp_mb__after_switch_mm() there "
    "(fixtures/patches/v6_4_fe90f3967bdb.py).")


class mm_cid:
    """struct mm_cid: one per mm per CPU."""

    __slots__ = ("time", "cid")

    def __init__(self):
        self.time = 0
        self.cid = MM_CID_UNSET

    def __repr__(self):
        return f"mm_cid(cid={_cid_repr(self.cid)}, time={self.time})"


def _cid_repr(cid):
    if cid == MM_CID_UNSET:
        return "UNSET"
    if cid & MM_CID_LAZY_PUT:
        return f"{cid & ~MM_CID_LAZY_PUT}|LAZY"
    return str(cid)


def mm_cid_is_unset(cid):
    return cid == MM_CID_UNSET


def mm_cid_is_lazy_put(cid):
    return not mm_cid_is_unset(cid) and bool(cid & MM_CID_LAZY_PUT)


def mm_cid_is_valid(cid):
    return not cid & MM_CID_LAZY_PUT


def mm_cid_set_lazy_put(cid):
    return cid | MM_CID_LAZY_PUT


def mm_cid_clear_lazy_put(cid):
    return cid & ~MM_CID_LAZY_PUT


@register
class MmCidV6_4(SchedMmCid):
    name = "v6.4"
    copies = "223baf9d17f2 sched: Fix performance regression introduced by mm_cid (v6.4)"
    known_findings = (
        Finding(InvariantViolation, CLEARED_CID_IN_USE, V6_4_MISSING_SWITCH_MM_BARRIER,
                invariant=("P1", "P11")),
    )
    NOT_KERNEL_FUNCTIONS = SchedMmCid.NOT_KERNEL_FUNCTIONS + ("note_cleared_cid", "note_got_cid")

    def __init__(self, kernel):
        super().__init__(kernel)
        # @cid_lock: Guarantee forward-progress of cid allocation.
        self.cid_lock = raw_spinlock_t("cid_lock")
        # @use_cid_lock: Select cid allocation behavior: lock-free vs spinlock.
        self.use_cid_lock = 0
        # Not kernel state: per mm, the last cid each CPU's switch read from
        # its slot, and for which task (note_got_cid()).
        self.cid_reads = {}             # mm -> {cpu: (task, cid)}

    # -- include/linux/mm_types.h, kernel/fork.c -----------------------------------------

    def init_task_fields(self, t):
        # dup_task_struct()
        t.mm_cid = -1
        t.last_mm_cid = -1
        t.mm_cid_active = 0
        t.migrate_from_cpu = -1
        t.cid_work = callback_head(self.task_mm_cid_work)

    def mm_alloc_cid(self, mm, p):
        """From mm_init(): alloc_percpu(struct mm_cid), then mm_init_cid().
        mm_alloc() zeroes the struct; dup_mm() copied the parent's
        mm_cid_next_scan."""
        mm.pcpu_cid = alloc_percpu(mm_cid, self.k.nr_cpu_ids)
        mm.cidmask = Cpumask()
        if not hasattr(mm, "mm_cid_next_scan"):
            mm.mm_cid_next_scan = 0
        self.mm_init_cid(mm, p)
        self.watch_cids(mm)             # not kernel code: the mm_cid tracepoints

    def mm_init_cid(self, mm, p):
        if p is None:
            # The machine's init_mm: static in the kernel (mm/init-mm.c),
            # never mm_alloc_cid()'ed, and no task of it holds a cid.
            mm.pcpu_cid = None
            mm.cidmask = Cpumask()
            return
        for _, pcpu_cid in touched(mm.pcpu_cid):    # for_each_possible_cpu(i); the
            pcpu_cid.cid = MM_CID_UNSET                 # others are made so (mm_cid())
            pcpu_cid.time = 0
        self.mm_cidmask(mm).bits = 0            # cpumask_clear()

    def exec_mmap(self, mm):
        # exec_mmap(): tsk->mm = mm; ... mm_init_cid(mm);
        self.mm_init_cid(mm, self.k.cur)

    def mm_destroy_cid(self, mm):
        mm.pcpu_cid = None
        self.cid_reads.pop(mm, None)        # not kernel code: the notes forget @mm

    @staticmethod
    def mm_cidmask(mm):
        return mm.cidmask

    # -- kernel/sched/sched.h ----------------------------------------------------------------

    def _mm_cid_put(self, mm, cid):
        """__mm_cid_put()"""
        if cid < 0:
            return
        cpumask_clear_cpu(cid, self.mm_cidmask(mm))

    def mm_cid_put_lazy(self, t):
        """The per-mm/cpu cid can have the MM_CID_LAZY_PUT flag set or transition
        to the MM_CID_UNSET state without holding the rq lock, but the rq lock
        needs to be held to transition to other states."""
        mm = t.mm
        pcpu_cid = mm.pcpu_cid[self.k.cpu]
        self.k.lockdep_assert_irqs_disabled()
        cid = READ_ONCE(pcpu_cid, "cid")
        if not mm_cid_is_lazy_put(cid):
            return
        ok, _ = try_cmpxchg(pcpu_cid, "cid", cid, MM_CID_UNSET)
        if not ok:
            return
        self._mm_cid_put(mm, mm_cid_clear_lazy_put(cid))

    def mm_cid_pcpu_unset(self, mm):
        pcpu_cid = mm.pcpu_cid[self.k.cpu]
        self.k.lockdep_assert_irqs_disabled()
        cid = READ_ONCE(pcpu_cid, "cid")
        while True:
            if mm_cid_is_unset(cid):
                return MM_CID_UNSET
            # Attempt transition from valid or lazy-put to unset.
            res = cmpxchg(pcpu_cid, "cid", cid, MM_CID_UNSET)
            if res == cid:
                break
            cid = res
        return cid

    def mm_cid_put(self, mm):
        self.k.lockdep_assert_irqs_disabled()
        cid = self.mm_cid_pcpu_unset(mm)
        if cid == MM_CID_UNSET:
            return
        self._mm_cid_put(mm, mm_cid_clear_lazy_put(cid))

    def _mm_cid_try_get(self, mm):
        """__mm_cid_try_get()"""
        cpumask = self.mm_cidmask(mm)
        # Retry finding first zero bit if the mask is temporarily filled. This
        # only happens during concurrent remote-clear which owns a cid without
        # holding a rq lock.
        while True:
            cid = cpumask_first_zero(READ_ONCE(cpumask, "bits"))
            if cid < self.k.nr_cpu_ids:
                break
            cpu_relax()
        if cpumask_test_and_set_cpu(cid, cpumask):
            return -1
        return cid

    def mm_cid_snapshot_time(self, rq, mm):
        """Save a snapshot of the current runqueue time of this cpu with the
        per-cpu cid value, allowing to estimate how recently it was used."""
        pcpu_cid = mm.pcpu_cid[rq.cpu]
        self.k.lockdep_assert_rq_held(rq)
        WRITE_ONCE(pcpu_cid, "time", rq.clock)

    def _mm_cid_get(self, rq, mm):
        """__mm_cid_get(): all allocations (even those using the cid_lock) are
        lock-free.  If use_cid_lock is set, hold the cid_lock to perform cid
        allocation to guarantee forward progress."""
        if not READ_ONCE(self, "use_cid_lock"):
            cid = self._mm_cid_try_get(mm)
            if cid >= 0:
                self.mm_cid_snapshot_time(rq, mm)
                return cid
            raw_spin_lock(self.cid_lock)
        else:
            raw_spin_lock(self.cid_lock)
            cid = self._mm_cid_try_get(mm)
            if cid >= 0:
                raw_spin_unlock(self.cid_lock)
                self.mm_cid_snapshot_time(rq, mm)
                return cid
        # cid concurrently allocated. Retry while forcing following
        # allocations to use the cid_lock to ensure forward progress.
        WRITE_ONCE(self, "use_cid_lock", 1)
        # Retry until it succeeds. It is guaranteed to eventually succeed once
        # all newcoming allocations observe the use_cid_lock flag set.
        while True:
            cid = self._mm_cid_try_get(mm)
            cpu_relax()
            if cid >= 0:
                break
        WRITE_ONCE(self, "use_cid_lock", 0)
        raw_spin_unlock(self.cid_lock)
        self.mm_cid_snapshot_time(rq, mm)
        return cid

    def mm_cid_get(self, rq, mm):
        pcpu_cid = mm.pcpu_cid[rq.cpu]
        self.k.lockdep_assert_rq_held(rq)
        cid = READ_ONCE(pcpu_cid, "cid")
        self.note_got_cid(rq, mm, pcpu_cid, cid)
        if mm_cid_is_valid(cid):
            self.mm_cid_snapshot_time(rq, mm)
            return cid
        if mm_cid_is_lazy_put(cid):
            ok, _ = try_cmpxchg(pcpu_cid, "cid", cid, MM_CID_UNSET)
            if ok:
                self._mm_cid_put(mm, mm_cid_clear_lazy_put(cid))
        cid = self._mm_cid_get(rq, mm)
        WRITE_ONCE(pcpu_cid, "cid", cid)
        return cid

    def switch_mm_cid(self, rq, prev, next):
        # Provide a memory barrier between rq->curr store and load of
        # {prev,next}->mm->pcpu_cid[cpu] on rq->curr->mm transition.
        if next.mm is None:                     # to kernel
            # user -> kernel transition does not guarantee a barrier, but we
            # can use the fact that it performs an atomic operation in mmgrab().
            if prev.mm is not None:             # from user
                smp_mb()                        # smp_mb__after_mmgrab()
            # kernel -> kernel transition does not change rq->curr->mm state.
        else:                                   # to user
            # kernel -> user transition does not provide a barrier between
            # rq->curr store and load of {prev,next}->mm->pcpu_cid[cpu].
            if prev.mm is None:                 # from kernel
                smp_mb()
            # user -> user transition guarantees a memory barrier through
            # switch_mm() when current->mm changes.
        if prev.mm_cid_active:
            self.mm_cid_snapshot_time(rq, prev.mm)
            self.mm_cid_put_lazy(prev)
            prev.mm_cid = -1
        if next.mm_cid_active:
            next.last_mm_cid = next.mm_cid = self.mm_cid_get(rq, next.mm)

    # -- kernel/sched/core.c: migration ---------------------------------------------------------

    def sched_mm_cid_migrate_from(self, t):
        t.migrate_from_cpu = t.cpu

    def _sched_mm_cid_migrate_from_fetch_cid(self, src_rq, t, src_pcpu_cid):
        mm = t.mm
        if mm is None:
            return -1
        last_mm_cid = t.last_mm_cid
        # If the migrated task has no last cid, or if the current task on src
        # rq uses the cid, it means the source cid does not need to be moved
        # to the destination cpu.
        if last_mm_cid == -1:
            return -1
        src_cid = READ_ONCE(src_pcpu_cid, "cid")
        if not mm_cid_is_valid(src_cid) or last_mm_cid != src_cid:
            return -1
        # If we observe an active task using the mm on this rq, it means we are
        # not the last task to be migrated from this cpu for this mm, so there
        # is no need to move src_cid to the destination cpu.
        src_task = READ_ONCE(src_rq, "curr")
        if READ_ONCE(src_task, "mm_cid_active") and src_task.mm is mm:
            t.last_mm_cid = -1
            return -1
        return src_cid

    def _sched_mm_cid_migrate_from_try_steal_cid(self, src_rq, t, src_pcpu_cid, src_cid):
        mm = t.mm
        if src_cid == -1:
            return -1
        # Attempt to clear the source cpu cid to move it to the destination cpu.
        lazy_cid = mm_cid_set_lazy_put(src_cid)
        ok, _ = try_cmpxchg(src_pcpu_cid, "cid", src_cid, lazy_cid)
        if not ok:
            return -1
        # The implicit barrier after cmpxchg per-mm/cpu cid before loading
        # rq->curr->mm matches the scheduler barrier in context_switch()
        # between store to rq->curr and load of prev and next task's
        # per-mm/cpu cid.
        #
        # If we observe an active task using the mm on this rq after setting
        # the lazy-put flag, this task will be responsible for transitioning
        # from lazy-put flag set to MM_CID_UNSET.
        src_task = READ_ONCE(src_rq, "curr")
        if READ_ONCE(src_task, "mm_cid_active") and src_task.mm is mm:
            # We observed an active task for this mm, there is therefore no
            # point in moving this cid to the destination cpu.
            t.last_mm_cid = -1
            return -1
        # The src_cid is unused, so it can be unset.
        ok, _ = try_cmpxchg(src_pcpu_cid, "cid", lazy_cid, MM_CID_UNSET)
        if not ok:
            return -1
        self.note_cleared_cid(src_rq, mm, src_cid)
        return src_cid

    def sched_mm_cid_migrate_to(self, dst_rq, t):
        """Migration to dst cpu. Called with dst_rq lock held.  Interrupts are
        disabled, which keeps the window of cid ownership without the source
        rq lock held small."""
        mm = t.mm
        self.k.lockdep_assert_rq_held(dst_rq)
        if mm is None:
            return
        src_cpu = t.migrate_from_cpu
        if src_cpu == -1:
            t.last_mm_cid = -1
            return
        # Move the src cid if the dst cid is unset. This keeps id allocation
        # closest to 0 in cases where few threads migrate around many cpus.
        #
        # If destination cid is already set, we may have to just clear the src
        # cid to ensure compactness in frequent migrations scenarios.
        #
        # It is not useful to clear the src cid when the number of threads is
        # greater or equal to the number of allowed cpus, because user-space
        # can expect that the number of allowed cids can reach the number of
        # allowed cpus.
        dst_pcpu_cid = mm.pcpu_cid[dst_rq.cpu]
        dst_cid = READ_ONCE(dst_pcpu_cid, "cid")
        if not self.dst_cid_is_free(dst_pcpu_cid, dst_cid) and \
                mm.mm_users.counter >= self.migrate_to_allowed(mm, t):
            return
        src_pcpu_cid = mm.pcpu_cid[src_cpu]
        src_rq = self.k.cpu_rq(src_cpu)
        src_cid = self._sched_mm_cid_migrate_from_fetch_cid(src_rq, t, src_pcpu_cid)
        if src_cid == -1:
            return
        src_cid = self._sched_mm_cid_migrate_from_try_steal_cid(src_rq, t, src_pcpu_cid, src_cid)
        if src_cid == -1:
            return
        if not self.dst_cid_is_free(dst_pcpu_cid, dst_cid):
            self._mm_cid_put(mm, src_cid)
            return
        # Move src_cid to dst cpu.
        self.mm_cid_snapshot_time(dst_rq, mm)
        WRITE_ONCE(dst_pcpu_cid, "cid", src_cid)

    def dst_cid_is_free(self, dst_pcpu_cid, dst_cid):
        """v6.4 tests ``mm_cid_is_unset(dst_cid)`` (v6.13 also looks at recent_cid)."""
        return mm_cid_is_unset(dst_cid)

    def migrate_to_allowed(self, mm, t):
        """v6.4 compares mm_users with ``t->nr_cpus_allowed`` (v6.13: the mm's)."""
        return t.nr_cpus_allowed

    def note_got_cid(self, rq, mm, pcpu_cid, cid):
        """Not kernel code: records the cause of v6.4's recorded finding when
        it happens.  @rq's CPU, switching in its newest rq->curr (what the
        machine's attributes hold are the stores executed last), has read
        @cid from its slot of @mm.  A valid cid read while the slot's newest
        value is UNSET is a stale load: a remote clear (this CPU's own stores
        it cannot miss) took the cid the switch now runs with."""
        reads = self.cid_reads.get(mm)
        if reads is None:
            reads = self.cid_reads[mm] = {}
        reads[rq.cpu] = (rq.curr, cid)
        if mm_cid_is_valid(cid) and mm_cid_is_unset(pcpu_cid.cid):
            self.k.causes.add(CLEARED_CID_IN_USE)

    def note_cleared_cid(self, rq, mm, cid):
        """Not kernel code: a remote path has just cleared @cid of @rq's CPU,
        having read an rq->curr that does not use @mm.  If the newest rq->curr
        uses @mm and its switch has read @cid already (note_got_cid()), the
        remote path's load of rq->curr was stale and took a cid in use."""
        curr = rq.curr
        if curr.mm is mm and curr.mm_cid_active and \
                self.cid_reads.get(mm, {}).get(rq.cpu) == (curr, cid):
            self.k.causes.add(CLEARED_CID_IN_USE)

    # -- kernel/sched/core.c: remote clear and the scan ----------------------------------------------

    def sched_mm_cid_remote_clear(self, mm, pcpu_cid, cpu):
        rq = self.k.cpu_rq(cpu)
        cid = READ_ONCE(pcpu_cid, "cid")
        if not mm_cid_is_valid(cid):
            return
        # Clear the cpu cid if it is set to keep cid allocation compact.  If
        # there happens to be other tasks left on the source cpu using this mm,
        # the next task using this mm will reallocate its cid on context switch.
        lazy_cid = mm_cid_set_lazy_put(cid)
        ok, _ = try_cmpxchg(pcpu_cid, "cid", cid, lazy_cid)
        if not ok:
            return
        # The implicit barrier after cmpxchg per-mm/cpu cid before loading
        # rq->curr->mm matches the scheduler barrier in context_switch().
        #
        # If we observe an active task using the mm on this rq after setting
        # the lazy-put flag, that task will be responsible for transitioning
        # from lazy-put flag set to MM_CID_UNSET.
        t = READ_ONCE(rq, "curr")
        if READ_ONCE(t, "mm_cid_active") and t.mm is mm:
            return
        # The cid is unused, so it can be unset.  Disable interrupts to keep
        # the window of cid ownership without rq lock small.
        flags = self.k.local_irq_save()
        ok, _ = try_cmpxchg(pcpu_cid, "cid", lazy_cid, MM_CID_UNSET)
        if ok:
            self.note_cleared_cid(rq, mm, cid)
            self._mm_cid_put(mm, cid)
        self.k.local_irq_restore(flags)

    def sched_mm_cid_remote_clear_old(self, mm, cpu):
        rq = self.k.cpu_rq(cpu)
        # rq->clock load is racy on 32-bit but one spurious clear once in a
        # while is irrelevant.
        rq_clock = READ_ONCE(rq, "clock")
        pcpu_cid = mm.pcpu_cid[cpu]
        # In order to take care of infrequently scheduled tasks, bump the time
        # snapshot associated with this cid if an active task using the mm is
        # observed on this rq.
        curr = READ_ONCE(rq, "curr")
        if READ_ONCE(curr, "mm_cid_active") and curr.mm is mm:
            WRITE_ONCE(pcpu_cid, "time", rq_clock)
            return
        if rq_clock < pcpu_cid.time + SCHED_MM_CID_PERIOD_NS:
            return
        self.sched_mm_cid_remote_clear(mm, pcpu_cid, cpu)

    def sched_mm_cid_remote_clear_weight(self, mm, cpu, weight):
        pcpu_cid = mm.pcpu_cid[cpu]
        cid = READ_ONCE(pcpu_cid, "cid")
        if not mm_cid_is_valid(cid) or cid < weight:
            return
        self.sched_mm_cid_remote_clear(mm, pcpu_cid, cpu)

    def task_mm_cid_work(self, work):
        k = self.k
        t = k.cur
        now = k.jiffies
        if work is not t.cid_work:
            raise KernelBug(f"WARNING: task_mm_cid_work() run by {t!r} for another task's work")
        work.next = work            # Prevent double-add
        if t.flags & PF_EXITING:
            return
        mm = t.mm
        if mm is None:
            return
        old_scan = READ_ONCE(mm, "mm_cid_next_scan")
        next_scan = now + k.msecs_to_jiffies(MM_CID_SCAN_DELAY)
        if not old_scan:
            res = cmpxchg(mm, "mm_cid_next_scan", old_scan, next_scan)
            old_scan = res if res != old_scan else next_scan
        if now < old_scan:          # time_before(now, old_scan)
            return
        ok, _ = try_cmpxchg(mm, "mm_cid_next_scan", old_scan, next_scan)
        if not ok:
            return
        self.mm_cid_scan(mm)

    def mm_cid_scan(self, mm):
        """The two passes of task_mm_cid_work() over every possible CPU."""
        k = self.k
        token = k.scan_begin("task_mm_cid_work")
        cidmask = self.mm_cidmask(mm)
        # Clear cids that were not recently used.
        for cpu in range(k.nr_cpu_ids):
            self.sched_mm_cid_remote_clear_old(mm, cpu)
            k.charge(SCAN_NS_PER_CPU)
        weight = cpumask_weight(cidmask.bits)
        # Clear cids that are greater or equal to the cidmask weight to
        # recompact it.
        for cpu in range(k.nr_cpu_ids):
            self.sched_mm_cid_remote_clear_weight(mm, cpu, weight)
        k.scan_end(token)

    def init_sched_mm_cid(self, t):
        mm = t.mm
        if mm is not None:
            if mm.mm_users.counter == 1:
                mm.mm_cid_next_scan = self.k.jiffies + self.k.msecs_to_jiffies(MM_CID_SCAN_DELAY)
        t.cid_work.next = t.cid_work      # Protect against double add

    def task_tick_mm_cid(self, rq, curr):
        work = getattr(curr, "cid_work", None)
        now = self.k.jiffies
        if curr.mm is None or curr.flags & (PF_EXITING | PF_KTHREAD) or work.next is not work:
            return
        if now < READ_ONCE(curr.mm, "mm_cid_next_scan"):
            return
        self.k.task_work_add(curr, work, TWA_RESUME)

    # -- kernel/sched/core.c: exit and exec ---------------------------------------------------------

    def sched_mm_cid_exit_signals(self, t):
        mm = t.mm
        if mm is None:
            return
        preempt_disable()
        rq = self.k.this_rq()
        flags = self.k.rq_lock_irqsave(rq)
        preempt_enable_no_resched()     # holding spinlock
        WRITE_ONCE(t, "mm_cid_active", 0)
        # Store t->mm_cid_active before loading per-mm/cpu cid.
        # Matches barrier in sched_mm_cid_remote_clear_old().
        smp_mb()
        self.mm_cid_put(mm)
        t.last_mm_cid = t.mm_cid = -1
        self.k.rq_unlock_irqrestore(rq, flags)

    sched_mm_cid_before_execve = sched_mm_cid_exit_signals

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
        t.last_mm_cid = t.mm_cid = self.mm_cid_get(rq, mm)
        self.k.rq_unlock_irqrestore(rq, flags)
        self.k.rseq_set_notify_resume(t)

    def sched_mm_cid_fork(self, t):
        if t.mm is None or t.mm_cid != -1:
            raise KernelBug(f"WARNING: sched_mm_cid_fork({t!r}): no mm or cid already set")
        t.mm_cid_active = 1

    # -- what user space sees, and what the invariants ask -----------------------------------------

    def task_mm_cid(self, t):
        return t.mm_cid

    def cid_active(self, t):
        return t.mm_cid_active and t.mm_cid >= 0

    # Owners: every CPU slot that is not unset (valid or lazy-put: the bit
    # goes with the UNSET transition), and a running task's copy of its
    # CPU's cid (t->mm_cid, -1 once it switches out: not watched).
    keeps_cid_bitmap = True

    def task_cid_value(self, t):
        return t.mm_cid

    def cid_slots(self, mm):
        return () if mm.pcpu_cid is None else mm.pcpu_cid

    def owned_cid(self, kind, value):
        if kind == "task":
            return value if value >= 0 else -1
        return -1 if mm_cid_is_unset(value) else mm_cid_clear_lazy_put(value)

    def cid_text(self, value):
        return _cid_repr(value) if value >= 0 else str(value)

    def cidmask_bits(self, mm):
        return mm.cidmask.bits

    def cpu_state(self, rq):
        curr = rq.curr
        if curr.mm is None or getattr(curr.mm, "pcpu_cid", None) is None:
            return ""
        return (f"mm_cid={curr.mm_cid} pcpu_cid={_cid_repr(curr.mm.pcpu_cid[rq.cpu].cid)} "
                f"cidmask={curr.mm.cidmask!r}")

    def coverage_state(self, mm):
        """What the searches' coverage (emulator.explore.coverage) counts as
        this mm's state: whether the bitmap has a free cid below the era's
        bound, whether a CPU's cid is marked for lazy put, and cid_lock in
        use (the allocation's slow path)."""
        if mm.pcpu_cid is None:
            return None
        bound = self.cid_bound(mm)
        lazy = any(mm_cid_is_lazy_put(pcpu_cid.cid) for _, pcpu_cid in touched(mm.pcpu_cid))
        return ("room" if ~mm.cidmask.bits & ((1 << bound) - 1) else "full", lazy,
                bool(self.use_cid_lock))
