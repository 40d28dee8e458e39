"""What a failed run found: the variant's recorded findings, and the category
a failure is counted under.

A variant records its known bugs as data (``known_findings``, a tuple of
:class:`~emulator.variants.base.Finding` on the variant class); a patch
deriving from a variant inherits its findings, so that a search of the patch
goes on past them and reports only what is new.  A recorded finding matches
by the failure's class, its message *and its cause*: the variant notes the
cause when it happens (``Kernel.causes``), so a patch failing the same way for
another reason is reported, not excused.
"""

import re

from ..checks.invariants import InvariantViolation
from ..errors import EmulationFailure

__all__ = ["known_finding", "failure_category"]


def known_finding(variant, exc, causes=None):
    """The reason *exc* is a recorded finding of *variant* or of an era it
    derives from, or None.  *causes* are the causes the run noted
    (``Kernel.causes``); a finding with a cause matches only if it happened."""
    for cls in type.mro(variant):
        for f in vars(cls).get("known_findings", ()):
            if isinstance(exc, f.error) and re.search(f.pattern, str(exc)) and \
                    (f.cause is None or causes is None or f.cause in causes):
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
