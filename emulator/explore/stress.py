"""Stress searches: the loads kernel developers run, drawn, mixed and paused.

A scheduler or mm patch is tested on a real machine by running stress loads
on it (stress-ng's ``--cpu-load``, ``--fork``, ``--pthread-max``, hackbench,
cyclictest) and waiting for a splat; the barrier bugs of the mm_cid seeds
were reported from running machines (arm64 for fe90f3967bdb, PowerPC for
47ee94efccf6; under which loads, their commits do not say).  The
generated search (emulator.explore.generated) draws small program trees;
the loads of ``python -m emulator compare`` (emulator/workloads/) are
different shapes: several processes of many threads competing for every
CPU, woken together by a condition broadcast, passing messages through
pipes (hackbench's senders and receivers as processes or as the threads of
one process, endless or in rounds), their thread counts going up past the
CPUs and back down many times a millisecond.

``stress_cases(cpus)`` draws a :class:`StressCase`: a machine shape (in a
quarter of the machines of two CPUs or more, some CPUs but the first
isolated, by ``nohz_full=`` or ``isolcpus=``: the per-CPU loads then go to
them, as the seed authors pinned theirs), a mix
of one to three of those workloads with their arguments drawn, a virtual
duration, a machine seed and a strategy (random pauses with a drawn rate and
length, or preemption at preemptible points).  ``run_stress(variant, case)``
runs it with every invariant checked, as a generated case is run, and ends
it as a test script ends its loads: ``kill -9 -1``, the loads reaped, then
the checks made once the machine is quiet (P4, P8, P10, PA1); loads still
alive KILL_GRACE_NS after the kill are a deadlock.  Hypothesis
shrinks a failing case towards fewer workloads, fewer threads, a shorter
duration and a smaller machine; the failure names the replay key of the case
(kind ``stress``).

Nothing here knows a finding: the menu is the workloads compare runs (those
that need no isolated CPUs), their arguments in the ranges their docstrings
give, scaled to machines of 1 to 8 CPUs.
"""

from hypothesis import given, seed as hypothesis_seed, strategies as st

from ..errors import Deadlock
from ..kernel.signal import SIGKILL
from ..workload import Program, fork, kill, repeat, sleep, wait
from ..workloads import Context, load_workloads
from .generated import CPUS, Shape, judged_run, machine_shapes, reporting_example, \
    search_settings, without_local_constants
from .keys import make_key, replay_command
from .strategies import strategy_from_spec

__all__ = ["StressCase", "run_stress", "stress_cases", "stress_search"]

NS_PER_MS = 1_000_000

# Each workload with its arguments, as ``--workload`` names it.
_WORKLOADS = {
    "cpu-load": st.tuples(st.sampled_from([20, 50, 80, 100]), st.sampled_from(["1ms", "4ms"]))
    .map(lambda a: f"cpu-load:{a[0]},slice={a[1]}"),
    "fork": st.integers(1, 2).map(lambda n: f"fork:{n}"),
    "pthread-max": st.tuples(st.integers(1, 16), st.integers(1, 3))
    .map(lambda a: f"pthread-max:{a[0]},{a[1]}"),
    "hackbench": st.tuples(st.integers(1, 2), st.integers(1, 4), st.sampled_from([None, 2, 10, 50]),
                           st.sampled_from(["process", "thread"]))
    .map(lambda a: f"hackbench:{a[0]},fds={a[1]}" + (f",loops={a[2]}" if a[2] else "")
         + (",mode=thread" if a[3] == "thread" else "")),
    "cyclictest": st.sampled_from([100, 250, 1000]).map(lambda us: f"cyclictest:{us}"),
    "lazy-tlb": st.tuples(st.integers(1, 4), st.integers(0, 2))
    .map(lambda a: f"lazy-tlb:{a[0]},{a[1]}"),
}

# Short runs (a mode switch, a migration, a fork take microseconds; a
# pthread-max iteration about a millisecond): many runs rather than long ones.
# None reaches the 100 ms scans of the v6.4-v6.13 eras, which the generated
# and stateful searches' long sleeps reach.
_DURATIONS_MS = [5, 10, 20, 20, 30]


# How long the loads may take to die after ``kill -9 -1``: every task of them
# is gone within microseconds of virtual time unless something keeps one.
KILL_GRACE_NS = 100 * NS_PER_MS


def lockup_ns(duration_ns):
    """The hard-lockup threshold of a stress run: half its duration, at least
    10 ms, at most the machine's default of 1 s.

    A CPU caught spinning for good keeps its loads from dying at the end
    of the run, and a run of milliseconds would wait for the default
    threshold much longer than it ran.  10 ms is far above any wait the
    strategies make (a pause is at most 1 ms, 20 us where a spinlock is
    held) and far below the kernel's own hard-lockup threshold
    (watchdog_thresh, 10 s), which a virtual run of milliseconds cannot
    wait for: a CPU that spins 10 ms has stopped for ten thousand context
    switches' time, which the search reports whether or not the spin would
    have ended later."""
    return min(max(duration_ns // 2, 10 * NS_PER_MS), 1_000 * NS_PER_MS)


# The pauses: the random strategy's rate and length, or preemption at the
# preemptible points; the weak memory model's biases act under either.
_STRATEGIES = st.one_of(
    st.tuples(st.sampled_from([0.002, 0.01, 0.02, 0.05]), st.sampled_from([1_000, 5_000, 20_000]))
    .map(lambda a: f"random:p={a[0]},max_ns={a[1]}"),
    st.sampled_from([0.01, 0.05]).map(lambda p: f"preempt:p={p},max_ns=200000"),
)


class StressCase:
    """One stress run: what Hypothesis prints as the falsifying example."""

    def __init__(self, nr_cpus, seed, workload, duration_ns, strategy, nr_possible=None,
                 affinity=None, isolation=None):
        self.shape = Shape(nr_cpus, nr_possible, affinity)
        self.nr_cpus = nr_cpus
        self.seed = seed
        self.workload = workload
        self.duration_ns = duration_ns
        self.strategy = strategy
        # {"nohz_full": [cpus]} or {"isolcpus": [cpus]}: the boot parameter
        self.isolation = dict(isolation or {})

    def key(self, variant, memory_model=None):
        """The replay key of this case on *variant* under *memory_model* (None:
        the default), or None for a variant a key cannot name."""
        shape = self.shape.fields()
        return make_key("stress", variant, memory_model, cpus=shape.pop("nr_cpus"),
                        seed=self.seed,
                        workload=self.workload, duration_ns=self.duration_ns,
                        strategy=self.strategy, isolation=self.isolation, **shape)

    def machine(self, **kwargs):
        """The machine of this case (its shape, its isolated CPUs)."""
        return self.shape.machine(**self.isolation, **kwargs)

    def __repr__(self):
        fields = {**self.shape.fields(), **self.isolation}
        shape = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return (f"StressCase({shape}, seed={self.seed}, workload={self.workload!r}, "
                f"duration={self.duration_ns / NS_PER_MS:g}ms, strategy={self.strategy!r})")


@st.composite
def stress_cases(draw, cpus=CPUS):
    """A StressCase: machine shape (machine_shapes()), one to three workloads
    (none twice), duration, machine seed and strategy."""
    shape = draw(machine_shapes(cpus))
    isolation = None
    if shape.nr_cpus > 1 and draw(st.integers(0, 3)) == 3:
        isolated = draw(st.sets(st.integers(1, shape.nr_cpus - 1), min_size=1).map(sorted))
        isolation = {draw(st.sampled_from(["nohz_full", "isolcpus"])): isolated}
    names = draw(st.lists(st.sampled_from(sorted(_WORKLOADS)), min_size=1, max_size=3,
                          unique=True))
    workload = "+".join(draw(_WORKLOADS[name]) for name in names)
    duration_ns = draw(st.sampled_from(_DURATIONS_MS)) * NS_PER_MS
    strategy = draw(_STRATEGIES)
    seed = draw(st.integers(0, 1 << 16))
    return StressCase(shape.nr_cpus, seed, workload, duration_ns, strategy, shape.nr_possible,
                      shape.affinity, isolation)


def run_stress(variant, case, on_machine=None, coverage=None, **machine_kwargs):
    """Run *case* on *variant* for its duration: returns None, or the reason
    of the recorded finding the run ended in; any other failure propagates
    with its report, which ends with the case's replay command.  *coverage*
    as for generated.run_case()."""
    machine_kwargs.setdefault("trace_functions", reporting_example())
    if "replay" not in machine_kwargs:
        machine_kwargs["replay"] = replay_command(
            case.key(variant, machine_kwargs.get("memory_model"))) or \
            "emulator.explore.stress.run_stress(<the variant>, <the falsifying StressCase below>)"
    machine_kwargs.setdefault("lockup_ns", lockup_ns(case.duration_ns))
    m = case.machine(variants=[variant], seed=case.seed,
                     strategy=strategy_from_spec(case.strategy), **machine_kwargs)

    def run():
        ctx = Context(m, case.duration_ns)
        programs = [p for w in load_workloads(case.workload) for p in w.programs(ctx)]
        try:
            # The loads for the duration, then ``kill -9 -1`` and the reaping
            # of the loads, as a test script ends them; the run ends with its
            # last task, and the checks made once quiet judge it.
            m.start(Program(*[fork(p) for p in programs], sleep(case.duration_ns),
                            kill(-1, SIGKILL), repeat(len(programs), wait()), comm="stress"))
            m.advance(case.duration_ns + KILL_GRACE_NS)
            if m.running:
                exc = Deadlock(f"deadlock: tasks outlived kill -9 -1 by {KILL_GRACE_NS} ns "
                               f"(virtual time {m.now} ns)", m.user_tasks())
                exc.report = m.failure_report(exc)
                raise exc
        finally:
            m.close()
    return judged_run(variant, m, run, on_machine, coverage)


def stress_search(test, examples, seed=None, cpus=CPUS, **more_settings):
    """The search over stress cases: *test(case)* on *examples* cases drawn by
    stress_cases(cpus) from Hypothesis seed *seed*, as a callable that runs
    it and raises the shrunk failure."""
    s = search_settings(examples, derandomize=seed is None, **more_settings)
    search = s(given(case=stress_cases(cpus=cpus))(test))
    if seed is not None:
        search = hypothesis_seed(seed)(search)
    return without_local_constants()(search)
