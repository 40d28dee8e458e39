"""``python -m emulator compare``: variants side by side on workloads.

    python -m emulator compare --variant A --variant B [--workload W]... [--cpus N]...
        [--duration 1s] [--seeds K] [--seed S] [--nohz-full CPUS] [--isolcpus CPUS] [-j J]
        [--format text|markdown|csv|json] [--plot DIR]

Every variant (all of one subsystem; the other subsystems keep their
defaults) runs every workload (emulator/workloads/) on every CPU count for
the duration, once per seed (S, S+1, ... S+K-1); each run is a fresh
machine, measured by emulator/observe/metrics.py's subscribers, its own
workload's probes and Machine.stats(), and abandoned at the end of the
duration.  The report (emulator/observe/report.py) puts every variant
beside the first, the head: seed 000's table for mm_cid variants, the
counters as mean and standard deviation over the seeds with the change from
the head in percent (mmtests' compare-kernels layout), and the latency and
noise histograms in rtla's layout.  Runs are spread over J worker
processes; a progress bar goes to stderr.

A run that fails (a kernel bug, an invariant, a lockup) is reported with its
first line and the command that replays it, and left out of the means.
"""

import contextlib
import os
import sys
import time

from .errors import EmulationFailure, UsageError
from .workloads import FOREVER, parse_duration

DEFAULT_WORKLOADS = ("idle", "cpu-load:80", "fork", "pthread-max:4")   # seed 000's four rows
# Machine.stats() keys that count the emulator's own work, not the kernel's.
NOT_COUNTERS = ("virtual_ns", "events", "host_handoffs")


class Job:
    """One run: a workload, a CPU count, a variant and a seed."""

    __slots__ = ("workload", "cpus", "variant", "seed", "duration_ns", "nohz_full", "isolcpus")

    def __init__(self, workload, cpus, variant, seed, duration_ns, nohz_full=None, isolcpus=None):
        self.workload, self.cpus, self.variant, self.seed = workload, cpus, variant, seed
        self.duration_ns, self.nohz_full = duration_ns, nohz_full
        # --nohz-full alone isolates both ways (nohz_full= and isolcpus=, as
        # the predecessor series' tuned setups do); --isolcpus alone keeps
        # the tick on its CPUs.
        self.isolcpus = isolcpus if isolcpus is not None else nohz_full

    def __repr__(self):
        return f"{self.variant} {self.workload} {self.cpus} CPUs seed {self.seed}"

    def replay_command(self, duration_text):
        iso = f" --nohz-full {self.nohz_full}" if self.nohz_full else ""
        if self.isolcpus and self.isolcpus != self.nohz_full:
            iso += f" --isolcpus {self.isolcpus}"
        return (f"python -m emulator compare --variant {self.variant} --workload "
                f"{self.workload} --cpus {self.cpus} --duration {duration_text} "
                f"--seed {self.seed} --seeds 1{iso}")


def duration_text(ns):
    for unit, size in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def run_job(job, report=False):
    """Run *job* on a new machine; its figures as plain data (a dict).  With
    *report* (a comparison of one run: a failure's replay command), a
    failure keeps its whole report, minimal trace included."""
    from .explore.findings import known_finding
    from .machine import Machine
    from .observe.metrics import RunMetrics, flatten_stats
    from .variants import load_variant
    from .workload import Program, fork, sleep
    from .workloads import Context, load_workloads

    variant = load_variant(job.variant)
    workloads = load_workloads(job.workload)
    # No trace tail unless the report is wanted: in a comparison of many
    # runs a failed run is listed by its first line and its replay command,
    # which runs it alone with its report, and keeping the tail was a fifth
    # to a quarter of the CPU time of the fork and pthread-max runs at 128
    # CPUs (profiled 2026-12-07; every run's figures are the same without
    # it).  The subscribers (metrics, histograms) and the checks are unchanged.
    tail = {} if report else {"trace_tail": 0}       # the Machine's default tail, or none
    m = Machine(job.cpus, variants=[variant], seed=job.seed, nohz_full=job.nohz_full,
                isolcpus=job.isolcpus, replay=job.replay_command(duration_text(job.duration_ns)),
                **tail)
    ctx = Context(m, job.duration_ns)
    metrics = RunMetrics(m.kernel, job.duration_ns)
    with _workload_code(job):
        for w in workloads:
            w.attach(ctx)
        programs = [p for w in workloads for p in w.programs(ctx)]
    main = Program(*[fork(p) for p in programs], sleep(FOREVER), comm="compare")
    out = {"workload": job.workload, "cpus": job.cpus, "variant": variant.name,
           "subsystem": variant.subsystem, "seed": job.seed, "duration_ns": job.duration_ns,
           "failure": None}
    start = time.perf_counter()
    try:
        m.start(main)
        m.advance(job.duration_ns)
    except EmulationFailure as exc:
        lines = str(exc).strip().splitlines()
        out["failure"] = {
            "first_line": lines[0] if lines else type(exc).__name__,
            "virtual_ns": m.now,
            "known": known_finding(variant, exc, m.kernel.causes),
            "replay": job.replay_command(duration_text(job.duration_ns)),
        }
        if report:
            out["failure"]["report"] = exc.report
        return out
    finally:
        m.close()
        out["wall_s"] = time.perf_counter() - start
    values = metrics.values()
    stats = m.stats()
    for key, value in flatten_stats(stats).items():
        # (isolated CPUs' interruptions are summed below; the scans are the
        # metrics' own figures, less preemption, where stats() counts it)
        if key not in NOT_COUNTERS and not key.startswith(("isolated cpu", "scan ")):
            values[key] = value
    if m.osnoise is not None:
        summary = m.osnoise.summary().values()
        values["isolated interruptions"] = sum(s["count"] for s in summary)
        values["isolated noise max us"] = max((s["max_ns"] for s in summary), default=0) / 1000
    out["virtual_s_per_wall_s"] = job.duration_ns / 1e9 / max(out["wall_s"], 1e-9)
    for w in workloads:
        with _workload_code(job):
            res = w.results(ctx)
        values.update(res.get("counters", {}))
        for kind in ("latency", "noise"):
            if kind in res:
                hist = res[kind]
                out[kind] = hist.to_data()
                for context in hist.contexts:
                    s = hist.summary(context)
                    if s:
                        label = f"{w.name} {context}" if kind == "latency" else w.name
                        values[f"{label} max us"] = s[3] / 1000
                        values[f"{label} avg us"] = s[2] / 1000
    out["values"] = values
    out["cid"] = metrics.cid_series()
    return out


@contextlib.contextmanager
def _workload_code(job):
    """A workload's own code failing is a usage error naming it, not a traceback."""
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"workload {job.workload}: {type(exc).__name__}: {exc}") from None


class Progress:
    """A progress bar on *stream*: redrawn in place on a terminal, a line
    per finished run otherwise."""

    def __init__(self, total, stream=None):
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()

    def update(self, job, result):
        self.done += 1
        elapsed = time.perf_counter() - self.start
        note = " FAILED" if result.get("failure") else ""
        if self.tty:
            width = 30
            filled = width * self.done // self.total
            left = elapsed / self.done * (self.total - self.done)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/"
                              f"{self.total} runs, {_clock(elapsed)} elapsed, ~{_clock(left)} "
                              f"left: {job}{note}\033[K")
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"compare: [{self.done}/{self.total}] {job}: "
                              f"{result.get('wall_s', 0):.1f} s{note}\n")
        self.stream.flush()


def _clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def check_variants(specs):
    """The variant classes of *specs*, all of one subsystem (UsageError otherwise)."""
    from .variants import load_variant
    if not specs:
        raise UsageError("compare needs at least one --variant (the first is the head)")
    classes = [load_variant(spec) for spec in specs]
    head = classes[0]
    for spec, cls in zip(specs[1:], classes[1:]):
        if cls.subsystem != head.subsystem:
            raise UsageError(
                f"--variant {spec} is of the {cls.subsystem} subsystem, the head "
                f"({specs[0]}) of {head.subsystem}: every --variant must be of one subsystem "
                f"(the others keep their defaults)")
    names = [cls.name for cls in classes]
    for name in names:
        if names.count(name) > 1:
            raise UsageError(f"--variant {name} is given twice")
    return classes


def plan(variants, workloads, cpus, duration, seeds, seed, nohz_full=None, isolcpus=None):
    """Check the options and return the jobs (a UsageError for bad input)."""
    from .machine import cpu_list_mask
    from .workloads import load_workloads
    check_variants(variants)
    duration_ns = parse_duration(duration) if isinstance(duration, str) else duration
    workloads = list(workloads) or list(DEFAULT_WORKLOADS)
    for w in workloads:
        load_workloads(w)
    cpus = list(cpus) or [8]
    for n in cpus:
        if not 1 <= n <= 1024:
            raise UsageError(f"--cpus {n}: must be in 1..1024")
        for option, cpus_text in (("--nohz-full", nohz_full), ("--isolcpus", isolcpus)):
            if cpus_text:
                mask = cpu_list_mask(cpus_text, option, n)
                if mask == (1 << n) - 1:
                    raise UsageError(f"{option} {cpus_text} leaves no housekeeping CPU of {n}")
    if seeds < 1:
        raise UsageError(f"--seeds {seeds}: at least 1")
    return [Job(w, n, v, s, duration_ns, nohz_full, isolcpus)
            for w in workloads for n in cpus for s in range(seed, seed + seeds) for v in variants]


def _worker_init():
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent stops the pool


def run_jobs(jobs, workers=1, progress=None):
    """Every job's result, in the order of *jobs*."""
    from . import interrupt
    results = [None] * len(jobs)
    if workers <= 1 or len(jobs) == 1:
        for i, job in enumerate(jobs):
            results[i] = run_job(job, report=len(jobs) == 1)
            if progress:
                progress.update(job, results[i])
            interrupt.checkpoint()
        return results
    import concurrent.futures as cf
    import multiprocessing
    pool = cf.ProcessPoolExecutor(min(workers, len(jobs)),
                                  mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_worker_init)
    try:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for f in done:
                i = futures[f]
                results[i] = f.result()
                if progress:
                    progress.update(jobs[i], results[i])
            interrupt.checkpoint()
    except BaseException:
        for f in futures:
            f.cancel()
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def compare(variants, workloads=(), cpus=(), duration="1s", seeds=1, seed=1, nohz_full=None,
            workers=1, progress=None, isolcpus=None):
    """Run the comparison; its `emulator.observe.report.Comparison`."""
    from .observe.report import Comparison
    jobs = plan(variants, workloads, cpus, duration, seeds, seed, nohz_full, isolcpus)
    if progress is True:
        progress = Progress(len(jobs))
    start = time.perf_counter()
    results = run_jobs(jobs, workers, progress)
    return Comparison(results, jobs, wall_s=time.perf_counter() - start, nohz_full=nohz_full,
                      isolcpus=isolcpus)


def default_workers():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
