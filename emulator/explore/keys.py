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

from .. import __version__
from ..errors import UsageError

__all__ = ["emulator_version", "make_key", "parse_key", "replay_command", "variant_ref",
           "load_variant_ref"]

PREFIX = "emu1-"
_version = None


def emulator_version():
    """``0.1.0+<digest of the emulator's source>``: what a key must match."""
    global _version
    if _version is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    from ..variants import get_variant, load_variant
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
    from ..variants import load_variant
    if "name" in ref:
        return load_variant(ref["name"])
    path = ref["path"]
    if not os.path.isfile(path):
        raise UsageError(f"replay key: the patch file {path!r} is not here "
                         f"(run from the directory the key was made in)")
    if _file_digest(path) != ref["sha"]:
        raise UsageError(f"replay key: the patch file {path!r} has changed since the key was made")
    return load_variant(path)


def make_key(kind, variant, memory_model=None, **fields):
    """A key for a run of *kind* on *variant* under *memory_model* (None: the
    default of the machines built without one), or None when the variant
    cannot be named by a key."""
    ref = variant_ref(variant)
    if ref is None:
        return None
    data = {"emulator": emulator_version(), "kind": kind, "variant": ref, **fields}
    from ..machine import default_memory_model
    memory_model = memory_model or default_memory_model()
    if memory_model != "sc":                    # the run's memory model (tso, weak)
        data["memory_model"] = memory_model
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
