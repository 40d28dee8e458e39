"""Seed 000: Gabriele Monaco, "[PATCH v2 0/4] sched: Move task_mm_cid_work to mm
delayed work" (2024-12-13, lore 20241213095407.271357-1-gmonaco@redhat.com,
base-commit 231825b2e1ff), patches 1-3 as posted:

1/4 "sched: Move task_mm_cid_work to mm delayed work" (-2-gmonaco): the scan
    is a ``struct delayed_work mm_cid_work`` in the mm, initialised and queued
    (``schedule_delayed_work(..., msecs_to_jiffies(MM_CID_SCAN_DELAY))``) in
    ``mm_alloc_cid_noprof()``, re-armed at the end of every run, and disabled
    synchronously in ``mm_destroy_cid()`` (``disable_delayed_work_sync()``);
    ``task_struct::cid_work``, ``init_sched_mm_cid()`` and
    ``task_tick_mm_cid()`` are gone;
2/4 "sched: Remove mm_cid_next_scan as obsolete" (-3-gmonaco): no
    ``mm_cid_next_scan`` and no rate limiting in the work; it returns early
    (re-arming itself) while the cidmask is empty;
3/4 "sched: Compact RSEQ concurrency IDs with reduced threads and affinity"
    (-4-gmonaco, Mathieu Desnoyers): ``__mm_cid_try_get()`` lowers
    ``max_nr_cid`` to ``min(nr_cpus_allowed, mm_users)`` and re-uses
    ``recent_cid`` only below it.  Its sched.h hunks are the ones later merged
    as 02d954c0fdf9 (v6.14).
4/4 is the selftest (selftests/rseq/mm_cid_compaction_test.py mirrors it).

The base (231825b2e1ff) has 7e019dcc470f but not 02d954c0fdf9; base + patch 3
is the v6.14 class, so this derives from it and adds patches 1 and 2.  (Its context lines show sched_tick() passing
``rq->donor``, i.e. a tip/next tree of the v6.14 cycle rather than plain
v6.13-rc; nothing of mm_cid differs.)

Finding (kept as posted): ``__mmdrop()`` runs from ``finish_task_switch()``
with preemption disabled when the last lazy-TLB reference to an exited
process's mm goes (``mmdrop_lazy_tlb_sched()`` -> ``mmdrop()`` on
!PREEMPT_RT; PREEMPT_RT defers it to an RCU callback, below); there ``mm_destroy_cid()`` -> ``disable_delayed_work_sync()`` ->
``might_sleep()`` is "BUG: sleeping function called from invalid context".
Any workload in which a process exits and a user task then runs on a CPU that
still holds its mm lazily hits it (tests/test_conformance.py
processes_fork_exec_exit and synthetic_churn; tests/test_variant_seed_000.py).
v1 used ``disable_delayed_work()`` without _sync; v7 onwards use a plain work
with ``disable_work()`` and an mm_count reference around each queued run.  I
found no public report of the splat against v2.

PREEMPT_RT, where the posting was measured, does not make the path legal, so
the model does not need RT's deferral to reach the verdict: there
``mmdrop_sched()`` (include/linux/sched/mm.h) hands the last drop to
``call_rcu(&mm->delayed_drop, __mmdrop_delayed)``, and RCU callbacks run in
the rcuc/rcuo kthreads inside ``local_bh_disable()``, which on PREEMPT_RT
takes ``rcu_read_lock()`` ("Required to meet the RCU bottomhalf
requirements", kernel/softirq.c); ``__cancel_work_sync()``'s
``might_sleep()`` then counts an RCU nest depth of 1 against an expected 0
(``__might_resched()``): the same "sleeping function called from invalid
context" under CONFIG_DEBUG_ATOMIC_SLEEP, and a real sleep inside an RCU
read-side section whenever the work is running at that moment.  Without
that debug option a cancel of an idle work returns at once, which is how
the posting's fork figures could be taken.  The model has no RCU and no
PREEMPT_RT (spinlock_t as rt_mutex, threaded interrupts), so it does not
run that configuration; compare reports the fork row of seed-000 as this
finding.  (Checked: RT's ``__local_bh_disable_ip()`` in kernel/softirq.c and
``nocb_cb_wait()``'s ``local_bh_disable(); rcu_do_batch(rdp);`` in
kernel/rcu/tree_nocb.h, the rcuo path that nohz_full CPUs' callbacks take;
the rcuc path, ``rcu_cpu_kthread()`` in kernel/rcu/tree.c, is from memory.)

Departures, as in v6.13; the work's cost is 250 ns of virtual CPU time per
CPU in the first pass (v6.4); ``scan_begin/scan_end("task_mm_cid_work")``
wraps every run of the work function, early returns included, as the
posting's probes did (its tables count invocations of the function).
"""

from ..errors import KernelBug
from ..kernel.cpumask import cpumask_weight
from ..kernel.locking import READ_ONCE
from ..kernel.workqueue import delayed_work
from . import register
from .base import Finding
from .mm_cid_v6_4 import MM_CID_SCAN_DELAY, SCAN_NS_PER_CPU
from .mm_cid_v6_14 import MmCidV6_14


class mm_cid_delayed_work(delayed_work):
    """``struct delayed_work mm_cid_work`` inside ``struct mm_struct``:
    ``mm`` is what container_of() finds around it."""

    __slots__ = ("mm",)


def INIT_DELAYED_WORK(mm, func):
    work = mm_cid_delayed_work(func, "task_mm_cid_work")
    work.mm = mm
    return work


SEED_000_SLEEPS = (
    "seed 000 v2 cancels the mm's delayed work synchronously (disable_delayed_work_sync()) "
    "from __mmdrop(), which runs from finish_task_switch() with preemption disabled when "
    "the last lazy reference goes: sleeping in atomic context.  Later postings (v7+) use "
    "disable_work() with a reference held around the work.")

@register
class MmCidSeed000(MmCidV6_14):
    name = "seed-000"
    known_findings = (
        Finding(KernelBug, None, SEED_000_SLEEPS, function="might_sleep"),
    )
    copies = ("Gabriele Monaco, [PATCH v2 1-3/4] sched: Move task_mm_cid_work to mm "
              "delayed work (2024-12-13, not merged)")

    # -- include/linux/mm_types.h ----------------------------------------------------------

    def init_task_fields(self, t):
        # dup_task_struct(); struct task_struct has no cid_work any more.
        t.mm_cid = -1
        t.last_mm_cid = -1
        t.mm_cid_active = 0
        t.migrate_from_cpu = -1

    def mm_alloc_cid(self, mm, p):
        """mm_alloc_cid_noprof()"""
        super().mm_alloc_cid(mm, p)          # alloc_percpu(), mm_init_cid(mm, p)
        mm.mm_cid_work = INIT_DELAYED_WORK(mm, self.task_mm_cid_work)
        self.k.schedule_delayed_work(mm.mm_cid_work, self.k.msecs_to_jiffies(MM_CID_SCAN_DELAY))
        return 0

    def mm_destroy_cid(self, mm):
        self.k.disable_delayed_work_sync(mm.mm_cid_work)
        mm.pcpu_cid = None                   # free_percpu()

    # -- kernel/sched/core.c (patches 1/4 and 2/4) --------------------------------------------

    def task_mm_cid_work(self, work):
        k = self.k
        token = k.scan_begin("task_mm_cid_work")
        delayed_work = work                  # container_of(work, struct delayed_work, work)
        mm = delayed_work.mm                 # container_of(delayed_work, struct mm_struct, mm_cid_work)
        cidmask = self.mm_cidmask(mm)
        # Nothing to clear for now
        if READ_ONCE(cidmask, "bits"):       # !cpumask_empty(cidmask)
            # Clear cids that were not recently used.
            for cpu in range(k.nr_cpu_ids):  # for_each_possible_cpu(cpu)
                self.sched_mm_cid_remote_clear_old(mm, cpu)
                k.charge(SCAN_NS_PER_CPU)
            weight = cpumask_weight(cidmask.bits)
            # Clear cids that are greater or equal to the cidmask weight to
            # recompact it.
            for cpu in range(k.nr_cpu_ids):
                self.sched_mm_cid_remote_clear_weight(mm, cpu, weight)
        # out:
        k.schedule_delayed_work(delayed_work, k.msecs_to_jiffies(MM_CID_SCAN_DELAY))
        k.scan_end(token)

    def init_sched_mm_cid(self, t):
        """Removed by patch 1/4 (and its call in __sched_fork())."""

    def task_tick_mm_cid(self, rq, curr):
        """Removed by patch 1/4 (and its call in sched_tick())."""
