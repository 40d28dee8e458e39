"""A selftest mirror run once: what ``python -m emulator run``, replay keys of
kind ``run`` and seeded campaigns over a mirror share."""

import shlex

from ..errors import EmulationFailure
from ..machine import Machine
from ..selftest import find_selftest
from .keys import make_key, replay_command
from .strategies import strategy_from_spec

__all__ = ["run_selftest", "selftest_replay"]


def selftest_replay(selftest, variant, cpus, seed, strategy=None):
    """The command that replays a mirror's run: its replay key, or (for a
    variant a key cannot name) the ``run`` command line."""
    key = make_key("run", variant, selftest=selftest, cpus=cpus, seed=seed, strategy=strategy)
    spec = shlex.quote(variant.source or variant.name)
    return replay_command(key) or " ".join(
        ["python -m emulator run", selftest, f"--variant {spec}", f"--cpus {cpus}",
         f"--seed {seed}"] + ([f"--strategy {strategy}"] if strategy else []))


def run_selftest(selftest, variant, cpus, seed, strategy=None, trace_file=None, replay=None,
                 stats=False, out=print, trace_functions=False):
    """Run a selftest mirror once and print its TAP line; the exit status."""
    module = find_selftest(selftest)
    if replay is None:
        replay = selftest_replay(selftest, variant, cpus, seed, strategy)
    machine = Machine(nr_cpus=cpus, variants=[variant], seed=seed, trace=bool(trace_file),
                      replay=replay, strategy=strategy and strategy_from_spec(strategy), trace_functions=trace_functions)
    name = f"{selftest} variant={variant.name} cpus={cpus} seed={seed}"
    try:
        result = module.run(machine)
    except EmulationFailure as exc:
        out(f"not ok 1 {name}")
        out(f"# {exc.kind}: {exc}")
        return 1
    finally:
        if trace_file:
            trace_file.write(machine.trace_text() + "\n")
    if result.outcome == "pass":
        out(f"ok 1 {name} # {result.detail}")
    elif result.outcome == "skip":
        out(f"ok 1 {name} # SKIP {result.detail}")
    else:
        out(f"not ok 1 {name}")
        for line in (result.detail or "").splitlines():
            out(f"# {line}")
        out(f"# replay: {replay}")
    if stats:
        for key, value in machine.stats().items():
            out(f"# {key}: {value:.3f}" if isinstance(value, float) else f"# {key}: {value}")
    return result.exit_code
