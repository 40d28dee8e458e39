"""The report of ``python -m emulator compare``: the runs' figures side by
side, every variant against the first (the head).

- seed 000's table, for mm_cid variants: one block per workload and CPU
  count with ``running processes(threads)``, ``duration(avg,max,sum)`` and
  ``invocations`` of the variant's scan, as its author laid it out
  (numbers in us, ``ms`` and ``k`` where they grow), each defined as
  emulator/observe/metrics.py says (his bpftrace script's definitions,
  with the differences it names);
- the counters, as mmtests' compare-kernels prints them (gormanm/mmtests
  bin/lib/MMTests/Stat.pm and Compare.pm): ``Amean`` (the arithmetic mean
  over the seeds; ``Hmean``, the harmonic mean, for a row where higher is
  better) and, with more than one seed, ``Stddev`` rows, each variant's
  value followed by its change from the head in percent with mmtests' sign:
  ``+`` is better.  Where lower is better (costs: locks, atomics, IPIs,
  latency, noise, durations) the change is mmtests' ``pndiff``,
  ``100 - new * 100 / head``; where higher is better (throughput, ``/s``)
  its ``pdiff``, ``new * 100 / head - 100``.  Rows that count activity
  rather than quality (context switches, mms allocated and freed, sample
  counts) have no better side: they take ``pdiff``, ``+`` meaning more.
  The parentheses become asterisks, ``*  -7.65%*``, where the difference
  is larger than the noise across the seeds: mmtests' ``cidiff``,
  ``(new - head) / (ci_new + ci_head)`` with each ``ci`` the half-width of
  the mean's 95 % confidence interval (Student's t over the seeds,
  ``qt(0.975, n - 1) * stddev / sqrt(n)``), significant when its magnitude
  exceeds 1.  With no spread on either side (the seeds agree: a
  deterministic counter) any difference is beyond the noise and is starred;
  mmtests there divides by nothing and stars a difference of more than one
  unit, which depends on the unit (a per-switch ratio would never be
  starred), so this departs from it.  With one seed there is no spread to
  judge: no asterisks.  Stddev rows never carry them.
  Departure: mmtests' ``pdiff`` returns 0 when the new value is 0 and its
  ``pndiff`` returns -99 when the head is 0; here a head of 0 gives ``n/a``
  (0 if both are 0) and a new value of 0 its real change;
- the latency and noise histograms in ``rtla timerlat hist`` and
  ``rtla osnoise hist`` layout, the seeds' samples added up;
- the runs that failed, with their first line and replay command.

Every block names the virtual duration of its runs and their seeds; no
figure is extrapolated.  Formats: text, markdown, csv, json.
"""

import csv
import io
import json
import math

from .histogram import Histogram

# Which way is better, per counter: mmtests names the mean row Hmean where
# higher is better and Amean where lower is, and signs the change so that +
# is better.  Every counter not named here is a cost (lower is better).
HIGHER_IS_BETTER = ("hackbench messages/s",)
ACTIVITY = ("context_switches", "mm_allocated", "mm_freed")
LOWER, HIGHER, NEITHER = "lower", "higher", "neither"
# Student's t, two-sided 95 % (qt(0.975, df)), df 1..30, then 40, 60, 120 and
# the normal limit; a df between two rows takes the lower row's (wider) value.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
        17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
        25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
        120: 1.980}


def direction(key):
    """LOWER, HIGHER or NEITHER: which way *key* is better."""
    if key in HIGHER_IS_BETTER or key.endswith("/s"):
        return HIGHER
    if key in ACTIVITY or key.endswith(" n") or key in ("processes", "threads",
                                                          "scan_invocations"):
        return NEITHER
    return LOWER


def t975(df):
    if df > 120:
        return 1.960
    return T975[max(d for d in T975 if d <= df)]


def ci95(sd, n):
    """Half-width of the 95 % confidence interval of a mean of *n* samples."""
    return t975(n - 1) * sd / math.sqrt(n)


SEED_000_ROWS = ("running processes(threads):", "duration(avg,max,sum):", "invocations:")
# Rows of seed 000's table; the counters' rows leave them out.
SEED_000_KEYS = ("processes", "threads", "scan_invocations", "scan_avg_us", "scan_max_us",
                 "scan_sum_us")
# The counters first shown, in this order; the others follow sorted.
PREFERRED = (
    "context_switches", "locks_per_switch", "atomics_per_switch", "mm_cid_locks_per_switch",
    "mm_cid_atomics_per_switch", "lock_acquisitions", "atomic_ops", "ipis", "mm_allocated",
    "mm_freed", "isolated interruptions", "isolated noise max us",
)
DEFINITIONS = (
    "running processes(threads): distinct tgids (pids) woken by try_to_wake_up() while they had "
    "an mm, as seed 000's bpftrace script counted them (from the sched_wakeup tracepoint: a wake-up "
    "of a task already running is not seen)",
    "duration(avg,max,sum): the scan's (task_mm_cid_work's) time from entry to exit less the time "
    "its task was switched out (the script subtracted one preemption, this every one; interrupt "
    "time is in neither), in us; invocations: how often it ran",
    "Amean: mean over the seeds (Hmean, harmonic, where higher is better); Stddev: their sample "
    "standard deviation; (%): the change from the head with mmtests' compare-kernels sign, + is "
    "better (100 - new*100/head where lower is better, new*100/head - 100 where higher is); "
    f"rows that count activity ({', '.join(ACTIVITY)}, '... n') have no better side: + is more",
    "*%*: the difference exceeds the noise across the seeds (mmtests' cidiff: |new - head| > the "
    "sum of the two means' 95% confidence half-widths, Student's t; with no spread on either side, "
    "any difference); never with one seed",
)


def _mean_sd(xs, harmonic=False):
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    if harmonic:
        # mmtests' calc_hmean(); a sample of 0 (or less) makes it 0, its limit.
        mean = 0.0 if any(x <= 0 for x in xs) else n / sum(1 / x for x in xs)
    return mean, sd


def _human_us(x):
    """A duration in us as seed 000's table writes it: 75, 2ms, 740ms, 1.2s."""
    if x < 1000:
        return f"{x:.0f}"
    if x < 1_000_000:
        return f"{x / 1000:.0f}ms" if x >= 10_000 else f"{x / 1000:.1f}ms"
    return f"{x / 1e6:.1f}s"


def _human_count(x):
    """A count as seed 000's table writes it: 13, 1290, 36k."""
    if x < 10_000:
        return f"{x:.0f}"
    return f"{x / 1000:.0f}k"


def _pct(new, base, way=NEITHER):
    """The change from *base* to *new* in percent, + better: mmtests'
    pndiff where lower is better, its pdiff otherwise."""
    if base == 0:
        return 0.0 if new == 0 else None
    pct = 100 - new * 100 / base if way == LOWER else new * 100 / base - 100
    return 0.0 if abs(pct) < 0.005 else pct


class Comparison:
    """The results of a comparison (a list of run_job() dicts, in job order)."""

    def __init__(self, results, jobs=None, wall_s=0.0, nohz_full=None, isolcpus=None):
        self.results = results
        self.wall_s = wall_s
        self.nohz_full = nohz_full
        self.isolcpus = isolcpus
        self.variants = list(dict.fromkeys(r["variant"] for r in results))
        self.head = self.variants[0]
        self.subsystem = results[0]["subsystem"]
        self.blocks = list(dict.fromkeys((r["workload"], r["cpus"]) for r in results))
        self.seeds = sorted({r["seed"] for r in results})
        self.duration_ns = results[0]["duration_ns"]

    # -- figures ------------------------------------------------------------------------------

    def runs(self, block, variant, ok=True):
        return [r for r in self.results if (r["workload"], r["cpus"]) == block
                and r["variant"] == variant and (r["failure"] is None or not ok)]

    def failures(self):
        return [r for r in self.results if r["failure"] is not None]

    def stat(self, block, variant, key):
        """(mean, stddev, runs) of *key* over the block's good runs, or None."""
        xs = [r["values"][key] for r in self.runs(block, variant)
              if isinstance(r["values"].get(key), (int, float))]
        if not xs:
            return None
        return _mean_sd(xs, harmonic=direction(key) == HIGHER) + (len(xs),)

    def change(self, block, variant, key):
        """*variant*'s change from the head in percent, + better (see direction())."""
        new, base = self.stat(block, variant, key), self.stat(block, self.head, key)
        if new is None or base is None:
            return None
        return _pct(new[0], base[0], direction(key))

    def significant(self, block, variant, key):
        """Whether *variant*'s difference from the head exceeds the noise
        across the seeds (mmtests' cidiff); None with fewer than two good
        runs on either side."""
        new, base = self.stat(block, variant, key), self.stat(block, self.head, key)
        if variant == self.head or new is None or base is None or new[2] < 2 or base[2] < 2:
            return None
        diff = new[0] - base[0]
        cisum = ci95(new[1], new[2]) + ci95(base[1], base[2])
        if cisum == 0:
            # Both sides without spread: any difference is beyond the noise
            # (mmtests would compare the bare difference with 1).
            return abs(diff) > 1e-9 * max(abs(new[0]), abs(base[0]), 1)
        return abs(diff / cisum) > 1

    def counter_keys(self, block):
        keys = set()
        for r in self.results:
            if (r["workload"], r["cpus"]) == block and r["failure"] is None:
                keys.update(k for k, v in r["values"].items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool))
        if self.subsystem == "mm_cid":
            keys -= set(SEED_000_KEYS)            # seed 000's table has them
        shown = [k for k in PREFERRED if k in keys] + sorted(keys - set(PREFERRED))
        # Rows that are 0 for every variant say nothing.
        return [k for k in shown if any((self.stat(block, v, k) or (0,))[0] for v in self.variants)]

    def histogram(self, block, variant, kind):
        """The seeds' *kind* ("latency" or "noise") histograms added up, or None."""
        hist = None
        for r in self.runs(block, variant):
            if kind in r:
                h = Histogram.from_data(r[kind])
                hist = h if hist is None else hist.merge(h)
        return hist

    def scan_name(self, block):
        for r in self.results:
            if (r["workload"], r["cpus"]) == block and r["failure"] is None:
                if "scan_func" in r["values"]:
                    return r["values"]["scan_func"]
        return None

    # -- words --------------------------------------------------------------------------------

    def seeds_text(self):
        s = self.seeds
        if len(s) == 1:
            return f"seed {s[0]}"
        if s == list(range(s[0], s[-1] + 1)):
            return f"seeds {s[0]}-{s[-1]}"
        return "seeds " + ", ".join(map(str, s))

    def block_title(self, block):
        workload, cpus = block
        if self.nohz_full and self.isolcpus and self.isolcpus != self.nohz_full:
            iso = f", nohz_full CPUs {self.nohz_full}, isolcpus {self.isolcpus}"
        elif self.nohz_full:
            iso = f", isolated CPUs {self.nohz_full} (nohz_full, isolcpus)"
        elif self.isolcpus:
            iso = f", isolated CPUs {self.isolcpus} (isolcpus only: their tick runs)"
        else:
            iso = ""
        return (f"{workload} on {cpus} CPUs{iso}: {self.duration_ns / 1e9:.3f} s of virtual "
                f"time per run, {self.seeds_text()}")

    def header(self):
        from ..variants import DEFAULTS
        others = ", ".join(f"{sub} {name}" for sub, name in DEFAULTS.items()
                           if sub != self.subsystem)
        return (f"{self.subsystem} variants {', '.join(self.variants)} (the first is the head); "
                f"other subsystems at their defaults ({others}); "
                f"{self.duration_ns / 1e9:.3f} s of virtual time per run, {self.seeds_text()}")

    def seed_000_cells(self, block, variant):
        """Seed 000's three cells for *variant*: processes(threads), duration, invocations."""
        def mean(key):
            s = self.stat(block, variant, key)
            return None if s is None else s[0]
        procs, threads = mean("processes"), mean("threads")
        if procs is None:
            # Every run failed: "finding" where the failure is one the
            # variant records as a finding of its own (the failures list
            # below says which, with the replay command), else "failed".
            runs = self.runs(block, variant, ok=False)
            word = "finding" if runs and all(r["failure"] and r["failure"].get("known")
                                             for r in runs) else "failed"
            return (word,) * 3
        inv = mean("scan_invocations") or 0
        avg, hi, total = mean("scan_avg_us"), mean("scan_max_us"), mean("scan_sum_us")
        duration = "-" if avg is None else f"{_human_us(avg)},{_human_us(hi)},{_human_us(total)}"
        return (f"{_human_count(procs)}({_human_count(threads)})", duration, _human_count(inv))

    def counter_rows(self, block):
        """(statistic, key, [cells]) for the counters, as mmtests prints them."""
        rows = []
        multi = len(self.seeds) > 1
        for key in self.counter_keys(block):
            stats = [self.stat(block, v, key) for v in self.variants]
            top = max((abs(s[0]) for s in stats if s), default=0)
            whole = all(float(s[0]).is_integer() for s in stats if s)
            prec = 0 if top >= 100_000 or whole else 2 if top >= 10 else 3
            cells = []
            for v, s in zip(self.variants, stats):
                if s is None:
                    cells.append(("-", ""))
                    continue
                pct = self.change(block, v, key)
                if pct is None:
                    cells.append((f"{s[0]:.{prec}f}", "(   n/a)"))
                    continue
                mark = "*{}*" if self.significant(block, v, key) else "({})"
                cells.append((f"{s[0]:.{prec}f}", mark.format(f"{pct:7.2f}%")))
            rows.append(("Hmean" if direction(key) == HIGHER else "Amean", key, cells))
            if multi:
                rows.append(("Stddev", key, [(f"{s[1]:.{prec}f}", "") if s else ("-", "")
                                             for s in stats]))
        return rows

    # -- formats ------------------------------------------------------------------------------

    def definitions(self):
        return DEFINITIONS if self.subsystem == "mm_cid" else DEFINITIONS[2:]

    def text(self, histograms=True):
        out = [f"# {self.header()}"] + [f"# {d}" for d in self.definitions()]
        for block in self.blocks:
            out += ["", f"== {self.block_title(block)} =="]
            if self.subsystem == "mm_cid":
                scan = self.scan_name(block) or "the scan"
                width = max(len(v) for v in self.variants) + 4
                width = max(width, 16)
                out.append(f"{'(' + scan + ')':<30}" + "".join(f"{v:<{width}}" for v in self.variants))
                cells = [self.seed_000_cells(block, v) for v in self.variants]
                for i, label in enumerate(SEED_000_ROWS):
                    out.append(f"{label:<30}" + "".join(f"{c[i]:<{width}}" for c in cells).rstrip())
                out.append("")
            rows = self.counter_rows(block)
            if rows:
                lw = max(len(k) for _, k, _ in rows)
                out.append(" " * (8 + lw) + "".join(f"{v:>24}" for v in self.variants))
                for stat, key, cells in rows:
                    out.append(f"{stat:<7} {key:<{lw}}" +
                               "".join(f"{a:>14} {b:<9}" for a, b in cells).rstrip())
            if histograms:
                for kind in ("latency", "noise"):
                    for v in self.variants:
                        h = self.histogram(block, v, kind)
                        if h is not None:
                            out += ["", h.rtla_text(self.duration_ns, self.hist_notes(block, v))]
        failed = self.failures()
        if failed:
            out += ["", "failed runs (left out of the figures above; \"finding\": a bug the "
                    "variant itself has, recorded as its finding):"]
            for r in failed:
                f = r["failure"]
                out.append(f"  {r['variant']} {r['workload']} {r['cpus']} CPUs seed {r['seed']}, "
                           f"at {f['virtual_ns'] / 1e9:.6f} s: {f['first_line']}")
                if f.get("known"):
                    out.append(f"    a recorded finding of {r['variant']}: {f['known']}")
                if f.get("report"):                 # a comparison of this one run
                    out += [f"    {line}" for line in f["report"].splitlines()]
                else:
                    out.append(f"    replay: {f['replay']}")
        return "\n".join(out) + "\n"

    def hist_notes(self, block, variant):
        runs = len(self.runs(block, variant))
        return [f"emulator: {variant}, {self.block_title(block)}, {runs} run(s)' samples added up"]

    def markdown(self):
        out = [f"{self.header()}.", ""] + [f"- {d}" for d in self.definitions()]
        for block in self.blocks:
            out += ["", f"### {self.block_title(block)}", ""]
            out.append("| | " + " | ".join(self.variants) + " |")
            out.append("|---|" + "---:|" * len(self.variants))
            if self.subsystem == "mm_cid":
                cells = [self.seed_000_cells(block, v) for v in self.variants]
                for i, label in enumerate(SEED_000_ROWS):
                    out.append(f"| {label.rstrip(':')} | " + " | ".join(c[i] for c in cells) + " |")
            for key in self.counter_keys(block):
                cells = []
                for v in self.variants:
                    s = self.stat(block, v, key)
                    if s is None:
                        cells.append("-")
                        continue
                    cell = f"{s[0]:.4g}" + (f" ± {s[1]:.2g}" if len(self.seeds) > 1 else "")
                    pct = self.change(block, v, key)
                    if v != self.head:
                        mark = " *{}*" if self.significant(block, v, key) else " ({})"
                        cell += " (n/a)" if pct is None else mark.format(f"{pct:+.2f}%")
                    cells.append(cell)
                out.append(f"| {key} | " + " | ".join(cells) + " |")
            for kind in ("latency", "noise"):
                for v in self.variants:
                    h = self.histogram(block, v, kind)
                    if h is not None:
                        out += ["", "```", h.rtla_text(self.duration_ns, self.hist_notes(block, v)),
                                "```"]
        failed = self.failures()
        if failed:
            out += ["", "Failed runs (left out of the figures):", ""]
            for r in failed:
                f = r["failure"]
                out.append(f"- {r['variant']} {r['workload']} {r['cpus']} CPUs seed {r['seed']}: "
                           f"`{f['first_line']}` (replay: `{f['replay']}`)")
                if f.get("report"):                 # a comparison of this one run
                    out += ["", "```", f["report"], "```"]
        return "\n".join(out) + "\n"

    def csv(self):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["workload", "cpus", "duration_s", "seeds", "variant", "metric", "runs",
                    "mean", "stddev", "change_pct", "better", "significant"])
        for block in self.blocks:
            keys = list(dict.fromkeys(list(SEED_000_KEYS) + self.counter_keys(block)))
            for v in self.variants:
                for key in keys:
                    s = self.stat(block, v, key)
                    if s is None:
                        continue
                    pct = self.change(block, v, key)
                    sig = self.significant(block, v, key)
                    w.writerow([block[0], block[1], self.duration_ns / 1e9, self.seeds_text(), v,
                                key, s[2], f"{s[0]:.6g}", f"{s[1]:.6g}",
                                "" if pct is None else f"{pct:.4f}", direction(key),
                                "" if sig is None else int(sig)])
                failed = len(self.runs(block, v, ok=False)) - len(self.runs(block, v))
                if failed:
                    w.writerow([block[0], block[1], self.duration_ns / 1e9, self.seeds_text(), v,
                                "failed_runs", failed, failed, 0, "", "", ""])
        return buf.getvalue()

    def json(self):
        blocks = []
        for block in self.blocks:
            entry = {"workload": block[0], "cpus": block[1], "variants": {}}
            keys = list(dict.fromkeys(list(SEED_000_KEYS) + self.counter_keys(block)))
            for v in self.variants:
                figures = {}
                for key in keys:
                    s = self.stat(block, v, key)
                    if s is not None:
                        figures[key] = {"mean": s[0], "stddev": s[1], "runs": s[2],
                                        "change_pct": self.change(block, v, key),
                                        "better": direction(key),
                                        "significant": self.significant(block, v, key)}
                entry["variants"][v] = {"figures": figures,
                                        "runs": self.runs(block, v, ok=False)}
            blocks.append(entry)
        return json.dumps({"subsystem": self.subsystem, "head": self.head,
                           "variants": self.variants, "duration_ns": self.duration_ns,
                           "seeds": self.seeds, "nohz_full": self.nohz_full,
                           "isolcpus": self.isolcpus,
                           "wall_s": self.wall_s, "blocks": blocks}, indent=1) + "\n"

    def format(self, fmt):
        return {"text": self.text, "markdown": self.markdown, "csv": self.csv,
                "json": self.json}[fmt]()
