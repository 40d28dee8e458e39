"""``python -m emulator``: run a selftest mirror, list variants.

    python -m emulator run SELFTEST --variant V --cpus N --seed S [--trace FILE] [--stats]
                           [--memory-model sc|tso|weak] [-- ARG...]
    python -m emulator kselftest DIR [--variant V] [--cpus N] [--seed S] [--full]
    python -m emulator explore --variant V [--strategy S] [--workload W] [--cpus N]...
                               [--time 60s | --runs N] [--seed S] [--findings FILE] [-v]
                               [--memory-model sc|tso|weak]
    python -m emulator replay KEY [--trace FILE] [--memory-model M]
    python -m emulator litmus [--memory-model M]... [--on-machine RUNS] [FILE...]
    python -m emulator compare --variant A --variant B [--workload W]... [--cpus N]...
                               [--duration 1s] [--seeds K] [-j J]
                               [--format text|markdown|csv|json] [--plot DIR]
    python -m emulator variants

``run`` prints KTAP as a kselftest.h program does (emulator/ktap.py);
``kselftest`` runs a directory as ``make -C tools/testing/selftests
TARGETS=DIR run_tests`` does (emulator/kselftest.py).  Exit status of
``run`` and ``replay``: 0 pass, 1 fail, 4 skip (kselftest's KSFT_SKIP), 2
bad usage; of ``kselftest``: 0 every program ok, 1 one not ok; of ``explore`` and
``compare``: 0 when no run failed (recorded findings of the variant do not count), 1 when
some did (``compare`` prints its report either way).  Ctrl-C (SIGINT) or
SIGTERM ends the run under way between two events, as an abandoned run (never
a failure): ``run`` and ``replay`` print ``Bail out!`` and ``explore`` its
summary so far, and the exit status is 130; a second signal exits at once.
"""

import argparse
import sys

from . import __version__
from .errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser():
    p = _Parser(prog="python -m emulator", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"emulator {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run a selftest mirror")
    run.add_argument("selftest", help="mirror name, e.g. mm_cid_compaction or basic")
    _one_variant_options(run)
    run.add_argument("--strategy", metavar="S",
                     help="pause kernel paths at scheduling points: random, pct, "
                          "or name:key=value,... (see emulator/explore/strategies.py)")
    run.add_argument("--trace", metavar="FILE", help="write an ftrace-like trace to FILE")
    run.add_argument("--memory-model", choices=MEMORY_MODEL_CHOICES, metavar="M",
                     help="sc (default), tso (x86 store buffers) or weak (the LKMM's operational model): emulator/kernel/memory_model.py")
    run.add_argument("--stats", action="store_true", help="print counters of the run")
    run.epilog = "After --, the program's arguments: run param_test -- -T i -r 100"
    kst = sub.add_parser("kselftest", help="run a directory of mirrors as kselftest's "
                                           "`make run_tests` does (KTAP)")
    kst.add_argument("dir", help="directory under selftests/, e.g. rseq")
    _one_variant_options(kst)
    kst.add_argument("--full", action="store_true",
                     help="the runner scripts' whole (reduced) matrix, not one test type a block")
    exp = sub.add_parser("explore", help="explore a variant for a time or a number of runs")
    exp.add_argument("--variant", required=True, metavar="NAME|PATH",
                     help="variant (registered name or patch file)")
    exp.add_argument("--strategy", default="hypothesis", metavar="S",
                     help="hypothesis (default: Hypothesis draws runs and schedules and "
                          "shrinks failures), systematic[:bound=2,per_case=64] (every "
                          "schedule with at most bound preemptions, races reversed, "
                          "equivalent schedules once), or random, pct, preempt[:key=value,...]")
    exp.add_argument("--workload", metavar="W",
                     help="stateful (rule sequences; hypothesis's default), generated "
                          "(programs Hypothesis draws and shrinks; systematic's default), "
                          "stress (mixes of compare's stress loads, drawn and shrunk; not "
                          "systematic) or a selftest mirror (the default of random, pct and "
                          "preempt: mm_cid_compaction)")
    exp.add_argument("--cpus", action="append", type=int, default=[], metavar="N",
                     help="CPU count; repeatable (default 1, 2, 3, 4, 5, 8; 8 for a mirror; "
                          "1, 2, 3, 4 for systematic over a mirror)")
    budget = exp.add_mutually_exclusive_group()
    budget.add_argument("--time", metavar="T", help="how long: 60s (default), 5m, 1h")
    budget.add_argument("--runs", type=int, metavar="N", help="how many runs")
    exp.add_argument("--seed", type=int, default=0, metavar="S", help="campaign seed")
    exp.add_argument("--findings", metavar="FILE",
                     help="append each failure to FILE (JSON lines) as soon as it is found "
                          "and shrunk, skipping those already in it (default "
                          "emulator-findings-VARIANT-SEED.jsonl)")
    exp.add_argument("--memory-model", choices=MEMORY_MODEL_CHOICES, metavar="M",
                     help="sc (default), tso or weak: the machines of the campaign")
    exp.add_argument("-v", "--verbose", action="store_true",
                     help="print each kind of failure's first report in full")
    rep = sub.add_parser("replay", help="replay the run a replay key names")
    rep.add_argument("key", help="the key a failure printed (emu1-...)")
    rep.add_argument("--trace", metavar="FILE", help="write an ftrace-like trace to FILE")
    rep.add_argument("--memory-model", choices=MEMORY_MODEL_CHOICES, metavar="M",
                     help="replay under another memory model than the key's (sc, tso, weak)")
    cmp = sub.add_parser("compare", help="variants side by side on workloads (seed 000's "
                                         "table, counters, latency histograms, plots)")
    cmp.add_argument("--variant", action="append", default=[], metavar="NAME|PATH",
                     help="variant (registered name or patch file), repeatable, all of one "
                          "subsystem; the first is the head")
    cmp.add_argument("--workload", action="append", default=[], metavar="W",
                     help="workload name[:ARG] or .py file, several joined by + "
                          "(cpu-load:80+cyclictest); repeatable (default: idle, cpu-load:80, "
                          "fork, pthread-max:4, seed 000's four)")
    cmp.add_argument("--cpus", action="append", type=int, default=[], metavar="N",
                     help="CPU count, repeatable (default 8)")
    cmp.add_argument("--duration", default="1s", metavar="T",
                     help="virtual time per run: 1s (default), 200ms, 500us")
    cmp.add_argument("--seeds", type=int, default=1, metavar="K", help="runs per figure (default 1)")
    cmp.add_argument("--seed", type=int, default=1, metavar="S", help="the first seed (default 1)")
    cmp.add_argument("--nohz-full", metavar="CPUS",
                     help="isolate CPUS (nohz_full= and isolcpus=, e.g. 1-7): per-CPU loads "
                          "and probes go to them")
    cmp.add_argument("--isolcpus", metavar="CPUS",
                     help="isolcpus= only (no nohz_full=: their tick keeps running), e.g. 1-7; "
                          "with --nohz-full, the isolcpus= list instead of its CPUs")
    cmp.add_argument("-j", "--jobs", type=int, metavar="J",
                     help="worker processes (default: the host's CPUs)")
    cmp.add_argument("--format", default="text", choices=("text", "markdown", "csv", "json"))
    cmp.add_argument("--plot", metavar="DIR", help="write PNG plots to DIR")
    cmp.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    sub.add_parser("variants", help="list the registered variants")
    lit = sub.add_parser("litmus", help="the kernel's litmus tests against the memory models "
                                        "(the table: expected, sc, tso, weak)")
    lit.add_argument("files", nargs="*", metavar="FILE",
                     help=".litmus files (default: the in-tree tests under litmus/)")
    lit.add_argument("--memory-model", action="append", default=[], metavar="M",
                     choices=MEMORY_MODEL_CHOICES, help="a mode, repeatable (default all three)")
    lit.add_argument("--on-machine", type=int, metavar="RUNS",
                     help="also run each test RUNS times on a Machine, its threads kernel "
                          "threads using the primitives (as klitmus7 runs a test on hardware)")
    return p


MEMORY_MODEL_CHOICES = ("sc", "tso", "weak")


def _memory_model(args):
    """--memory-model for every machine the command builds."""
    from .machine import set_default_memory_model
    if getattr(args, "memory_model", None):
        set_default_memory_model(args.memory_model)


def cmd_litmus(args):
    """The litmus table; exit 1 when a mode produces an outcome a test forbids."""
    from .explore.litmus import default_litmus_files, format_table, litmus_table
    modes = tuple(args.memory_model) or MEMORY_MODEL_CHOICES
    files = args.files or default_litmus_files()
    if args.on_machine is not None and args.on_machine < 1:
        raise UsageError(f"--on-machine {args.on_machine}: at least one run")
    rows = litmus_table(files, modes)
    table, notes = format_table(rows, modes)
    print(table)
    for note in notes:
        print(f"# {note}")
    failed = any(per[mode][3] == "FAIL" for _, per in rows for mode in modes)
    if args.on_machine is not None:
        from .explore.litmus import format_machine_table
        table, bad = format_machine_table(rows, modes, args.on_machine)
        print()
        print(table)
        for note in bad:
            print(f"# {note}")
        failed = failed or bool(bad)
    return 1 if failed else 0


def _open_trace(path):
    if not path:
        return None
    try:
        return open(path, "w")
    except OSError as exc:
        raise UsageError(f"cannot write trace file {path!r}: {exc.strerror}") from None


def cmd_run(args):
    from .explore.mirror import run_selftest
    from .explore.strategies import strategy_from_spec
    from .selftest import find_selftest
    find_selftest(args.selftest)
    variant = _one_variant(args)
    if args.strategy:
        strategy_from_spec(args.strategy)
    if args.args:
        import inspect
        if len(inspect.signature(find_selftest(args.selftest).run).parameters) < 2:
            raise UsageError(f"{args.selftest} takes no arguments")
    trace_file = _open_trace(args.trace)
    try:
        return run_selftest(args.selftest, variant, args.cpus, args.seed, args.strategy,
                            trace_file, stats=args.stats, argv=args.args or None)
    except KeyboardInterrupt as exc:
        return _bail_out(exc, args.trace)
    finally:
        if trace_file:
            trace_file.close()


def _one_variant_options(p):
    """--variant, --cpus and --seed of ``run`` and ``kselftest`` (_one_variant())."""
    p.add_argument("--variant", action="append", default=[], metavar="NAME|PATH",
                   help="variant (registered name or patch file)")
    p.add_argument("--cpus", type=int, default=8, metavar="N")
    p.add_argument("--seed", type=int, default=1, metavar="S")


def _one_variant(args):
    """--cpus checked and the one --variant of ``run`` and ``kselftest`` loaded
    (the mm_cid default without one)."""
    from .variants import DEFAULTS, load_variant
    if not 1 <= args.cpus <= 1024:
        raise UsageError(f"--cpus {args.cpus}: must be in 1..1024")
    if len(args.variant) > 1:
        raise UsageError("one --variant per run (every other subsystem has its default variant)")
    return load_variant(args.variant[0] if args.variant else DEFAULTS["mm_cid"])


def cmd_kselftest(args):
    from .kselftest import collection, kselftest
    collection(args.dir)
    variant = _one_variant(args)
    try:
        return kselftest(args.dir, variant, args.cpus, args.seed, full=args.full or None)
    except KeyboardInterrupt as exc:
        return _bail_out(exc)


def _bail_out(exc, trace=None):
    """TAP's line for a run stopped by Ctrl-C or SIGTERM; the exit status."""
    from .interrupt import EXIT_STATUS
    print(f"Bail out! {exc or 'interrupted by SIGINT'}: the run was abandoned, "
          f"nothing was judged" + (f" (the trace until then is in {trace})" if trace else ""))
    return EXIT_STATUS


def cmd_explore(args):
    from .explore.campaign import Campaign, parse_duration
    seconds = parse_duration(args.time) if args.time else None
    if args.runs is not None and args.runs < 1:
        raise UsageError(f"--runs {args.runs}: at least 1")
    if seconds is None and args.runs is None:
        seconds = 60.0
    campaign = Campaign(args.variant, args.strategy, args.workload, args.cpus, args.seed)
    path = campaign.record_findings(args.findings)
    print(f"findings: {path} (each failure is appended as soon as it is found)",
          file=sys.stderr, flush=True)
    try:
        campaign.run(seconds=seconds, runs=args.runs)
    except KeyboardInterrupt:           # the summary so far, exit status 130
        pass
    if args.verbose and campaign.failures:
        print(campaign.reports())
        print()
    print(campaign.summary())
    if campaign.interrupted is not None:
        from .interrupt import EXIT_STATUS
        return EXIT_STATUS
    return 1 if campaign.failures else 0


def cmd_replay(args):
    from .explore.replay import replay
    trace_file = _open_trace(args.trace)
    try:
        return replay(args.key, trace_file, memory_model=args.memory_model)
    except KeyboardInterrupt as exc:
        return _bail_out(exc, args.trace)
    finally:
        if trace_file:
            trace_file.close()


def cmd_compare(args):
    from .compare import Progress, compare, default_workers, plan
    from .observe import plots
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"-j {args.jobs}: at least 1")
    if args.plot:
        plots.require()
    jobs = plan(args.variant, args.workload, args.cpus, args.duration, args.seeds, args.seed,
                args.nohz_full, args.isolcpus)
    progress = None if args.quiet else Progress(len(jobs))
    try:
        result = compare(args.variant, args.workload, args.cpus, args.duration, args.seeds,
                         args.seed, args.nohz_full, workers=args.jobs or default_workers(),
                         progress=progress, isolcpus=args.isolcpus)
    except KeyboardInterrupt:
        print(f"compare: interrupted after {progress.done if progress else '?'} of {len(jobs)} "
              f"runs; nothing reported", file=sys.stderr)
        from .interrupt import EXIT_STATUS
        return EXIT_STATUS
    sys.stdout.write(result.format(args.format))
    if args.plot:
        for path in plots.write_plots(result, args.plot):
            print(f"compare: wrote {path}", file=sys.stderr)
    return 1 if any(not r["failure"].get("known") for r in result.failures()) else 0


def cmd_variants(args):
    from .variants import DEFAULTS, registered
    for subsystem, default in DEFAULTS.items():
        print(f"{subsystem}:")
        for cls in registered(subsystem).values():
            mark = " (default)" if cls.name == default else ""
            print(f"  {cls.describe()}{mark}")
    return 0


def main(argv=None):
    """Run the command *argv*; its exit status.  Ctrl-C and SIGTERM are
    recorded for the whole command (emulator.interrupt) and acted on at its
    checkpoints: a command that received one exits 130."""
    from . import interrupt
    scope = interrupt.enter(command=True)
    try:
        status = _command(argv)
    finally:
        signum = interrupt.received()
        interrupt.leave(scope, command=True)
    return interrupt.EXIT_STATUS if signum is not None else status


def _command(argv):
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        cut = argv.index("--") if "--" in argv else len(argv)
        program_args = argv[cut + 1:]
        args = _parser().parse_args(argv[:cut])
        if program_args and args.command != "run":
            raise UsageError("arguments after -- are for `run` (a program's arguments)")
        args.args = program_args
        if args.command != "litmus":
            _memory_model(args)
        if args.command == "litmus":
            return cmd_litmus(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "explore":
            return cmd_explore(args)
        if args.command == "kselftest":
            return cmd_kselftest(args)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "variants":
            return cmd_variants(args)
        if args.command == "compare":
            return cmd_compare(args)
        raise UsageError("a command is needed: run, kselftest, explore, replay, compare or variants "
                         "(see --help)")
    except UsageError as exc:
        print(f"emulator: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:            # `... | head`: the reader has gone
        sys.stdout = None
        return 0
