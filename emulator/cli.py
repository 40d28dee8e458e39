"""``python -m emulator``: run a selftest mirror, list variants.

    python -m emulator run SELFTEST --variant V --cpus N --seed S [--trace FILE] [--stats]
    python -m emulator variants

Exit status of ``run``: 0 pass, 1 fail, 4 skip (kselftest's KSFT_SKIP), 2 bad usage.
"""

import argparse
import sys

from . import __version__
from .errors import EmulationFailure, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser():
    p = _Parser(prog="python -m emulator", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"emulator {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run a selftest mirror")
    run.add_argument("selftest", help="mirror name, e.g. mm_cid_compaction or basic")
    run.add_argument("--variant", action="append", default=[], metavar="NAME|PATH",
                     help="variant (registered name or patch file)")
    run.add_argument("--cpus", type=int, default=8, metavar="N")
    run.add_argument("--seed", type=int, default=1, metavar="S")
    run.add_argument("--strategy", metavar="S",
                     help="pause kernel paths at scheduling points: random, pct, "
                          "or name:key=value,... (see emulator/explore.py)")
    run.add_argument("--trace", metavar="FILE", help="write an ftrace-like trace to FILE")
    run.add_argument("--stats", action="store_true", help="print counters of the run")
    sub.add_parser("variants", help="list the registered variants")
    return p


def cmd_run(args):
    from .machine import Machine
    from .selftest import find_selftest
    module = find_selftest(args.selftest)
    if not 1 <= args.cpus <= 1024:
        raise UsageError(f"--cpus {args.cpus}: must be in 1..1024")
    trace_file = None
    if args.trace:
        try:
            trace_file = open(args.trace, "w")
        except OSError as exc:
            raise UsageError(f"cannot write trace file {args.trace!r}: {exc.strerror}") from None
    variants = args.variant or []
    strategy = [f"--strategy {args.strategy}"] if args.strategy else []
    replay = " ".join(["python -m emulator run", args.selftest] +
                      [f"--variant {v}" for v in variants] +
                      [f"--cpus {args.cpus}", f"--seed {args.seed}"] + strategy)
    machine = Machine(nr_cpus=args.cpus, variants=variants, seed=args.seed,
                      trace=bool(trace_file), replay=replay, strategy=args.strategy)
    name = f"{args.selftest} variant={machine.mm_cid_class.name} cpus={args.cpus} seed={args.seed}"
    try:
        result = module.run(machine)
    except EmulationFailure as exc:
        print(f"not ok 1 {name}")
        print(f"# {exc.kind}: {exc}")
        return 1
    finally:
        if trace_file:
            trace_file.write(machine.trace_text() + "\n")
            trace_file.close()
    if result.outcome == "pass":
        print(f"ok 1 {name} # {result.detail}")
    elif result.outcome == "skip":
        print(f"ok 1 {name} # SKIP {result.detail}")
    else:
        print(f"not ok 1 {name}")
        for line in (result.detail or "").splitlines():
            print(f"# {line}")
        print(f"# replay: {replay}")
    if args.stats:
        for key, value in machine.stats().items():
            print(f"# {key}: {value:.3f}" if isinstance(value, float) else f"# {key}: {value}")
    return result.exit_code


def cmd_variants(args):
    from .variants import registered
    for cls in registered().values():
        print(cls.describe())
    return 0


def main(argv=None):
    try:
        args = _parser().parse_args(argv)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "variants":
            return cmd_variants(args)
        raise UsageError("a command is needed: run or variants (see --help)")
    except UsageError as exc:
        print(f"emulator: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:            # `... | head`: the reader has gone
        sys.stdout = None
        return 0
