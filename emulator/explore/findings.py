"""What a failed run found: the variant's recorded findings, and the category
a failure is counted under.

A variant records its known bugs as data (``known_findings``, a tuple of
:class:`~emulator.variants.base.Finding` on the variant class); a patch
deriving from a variant inherits its findings, so that a search of the patch
goes on past them and reports only what is new.  A recorded finding matches
by the failure's class, its fields (the invariant, the function that warned,
what a locked-up CPU spins on: data, never the message) *and its cause*: the
variant notes the cause when it happens (``Kernel.causes``), so a patch
failing the same way for another reason is reported, not excused.

A campaign writes what it finds to a *findings file* (:class:`FindingsFile`) as
it finds it, so that a campaign stopped by Ctrl-C, killed or cut short by a
reboot leaves every failure found until then on disk.
"""

import json
import os
import sys

from ..checks.invariants import InvariantViolation
from ..errors import EmulationFailure, UsageError

__all__ = ["known_finding", "failure_category", "FindingsFile"]


def known_finding(variant, exc, causes=None):
    """The reason *exc* is a recorded finding of *variant* or of an era it
    derives from, or None.  *causes* are the causes the run noted
    (``Kernel.causes``); a finding with a cause matches only if it happened."""
    for cls in type.mro(variant):
        for f in vars(cls).get("known_findings", ()):
            if f.matches(exc, causes):
                return f.reason
    return None


def failure_category(exc):
    """What broke, as a campaign's summary groups it: the invariant (``P2``)
    for an invariant violation, else the detector (hard lockup, deadlock,
    use-after-free, kernel bug, ...)."""
    if isinstance(exc, InvariantViolation) and exc.invariant:
        return exc.invariant
    if isinstance(exc, EmulationFailure):
        return exc.kind
    return f"python error: {type(exc).__name__}"


class FindingsFile:
    """A campaign's failures, one JSON object a line (``category``,
    ``first_line``, ``key``, ``replay`` and where it came from), each written,
    flushed and fsynced before the campaign goes on (the first creates the
    file).  A failure already in it (same category and replay key, or first
    line for a failure without a key) is not written again, so a campaign
    re-run with the same file adds only what is new.  A line cut short by a
    crash is ignored."""

    def __init__(self, path, err=None):
        self.path = path
        self.err = err or sys.stderr
        self.recorded = set()
        self.broken = False
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read findings file {path!r}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        lines = text.split("\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self.recorded.add(self.identity(record))
            except (ValueError, KeyError, TypeError, AttributeError):
                if line.startswith("{") and (n == len(lines) or not line.endswith("}")):
                    continue                    # a write cut short by a crash
                raise UsageError(f"findings file {path!r}, line {n}: not a finding a campaign "
                                 f"wrote") from None
        self._torn = bool(text) and not text.endswith("\n")
        where = path if os.path.exists(path) else os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"cannot write findings file {path!r}: no such directory")
        if not os.access(where, os.W_OK):
            raise UsageError(f"cannot write findings file {path!r}: permission denied")

    @staticmethod
    def identity(record):
        return record["category"], record.get("key") or record["first_line"]

    def add(self, record):
        """Write *record* unless the file has it already; True if written."""
        identity = self.identity(record)
        if identity in self.recorded or self.broken:
            return False
        line = json.dumps(record) + "\n"
        if self._torn:
            line = "\n" + line
        try:
            created = not os.path.exists(self.path)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            if created:         # the directory entry too, so that a reboot keeps the file
                fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            self.broken = True
            print(f"emulator: cannot write findings file {self.path!r} ({exc.strerror}): "
                  f"failures are in the summary only", file=self.err, flush=True)
            return False
        self._torn = False
        self.recorded.add(identity)
        return True
