"""kernel/time/: hrtimers, timer_list and jiffies, and nanosleep.

A timer's callback runs in interrupt context on the CPU that armed it, at its
expiry time.  Departure: timer_list timers fire at their jiffy boundary as
events of their own; they do not wait for that CPU's tick (which may be
stopped while idle), as the kernel's timer wheel would wake the CPU for them.
"""

from .task import TASK_INTERRUPTIBLE, TASK_RUNNING

NSEC_PER_SEC = 1_000_000_000
NSEC_PER_MSEC = 1_000_000
NSEC_PER_USEC = 1_000


class hrtimer:
    __slots__ = ("function", "data", "entry", "cpu", "expires", "fired")

    def __init__(self, function, data=None):
        self.function = function
        self.data = data
        self.entry = None
        self.cpu = 0
        self.expires = 0
        self.fired = 0          # when its callback last ran (an interrupt held off runs late)


timer_list = hrtimer


class Time:
    """Mixin: timers and sleeping for a time."""

    @property
    def jiffies(self):
        return self.engine.now // self.tick_nsec

    def msecs_to_jiffies(self, ms):
        return -(-ms * NSEC_PER_MSEC // self.tick_nsec)

    def hrtimer_start(self, timer, expires):
        """Arm *timer* at absolute virtual time *expires* on this CPU."""
        if timer.entry is not None:
            self.engine.cancel(timer.entry)
        timer.cpu = self.cpu
        timer.expires = expires
        timer.entry = self.engine.at(expires, self._hrtimer_run, timer)

    def hrtimer_cancel(self, timer):
        """Returns whether the timer was active."""
        if timer.entry is None:
            return False
        self.engine.cancel(timer.entry)
        timer.entry = None
        return True

    def hrtimer_active(self, timer):
        return timer.entry is not None

    def _hrtimer_run(self, timer):
        rq = self.rqs[timer.cpu]
        if self.irq_deferred(rq, self._hrtimer_run, timer):
            return
        timer.entry = None
        timer.fired = self.engine.now
        self._irq_enter(rq, "hrtimer")
        timer.function(timer)
        self.irq_exit(rq)

    # timer_list in jiffies

    def mod_timer(self, timer, expires):
        """(Re)arm a timer_list for jiffy *expires*; returns whether it was pending."""
        was = self.hrtimer_cancel(timer)
        self.hrtimer_start(timer, max(expires * self.tick_nsec, self.engine.now))
        return was

    def del_timer(self, timer):
        return self.hrtimer_cancel(timer)

    # Callbacks run atomically in this model, so none can be running while a
    # task calls del_timer_sync(): it is del_timer().
    del_timer_sync = del_timer
    timer_pending = hrtimer_active

    # sleeping

    def hrtimer_nanosleep(self, ns):
        """Sleep *ns* of virtual time; -EINTR if a fatal signal cuts it short."""
        return self.hrtimer_nanosleep_until(self.engine.now + ns)

    def hrtimer_nanosleep_until(self, expires):
        """Sleep until virtual time *expires* (clock_nanosleep() with
        TIMER_ABSTIME; at once if it has passed); -EINTR on a fatal signal."""
        t = self.cur
        timer = t.sleep_timer
        if timer is None:
            timer = t.sleep_timer = hrtimer(self._hrtimer_wakeup, t)
        timer.data = t
        t.sleep_expired = False
        # hrtimer_set_expires_range_ns(): a SCHED_OTHER sleeper's timer may
        # fire anywhere in [expiry, expiry + timer_slack_ns]; the clock event
        # is programmed for the hard end, which is when a timer fires unless
        # another one on its CPU expires inside its window (that coalescing
        # is not modelled).
        slack = self.timer_slack_ns if t.policy == 0 else 0
        self.hrtimer_start(timer, max(expires, self.engine.now) + slack)
        while True:
            t.state = TASK_INTERRUPTIBLE
            t.wait_reason = "hrtimer_nanosleep"
            if t.sleep_expired:
                break
            if t.sigkill:
                self.hrtimer_cancel(timer)
                t.state = TASK_RUNNING
                t.wait_reason = None
                return -4
            self.schedule()
        t.state = TASK_RUNNING
        t.wait_reason = None
        return 0

    def msleep(self, msecs):
        """Sleep *msecs* milliseconds (a fatal signal ends it early, where
        the kernel's msleep() would sleep on uninterruptibly)."""
        self.hrtimer_nanosleep(msecs * NSEC_PER_MSEC)

    def _hrtimer_wakeup(self, timer):
        t = timer.data
        t.sleep_expired = True
        self.wake_up_process(t)
