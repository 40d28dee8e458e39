"""Systematic exploration: every schedule with at most N preemptions, each
race reversed, equivalent schedules run once.

A run is deterministic given its seed and its pauses, so a schedule is the
set of scheduling points where kernel paths pause (a ScriptStrategy: ``pN=ns``
pauses the N-th point for ns of virtual time, ``rN`` preempts the path at the
N-th preemptible point by the tasks queued on its CPU).  The search is
stateless and bounded as CHESS's iterative context bounding is (Musuvathi and
Qadeer, PLDI 2007): first the schedule with no preemption, then every schedule
with one, then two, up to the bound; a schedule with k + 1 preemptions extends
one with k at a point after its last preemption, so each set of preemptions is
run once.

Which preemptions are worth running comes from the run itself (dynamic
partial-order reduction, in the manner of Flanagan and Godefroid, POPL 2005):
every scheduling point records the object it is about to touch (a lock, a
word, a bitmap, a runqueue: the primitive's first argument) and whether it
writes it.  A preemption at point x of a path is kept only when, later in the
run, another context touches x's object and one of the two writes: a *race*
the preemption can reverse.  It pauses the path just long enough for that
access to go first (its virtual time minus x's, plus 1 ns), and, as another
schedule, until that context's last racing access within the window (so it
can go through several steps of its own meanwhile); or, when the other
access came from a task queued on the same CPU, preempts the path at x by
that CPU's queued tasks (where the point is preemptible).  A point with no
race after it is *pruned as independent*: pausing there only shifts the run
in time.  A run whose order of conflicting accesses (per object, the order of
writes and which writes each read follows) equals one already seen is the
same Mazurkiewicz trace: it is counted *equivalent* and not extended.

Within a bound the schedules whose preemption point is at the rarest call
site of their parent run go first (a mode change runs once where a context
switch runs a thousand times), and among equals in bit-reversed order of the
points they preempt, so that a budget that ends partway has sampled rare code
first and the whole run evenly.

The search reports what it covered: schedules run at each bound, choices
pruned as independent, runs found equivalent, and whether the bound was
exhausted or the budget ran out first.

Departures and limits, said plainly:
- objects are the primitives' first argument, so two fields of one struct
  are one object (more races than the kernel has, never fewer);
- interrupt handlers run to completion on the event loop: an access in
  interrupt context can be the other side of a race but cannot be paused;
- a race whose second access happens only because of the first path's own
  later work (a wake-up it sends) cannot be reversed by pausing; such a
  preemption is run anyway and usually lands in a known class;
- pauses are bounded by ``max_delay_ns`` (5 ms: a plausible preemption by
  a tick or an interrupt storm), so races further apart are not reversed;
- barriers carry no object and are never race candidates (the machine is
  sequentially consistent).
"""

import bisect
import sys
import time

from ..errors import EmulationFailure
from .findings import known_finding
from .keys import make_key, replay_command
from .strategies import ScriptStrategy

__all__ = ["RecordingScript", "SystematicSearch", "Outcome", "mirror_outcome", "program_outcome",
           "stateful_outcome", "systematic_settings"]

# Scheduling points that only read their object; every other one writes it
# (a lock acquire or release, a store, an atomic or bit operation).
READS = frozenset({"READ_ONCE", "atomic_read"})
# Points whose argument is not a shared object.
NO_OBJECT = frozenset({"smp_mb", "irq_enable"})

# A record of the run, one list per scheduling point that touches an object:
CTX, CPU, TIME, KEY, WRITE, POINT, QPOINT, PREEMPTIBLE, QUEUED, SITE = range(10)


class RecordingScript(ScriptStrategy):
    """A ScriptStrategy that also records, at every scheduling point, who
    touches which object when.  Its decisions are the script's alone, so
    its spec() (a plain ``script:...``) replays the same run."""

    def __init__(self, pauses=None, preempts=None, rescheds=()):
        super().__init__(pauses, preempts)
        self.rescheds = set(rescheds)
        self.log = []
        self._keys = {}
        self._objects = []          # keeps every object alive: ids stay unique
        self._last = None

    def observe(self, k, kind, obj):
        if obj is None or kind in NO_OBJECT:
            self._last = None
            return
        key = self._keys.get(id(obj))
        if key is None:
            key = self._keys[id(obj)] = len(self._objects)
            self._objects.append(obj)
        cpu = k.cpu
        ctx = -1 - cpu if k.in_irq else k.cur.pid
        # The call site: the kernel functions that called the primitive and
        # their caller (observe <- the hook <- the primitive <- site).
        caller = sys._getframe(3)
        site = (caller.f_code, caller.f_back.f_code if caller.f_back else None)
        entry = [ctx, cpu, k.engine.now, key, kind not in READS, 0, 0, False,
                 k.rqs[cpu].nr_running > 1, site]
        self.log.append(entry)
        self._last = entry

    def pause_ns(self, kind, preemptible=False):
        ns = super().pause_ns(kind, preemptible)
        entry = self._last
        if entry is not None:
            entry[POINT] = self.points
            if preemptible:
                entry[QPOINT] = self.preemptible_points
                entry[PREEMPTIBLE] = True
        return ns

    def signature(self):
        """The run's order of conflicting accesses: per object, its writers
        in order, and between two writes the set of readers (reads commute).
        Two runs with the same signature are the same Mazurkiewicz trace."""
        per_object = {}
        for entry in self.log:
            seq = per_object.get(entry[KEY])
            if seq is None:
                seq = per_object[entry[KEY]] = [frozenset()]
            if entry[WRITE]:
                seq.append(entry[CTX])
                seq.append(frozenset())
            else:
                seq[-1] = seq[-1] | {entry[CTX]}
        return hash(tuple(tuple(seq) for _, seq in sorted(per_object.items())))


class Schedule:
    """Pauses (point -> ns) and preemptions (preemptible point -> ns, with
    resched) of one schedule, and the point after which it may be extended."""

    __slots__ = ("pauses", "preempts", "rescheds", "frontier", "preemptions")

    def __init__(self, pauses=None, preempts=None, rescheds=(), frontier=0, preemptions=0):
        self.pauses = pauses or {}
        self.preempts = preempts or {}
        self.rescheds = frozenset(rescheds)
        self.frontier = frontier         # the scheduling point of the last preemption
        self.preemptions = preemptions

    def strategy(self):
        return RecordingScript(self.pauses, self.preempts, self.rescheds)

    def spec(self):
        s = ScriptStrategy(self.pauses, self.preempts)
        s.rescheds = set(self.rescheds)
        return s.spec()


def spread(schedules):
    """*schedules* in bit-reversed order of their index (frontrun's
    "bit-reversal" order): a budget that ends partway through a level has
    sampled the whole run evenly, not only its first points."""
    n = len(schedules)
    if n < 3:
        return schedules
    bits = (n - 1).bit_length()
    order = sorted(range(n), key=lambda i: int(format(i, f"0{bits}b")[::-1], 2))
    return [schedules[i] for i in order]


class Outcome:
    """What one run of a schedule gave: *failure* (an EmulationFailure or any
    exception of the model or the patch), or the *known* finding's reason."""

    __slots__ = ("failure", "known")

    def __init__(self, failure=None, known=None):
        self.failure = failure
        self.known = known


def run_outcome(variant, machine, run):
    """Call ``run()`` (a run of *machine*) and classify how it ended."""
    try:
        result = run()
    except EmulationFailure as exc:
        known = known_finding(variant, exc, machine.kernel.causes)
        return Outcome(known=known) if known else Outcome(failure=exc)
    if getattr(result, "outcome", None) == "fail":
        exc = EmulationFailure(f"the selftest failed: {result.detail}\n"
                               f"replay: {machine.replay_command()}")
        exc.kind = "selftest failed"
        return Outcome(failure=exc)
    return Outcome()


class SystematicSearch:
    """Bounded systematic exploration of one workload on one machine shape.

    *run_once(strategy)* runs the workload once on a new machine with
    *strategy* and returns an :class:`Outcome`.  The search runs schedules
    with 0, 1, ... *bound* preemptions until the bound is exhausted, a
    failure is found (with ``stop_at_failure``), *max_runs* schedules have
    run or *deadline* (a time.monotonic() value) has passed."""

    def __init__(self, run_once, bound=2, max_runs=None, deadline=None,
                 max_delay_ns=5_000_000, stop_at_failure=True, lookahead=4096):
        self.run_once = run_once
        self.bound = bound
        self.max_runs = max_runs
        self.deadline = deadline
        self.max_delay_ns = max_delay_ns
        self.stop_at_failure = stop_at_failure
        self.lookahead = lookahead
        self.runs = 0
        self.runs_at = [0] * (bound + 1)         # schedules run with k preemptions
        self.choices = 0                         # preemption points considered
        self.independent = 0                     # of those, pruned: no race after them
        self.equivalent = 0                      # runs whose trace class was seen already
        self.known = {}                          # reason -> runs
        self.failures = []                       # (exception, schedule spec)
        self.signatures = set()
        self.left = 0                            # schedules queued but not run
        self.exhausted = False

    # -- the search ------------------------------------------------------------------

    def run(self):
        level = [Schedule()]
        for k in range(self.bound + 1):
            following = []
            for i, schedule in enumerate(level):
                if self._out_of_budget():
                    self.left = len(level) - i + len(following)
                    return self
                strategy = schedule.strategy()
                outcome = self.run_once(strategy)
                self.runs += 1
                self.runs_at[k] += 1
                if outcome.failure is not None:
                    self.failures.append((outcome.failure, schedule.spec()))
                    if self.stop_at_failure:
                        self.left = len(level) - i - 1 + len(following)
                        return self
                    continue
                if outcome.known is not None:
                    self.known[outcome.known] = self.known.get(outcome.known, 0) + 1
                    continue
                sig = strategy.signature()
                if sig in self.signatures:
                    self.equivalent += 1
                    continue
                self.signatures.add(sig)
                if k < self.bound:
                    following.extend(self._extensions(schedule, strategy.log))
            # Rarest call sites first, evenly spread among equals.
            level = [s for _, s in sorted(spread(following), key=lambda r: r[0])]
            if not level:
                break
        self.exhausted = True
        return self

    def _out_of_budget(self):
        return (self.max_runs is not None and self.runs >= self.max_runs) or \
            (self.deadline is not None and time.monotonic() >= self.deadline)

    def _extensions(self, schedule, log):
        """The schedules with one more preemption than *schedule*, each at a
        point after its last one, that reverse a race of its run."""
        by_key = {}
        sites = {}
        for i, entry in enumerate(log):
            by_key.setdefault(entry[KEY], []).append(i)
            sites[entry[SITE]] = sites.get(entry[SITE], 0) + 1
        out = []
        seen = set()
        max_delay = self.max_delay_ns
        for i, x in enumerate(log):
            point = x[POINT]
            if point <= schedule.frontier or x[CTX] < 0:
                continue            # before the last preemption, or not a task's decision
            self.choices += 1
            a = x[CTX]
            indices = by_key[x[KEY]]
            start = bisect.bisect_right(indices, i)
            firsts = set()
            lasts = {}              # other context -> its last racing access in the window
            found = False
            for j in indices[start:start + self.lookahead]:
                y = log[j]
                b = y[CTX]
                if b == a or not (x[WRITE] or y[WRITE]):
                    continue
                delay = y[TIME] - x[TIME]
                if delay > max_delay:
                    break
                if b in firsts:
                    if b in lasts:
                        lasts[b] = delay
                    continue
                firsts.add(b)
                if b >= 0 and y[CPU] == x[CPU]:
                    # The other side ran on this CPU after this path: only a
                    # preemption by the CPU's queued tasks lets it go first.
                    if not (x[PREEMPTIBLE] and x[QUEUED]):
                        continue
                    choice = ("r", x[QPOINT])
                else:
                    choice = ("p", point, delay + 1)
                    lasts[b] = delay
                found = True
                self._add(out, seen, schedule, point, choice, sites[x[SITE]])
            # The other side's last racing access in the window too: the path
            # stays stopped while that context goes through several of its
            # own steps (schedules in, sleeps, wakes elsewhere, schedules in).
            for b, delay in lasts.items():
                self._add(out, seen, schedule, point, ("p", point, delay + 1), sites[x[SITE]])
            if not found:
                self.independent += 1
        return out

    def _add(self, out, seen, schedule, point, choice, rarity):
        if choice not in seen:
            seen.add(choice)
            out.append((rarity, self._extend(schedule, point, choice)))

    @staticmethod
    def _extend(schedule, point, choice):
        pauses, preempts, rescheds = dict(schedule.pauses), dict(schedule.preempts), \
            set(schedule.rescheds)
        if choice[0] == "p":
            pauses[point] = choice[2]
        else:
            preempts[choice[1]] = 1
            rescheds.add(choice[1])
        return Schedule(pauses, preempts, rescheds, point, schedule.preemptions + 1)

    # -- what it covered ---------------------------------------------------------------------

    def coverage(self):
        """One line: how much of the bounded space was covered."""
        pruned = f"{self.independent:,} preemption points pruned as independent, " \
                 f"{self.equivalent:,} runs equivalent to one already run"
        per_bound = ", ".join(f"{n:,} with {k}" for k, n in enumerate(self.runs_at) if n)
        if self.exhausted:
            return (f"all {self.runs:,} schedules with <= {self.bound} preemptions "
                    f"({per_bound}); {pruned}")
        return (f"{self.runs:,} schedules run ({per_bound}), {self.left:,} with <= {self.bound} "
                f"preemptions not reached; {pruned}")


# -- what a search explores: a mirror or a program on one machine shape -------------------------

def systematic_settings(spec):
    """``systematic[:bound=2,max_delay_ns=5000000,per_case=64]`` as keyword
    arguments (bound and max_delay_ns for SystematicSearch, per_case: the
    schedules searched per generated program); a bad spec is a UsageError."""
    from ..errors import UsageError
    name, _, params = spec.partition(":")
    if name != "systematic":
        raise UsageError(f"not a systematic spec: {spec!r}")
    settings = {"bound": 2, "max_delay_ns": 5_000_000, "per_case": 64}
    for item in filter(None, params.split(",")):
        key, _, value = item.partition("=")
        if key not in settings or not value.isdigit():
            raise UsageError(f"systematic strategy: {item!r} is not one of "
                             f"{', '.join(f'{k}=N' for k in settings)}")
        settings[key] = int(value)
    if settings["bound"] > 8 or settings["per_case"] < 1:
        raise UsageError("systematic strategy: bound <= 8 and per_case >= 1")
    return settings


def program_key(variant, nr_cpus, seed, program, strategy, machine_kwargs):
    """The replay key of *program* run on *variant* under *strategy* (a
    systematic schedule is a ``script:`` spec)."""
    from ..workload import program_to_data
    return make_key("program", variant, cpus=nr_cpus, seed=seed,
                    program=program_to_data(program), strategy=strategy.spec(),
                    machine=machine_kwargs)


def program_outcome(variant, nr_cpus, seed, program, strategy, on_machine=None, machine=None,
                    **machine_kwargs):
    """Run *program* once on a new machine with *strategy*; its Outcome.
    *machine* holds the rest of its shape, which its replay key carries
    (nr_possible, affinity: emulator.explore.generated.Shape);
    *machine_kwargs* other machine options (tracing)."""
    from .generated import Shape
    machine = dict(machine or {})
    key = program_key(variant, nr_cpus, seed, program, strategy, machine)
    m = Shape(nr_cpus, **machine).machine(
        variants=[variant], seed=seed, strategy=strategy,
        replay=replay_command(key) or
        f"program {program!r} on {nr_cpus} CPUs, seed {seed}, {strategy.spec()}",
        **machine_kwargs)
    if on_machine is not None:
        on_machine(m)
    return run_outcome(variant, m, lambda: m.run(program))


def mirror_outcome(variant, selftest, nr_cpus, seed, strategy, on_machine=None):
    """Run a selftest mirror once with *strategy*; its Outcome."""
    from ..machine import Machine
    from ..selftest import find_selftest
    from .mirror import selftest_replay
    module = find_selftest(selftest)
    m = Machine(nr_cpus=nr_cpus, variants=[variant], seed=seed, strategy=strategy,
                replay=selftest_replay(selftest, variant, nr_cpus, seed, strategy.spec()))
    if on_machine is not None:
        on_machine(m)
    return run_outcome(variant, m, lambda: module.run(m))


def stateful_outcome(variant, boot, steps, strategy, on_machine=None):
    """Replay a stateful example (its boot and rule steps) with *strategy*
    as its machine's strategy; its Outcome.  The example's own ``preempt``
    rules still arm their pauses on it."""
    from .stateful import replay_steps
    try:
        known = replay_steps(variant, boot, steps, on_machine=on_machine, strategy=strategy)
    except EmulationFailure as exc:
        return Outcome(failure=exc)
    return Outcome(known=known)
