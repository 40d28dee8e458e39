"""Errors the emulator reports.

Two families: `UsageError` is the caller's mistake (a bad option, variant or
argument) and gets one clear line; `EmulationFailure` and its subclasses are
findings about the emulated kernel or program (a deadlock, a lockup, a
use-after-free, a crashing body) and carry the replay command.  `Interrupted`
(Ctrl-C or SIGTERM, a KeyboardInterrupt) is neither: never a finding.
"""

import signal
import sys


class UsageError(Exception):
    """A bad option, variant, workload or API argument: one clear line."""


class EmulationFailure(Exception):
    """A run that failed.  `report` is filled in by the machine when the run ends.

    ``fields`` is what the failure is, as data (the invariant, the kernel
    function that warned, what a locked-up CPU spins on, the values it
    names): a recorded finding matches them (variants/base.py, Finding), never
    the message, which is for people."""

    kind = "failure"

    def __init__(self, message, detail="", **fields):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.report = ""
        self.fields = fields

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
    """A CPU spinning past the watchdog's threshold; ``fields["spinning_on"]``
    is what it spins on: a lock's class (``rq->__lock``, lockdep's name for
    every runqueue's), ``cpu_relax() loop``, ``csd_lock_wait``, ...; None for
    a kernel path that ran too long in real time."""

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
    """BUG()/WARN() equivalents: the kernel model found an impossible state.
    ``fields["function"]`` is the function that found it: the caller of
    KernelBug() unless it names one (WARN_ON() names its own caller)."""

    kind = "kernel bug"

    def __init__(self, message, detail="", function=None, **fields):
        if function is None:
            function = sys._getframe(1).f_code.co_name
        super().__init__(message, detail, function=function, **fields)


class InvariantViolation(EmulationFailure):
    """A broken invariant (emulator/checks/); ``invariant`` names it ("P1"), as data."""

    kind = "invariant violation"

    def __init__(self, message, detail="", invariant=None, **fields):
        super().__init__(message, detail, invariant=invariant, **fields)

    @property
    def invariant(self):
        return self.fields["invariant"]


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
