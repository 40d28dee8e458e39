"""Generated workloads and schedules over every variant (emulator.explore.generated).

Hypothesis draws a program tree, a machine shape, a seed and the pauses at
scheduling points; P1-P7, deadlock and use-after-free checks judge the run.  A
variant's recorded findings (``known_findings``, inherited by patches deriving
from it) end a run as known; anything else fails, shrunk to the fewest phases
and pauses that still break the variant.  Examples are derandomized (and
drawn without the constants of whatever modules the process loaded), so a run
of the suite is the same search every time, alone or in the full suite; more
examples (``HYPOTHESIS_EXAMPLES``) widen it.  The search runs in batches of
BATCH examples, guided by what the earlier ones interleaved (a Coverage of
its own, so that it does not depend on what else the process ran).
"""

import os

from emulator.explore.coverage import Coverage
from emulator.explore.findings import known_finding
from emulator.explore.generated import Case, generated_search, run_case
from emulator.variants.mm_cid_v7_0 import FAILED_EXECVE_PERCPU
from emulator.variants import get_variant
from emulator.workload import Program, exec_, sleep, thread

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "150"))
BATCH = 20


def suite_search(variant, failed=None):
    """The suite's search of *variant*: EXAMPLES cases in batches, guided;
    each failing case is appended to *failed* (the shrunk one last)."""
    from emulator.errors import EmulationFailure
    coverage = Coverage()

    def generated(case):
        try:
            run_case(variant, case, coverage=coverage)
        except EmulationFailure:
            if failed is not None:
                failed.append(case)
            raise
    return generated_search(generated, EXAMPLES, batch=BATCH)


def test_generated_workloads_keep_the_invariants(emu_variant):
    suite_search(emu_variant)()


def test_a_failing_exec_is_a_phase():
    """exec_() of a missing file fails with ENOENT and the program goes on."""
    from emulator import Machine
    m = Machine(nr_cpus=2, variants=[get_variant("v6.4")])
    assert m.run(Program(exec_("/no/such/file"), thread(Program(sleep(10))), sleep(100))) == 0


def test_known_findings_are_inherited_by_patches():
    """A patch of v7.0 inherits v7.0's recorded failed-exec finding, not seed-000's."""
    from emulator.checks.invariants import InvariantViolation
    from emulator.errors import KernelBug

    class Patch(get_variant("v7.0")):
        name = "test-patch"
    p2 = InvariantViolation("P2 bound: t on CPU 1 sees mm_cid 2147483648, outside [0, 4) (v7.0)",
                            invariant="P2", mm_cid=2147483648)
    sleeping = KernelBug("BUG: sleeping function called from invalid context on CPU 0: ...",
                         function="might_sleep")
    assert known_finding(Patch, p2, {FAILED_EXECVE_PERCPU}) is not None
    assert known_finding(Patch, sleeping, {FAILED_EXECVE_PERCPU}) is None
    assert known_finding(get_variant("v6.4"), p2, {FAILED_EXECVE_PERCPU}) is None


def test_a_finding_is_known_only_when_its_cause_happened():
    """The same P2 message in a run without a failed execve() in per-CPU mode
    is not v7.0's recorded finding: a patch failing that way for another
    reason is reported."""
    from emulator.checks.invariants import InvariantViolation
    p2 = InvariantViolation("P2 bound: t on CPU 1 sees mm_cid 2147483648, outside [0, 4) (v7.0)",
                            invariant="P2", mm_cid=2147483648)
    assert known_finding(get_variant("v7.0"), p2, set()) is None
    assert known_finding(get_variant("v7.0"), p2, {FAILED_EXECVE_PERCPU}) is not None


def test_the_search_catches_the_patch_seed_001_rejected():
    """The generic search, with no scenario written for it, fails the README's
    moves_cid.py patch in its default budget, shrunk to a program of at most ten
    phases."""
    import pytest
    from emulator.errors import EmulationFailure
    from emulator.variants import load_variant
    patch = load_variant("fixtures/patches/moves_cid.py")
    shrunk = []
    with pytest.raises(EmulationFailure):
        suite_search(patch, shrunk)()
    assert phases_in(shrunk[-1].program) <= 10, shrunk[-1]


def phases_in(program):
    """Every phase of *program*, of its loops, and of the programs it starts."""
    count = 0
    for phase in program.phases:
        count += 1
        if phase[0] == "repeat":
            count += phases_in(Program(*phase[2]))
        elif len(phase) > 1 and isinstance(phase[1], Program):
            count += phases_in(phase[1])
    return count


def test_a_program_prints_as_the_calls_that_build_it():
    from emulator.workload import repeat, run, setaffinity, yield_
    p = Program(run(3), thread(Program(sleep(4), exec_("/x"))), repeat(2, yield_(), setaffinity({1, 0})))
    again = eval(repr(p), {"Program": Program, "run": run, "thread": thread, "sleep": sleep,
                           "exec_": exec_, "repeat": repeat, "yield_": yield_,
                           "setaffinity": setaffinity})
    assert repr(again) == repr(p)
    assert again.phases[0] == run(3) and again.phases[2] == repeat(2, yield_(), setaffinity({0, 1}))


def test_a_case_carries_its_machine_shape_into_its_repr_and_key():
    """Possible CPUs beyond the online ones and a taskset first process are
    part of the falsifying example and of its replay key."""
    from emulator.explore.keys import parse_key
    from emulator.explore.replay import replay
    case = Case(3, 5, Program(thread(Program(sleep(10))), sleep(100)), {3: 1000},
                nr_possible=4, affinity={2, 0})
    assert repr(case).startswith("Case(nr_cpus=3, nr_possible=4, affinity=[0, 2], seed=5, ")
    assert repr(Case(2, 1, Program())).startswith("Case(nr_cpus=2, seed=1, ")
    data = parse_key(case.key(get_variant("v7.0")))
    assert (data["cpus"], data["nr_possible"], data["affinity"]) == (3, 4, [0, 2])
    machines = []
    assert run_case(get_variant("v7.0"), case, on_machine=machines.append) is None
    k = machines[0].kernel
    assert (k.nr_online, k.nr_cpu_ids, k.init_task.cpus_mask) == (3, 4, 0b101)
    lines = []
    assert replay(case.key(get_variant("v7.0")), out=lines.append) == 0


def test_the_search_draws_every_machine_shape():
    """One CPU, odd counts, more possible CPUs than online ones, a taskset
    first process: each is drawn within the suite's budget."""
    from emulator.explore.generated import CPUS
    shapes = []
    generated_search(lambda case: shapes.append(case.shape), EXAMPLES)()
    assert {s.nr_cpus for s in shapes} == set(CPUS) == {1, 2, 3, 4, 5, 8}
    assert any(s.nr_possible for s in shapes) and any(s.affinity for s in shapes)
    assert all(s.nr_possible is None or s.nr_possible > s.nr_cpus for s in shapes)
    assert all(s.affinity is None or set(s.affinity) < set(range(s.nr_cpus)) for s in shapes)


def test_no_search_runs_hypothesis_s_explain_phase():
    """Once an example has failed, the explain phase runs every later one (the
    whole shrink) under a line tracer: several times slower for nothing a
    replay key does not say (benchmarks/run.py times both)."""
    from hypothesis import Phase
    from emulator.explore.generated import search_settings
    phases = search_settings(10).phases
    assert Phase.explain not in phases and Phase.shrink in phases and Phase.generate in phases
