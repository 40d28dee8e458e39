"""seed 003: Thomas Gleixner, "[patch V3 00/20] sched: Rewrite MM CID management"
(2025-10-29, msgid 20251029123717.886619142@linutronix.de), as posted.

The ownership-mode design of v7.0 before the fixes of February and March
2026.  Only what V3 did differently from v7.0 is overridden here:

- two hot-path words, ``percpu`` and ``transit``, instead of one ``mode``
  word (47ee94efccf6 merged them, for weakly ordered CPUs); no smp_mb() in
  mm_update_max_cids() and no mm_cid_complete_transit();
- MM_CID_TRANSIT only on the way back from per-CPU to per-task mode: the
  switch to per-CPU mode hands each running task's CID directly to its CPU
  (mm_cid_transfer_to_cpu(): ``t->mm_cid.cid |= MM_CID_ONCPU``) and
  mm_cid_from_cpu() knows no transition bit (4327fb13fa47 added both);
- ``pcpu_thrs = min(opt - opt/4, num_possible_cpus()/2)`` without the
  ``max(..., 1)`` of 14b2b17cca54;
- mm_cid_schedout() drops every TRANSIT CID (no 4463c7aa11a6);
- the exit() that switches back to per-task mode re-marks current's CID
  with mm_cid_transit_to_task() (007d84287c74 later just dropped it);
- mm_cid_fixup_tasks_to_cpus() walks current's thread group counting the
  users it found, then every thread of the system for CLONE_VM users
  (192d852129b1 replaced that by the per-mm user_list);
- sched_mm_cid_fork() runs from copy_mm(), before the new task is visible
  in the thread list (b2e48c429ec5 moved it to sched_post_fork()), and
  WARNs on a task without mm; sched_mm_cid_after_execve() calls it without
  checking t->mm (2bdf777410dc); sched_mm_cid_exit() runs from do_exit()
  (2b1642b88108, which by the series layout is V3 11/20: inferred);
- mm_drop_cid_on_cpu() clears ONCPU and drops without checking ONCPU first.

Confirmed from the V3 posting (the seed 003 thread): the commit message of
17/20 and the comment block it adds (``pcpu_thrs = min(opt_cids - (opt_cids
/ 4), num_possible_cpus() / 2)``, "mm:mm_cid.transit contains MM_CID_TRANSIT"
on the CPU-to-task transition only, the direct hand-over of the task walk),
Thomas's answer on why only mm_update_cpus_allowed() recomputes pcpu_thrs;
V3 12/20 and 13/20 (mm_init_cid() out of line, ``users``, the failed-fork
sched_mm_cid_exit(), sched_mm_cid_after_execve() calling sched_mm_cid_fork());
V3 15/20 (UNSET/ONCPU/TRANSIT, the helpers, mm_drop_cid_on_cpu() without
the ONCPU check, the "CID ownership" comment); the hunk of V3 20/20 quoted in
review (sched_mm_cid_exit() with the mutex and the "eventally" comment).

Inferred, not read in V3 itself: the bodies of 16/20 (context switch), 17/20
(mm_update_max_cids(), the fixup walks), 19/20 (deferred mode change) and
20/20 (sched_mm_cid_fork()/exit()) are copied from the V2 posting of 17/20
(20251022110556.459733969@linutronix.de) and from the V4 patches as applied
to tip core/rseq on 2025-11-20 (6fa1e9565d81, 9da6ccbcea3d, 2635fb0f0973),
which agree with each other and with every V3 fragment quoted in review;
per-CPU slots start at 0, as the V1 posting of the deferred-mode-change
patch already removed the UNSET initialisation.  The failed-fork cleanup
call of sched_mm_cid_exit() is not modelled (the model's fork cannot fail
after copy_mm()).
"""

from ..errors import HardLockup
from ..kernel.bug import WARN_ON_ONCE
from ..kernel.locking import (
    READ_ONCE, WRITE_ONCE, lockdep_assert_held, mutex_lock, mutex_unlock, preempt_disable,
    preempt_enable,
)
from ..kernel.percpu import alloc_percpu
from . import register
from .base import Finding, SchedMmCid
from .mm_cid_v7_0 import (
    MM_CID_TRANSIT, MM_CID_UNSET, MmCidV7_0, _room, cid_from_transit_cid,
    cid_in_transit, cid_on_cpu, cid_on_task, cid_to_cpu_cid, cid_to_transit_cid,
    cpu_cid_to_cid, mm_cid_pcpu,
)


# Causes of V3's recorded findings (known_findings below), noted when they happen.
WALK_MISSED_CLONE_VM_USER = "V3's counting walk to per-CPU mode missed a vfork()ed user"
ZERO_PCPU_THRS = "V3's pcpu_thrs of 0 kept an mm with more users than cids in per-task mode"
WALK_MISSED_FORKING_CHILD = ("V3's walk to per-CPU mode missed the child of a concurrent fork, "
                             "a user with a CID but not yet in the thread list")
SCHEDIN_HANDED_OVER_IN_WALK = ("a schedule-in during V3's walk to per-CPU mode needed a new CID, its "
                               "own handed to another CPU, while tasks the walk had not reached "
                               "still owned theirs")
SCHEDIN_MISSED_TRANSIT = ("a schedule-in on the way back to per-task mode read mm_cid.transit "
                          "as 0 while MM_CID_TRANSIT was stored (its store not yet seen), so "
                          "the task kept a CID it had to drop when it left")


class mm_mm_cid:
    """struct mm_mm_cid as V3 has it: @percpu "Set, when CIDs are in per CPU
    mode", @transit "Set to MM_CID_TRANSIT during a mode change transition
    phase"; no @user_list."""

    __slots__ = ("pcpu", "percpu", "transit", "max_cids", "irq_work", "work", "lock", "mutex",
                 "nr_cpus_allowed", "users", "pcpu_thrs", "update_deferred")

    def __repr__(self):
        return (f"mm_cid(percpu={self.percpu} transit={int(bool(self.transit))} "
                f"users={self.users} max_cids={self.max_cids} pcpu_thrs={self.pcpu_thrs} "
                f"nr_cpus_allowed={self.nr_cpus_allowed})")


SEED_003_COUNTING_WALK = (
    "seed 003 (V3 as posted): mm_cid_fixup_tasks_to_cpus() "
    "stops on a count of the users it fixed, but its second loop (for_each_process_thread(), "
    "for CLONE_VM users such as a vfork()ed child) meets current's threads again and counts "
    "them twice, so it can stop before the child, whose CID stays task-owned in per-CPU "
    "mode.  With as many CIDs as possible CPUs one CPU then finds none for the task it "
    "schedules in and spins in mm_get_cid() with its runqueue lock held: a hard lockup "
    "(which a walk back to per-task mode, waiting for that lock, may report first).  "
    "192d852129b1 replaced \"the proven to be flaky counting logic\" by the per-mm "
    "user_list walk.")

SEED_003_ZERO_PCPU_THRS = (
    "seed 003 (V3 as posted) with one possible CPU: pcpu_thrs = min(opt - opt/4, "
    "num_possible_cpus()/2) is 0, which means \"per task\", so the second user leaves the mm "
    "in per-task mode with max_cids 1 and sched_mm_cid_fork() spins in mm_get_cid() for a "
    "second CID the one-bit bitmap cannot have, mm_cid.lock held: a hard lockup (Nathan "
    "Chancellor's report).  14b2b17cca54 \"Ensure that per CPU threshold is > 0\".")

SEED_003_CONCURRENT_FORK = (
    "seed 003 (V3 as posted): sched_mm_cid_fork() runs from copy_mm(), so a child is an "
    "mm_cid user owning a CID allocated in per-task mode before copy_process() adds it to "
    "the thread and task lists.  If its parent is preempted in that window and another "
    "thread's fork() switches the mm to per-CPU mode, mm_cid_fixup_tasks_to_cpus() cannot "
    "see the child, whose CID stays task-owned in per-CPU mode; its users count runs out on "
    "current's threads met again by the second loop, or the walk ends with the child never "
    "found.  With as many CIDs as possible CPUs one CPU then finds none for the task it "
    "schedules in and spins in mm_get_cid() with its runqueue lock held: a hard lockup "
    "(which a walk back to per-task mode, waiting for that lock, may report first).  "
    "Found by the stateful search (not one of the recorded triggers); the scenario of "
    "b2e48c429ec5 \"sched/mmcid: Prevent CID stalls due to concurrent forks\" (v7.0-rc, "
    "Fixes: fbd0e71dc370), which moved sched_mm_cid_fork() to sched_post_fork(), after the "
    "task is visible; 192d852129b1's user_list is filled under the same mutex.")

SEED_003_HANDOVER_LIVE_LOCK = (
    "seed 003 (V3 as posted): the switch to per-CPU mode hands CIDs over directly, with no "
    "transition mode, so while the forking task's walk has not reached them the other "
    "threads keep their task CIDs; one that schedules in hands its CID to its CPU, migrates, "
    "and on the next CPU, which has none, must allocate one with that runqueue lock held "
    "from a pool the unwalked threads exhaust: it spins in mm_get_cid(), and the walk "
    "spins on the runqueue lock it holds, a live lock.  Found by the weak-memory search, "
    "whose pause after the mode store left the walk behind; no stale read takes part (its "
    "one, of max_cids, does not matter here), so it is not a barrier bug, though sc never "
    "pauses there and a stateful key cannot ask it to.  The scenario of 4327fb13fa47 "
    "\"sched/mmcid: Prevent live lock on task to CPU mode transition\" (Ihor Solodrai's BPF "
    "CI report), which added MM_CID_TRANSIT on this transition too "
    "(mm_cid_transit_to_cpu()).")

SEED_003_WEAK_TRANSITION = (
    "seed 003 (V3 as posted) keeps the mode in two words stored one after the other, "
    "WRITE_ONCE(transit, MM_CID_TRANSIT) then WRITE_ONCE(percpu, 0), with no barrier between "
    "them or before the fixup walk, and mm_cid_schedin() reads percpu then transit with none: "
    "on a weakly ordered CPU a task scheduling in during the switch back to per-task mode can "
    "see percpu == 0 and transit == 0, take its CPU's CID without MM_CID_TRANSIT and keep it "
    "when it leaves; the next task scheduling in on that CPU finds the CID space exhausted "
    "and spins in mm_get_cid() with its runqueue lock held, and the walk spins on that lock: "
    "a hard lockup under weak, never under sc or tso.  Found by the weak stress search "
    "(campaign seed 4, 2026-12-07).  47ee94efccf6 \"sched/mmcid: Protect transition on weakly "
    "ordered systems\" (Shrikanth Hegde's PowerPC report) folds the two into one mode word "
    "and orders it with smp_mb() after the mode flip and before clearing TRANSIT.")

# What the watchdog sees of a CID leaked in per-CPU mode (what the locked-up CPU
# spins on, lock classes as lockdep names them): the CPU spinning in
# mm_get_cid() with its runqueue lock held, or first another CPU spinning on
# that lock, such as a fixup walk back to per-task mode that needs it ("the
# fixup thread can livelock on the held runqueue lock", 47ee94efccf6), or a
# task spinning on the mm_cid.mutex such a walk holds (mutex_lock()'s
# optimistic spin while the owner is on a CPU: an exiting thread of the walk's
# mm, found so by a campaign).
_LEAKED_CID_LOCKUP = ("cpu_relax() loop", "rq->__lock", "mm->mm_cid.mutex")


@register
class MmCidSeed003(MmCidV7_0):
    name = "seed-003"
    known_findings = (
        Finding(HardLockup, WALK_MISSED_CLONE_VM_USER, SEED_003_COUNTING_WALK,
                spinning_on=_LEAKED_CID_LOCKUP),
        Finding(HardLockup, ZERO_PCPU_THRS, SEED_003_ZERO_PCPU_THRS,
                spinning_on="cpu_relax() loop"),
        Finding(HardLockup, WALK_MISSED_FORKING_CHILD, SEED_003_CONCURRENT_FORK,
                spinning_on=_LEAKED_CID_LOCKUP),
        Finding(HardLockup, SCHEDIN_HANDED_OVER_IN_WALK, SEED_003_HANDOVER_LIVE_LOCK,
                spinning_on=_LEAKED_CID_LOCKUP),
        Finding(HardLockup, SCHEDIN_MISSED_TRANSIT, SEED_003_WEAK_TRANSITION,
                spinning_on=_LEAKED_CID_LOCKUP),
    )
    NOT_KERNEL_FUNCTIONS = MmCidV7_0.NOT_KERNEL_FUNCTIONS + ("note_walk_missed_users",
                                                             "note_zero_pcpu_thrs",
                                                             "note_schedin_allocates_in_walk",
                                                             "note_schedin_read_transit")
    copies = "Thomas Gleixner, [patch V3 00/20] sched: Rewrite MM CID management (2025-10-29)"
    # sched_mm_cid_fork() is called from copy_mm(), before the task is
    # visible in the thread and task lists (WALK_MISSED_FORKING_CHILD).
    fork_in_copy_mm = SchedMmCid.fork_in_copy_mm
    fork_in_sched_post_fork = SchedMmCid.fork_in_sched_post_fork
    PERCPU_TEST = "mm->mm_cid.percpu"

    def cancel_fork_in_bad_fork_cleanup_mm(self, t):
        """bad_fork_cleanup_mm: ``sched_mm_cid_exit(p)`` (current is the
        parent: "the failed pthread_create() cleanup case"), as fork.c had it
        until b2e48c429ec5."""
        self.sched_mm_cid_exit(t)

    @staticmethod
    def mm_cid_percpu(mc):
        return mc.percpu

    # -- kernel/sched/sched.h ----------------------------------------------------------------

    def mm_drop_cid_on_cpu(self, mm, pcp):
        # Clear the ONCPU bit, but do not set UNSET in the per CPU storage
        pcp.cid = cpu_cid_to_cid(pcp.cid)
        self.mm_drop_cid(mm, pcp.cid)

    def mm_cid_from_cpu(self, t, cpu_cid):
        tcid = t.mm_cid.cid
        mm = t.mm
        max_cids = READ_ONCE(mm.mm_cid, "max_cids")
        # Optimize for the common case where both have the ONCPU bit set
        if cid_on_cpu(cpu_cid & tcid):
            if cpu_cid_to_cid(cpu_cid) < max_cids:
                self.mm_cid_update_task_cid(t, cpu_cid)
                return
            # Try to converge into the optimal CID space
            cpu_cid = self.mm_cid_converge(mm, cpu_cid, max_cids)
        else:
            # Hand over or drop the task owned CID
            if cid_on_task(tcid):
                if cid_on_cpu(cpu_cid):
                    self.mm_unset_cid_on_task(t)
                else:
                    cpu_cid = cid_to_cpu_cid(tcid)
            # Still nothing, allocate a new one
            if not cid_on_cpu(cpu_cid):
                self.note_schedin_allocates_in_walk(t, mm, tcid)
                cpu_cid = cid_to_cpu_cid(self.mm_get_cid(mm))
        self.mm_cid_update_pcpu_cid(mm, cpu_cid)
        self.mm_cid_update_task_cid(t, cpu_cid)

    def mm_cid_from_task(self, t, cpu_cid):
        tcid = t.mm_cid.cid
        mm = t.mm
        max_cids = READ_ONCE(mm.mm_cid, "max_cids")
        # Optimize for the common case, where both have the ONCPU bit clear
        if cid_on_task(tcid | cpu_cid):
            if tcid < max_cids:
                self.mm_cid_update_pcpu_cid(mm, tcid)
                return
            # Try to converge into the optimal CID space
            tcid = self.mm_cid_converge(mm, tcid, max_cids)
        else:
            # Hand over or drop the CPU owned CID
            if cid_on_cpu(cpu_cid):
                if cid_on_task(tcid):
                    self.mm_drop_cid_on_cpu(mm, mm.mm_cid.pcpu[self.k.cpu])
                else:
                    tcid = cpu_cid_to_cid(cpu_cid)
            # Still nothing, allocate a new one
            if not cid_on_task(tcid):
                tcid = self.mm_get_cid(mm)
            # Set the transition mode flag if required
            transit = READ_ONCE(mm.mm_cid, "transit")
            self.note_schedin_read_transit(mm, transit)
            tcid |= transit
        self.mm_cid_update_pcpu_cid(mm, tcid)
        self.mm_cid_update_task_cid(t, tcid)

    def mm_cid_schedin(self, next):
        mm = next.mm
        if not next.mm_cid.active:
            return
        cpu_cid = mm.mm_cid.pcpu[self.k.cpu].cid      # __this_cpu_read()
        if not READ_ONCE(mm.mm_cid, "percpu"):
            self.mm_cid_from_task(next, cpu_cid)
        else:
            self.mm_cid_from_cpu(next, cpu_cid)

    def mm_cid_schedout(self, prev):
        # During mode transitions CIDs are temporary and need to be dropped
        if not cid_in_transit(prev.mm_cid.cid):
            return
        self.mm_drop_cid(prev.mm, cid_from_transit_cid(prev.mm_cid.cid))
        prev.mm_cid.cid = MM_CID_UNSET

    # -- kernel/sched/core.c -------------------------------------------------------------------
    #
    # Serialization rules:
    #
    # mm::mm_cid::mutex:   Serializes fork() and exit() and therefore
    #                      protects mm::mm_cid::users.
    #
    # mm::mm_cid::lock:    Serializes mm_update_max_cids() and
    #                      mm_update_cpus_allowed(). Nests in mm_cid::mutex
    #                      and runqueue lock.
    #
    # The mm_cidmask bitmap is not protected by any of the mm::mm_cid locks
    # and can only be modified with atomic operations.
    #
    # The mm::mm_cid:pcpu per CPU storage is protected by the CPUs runqueue
    # lock.
    #
    # CID ownership:
    #
    # A CID is either owned by a task (stored in task_struct::mm_cid.cid) or
    # by a CPU (stored in mm::mm_cid.pcpu::cid). CIDs owned by CPUs have the
    # MM_CID_ONCPU bit set. During transitioning from CPU to task ownership
    # mode, MM_CID_TRANSIT is set on the per task CIDs. When this bit is set
    # the task needs to drop the CID into the pool when scheduling out.  Both
    # bits (ONCPU and TRANSIT) are filtered out by task_cid() when the CID is
    # actualy handed over to user space in the RSEQ memory.
    #
    # Mode switching:
    #
    # Switching to per CPU mode happens when the user count becomes greater
    # than the maximum number of CIDs, which is calculated by:
    #
    #     opt_cids = min(mm_cid::nr_cpus_allowed, mm_cid::users);
    #     max_cids = min(1.25 * opt_cids, num_possible_cpus());
    #
    # The +25% allowance is useful for tight CPU masks in scenarios where only
    # a few threads are created and destroyed to avoid frequent mode
    # switches. Though this allowance shrinks, the closer opt_cids becomes to
    # num_possible_cpus(), which is the (unfortunate) hard ABI limit.
    #
    # At the point of switching to per CPU mode the new user is not yet
    # visible in the system, so the task which initiated the fork() runs the
    # fixup function: mm_cid_fixup_tasks_to_cpu() walks the thread list and
    # either transfers each tasks owned CID to the CPU the task runs on or
    # drops it into the CID pool if a task is not on a CPU at that point in
    # time. Tasks which schedule in before the task walk reaches them do the
    # handover in mm_cid_schedin(). When mm_cid_fixup_tasks_to_cpus() completes
    # it's guaranteed that no task related to that MM owns a CID anymore.
    #
    # Switching back to task mode happens when the user count goes below the
    # threshold which was recorded on the per CPU mode switch:
    #
    #     pcpu_thrs = min(opt_cids - (opt_cids / 4), num_possible_cpus() / 2);
    #
    # This threshold is updated when a affinity change increases the number of
    # allowed CPUs for the MM, which might cause a switch back to per task
    # mode.
    #
    # If the switch back was initiated by a exiting task, then that task runs
    # the fixup function. If it was initiated by a affinity change, then it's
    # run either in the deferred update function in context of a workqueue or
    # by a task which forks a new one or by a task which exits. Whatever
    # happens first. mm_cid_fixup_cpus_to_task() walks through the possible
    # CPUs and either transfers the CPU owned CIDs to a related task which
    # runs on the CPU or drops it into the pool. Tasks which schedule in on a
    # CPU which the walk did not cover yet do the handover themself.
    #
    # This transition from CPU to per task ownership happens in two phases:
    #
    #  1) mm:mm_cid.transit contains MM_CID_TRANSIT This is OR'ed on the task
    #     CID and denotes that the CID is only temporarily owned by the
    #     task. When it schedules out the task drops the CID back into the
    #     pool if this bit is set.
    #
    #  2) The initiating context walks the per CPU space and after completion
    #     clears mm:mm_cid.transit. So after that point the CIDs are strictly
    #     task owned again.
    #
    # This two phase transition is required to prevent CID space exhaustion
    # during the transition as a direct transfer of ownership would fail if
    # two tasks are scheduled in on the same CPU before the fixup freed per
    # CPU CIDs.
    #
    # When mm_cid_fixup_cpus_to_tasks() completes it's guaranteed that no CID
    # related to that MM is owned by a CPU anymore.

    def mm_cid_calc_pcpu_thrs(self, mc):
        opt_cids = min(mc.nr_cpus_allowed, mc.users)
        return min(opt_cids - opt_cids // 4, self.num_possible_cpus // 2)

    def mm_update_max_cids(self, mm):
        mc = mm.mm_cid
        lockdep_assert_held(mm.mm_cid.lock)
        # Clear deferred mode switch flag. A change is handled by the caller
        mc.update_deferred = False
        self._mm_update_max_cids(mc)
        # Check whether owner mode must be changed
        if not mc.percpu:
            # Enable per CPU mode when the number of users is above max_cids
            if mc.users > mc.max_cids:
                mc.pcpu_thrs = self.mm_cid_calc_pcpu_thrs(mc)
                self.note_zero_pcpu_thrs(mc)
        else:
            # Switch back to per task if user count under threshold
            if mc.users < mc.pcpu_thrs:
                mc.pcpu_thrs = 0
        # Mode change required?
        if bool(mc.percpu) == bool(mc.pcpu_thrs):
            return False
        # When switching back to per TASK mode, set the transition flag
        if not mc.pcpu_thrs:
            WRITE_ONCE(mc, "transit", MM_CID_TRANSIT)
        WRITE_ONCE(mc, "percpu", int(bool(mc.pcpu_thrs)))
        return True

    def mm_cid_fixup_cpus_to_tasks(self, mm):
        k = self.k
        # Walk the CPUs and fixup all stale CIDs
        for cpu in range(self.num_possible_cpus):
            pcp = mm.mm_cid.pcpu[cpu]
            rq = k.cpu_rq(cpu)
            # Remote access to mm::mm_cid::pcpu requires rq_lock
            flags = k.rq_lock_irqsave(rq)             # guard(rq_lock_irq)(rq)
            curr = rq.curr
            # Is the CID still owned by the CPU?
            if cid_on_cpu(pcp.cid):
                # If rq->curr has @mm, transfer it with the
                # transition bit set. Otherwise drop it.
                if curr.mm is mm and curr.mm_cid.active:
                    self.mm_cid_transit_to_task(curr, pcp)
                else:
                    self.mm_drop_cid_on_cpu(mm, pcp)
            elif curr.mm is mm and curr.mm_cid.active:
                cid = curr.mm_cid.cid
                # Ensure it has the transition bit set
                if not cid_in_transit(cid):
                    cid = cid_to_transit_cid(cid)
                    curr.mm_cid.cid = cid
                    pcp.cid = cid
            k.rq_unlock_irqrestore(rq, flags)
        # Clear the transition bit
        WRITE_ONCE(mm.mm_cid, "transit", 0)

    def mm_cid_transfer_to_cpu(self, t, pcp):
        if cid_on_task(t.mm_cid.cid):
            t.mm_cid.cid = cid_to_cpu_cid(t.mm_cid.cid)
            pcp.cid = t.mm_cid.cid

    def mm_cid_fixup_task_to_cpu(self, t, mm):
        k = self.k
        # Remote access to mm::mm_cid::pcpu requires rq_lock
        rq, flags = k.task_rq_lock(t)                     # guard(task_rq_lock)(t)
        try:
            # If the task is not active it is not in the users count
            if not t.mm_cid.active:
                return False
            if cid_on_task(t.mm_cid.cid):
                # If running on the CPU, transfer the CID, otherwise drop it
                if k.task_rq(t).curr is t:
                    self.mm_cid_transfer_to_cpu(t, mm.mm_cid.pcpu[k.task_cpu(t)])
                else:
                    self.mm_unset_cid_on_task(t)
            return True
        finally:
            k.task_rq_unlock(rq, t, flags)

    def mm_cid_fixup_tasks_to_cpus(self):
        k = self.k
        current = k.cur
        mm = current.mm
        # This can obviously race with a concurrent affinity change, which
        # increases the number of allowed CPUs for this mm, but that does
        # not affect the mode and only changes the CID constraints. A
        # possible switch back to per task mode happens either in the
        # deferred handler function or in the next fork()/exit().
        #
        # The caller has already transferred. The newly incoming task is
        # already accounted for, but not yet visible.
        users = mm.mm_cid.users - 2
        if not users:
            return
        # guard(rcu)(); for_other_threads(current, t)
        for t in list(current.signal.threads):
            if t is current:
                continue
            if self.mm_cid_fixup_task_to_cpu(t, mm):
                users -= 1
        if not users:
            return
        # Happens only for VM_CLONE processes.
        for t in list(k.tasks.values()):                  # for_each_process_thread(p, t)
            if t is current or t.mm is not mm:
                continue
            if self.mm_cid_fixup_task_to_cpu(t, mm):
                users -= 1
                if users == 0:
                    self.note_walk_missed_users(mm, counted_out=True)
                    return
        self.note_walk_missed_users(mm, counted_out=False)

    def note_walk_missed_users(self, mm, counted_out):
        """Not kernel code: records the causes of V3's walk findings when they
        happen, where the walk ends.  WALK_MISSED_CLONE_VM_USER: the walk
        stopped on its count (@counted_out) while a user of @mm outside the
        thread group (a vfork()ed child) still owns a task CID: the second
        loop met current's threads again and counted them twice.
        WALK_MISSED_FORKING_CHILD (b2e48c429ec5's scenario): a
        user the walk could not see, the child of a concurrent fork between
        copy_mm() and the thread list, holds a task CID: either still not in
        the task list (more users than active visible ones, not counting the
        child of this fork, itself not yet visible), or added after the walk
        passed (a leftover in current's thread group, whose visible threads
        the first loop all met)."""
        current = self.k.cur
        visible = [t for t in self.k.tasks.values() if t.mm is mm and t.mm_cid.active]
        if counted_out and any(t.tgid != current.tgid and cid_on_task(t.mm_cid.cid)
                               for t in visible):
            self.k.causes.add(WALK_MISSED_CLONE_VM_USER)
        if mm.mm_cid.users - len(visible) > 1 or \
                any(t is not current and t.tgid == current.tgid and cid_on_task(t.mm_cid.cid)
                    for t in visible):
            self.k.causes.add(WALK_MISSED_FORKING_CHILD)

    def note_schedin_allocates_in_walk(self, t, mm, tcid):
        """Not kernel code: records the cause of V3's live lock on the switch
        to per-CPU mode (4327fb13fa47's scenario) when it happens: a task
        scheduling in in per-CPU mode must allocate a CID, its own having
        been handed to the CPU it ran on before (ONCPU), while another user
        of @mm still owns a task CID the walk has not reached yet."""
        if cid_on_cpu(tcid) and any(
                u is not t and u.mm is mm and u.mm_cid.active and cid_on_task(u.mm_cid.cid)
                for u in self.k.tasks.values()):
            self.k.causes.add(SCHEDIN_HANDED_OVER_IN_WALK)

    def note_schedin_read_transit(self, mm, transit):
        """Not kernel code: records the cause of V3's lockup on weakly ordered
        CPUs (47ee94efccf6's scenario) when it happens: a task scheduling in
        in per-task mode read @transit as 0 while MM_CID_TRANSIT is the
        coherence-latest value, which a plain read gives.  Never noted under
        sc, where READ_ONCE() returns that value, nor in practice under tso,
        where the two stores reach memory in order: a load that found the
        new @percpu finds the new @transit."""
        if not transit and mm.mm_cid.transit:
            self.k.causes.add(SCHEDIN_MISSED_TRANSIT)

    def note_zero_pcpu_thrs(self, mc):
        """Not kernel code: records the cause of V3's uniprocessor finding
        when it happens: more users than max_cids, and a threshold of 0 that
        keeps the mm in per-task mode (no max(..., 1))."""
        if not mc.pcpu_thrs:
            self.k.causes.add(ZERO_PCPU_THRS)

    def sched_mm_cid_add_user(self, t, mm):
        t.mm_cid.active = 1
        mm.mm_cid.users += 1
        return self.mm_update_max_cids(mm)

    def sched_mm_cid_fork(self, t):
        mm = t.mm
        WARN_ON_ONCE(mm is None or t.mm_cid.cid != MM_CID_UNSET,
                     "!mm || t->mm_cid.cid != MM_CID_UNSET")
        mutex_lock(mm.mm_cid.mutex)                       # guard(mutex)(&mm->mm_cid.mutex)
        try:
            flags = self._lock_irq(mm.mm_cid.lock)
            try:
                pcp = mm.mm_cid.pcpu[self.k.cpu]          # this_cpu_ptr()
                # First user ?
                if not mm.mm_cid.users:
                    self.note_first_user(mm)
                    self.sched_mm_cid_add_user(t, mm)
                    t.mm_cid.cid = self.mm_get_cid(mm)
                    # Required for execve()
                    pcp.cid = t.mm_cid.cid
                    return
                if not self.sched_mm_cid_add_user(t, mm):
                    if not mm.mm_cid.percpu:
                        t.mm_cid.cid = self.mm_get_cid(mm)
                    return
                # Handle the mode change and transfer current's CID
                percpu = bool(mm.mm_cid.percpu)
                if not percpu:
                    self.mm_cid_transit_to_task(self.k.cur, pcp)
                else:
                    self.mm_cid_transfer_to_cpu(self.k.cur, pcp)
            finally:
                self._unlock_irq(mm.mm_cid.lock, flags)
            if percpu:
                self.mm_cid_fixup_tasks_to_cpus()
            else:
                self.mm_cid_fixup_cpus_to_tasks(mm)
                t.mm_cid.cid = self.mm_get_cid(mm)
        finally:
            mutex_unlock(mm.mm_cid.mutex)

    def sched_mm_cid_remove_user(self, t):
        t.mm_cid.active = 0
        preempt_disable()                   # scoped_guard(preempt) {
        # Clear the transition bit
        t.mm_cid.cid = cid_from_transit_cid(t.mm_cid.cid)
        self.mm_unset_cid_on_task(t)
        preempt_enable()                    # }
        t.mm.mm_cid.users -= 1
        return self.mm_update_max_cids(t.mm)

    def sched_mm_cid_exit(self, t):
        """When a task exits, the MM CID held by the task is not longer
        required as the task cannot return to user space."""
        mm = t.mm
        if mm is None or not t.mm_cid.active:
            return
        # Ensure that only one instance is doing MM CID operations within
        # a MM. The common case is uncontended. The rare fixup case adds
        # some overhead.
        mutex_lock(mm.mm_cid.mutex)
        try:
            # mm_cid::mutex is sufficient to protect mm_cid::users
            if mm.mm_cid.users > 1:
                flags = self._lock_irq(mm.mm_cid.lock)
                try:
                    if not self._sched_mm_cid_exit(t):
                        return
                    # Mode change required. Transfer currents CID
                    self.mm_cid_transit_to_task(self.k.cur, mm.mm_cid.pcpu[self.k.cpu])
                finally:
                    self._unlock_irq(mm.mm_cid.lock, flags)
                self.mm_cid_fixup_cpus_to_tasks(mm)
                return
            # Last user
            flags = self._lock_irq(mm.mm_cid.lock)
            try:
                # Required across execve()
                if t is self.k.cur:
                    self.mm_cid_transit_to_task(t, mm.mm_cid.pcpu[self.k.cpu])
                # Ignore mode change. There is nothing to do.
                self.sched_mm_cid_remove_user(t)
            finally:
                self._unlock_irq(mm.mm_cid.lock, flags)
        finally:
            mutex_unlock(mm.mm_cid.mutex)
        # As this is the last user (execve(), process exit or failed
        # fork(2)) there is no concurrency anymore.
        #
        # Synchronize eventally pending work to ensure that there are no
        # dangling references left. @t->mm_cid.users is zero so nothing
        # can queue this work anymore.
        self.k.irq_work_sync(mm.mm_cid.irq_work)
        self.k.cancel_work_sync(mm.mm_cid.work)

    def sched_mm_cid_after_execve(self, t):
        """Reactivate MM CID after successful execve()"""
        self.note_failed_execve(t)
        self.sched_mm_cid_fork(t)
        self.note_failed_execve(t)
        self.execve_from.pop(t, None)               # not kernel code

    def mm_alloc_cid(self, mm, p):
        mm.mm_cid = mm_mm_cid()
        mm.mm_cid.pcpu = alloc_percpu(mm_cid_pcpu, self.num_possible_cpus)
        self.mm_init_cid(mm, p)

    def mm_init_cid(self, mm, p):
        if getattr(mm, "mm_cid", None) is None:
            mm.mm_cid = mm_mm_cid()
            mm.mm_cid.pcpu = alloc_percpu(mm_cid_pcpu, self.num_possible_cpus)
        super().mm_init_cid(mm, p)

    @staticmethod
    def _mm_init_cid_mode(mc):
        mc.percpu = 0
        mc.transit = 0

    @staticmethod
    def mm_cid_mode_changed(mc):
        return bool(mc.percpu or mc.transit)

    def coverage_state(self, mm):
        """v7.0's, from V3's two words (TRANSIT only on the way back)."""
        mc = mm.mm_cid
        mode = "cpu" if mc.percpu else "cpu->task" if mc.transit else "task"
        return (mode, _room(mm.cidmask.bits, mc.max_cids, self.num_possible_cpus),
                bool(mc.update_deferred))

    @staticmethod
    def _mm_init_cid_user_list(mc):
        pass                            # V3 has no user_list
