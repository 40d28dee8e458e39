"""Generated workloads and schedules: Hypothesis draws both, the invariants judge.

``workload_cases(cpus)`` draws a :class:`Case`: a synthetic program tree
(threads and processes created, computing, sleeping short and long enough for
a 100 ms scan or a deferred mode change, yielding, widening and shrinking their
affinity, exec'ing a new program or a missing file, exiting), a machine seed,
a CPU count and a :class:`~emulator.explore.ScriptStrategy` of pauses at
scheduling points.  ``run_case(variant, case)`` runs it with P1-P7 checked.
Because the schedule is drawn from the same data as the workload, Hypothesis
shrinks both: a failure ends as few phases and few pauses as still break the
variant.  It is a property test over programs generated before the run;
emulator.stateful drives a live machine rule by rule (vfork, migration and
mmdrop rules included).

Known findings: a variant's recorded bugs (``KNOWN_FINDINGS``, inherited by
patches deriving from it) end a generated run as "known" rather than failing
the test, so that the search goes on for anything new.
"""

import contextlib
import re

from hypothesis import HealthCheck, given, seed as hypothesis_seed, settings, strategies as st
from hypothesis.internal.conjecture import providers as _providers

from .checks.invariants import InvariantViolation
from .errors import EmulationFailure, HardLockup, KernelBug
from .explore import ScriptStrategy
from .machine import Machine
from .replay import make_key, replay_command
from .variants.mm_cid_seed_003 import WALK_MISSED_CLONE_VM_USER
from .variants.mm_cid_v7_0 import FAILED_EXECVE_PERCPU, LAST_USER_FAILED_EXECVE_PERCPU
from .workload import Program, exec_, exit_, fork, program_to_data, repeat, run, setaffinity, \
    sleep, thread, yield_

__all__ = ["Case", "KNOWN_FINDINGS", "known_finding", "reporting_example", "run_case",
           "generated_search", "search_settings", "without_local_constants", "workload_cases"]

MISSING_FILE = "/no/such/file"

SEED_000_SLEEPS = (
    "seed 000 v2 cancels the mm's delayed work synchronously (disable_delayed_work_sync()) "
    "from __mmdrop(), which runs from finish_task_switch() with preemption disabled when "
    "the last lazy reference goes: sleeping in atomic context.  Later postings (v7+) use "
    "disable_work() with a reference held around the work.")
V6_19_FAILED_EXEC = (
    "a finding to report (v6.19+ as reconstructed from the merged diffs): a failed execve() "
    "in per-CPU mode runs sched_mm_cid_before_execve() (exit) and sched_mm_cid_after_execve() "
    "(fork, which in per-CPU mode gives the task no cid: it borrows one at its next "
    "schedule-in), so the running task returns to user space with MM_CID_UNSET and rseq "
    "shows 0x80000000 (P2).  Only runs in per-CPU mode when the failing exec ends hit it "
    "(reached before it began, or by another thread's fork meanwhile).")

V6_19_LAST_USER_EXEC = (
    "a finding to report (v6.19+ as reconstructed): when the last user of an mm in per-CPU "
    "mode leaves it while one of its threads is in an execve() that then fails (the exec'ing "
    "thread itself, or its siblings exiting meanwhile), sched_mm_cid_exit()'s \"Last user\" "
    "branch ignores the mode change (\"nothing to do\": the mm was to go away), so the mode "
    "stays cpu->task with other CPUs still owning their CIDs.  The failed exec's fork, the "
    "mm's first user again, sets its CPU's slot to its new CID: a CID that CPU owned is "
    "orphaned (P4); once the mm has as many users as possible CPUs, sched_mm_cid_fork() "
    "spins in mm_get_cid() with mm_cid.lock held: a hard lockup.")

SEED_003_COUNTING_WALK = (
    "seed 003 (V3 as posted): mm_cid_fixup_tasks_to_cpus() "
    "stops on a count of the users it fixed, but its second loop (for_each_process_thread(), "
    "for CLONE_VM users such as a vfork()ed child) meets current's threads again and counts "
    "them twice, so it can stop before the child, whose CID stays task-owned in per-CPU "
    "mode.  With as many CIDs as possible CPUs one CPU then finds none for the task it "
    "schedules in and spins in mm_get_cid() with its runqueue lock held: a hard lockup.  "
    "192d852129b1 replaced \"the proven to be flaky counting logic\" by the per-mm "
    "user_list walk.")

# variant name -> [(error class, message pattern, cause, reason)]: a failure is
# the recorded finding when it has the class and message *and* its cause
# happened in the run (Kernel.causes, noted by the variant), so that a patch
# failing the same way for another reason is still reported.
KNOWN_FINDINGS = {
    "seed-000": [(KernelBug, r"sleeping function called from invalid context", None,
                  SEED_000_SLEEPS)],
    "seed-003": [(HardLockup, r"spinning on cpu_relax\(\)", WALK_MISSED_CLONE_VM_USER,
                  SEED_003_COUNTING_WALK)],
    "v7.0": [(InvariantViolation, r"P2 bound: .* sees mm_cid 2147483648,", FAILED_EXECVE_PERCPU,
              V6_19_FAILED_EXEC),
             (KernelBug, r"clear_bit\(0x80000000\)", FAILED_EXECVE_PERCPU, V6_19_FAILED_EXEC),
             (HardLockup, r"spinning on cpu_relax\(\)", LAST_USER_FAILED_EXECVE_PERCPU,
              V6_19_LAST_USER_EXEC),
             (InvariantViolation, r"P4 no orphan: ", LAST_USER_FAILED_EXECVE_PERCPU,
              V6_19_LAST_USER_EXEC)],
}
# seed-003 derives from v7.0 and inherits v7.0's findings through known_finding().


def known_finding(variant, exc, causes=None):
    """The reason *exc* is a recorded finding of *variant* or of an era it
    derives from, or None.  *causes* are the causes the run noted
    (``Kernel.causes``); a finding with a cause matches only if it happened."""
    for cls in type.mro(variant):
        for error, pattern, cause, reason in KNOWN_FINDINGS.get(getattr(cls, "name", None), ()):
            if isinstance(exc, error) and re.search(pattern, str(exc)) and \
                    (cause is None or causes is None or cause in causes):
                return reason
    return None


class Case:
    """One generated run: what Hypothesis prints as the falsifying example."""

    def __init__(self, nr_cpus, seed, program, pauses=None):
        self.nr_cpus = nr_cpus
        self.seed = seed
        self.program = program
        self.pauses = dict(pauses or {})

    def key(self, variant):
        """The replay key of this case on *variant* (None for a variant a key
        cannot name)."""
        return make_key("generated", variant, cpus=self.nr_cpus, seed=self.seed,
                        program=program_to_data(self.program),
                        pauses={str(p): ns for p, ns in self.pauses.items()})

    def __repr__(self):
        return (f"Case(nr_cpus={self.nr_cpus}, seed={self.seed}, "
                f"schedule={ScriptStrategy(self.pauses).spec()!r},\n     program={self.program!r})")


_RUN_NS = st.integers(0, 400_000)
_SLEEP_NS = st.one_of(st.integers(1, 300_000), st.sampled_from([20_000_000, 120_000_000]))


def _leaf(nr_cpus):
    cpus = st.sets(st.integers(0, nr_cpus - 1), min_size=1).map(sorted)
    return st.one_of(
        _RUN_NS.map(run),
        _SLEEP_NS.map(sleep),
        st.just(yield_()),
        cpus.map(setaffinity),
        st.just(exec_(MISSING_FILE)),
    )


def _programs(nr_cpus, depth):
    leaf = _leaf(nr_cpus)
    plain = st.one_of(leaf, st.tuples(st.integers(2, 4), st.lists(leaf, min_size=1, max_size=3))
                      .map(lambda r: repeat(r[0], *r[1])))
    if depth == 0:
        return st.lists(plain, max_size=5).map(lambda ps: Program(*ps, comm="gen"))
    child = st.deferred(lambda: _programs(nr_cpus, depth - 1))
    # A crowd: up to 12 threads that create nothing, enough to take an mm
    # past its CPUs (v6.19+ per-CPU ownership) and, as they end, back.
    crowd = st.tuples(st.integers(2, 12), _programs(nr_cpus, 0)).map(
        lambda r: repeat(r[0], thread(r[1])))
    creating = st.one_of(child.map(thread), child.map(fork), child.map(exec_), crowd,
                         st.just(exit_(0)))

    @st.composite
    def program(draw):
        phases = draw(st.lists(plain, max_size=5))
        # At most three creations per program, never in a loop except a crowd
        # of threads that create nothing: at most 1 + 3 * (1 + 3 * 12) = 112 tasks.
        for _ in range(draw(st.integers(0, 3))):
            phases.insert(draw(st.integers(0, len(phases))), draw(creating))
        return Program(*phases, comm="gen")
    return program()


@st.composite
def workload_cases(draw, cpus=(2, 3, 4, 8), max_points=20_000, max_pauses=6):
    """A Case: CPU count, machine seed, program tree and pause script."""
    nr_cpus = draw(st.sampled_from(cpus))
    program = draw(_programs(nr_cpus, 2))
    pauses = draw(st.dictionaries(st.integers(1, max_points), st.integers(1, 30_000),
                                  max_size=max_pauses))
    seed = draw(st.integers(0, 1 << 16))
    return Case(nr_cpus, seed, program, pauses)


def generated_search(test, examples, seed=None, cpus=(2, 3, 4, 8), **more_settings):
    """The search over generated cases: *test(case)* on *examples* cases drawn
    by workload_cases(cpus) from Hypothesis seed *seed* (None: derandomized
    from the test's source), as a callable that runs it and raises the shrunk
    failure.  The test suite, campaigns and the benchmark all search this way."""
    s = search_settings(examples, derandomize=seed is None, **more_settings)
    search = s(given(case=workload_cases(cpus=cpus))(test))
    if seed is not None:
        search = hypothesis_seed(seed)(search)
    return without_local_constants()(search)


def search_settings(examples, **more_settings):
    """Hypothesis settings of every search of this project (generated and
    stateful): no deadline, no example database (a search is its seed), the
    first bug found reported, no health checks."""
    return settings(max_examples=examples, deadline=None, database=None,
                    report_multiple_bugs=False, suppress_health_check=list(HealthCheck),
                    **more_settings)


@contextlib.contextmanager
def without_local_constants():
    """A seeded Hypothesis search that draws the same in any process: usable
    as a context or a decorator around every search of this project.

    Hypothesis draws about 5 % of its integers and strings from the constants
    it finds in the source of each *local* module the process has loaded
    (test files, conftest.py, patch files: anything outside site-packages),
    so the same seeded search drew differently in the full suite, where every
    test module is imported, than alone: a failure found in one did not
    reproduce from the pytest command it printed.  Inside, that pool is empty
    (Hypothesis's own constants stay).  This reaches into Hypothesis's
    internals, which is why pyproject pins its version exactly."""
    saved = _providers._get_local_constants
    empty = _providers.Constants()
    _providers._get_local_constants = lambda: empty
    _providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        _providers._get_local_constants = saved
        _providers.CONSTANTS_CACHE.cache.clear()


def reporting_example():
    """True in the run of the shrunk example Hypothesis reports: that run
    traces the variant's functions for the failure report."""
    from hypothesis.control import current_build_context
    from hypothesis.errors import InvalidArgument
    try:
        return current_build_context().is_final
    except InvalidArgument:             # not inside a Hypothesis test
        return False


def run_case(variant, case, on_machine=None, **machine_kwargs):
    """Run *case* on *variant*: returns None, or the reason of the known finding
    the run ended in; any other failure propagates with its report, which ends
    with the replay key of the case."""
    machine_kwargs.setdefault("trace_functions", reporting_example())
    if "replay" not in machine_kwargs:
        machine_kwargs["replay"] = replay_command(case.key(variant)) or \
            "emulator.generated.run_case(<the variant>, <the falsifying Case below>)"
    m = Machine(nr_cpus=case.nr_cpus, variants=[variant], seed=case.seed,
                strategy=ScriptStrategy(case.pauses), **machine_kwargs)
    if on_machine is not None:
        on_machine(m)
    try:
        m.run(case.program)
    except EmulationFailure as exc:
        reason = known_finding(variant, exc, m.kernel.causes)
        if reason is None:
            raise
        return reason
    return None
