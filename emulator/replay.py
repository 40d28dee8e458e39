"""Replay keys: one string that names a run, made where a run fails.

A key carries what the run needs and nothing else: the kind of run (a selftest
mirror, a generated case, a stateful example), the variant (a registered name,
or a patch file and a digest of its text), the machine seed, CPU count and
schedule, and the emulator version that made it.  The version is the package
version and a digest of the emulator's own source, so a key made by other code
is refused with a clear message rather than replayed into a different run; a
patch file whose text changed since the key was made is refused the same way.

    python -m emulator replay KEY [--trace FILE]
    pytest --emu-replay=KEY

Keys are ``emu1-`` and zlib-compressed JSON in URL-safe base64: copyable from
a terminal into a shell without quoting.
"""

import base64
import binascii
import hashlib
import json
import os
import zlib

from . import __version__
from .errors import UsageError

__all__ = ["emulator_version", "make_key", "parse_key", "replay_command", "variant_ref",
           "load_variant_ref"]

PREFIX = "emu1-"
_version = None


def emulator_version():
    """``0.1.0+<digest of the emulator's source>``: what a key must match."""
    global _version
    if _version is None:
        root = os.path.dirname(os.path.abspath(__file__))
        h = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    h.update(os.path.relpath(path, root).encode() + b"\0")
                    with open(path, "rb") as f:
                        h.update(f.read())
        _version = f"{__version__}+{h.hexdigest()[:12]}"
    return _version


def _file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def variant_ref(variant):
    """How a key names *variant*, or None when it cannot (a class defined in a
    test, neither registered nor loaded from a file)."""
    from .variants import get_variant, load_variant
    cls = load_variant(variant)
    source = getattr(cls, "source", None)
    if source:
        return {"path": source, "sha": _file_digest(source)}
    try:
        if get_variant(cls.name) is cls:
            return {"name": cls.name}
    except UsageError:
        pass
    return None


def load_variant_ref(ref):
    from .variants import load_variant
    if "name" in ref:
        return load_variant(ref["name"])
    path = ref["path"]
    if not os.path.isfile(path):
        raise UsageError(f"replay key: the patch file {path!r} is not here "
                         f"(run from the directory the key was made in)")
    if _file_digest(path) != ref["sha"]:
        raise UsageError(f"replay key: the patch file {path!r} has changed since the key was made")
    return load_variant(path)


def make_key(kind, variant, **fields):
    """A key for a run of *kind* on *variant*, or None when the variant
    cannot be named by a key."""
    ref = variant_ref(variant)
    if ref is None:
        return None
    data = {"emulator": emulator_version(), "kind": kind, "variant": ref, **fields}
    raw = zlib.compress(json.dumps(data, separators=(",", ":"), sort_keys=True).encode(), 9)
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_key(key):
    """The run a key names; a malformed key or one from another emulator
    version is a UsageError."""
    if not isinstance(key, str) or not key.startswith(PREFIX):
        raise UsageError(f"not a replay key (they begin with {PREFIX!r}): {str(key)[:40]!r}")
    body = key[len(PREFIX):]
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        data = json.loads(raw)
    except (binascii.Error, ValueError, zlib.error):
        raise UsageError("replay key is damaged (cut or mistyped?)") from None
    if not isinstance(data, dict) or not {"emulator", "kind", "variant"} <= data.keys():
        raise UsageError("replay key is damaged (fields missing)")
    if data["emulator"] != emulator_version():
        raise UsageError(f"replay key was made by emulator {data['emulator']}, this is "
                         f"{emulator_version()}: replay it with the version that made it")
    return data


def replay_command(key):
    return f"python -m emulator replay {key}" if key else None


def replay(key, trace_file=None, out=print):
    """Run what *key* names, with the variant's functions traced, printing
    its outcome as ``python -m emulator run`` does; returns the exit status (0 the run passed or ended in a
    recorded finding, 1 it failed, 4 a selftest skipped)."""
    data = parse_key(key)
    variant = load_variant_ref(data["variant"])
    kind = data["kind"]
    command = replay_command(key)
    try:
        if kind == "run":
            from .cli import run_selftest
            return run_selftest(data["selftest"], variant, data["cpus"], data["seed"],
                                data.get("strategy"), trace_file, replay=command, out=out,
                                trace_functions=True)
        if kind == "generated":
            from .generated import Case, run_case
            from .workload import program_from_data
            case = Case(data["cpus"], data["seed"], program_from_data(data["program"]),
                        {int(p): ns for p, ns in data["pauses"].items()})
            return _report(out, f"generated case on {variant.name}", trace_file,
                           lambda **kw: run_case(variant, case, replay=command, **kw))
        if kind == "stateful":
            from .stateful import replay_steps
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
    from .errors import EmulationFailure
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
