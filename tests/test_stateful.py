"""The mm lifecycle driven rule by rule over every variant (emulator.explore.stateful).

Hypothesis creates threads and processes, vforks, execs (succeeding and
failing), exits, widens and shrinks affinities, migrates, sleeps and wakes,
pins mms for deferred work, lets time pass and preempts kernel paths at
preemptible points; the invariants judge every step.  A variant's recorded
findings end an example as known (when their cause happened in the run);
anything else fails, shrunk to the fewest steps.  Each search has a fixed
seed, so a run of the suite is the same search every time.  A registered
variant gets one search of ``STATEFUL_EXAMPLES`` examples; a patch file given
with ``--variant`` is what the run is about and gets PATCH_SEARCH_SHARDS
searches of ``STATEFUL_PATCH_EXAMPLES`` each, spread over the xdist workers.
"""

import os

import pytest

# The mm lifecycle over every mm_cid variant, and over every page_alloc
# variant with the allocator's rules (lifecycle_machine() adds them).
SUBSYSTEM = ("mm_cid", "page_alloc")

from emulator import Machine
from emulator.errors import EmulationFailure, UsageError
from emulator.explore.stateful import Puppet, PuppetImage, lifecycle_machine, stateful_search

EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "60"))
PATCH_EXAMPLES = int(os.environ.get("STATEFUL_PATCH_EXAMPLES", "500"))


def test_rule_by_rule_the_variant_keeps_the_invariants(emu_search, this_run):
    variant, shard = emu_search
    patch = getattr(variant, "source", None)
    # A patch's searches stop once one of them failed: each further failure
    # would cost minutes of shrinking to report the same bug.
    failed = this_run / f"stateful-search-failed-{variant.name}"
    if patch and failed.exists():
        pytest.skip(f"another search of {variant.name} failed: see its report")
    search = stateful_search(lifecycle_machine(variant), PATCH_EXAMPLES if patch else EXAMPLES,
                             shard)
    try:
        search()
    except BaseException:
        if patch:
            failed.touch()
        raise


@pytest.fixture
def puppet_run():
    """``puppet_run(nr_cpus, variant)``: a started run whose first thread has
    parked; every run is closed when the test ends, whatever happened."""
    machines = []

    def start(nr_cpus=4, variant="v6.4"):
        m = Machine(nr_cpus=nr_cpus, variants=[variant], seed=1)
        machines.append(m)
        m.start(PuppetImage())
        m.advance(1_000_000)
        return m, m.kernel.tasks[m.main_pid].user
    yield start
    for m in machines:
        m.close()


def test_a_run_advances_step_by_step_and_a_parked_thread_wakes_on_input(puppet_run):
    """Between two steps nothing moves; input from an interrupt wakes the
    parked thread, which does what it is given and parks again."""
    m, p0 = puppet_run()
    assert p0.parked and m.quiet()
    before = m.now
    k = m.kernel
    p0.give(("call", k.sys_nanosleep, (1_000_000,)), from_cpu=3)
    assert m.now == before and not m.quiet()          # nothing ran yet
    m.advance(500_000)
    assert not p0.parked                              # asleep in nanosleep
    m.advance(1_000_000)
    assert p0.parked and m.now == before + 1_500_000
    p0.give(("call", k.sys_exit_group, (3,)))
    assert m.finish() == 3
    assert not m.live_host_threads()


def test_threads_forks_and_a_vfork_child_that_execs(puppet_run):
    """A vfork parent waits until its child execs; the child then runs on
    in its own mm."""
    m, p0 = puppet_run()
    k = m.kernel
    child = Puppet(m, "P1", "main", parent=p0, vfork=True)
    p0.give(("call", k.sys_vfork, (child,)))
    m.advance(200_000)
    assert child.parked and p0.task.state != 0 and not p0.parked   # waits in vfork
    assert child.task.mm is p0.task.mm
    child.give(("call", k.sys_execve, (PuppetImage("P1"), "puppet")))
    m.advance(500_000)
    assert p0.parked and child.parked and child.task.mm is not p0.task.mm
    child.give(("call", k.sys_exit_group, (0,)))
    p0.give(("call", k.sys_exit_group, (0,)))
    assert m.finish() == 0


def test_closing_a_run_leaves_nothing_behind(puppet_run):
    m, p0 = puppet_run()
    p0.give(("busy", 10_000_000))
    m.advance(1_000)
    m.close()
    assert not m.advance(1_000) and not m.live_host_threads()


def test_advance_needs_a_started_run():
    with pytest.raises(UsageError, match="start"):
        Machine(nr_cpus=2).advance(10)


def test_a_failure_in_a_step_raises_from_advance(puppet_run):
    """A kernel bug in the middle of a step ends the run there, reported as
    from run()."""
    from emulator.variants import get_variant

    class Broken(get_variant("v6.4")):
        name = "broken-fork"

        def sched_mm_cid_fork(self, t):
            raise RuntimeError("boom")
    m, p0 = puppet_run(variant=Broken)
    p0.give(("call", m.kernel.sys_clone_thread, (Puppet(m, "P1", "thread"),)))
    with pytest.raises(EmulationFailure, match="boom"):
        m.advance(1_000_000)


def test_an_example_boots_its_shape_and_replays_it_from_the_key():
    """The boot draws a machine shape; its fields are the replay key's boot,
    and replay_steps() boots the same machine from them."""
    from emulator.explore.keys import parse_key
    from emulator.explore.stateful import replay_steps
    from emulator.variants import get_variant
    machines = []
    steps = [["spawn", {"who": 0, "n": 3, "then": 200_000}],
             ["set_affinity", {"who": 1, "cpus": [5], "then": 100_000}],
             ["exit_group", {"who": 0, "code": 0, "then": 0}]]
    boot = {"nr_cpus": 2, "nr_possible": 8, "affinity": [1], "seed": 4}
    assert replay_steps(get_variant("v7.0"), boot, steps, on_machine=machines.append) is None
    k = machines[0].kernel
    assert (k.nr_online, k.nr_cpu_ids, k.init_task.cpus_mask) == (2, 8, 0b10)
    # The thread told to run on possible CPU 5 (offline) was refused: EINVAL.
    assert all(t.cpus_mask != 1 << 5 for t in k.tasks.values())
    cls = lifecycle_machine(get_variant("v7.0"))
    sm = cls()
    try:
        from emulator.explore.generated import Shape
        sm.boot(shape=Shape(3, nr_possible=4, affinity=[0, 2]), seed=1, preempt_p=0.25)
        data = parse_key(sm.replay_key())
        assert data["boot"] == {"nr_cpus": 3, "nr_possible": 4, "affinity": [0, 2], "seed": 1,
                                "preempt_p": 0.25}
    finally:
        sm.teardown()


def test_a_recorded_finding_met_between_steps_ends_the_example_as_known():
    """P4 is checked between steps wherever the machine is quiet; a recorded
    finding of the variant met there ends the example as known, as it does
    when the run itself raises it.  (It was reported as a new failure: the
    weak-memory search met v7.0's "last user" finding so.)"""
    from emulator.errors import InvariantViolation
    from emulator.explore.stateful import replay_steps
    from emulator.variants import get_variant
    from emulator.variants.base import Finding

    LEAK = "the exit left its cid bit set"

    class LeakOnExit(get_variant("v6.3")):
        name = "v6.3-leaks-a-cid-bit-on-exit"
        known_findings = (Finding(InvariantViolation, LEAK, "a leak at exit", invariant="P4"),)

        def sched_mm_cid_exit_signals(self, t):
            if t.mm is not None and t.mm_cid >= 0:
                self.k.causes.add(LEAK)
                t.mm_cid = -1            # the bit stays set: no mm_cid_put()
                t.mm_cid_active = 0
                return
            super().sched_mm_cid_exit_signals(t)

    # the thread exits, leaking its bit; the machine is quiet after the advance
    steps = [["spawn", {"who": 0, "n": 1, "then": 0}], ["advance", {"ns": 1_000_000}],
             ["exit_thread", {"who": 1, "then": 0}], ["advance", {"ns": 3_000_000}],
             ["advance", {"ns": 3_000_000}]]
    assert replay_steps(LeakOnExit, {"nr_cpus": 2, "seed": 1}, steps) == "a leak at exit"
