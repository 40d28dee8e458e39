"""Exploration strategies: where a kernel path pauses so that other CPUs run.

Every shared-memory primitive of emulator.kernel.locking (READ_ONCE,
WRITE_ONCE, cmpxchg, atomics, bit operations, barriers, lock acquire and
release) is a *scheduling point*.  Without a strategy each kernel path runs to
its next block (the default).  With one, the strategy decides at each point
whether the running path pauses, and for how long in virtual time; other CPUs'
paths and events run meanwhile, which is how interleavings that the default
order never produces are reached.  Turning interrupts back on is a point too
(a pending interrupt is taken there).

A point is *preemptible* when the path holds no spinlock and has interrupts
and preemption on: there a real kernel path can be stopped for milliseconds
(an interrupt, a preempting task, a preempted vCPU).  Elsewhere only a few
microseconds are plausible.  ``ScriptStrategy`` numbers both (``pN`` counts
every point, ``qN`` the preemptible ones) and ``PreemptStrategy`` pauses only
at preemptible points.

A strategy is an oracle that draws every decision from the machine's seeded
chooser, so a run replays from (seed, variant, strategy).

Departures: only kernel paths in task context pause (interrupt handlers run
to completion on the event loop); a paused path holds off its CPU's
interrupts until it resumes, as if it ran with interrupts off.
"""

from ..errors import UsageError
from .point import sched_point_hook

__all__ = ["Strategy", "RandomStrategy", "PCTStrategy", "PreemptStrategy", "ScriptStrategy",
           "strategy_from_spec"]


class Strategy:
    """Decides at each scheduling point; ``pause_ns(kind, preemptible)``
    returns a pause in virtual ns, or None to go on."""

    name = "default"
    resched = False             # the pause just returned preempts by the CPU's own tasks
    resched_p = 0               # elsewhere, a preemptible point where other tasks wait
                                # for the CPU is preempted with this probability

    def __init__(self):
        self.chooser = None
        self.points = 0
        self.preemptible_points = 0
        self.pauses = 0

    # A recorder called at every scheduling point, interrupt context included,
    # before the decision: observe(kernel, kind, obj) (the systematic search's).
    observe = None

    def install(self, kernel):
        """Take the decisions of *kernel*'s scheduling points (Machine does
        this); the default strategy leaves the hook off."""
        self.attach(kernel.chooser)
        if self.name != "default" or self.observe is not None:
            kernel.sched_point_hook = sched_point_hook(kernel, self)

    def attach(self, chooser):
        self.chooser = chooser

    def pause_ns(self, kind, preemptible=False):
        return None

    def spec(self):
        return self.name


class RandomStrategy(Strategy):
    """Pause at each point with probability *p*, for up to *max_ns*."""

    name = "random"
    min_ns = 0                  # the shortest pause drawn

    def __init__(self, p=0.02, max_ns=5_000):
        super().__init__()
        if not 0 < p <= 1 or max_ns < self.min_ns:
            raise UsageError(f"{self.name} strategy: 0 < p <= 1 and max_ns >= {self.min_ns}")
        self.p = p
        self.max_ns = max_ns
        self._threshold = int(p * (1 << 30))

    def pause_ns(self, kind, preemptible=False):
        self.points += 1
        return self._maybe_pause()

    def _maybe_pause(self):
        """With probability p, a pause of min_ns..max_ns."""
        if self.chooser.getrandbits(30) < self._threshold:
            self.pauses += 1
            return self.min_ns + self.chooser.below(self.max_ns + 1 - self.min_ns)
        return None

    def spec(self):
        return f"{self.name}:p={self.p},max_ns={self.max_ns}"


class PCTStrategy(Strategy):
    """PCT (Burckhardt et al., ASPLOS 2010) with preemption bound *depth - 1*:
    *depth - 1* change points drawn uniformly among the first *horizon*
    scheduling points; at each, the running path pauses (loses its priority)
    for up to *max_ns*, letting every other path run first."""

    name = "pct"

    def __init__(self, depth=3, horizon=20_000, max_ns=20_000):
        super().__init__()
        if depth < 1 or horizon < 1:
            raise UsageError("pct strategy: depth >= 1 and horizon >= 1")
        self.depth = depth
        self.horizon = horizon
        self.max_ns = max_ns
        self.change_points = set()

    def attach(self, chooser):
        super().attach(chooser)
        # invariant: depth - 1 distinct points in [1, horizon]
        while len(self.change_points) < min(self.depth - 1, self.horizon):
            self.change_points.add(1 + chooser.below(self.horizon))

    def pause_ns(self, kind, preemptible=False):
        self.points += 1
        if self.points in self.change_points:
            self.pauses += 1
            return 1 + self.chooser.below(self.max_ns)
        return None

    def spec(self):
        return f"pct:depth={self.depth},horizon={self.horizon},max_ns={self.max_ns}"


class PreemptStrategy(RandomStrategy):
    """Pause only at preemptible points, with probability *p*, for up to
    *max_ns* (default 2 ms: a tick or two of a preempting task)."""

    name = "preempt"
    min_ns = 1

    def __init__(self, p=0.05, max_ns=2_000_000):
        super().__init__(p, max_ns)

    def pause_ns(self, kind, preemptible=False):
        self.points += 1
        if not preemptible:
            return None
        self.preemptible_points += 1
        return self._maybe_pause()


class ScriptStrategy(Strategy):
    """Pause at the scheduling points a script names, for the ns it gives:
    ``ScriptStrategy({120: 3000}, {7: 400_000})`` pauses at the 120th point
    for 3000 ns and at the 7th preemptible point for 0.4 ms.  The script is
    what a Hypothesis test draws (emulator.generated, emulator.stateful), so
    that Hypothesis shrinks the schedule along with the workload: fewer
    pauses, earlier points, shorter pauses.  Its spec is
    ``script:p120=3000,q7=400000``; ``r7=400000`` preempts the path at the
    7th preemptible point by the tasks queued on its CPU, as a PREEMPT
    kernel does when its slice ends (Kernel.preempt_kernel_path), or pauses
    it for 0.4 ms when none are.  ``preempt_p=0.25`` makes every other
    preemptible point where tasks wait for the CPU such a preemption with
    that probability (a PREEMPT kernel; the stateful tests draw it)."""

    name = "script"

    def __init__(self, pauses=None, preempts=None, preempt_p=0, **points):
        super().__init__()
        if not 0 <= preempt_p <= 1:
            raise UsageError("script strategy: 0 <= preempt_p <= 1")
        self.resched_p = preempt_p
        script = {"p": dict(pauses or {}), "q": dict(preempts or {}), "r": {}}
        for key, ns in points.items():
            if not (key[:1] in script and key[1:].isdigit()):
                raise UsageError(f"script strategy: points are pN=ns, qN=ns or rN=ns, not {key!r}")
            script[key[:1]][int(key[1:])] = ns
        for table in script.values():
            if any(not isinstance(ns, int) or point < 1 or ns < 1 for point, ns in table.items()):
                raise UsageError("script strategy: points and pauses are integers >= 1")
        self.script = dict(sorted(script["p"].items()))
        self.preempts = dict(sorted({**script["q"], **script["r"]}.items()))
        self.rescheds = set(script["r"])  # preemptible points where the CPU's tasks preempt

    def pause_ns(self, kind, preemptible=False):
        self.points += 1
        self.resched = False
        ns = self.script.get(self.points)
        if preemptible:
            self.preemptible_points += 1
            if ns is None:
                ns = self.preempts.get(self.preemptible_points)
                if ns is not None:
                    self.resched = self.preemptible_points in self.rescheds
        if ns is not None:
            self.pauses += 1
        return ns

    def arm(self, preempt_after, ns, resched=False):
        """Pause at the *preempt_after*-th preemptible point from now
        (a stateful test arms its pauses as it goes); with *resched*, the
        path is preempted by the tasks queued on its CPU instead, if any
        (see Kernel.preempt_kernel_path)."""
        point = self.preemptible_points + preempt_after
        self.preempts[point] = ns
        if resched:
            self.rescheds.add(point)
        else:
            self.rescheds.discard(point)

    def spec(self):
        items = [f"p{point}={ns}" for point, ns in self.script.items()] + \
                [f"{'r' if point in self.rescheds else 'q'}{point}={ns}"
                 for point, ns in self.preempts.items()]
        if self.resched_p:
            items.append(f"preempt_p={self.resched_p}")
        return "script:" + ",".join(items) if items else "default"


_STRATEGIES = {"default": Strategy, "random": RandomStrategy, "pct": PCTStrategy,
               "preempt": PreemptStrategy, "script": ScriptStrategy}


def strategy_from_spec(spec):
    """A strategy from ``name`` or ``name:key=value,...`` (what ``spec()`` prints)."""
    if isinstance(spec, Strategy):
        return spec
    if not isinstance(spec, str) or not spec:
        raise UsageError(f"a strategy is one of {', '.join(_STRATEGIES)}, not {spec!r}")
    name, _, params = spec.partition(":")
    cls = _STRATEGIES.get(name)
    if cls is None:
        raise UsageError(f"unknown strategy {name!r}; known: {', '.join(_STRATEGIES)}")
    kwargs = {}
    for item in filter(None, params.split(",")):
        key, _, value = item.partition("=")
        try:
            kwargs[key] = float(value) if "." in value else int(value)
        except ValueError:
            raise UsageError(f"strategy parameter {item!r} is not key=number") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"strategy {name!r}: {exc}") from None
