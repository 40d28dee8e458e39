"""Selftest mirrors: how a mirror reports, and how they are found by name.

A mirror module in ``selftests/`` (named ``<name>_test.py``) keeps the C
program as ``main()`` and provides ``run(machine) -> Result``, which runs it
and says whether it passed, failed, or skipped (including a "pass" that
tested nothing, which a mirror must report as a skip).

A mirror is found in any directory under ``selftests/``, with or without an
``__init__.py``: the package's own (``selftests/rseq/...``) and a
``selftests/`` directory in the current working directory (a user's tree).
It answers to its file's name (``basic_test``, the C program's name when the
C file is ``basic_test.c``), its short name without ``_test`` (``basic``;
``param_test_mm_cid`` for param_test_mm_cid_test.py, the C build's name) and
its path (``selftests/rseq/basic_test.py``).
"""

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from .errors import UsageError

KSFT_PASS = 0          # kselftest.h (emulator.ktap has them all)
KSFT_FAIL = 1
KSFT_SKIP = 4


class Result:
    def __init__(self, outcome, status, detail=""):
        assert outcome in ("pass", "fail", "skip")
        self.outcome = outcome
        self.status = status
        self.detail = detail

    @property
    def exit_code(self):
        return {"pass": KSFT_PASS, "fail": KSFT_FAIL, "skip": KSFT_SKIP}[self.outcome]

    def __repr__(self):
        return f"Result({self.outcome}, status={self.status}, {self.detail!r})"


def _roots():
    """The selftests directories searched: the package's, then ./selftests."""
    import selftests as pkg
    roots = [Path(p).resolve() for p in pkg.__path__]
    here = Path.cwd() / "selftests"
    if here.is_dir() and here.resolve() not in roots:
        roots.append(here.resolve())
    return roots


def _mirror_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for f in sorted(filenames):
            if f.endswith("_test.py"):
                yield Path(dirpath) / f


def names_of(path):
    """The names a mirror file answers to, besides its path."""
    stem = Path(path).stem
    return [stem, stem[:-len("_test")]] if stem != "_test" else [stem]


def selftests():
    """Every mirror: ``{name: [path, ...]}`` for each name a mirror answers to."""
    found = {}
    for root in _roots():
        for path in _mirror_files(root):
            for name in names_of(path):
                found.setdefault(name, [])
                if path not in found[name]:
                    found[name].append(path)
    return found


def short_names():
    """One name per mirror (the short one), sorted: what an error lists."""
    return sorted({names_of(p)[-1] for paths in selftests().values() for p in paths})


def selftest_path(name):
    """The file of the mirror *name* (a name or a path); a UsageError if
    there is none or the name is ambiguous."""
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise UsageError(f"no selftest mirror file {name!r}")
        return path.resolve()
    paths = selftests().get(name, [])
    if not paths:
        raise UsageError(f"unknown selftest {name!r}; known: {', '.join(short_names())}")
    if len(paths) > 1:
        raise UsageError(f"selftest {name!r} is ambiguous: {', '.join(map(str, paths))}; "
                         f"name it by its path")
    return paths[0]


def _module_name(path):
    """Its dotted name when *path* lies in the selftests package (a
    directory without __init__.py is a namespace package), else None."""
    import selftests as pkg
    for root in pkg.__path__:
        try:
            rel = path.relative_to(Path(root).resolve())
        except ValueError:
            continue
        parts = rel.with_suffix("").parts
        if all(p.isidentifier() for p in parts):
            return ".".join((pkg.__name__,) + parts)
    return None


def find_selftest(name):
    """The mirror module *name* names (see the module docstring)."""
    path = selftest_path(name)
    try:
        module = _load(path)
    except Exception as exc:        # a user's mirror that does not import: one line
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) else ""
        raise UsageError(f"selftest mirror {str(path)!r} does not load{where}: "
                         f"{type(exc).__name__}: {exc}") from None
    if not callable(getattr(module, "run", None)):
        raise UsageError(f"selftest mirror {str(path)!r} has no run(machine)")
    return module


def _load(path):
    dotted = _module_name(path)
    if dotted is not None:
        return importlib.import_module(dotted)
    key = "emulator_mirror_" + "".join(c if c.isalnum() else "_" for c in str(path))
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module
