"""kernel/watchdog.c: the soft lockup detector.

The kernel's watchdog_timer_fn() runs off a per-CPU hrtimer; it kicks the
CPU's stopper to touch ``watchdog_touch_ts`` and reports, once that
timestamp is older than the threshold (2 * watchdog_thresh, 20 s), that the
CPU has not scheduled: "BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]".
The hard lockup side (a CPU spinning with interrupts off, or on a lock that
nothing can release) is the scheduler core's hard_lockup(), from
cpu_relax() and the spinlocks.

Departures: watchdog_timer_fn() runs from the scheduler tick, so a CPU
whose tick is stopped (idle, nohz_full with one task) is not watched; the
model has no stopper kick, and a CPU running one runnable task legitimately
never switches, so the touch is a context switch of the CPU and the report
is for a CPU that has not switched while every tick saw its ``rq->curr`` in a
sleeping state (TASK_INTERRUPTIBLE or TASK_UNINTERRUPTIBLE): a task between
set_current_state() and its switch out, for longer than any kernel path
takes there (a wake-up that is lost or keeps coming inside that window, a
missed schedule()).  The threshold is the kernel object's ``softlockup_ns``
(SOFTLOCKUP_NS, ten ticks at HZ=1000, not 20 s), short enough for a run of
a few tens of milliseconds to end with the stall reported rather than with
figures that only look low, or twice the largest of the machine's costs if
that is longer.
"""

from ..errors import SoftLockup
from .task import TASK_NORMAL, state_char

SOFTLOCKUP_NS = 10_000_000


class Watchdog:
    """Mixin."""

    softlockup_ns = SOFTLOCKUP_NS

    def watchdog_timer_fn(self, rq):
        """The CPU's look at itself, on its tick (interrupt context)."""
        if rq.nr_switches != rq.watchdog_touch_switches or \
                not rq.curr.state & TASK_NORMAL:
            # The CPU switched since the last look, or its task is running
            # again (woken inside its window, it went on without a switch: a
            # CPU-bound task may then keep its CPU for long): touched.
            rq.watchdog_touch_switches = rq.nr_switches
            rq.watchdog_touch_ts = None
        if rq.watchdog_touch_ts is None:
            state = rq.curr.state
            if state & TASK_NORMAL and rq.curr is not rq.idle:
                rq.watchdog_touch_ts = self.engine.now
                rq.watchdog_state = state
            return
        duration = self.engine.now - rq.watchdog_touch_ts
        if duration >= self.softlockup_ns and duration >= 2 * max(self.costs.values()):
            # (a machine given costs of milliseconds may spend one, owed, with
            # its task's state set: emulator/kernel/costs.py)
            raise self.softlockup(rq, duration)

    def softlockup(self, rq, duration):
        """The report: which task, in which state, waiting on what, since when."""
        curr = rq.curr
        waiting = f" waiting on {curr.wait_reason!r}" if curr.wait_reason is not None else ""
        return SoftLockup(
            f"watchdog: BUG: soft lockup - CPU#{rq.cpu} stuck for {duration / 1e6:g}ms! "
            f"[{curr.comm}:{curr.pid}]: on CPU {rq.cpu}, {curr!r} was rq->curr in state "
            f"{state_char(rq.watchdog_state)} at {rq.watchdog_touch_ts / 1e9:.9f} (between "
            f"set_current_state() and its switch out) and the CPU has not switched since; "
            f"now in state {state_char(curr.state)}{waiting}",
            "CPU states:\n" + self.cpu_states())
