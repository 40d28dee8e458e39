"""Errors the emulator reports.

Two families: `UsageError` is the caller's mistake (a bad option, variant or
argument) and gets one clear line; `EmulationFailure` and its subclasses are
findings about the emulated kernel or program (a deadlock, a lockup, a
use-after-free, a crashing body) and carry the replay command.  `Interrupted`
(Ctrl-C or SIGTERM, a KeyboardInterrupt) is neither: never a finding.
"""

import signal


class UsageError(Exception):
    """A bad option, variant, workload or API argument: one clear line."""


class EmulationFailure(Exception):
    """A run that failed.  `report` is filled in by the machine when the run ends."""

    kind = "failure"

    def __init__(self, message, detail=""):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.report = ""

    def __str__(self):
        text = self.message
        if self.detail:
            text += "\n" + self.detail
        if self.report:
            text += "\n" + self.report
        return text


class Deadlock(EmulationFailure):
    kind = "deadlock"


class HardLockup(EmulationFailure):
    kind = "hard lockup"


class SoftLockup(EmulationFailure):
    """A CPU that does not switch with its current task in a sleeping state
    (emulator/kernel/watchdog.py)."""

    kind = "soft lockup"


class BatonTimeout(EmulationFailure):
    kind = "baton held"


class TaskCrashed(EmulationFailure):
    kind = "task crashed"


class UseAfterFree(EmulationFailure):
    kind = "use-after-free"


class KernelBug(EmulationFailure):
    """BUG()/WARN() equivalents: the kernel model found an impossible state."""

    kind = "kernel bug"


class InvariantViolation(EmulationFailure):
    """A broken invariant (emulator/checks/); ``invariant`` names it ("P1"), as data."""

    kind = "invariant violation"

    def __init__(self, message, detail="", invariant=None):
        super().__init__(message, detail)
        self.invariant = invariant


class Terminated(BaseException):
    """Raised inside an emulated body to unwind it when the run ends or its task dies.

    A BaseException so that a body's `except Exception` cannot swallow it.
    """


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, acted on at a safe point (emulator.interrupt): the run
    under way ends as an abandoned run ends, and the command stops.

    A KeyboardInterrupt, so that Hypothesis re-raises it rather than reporting
    it as a failing or flaky example, pytest stops its session as on Ctrl-C,
    and no `except Exception` takes it for a failure of the variant."""

    def __init__(self, signum):
        self.signum = signum
        self.signame = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signame}")

    def __reduce__(self):
        # Made again from its signal when it crosses processes (a worker of
        # compare -j J stopped by the signal), not from its message.
        return type(self), (self.signum,)
