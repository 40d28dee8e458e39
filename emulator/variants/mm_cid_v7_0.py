"""v7.0: Thomas Gleixner's rewrite "sched: Rewrite MM CID management" with the
fixes that followed it in v6.19-rc and v7.0-rc (mm_cid.md 3.6).

Strict ownership: a CID is owned either by a task (``t->mm_cid.cid``) or by a
CPU (``mm->mm_cid.pcpu[cpu].cid`` with MM_CID_ONCPU set), per process, as
``mm->mm_cid.mode`` says.  A process is in per-task mode while its ``users``
(threads sharing the mm) fit into ``max_cids`` and switches to per-CPU mode
when a fork() exceeds it; it goes back when an exit() drops ``users`` below
the ``pcpu_thrs`` recorded at the switch (hysteresis).  An affinity change
that widens the mm's allowed CPUs recomputes ``pcpu_thrs`` and would defer
a switch back through irq_work and a work item, as that path holds a
runqueue lock; as ``pcpu_thrs`` never exceeds ``min(nr_cpus_allowed,
users)``, its ``users < pcpu_thrs`` test never holds there (the tests show
it).  Every mode change goes
through MM_CID_TRANSIT: a task scheduling out with a TRANSIT CID gives it
back, so the pool refills while the fork()/exit()/worker that flipped the mode
walks the CPUs or the users and fixes them up.  Context switches in a stable
mode touch no bitmap, take no lock and issue no barrier.

Copied, function by function, from:

- the v6.19 mm_cid part of ``kernel/sched/sched.h`` as carried by a
  downstream copy of the file (Project C's ``alt_sched.h``, which holds the
  ``mode`` word of 47ee94efccf6 and the pre-4463c7aa11a6 schedout);
- the tip-bot2 / stable mails of the core/rseq series (51dd92c71a38
  "Serialize ... with a mutex", 6fa1e9565d81/9a723ed7facf "Provide new
  scheduler CID mechanism", 9da6ccbcea3d "Implement deferred mode change",
  2635fb0f0973/653fda7ae73d "Switch over to the new mechanism") and of the
  fixes: 4327fb13fa47 (transit in both directions, mm_cid_transit_to_cpu),
  47ee94efccf6 (one ``mode`` word, mm_cid_complete_transit(), smp_mb()),
  007d84287c74 (exit drops the per-CPU CID), 4463c7aa11a6 (schedout keeps a
  transitional CID once the transition is over), 2bdf777410dc (after_execve
  without mm), b2e48c429ec5 (sched_mm_cid_fork() from sched_post_fork()),
  7574ac6e4978 (no preempt guard in remove_user, lockdep asserts),
  192d852129b1 (the per-mm ``user_list`` replaces the thread-list walk);
- 14b2b17cca54 (``pcpu_thrs`` at least 1) as it appears in the pre-image
  of Peter Zijlstra's lock-annotation proposal of 2026-03-06 (mainline at
  that time);
- exec_mmap() still calling ``mm_init_cid(mm, tsk)`` on the new mm, as
  recent copies of fs/exec.c show.

Not confirmed from a full copy of the file: the exact order of statements
inside core.c functions was read from diff hunks and their context lines,
not from a whole v7.0 ``core.c``; the text of the big "Mode switching"
comment is assembled from the hunks of 4327fb13fa47 and 47ee94efccf6.  The
final call site of mm_update_cpus_allowed() (0d032a43ebeb moved it to
set_cpus_allowed_common(), skipping migrate_disable()/enable()) is the
model's __do_set_cpus_allowed(), which has no migrate_disable() to skip.
Peter's rq-lock annotation rework (fork/exit taking the rq lock around the
per-CPU slot) is a proposal, not copied.

Departures: ``guard()``/``scoped_guard()`` are explicit lock/unlock pairs;
``__this_cpu_*`` on a slot is a plain access, as it is protected by that
CPU's runqueue lock; WARN_ON_ONCE() stops the run as a KernelBug
(kernel/bug.py); clear_bit() outside the bitmap (which C would
not catch) stops the run as a KernelBug, since a Python int would just grow.
"""

from ..checks.invariants import InvariantViolation
from ..errors import HardLockup, KernelBug
from ..kernel.bug import WARN_ON_ONCE
from ..kernel.cpumask import Cpumask, cpus_of, find_first_zero_bit
from ..kernel.irq_work import irq_work
from ..kernel.list import (
    hlist_add_head, hlist_del_init, hlist_for_each_entry, hlist_head, hlist_node,
)
from ..kernel.locking import (
    READ_ONCE, WRITE_ONCE, cpu_relax, cpumask_clear_cpu, cpumask_test_and_set_cpu,
    lockdep_assert_held, mutex, mutex_lock, mutex_unlock, raw_spin_lock, raw_spin_unlock,
    raw_spinlock_t, smp_mb,
)
from ..kernel.percpu import alloc_percpu
from ..kernel.workqueue import work_struct
from ..observe.cid_watch import tracing_cids, watch_struct
from . import register
from .base import Finding, SchedMmCid

MM_CID_UNSET = 1 << 31
MM_CID_ONCPU = 1 << 30
MM_CID_TRANSIT = 1 << 29

# Causes of this era's recorded findings, noted in Kernel.causes when they happen.
FAILED_EXECVE_PERCPU = "failed execve() in per-CPU mode"
LAST_USER_FAILED_EXECVE_PERCPU = "failed execve() reviving an mm its last user left in per-CPU mode"


# -- include/linux/rseq_types.h ------------------------------------------------------------


class sched_mm_cid:
    """struct sched_mm_cid - Storage for per task MM CID data
    @active:  MM CID is active for the task
    @cid:     The CID associated to the task either permanently or borrowed
              from the CPU
    @node:    Queued in the per MM MMCID list"""

    __slots__ = ("active", "cid", "node")

    def __init__(self):
        self.active = 0
        self.cid = MM_CID_UNSET
        self.node = None                # an hlist_node once dup_task_struct() ran

    def __repr__(self):
        return f"sched_mm_cid(active={self.active}, cid={cid_repr(self.cid)})"


class mm_cid_pcpu:
    """struct mm_cid_pcpu - Storage for per CPU MM_CID data
    @cid:  The CID associated to the CPU either permanently or while a task
           with a CID is running"""

    __slots__ = ("cid",)

    def __init__(self):
        self.cid = 0                    # percpu memory is zeroed

    def __repr__(self):
        return f"mm_cid_pcpu(cid={cid_repr(self.cid)})"


class mm_mm_cid:
    """struct mm_mm_cid - Storage for per MM CID data
    @pcpu:             Per CPU storage for CIDs associated to a CPU
    @mode:             Indicates per CPU and transition mode
    @max_cids:         The exclusive maximum CID value for allocation and
                       convergence
    @irq_work:         irq_work to handle the affinity mode change case
    @work:             Regular work to handle the affinity mode change case
    @lock:             Spinlock to protect against affinity setting which
                       can't take @mutex
    @mutex:            Mutex to serialize forks and exits related to this mm
    @user_list:        List of the MM CID users of a MM
    @nr_cpus_allowed:  The number of CPUs in the per MM allowed CPUs map. The
                       map is growth only.
    @users:            The number of tasks sharing this MM. Separate from
                       mm::mm_users as that is modified by mmget()/mm_put() by
                       other entities which do not actually share the MM.
    @pcpu_thrs:        Threshold for switching back from per CPU mode
    @update_deferred:  A deferred switch back to per task mode is pending."""

    __slots__ = ("pcpu", "mode", "max_cids", "irq_work", "work", "lock", "mutex", "user_list",
                 "nr_cpus_allowed", "users", "pcpu_thrs", "update_deferred")

    def __repr__(self):
        return (f"mm_cid(mode={mode_repr(self.mode)} users={self.users} "
                f"max_cids={self.max_cids} pcpu_thrs={self.pcpu_thrs} "
                f"nr_cpus_allowed={self.nr_cpus_allowed})")


class mm_cid_irq_work_struct(irq_work):
    """mm->mm_cid.irq_work; ``mm`` stands for container_of()."""

    __slots__ = ("mm",)


class mm_cid_work_struct(work_struct):
    """mm->mm_cid.work; ``mm`` stands for container_of()."""

    __slots__ = ("mm",)


def cid_repr(cid):
    if cid & MM_CID_UNSET:
        return "UNSET" + ("|TRANSIT" if cid & MM_CID_TRANSIT else "")
    flags = "".join(("|ONCPU" if cid & MM_CID_ONCPU else "",
                     "|TRANSIT" if cid & MM_CID_TRANSIT else ""))
    return f"{cid & ~(MM_CID_ONCPU | MM_CID_TRANSIT)}{flags}"


def mode_repr(mode):
    return {0: "task", MM_CID_TRANSIT: "cpu->task", MM_CID_ONCPU: "cpu",
            MM_CID_ONCPU | MM_CID_TRANSIT: "task->cpu"}.get(mode, hex(mode))


# -- kernel/sched/sched.h ---------------------------------------------------------------------


def cid_on_cpu(cid):
    return bool(cid & MM_CID_ONCPU)


def cid_in_transit(cid):
    return bool(cid & MM_CID_TRANSIT)


def cpu_cid_to_cid(cid):
    return cid & ~MM_CID_ONCPU


def cid_to_cpu_cid(cid):
    return cid | MM_CID_ONCPU


def cid_to_transit_cid(cid):
    return cid | MM_CID_TRANSIT


def cid_from_transit_cid(cid):
    return cid & ~MM_CID_TRANSIT


def cid_on_task(cid):
    # True if none of the MM_CID_ONCPU, MM_CID_TRANSIT, MM_CID_UNSET bits is set
    return cid < MM_CID_TRANSIT


V6_19_FAILED_EXEC = (
    "a finding to report (v6.19+ as reconstructed from the merged diffs): a failed execve() "
    "in per-CPU mode runs sched_mm_cid_before_execve() (exit) and sched_mm_cid_after_execve() "
    "(fork, which in per-CPU mode gives the task no cid: it borrows one at its next "
    "schedule-in), so the running task returns to user space with MM_CID_UNSET and rseq "
    "shows 0x80000000 (P2).  Only runs in per-CPU mode when the failing exec ends hit it "
    "(reached before it began, by another thread's fork meanwhile, or by that fork itself, "
    "which counts the task as a user again).")

V6_19_LAST_USER_EXEC = (
    "a finding to report (v6.19+ as reconstructed): when the last user of an mm in per-CPU "
    "mode leaves it while one of its threads is in an execve() that then fails (the exec'ing "
    "thread itself, or its siblings exiting meanwhile), sched_mm_cid_exit()'s \"Last user\" "
    "branch ignores the mode change (\"nothing to do\": the mm was to go away), so the mode "
    "stays cpu->task with other CPUs still owning their CIDs.  The failed exec's fork, the "
    "mm's first user again, sets its CPU's slot to its new CID: a CID that CPU owned is "
    "orphaned (P4); once the mm has as many users as possible CPUs, sched_mm_cid_fork() "
    "spins in mm_get_cid() with mm_cid.lock held: a hard lockup.")

@register
class MmCidV7_0(SchedMmCid):
    name = "v7.0"
    known_findings = (
        Finding(InvariantViolation, FAILED_EXECVE_PERCPU, V6_19_FAILED_EXEC,
                invariant="P2", mm_cid=MM_CID_UNSET),
        Finding(KernelBug, FAILED_EXECVE_PERCPU, V6_19_FAILED_EXEC,
                function="mm_drop_cid", cid=MM_CID_UNSET),
        Finding(HardLockup, LAST_USER_FAILED_EXECVE_PERCPU, V6_19_LAST_USER_EXEC,
                spinning_on="cpu_relax() loop"),
        Finding(InvariantViolation, LAST_USER_FAILED_EXECVE_PERCPU, V6_19_LAST_USER_EXEC,
                invariant="P4"),
    )
    # Lock helpers (guards in the kernel) and the model's notes of causes.
    NOT_KERNEL_FUNCTIONS = SchedMmCid.NOT_KERNEL_FUNCTIONS + (
        "_lock_irq", "_unlock_irq", "note_failed_execve", "note_first_user", "mm_cid_mode_changed")
    copies = "653fda7ae73d sched/mmcid: Switch over to the new mechanism (v6.19) + v7.0 fixes"
    # sched_mm_cid_fork() is called from sched_post_fork(), after the new
    # task is visible in the thread and task lists (b2e48c429ec5).
    def fork_in_copy_mm(self, t):
        pass

    def fork_in_sched_post_fork(self, t):
        self.sched_mm_cid_fork(t)

    def __init__(self, kernel):
        super().__init__(kernel)
        self.num_possible_cpus = kernel.nr_cpu_ids
        self.execve_from = {}

    # The test for per CPU mode, as this era writes it in its WARN_ON_ONCE()s:
    # the ONCPU bit of mm::mm_cid::mode (V3 had a separate mm::mm_cid::percpu).
    PERCPU_TEST = "cid_on_cpu(mm->mm_cid.mode)"

    @staticmethod
    def mm_cid_percpu(mc):
        return cid_on_cpu(mc.mode)

    # -- kernel/fork.c, include/linux/mm_types.h -------------------------------------------------

    def init_task_fields(self, t):
        # dup_task_struct()
        t.mm_cid = sched_mm_cid()
        t.mm_cid.cid = MM_CID_UNSET
        t.mm_cid.active = 0
        t.mm_cid.node = hlist_node(t)   # INIT_HLIST_NODE(&tsk->mm_cid.node)
        self.watch_task_cid(t)          # not kernel code: the mm_cid tracepoints

    @staticmethod
    def mm_cidmask(mm):
        return mm.cidmask

    @staticmethod
    def mm_cpus_allowed(mm):
        return mm.cpus_allowed

    def mm_destroy_cid(self, mm):
        # mm_destroy_cid(): free_percpu(mm->mm_cid.pcpu)
        mm.mm_cid.pcpu = None

    # -- kernel/sched/sched.h: the bitmap and the per task / per CPU CIDs ---------------------------

    def mm_drop_cid(self, mm, cid):
        if cid >= self.num_possible_cpus:
            raise KernelBug(f"BUG: KASAN: slab-out-of-bounds in mm_drop_cid(): clear_bit({cid:#x}) "
                            f"on a bitmap of {self.num_possible_cpus} bits", cid=cid)
        cpumask_clear_cpu(cid, self.mm_cidmask(mm))

    def mm_unset_cid_on_task(self, t):
        cid = t.mm_cid.cid
        t.mm_cid.cid = MM_CID_UNSET
        if cid_on_task(cid):
            self.mm_drop_cid(t.mm, cid)

    def mm_drop_cid_on_cpu(self, mm, pcp):
        # Clear the ONCPU bit, but do not set UNSET in the per CPU storage
        if cid_on_cpu(pcp.cid):
            pcp.cid = cpu_cid_to_cid(pcp.cid)
            self.mm_drop_cid(mm, pcp.cid)

    def _mm_get_cid(self, mm, max_cids):
        """__mm_get_cid()"""
        cidmask = self.mm_cidmask(mm)
        cid = find_first_zero_bit(READ_ONCE(cidmask, "bits"), max_cids)
        if cid >= max_cids:
            return MM_CID_UNSET
        if cpumask_test_and_set_cpu(cid, cidmask):
            return MM_CID_UNSET
        return cid

    def mm_get_cid(self, mm):
        cid = self._mm_get_cid(mm, READ_ONCE(mm.mm_cid, "max_cids"))
        while cid == MM_CID_UNSET:
            cpu_relax()
            cid = self._mm_get_cid(mm, self.num_possible_cpus)
        return cid

    def mm_cid_converge(self, mm, orig_cid, max_cids):
        cid = cpu_cid_to_cid(orig_cid)
        # Is it in the optimal CID space?
        if cid < max_cids:
            return orig_cid
        # Try to find one in the optimal space. Otherwise keep the provided.
        new_cid = self._mm_get_cid(mm, max_cids)
        if new_cid != MM_CID_UNSET:
            self.mm_drop_cid(mm, cid)
            # Preserve the ONCPU mode of the original CID
            return new_cid | (orig_cid & MM_CID_ONCPU)
        return orig_cid

    def mm_cid_update_task_cid(self, t, cid):
        if t.mm_cid.cid != cid:
            t.mm_cid.cid = cid
            self.rseq_sched_set_ids_changed(t)

    def rseq_sched_set_ids_changed(self, t):
        """The ids are rewritten on the way back to user space: the switch
        that brings *t* in has set TIF_NOTIFY_RESUME (rseq_preempt() when it
        left), this makes sure of it."""
        self.k.rseq_set_notify_resume(t)

    def mm_cid_update_pcpu_cid(self, mm, cid):
        mm.mm_cid.pcpu[self.k.cpu].cid = cid          # __this_cpu_write()

    def mm_cid_from_cpu(self, t, cpu_cid, mode):
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
                cpu_cid = cid_to_cpu_cid(self.mm_get_cid(mm))
            # Handle the transition mode flag if required
            if mode & MM_CID_TRANSIT:
                cpu_cid = cpu_cid_to_cid(cpu_cid) | MM_CID_TRANSIT
        self.mm_cid_update_pcpu_cid(mm, cpu_cid)
        self.mm_cid_update_task_cid(t, cpu_cid)

    def mm_cid_from_task(self, t, cpu_cid, mode):
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
            tcid |= mode & MM_CID_TRANSIT
        self.mm_cid_update_pcpu_cid(mm, tcid)
        self.mm_cid_update_task_cid(t, tcid)

    def mm_cid_schedin(self, next):
        mm = next.mm
        if not next.mm_cid.active:
            return
        cpu_cid = mm.mm_cid.pcpu[self.k.cpu].cid      # __this_cpu_read()
        mode = READ_ONCE(mm.mm_cid, "mode")
        if not cid_on_cpu(mode):
            self.mm_cid_from_task(next, cpu_cid, mode)
        else:
            self.mm_cid_from_cpu(next, cpu_cid, mode)

    def mm_cid_schedout(self, prev):
        # During mode transitions CIDs are temporary and need to be dropped
        if not cid_in_transit(prev.mm_cid.cid):
            return
        mm = prev.mm
        mode = READ_ONCE(mm.mm_cid, "mode")
        cid = cid_from_transit_cid(prev.mm_cid.cid)
        # If transition mode is done, transfer ownership when the CID is
        # within the convergence range to optimize the next schedule in.
        if not cid_in_transit(mode) and cid < READ_ONCE(mm.mm_cid, "max_cids"):
            if cid_on_cpu(mode):
                cid = cid_to_cpu_cid(cid)
            # Update both so that the next schedule in goes into the fast path
            self.mm_cid_update_pcpu_cid(mm, cid)
            prev.mm_cid.cid = cid
        else:
            self.mm_drop_cid(mm, cid)
            prev.mm_cid.cid = MM_CID_UNSET

    def mm_cid_switch_to(self, prev, next):
        self.mm_cid_schedout(prev)
        self.mm_cid_schedin(next)

    def switch_mm_cid(self, rq, prev, next):
        # context_switch(): mm_cid_switch_to(prev, next) after the mm switch,
        # with the runqueue lock held.
        self.mm_cid_switch_to(prev, next)

    # -- kernel/sched/core.c -------------------------------------------------------------------------
    #
    # Concurrency IDentifier management
    #
    # Serialization rules:
    #
    # mm::mm_cid::mutex:   Serializes fork() and exit() and therefore
    #                      protects mm::mm_cid::users and mode switch
    #                      transitions
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
    # MM_CID_ONCPU bit set.
    #
    # During the transition of ownership mode, the MM_CID_TRANSIT bit is set
    # on the CIDs. When this bit is set the tasks drop the CID back into the
    # pool when scheduling out.
    #
    # Both bits (ONCPU and TRANSIT) are filtered out by task_cid() when the
    # CID is actually handed over to user space in the RSEQ memory.
    #
    # Mode switching:
    #
    # The ownership mode is per process and stored in mm:mm_cid::mode with the
    # following possible states:
    #
    #     0:                              Per task ownership
    #     0 | MM_CID_TRANSIT:             Transition from per CPU to per task
    #     MM_CID_ONCPU:                   Per CPU ownership
    #     MM_CID_ONCPU | MM_CID_TRANSIT:  Transition from per task to per CPU
    #
    # All transitions of ownership mode happen in two phases:
    #
    #  1) mm:mm_cid::mode has the MM_CID_TRANSIT bit set. This is OR'ed on the
    #     CIDs and denotes that the CID is only temporarily owned by a
    #     task. When the task schedules out it drops the CID back into the
    #     pool if this bit is set.
    #
    #  2) The initiating context walks the per CPU space or the tasks to fixup
    #     or drop the CIDs and after completion it clears MM_CID_TRANSIT in
    #     mm:mm_cid::mode. After that point the CIDs are strictly task or CPU
    #     owned again.
    #
    # This two phase transition is required to prevent CID space exhaustion
    # during the transition as a direct transfer of ownership would fail:
    #
    #   - On task to CPU mode switch if a task is scheduled in on one CPU and
    #     then migrated to another CPU before the fixup freed enough per task
    #     CIDs.
    #
    #   - On CPU to task mode switch if two tasks are scheduled in on the same
    #     CPU before the fixup freed per CPU CIDs.
    #
    #   Both scenarios can result in a live lock because sched_in() is invoked
    #   with runqueue lock held and loops in search of a CID and the fixup
    #   thread can't make progress freeing them up because it is stuck on the
    #   same runqueue lock.
    #
    # While MM_CID_TRANSIT is active during the transition phase the MM_CID
    # bitmap can be contended, but that's a temporary contention bound to the
    # transition period. After that everything goes back into steady state and
    # nothing except fork() and exit() will touch the bitmap. This is an
    # acceptable tradeoff as it completely avoids complex serialization,
    # memory barriers and atomic operations for the common case.
    #
    # Aside of that this mechanism also ensures RT compability:
    #
    #   - The task which runs the fixup is fully preemptible except for the
    #     short runqueue lock held sections.
    #
    #   - The transient impact of the bitmap contention is only problematic
    #     when there is a thundering herd scenario of tasks scheduling in and
    #     out concurrently. There is not much which can be done about that
    #     except for avoiding mode switching by a proper overall system
    #     configuration.
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
    # fixup function. mm_cid_fixup_tasks_to_cpu() walks the thread list and
    # either marks each task owned CID with MM_CID_TRANSIT if the task is
    # running on a CPU or drops it into the CID pool if a task is not on a
    # CPU. Tasks which schedule in before the task walk reaches them do the
    # handover in mm_cid_schedin(). When mm_cid_fixup_tasks_to_cpus()
    # completes it is guaranteed that no task related to that MM owns a CID
    # anymore.
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
    # CPUs and either marks the CPU owned CIDs with MM_CID_TRANSIT if a
    # related task is running on the CPU or drops it into the pool. Tasks
    # which are scheduled in before the fixup covered them do the handover
    # themself. When mm_cid_fixup_cpus_to_tasks() completes it is guaranteed
    # that no CID related to that MM is owned by a CPU anymore.

    def _mm_update_max_cids(self, mc):
        """__mm_update_max_cids(): update the CID range properties when the
        constraints change. Invoked via fork(), exit() and affinity changes"""
        # Calculate the new optimal constraint
        opt_cids = min(mc.nr_cpus_allowed, mc.users)
        # Adjust the maximum CIDs to +25% limited by the number of possible CPUs
        max_cids = min(opt_cids + opt_cids // 4, self.num_possible_cpus)
        WRITE_ONCE(mc, "max_cids", max_cids)

    def mm_cid_calc_pcpu_thrs(self, mc):
        opt_cids = min(mc.nr_cpus_allowed, mc.users)
        # Has to be at least 1 because 0 indicates PCPU mode off
        return max(min(opt_cids - opt_cids // 4, self.num_possible_cpus // 2), 1)

    def mm_update_max_cids(self, mm):
        mc = mm.mm_cid
        percpu = cid_on_cpu(mc.mode)
        lockdep_assert_held(mm.mm_cid.lock)
        # Clear deferred mode switch flag. A change is handled by the caller
        mc.update_deferred = False
        self._mm_update_max_cids(mc)
        # Check whether owner mode must be changed
        if not percpu:
            # Enable per CPU mode when the number of users is above max_cids
            if mc.users > mc.max_cids:
                mc.pcpu_thrs = self.mm_cid_calc_pcpu_thrs(mc)
        else:
            # Switch back to per task if user count under threshold
            if mc.users < mc.pcpu_thrs:
                mc.pcpu_thrs = 0
        # Mode change required?
        if percpu == bool(mc.pcpu_thrs):
            return False
        # Flip the mode and set the transition flag to bridge the transfer
        WRITE_ONCE(mc, "mode", mc.mode ^ (MM_CID_TRANSIT | MM_CID_ONCPU))
        # Order the store against the subsequent fixups so that
        # acquire(rq::lock) cannot be reordered by the CPU before the
        # store.
        smp_mb()
        return True

    def mm_update_cpus_allowed(self, mm, affmsk):
        if mm is None or not READ_ONCE(mm.mm_cid, "users"):
            return
        # mm::mm_cid::mm_cpus_allowed is the superset of each threads
        # allowed CPUs mask which means it can only grow.
        mc = mm.mm_cid
        raw_spin_lock(mc.lock)
        try:
            mm_allowed = self.mm_cpus_allowed(mm)
            weight = self.cpumask_weighted_or(mm_allowed, mm_allowed.bits, affmsk)
            if weight == mc.nr_cpus_allowed:
                return
            WRITE_ONCE(mc, "nr_cpus_allowed", weight)
            self._mm_update_max_cids(mc)
            if not self.mm_cid_percpu(mc):
                return
            # Adjust the threshold to the wider set
            mc.pcpu_thrs = self.mm_cid_calc_pcpu_thrs(mc)
            # Switch back to per task mode?
            if mc.users >= mc.pcpu_thrs:
                return
            # Don't queue twice
            if mc.update_deferred:
                return
            # Queue the irq work, which schedules the real work
            mc.update_deferred = True
            self.k.irq_work_queue(mc.irq_work)
        finally:
            raw_spin_unlock(mc.lock)

    @staticmethod
    def cpumask_weighted_or(dstp, src1, src2):
        """dst = src1 | src2, returning the weight of the result."""
        dstp.bits = src1 | src2
        return dstp.bits.bit_count()

    def mm_set_cpus_allowed(self, mm, mask):
        # __do_set_cpus_allowed() -> set_cpus_allowed_common(), rq lock held
        self.mm_update_cpus_allowed(mm, mask)

    def mm_cid_complete_transit(self, mm, mode):
        # Ensure that the store removing the TRANSIT bit cannot be
        # reordered by the CPU before the fixups have been completed.
        smp_mb()
        WRITE_ONCE(mm.mm_cid, "mode", mode)

    def mm_cid_transit_to_task(self, t, pcp):
        if cid_on_cpu(t.mm_cid.cid):
            cid = cpu_cid_to_cid(t.mm_cid.cid)
            t.mm_cid.cid = cid_to_transit_cid(cid)
            pcp.cid = t.mm_cid.cid

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
        self.mm_cid_complete_transit(mm, 0)

    def mm_cid_transit_to_cpu(self, t, pcp):
        if cid_on_task(t.mm_cid.cid):
            t.mm_cid.cid = cid_to_transit_cid(t.mm_cid.cid)
            pcp.cid = t.mm_cid.cid

    def mm_cid_fixup_task_to_cpu(self, t, mm):
        k = self.k
        # Remote access to mm::mm_cid::pcpu requires rq_lock
        rq, flags = k.task_rq_lock(t)                     # guard(task_rq_lock)(t)
        if cid_on_task(t.mm_cid.cid):
            # If running on the CPU, put the CID in transit mode, otherwise drop it
            if k.task_rq(t).curr is t:
                self.mm_cid_transit_to_cpu(t, mm.mm_cid.pcpu[k.task_cpu(t)])
            else:
                self.mm_unset_cid_on_task(t)
        k.task_rq_unlock(rq, t, flags)

    def mm_cid_fixup_tasks_to_cpus(self):
        current = self.k.cur
        mm = current.mm
        lockdep_assert_held(mm.mm_cid.mutex)
        for t in hlist_for_each_entry(mm.mm_cid.user_list):
            # Current has already transferred before invoking the fixup.
            if t is not current:
                self.mm_cid_fixup_task_to_cpu(t, mm)
        self.mm_cid_complete_transit(mm, MM_CID_ONCPU)

    def sched_mm_cid_add_user(self, t, mm):
        lockdep_assert_held(mm.mm_cid.lock)
        t.mm_cid.active = 1
        hlist_add_head(t.mm_cid.node, mm.mm_cid.user_list)
        mm.mm_cid.users += 1
        return self.mm_update_max_cids(mm)

    def _lock_irq(self, lock):
        """raw_spin_lock_irq() / scoped_guard(raw_spinlock_irq, lock)"""
        flags = self.k.local_irq_save()
        raw_spin_lock(lock)
        return flags

    def _unlock_irq(self, lock, flags):
        raw_spin_unlock(lock)
        self.k.local_irq_restore(flags)

    def sched_mm_cid_fork(self, t):
        mm = t.mm
        if mm is None:
            return
        WARN_ON_ONCE(t.mm_cid.cid != MM_CID_UNSET, "t->mm_cid.cid != MM_CID_UNSET")
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
                    if not cid_on_cpu(mm.mm_cid.mode):
                        t.mm_cid.cid = self.mm_get_cid(mm)
                    return
                # Handle the mode change and transfer current's CID
                percpu = cid_on_cpu(mm.mm_cid.mode)
                if not percpu:
                    self.mm_cid_transit_to_task(self.k.cur, pcp)
                else:
                    self.mm_cid_transit_to_cpu(self.k.cur, pcp)
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
        lockdep_assert_held(t.mm.mm_cid.lock)
        t.mm_cid.active = 0
        # Clear the transition bit
        t.mm_cid.cid = cid_from_transit_cid(t.mm_cid.cid)
        self.mm_unset_cid_on_task(t)
        hlist_del_init(t.mm_cid.node)
        t.mm.mm_cid.users -= 1
        return self.mm_update_max_cids(t.mm)

    def _sched_mm_cid_exit(self, t):
        """__sched_mm_cid_exit()"""
        mm = t.mm
        if not self.sched_mm_cid_remove_user(t):
            return False
        # Contrary to fork() this only deals with a switch back to per
        # task mode either because the above decreased users or an
        # affinity change increased the number of allowed CPUs and the
        # deferred fixup did not run yet.
        if WARN_ON_ONCE(self.mm_cid_percpu(mm.mm_cid), self.PERCPU_TEST):
            return False
        # A failed fork(2) cleanup never gets here, so @current must have
        # the same MM as @t. That's true for exit() and the failed
        # pthread_create() cleanup case.
        if WARN_ON_ONCE(self.k.cur.mm is not mm, "current->mm != mm"):
            return False
        return True

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
                    # Mode change. The task has the CID unset
                    # already and dealt with an eventually set
                    # TRANSIT bit. If the CID is owned by the CPU
                    # then drop it.
                    self.mm_drop_cid_on_cpu(mm, mm.mm_cid.pcpu[self.k.cpu])
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
        # Synchronize eventually pending work to ensure that there are no
        # dangling references left. @t->mm_cid.users is zero so nothing
        # can queue this work anymore.
        self.k.irq_work_sync(mm.mm_cid.irq_work)
        self.k.cancel_work_sync(mm.mm_cid.work)

    def sched_mm_cid_before_execve(self, t):
        """Deactivate MM CID allocation across execve()"""
        mm = t.mm
        if mm is not None and t.mm_cid.active:
            self.execve_from[t] = (mm, self.mm_cid_percpu(mm.mm_cid))
        self.sched_mm_cid_exit(t)

    def sched_mm_cid_after_execve(self, t):
        """Reactivate MM CID after execve()"""
        self.note_failed_execve(t)
        if t.mm is not None:
            self.sched_mm_cid_fork(t)
            self.note_failed_execve(t)
        self.execve_from.pop(t, None)               # not kernel code

    def note_failed_execve(self, t):
        """Not kernel code: records the cause of this era's recorded findings
        (known_findings) when it happens, before sched_mm_cid_after_execve()'s
        fork and after it: a failed execve() (the task keeps its mm) begun in
        per-CPU mode or ending in it, reached meanwhile by another thread's
        fork or by that fork itself (the exec'ing task counted again as a
        user): the fork of sched_mm_cid_after_execve() runs in per-CPU mode or
        switches to it, with the exec'ing task as current and as child."""
        mm, percpu = self.execve_from.get(t, (None, False))
        if mm is t.mm and mm is not None and (percpu or self.mm_cid_percpu(mm.mm_cid)):
            self.k.causes.add(FAILED_EXECVE_PERCPU)

    def note_first_user(self, mm):
        """Not kernel code: records the cause of the "last user" finding when
        it happens.  The first user of an mm that has had users (only the
        fork of a failed execve() gets here: a new mm is fresh) finds it as
        the "Last user" branch of sched_mm_cid_exit() left it, "Ignore mode
        change": CIDs still set in the bitmap (CPUs owning theirs) or the
        mode not back to plain per-task."""
        if mm.cidmask.bits or self.mm_cid_mode_changed(mm.mm_cid):
            self.k.causes.add(LAST_USER_FAILED_EXECVE_PERCPU)

    @staticmethod
    def mm_cid_mode_changed(mc):
        """Not kernel code: the mode is not what mm_init_cid() sets."""
        return mc.mode != 0

    def mm_cid_work_fn(self, work):
        mm = work.mm                                      # container_of()
        mutex_lock(mm.mm_cid.mutex)                       # guard(mutex)(&mm->mm_cid.mutex)
        try:
            # Did the last user task exit already?
            if not mm.mm_cid.users:
                return
            flags = self._lock_irq(mm.mm_cid.lock)
            try:
                # Have fork() or exit() handled it already?
                if not mm.mm_cid.update_deferred:
                    return
                # This clears mm_cid::update_deferred
                if not self.mm_update_max_cids(mm):
                    return
                # Affinity changes can only switch back to task mode
                if WARN_ON_ONCE(self.mm_cid_percpu(mm.mm_cid), self.PERCPU_TEST):
                    return
            finally:
                self._unlock_irq(mm.mm_cid.lock, flags)
            self.mm_cid_fixup_cpus_to_tasks(mm)
        finally:
            mutex_unlock(mm.mm_cid.mutex)

    def mm_cid_irq_work(self, work):
        mm = work.mm                                      # container_of()
        # Needs to be unconditional because mm_cid::lock cannot be held
        # when scheduling work as mm_update_cpus_allowed() nests inside
        # rq::lock and schedule_work() might end up in wakeup...
        self.schedule_work(mm.mm_cid.work)

    def schedule_work(self, work):
        return self.k.queue_work(self.k.system_wq, work)

    def mm_alloc_cid(self, mm, p):
        """mm_alloc_cid_noprof(): alloc_percpu() hands out zeroed storage,
        so every slot starts at 0, which is no CPU owned CID as ONCPU is
        clear; then mm_init_cid()."""
        mm.mm_cid = mm_mm_cid()
        mm.mm_cid.pcpu = alloc_percpu(mm_cid_pcpu, self.num_possible_cpus)
        self.mm_init_cid(mm, p)

    def exec_mmap(self, mm):
        # exec_mmap(): mm_init_cid(mm, tsk) on the new mm, which has no
        # user yet (sched_mm_cid_after_execve() comes later).
        self.mm_init_cid(mm, self.k.cur)

    def mm_init_cid(self, mm, p):
        if getattr(mm, "mm_cid", None) is None:
            # init_mm (p is None), or a caller that skipped mm_alloc_cid()
            mm.mm_cid = mm_mm_cid()
            mm.mm_cid.pcpu = alloc_percpu(mm_cid_pcpu, self.num_possible_cpus)
        mc = mm.mm_cid
        self._mm_init_cid_mode(mc)
        mc.max_cids = 0
        mc.nr_cpus_allowed = p.nr_cpus_allowed if p is not None else self.num_possible_cpus
        mc.users = 0
        mc.pcpu_thrs = 0
        mc.update_deferred = 0
        mc.lock = raw_spinlock_t(f"{mm!r}->mm_cid.lock")              # raw_spin_lock_init()
        mc.mutex = mutex(f"{mm!r}->mm_cid.mutex")                     # mutex_init()
        mc.irq_work = mm_cid_irq_work_struct(self.mm_cid_irq_work)    # IRQ_WORK_INIT_HARD()
        mc.irq_work.mm = mm
        mc.work = mm_cid_work_struct(self.mm_cid_work_fn, "mm_cid_work_fn")  # INIT_WORK()
        mc.work.mm = mm
        self._mm_init_cid_user_list(mc)
        # cpumask_copy(mm_cpus_allowed(mm), &p->cpus_mask)
        mm.cpus_allowed = Cpumask(p.cpus_mask if p is not None else self.k.possible_mask)
        mm.cidmask = Cpumask()          # bitmap_zero(mm_cidmask(mm), num_possible_cpus())
        self.watch_cids(mm)             # not kernel code: the mm_cid tracepoints

    @staticmethod
    def _mm_init_cid_mode(mc):
        mc.mode = 0

    @staticmethod
    def _mm_init_cid_user_list(mc):
        mc.user_list = hlist_head()                                   # INIT_HLIST_HEAD()

    # -- what user space sees, and what the invariants ask ------------------------------------------

    def task_mm_cid(self, t):
        return t.mm_cid.cid & ~(MM_CID_ONCPU | MM_CID_TRANSIT)

    def cid_active(self, t):
        return bool(t.mm_cid.active) and not t.mm_cid.cid & MM_CID_UNSET

    def cid_bound(self, mm):
        return self.num_possible_cpus

    # Owners: task owned CIDs (plain or in transit) and CPU owned slots
    # (ONCPU).  A task's ONCPU CID is borrowed from a CPU slot and a plain
    # slot only mirrors the running task's CID: neither owns a bit.
    keeps_cid_bitmap = True

    def task_cid_value(self, t):
        return t.mm_cid.cid

    def cid_slots(self, mm):
        return () if mm.mm_cid.pcpu is None else mm.mm_cid.pcpu

    def owned_cid(self, kind, value):
        if value & MM_CID_UNSET:
            return -1
        if kind == "task":
            return -1 if cid_on_cpu(value) else cid_from_transit_cid(value)
        return cpu_cid_to_cid(value) if cid_on_cpu(value) else -1

    def cid_text(self, value):
        return cid_repr(value)

    def cid_mm_state(self, mm):
        return repr(mm.mm_cid)

    def watch_task_cid(self, t):
        if tracing_cids(self.k):
            t.mm_cid = watch_struct(self.k, t.mm_cid, "cid", None, t, by_setattr=True)  # read often

    def cidmask_bits(self, mm):
        return mm.cidmask.bits

    def cpu_state(self, rq):
        curr = rq.curr
        mm = curr.mm
        if mm is None or getattr(mm, "mm_cid", None) is None or mm.mm_cid.pcpu is None:
            return ""
        return (f"mm_cid={cid_repr(curr.mm_cid.cid)} pcpu={cid_repr(mm.mm_cid.pcpu[rq.cpu].cid)} "
                f"{mm.mm_cid!r} cidmask={cpus_of(mm.cidmask.bits)}")

    def coverage_state(self, mm):
        """What the searches' coverage (emulator.explore.coverage) counts as
        this mm's state: the ownership mode with its transition, whether
        the bitmap has a free cid below max_cids ("room"), only above it
        ("full") or none ("exhausted"), and a deferred mode change pending."""
        mc = mm.mm_cid
        mode = {0: "task", MM_CID_TRANSIT: "cpu->task", MM_CID_ONCPU: "cpu",
                MM_CID_ONCPU | MM_CID_TRANSIT: "task->cpu"}.get(mc.mode, mc.mode)
        return (mode, _room(mm.cidmask.bits, mc.max_cids, self.num_possible_cpus),
                bool(mc.update_deferred))


def _room(bits, max_cids, possible):
    if ~bits & ((1 << max_cids) - 1):
        return "room"
    return "full" if ~bits & ((1 << possible) - 1) else "exhausted"
