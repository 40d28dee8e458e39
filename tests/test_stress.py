"""Stress searches over every variant of every subsystem (emulator.explore.stress).

Hypothesis draws a mix of compare's stress loads (cpu-load, fork,
pthread-max, hackbench, cyclictest, lazy-tlb) with their arguments, a
machine shape, a duration, a seed and a strategy; every invariant and
detector judges the run, and a failure shrinks towards fewer and smaller
loads on a smaller machine for a shorter time.  Derandomized, so the suite
runs the same search every time; ``STRESS_EXAMPLES`` widens it.  A second
search draws other cases for machines with the weak memory model
(``STRESS_WEAK_EXAMPLES``).
"""

import os

import pytest

from emulator.explore.stress import StressCase, lockup_ns, run_stress, stress_cases, stress_search
from emulator.errors import HardLockup
from emulator.variants import get_variant

EXAMPLES = int(os.environ.get("STRESS_EXAMPLES", "6"))
WEAK_EXAMPLES = int(os.environ.get("STRESS_WEAK_EXAMPLES", "10"))
WEAK_SEED = 7
# The loads exercise every subsystem (pipes and forks allocate pages, lazy-tlb
# switches kernel threads in): the search runs over each subsystem's variants,
# the others at their defaults.
SUBSYSTEM = ("mm_cid", "page_alloc", "lazy_tlb")


def test_stress_loads_keep_the_invariants(emu_variant):
    def stress(case):
        run_stress(emu_variant, case)       # a recorded finding ends a run as known
    stress_search(stress, EXAMPLES)()


def test_stress_loads_keep_the_invariants_under_weak_memory(emu_variant, request):
    """The default suite's weak share of the stress search: other cases (its own
    Hypothesis seed), the machines weakly ordered (under --memory-model M, M)."""
    model = request.config.getoption("memory_model") or "weak"

    def stress(case):
        run_stress(emu_variant, case, memory_model=model)
    stress_search(stress, WEAK_EXAMPLES, seed=WEAK_SEED)()


def test_a_case_names_its_loads_and_shape():
    case = StressCase(3, 7, "pthread-max:4,1+cpu-load:80,slice=1ms", 10_000_000,
                      "random:p=0.01,max_ns=5000", nr_possible=8, isolation={"nohz_full": [2]})
    assert repr(case) == ("StressCase(nr_cpus=3, nr_possible=8, nohz_full=[2], seed=7, "
                          "workload='pthread-max:4,1+cpu-load:80,slice=1ms', duration=10ms, "
                          "strategy='random:p=0.01,max_ns=5000')")


def test_a_case_boots_its_machine_with_its_cpus_isolated():
    """With CPUs isolated (nohz_full= or isolcpus=), compare's per-CPU loads
    go to them (emulator.workloads.Context.cpus), as the seed authors ran
    their loads."""
    from emulator.workloads import Context
    case = StressCase(4, 1, "cpu-load:100", 5_000_000, "random:p=0.002,max_ns=1000",
                      isolation={"isolcpus": [2, 3]})
    m = case.machine(variants=["v7.0"])
    try:
        assert m.kernel.isolated_mask == 0b1100 and Context(m, case.duration_ns).cpus == [2, 3]
    finally:
        m.close()
    assert run_stress(get_variant("v7.0"), case) is None


def test_every_drawn_mix_is_one_compare_runs():
    """Each drawn workload spec parses as compare parses it, and every load of
    the menu is drawn."""
    from hypothesis import given, settings
    from emulator.workloads import load_workloads
    seen = set()

    @settings(max_examples=200, database=None, derandomize=True)
    @given(case=stress_cases())
    def draw(case):
        load_workloads(case.workload)
        seen.update(part.partition(":")[0] for part in case.workload.split("+"))
    draw()
    assert seen == {"cpu-load", "fork", "pthread-max", "hackbench", "cyclictest", "lazy-tlb"}


def test_a_stress_case_with_isolated_cpus_replays_from_its_key():
    from emulator.explore.keys import parse_key
    from emulator.explore.replay import replay
    case = StressCase(3, 7, "cpu-load:80", 5_000_000, "random:p=0.01,max_ns=5000",
                      isolation={"isolcpus": [1, 2]})
    key = case.key(get_variant("v6.4"))
    data = parse_key(key)
    assert (data["kind"], data["isolation"], data["cpus"]) == ("stress", {"isolcpus": [1, 2]}, 3)
    lines = []
    assert replay(key, out=lines.append) == 0
    assert lines == ["ok 1 stress case on v6.4"]


def test_a_cpu_spinning_for_half_a_stress_run_is_a_lockup():
    """A stress run is abandoned at its end: its lockup threshold is half its
    duration (at least 10 ms), not the machine's 1 s that no run of
    milliseconds reaches.  A patch whose allocation never finds a cid spins
    in mm_get_cid() from its first thread on."""
    assert lockup_ns(5_000_000) == 10_000_000 and lockup_ns(30_000_000) == 15_000_000

    class NeverFinds(get_variant("v7.0")):
        name = "test-never-finds"

        def _mm_get_cid(self, mm, max_cids):
            from emulator.variants.mm_cid_v7_0 import MM_CID_UNSET
            return MM_CID_UNSET
    case = StressCase(2, 1, "pthread-max:2,1", 30_000_000, "random:p=0.002,max_ns=1000")
    with pytest.raises(HardLockup, match=r"spinning on cpu_relax\(\) loop for 1[5-9]\d{6} ns"):
        run_stress(NeverFinds, case)


def test_a_kill_of_every_process_leaves_no_fork_behind():
    """Regression story (a model bug that ending the stress runs with
    ``kill -9 -1`` found): kill(-1) walked the processes while a hackbench
    parent it had not reached yet forked a worker the walk never saw, which
    then waited for hackbench's go for ever.  The kernel holds tasklist_lock
    over the walk (kill_something_info()), so the fork's copy_process()
    finds its SIGKILL pending instead; the model now does too, and the run
    ends and is judged at quiet."""
    case = StressCase(5, 5124, "lazy-tlb:4,0+hackbench:2,fds=1,loops=2+fork:1", 20_000_000,
                      "random:p=0.02,max_ns=5000", nr_possible=10)
    assert run_stress(get_variant("seed-002"), case) is None


@pytest.mark.parametrize("variant, case", [
    ("seed-002", StressCase(2, 0, "hackbench:2,fds=3,loops=50+cpu-load:50,slice=4ms+cyclictest:1000",
                            20_000_000, "random:p=0.002,max_ns=20000", nr_possible=3)),
    ("seed-004-shoot-lazies", StressCase(8, 65535, "cpu-load:100,slice=1ms+lazy-tlb:4,0+pthread-max:6,2",
                                         20_000_000, "preempt:p=0.05,max_ns=200000")),
], ids=["hackbench-go", "pthread-max-broadcast"])
def test_a_broadcast_survives_a_waiter_killed_during_it(variant, case):
    """Regression stories (a model bug that the stress campaigns found once
    their runs ended with ``kill -9 -1``): a condition broadcast wakes its
    waiters one by one; a wake-up is a scheduling point, where a waiter the
    kill had reached left the futex queue, and the broadcast's walk then
    failed to take it off ("list.remove(x): x not in list").  The kernel
    walks the bucket under the lock the leaving waiter takes as well."""
    assert run_stress(get_variant(variant), case) is None
