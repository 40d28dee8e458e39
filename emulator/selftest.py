"""Selftest mirrors: how a mirror reports, and how they are found by name.

A mirror module in ``selftests/`` (named ``<name>_test.py``) keeps the C
program as ``main()`` and provides ``run(machine) -> Result``, which runs it
and says whether it passed, failed, or skipped (including a "pass" that
tested nothing, which a mirror must report as a skip).
"""

import importlib
import pkgutil

from .errors import UsageError

KSFT_PASS = 0
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


def selftests():
    """Mirror modules by name (``mm_cid_compaction`` for mm_cid_compaction_test.py)."""
    import selftests as pkg
    found = {}
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf.endswith("_test"):
            found[leaf[:-len("_test")]] = info.name
    return found


def find_selftest(name):
    tests = selftests()
    if name not in tests:
        raise UsageError(f"unknown selftest {name!r}; known: {', '.join(sorted(tests))}")
    return importlib.import_module(tests[name])
