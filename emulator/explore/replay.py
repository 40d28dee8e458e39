"""Replaying what a key names: ``python -m emulator replay KEY`` and
``pytest --emu-replay=KEY`` (the keys themselves: emulator.explore.keys)."""

from ..errors import EmulationFailure, UsageError
from ..machine import set_default_memory_model
from ..workload import program_from_data
from .generated import Case, run_case
from .keys import load_variant_ref, parse_key, replay_command
from .mirror import run_selftest
from .stateful import replay_steps
from .strategies import strategy_from_spec
from .stress import StressCase, run_stress
from .systematic import program_outcome

__all__ = ["replay"]


def replay(key, trace_file=None, out=print, memory_model=None):
    """Run what *key* names, with the variant's functions traced, printing
    its outcome as ``python -m emulator run`` does, under the memory model
    the key names (or *memory_model*); returns the exit status (0 the run passed or ended in a
    recorded finding, 1 it failed, 4 a selftest skipped)."""
    data = parse_key(key)
    previous = set_default_memory_model(memory_model or data.get("memory_model", "sc"))
    try:
        return _replay(data, key, trace_file, out)
    finally:
        set_default_memory_model(previous)


def _replay(data, key, trace_file, out):
    variant = load_variant_ref(data["variant"])
    kind = data["kind"]
    command = replay_command(key)
    try:
        if kind == "run":
            return run_selftest(data["selftest"], variant, data["cpus"], data["seed"],
                                data.get("strategy"), trace_file, replay=command, out=out,
                                trace_functions=True)
        if kind == "generated":
            case = Case(data["cpus"], data["seed"], program_from_data(data["program"]),
                        {int(p): ns for p, ns in data["pauses"].items()},
                        nr_possible=data.get("nr_possible"), affinity=data.get("affinity"))
            return _report(out, f"generated case on {variant.name}", trace_file,
                           lambda **kw: run_case(variant, case, replay=command, **kw))
        if kind == "stress":
            case = StressCase(data["cpus"], data["seed"], data["workload"], data["duration_ns"],
                              data["strategy"], nr_possible=data.get("nr_possible"),
                              affinity=data.get("affinity"), isolation=data.get("isolation"))
            return _report(out, f"stress case on {variant.name}", trace_file,
                           lambda **kw: run_stress(variant, case, replay=command, **kw))
        if kind == "program":
            program = program_from_data(data["program"])

            def run_program(**kw):
                outcome = program_outcome(variant, data["cpus"], data["seed"], program,
                                          strategy_from_spec(data["strategy"]),
                                          machine=data.get("machine"), **kw)
                if outcome.failure is not None:
                    raise outcome.failure
                return outcome.known
            return _report(out, f"program on {variant.name}", trace_file, run_program)
        if kind == "stateful":
            return _report(out, f"stateful example on {variant.name}", trace_file,
                           lambda **kw: replay_steps(variant, data["boot"], data["steps"],
                                                     lockup_ns=data.get("lockup_ns"),
                                                     replay=command, **kw))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"replay key is damaged ({type(exc).__name__}: {exc})") from None
    raise UsageError(f"replay key of an unknown kind {kind!r}")


def _report(out, name, trace_file, run):
    """Run a generated case or a stateful example (``run(**machine_kwargs)``
    returns None or the reason of a recorded finding) and print its outcome."""
    machines = []
    try:
        reason = run(trace=bool(trace_file), on_machine=machines.append, trace_functions=True)
    except EmulationFailure as exc:
        out(f"not ok 1 {name}")
        out(f"# {exc.kind}: {exc}")
        return 1
    finally:
        if trace_file and machines:
            trace_file.write(machines[-1].trace_text() + "\n")
    if reason:
        out(f"ok 1 {name} # known finding: {reason}")
    else:
        out(f"ok 1 {name}")
    return 0
