"""Exploration campaigns: many runs of one variant for a time or a number of runs.

    python -m emulator explore --variant V [--strategy S] [--workload W]
                               [--cpus N]... [--time 60s | --runs N] [--seed S]

Strategies:

    hypothesis (the default)   Hypothesis draws the runs: the stateful rules of
                               emulator.stateful (``--workload stateful``), the
                               generated programs of emulator.generated
                               (``--workload generated``) or the mixes of
                               compare's stress loads of emulator.explore.stress
                               (``--workload stress``), with the schedule drawn
                               along; a failure is shrunk before it is reported.
    random, pct, preempt[:..]  a selftest mirror (``--workload``, default
                               mm_cid_compaction) runs once per seed under the
                               strategy (emulator.explore); nothing is shrunk.

A campaign counts runs, distinct schedules (by the order in which every CPU
switched tasks, ``Kernel.schedule_digest``), the variant's recorded findings,
and failures by invariant or detector, each with the replay key of its first
occurrence.  The hypothesis strategy's searches observe what they interleave
(emulator.explore.coverage): the summary says how many kernel function pairs
ran concurrently and how many variant states were seen, and how many the last
tenth of the budget added; the generated search is guided by it (each batch
steers towards what the campaign has not seen).  The same campaign seed gives
the same campaign.
"""

import re
import sys
import time

from hypothesis.reporting import with_reporter

from .. import interrupt
from ..errors import EmulationFailure, UsageError
from ..machine import Machine
from ..selftest import find_selftest
from ..variants import load_variant
from .findings import FindingsFile, failure_category, known_finding
from .coverage import Coverage
from .generated import CPUS, generated_search, run_case
from .mirror import selftest_replay
from .stateful import lifecycle_machine, stateful_search
from .stress import run_stress, stress_search
from .strategies import strategy_from_spec
from .systematic import Outcome, SystematicSearch, mirror_outcome, program_outcome, \
    stateful_outcome, systematic_settings

__all__ = ["Campaign", "parse_duration"]

HYPOTHESIS_WORKLOADS = ("stateful", "generated", "stress")
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
    findings_file = None        # a FindingsFile: record_findings()
    interrupted = None          # the Interrupted (SIGINT, SIGTERM) that stopped run()
    _unshrunk = None            # the last failure of this batch, until Hypothesis reports one

    def __init__(self, variant, strategy="hypothesis", workload=None, cpus=None, seed=0,
                 out=sys.stderr):
        self.variant = load_variant(variant)
        self.strategy = strategy
        self.systematic = None
        if strategy.partition(":")[0] == "systematic":
            self.systematic = systematic_settings(strategy)
        elif strategy != "hypothesis":
            strategy_from_spec(strategy)
        if workload == "stress" and self.systematic:
            raise UsageError("--workload stress: runs of a duration, which a systematic search "
                             "cannot enumerate (use hypothesis, random, pct or preempt)")
        if workload in HYPOTHESIS_WORKLOADS or (workload is None and strategy == "hypothesis"):
            workload = workload or "stateful"
            self.cpus = tuple(cpus or CPUS)
        elif strategy == "hypothesis":
            raise UsageError(f"--workload {workload!r}: with the hypothesis strategy one of "
                             f"{', '.join(HYPOTHESIS_WORKLOADS)}")
        else:
            workload = workload or ("generated" if self.systematic else "mm_cid_compaction")
            if workload != "generated":
                find_selftest(workload)
            self.cpus = tuple(cpus or ((1, 2, 3, 4) if self.systematic else (8,)))
        for n in self.cpus:
            if not 1 <= n <= 1024:
                raise UsageError(f"--cpus {n}: must be in 1..1024")
        self.workload = workload
        self.seed = seed
        self.out = out
        self.runs = 0
        self.schedules = set()
        self.known = {}             # reason -> runs that ended in it
        self.known_replay = {}      # reason -> the command replaying the first of them
        self.failures = {}          # category -> Failure
        self.started = None
        self.deadline = None
        self.searches = []          # the systematic searches run (their coverage)
        # What the hypothesis searches interleaved; it guides the generated
        # search (measured to reach more: emulator/explore/coverage.py).
        self.coverage = Coverage(guide=workload == "generated")

    # -- what each run reports -------------------------------------------------------------

    def _ran(self, machine, known=None):
        self.runs += 1
        self.schedules.add(machine.kernel.schedule_digest)
        if known:
            self.known[known] = self.known.get(known, 0) + 1
            if known not in self.known_replay:
                self.known_replay[known] = machine.replay_command()

    def _failed(self, exc, shrunk="", unshrunk=False):
        category = failure_category(exc)
        if category in self.failures:
            self.failures[category].count += 1
        else:
            self.failures[category] = Failure(exc, shrunk)
            self.failures[category].found_at = time.monotonic() - self.started
            self._write_finding(category, unshrunk)

    # -- the findings file -------------------------------------------------------------------

    def default_findings_path(self):
        name = re.sub(r"[^A-Za-z0-9._+-]", "_", self.variant.name)
        return f"emulator-findings-{name}-{self.seed}.jsonl"

    def record_findings(self, path=None):
        """Write each category's first failure to *path* (default
        default_findings_path()) as soon as it is found (and shrunk)."""
        self.findings_file = FindingsFile(path or self.default_findings_path(), self.out)
        return self.findings_file.path

    def _write_finding(self, category, unshrunk=False):
        f = self.failures[category]
        if self.findings_file is None:
            return
        record = {"category": category, "first_line": f.first_line, "key": f.key,
                  "replay": f"python -m emulator replay {f.key}" if f.key else None,
                  "variant": self.variant.source or self.variant.name,
                  "strategy": self.strategy, "workload": self.workload,
                  "campaign_seed": self.seed, "after_s": round(f.found_at, 1)}
        if unshrunk:
            record["note"] = "interrupted before Hypothesis had shrunk it: the example as found"
        if self.findings_file.add(record):
            tty = self.out.isatty()
            self.out.write(("\n" if tty else "") + f"finding, {category}: {f.first_line}\n"
                           + (f"  {record['replay']}\n" if f.key else ""))
            self.out.flush()

    # -- the searches ------------------------------------------------------------------------

    def _hypothesis_batch(self, batch_seed, examples):
        campaign = self
        if self.workload == "stateful":
            seeded = self.strategy if self.strategy != "hypothesis" and not self.systematic \
                else None
            base = lifecycle_machine(self.variant, cpus=self.cpus, coverage=self.coverage,
                                     strategy=seeded)

            class Counted(base):
                def teardown(self):
                    failure = sys.exc_info()[1]     # what the example raised, if anything
                    if isinstance(failure, EmulationFailure):
                        campaign._unshrunk = failure
                    try:
                        super().teardown()
                    except EmulationFailure as exc:
                        campaign._unshrunk = exc
                        raise
                    finally:
                        if self.m is not None:
                            campaign._ran(self.m, self.known)
                    if campaign.systematic and failure is None and self.known is None \
                            and self.boot_args is not None:
                        campaign._stateful_search(self.boot_args, self.steps)
            test = stateful_search(Counted, examples, batch_seed, print_blob=False)
        elif self.workload == "stress":
            test = stress_search(self._stress_run, examples, batch_seed, cpus=self.cpus,
                                 print_blob=False)
        else:
            test = generated_search(self._case_run, examples, batch_seed, cpus=self.cpus,
                                    print_blob=False)
        steps = []                  # Hypothesis's report of the shrunk example
        self._unshrunk = None
        try:
            with with_reporter(steps.append):
                test()
        except UsageError:
            raise
        except KeyboardInterrupt:       # a failure found and not yet shrunk is kept as found
            if self._unshrunk is not None:
                self._failed(self._unshrunk, "(interrupted before Hypothesis had shrunk it: "
                             "the example as found)", unshrunk=True)
            raise
        except Exception as exc:        # a finding, or a Python error in the model or the patch
            self._failed(exc, "\n".join(map(str, steps)))

    def _case_run(self, case):
        """One generated program: its drawn pauses (hypothesis), one run under
        the strategy, or a systematic search of its schedules (the first
        failure found raises, so Hypothesis shrinks the program)."""
        if self.strategy == "hypothesis":
            return self._counted(run_case, case)
        shape = case.shape.fields()
        del shape["nr_cpus"]

        def run_once(strategy):
            machines = []
            outcome = program_outcome(self.variant, case.nr_cpus, case.seed, case.program,
                                      strategy, on_machine=machines.append, machine=shape)
            self._ran(machines[-1], outcome.known)
            return outcome
        if self.systematic is None:
            outcome = run_once(strategy_from_spec(self.strategy))
        else:
            # No wall-clock deadline here: a search Hypothesis reruns while it
            # shrinks must do the same each time.
            search = self._search(run_once, max_runs=self.systematic["per_case"], deadline=None)
            outcome = Outcome(search.failures[0][0] if search.failures else None)
        if outcome.failure is not None:
            self._unshrunk = outcome.failure
            raise outcome.failure

    def _stress_run(self, case):
        """One stress case, under its drawn strategy (hypothesis) or the
        campaign's."""
        if self.strategy != "hypothesis":
            case.strategy = strategy_from_spec(self.strategy).spec()
        self._counted(run_stress, case)

    def _counted(self, run, case):
        """``run(variant, case, ...)`` (run_case(), run_stress()), its run
        counted; a failure is kept as found until Hypothesis has shrunk it."""
        machines = []
        try:
            known = run(self.variant, case, on_machine=machines.append, coverage=self.coverage)
        except EmulationFailure as exc:
            self._ran(machines[-1])
            self._unshrunk = exc
            raise
        self._ran(machines[-1], known)

    def _search(self, run_once, max_runs=None, deadline=0):
        search = SystematicSearch(run_once, bound=self.systematic["bound"], max_runs=max_runs,
                                  deadline=self.deadline if deadline == 0 else deadline,
                                  max_delay_ns=self.systematic["max_delay_ns"]).run()
        self.searches.append(search)
        return search

    def _stateful_search(self, boot, steps):
        """The schedules of one stateful example (its rule sequence, replayed),
        searched systematically; the first failure raises, so Hypothesis
        shrinks the rule sequence."""
        def run_once(strategy):
            machines = []
            outcome = stateful_outcome(self.variant, boot, steps, strategy,
                                       on_machine=machines.append)
            if machines:
                self._ran(machines[-1], outcome.known)
            return outcome
        search = self._search(run_once, max_runs=self.systematic["per_case"], deadline=None)
        if search.failures:
            self._unshrunk = search.failures[0][0]
            raise search.failures[0][0]

    def _systematic_mirror(self, step):
        """A systematic search of the mirror on one shape and seed, to its
        bound or to the campaign's end."""
        nr_cpus = self.cpus[step % len(self.cpus)]
        seed = self.seed * 1_000_003 + step // len(self.cpus)

        def run_once(strategy):
            machines = []
            outcome = mirror_outcome(self.variant, self.workload, nr_cpus, seed, strategy,
                                     on_machine=machines.append)
            self._ran(machines[-1], outcome.known)
            return outcome
        search = self._search(run_once)
        for exc, _ in search.failures:
            self._failed(exc)

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
        """Explore until *seconds* have passed or *runs* runs have been made.
        Ctrl-C or SIGTERM ends the run under way as an abandoned run (never a
        failure) and stops the campaign: `interrupted` is set, the summary
        covers what ran, and the Interrupted (a KeyboardInterrupt) propagates."""
        if seconds is None and runs is None:
            seconds = 60.0
        self.started = time.monotonic()
        self.deadline = None if seconds is None else self.started + seconds
        self._progress_at = 0.0
        step = 0
        try:
            while True:
                interrupt.checkpoint()      # a signal that came between two runs
                elapsed = time.monotonic() - self.started
                if (seconds is not None and elapsed >= seconds) or \
                        (runs is not None and self.runs >= runs):
                    break
                if self.workload in HYPOTHESIS_WORKLOADS:
                    left = BATCH if runs is None else max(1, min(BATCH, runs - self.runs))
                    self._hypothesis_batch(self.seed * 1_000_003 + step, left)
                elif self.systematic is not None:
                    self._systematic_mirror(step)
                else:
                    self._seeded_run(self.seed * 1_000_003 + step)
                step += 1
                if progress:
                    self._progress(seconds, runs)
        except KeyboardInterrupt as exc:
            self.interrupted = exc
            raise
        finally:
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

    def systematic_coverage(self):
        """What the systematic searches covered, summed over them."""
        searches = self.searches
        runs_at = [sum(s.runs_at[k] for s in searches) for k in range(self.systematic["bound"] + 1)]
        done = sum(1 for s in searches if s.exhausted)
        return (f"{len(searches)} searches ({done} exhausted their bound of "
                f"{self.systematic['bound']} preemptions), schedules run with 0..."
                f"{self.systematic['bound']} preemptions: {', '.join(f'{n:,}' for n in runs_at)}; "
                f"{sum(s.independent for s in searches):,} preemption points pruned as "
                f"independent, {sum(s.equivalent for s in searches):,} runs equivalent to one "
                f"already run")

    def summary(self):
        elapsed = time.monotonic() - self.started
        what = (f"{self.workload} workload" if self.workload in HYPOTHESIS_WORKLOADS
                else f"{self.workload} mirror")
        lines = [f"explore {self.variant.name}: strategy {self.strategy}, {what}, CPUs "
                 f"{','.join(map(str, self.cpus))}, campaign seed {self.seed}",
                 f"  runs: {self.runs} in {elapsed:.1f} s ({self.runs / max(elapsed, 1e-9):.1f}/s)",
                 f"  distinct schedules: {len(self.schedules)}"]
        if self.interrupted is not None:
            lines.append(f"  interrupted by {getattr(self.interrupted, 'signame', 'SIGINT')}: "
                         f"the runs and failures until then")
        if self.findings_file is not None:
            lines.append(f"  findings file: {self.findings_file.path}")
        if self.searches:
            lines.append("  systematic: " + self.systematic_coverage())
        if self.coverage.runs:
            lines.append("  " + self.coverage.summary(self.started))
        for reason, n in sorted(self.known.items()):
            lines.append(f"  recorded finding, {n} run(s): {reason[:100]}...")
            lines.append(f"    first: {self.known_replay[reason]}")
        if not self.failures:
            lines.append("  failures: none")
        for category, f in sorted(self.failures.items()):
            lines.append(f"  failures, {category}: {f.count}  first after {f.found_at:.1f} s: "
                         f"{f.first_line}")
            lines.append(f"    replay: python -m emulator replay {f.key}" if f.key else
                         "    replay: (no key: see the report)")
        return "\n".join(lines)

