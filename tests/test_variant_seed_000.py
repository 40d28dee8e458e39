"""Seed 000 (Gabriele Monaco's v2, patches 1-3): task_mm_cid_work as a per-mm
delayed work, re-armed every 100 ms, disabled synchronously at __mmdrop().

Also the kernel-model fixes this variant exposed: finish_task_switch() runs
with preemption disabled, and flush_work()/cancel_*_sync()/disable_*_sync()
may sleep whether or not there is anything to wait for (might_sleep()).
"""

import pytest

from emulator import Machine
from emulator.checks.kasan import is_freed
from emulator.errors import KernelBug
from emulator.kernel.locking import raw_spin_lock, raw_spin_unlock, raw_spinlock_t
from emulator.kernel.workqueue import delayed_work
from emulator.uapi.libc import execve, fork, sched_setaffinity, usleep
from emulator.variants import get_variant
from emulator.workload import Program, fork as pfork, run, sleep

MS = 1_000_000


def work_runs(m):
    """Virtual times at which task_mm_cid_work started, from the trace."""
    return [r[0] for r in m.kernel.tp.full
            if r[4] == "workqueue_execute_start" and r[5].fields["function"] == "task_mm_cid_work"]


def test_the_scan_is_a_delayed_work_rearmed_every_100ms_from_mm_init():
    """mm_alloc_cid() queues the work 100 ms out; each run re-arms it for 100
    ms later, whether or not a thread of the mm runs at a tick; the tick and
    __sched_fork() no longer touch it."""
    m = Machine(nr_cpus=4, variants=["seed-000"], seed=1, trace=True)

    def main():
        usleep(1_050_000)
        return 0

    assert m.run(main) == 0
    runs = work_runs(m)
    assert len(runs) == 10
    assert {b - a for a, b in zip(runs, runs[1:])} == {100 * MS}
    assert "scan task_mm_cid_work" in m.stats()
    assert m.stats()["scan task_mm_cid_work"].startswith("invocations=10 ")


def test_the_work_returns_early_while_no_cid_is_allocated():
    """Patch 2/4: once the scans have cleared the idle CPU's cid, the work finds
    the cidmask empty and returns at once (0 ns), still re-arming itself."""
    m = Machine(nr_cpus=8, variants=["seed-000"], seed=1)

    def main():
        usleep(1_050_000)
        return 0

    assert m.run(main) == 0
    durations = m.kernel.scan_stats["task_mm_cid_work"]
    assert len(durations) == 10
    assert durations[0] == 8 * 250              # one pass over 8 CPUs at 250 ns each
    assert durations[-1] == 0                   # cidmask empty: goto out
    assert durations.count(0) >= 7


def test_scan_invocations_and_duration_in_machine_stats_at_128_cpus():
    """The seed-000 table's columns: invocations and duration avg/max/sum in us;
    a full scan of 128 CPUs costs 32 us of virtual time."""
    m = Machine(nr_cpus=128, variants=["seed-000"], seed=1)
    program = Program(*[run(20 * MS), sleep(5 * MS)] * 20, comm="busy")
    assert m.run(program) == 0
    line = m.stats()["scan task_mm_cid_work"]
    n = len(m.kernel.scan_stats["task_mm_cid_work"])
    assert n == 5
    assert line.startswith(f"invocations={n} duration avg/max/sum=")
    assert max(m.kernel.scan_stats["task_mm_cid_work"]) >= 128 * 250


def test_leader_converges_to_cid_0_without_running_at_a_tick():
    """The compaction story: the high-cid thread sleeps 500 ms at a time and is
    never current at a tick, yet within a few scans its CPU's slot is cleared
    and, with max_nr_cid lowered to mm_users (patch 3/4), it comes back to 0."""
    from selftests.rseq.mm_cid_compaction_test import run as compaction
    result = compaction(Machine(nr_cpus=8, variants=["seed-000"], seed=2))
    assert result.outcome == "pass"


def test_the_work_is_disabled_synchronously_when_the_mm_is_freed_in_task_context():
    """A child's mm freed by its execve() (exec_mmap() -> mmput() -> __mmdrop(),
    sleepable context): disable_delayed_work_sync() stops the work for good,
    so it never runs on the freed mm.  (The child runs only on CPU 0, so no
    idle CPU keeps a lazy reference to its first mm, and the parent moves to
    CPU 1: no mm is freed in finish_task_switch(), see the next test.)"""
    m = Machine(nr_cpus=2, variants=["seed-000"], seed=1, trace=True)
    k = m.kernel
    old = {}

    def new_image():
        usleep(300_000)
        return 0

    def child():
        old["mm"] = mm = k.cur.mm
        old["work"] = mm.mm_cid_work
        usleep(150_000)                       # its work runs once, at 100 ms
        execve(new_image)

    def main():
        sched_setaffinity(0, {0})
        fork(child)                           # the child only ever runs on CPU 0
        sched_setaffinity(0, {1})
        usleep(600_000)
        return 0

    assert m.run(main) == 0
    work = old["work"]
    assert is_freed(old["mm"])
    assert work.disable == 1 and not work.pending
    assert work.nr_done == 1                  # ran at 100 ms, then never again


def test_mmdrop_from_finish_task_switch_sleeps_in_atomic_context():
    """The finding: a child process exits; the parent then runs on that CPU, and
    finish_task_switch() drops the last (lazy) reference to the child's mm:
    __mmdrop() -> mm_destroy_cid() -> disable_delayed_work_sync() sleeps with
    preemption disabled.  (The kernel says "BUG: sleeping function called
    from invalid context at kernel/workqueue.c".)"""
    m = Machine(nr_cpus=1, variants=["seed-000"], seed=1)
    child = Program(run(1000), comm="child")
    with pytest.raises(KernelBug) as info:
        m.run(Program(pfork(child), sleep(1 * MS), run(1000), comm="parent"))
    text = str(info.value)
    assert "sleeping function called from invalid context" in text
    assert "preempt_count=1" in text
    # (the lazy_tlb variant's drop is between mmdrop and finish_task_switch)
    assert "disable_work_sync <- mm_destroy_cid <- _mmdrop <- mmdrop <- " in text
    assert "mmdrop_lazy_tlb_sched" in text and "<- finish_task_switch" in text


def test_v6_13_frees_the_same_mm_in_finish_task_switch_without_sleeping():
    """The same story on v6.13 (no delayed work): __mmdrop() in
    finish_task_switch() is fine."""
    m = Machine(nr_cpus=1, variants=["v6.13"], seed=1)
    child = Program(run(1000), comm="child")
    assert m.run(Program(pfork(child), sleep(1 * MS), run(1000), comm="parent")) == 0
    assert m.stats()["mm_freed"] == 1


# -- the kernel-model fixes -----------------------------------------------------------------------


def test_finish_task_switch_runs_with_preemption_disabled(tmp_path):
    """Any __mmdrop() callee that may sleep is caught in finish_task_switch(),
    not only a cancel that finds a running work (kernel: might_sleep() checks
    preempt_count(); schedule() holds preemption off across the switch)."""
    patch = tmp_path / "sleepy_destroy.py"
    patch.write_text(
        "from emulator.variants import get_variant\n\n"
        "class SleepyDestroy(get_variant('v6.13')):\n"
        "    name = 'sleepy-destroy'\n"
        "    def mm_destroy_cid(self, mm):\n"
        "        self.k.might_sleep()\n"
        "        super().mm_destroy_cid(mm)\n")
    m = Machine(nr_cpus=1, variants=[str(patch)], seed=1)
    child = Program(run(1000), comm="child")
    with pytest.raises(KernelBug, match="sleeping function called from invalid context"):
        m.run(Program(pfork(child), sleep(1 * MS), run(1000), comm="parent"))


def test_cancel_sync_of_an_idle_work_with_a_spinlock_held_is_a_kernel_bug():
    """cancel_delayed_work_sync() calls might_sleep() even when there is nothing
    to wait for (kernel: __cancel_work_sync() and flush_work())."""
    m = Machine(nr_cpus=2, seed=1)
    lock = raw_spinlock_t("test_lock")

    def test(k):
        dw = delayed_work(lambda w: None)
        raw_spin_lock(lock)
        k.cancel_delayed_work_sync(dw)
        raw_spin_unlock(lock)
    with pytest.raises(KernelBug, match="sleeping function called from invalid context"):
        m.run_kernel(test)


def test_seed_000_is_the_posting_s_base_with_patch_3_then_patches_1_and_2():
    """The posting's base has 7e019dcc470f but not 02d954c0fdf9; patch 3/4 is
    02d954c0fdf9's text, so seed-000 is v6.14 plus patches 1 and 2: the same
    allocator, no tick-driven scan."""
    s000, v13, v14 = get_variant("seed-000"), get_variant("v6.13"), get_variant("v6.14")
    assert issubclass(s000, v14) and issubclass(s000, v13)
    assert s000._mm_cid_try_get is v14._mm_cid_try_get
    assert s000.task_tick_mm_cid is not v13.task_tick_mm_cid
