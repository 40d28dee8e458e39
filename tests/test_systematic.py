"""Systematic exploration: every schedule with at most N preemptions, races
reversed, equivalent schedules run once (emulator.explore.systematic).

Over every selected variant, the selftest mirror ``basic`` is searched to its
bound at 1, 2 and 3 CPUs, and generated programs are searched schedule by
schedule; a patch file given with ``--variant`` gets the deeper search
(SYSTEMATIC_PATCH_RUNS schedules per xdist shard).  Budgets are counted in
runs, never in wall time, so a search is the same search on any machine.
"""

import os
import subprocess
import sys

import pytest

from emulator import Machine
from emulator.errors import EmulationFailure
from emulator.explore.campaign import Campaign
from emulator.explore.replay import replay
from emulator.explore.strategies import strategy_from_spec
from emulator.explore.systematic import (
    SystematicSearch, mirror_outcome, program_outcome, run_outcome,
)
from emulator.variants import get_variant
from emulator.workload import Program, repeat, run, sleep, thread

RUNS = int(os.environ.get("SYSTEMATIC_RUNS", "300"))
PATCH_RUNS = int(os.environ.get("SYSTEMATIC_PATCH_RUNS", "1500"))


# v6.3 without cid_lock: find the first zero bit, then set it, in two steps.
from test_explore import UnlockedAllocator  # noqa: E402


def sleepers(n=3, times=3):
    worker = Program(repeat(times, run(20_000), sleep(15_000)))
    return Program(*[thread(worker) for _ in range(n)], sleep(300_000))


three_sleepers = sleepers


def search_of(variant, nr_cpus, program, bound):
    def run_once(strategy):
        m = Machine(nr_cpus=nr_cpus, variants=[variant], seed=1, strategy=strategy)
        return run_outcome(variant, m, lambda: m.run(program))
    return SystematicSearch(run_once, bound=bound).run()


def test_the_lost_update_is_found_with_one_preemption_and_replays():
    """The default order never splits find-then-set; reversing one race of
    the first run does, and the schedule that did it replays as a script."""
    search = search_of(UnlockedAllocator, 2, three_sleepers(), bound=2)
    assert search.runs_at[0] == 1 and search.failures, search.coverage()
    exc, spec = search.failures[0]
    assert spec.startswith("script:p") and spec.count("=") == 1      # one preemption
    with pytest.raises(EmulationFailure) as again:
        Machine(nr_cpus=2, variants=[UnlockedAllocator], seed=1,
                strategy=strategy_from_spec(spec)).run(three_sleepers())
    assert again.value.message == exc.message


def test_a_faithful_allocator_exhausts_the_bound_and_says_what_it_covered():
    """v6.3 takes the lock: every schedule with <= 2 preemptions passes, and
    the report counts them, the points pruned and the runs found equivalent."""
    search = search_of("v6.3", 2, sleepers(2, 2), bound=2)
    assert search.exhausted and not search.failures
    assert search.runs == sum(search.runs_at) and all(search.runs_at)
    assert search.independent > 0 and search.equivalent > 0
    text = search.coverage()
    assert text.startswith(f"all {search.runs:,} schedules with <= 2 preemptions")
    assert f"{search.independent:,} preemption points pruned as independent" in text


def test_only_points_with_a_race_after_them_are_preempted():
    """At bound 1 every schedule reverses a race of the first run: at most two
    (the other side's first and last racing access) per other context and
    per point that is not independent."""
    from emulator.explore.systematic import CTX, RecordingScript
    first = RecordingScript()
    Machine(nr_cpus=3, variants=["v6.3"], seed=1, strategy=first).run(three_sleepers())
    contexts = len({entry[CTX] for entry in first.log})
    search = search_of("v6.3", 3, three_sleepers(), bound=1)
    assert search.exhausted and search.independent > 0
    assert search.runs_at[1] <= 2 * (contexts - 1) * (search.choices - search.independent)


def test_a_budget_cut_says_how_much_is_left():
    def run_once(strategy):
        m = Machine(nr_cpus=2, variants=["v6.3"], seed=1, strategy=strategy)
        return run_outcome(m.mm_cid_class, m, lambda: m.run(three_sleepers()))
    search = SystematicSearch(run_once, bound=2, max_runs=5).run()
    assert search.runs == 5 and not search.exhausted and search.left > 0
    assert "not reached" in search.coverage()


@pytest.mark.parametrize("nr_cpus", [1, 2, 3])
def test_the_basic_mirror_passes_every_schedule_within_the_bound(emu_variant, nr_cpus):
    """Every schedule of the basic mirror with <= 2 preemptions keeps the
    invariants, or ends in one of the variant's recorded findings."""
    search = SystematicSearch(
        lambda s: mirror_outcome(emu_variant, "basic", nr_cpus, 1, s), bound=2,
        max_runs=RUNS).run()
    assert not search.failures, str(search.failures[0][0])


def test_generated_programs_searched_schedule_by_schedule(emu_search, this_run):
    """Hypothesis draws small programs (threads that sleep and wake, fork,
    vfork, exec, exit, change affinity; 1 to 4 CPUs) and each is searched
    systematically; a failure is shrunk to the smallest program whose
    search still fails."""
    variant, shard = emu_search
    patch = getattr(variant, "source", None)
    if patch and shard >= 4:
        pytest.skip("four systematic shards per patch (the stateful search has eight)")
    failed = this_run / f"systematic-search-failed-{variant.name}"
    if patch and failed.exists():
        pytest.skip(f"another systematic search of {variant.name} failed: see its report")
    campaign = Campaign(variant, "systematic:bound=2,per_case=48", "generated", seed=shard)
    campaign.run(runs=PATCH_RUNS if patch else RUNS, progress=False)
    if campaign.failures:
        if patch:
            failed.touch()
        pytest.fail(campaign.summary() + "\n\n" + campaign.reports(), pytrace=False)


def test_a_program_schedule_replays_from_its_key():
    """A failing schedule of a generated program carries a key of kind
    "program" that replays it."""
    search = SystematicSearch(
        lambda s: program_outcome(UnlockedAllocator, 2, 1, three_sleepers(), s), bound=1)
    # A class defined in a test cannot be named by a key: the report says so.
    search.run()
    assert search.failures
    assert "program Program(" in str(search.failures[0][0])
    outcome = program_outcome(get_variant("v6.3"), 2, 1, three_sleepers(),
                              strategy_from_spec("script:p20=3001"))
    assert outcome.failure is None and outcome.known is None


def test_explore_systematic_prints_its_coverage_and_a_bad_spec_is_one_line():
    cmd = [sys.executable, "-m", "emulator", "explore", "--variant", "v6.3", "--strategy",
           "systematic:bound=1", "--workload", "basic", "--cpus", "2", "--runs", "50"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "systematic: " in done.stdout and "pruned as independent" in done.stdout
    bad = subprocess.run(cmd[:6] + ["--strategy", "systematic:depth=3"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "bound=N" in bad.stderr


def test_a_replayed_program_key_runs_the_same_schedule(tmp_path):
    """A key made for a registered variant's program replays through
    ``python -m emulator replay`` (here the run passes)."""
    from emulator.explore.systematic import program_key
    key = program_key(get_variant("v6.3"), 2, 1, three_sleepers(),
                      strategy_from_spec("script:p20=3001"), {})
    lines = []
    assert replay(key, out=lines.append) == 0
    assert lines[0].startswith("ok 1 program on v6.3")


@pytest.mark.parametrize("workload", ["stateful", "generated", "basic"])
@pytest.mark.parametrize("strategy", ["systematic:per_case=4", "random", "pct", "preempt"])
def test_every_strategy_runs_over_every_workload_source(strategy, workload):
    """Each strategy explores mirrors, generated programs and stateful rule
    sequences alike; a faithful era ends only in its recorded findings."""
    campaign = Campaign("v7.0", strategy, workload, cpus=[2, 3], seed=1)
    campaign.run(runs=12, progress=False)
    assert campaign.runs >= 12 and not campaign.failures, campaign.summary()


def test_the_schedules_of_a_stateful_example_are_searched():
    """With the systematic strategy each rule sequence Hypothesis draws is
    replayed under the schedules within the bound (a step whose precondition
    no longer holds under another schedule is skipped)."""
    campaign = Campaign("v6.3", "systematic:bound=1,per_case=8", "stateful", cpus=[2], seed=0)
    campaign.run(runs=60, progress=False)
    assert campaign.searches and sum(s.runs_at[1] for s in campaign.searches) > 0
    assert not campaign.failures, campaign.summary()


def test_a_points_site_is_the_kernel_function_and_its_caller_for_every_primitive():
    """The rarest call sites go first; a site is the function that called the
    primitive and that function's caller, for the primitives that call the
    hook themselves (READ_ONCE, cmpxchg, bit operations) as for the locks.
    (READ_ONCE and its family were one frame off: the site was the primitive
    and the function.)"""
    from emulator.explore.systematic import SITE, RecordingScript
    from emulator.kernel.locking import (
        READ_ONCE, cmpxchg, raw_spin_lock, raw_spin_unlock, raw_spinlock_t,
    )

    class Shared:
        x = 0
    d, lock = Shared(), raw_spinlock_t("test_lock")

    def reader():
        return READ_ONCE(d, "x")

    def swapper():
        return cmpxchg(d, "x", 0, 1)

    def locker():
        raw_spin_lock(lock)
        raw_spin_unlock(lock)

    def body(k):
        reader(), swapper(), locker()
    strategy = RecordingScript()
    Machine(nr_cpus=1, seed=1, strategy=strategy).run_kernel(body)
    sites = {(code.co_name, caller.co_name) for code, caller in
             (entry[SITE] for entry in strategy.log)}
    assert {("reader", "body"), ("swapper", "body"), ("locker", "body")} <= sites
    assert not any(name in ("READ_ONCE", "cmpxchg", "raw_spin_lock") for name, _ in sites)
