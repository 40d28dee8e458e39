"""Seed 001: "[RFC PATCH v3] sched: Fix performance regression introduced by mm_cid".

Copies the posting (Mathieu Desnoyers, 2023-04-05, on v6.3-rc5; mm_cid.md 3.2,
seeds/001), function by function, on top of the v6.3 class it patches:

- ``int __percpu *mm->pcpu_cid``: each mm keeps the cid it last allocated on
  each CPU, serialized by that CPU's rq lock; ``MM_CID_UNSET`` (-1U, "has
  lazy_put flag set") and ``MM_CID_LAZY_PUT`` (1U << 31) encode its states;
  ``task->last_mm_cid`` remembers the cid a task last ran with;
- ``mm_alloc_cid()``/``mm_destroy_cid()`` allocate and free the per-CPU ints
  (mm_init() and __mmdrop()); ``mm_init_cid()`` (from mm_alloc_cid() and
  exec_mmap()) unsets them and clears the mask;
- ``mm_cid_get()`` reuses the CPU's cid, or allocates the first zero bit of the
  cidmask under ``mm->cid_lock`` (which the RFC keeps; the set is atomic because
  the clears are lock-free); ``switch_mm_cid()`` puts prev's cid only if a
  migration flagged it lazy-put, and has no same-mm hand-over any more;
- ``sched_mm_cid_migrate_from()`` (set_task_cpu(), with or without the source
  rq lock) clears the source CPU's cid if it is the migrated task's last cid
  and no task of the mm runs there: cmpxchg to LAZY, re-check ``rq->curr``,
  cmpxchg to UNSET, put; ``sched_mm_cid_migrate_to()`` (activate_task(), dst rq
  lock held) unsets a destination cid larger than the task's last cid, or
  flags it LAZY if the destination's current task uses it.  The source cid is
  *not* moved to the destination: "passing ownership of the mm_cid value to
  the destination cpu while an actively running tasks also has its own mm_cid
  value (in case of lazy reclaim on next context switch) would over-allocate
  mm_cid values beyond the number of possible cpus".  The two halves are kept
  apart so that a patch can override sched_mm_cid_migrate_to() to move it;
- exit_signals/before_execve/after_execve take the local rq lock,
  ``WRITE_ONCE(t->mm_cid_active)``, ``smp_mb()``, then put or get.

Call site: the RFC calls sched_mm_cid_migrate_to() from activate_task() only
for ``task_on_rq_migrating(p)`` tasks (load balancing, affinity moves), not for
a wake-up that migrates (ttwu, whose set_task_cpu() does run
sched_mm_cid_migrate_from()): its migrate_to_in_activate_task() says so to the
model's activate_task().  Aaron Lu asked about this asymmetry on v7
(20230417101855.GA485797@ziqianlu-desk2); v6.4 calls it for every
ENQUEUE_MIGRATED enqueue.

Departures:
- no RCU: ``rcu_read_lock(); rcu_dereference(src_rq->curr)`` is a
  ``READ_ONCE(src_rq->curr)``; the loads of ``src_task->mm_cid_active``, which
  the posting does plainly and pairs with the barrier of exit/execve, are
  READ_ONCE so that exploration can interleave there;
- under the default sequentially consistent model barriers are counted
  scheduling points and a missing barrier cannot show; under
  ``--memory-model weak`` it can (see below);
- the per-CPU ints hold C ``int`` values: MM_CID_UNSET is -1 and a lazy-put
  cid is negative (``mm_cid_set_lazy_put()`` converts back to int as C does);
- the error paths of mm_init() (fail_cid, -ENOMEM) are not modelled: allocation
  does not fail.

Review outcome (mm_cid.md 3.2), kept as posted, not fixed:
- Mathieu found a missing barrier in his own RFC
  (fdaa7242-4ddd-fbe2-bc0e-6c62054dbde8@efficios.com, 2023-04-07): between the
  store to ``rq->curr`` in __schedule() and the load of the per-CPU cid in
  switch_mm_cid() (mm_cid_get() for next, mm_cid_put_lazy() for prev) there
  is none, so the Dekker pairing with migrate_from's cmpxchg(LAZY)-then-load
  of ``rq->curr`` fails: "Migrate-from should _never_ mark a per-cpu cid UNSET
  when it is actively used by a task" (scenario A, store of a task of the mm)
  and a cid may leak on a CPU with no user left (scenario B).  His follow-up
  (3b4684ea-...) adds barriers at the top of switch_mm_cid(), as v6.4 has
  them.  Here switch_mm_cid() has none: under sc no run can show the
  reordering; under weak the stress search meets scenario A (the recorded
  finding SEED_001_MISSING_SWITCH_BARRIER);
- Peter Zijlstra, on that follow-up: "What about the user->user case where
  next->mm == prev->mm ? There sys_membarrier() relies on
  finish_task_switch()'s mmdrop(), but we can't."
  (20230411093705.GB578657@hirez...), the shorter ``if (!prev->mm !=
  !next->mm) smp_mb();`` (20230411102532.GA580235@hirez...), and the clash
  with Nick Piggin's lazy-TLB series (20230411110344.GC576825@hirez...).
v4..v10 reworked the patch into v6.4 (mm_cid_v6_4.py), which moves the cid on
migration and adds the task_mm_cid_work scan, and retries the allocation when the
mask is "temporarily filled ... during concurrent remote-clear": the RFC gives up
(-1), which the weak stress search also met (SEED_001_MASK_TEMPORARILY_FULL; under
sc a pause between migrate_from's unset and its clear of the bit would show it).
That one is not in the review outcome mm_cid.md gives; v6.4's comment names it.

With no scan, a CPU's cid is released only by a migration or an exit: the
compaction mirror's leader keeps its CPU's high cid (mm_cid.md 1.5).
"""

from ..checks.invariants import InvariantViolation
from ..errors import KernelBug
from ..kernel.cpumask import Cpumask, cpumask_first_zero
from ..kernel.percpu import percpu, touched
from ..kernel.task import TASK_ON_RQ_MIGRATING
from ..kernel.locking import (
    READ_ONCE, WRITE_ONCE, cmpxchg, cpumask_clear_cpu, cpumask_set_cpu, preempt_disable,
    preempt_enable_no_resched, raw_spin_lock, raw_spin_unlock, raw_spinlock_t, smp_mb,
)
from . import register
from .base import Finding
from .mm_cid_v6_3 import MmCidV6_3

# enum mm_cid_state, as the int a per-CPU slot holds.
MM_CID_UNSET = -1                  # -1U: "Unset state has lazy_put flag set."
MM_CID_LAZY_PUT = 1 << 31


def _int(v):
    """The C int conversion of a 32-bit pattern."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & MM_CID_LAZY_PUT else v


def mm_cid_is_unset(cid):
    return cid == MM_CID_UNSET


def mm_cid_is_lazy_put(cid):
    return not mm_cid_is_unset(cid) and bool(cid & MM_CID_LAZY_PUT)


def mm_cid_is_valid(cid):
    return not cid & MM_CID_LAZY_PUT


def mm_cid_set_lazy_put(cid):
    return _int(cid | MM_CID_LAZY_PUT)


def mm_cid_clear_lazy_put(cid):
    return _int(cid & ~MM_CID_LAZY_PUT)


def _cid_repr(cid):
    if mm_cid_is_unset(cid):
        return "UNSET"
    if mm_cid_is_lazy_put(cid):
        return f"{mm_cid_clear_lazy_put(cid)}|LAZY"
    return str(cid)


class pcpu_int:
    """One CPU's ``int`` of ``alloc_percpu(int)``: ``*per_cpu_ptr(mm->pcpu_cid, cpu)``
    is ``mm.pcpu_cid[cpu].cid``, a field the primitives read and cmpxchg."""

    __slots__ = ("cid",)

    def __init__(self, cid=0):
        self.cid = cid              # alloc_percpu() zeroes

    def __repr__(self):
        return _cid_repr(self.cid)


# The causes of seed 001's recorded findings (known_findings below), noted when they happen.
MASK_FULL_DURING_REMOTE_CLEAR = (
    "__mm_cid_get_locked() found the cidmask full while a migration's release of a CPU's "
    "cid had unset the slot but its clear of the bit was not done yet, or not yet seen")

SEED_001_MASK_TEMPORARILY_FULL = (
    "seed 001 (RFC v3) gives up (-1) when __mm_cid_get_locked() finds no zero bit, but "
    "sched_mm_cid_migrate_from() releases a CPU's cid with neither that CPU's rq lock nor "
    "cid_lock: it unsets the slot (cmpxchg), then clears the bit (cpumask_clear_cpu()).  A "
    "CPU switching in a thread of the mm in between, every cid taken, finds the mask full "
    "and the thread runs with mm_cid -1 (rseq's WARN_ON_ONCE).  v6.4 (223baf9d17f2) retries "
    "instead: \"Retry finding first zero bit if the mask is temporarily filled. This only "
    "happens during concurrent remote-clear which owns a cid without holding a rq lock.\"  "
    "Found by the stress search under --memory-model weak (the clear seen late: "
    "explore --variant seed-001 --memory-model weak --workload stress); under sc only a "
    "pause between the two steps shows it.")

MIGRATE_FROM_CLEARED_CID_IN_USE = (
    "sched_mm_cid_migrate_from() read the source CPU's rq->curr from before a switch into "
    "the mm whose switch_mm_cid() had read, or then read, the cid it set lazy-put and "
    "cleared")

SEED_001_MISSING_SWITCH_BARRIER = (
    "seed 001 (RFC v3) has no barrier between the store to rq->curr in __schedule() and "
    "the load of the per-mm/cpu cid in switch_mm_cid(), so the pairing with "
    "sched_mm_cid_migrate_from()'s cmpxchg to lazy-put then load of rq->curr fails "
    "(store buffering): a CPU switching in a thread of the mm reads its cid as valid (or "
    "allocates one, whose store a migration sees before the one to rq->curr), while a "
    "migration off that CPU reads rq->curr from before the switch, takes the cid as "
    "unused and clears it.  The thread runs with a cid whose bit is clear (P11), which "
    "another CPU may be given (P1).  Mathieu Desnoyers' review of his own RFC, scenario A "
    "(fdaa7242-4ddd-fbe2-bc0e-6c62054dbde8@efficios.com, 2023-04-07: \"Migrate-from "
    "should _never_ mark a per-cpu cid UNSET when it is actively used by a task\"); his "
    "follow-up added barriers at the top of switch_mm_cid(), as v6.4 has them.  Under "
    "--memory-model weak only.  Found by the stress search (explore --variant seed-001 "
    "--memory-model weak --workload stress).")


@register
class MmCidSeed001(MmCidV6_3):
    name = "seed-001"
    copies = ("[RFC PATCH v3] sched: Fix performance regression introduced by mm_cid "
              "(2023-04-05, on v6.3-rc5)")
    known_findings = (
        Finding(KernelBug, MASK_FULL_DURING_REMOTE_CLEAR, SEED_001_MASK_TEMPORARILY_FULL,
                function="rseq_update_cpu_node_id", mm_cid=-1),
        Finding(InvariantViolation, MIGRATE_FROM_CLEARED_CID_IN_USE, SEED_001_MISSING_SWITCH_BARRIER,
                invariant=("P1", "P11")),
    )
    NOT_KERNEL_FUNCTIONS = MmCidV6_3.NOT_KERNEL_FUNCTIONS + (
        "note_mask_full", "note_got_cid", "note_cleared_cid")

    def __init__(self, kernel):
        super().__init__(kernel)
        # Not kernel code: the cids a migration has unset in a CPU's slot and
        # not yet cleared in the mask, per mm (note_mask_full()).
        self.releasing = {}             # mm -> [cid, ...]
        # What each CPU's switch last read of each mm's slot, and for which
        # task (note_got_cid()).
        self.cid_reads = {}             # mm -> {cpu: (task, cid)}

    def migrate_to_in_activate_task(self, rq, t, flags):
        """activate_task(): `if (task_on_rq_migrating(p)) { flags |=
        ENQUEUE_MIGRATED; sched_mm_cid_migrate_to(rq, p); }` -- not for
        migrating wake-ups."""
        if t.on_rq == TASK_ON_RQ_MIGRATING:
            self.sched_mm_cid_migrate_to(rq, t)

    # -- include/linux/mm_types.h, include/linux/sched.h, kernel/fork.c ----------------------

    def init_task_fields(self, t):
        # dup_task_struct()
        t.mm_cid = -1
        t.last_mm_cid = -1
        t.mm_cid_active = 0

    def mm_alloc_cid(self, mm, p):
        # mm_init(): `if (mm_alloc_cid(mm)) goto fail_cid;` in place of the
        # mm_init_cid(mm) call at its end.
        # alloc_percpu(int), each set to -1 by mm_init_cid() below
        mm.pcpu_cid = percpu(lambda cpu: pcpu_int(-1), self.k.nr_cpu_ids)
        self.mm_init_cid(mm, p)
        return 0

    def mm_init_cid(self, mm, p):
        mm.cid_lock = raw_spinlock_t(f"{mm!r}->cid_lock")     # raw_spin_lock_init()
        # The machine's init_mm has no per-CPU ints, as the kernel's
        # (pcpu_cid is NULL): no task of init_mm has mm_cid_active.
        if getattr(mm, "pcpu_cid", None) is not None:
            for _, pcpu in touched(mm.pcpu_cid):       # for_each_possible_cpu(i); the
                pcpu.cid = -1                               # others are made so
        mm.cidmask = Cpumask()                                  # cpumask_clear(mm_cidmask(mm))
        self.watch_cids(mm)             # not kernel code: the mm_cid tracepoints

    def mm_destroy_cid(self, mm):
        # free_percpu(mm->pcpu_cid)
        mm.pcpu_cid = None
        self.releasing.pop(mm, None)        # not kernel code: the notes forget @mm
        self.cid_reads.pop(mm, None)

    def exec_mmap(self, mm):
        # fs/exec.c, unchanged by the RFC: mm_init_cid(mm) on the new mm.
        self.mm_init_cid(mm, self.k.cur)

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
        k = self.k
        mm = t.mm
        k.lockdep_assert_rq_held(k.this_rq())
        pcpu_cid = mm.pcpu_cid[k.smp_processor_id()]           # this_cpu_ptr()
        cid = READ_ONCE(pcpu_cid, "cid")
        if not mm_cid_is_lazy_put(cid):
            return
        if cmpxchg(pcpu_cid, "cid", cid, MM_CID_UNSET) != cid:
            return
        self._mm_cid_put(mm, mm_cid_clear_lazy_put(cid))

    def mm_cid_put(self, t):
        k = self.k
        mm = t.mm
        k.lockdep_assert_rq_held(k.this_rq())
        if t.mm_cid < 0:
            raise KernelBug(f"WARNING: mm_cid_put({t!r}): t->mm_cid {t.mm_cid} < 0")
        pcpu_cid = mm.pcpu_cid[k.smp_processor_id()]           # this_cpu_ptr()
        cid = READ_ONCE(pcpu_cid, "cid")
        while True:
            if mm_cid_is_unset(cid):
                return
            if mm_cid_clear_lazy_put(cid) != t.mm_cid:
                raise KernelBug(f"WARNING: mm_cid_put({t!r}): CPU {k.cpu} cid {_cid_repr(cid)} "
                                f"!= t->mm_cid {t.mm_cid}")
            # Attempt transition from valid or lazy-put to unset.
            res = cmpxchg(pcpu_cid, "cid", cid, MM_CID_UNSET)
            if res == cid:
                break
            cid = res
        self._mm_cid_put(mm, mm_cid_clear_lazy_put(cid))

    def _mm_cid_get_locked(self, mm):
        """__mm_cid_get_locked(): lookup/set of mm_cidmask are serialized by
        cid_lock.  Clear of mm_cidmask uses atomic operations, therefore
        requiring the set to be done with atomic operations as well."""
        cpumask = self.mm_cidmask(mm)
        cid = cpumask_first_zero(READ_ONCE(cpumask, "bits"))
        if cid >= self.k.nr_cpu_ids:
            self.note_mask_full(mm)
            return -1
        cpumask_set_cpu(cid, cpumask)
        return cid

    def _mm_cid_get(self, mm):
        """__mm_cid_get()"""
        k = self.k
        k.lockdep_assert_rq_held(k.this_rq())
        raw_spin_lock(mm.cid_lock)
        ret = self._mm_cid_get_locked(mm)
        raw_spin_unlock(mm.cid_lock)
        return ret

    def mm_cid_get(self, mm):
        k = self.k
        k.lockdep_assert_rq_held(k.this_rq())
        pcpu_cid = mm.pcpu_cid[k.smp_processor_id()]           # this_cpu_ptr()
        cid = READ_ONCE(pcpu_cid, "cid")
        self.note_got_cid(k.this_rq(), mm, pcpu_cid, cid)
        if mm_cid_is_valid(cid):
            return cid
        if mm_cid_is_lazy_put(cid):
            if cmpxchg(pcpu_cid, "cid", cid, MM_CID_UNSET) == cid:
                self._mm_cid_put(mm, mm_cid_clear_lazy_put(cid))
        raw_spin_lock(mm.cid_lock)
        cid = self._mm_cid_get_locked(mm)
        raw_spin_unlock(mm.cid_lock)
        WRITE_ONCE(pcpu_cid, "cid", cid)
        return cid

    def switch_mm_cid(self, rq, prev, next):
        # As posted: no barrier between the store to rq->curr in __schedule()
        # and the loads of the per-mm/cpu cid below (the review's finding).
        if prev.mm_cid_active:
            self.mm_cid_put_lazy(prev)
            prev.mm_cid = -1
        if next.mm_cid_active:
            next.last_mm_cid = next.mm_cid = self.mm_cid_get(next.mm)

    # -- kernel/sched/core.c: migration ---------------------------------------------------------

    def sched_mm_cid_migrate_from(self, t):
        """Migration from src cpu. Called from set_task_cpu(). There are no
        guarantees that the rq lock is held."""
        k = self.k
        mm = t.mm
        if mm is None:
            return
        last_mm_cid = t.last_mm_cid
        # If the migrated task has no last cid, or if the current
        # task on src rq uses the cid, it means the destination cpu
        # does not have to reallocate its cid to keep the cid allocation
        # compact.
        if last_mm_cid == -1:
            return
        src_rq = k.task_rq(t)
        src_pcpu_cid = mm.pcpu_cid[src_rq.cpu]                  # per_cpu_ptr(, cpu_of(src_rq))
        src_cid = READ_ONCE(src_pcpu_cid, "cid")
        if not mm_cid_is_valid(src_cid) or last_mm_cid != src_cid:
            return
        # If we observe an active task using the mm on this rq, it means we
        # are not the last task to be migrated from this cpu for this mm, so
        # there is no need to clear the src_cid.
        src_task = READ_ONCE(src_rq, "curr")                   # rcu_dereference(src_rq->curr)
        if READ_ONCE(src_task, "mm_cid_active") and src_task.mm is mm:
            t.last_mm_cid = -1
            return
        # If the source cpu cid is set, and matches the last cid of the
        # migrated task, clear the source cpu cid to keep cid allocation
        # compact to cover the case where this task is the last task using
        # this mm on the source cpu. If there happens to be other tasks left
        # on the source cpu using this mm, the next task using this mm will
        # reallocate its cid on context switch.
        #
        # We cannot keep ownership of concurrency ID without runqueue
        # lock held when it is not used by a current task, because it
        # would lead to allocation of more concurrency ids than there
        # are possible cpus in the system. The last_mm_cid is used as
        # a hint to conditionally unset the dst cpu cid, keeping
        # allocated concurrency ids compact.
        if cmpxchg(src_pcpu_cid, "cid", src_cid, mm_cid_set_lazy_put(src_cid)) != src_cid:
            return
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

        # If we observe an active task using the mm on this rq after setting
        # the lazy-put flag, this task will be responsible for transitioning
        # from lazy-put flag set to MM_CID_UNSET.
        src_task = READ_ONCE(src_rq, "curr")                   # rcu_dereference(src_rq->curr)
        if READ_ONCE(src_task, "mm_cid_active") and src_task.mm is mm:
            # We observed an active task for this mm, clearing the destination
            # cpu mm_cid is not relevant for compactness.
            t.last_mm_cid = -1
            return
        # The src_cid is unused, so it can be unset.
        if cmpxchg(src_pcpu_cid, "cid", mm_cid_set_lazy_put(src_cid), MM_CID_UNSET) \
                != mm_cid_set_lazy_put(src_cid):
            return
        self.note_cleared_cid(src_rq, mm, src_cid)        # not kernel code: the notes
        releasing = self.releasing.setdefault(mm, [])
        releasing.append(src_cid)
        self._mm_cid_put(mm, src_cid)
        releasing.remove(src_cid)

    def note_mask_full(self, mm):
        """Not kernel code: records the cause of seed 001's recorded finding
        when it happens.  __mm_cid_get_locked() found no zero bit in @mm's
        mask: the cause if a migration is between unsetting a CPU's cid and
        clearing its bit, or has cleared it and this CPU read the mask from
        before (its newest value, what the machine's attribute holds, has a
        zero bit)."""
        if self.releasing.get(mm) or \
                cpumask_first_zero(self.mm_cidmask(mm).bits) < self.k.nr_cpu_ids:
            self.k.causes.add(MASK_FULL_DURING_REMOTE_CLEAR)

    def note_got_cid(self, rq, mm, pcpu_cid, cid):
        """Not kernel code: records the cause of seed 001's other recorded
        finding when it happens.  @rq's CPU, switching in its newest rq->curr,
        has read @cid from its slot of @mm.  A valid cid read while the slot's
        newest value is not (lazy-put or unset) is a stale load: a migration
        off this CPU (this CPU's own stores it cannot miss) is taking the cid
        the switch now runs with."""
        reads = self.cid_reads.get(mm)
        if reads is None:
            reads = self.cid_reads[mm] = {}
        reads[rq.cpu] = (rq.curr, cid)
        if mm_cid_is_valid(cid) and not mm_cid_is_valid(pcpu_cid.cid):
            self.k.causes.add(MIGRATE_FROM_CLEARED_CID_IN_USE)

    def note_cleared_cid(self, rq, mm, cid):
        """Not kernel code: a migration has just unset @cid of @rq's CPU,
        having read an rq->curr that does not use @mm.  If the newest rq->curr
        uses @mm and its switch has read @cid already (note_got_cid()) or
        runs with it (it allocated @cid, and the migration saw that store but
        not the earlier one to rq->curr), the migration's load of rq->curr was
        stale and took a cid in use."""
        curr = rq.curr
        if curr.mm is mm and curr.mm_cid_active and \
                (curr.mm_cid == cid or self.cid_reads.get(mm, {}).get(rq.cpu) == (curr, cid)):
            self.k.causes.add(MIGRATE_FROM_CLEARED_CID_IN_USE)

    def sched_mm_cid_migrate_to(self, dst_rq, t):
        """Migration to dst cpu. Called with dst_rq lock held."""
        mm = t.mm
        self.k.lockdep_assert_rq_held(dst_rq)
        src_cid = t.last_mm_cid
        if mm is None or src_cid == -1:
            return
        dst_pcpu_cid = mm.pcpu_cid[dst_rq.cpu]                  # per_cpu_ptr(, cpu_of(dst_rq))
        # If destination cpu cid is greater than the source cpu cid, unset it
        # so it can be reallocated.
        dst_cid = READ_ONCE(dst_pcpu_cid, "cid")
        if not mm_cid_is_valid(dst_cid) or dst_cid <= src_cid:
            return
        # Put dst_cid if it is not currently in use, else it will be lazy put
        # on the next context switch.
        dest_task = dst_rq.curr
        if dest_task.mm_cid_active and dest_task.mm is mm:
            if dest_task.mm_cid != dst_cid:
                raise KernelBug(f"WARNING: sched_mm_cid_migrate_to(rq{dst_rq.cpu}, {t!r}): "
                                f"{dest_task!r} runs with mm_cid {dest_task.mm_cid}, "
                                f"CPU cid {dst_cid}")
            # Attempt to set lazy-put flag. Can fail due to concurrent
            # migrate-from, which sets lazy-put flag or MM_CID_UNSET.
            cmpxchg(dst_pcpu_cid, "cid", dst_cid, mm_cid_set_lazy_put(dst_cid))
            return
        # Attempt to set MM_CID_UNSET. Can fail due to concurrent
        # migrate-from, which sets lazy-put flag or MM_CID_UNSET.
        if cmpxchg(dst_pcpu_cid, "cid", dst_cid, MM_CID_UNSET) != dst_cid:
            return
        self._mm_cid_put(mm, dst_cid)

    # -- kernel/sched/core.c: exit and exec ---------------------------------------------------------

    def sched_mm_cid_exit_signals(self, t):
        k = self.k
        mm = t.mm
        if mm is None:
            return
        preempt_disable()
        rq = k.this_rq()
        flags = k.rq_lock_irqsave(rq)
        preempt_enable_no_resched()     # holding spinlock
        WRITE_ONCE(t, "mm_cid_active", 0)
        # Store t->mm_cid_active before loading per-mm/cpu cid.
        # Matches barrier in sched_mm_cid_migrate_from().
        smp_mb()
        self.mm_cid_put(t)
        t.last_mm_cid = t.mm_cid = -1
        k.rq_unlock_irqrestore(rq, flags)

    # The posting's sched_mm_cid_before_execve() is the same code.
    sched_mm_cid_before_execve = sched_mm_cid_exit_signals

    def sched_mm_cid_after_execve(self, t):
        k = self.k
        mm = t.mm
        if mm is None:
            return
        preempt_disable()
        rq = k.this_rq()
        flags = k.rq_lock_irqsave(rq)
        preempt_enable_no_resched()     # holding spinlock
        WRITE_ONCE(t, "mm_cid_active", 1)
        # Store t->mm_cid_active before loading per-mm/cpu cid.
        # Matches barrier in sched_mm_cid_migrate_from().
        smp_mb()
        t.last_mm_cid = t.mm_cid = self.mm_cid_get(mm)
        k.rq_unlock_irqrestore(rq, flags)
        k.rseq_set_notify_resume(t)

    # sched_mm_cid_fork(): unchanged from v6.3.

    # -- what user space sees, and what the invariants ask -----------------------------------------

    # Owners: a task running with a cid, and every CPU slot that is not
    # unset (valid or lazy-put: the bit goes with the UNSET transition).

    def cid_slots(self, mm):
        slots = getattr(mm, "pcpu_cid", None)
        return () if slots is None else slots

    def owned_cid(self, kind, value):
        if kind == "task":
            return super().owned_cid(kind, value)
        return -1 if mm_cid_is_unset(value) else mm_cid_clear_lazy_put(value)

    def cid_text(self, value):
        return _cid_repr(value)

    def cpu_state(self, rq):
        curr = rq.curr
        if curr.mm is None or getattr(curr.mm, "pcpu_cid", None) is None:
            return ""
        return (f"mm_cid={curr.mm_cid} last_mm_cid={curr.last_mm_cid} "
                f"pcpu_cid={_cid_repr(curr.mm.pcpu_cid[rq.cpu].cid)} cidmask={curr.mm.cidmask!r}")
