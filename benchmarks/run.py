"""Benchmarks: one command, ratios and rates.

    python benchmarks/run.py [--quick] [--forks] [--workloads] [--table [DURATION]]
                             [--memory-models] [--reverts [SEEDS]]

Prints forks per second at 4, 128 and 1024 CPUs (a Python body forking and
waiting, the synthetic fork loop with and without wait()), compare's
workloads at 128 CPUs in virtual seconds simulated per wall second (v6.13
and seed-000, one run of `python -m emulator compare` each), the wall time of
the mm_cid_compaction mirror at 8, 128 and 1024 CPUs, synthetic context
switches and events per second at 8 and 128 CPUs (the cost of an event must
not grow with the CPU count), and host baton hand-offs per
second, Hypothesis-generated cases and stateful examples run per second at 8
and 128 CPUs, stress cases per second under sc and weak, the wall time of a
search's shrink with and without Hypothesis's explain phase (which every
search of the project leaves out), explored schedules per second, and the wall time of a hard
lockup's detection, and what each memory model (sc, tso, weak) costs per event;
with --table, the wall time of seed 000's whole table (`python -m emulator
compare --variant v6.13 --variant seed-000 --cpus 128 --duration 1s`, the four
workloads, over the host's CPUs): long, so opt-in.  --reverts measures the
searches' power instead: each patch of fixtures/patches/reverts/ (v7.0 with a
later fix of seed 003 undone) through the stateful searches a patch file gets
in the default run (500 examples, Hypothesis seeds 0-7), without shrinking,
and which of them meet a failure, after how long (about 20 minutes of one
core: opt-in).
Speeds are measured here, never asserted by a timed test.
"""

import argparse
import sys
import time

from emulator import Machine
from emulator.explore import PreemptStrategy
from emulator.workload import Program, repeat, run, sleep, wait, yield_
from emulator.workload import fork as workload_fork
from emulator.uapi.libc import fork, sched_yield, waitpid


def bench_compaction(nr_cpus, seed=1):
    from selftests.rseq import mm_cid_compaction_test as mirror
    m = Machine(nr_cpus=nr_cpus, variants=["v6.3"], seed=seed)
    t0 = time.perf_counter()
    result = mirror.run(m)
    return time.perf_counter() - t0, result, m


SHAPES = {
    "sleep/wake (2 tasks/CPU, run 200 us, sleep 100 us)": (2, (run(200_000), sleep(100_000))),
    "sleep/wake (1 task/CPU, run 50 us, sleep 50 us)": (1, (run(50_000), sleep(50_000))),
    "yield (2 tasks/CPU, run 50 us, sched_yield)": (2, (run(50_000), yield_())),
}


def bench_switches(nr_cpus, virtual_s, shape, seed=1, invariants=True, memory_model="sc",
                   variants=()):
    """Synthetic tasks looping over *shape*'s phases for *virtual_s* seconds."""
    per_cpu, body = SHAPES[shape]
    worker = Program(repeat(10**9, *body), comm="worker")
    main = Program(*[("thread", worker) for _ in range(per_cpu * nr_cpus)],
                   sleep(int(virtual_s * 1e9)), ("exit", 0), comm="stress")
    m = Machine(nr_cpus=nr_cpus, seed=seed, trace_tail=0, invariants=invariants,
                memory_model=memory_model, variants=variants)
    t0, c0 = time.perf_counter(), time.process_time()
    m.run(main)
    return time.perf_counter() - t0, time.process_time() - c0, m.kernel.nr_switches, m.engine.events


FORK_LOOPS = {
    "body": "Python body, fork() + waitpid()",
    "reaped": "synthetic fork(), run(20 us), wait()",
    "zombies": "synthetic fork(), run(20 us), no wait (zombies until exit)",
}


def bench_forks(kind, nr_cpus, forks, seed=1):
    """*forks* children, each exiting at once, forked by a Python body that
    waits for each ("body") or by the synthetic loop, waiting for each
    ("reaped") or leaving them zombies until it exits, when init reaps them
    ("zombies").  Returns (wall, CPU time of this process)."""
    if kind == "body":
        def child():
            return 0

        def main():
            for _ in range(forks):
                waitpid(fork(child))
            return 0
    else:
        body = (workload_fork(Program(comm="child")), run(20_000))
        main = Program(repeat(forks, *body, *((wait(),) if kind == "reaped" else ())),
                       comm="forker")
    m = Machine(nr_cpus=nr_cpus, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    m.run(main)
    return time.perf_counter() - t0, time.process_time() - c0


# compare's workloads at 128 CPUs: the virtual time of each run (ns), full and
# --quick; fork and pthread-max switch a million times a virtual second.
WORKLOADS = {
    "idle": (100_000_000, 20_000_000),
    "cpu-load:80": (100_000_000, 20_000_000),
    "fork": (3_000_000, 1_000_000),
    "pthread-max:4": (3_000_000, 1_000_000),
    "hackbench": (10_000_000, 2_000_000),
    "cyclictest": (100_000_000, 20_000_000),
}


def bench_workload(workload, variant, nr_cpus, duration_ns, seed=1):
    """One run of compare's (emulator.compare.run_job: the machine, the
    metrics' subscribers, the workload's probes); returns (wall, CPU time of
    this process, the run's failure or None)."""
    from emulator.compare import Job, run_job
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_job(Job(workload, nr_cpus, variant, seed, duration_ns))
    return time.perf_counter() - t0, time.process_time() - c0, result["failure"]


def bench_table(duration):
    """The wall time of seed 000's table at 128 CPUs, as a user runs it."""
    from emulator.compare import compare, default_workers
    t0 = time.perf_counter()
    comparison = compare(["v6.13", "seed-000"], cpus=[128], duration=duration,
                         workers=default_workers())
    return time.perf_counter() - t0, comparison


def bench_handoffs(n=4000, seed=1):
    def main():
        for _ in range(n):
            sched_yield()
        return 0
    m = Machine(nr_cpus=2, seed=seed, trace_tail=0)
    t0 = time.perf_counter()
    m.run(main)
    wall = time.perf_counter() - t0
    return wall, m.engine.handoffs


def bench_generated(variant, n, cpus):
    """Hypothesis-generated cases (emulator.explore.generated) run per second; the
    search is the default one of the suite."""
    from emulator.explore.generated import generated_search, run_case
    from emulator.variants import get_variant
    v = get_variant(variant)
    seen = {"cases": 0}

    def generated(case):
        run_case(v, case)
        seen["cases"] += 1
    t0 = time.perf_counter()
    generated_search(generated, n, cpus=cpus)()
    return time.perf_counter() - t0, seen["cases"]


def bench_stateful(variant, n, cpus):
    """Stateful examples (emulator.explore.stateful) per second and their steps."""
    from emulator.explore.stateful import lifecycle_machine, stateful_search
    from emulator.variants import get_variant
    machine = lifecycle_machine(get_variant(variant), cpus=cpus)
    seen = {"examples": 0}
    teardown = machine.teardown

    def counted(self):
        seen["examples"] += 1
        teardown(self)
    machine.teardown = counted
    t0 = time.perf_counter()
    try:
        stateful_search(machine, n, 0)()
        failed = False
    except Exception:
        failed = True
    return time.perf_counter() - t0, seen["examples"], failed


def bench_schedules(variant, n, nr_cpus):
    """Runs of one workload under the preempt strategy, one seed each, per
    second; distinct schedules are told apart by (context switches, events,
    end time), a fingerprint of the interleaving."""
    from emulator.workload import thread
    churn = Program(repeat(2 * nr_cpus, thread(Program(repeat(20, run(30_000), sleep(20_000)),
                                                       yield_(), comm="churn"))),
                    sleep(2_000_000), comm="churn")
    seen = set()
    t0 = time.perf_counter()
    for seed in range(n):
        m = Machine(nr_cpus=nr_cpus, variants=[variant], seed=seed, strategy=PreemptStrategy(p=0.05))
        m.run(churn)
        seen.add((m.kernel.nr_switches, m.engine.events, m.engine.now))
    return time.perf_counter() - t0, n, len(seen)


def bench_systematic(variant, nr_cpus, max_runs):
    """The systematic search (emulator.explore.systematic) over a small program
    (the main thread and three threads that run and sleep three times): its
    schedules per second and the share of preemption points it prunes."""
    from emulator.explore.systematic import SystematicSearch, run_outcome
    from emulator.variants import get_variant
    from emulator.workload import thread
    v = get_variant(variant)
    worker = Program(repeat(3, run(20_000), sleep(15_000)), comm="worker")
    program = Program(*[thread(worker) for _ in range(3)], sleep(300_000), comm="main")

    def run_once(strategy):
        m = Machine(nr_cpus=nr_cpus, variants=[v], seed=1, strategy=strategy)
        return run_outcome(v, m, lambda: m.run(program))
    t0 = time.perf_counter()
    search = SystematicSearch(run_once, bound=2, max_runs=max_runs).run()
    return time.perf_counter() - t0, search


def bench_shrink(explain):
    """Wall time of the generated search (seed 1, 150 examples) that finds
    fixtures/patches/moves_cid.py failing and shrinks it: with the project's
    settings, or with Hypothesis's explain phase put back (every example
    after the first failure then runs under a line tracer)."""
    import os
    from hypothesis import Phase
    from emulator.explore.generated import generated_search, run_case
    from emulator.variants import load_variant
    v = load_variant(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                                  "patches", "moves_cid.py"))
    more = {"phases": tuple(Phase)} if explain else {}

    def generated(case):
        run_case(v, case)
    t0 = time.perf_counter()
    try:
        generated_search(generated, 150, seed=1, **more)()
    except Exception as exc:                 # the shrunk failure
        return time.perf_counter() - t0, str(exc).splitlines()[0]
    raise RuntimeError("moves_cid.py did not fail the generated search")


def bench_stress(variant, n, memory_model):
    """Stress cases (emulator.explore.stress, the campaign's search of seed 0)
    run per second under *memory_model*."""
    from emulator.explore.stress import run_stress, stress_search
    from emulator.machine import set_default_memory_model
    from emulator.variants import get_variant
    v = get_variant(variant)
    seen = {"cases": 0}

    def stress(case):
        run_stress(v, case)
        seen["cases"] += 1
    previous = set_default_memory_model(memory_model)
    try:
        t0 = time.perf_counter()
        stress_search(stress, n, seed=0)()
        return time.perf_counter() - t0, seen["cases"]
    finally:
        set_default_memory_model(previous)


def bench_lockup():
    """A hard lockup from start to report: seed 003 on one CPU (pcpu_thrs == 0),
    where the second thread's fork spins in mm_get_cid() until the watchdog's
    1 s of virtual time.  Returns the wall time."""
    from emulator.errors import HardLockup
    from emulator.uapi.libc import pthread_create, pthread_join

    def main():
        pthread_join(pthread_create(lambda _: None))
        return 0
    m = Machine(nr_cpus=1, variants=["seed-003"], seed=1)
    t0 = time.perf_counter()
    try:
        m.run(main)
    except HardLockup:
        return time.perf_counter() - t0
    raise RuntimeError("seed-003 on one CPU did not lock up")


def bench_memory_models(quick):
    """Wall time per event of one synthetic load under each memory model, and
    of the litmus table."""
    from emulator.explore.litmus import default_litmus_files, litmus_table
    shape = "sleep/wake (1 task/CPU, run 50 us, sleep 50 us)"
    vs = 0.01 if quick else 0.05
    print(f"memory models: {shape}, v7.0, 8 CPUs, {vs * 1000:g} ms virtual, "
          f"wall us per event (best of three)")
    base = None
    for mode in ("sc", "tso", "weak"):
        wall, cpu, switches, events = min(
            (bench_switches(8, vs, shape, memory_model=mode, variants=["v7.0"])
             for _ in range(3)), key=lambda r: r[0])
        per = wall / events * 1e6
        base = base or per
        print(f"  {mode:5s} {per:7.2f} us/event  {per / base:5.2f}x sc   "
              f"({switches} switches, {events} events)")
    t0 = time.perf_counter()
    rows = litmus_table(default_litmus_files())
    print(f"  litmus table: {len(rows)} tests x 3 models enumerated in "
          f"{time.perf_counter() - t0:.2f} s")


def revert_figures(seeds):
    """Which of the stateful searches a patch gets meet a failure in each revert
    patch, and when: the measure of README's "Revert patches" table."""
    import glob
    import os
    from hypothesis import Phase
    from emulator.explore.stateful import lifecycle_machine, stateful_search
    from emulator.variants import load_variant
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"revert patches: the stateful search (500 examples, Hypothesis seeds "
          f"{seeds[0]}-{seeds[-1]}, no shrinking); found: seed (seconds) first line")
    for path in sorted(glob.glob(os.path.join(root, "fixtures/patches/reverts/*.py"))):
        machine = lifecycle_machine(load_variant(path))
        found = []
        for seed in seeds:
            t0 = time.perf_counter()
            try:
                stateful_search(machine, 500, seed,
                                phases=(Phase.explicit, Phase.reuse, Phase.generate))()
            except Exception as exc:             # noqa: BLE001 - any failure counts
                first = str(exc).strip().splitlines()[0][:70]
                found.append(f"{seed} ({time.perf_counter() - t0:.1f} s) {first}")
        print(f"  {os.path.basename(path):40s} {len(found)} of {len(seeds)}", flush=True)
        for line in found:
            print(f"      {line}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument("--forks", action="store_true", help="the fork figures only")
    ap.add_argument("--memory-models", action="store_true",
                    help="the memory models' figures only")
    ap.add_argument("--workloads", action="store_true",
                    help="compare's workloads at 128 CPUs only (virtual s per wall s)")
    ap.add_argument("--table", nargs="?", const="1s", metavar="DURATION",
                    help="also time seed 000's whole table at 128 CPUs (default 1s: long)")
    ap.add_argument("--reverts", nargs="?", const="0-7", metavar="SEEDS",
                    help="only the revert patches through the stateful searches of a patch "
                         "(default Hypothesis seeds 0-7: long)")
    args = ap.parse_args(argv)
    if args.reverts:
        first, _, last = args.reverts.partition("-")
        try:
            seeds = list(range(int(first), int(last or first) + 1))
        except ValueError:
            seeds = []
        if not seeds:
            ap.error(f"--reverts {args.reverts!r}: seeds such as 0-7 or 3")
        revert_figures(seeds)
        return 0
    if args.memory_models:
        bench_memory_models(args.quick)
        return 0
    if args.workloads:
        workload_figures(args.quick)
        if args.table:
            table_figure(args.table)
        return 0
    vs = 0.02 if args.quick else 0.1

    print("forks per second, wall (CPU time of this process), best of three; "
          "the children exit at once")
    for kind, what in FORK_LOOPS.items():
        forks = (300 if kind == "body" else 1000) if args.quick else \
            (1000 if kind == "body" else 5000)
        figures = []
        for n in (4, 128, 1024):
            wall, cpu = min(bench_forks(kind, n, forks) for _ in range(3))
            figures.append(f"{n:3d} CPUs {forks / wall:7,.0f}/s ({forks / cpu:7,.0f}/s)")
        print(f"  {what:58s} {'   '.join(figures)}")
    if args.forks:
        return 0
    workload_figures(args.quick)

    print("mm_cid_compaction mirror (v6.3), wall time per run")
    for n in (8, 128, 1024):
        wall, result, m = min((bench_compaction(n) for _ in range(3)), key=lambda r: r[0])
        print(f"  {n:5d} CPUs: {wall * 1000:8.1f} ms  ({result.outcome}; "
              f"{m.engine.handoffs} hand-offs, {m.engine.events} events; "
              f"hardware: 2.5-7.5 s of sleeps plus a boot)")

    print("synthetic workloads: context switches per second, wall (CPU time of this process);")
    print("invariants P1-P4 and lockdep checked (the default) and not checked (invariants=False)")
    for shape in SHAPES:
        print(f"  {shape}")
        for invariants in (True, False):
            events = {}
            for n in (8, 128):
                # Best of three: this 2-core VM's steal time makes single runs noisy.
                wall, cpu, switches, nevents = min(
                    (bench_switches(n, vs, shape, invariants=invariants) for _ in range(3)),
                    key=lambda r: r[1])
                events[n] = nevents / cpu
                print(f"    {n:5d} CPUs, invariants {'on ' if invariants else 'off'}: "
                      f"{switches / wall:9,.0f}/s ({switches / cpu:9,.0f}/s)   "
                      f"{nevents / cpu:9,.0f} events/s   {nevents / switches:.2f} events/switch")
            print(f"    CPU-time events/s, 128 vs 8 CPUs: {events[128] / events[8]:.2f} (1.00 = flat)")

    print("generated cases (tests/test_generated.py's search: program, schedule, seed), per second")
    for variant in ("v6.3", "v7.0"):
        for cpus in ((8,), (128,)):
            wall, cases = bench_generated(variant, 40 if args.quick else 150, cpus)
            print(f"  {variant:5s} at {cpus[0]:3d} CPUs: {cases / wall:7.1f} cases/s "
                  f"({cases} in {wall:.1f} s, shrinking not included)")

    print("stateful examples (tests/test_stateful.py's search, 40 steps at most), per second")
    for variant in ("v6.4", "v7.0"):
        for cpus in ((8,), (128,)):
            wall, examples, failed = bench_stateful(variant, 20 if args.quick else 60, cpus)
            print(f"  {variant:5s} at {cpus[0]:3d} CPUs: {examples / wall:7.1f} examples/s "
                  f"({examples} in {wall:.1f} s{', FAILED' if failed else ''})")

    print("stress cases (explore --workload stress, campaign seed 0's first batch), per second")
    for variant, mode in (("v6.4", "sc"), ("v6.4", "weak")):
        wall, cases = bench_stress(variant, 10 if args.quick else 20, mode)
        print(f"  {variant:5s} {mode:4s}: {cases / wall:7.2f} cases/s ({cases} in {wall:.1f} s)")

    print("shrinking: the generated search finding and shrinking fixtures/patches/moves_cid.py")
    ours, failure = bench_shrink(False)
    theirs, _ = bench_shrink(True)
    print(f"  without Hypothesis's explain phase (the project's): {ours:6.1f} s; with it: "
          f"{theirs:6.1f} s ({theirs / ours:.1f}x); {failure[:60]}")

    print("explored schedules: runs of a churn workload under preempt:p=0.05, per second")
    for nr_cpus in (8, 128):
        wall, runs, distinct = bench_schedules("v7.0", 10 if args.quick else 40, nr_cpus)
        print(f"  v7.0  at {nr_cpus:3d} CPUs: {runs / wall:7.1f} schedules/s "
              f"({distinct} distinct of {runs})")

    print("systematic search (bound 2) of a program of four threads, schedules per second")
    for variant in ("v6.3", "v7.0"):
        for nr_cpus in (2, 4):
            wall, search = bench_systematic(variant, nr_cpus, 300 if args.quick else 1500)
            print(f"  {variant:5s} at {nr_cpus} CPUs: {search.runs / wall:7.1f} schedules/s; "
                  f"{search.independent / max(1, search.choices):.0%} of "
                  f"{search.choices:,} preemption points pruned as independent, "
                  f"{search.equivalent / max(1, search.runs):.0%} of runs equivalent "
                  f"({search.coverage()})")

    wall = min(bench_lockup() for _ in range(3))
    print(f"hard lockup detection (1 s of virtual spinning, seed-003 on one CPU): "
          f"{wall * 1000:.1f} ms wall")

    wall, handoffs = min((bench_handoffs(1000 if args.quick else 4000) for _ in range(3)))
    print(f"host baton hand-offs: {handoffs / wall:,.0f}/s ({handoffs} in {wall:.2f} s)")
    bench_memory_models(args.quick)
    if args.table:
        table_figure(args.table)
    return 0


def workload_figures(quick):
    print("compare's workloads at 128 CPUs (seed 1): virtual seconds simulated per wall second "
          "(per CPU second of this process), one run each")
    bench_workload("idle", "v6.13", 128, 1_000_000)      # imports, first machine
    for workload, (full, short) in WORKLOADS.items():
        duration_ns = short if quick else full
        figures = []
        for variant in ("v6.13", "seed-000"):
            wall, cpu, failure = bench_workload(workload, variant, 128, duration_ns)
            run_ns = duration_ns
            note = ""
            if failure:
                run_ns = failure["virtual_ns"]
                note = " (failed: " + failure["first_line"][:40] + "...)"
            figures.append(f"{variant} {run_ns / 1e9 / wall:9.3g} ({run_ns / 1e9 / cpu:9.3g})"
                           f"{note}")
        print(f"  {workload:14s} {duration_ns / 1e6:5g} ms: {'   '.join(figures)}")


def table_figure(duration):
    wall, comparison = bench_table(duration)
    failed = [r for r in comparison.results if r.get("failure")]
    print(f"seed 000's table (v6.13 vs seed-000, idle, cpu-load:80, fork, pthread-max:4, "
          f"128 CPUs, {duration}): {wall:,.0f} s wall"
          + (f", {len(failed)} of {len(comparison.results)} runs failed" if failed else ""))



if __name__ == "__main__":
    sys.exit(main())
