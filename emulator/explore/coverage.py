"""What a search has interleaved, so that it can steer towards what it has not.

A :class:`Coverage` accumulates, over the runs a search makes, two sets:

- *pairs*: two kernel functions of the variant seen running concurrently on
  different CPUs: one was entered on a CPU while the other was in progress on
  another (suspended at a scheduling point, blocked on a mutex, spinning).
  ``mm_cid_fixup_tasks_to_cpus x mm_cid_schedin`` is such a pair.
- *states*: a kernel function together with the state of the mm it was
  entered for, as the variant describes it (``coverage_state(mm)``: v7.0's
  mode, transition bit, whether the cid bitmap has room below max_cids; for
  eras without one, how full the bitmap is against the era's bound).

``Coverage.watch(machine)`` wraps the kernel functions of the machine's mm_cid
variant, and of its lazy_tlb variant if the run selected one (those the
function tracer traces: its methods but ``NOT_KERNEL_FUNCTIONS``) for one
run; it costs a wrapper per call, so only a search that asks for it pays.
``Coverage.reached(run)`` adds the run and, inside a Hypothesis test and
unless the coverage only observes (``guide=False``), reports with
``hypothesis.target()`` how many pairs and
states the run added (label ``new pairs and states``).  Hypothesis keeps the
best-scoring example and, after half of a search, mutates it looking for a
better score; the score is relative to what earlier runs reached, so a
search in short batches (generated.batches()) re-aims at every batch.

What it buys, measured when it was written (v7.0, the same number of examples
with and without guidance, distinct pairs summed over the seeds):

    generated, 100 examples in batches of 20, 6 seeds:   335 guided, 218 not
    generated, 150 examples in batches of 20, 6 seeds:   444 guided, 380 not
        (one search of 150, unguided, as the suite ran before: 45)
    generated, 600 examples in batches of 20, 6 seeds:  1054 guided, 935 not
        (variant states 1332 guided, 1396 not)
    stateful, 300 examples in batches of 20, 6 seeds:    815 guided, 953 not

So the generated search (the suite's and campaigns') is guided; the stateful
search is not (it observes, for the campaign summary): its examples reach
pairs readily through the preempt rules, and the targeting phase's mutations
of one example cost more than they find.  A targeted metric can also lead a
search away from a bug that needs a quiet run (explore-anchors.md 2.9):
targeting takes a share of each batch, it does not replace generation.

``COVERAGE`` is the process-wide accumulator: every Coverage adds its runs
to it.  A search is guided by its own Coverage (the test suite's searches
each keep one), so that a search run alone draws what it draws in the full
suite.
"""

import time

from ..checks.kasan import is_freed
from ..kernel.fork import mm_struct
from ..kernel.task import Task

__all__ = ["COVERAGE", "Coverage", "RunCoverage", "kernel_functions", "mm_state"]

NEW = "new pairs and states"


def kernel_functions(variant):
    """The names of *variant*'s (a class's or an instance's) kernel
    functions: what the function tracer traces."""
    variant = variant if isinstance(variant, type) else type(variant)
    names = {name for cls in variant.__mro__ if cls is not object
             for name, value in vars(cls).items()
             if callable(value) and not isinstance(value, (staticmethod, classmethod, type))
             and not name.startswith("__")}
    return sorted(names - set(getattr(variant, "NOT_KERNEL_FUNCTIONS", ())))


def mm_state(variant, mm):
    """The variant's coverage_state(mm), or, for a variant without one, how
    full the mm's cid bitmap is against the era's bound; None for no mm, a
    freed one, or one without cid state."""
    if mm is None or is_freed(mm):
        return None
    try:
        own = getattr(variant, "coverage_state", None)
        if own is not None:
            return own(mm)
        return ("cidmask", fill(variant.cidmask_bits(mm), variant.cid_bound(mm)))
    except AttributeError:              # an mm whose cid state is not set up (yet)
        return None


def fill(bits, bound, wide=None):
    """How full a bitmap is: "empty"; "room" (a zero bit below *bound*);
    "full" (none below *bound*, but one below *wide*, the bitmap's size, if
    given); "exhausted" (none below *wide*)."""
    if not bits:
        return "empty"
    if bits & ((1 << bound) - 1) != (1 << bound) - 1:
        return "room"
    if wide is None:
        return "full"
    return "full" if bits & ((1 << wide) - 1) != (1 << wide) - 1 else "exhausted"


class RunCoverage:
    """The pairs and states one run reached (Coverage.watch())."""

    def __init__(self, machine):
        self.machine = machine
        self.pairs = set()
        self.states = set()
        self.active = {}            # task -> the names of its kernel functions in progress

    def __len__(self):
        return len(self.pairs) + len(self.states)

    def install(self):
        k = self.machine.kernel
        variants = [k.mm_cid]
        # A run about a lazy_tlb variant watches its functions too (their
        # states are its coverage_state(mm)).
        if any(c.subsystem == "lazy_tlb" for c in getattr(self.machine, "selected", ())):
            variants.append(k.lazy_tlb)
        for variant in variants:
            for name in kernel_functions(variant):
                setattr(variant, name, self._observed(name, getattr(variant, name), variant))
        return self

    def _observed(self, name, fn, variant):
        k = self.machine.kernel
        active = self.active
        pairs = self.pairs
        states = self.states

        def observed(*args, **kwargs):
            t = k.cur
            cpu = k.cpu
            for u, names in active.items():
                if u is not t and u.cpu != cpu:
                    for other in names:
                        pairs.add((name, other) if name <= other else (other, name))
            mm = None
            for a in args:
                cls = type(a)
                if cls is mm_struct:
                    mm = a
                    break
                if cls is Task:
                    mm = a.mm
                    break
            else:
                mm = t.mm
            state = mm_state(variant, mm)
            if state is not None:
                states.add((name, state))
            names = active.get(t)
            if names is None:
                names = active[t] = []
            names.append(name)
            try:
                return fn(*args, **kwargs)
            finally:
                names.pop()
                if not names and active.get(t) is names:
                    del active[t]
        observed.__wrapped__ = fn
        return observed


class Coverage:
    """Pairs and states accumulated over the runs of a search (or of the
    process: ``COVERAGE``, to which every other one adds its runs too).  With
    *guide* False it only observes: reached() calls no target() (a search
    without guidance, measured)."""

    def __init__(self, guide=True, parent=None):
        self.guide = guide
        self.parent = parent if parent is not None else globals().get("COVERAGE")
        self.pairs = set()
        self.states = set()
        self.runs = 0
        self.targets = 0            # hypothesis.target() calls made
        self.timeline = []          # (monotonic time, runs, pairs + states) after each run

    def __len__(self):
        return len(self.pairs) + len(self.states)

    def watch(self, machine):
        """Observe *machine*'s run (build it, call this, then run it)."""
        return RunCoverage(machine).install()

    def add(self, run):
        """Add *run*'s pairs and states; returns how many were new."""
        before = len(self)
        if self.parent is not None:
            self.parent.add(run)
        self.pairs |= run.pairs
        self.states |= run.states
        self.runs += 1
        self.timeline.append((time.monotonic(), self.runs, len(self)))
        return len(self) - before

    def reached(self, run):
        """Add *run* and, inside a Hypothesis test, tell Hypothesis what it
        reached (``target()``); returns how many pairs and states were new."""
        new = self.add(run)
        if self.guide and _in_hypothesis_test():
            from hypothesis import target
            target(new, label=NEW)
            self.targets += 1
        return new

    def new_since(self, when):
        """How many pairs and states runs ended after *when* (monotonic) added."""
        before = 0
        for t, _, total in self.timeline:
            if t > when:
                break
            before = total
        return len(self) - before

    def summary(self, started, ended=None):
        """One line: the totals and what the last tenth of [started, ended]
        (a campaign's budget, monotonic time) added."""
        ended = time.monotonic() if ended is None else ended
        late = self.new_since(started + 0.9 * (ended - started))
        return (f"kernel function pairs seen concurrently: {len(self.pairs)}, variant states: "
                f"{len(self.states)}, new in the last 10% of the budget: {late}")


def _in_hypothesis_test():
    from hypothesis.control import _current_build_context
    return _current_build_context.value is not None


COVERAGE = Coverage(guide=False)
