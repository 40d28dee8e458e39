"""Exploration campaigns: many runs of one variant for a time or a number of runs.

    python -m emulator explore --variant V [--strategy S] [--workload W]
                               [--cpus N]... [--time 60s | --runs N] [--seed S]

Strategies:

    hypothesis (the default)   Hypothesis draws the runs: the stateful rules of
                               emulator.stateful (``--workload stateful``) or the
                               generated programs of emulator.generated
                               (``--workload generated``), with the schedule drawn
                               along; a failure is shrunk before it is reported.
    random, pct, preempt[:..]  a selftest mirror (``--workload``, default
                               mm_cid_compaction) runs once per seed under the
                               strategy (emulator.explore); nothing is shrunk.

A campaign counts runs, distinct schedules (by the order in which every CPU
switched tasks, ``Kernel.schedule_digest``), the variant's recorded findings,
and failures by invariant or detector, each with the replay key of its first
occurrence.  The same campaign seed gives the same campaign.
"""

import re
import sys
import time

from hypothesis.reporting import with_reporter

from ..errors import EmulationFailure, UsageError
from ..machine import Machine
from ..selftest import find_selftest
from ..variants import load_variant
from .findings import failure_category, known_finding
from .generated import generated_search, run_case
from .mirror import selftest_replay
from .stateful import lifecycle_machine, stateful_search
from .strategies import strategy_from_spec

__all__ = ["Campaign", "parse_duration"]

HYPOTHESIS_WORKLOADS = ("stateful", "generated")
BATCH = 20          # Hypothesis examples per batch: the budget is checked between batches
_KEY = re.compile(r"python -m emulator replay (emu1-[A-Za-z0-9_-]+)")


def parse_duration(text):
    """Seconds in ``90``, ``90s``, ``5m`` or ``1h``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--time {text!r}: a duration such as 60s, 5m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class Failure:
    """The failures of one category: how many, and the first one's report."""

    def __init__(self, exc, shrunk=""):
        self.count = 1
        first = str(exc).strip().splitlines()
        self.first_line = first[0] if first else type(exc).__name__
        m = _KEY.search(str(exc))
        self.key = m.group(1) if m else None
        self.text = (shrunk + "\n" if shrunk else "") + str(exc)


class Campaign:
    def __init__(self, variant, strategy="hypothesis", workload=None, cpus=None, seed=0,
                 out=sys.stderr):
        self.variant = load_variant(variant)
        self.strategy = strategy
        if strategy == "hypothesis":
            workload = workload or "stateful"
            if workload not in HYPOTHESIS_WORKLOADS:
                raise UsageError(f"--workload {workload!r}: with the hypothesis strategy one of "
                                 f"{', '.join(HYPOTHESIS_WORKLOADS)}")
            self.cpus = tuple(cpus or (2, 3, 4, 8))
        else:
            strategy_from_spec(strategy)
            workload = workload or "mm_cid_compaction"
            find_selftest(workload)
            self.cpus = tuple(cpus or (8,))
        for n in self.cpus:
            if not 1 <= n <= 1024:
                raise UsageError(f"--cpus {n}: must be in 1..1024")
        self.workload = workload
        self.seed = seed
        self.out = out
        self.runs = 0
        self.schedules = set()
        self.known = {}             # reason -> runs that ended in it
        self.failures = {}          # category -> Failure
        self.started = None

    # -- what each run reports -------------------------------------------------------------

    def _ran(self, machine, known=None):
        self.runs += 1
        self.schedules.add(machine.kernel.schedule_digest)
        if known:
            self.known[known] = self.known.get(known, 0) + 1

    def _failed(self, exc, shrunk=""):
        category = failure_category(exc)
        if category in self.failures:
            self.failures[category].count += 1
        else:
            self.failures[category] = Failure(exc, shrunk)

    # -- the searches ------------------------------------------------------------------------

    def _hypothesis_batch(self, batch_seed, examples):
        campaign = self
        if self.workload == "stateful":
            base = lifecycle_machine(self.variant, cpus=self.cpus)

            class Counted(base):
                def teardown(self):
                    try:
                        super().teardown()
                    finally:
                        if self.m is not None:
                            campaign._ran(self.m, self.known)
            test = stateful_search(Counted, examples, batch_seed, print_blob=False)
        else:

            def case_run(case):
                machines = []
                try:
                    known = run_case(self.variant, case, on_machine=machines.append)
                except EmulationFailure:
                    campaign._ran(machines[-1])
                    raise
                campaign._ran(machines[-1], known)
            test = generated_search(case_run, examples, batch_seed, cpus=self.cpus,
                                    print_blob=False)
        steps = []                  # Hypothesis's report of the shrunk example
        try:
            with with_reporter(steps.append):
                test()
        except UsageError:
            raise
        except Exception as exc:        # a finding, or a Python error in the model or the patch
            self._failed(exc, "\n".join(map(str, steps)))

    def _seeded_run(self, run_seed):
        module = find_selftest(self.workload)
        nr_cpus = self.cpus[run_seed % len(self.cpus)]
        m = Machine(nr_cpus=nr_cpus, variants=[self.variant], seed=run_seed,
                    strategy=strategy_from_spec(self.strategy),
                    replay=selftest_replay(self.workload, self.variant, nr_cpus, run_seed,
                                           self.strategy))
        try:
            result = module.run(m)
        except EmulationFailure as exc:
            known = known_finding(self.variant, exc, m.kernel.causes)
            self._ran(m, known)
            if known is None:
                self._failed(exc)
            return
        self._ran(m)
        if result.outcome == "fail":
            exc = EmulationFailure(f"the selftest failed: {result.detail}\n"
                                   f"replay: {m.replay_command()}")
            exc.kind = "selftest failed"
            self._failed(exc)

    # -- the campaign ------------------------------------------------------------------------

    def run(self, seconds=None, runs=None, progress=True):
        """Explore until *seconds* have passed or *runs* runs have been made."""
        if seconds is None and runs is None:
            seconds = 60.0
        self.started = time.monotonic()
        self._progress_at = 0.0
        step = 0
        while True:
            elapsed = time.monotonic() - self.started
            if (seconds is not None and elapsed >= seconds) or \
                    (runs is not None and self.runs >= runs):
                break
            if self.strategy == "hypothesis":
                left = BATCH if runs is None else max(1, min(BATCH, runs - self.runs))
                self._hypothesis_batch(self.seed * 1_000_003 + step, left)
            else:
                self._seeded_run(self.seed * 1_000_003 + step)
            step += 1
            if progress:
                self._progress(seconds, runs)
        if progress:
            self._progress(seconds, runs, final=True)
        return self

    def _progress(self, seconds, runs, final=False):
        """One line on stderr, redrawn at most ten times a second on a
        terminal; elsewhere one line each tenth of the budget."""
        now = time.monotonic() - self.started
        done = now / seconds if seconds else self.runs / runs
        tty = self.out.isatty()
        if not final and (now - self._progress_at < (0.1 if tty else 0.0)):
            return
        if not final and not tty and int(done * 10) == int(self._last_done * 10):
            return
        if final and not tty and self._printed_runs == self.runs:
            return
        self._printed_runs = self.runs
        self._progress_at, self._last_done = now, done
        width = 24
        fill = min(width, int(done * width))
        bad = sum(f.count for f in self.failures.values())
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {now:6.1f}s  runs {self.runs}  "
                f"schedules {len(self.schedules)}  known {sum(self.known.values())}  "
                f"failures {bad}")
        if tty:
            self.out.write("\r" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()

    _last_done = -1.0
    _printed_runs = -1

    def reports(self):
        """The whole report of each category's first failure."""
        return "\n\n".join(f"== {category} ==\n{f.text}" for category, f in
                             sorted(self.failures.items()))

    def summary(self):
        elapsed = time.monotonic() - self.started
        what = (f"{self.workload} workload" if self.strategy == "hypothesis"
                else f"{self.workload} mirror")
        lines = [f"explore {self.variant.name}: strategy {self.strategy}, {what}, CPUs "
                 f"{','.join(map(str, self.cpus))}, campaign seed {self.seed}",
                 f"  runs: {self.runs} in {elapsed:.1f} s ({self.runs / max(elapsed, 1e-9):.1f}/s)",
                 f"  distinct schedules: {len(self.schedules)}"]
        for reason, n in sorted(self.known.items()):
            lines.append(f"  recorded finding, {n} run(s): {reason[:100]}...")
        if not self.failures:
            lines.append("  failures: none")
        for category, f in sorted(self.failures.items()):
            lines.append(f"  failures, {category}: {f.count}  first: {f.first_line}")
            lines.append(f"    replay: python -m emulator replay {f.key}" if f.key else
                         "    replay: (no key: see the report)")
        return "\n".join(lines)

