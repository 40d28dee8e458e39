"""Generated workloads and schedules: Hypothesis draws both, the invariants judge.

``workload_cases(cpus)`` draws a :class:`Case`: a synthetic program tree
(threads and processes created, computing, sleeping short and long enough for
a 100 ms scan or a deferred mode change, yielding, widening and shrinking their
affinity, exec'ing a new program or a missing file, exiting), a machine seed,
a CPU count and a :class:`~emulator.explore.strategies.ScriptStrategy` of pauses at
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

from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings, \
    strategies as st
from hypothesis.internal.conjecture import providers as _providers

from ..errors import EmulationFailure, UsageError
from ..machine import Machine
from ..workload import Program, exec_, exit_, fork, program_to_data, repeat, run, setaffinity, \
    sleep, thread, yield_
from .findings import known_finding
from .keys import make_key, replay_command
from .strategies import ScriptStrategy

__all__ = ["CPUS", "Case", "Shape", "judged_run", "machine_shapes", "reporting_example",
           "run_case", "taskset", "generated_search", "search_settings",
           "without_local_constants", "workload_cases"]

MISSING_FILE = "/no/such/file"
# The CPU counts the searches draw: one CPU, two, odd counts, the largest
# small machine.  The first shrinks best: a failure is shown on the smallest
# machine that still has it.
CPUS = (1, 2, 3, 4, 5, 8)


class Shape:
    """The machine a run boots: *nr_cpus* online CPUs of *nr_possible*
    possible ones (None: as many as online: a VM with hot-plug slots has
    more), and the allowed CPUs the first process starts with (None: every
    CPU), as ``taskset -c`` gives them: set before its exec, so its mm is
    built with that mask.  Isolated CPUs are the stress search's
    (emulator.explore.stress.StressCase), where loads are pinned to them."""

    __slots__ = ("nr_cpus", "nr_possible", "affinity")

    def __init__(self, nr_cpus, nr_possible=None, affinity=None):
        self.nr_cpus = nr_cpus
        self.nr_possible = None if nr_possible in (None, nr_cpus) else nr_possible
        self.affinity = None if affinity is None else sorted(affinity)

    def fields(self):
        """The shape as keyword arguments (a replay key's and a repr's), the
        defaults left out."""
        out = {"nr_cpus": self.nr_cpus}
        if self.nr_possible is not None:
            out["nr_possible"] = self.nr_possible
        if self.affinity is not None:
            out["affinity"] = self.affinity
        return out

    def machine(self, **kwargs):
        """A Machine of this shape (its first process restricted by taskset())."""
        m = Machine(nr_cpus=self.nr_cpus, nr_possible=self.nr_possible, **kwargs)
        if self.affinity is not None:
            taskset(m, self.affinity)
        return m

    def __repr__(self):
        return f"Shape({', '.join(f'{k}={v!r}' for k, v in self.fields().items())})"


def taskset(machine, cpus):
    """``taskset -c CPUS`` for the first process of *machine* (before it
    runs): init's allowed CPUs, which the first process inherits and its
    exec builds its mm with."""
    k = machine.kernel
    mask = 0
    for cpu in cpus:
        mask |= 1 << cpu
    if not mask & k.active_mask or mask & ~k.possible_mask:
        raise UsageError(f"taskset {sorted(cpus)}: CPUs of the machine's possible ones, "
                         f"one online at least")
    k.init_task.cpus_mask = mask
    k.init_task.nr_cpus_allowed = mask.bit_count()


@st.composite
def machine_shapes(draw, cpus=CPUS):
    """A Shape: *nr_cpus* from *cpus*; about a third of the shapes with
    more possible CPUs than online (one more, twice as many, or 8), a
    quarter with the first process restricted to a part of the online CPUs.
    Each shrinks to the plain machine."""
    nr_cpus = draw(st.sampled_from(cpus))
    extra = draw(st.sampled_from([0, 0, 0, 0, 1, nr_cpus, max(0, 8 - nr_cpus)]))
    nr_possible = min(1024, nr_cpus + extra)
    affinity = None
    if nr_cpus > 1 and draw(st.integers(0, 3)) == 3:
        affinity = draw(st.sets(st.integers(0, nr_cpus - 1), min_size=1,
                                max_size=nr_cpus - 1))
    return Shape(nr_cpus, nr_possible, affinity)


class Case:
    """One generated run: what Hypothesis prints as the falsifying example."""

    def __init__(self, nr_cpus, seed, program, pauses=None, nr_possible=None, affinity=None):
        self.shape = Shape(nr_cpus, nr_possible, affinity)
        self.nr_cpus = nr_cpus
        self.nr_possible = self.shape.nr_possible or nr_cpus
        self.affinity = self.shape.affinity
        self.seed = seed
        self.program = program
        self.pauses = dict(pauses or {})

    def key(self, variant, memory_model=None):
        """The replay key of this case on *variant* under *memory_model* (None:
        the default), or None for a variant a key cannot name."""
        shape = self.shape.fields()
        return make_key("generated", variant, memory_model, cpus=shape.pop("nr_cpus"),
                        seed=self.seed,
                        program=program_to_data(self.program),
                        pauses={str(p): ns for p, ns in self.pauses.items()}, **shape)

    def __repr__(self):
        shape = ", ".join(f"{k}={v!r}" for k, v in self.shape.fields().items())
        return (f"Case({shape}, seed={self.seed}, "
                f"schedule={ScriptStrategy(self.pauses).spec()!r},\n     program={self.program!r})")


_RUN_NS = st.integers(0, 400_000)
_SLEEP_NS = st.one_of(st.integers(1, 300_000), st.sampled_from([20_000_000, 120_000_000]))


def _leaf(nr_possible):
    # Affinity over the possible CPUs: a set of offline ones only is EINVAL.
    cpus = st.sets(st.integers(0, nr_possible - 1), min_size=1).map(sorted)
    return st.one_of(
        _RUN_NS.map(run),
        _SLEEP_NS.map(sleep),
        st.just(yield_()),
        cpus.map(setaffinity),
        st.just(exec_(MISSING_FILE)),
    )


def _programs(nr_possible, depth):
    leaf = _leaf(nr_possible)
    plain = st.one_of(leaf, st.tuples(st.integers(2, 4), st.lists(leaf, min_size=1, max_size=3))
                      .map(lambda r: repeat(r[0], *r[1])))
    if depth == 0:
        return st.lists(plain, max_size=5).map(lambda ps: Program(*ps, comm="gen"))
    child = st.deferred(lambda: _programs(nr_possible, depth - 1))
    # A crowd: up to 12 threads that create nothing, enough to take an mm
    # past its CPUs (v6.19+ per-CPU ownership) and, as they end, back.
    crowd = st.tuples(st.integers(2, 12), _programs(nr_possible, 0)).map(
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
def workload_cases(draw, cpus=CPUS, max_points=20_000, max_pauses=6):
    """A Case: machine shape (machine_shapes()), machine seed, program tree
    and pause script."""
    shape = draw(machine_shapes(cpus))
    program = draw(_programs(shape.nr_possible or shape.nr_cpus, 2))
    # Half the pauses among the first 500 points: a median run reaches
    # about 110, one in ten more than 350, a crowd's thousands.
    points = st.one_of(st.integers(1, 500), st.integers(1, max_points))
    pauses = draw(st.dictionaries(points, st.integers(1, 30_000), max_size=max_pauses))
    seed = draw(st.integers(0, 1 << 16))
    return Case(shape.nr_cpus, seed, program, pauses, shape.nr_possible, shape.affinity)


def generated_search(test, examples, seed=None, cpus=CPUS, batch=None, **more_settings):
    """The search over generated cases: *test(case)* on *examples* cases drawn
    by workload_cases(cpus) from Hypothesis seed *seed* (None: derandomized
    from the test's source), as a callable that runs it and raises the shrunk
    failure.  With *batch*, successive searches of *batch* examples each
    (batches()).  The test suite, campaigns and the benchmark all search this way."""
    if batch and examples > batch:
        base = _stable_seed(test) if seed is None else seed
        return batches(lambda n, s: generated_search(test, n, s, cpus, **more_settings),
                       examples, batch, base)
    s = search_settings(examples, derandomize=seed is None, **more_settings)
    search = s(given(case=workload_cases(cpus=cpus))(test))
    if seed is not None:
        search = hypothesis_seed(seed)(search)
    return without_local_constants()(search)


def batches(search, examples, batch, seed):
    """*examples* examples as successive searches of *batch* examples,
    ``search(n, seed)`` each, from seeds derived from *seed*; as a callable
    that runs them in turn until one fails (its shrunk failure raises).

    Each Hypothesis search starts from small examples, and its targeting
    phase (guidance: emulator.explore.coverage) runs once, after half of
    it, from the examples that scored best: short searches whose targets
    are what the earlier ones did not reach spread a budget wider than one
    long search (see tests/test_coverage.py for the figures)."""
    searches = [search(min(batch, examples - start), seed * 1_000_003 + i)
                for i, start in enumerate(range(0, examples, batch))]

    def run():
        for one in searches:
            one()
    return run


def _stable_seed(test):
    """A seed of *test*'s name: the same in any process and any suite run."""
    import zlib
    return zlib.crc32(f"{test.__module__}.{test.__qualname__}".encode())


def search_settings(examples, **more_settings):
    """Hypothesis settings of every search of this project (generated,
    stateful and stress): no deadline, no example database (a search is its
    seed), the first bug found reported, no health checks, and no explain
    phase: once an example has failed, Hypothesis runs every later one (the
    whole shrink) under a line tracer (sys.settrace) to say which parts of
    the example mattered, which made shrinking a machine run several times
    slower; the shrunk example and its replay key say what it would."""
    more_settings.setdefault("phases", tuple(p for p in Phase if p is not Phase.explain))
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


def run_case(variant, case, on_machine=None, coverage=None, **machine_kwargs):
    """Run *case* on *variant*: returns None, or the reason of the known finding
    the run ended in; any other failure propagates with its report, which ends
    with the replay key of the case.  With *coverage* (an
    emulator.explore.coverage.Coverage) the run's concurrent kernel function
    pairs and variant states are added to it and, in a Hypothesis search,
    reported with target() (guidance)."""
    machine_kwargs.setdefault("trace_functions", reporting_example())
    if "replay" not in machine_kwargs:
        machine_kwargs["replay"] = replay_command(
            case.key(variant, machine_kwargs.get("memory_model"))) or \
            "emulator.generated.run_case(<the variant>, <the falsifying Case below>)"
    m = case.shape.machine(variants=[variant], seed=case.seed,
                           strategy=ScriptStrategy(case.pauses), **machine_kwargs)
    return judged_run(variant, m, lambda: m.run(case.program), on_machine, coverage)


def judged_run(variant, m, run, on_machine=None, coverage=None):
    """*run()* on machine *m* of *variant*: None, or the reason of the
    variant's recorded finding it ended in (any other failure propagates);
    *on_machine* and *coverage* as for run_case()."""
    if on_machine is not None:
        on_machine(m)
    watched = coverage.watch(m) if coverage is not None else None
    try:
        run()
    except EmulationFailure as exc:
        reason = known_finding(variant, exc, m.kernel.causes)
        if reason is None:
            raise
        return reason
    finally:
        if watched is not None:
            coverage.reached(watched)
    return None
