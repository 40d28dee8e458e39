"""A selftest mirror run once: what ``python -m emulator run``, replay keys of
kind ``run`` and seeded campaigns over a mirror share."""

import shlex

from ..errors import EmulationFailure
from ..ktap import KSFT_SKIP, Ksft
from ..machine import Machine, default_memory_model
from ..selftest import find_selftest
from .keys import make_key, replay_command
from .strategies import strategy_from_spec

__all__ = ["run_selftest", "selftest_replay"]


def selftest_replay(selftest, variant, cpus, seed, strategy=None, argv=None):
    """The command that replays a mirror's run: its replay key, or (for a
    variant a key cannot name, or a program given arguments, which a key
    does not carry) the ``run`` command line."""
    spec = shlex.quote(variant.source or variant.name)
    command = " ".join(
        ["python -m emulator run", selftest, f"--variant {spec}", f"--cpus {cpus}",
         f"--seed {seed}"] + ([f"--strategy {strategy}"] if strategy else [])
        + ([f"--memory-model {default_memory_model()}"] if default_memory_model() != "sc" else [])
        + (["--", shlex.join(argv)] if argv else []))
    if argv:
        return command
    key = make_key("run", variant, selftest=selftest, cpus=cpus, seed=seed, strategy=strategy)
    return replay_command(key) or command


def run_selftest(selftest, variant, cpus, seed, strategy=None, trace_file=None, replay=None,
                 stats=False, out=print, trace_functions=False, argv=None):
    """Run a selftest mirror once and print its KTAP as a kselftest.h
    program does (emulator.ktap); the exit status, kselftest's exit code."""
    module = find_selftest(selftest)
    if replay is None:
        replay = selftest_replay(selftest, variant, cpus, seed, strategy, argv)
    machine = Machine(nr_cpus=cpus, variants=[variant], seed=seed, trace=bool(trace_file),
                      replay=replay, strategy=strategy and strategy_from_spec(strategy), trace_functions=trace_functions)
    name = f"{selftest} variant={variant.name} cpus={cpus} seed={seed}" + \
        (f" args={shlex.join(argv)}" if argv else "")
    ksft = Ksft(out)
    ksft.ksft_print_header()
    ksft.ksft_set_plan(1)
    try:
        result = module.run(machine) if not argv else module.run(machine, list(argv))
    except EmulationFailure as exc:
        ksft.ksft_print_msg(f"{exc.kind}: {exc}")
        ksft.ksft_test_result_fail(name)
        return ksft.ksft_exit_fail()
    finally:
        if trace_file:
            trace_file.write(machine.trace_text() + "\n")
    stats_lines = [f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}"
                   for key, value in machine.stats().items()] if stats else []
    if result.outcome == "skip":
        for line in stats_lines:
            ksft.ksft_print_msg(line)
        # Not ksft_exit_skip(): after a plan it counts the skip and then
        # numbers its line 1 + ksft_test_num() ("ok 2" in a plan of 1).
        ksft.ksft_test_result_skip(f"{name} {result.detail}")
        ksft.ksft_print_cnts()
        return KSFT_SKIP
    if result.outcome == "pass":
        ksft.ksft_test_result_pass(f"{name} # {result.detail}" if result.detail else name)
    else:
        ksft.ksft_print_msg(result.detail or "")
        ksft.ksft_print_msg(f"replay: {replay}")
        ksft.ksft_test_result_fail(name)
    for line in stats_lines:
        ksft.ksft_print_msg(line)
    return ksft.ksft_finished()
