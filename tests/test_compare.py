"""``python -m emulator compare``: variants side by side, as a patch author reads them."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from emulator.compare import compare
from emulator.errors import UsageError
from emulator.machine import Machine
from emulator.observe.histogram import Histogram
from emulator.observe.metrics import RunMetrics
from emulator.observe.trace import FuncgraphFields, SchedSwitchFields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MS = 1_000_000


def emulator(*args):
    return subprocess.run([sys.executable, "-m", "emulator", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, words", [
    (["--variant", "v6.13", "--workload", "nosuch"], "unknown workload 'nosuch'"),
    (["--variant", "v6.13", "--duration", "soon"], "--duration 'soon': not a duration"),
    (["--variant", "v6.13", "--variant", "v6.2"],
     "--variant v6.2 is of the page_alloc subsystem, the head (v6.13) of mm_cid"),
    (["--variant", "v6.13", "--variant", "nosuch"], "unknown variant 'nosuch'"),
    (["--variant", "v6.13", "--cpus", "0"], "--cpus 0: must be in 1..1024"),
    (["--variant", "v6.13", "-j", "0"], "-j 0: at least 1"),
    (["--variant", "v6.13", "--cpus", "2", "--isolcpus", "0-1"],
     "--isolcpus 0-1 leaves no housekeeping CPU of 2"),
    (["--workload", "idle"], "at least one --variant"),
])
def test_bad_input_is_one_line_and_exit_status_2(args, words):
    """Bad options, workloads or variants: one line on stderr naming the problem, exit 2, no run."""
    out = emulator("compare", *args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and words in out.stderr, out.stderr
    assert out.stdout == ""


def test_seed_000_scans_every_mm_each_100_ms_and_the_table_says_so():
    """seed-000's per-mm delayed work runs twice in 250 ms for every mm the load keeps alive;
    v6.13 scans only from a tick that finds the mm's task on the CPU."""
    cmp = compare(["v6.13", "seed-000"], ["cpu-load:80"], [2], "250ms", seeds=1)
    block = ("cpu-load:80", 2)
    mms = cmp.stat(block, "seed-000", "mm_allocated")[0]
    assert cmp.stat(block, "seed-000", "scan_invocations")[0] == 2 * mms
    text = cmp.text()
    assert "== cpu-load:80 on 2 CPUs: 0.250 s of virtual time per run, seed 1 ==" in text
    head, patch = cmp.seed_000_cells(block, "v6.13"), cmp.seed_000_cells(block, "seed-000")
    row = next(line for line in text.splitlines() if line.startswith("invocations:"))
    assert row.split()[1:] == [head[2], patch[2]] == [
        str(int(cmp.stat(block, v, "scan_invocations")[0])) for v in ("v6.13", "seed-000")]


def test_counters_are_means_over_the_seeds_with_the_change_from_the_head():
    """With two seeds each counter is their mean, Stddev follows, and the % is against the head."""
    cmp = compare(["v6.3", "v7.0"], ["cpu-load:50"], [2], "20ms", seeds=2)
    block = ("cpu-load:50", 2)
    runs = {v: [r["values"]["context_switches"] for r in cmp.runs(block, v)] for v in cmp.variants}
    assert len(runs["v7.0"]) == 2
    mean = sum(runs["v7.0"]) / 2
    assert cmp.stat(block, "v7.0", "context_switches")[0] == mean
    base = sum(runs["v6.3"]) / 2
    assert cmp.change(block, "v7.0", "context_switches") == pytest.approx(mean * 100 / base - 100,
                                                                          abs=0.005)
    lines = cmp.text().splitlines()
    amean = next(i for i, line in enumerate(lines) if line.startswith("Amean   context_switches"))
    assert lines[amean + 1].startswith("Stddev  context_switches")
    assert "(   0.00%)" in lines[amean]


def test_every_format_carries_the_same_figures():
    """markdown, csv and json report the same means; csv's head rows change by 0 %."""
    cmp = compare(["v6.13", "v6.14"], ["cpu-load:80"], [2], "120ms")
    block = ("cpu-load:80", 2)
    switches = cmp.stat(block, "v6.14", "context_switches")[0]
    rows = list(csv.DictReader(io.StringIO(cmp.csv())))
    row = next(r for r in rows if r["variant"] == "v6.14" and r["metric"] == "context_switches")
    assert float(row["mean"]) == switches and row["duration_s"] == "0.12"
    assert all(float(r["change_pct"]) == 0 for r in rows if r["variant"] == "v6.13"
               and r["change_pct"])
    data = json.loads(cmp.json())
    figures = data["blocks"][0]["variants"]["v6.14"]["figures"]
    assert figures["context_switches"]["mean"] == switches and data["duration_ns"] == 120 * MS
    assert "| context_switches | " in cmp.markdown()


def test_worker_processes_give_the_runs_one_process_gives():
    """-j 2 spreads the runs over processes; the report is the same, progress goes to stderr."""
    args = ["compare", "--variant", "v6.13", "--variant", "v7.0", "--workload", "cpu-load:80",
            "--cpus", "2", "--duration", "30ms", "--format", "json"]
    one, two = emulator(*args, "-j", "1"), emulator(*args, "-j", "2")
    assert one.returncode == two.returncode == 0, two.stderr
    strip = lambda out: [b["variants"] for b in json.loads(out)["blocks"]]   # noqa: E731
    for a, b in zip(strip(one.stdout), strip(two.stdout)):
        for v in a:
            for ra, rb in zip(a[v]["runs"], b[v]["runs"]):
                assert ra["values"] == rb["values"]
    assert "compare: [2/2] " in two.stderr


def test_a_failing_run_is_reported_with_its_replay_and_left_out():
    """seed-000's recorded sleeping-in-atomic bug fails its fork run: named, replayable, not averaged."""
    cmp = compare(["v6.13", "seed-000"], ["fork"], [2], "2ms")
    (failed,) = cmp.failures()
    assert failed["variant"] == "seed-000" and failed["failure"]["known"]
    text = cmp.text()
    assert "sleeping function called from invalid context" in text
    assert ("replay: python -m emulator compare --variant seed-000 --workload fork --cpus 2 "
            "--duration 2ms --seed 1 --seeds 1") in text
    assert cmp.stat(("fork", 2), "seed-000", "context_switches") is None
    assert cmp.seed_000_cells(("fork", 2), "seed-000") == ("finding",) * 3
    assert "minimal trace" not in text          # many runs: no trace is kept


BOOM = '''\
from emulator.variants import get_variant


class Boom(get_variant("v6.13")):
    """A patch whose cid allocation breaks at once."""

    name = "boom"

    def mm_cid_get(self, *args):
        raise RuntimeError("boom")
'''


def test_a_new_failure_makes_the_exit_status_1_and_a_recorded_finding_does_not(tmp_path):
    """A script comparing a patch learns that a run failed: exit status 1, the report
    printed all the same; seed-000's fork run, which ends at its recorded finding, is 0."""
    (tmp_path / "boom.py").write_text(BOOM)
    args = ["--workload", "fork", "--cpus", "2", "--duration", "1ms", "-q"]
    out = emulator("compare", "--variant", "v6.13", "--variant", str(tmp_path / "boom.py"), *args)
    assert out.returncode == 1, out.stderr
    assert "RuntimeError: boom" in out.stdout and "replay: python -m emulator compare" in out.stdout
    out = emulator("compare", "--variant", "v6.13", "--variant", "seed-000", *args)
    assert out.returncode == 0, out.stderr
    assert "a recorded finding of seed-000" in out.stdout


def test_the_replay_of_a_failing_run_prints_its_whole_report():
    """A failed run's replay command is a comparison of that one run: it kept its
    trace tail and prints the report, minimal trace included, as other failures do."""
    cmp = compare(["seed-000"], ["fork"], [2], "2ms")
    (failed,) = cmp.failures()
    report = failed["failure"]["report"]
    assert report.startswith("seed=1 variant=seed-000") and "minimal trace" in report
    assert "sched_switch: " in report
    text = cmp.text()
    assert "    minimal trace" in text and text.count("replay: ") == 1
    assert "```\nseed=1 variant=seed-000" in cmp.markdown()


def test_cyclictest_on_isolated_cpus_prints_rtla_timerlat_histograms():
    """cpu-load and cyclictest on isolated CPUs: one rtla-style histogram per variant,
    an IRQ and a Thr column per isolated CPU, every sample counted."""
    cmp = compare(["v6.13", "seed-000"], ["cpu-load:80+cyclictest:500"], [3], "20ms",
                  nohz_full="1-2")
    text = cmp.text()
    assert text.count("# RTLA timerlat histogram") == 2
    assert "Index   IRQ-001   Thr-001   IRQ-002   Thr-002" in text
    hist = cmp.histogram(("cpu-load:80+cyclictest:500", 3), "seed-000", "latency")
    assert sorted(hist.columns) == [(1, "IRQ"), (1, "Thr"), (2, "IRQ"), (2, "Thr")]
    assert all(col[2] == 20 * MS // (500 * 1000) - 1 for col in hist.columns.values())


def test_page_alloc_variants_compare_their_drain_counters_under_osnoise():
    """page_alloc variants: no seed 000 table, the allocator's counters and the osnoise
    histogram of the isolated CPUs side by side."""
    cmp = compare(["v5.19", "seed-002"], ["osnoise"], [2], "5ms", nohz_full="1")
    text = cmp.text()
    assert "running processes(threads)" not in text
    assert "# RTLA osnoise histogram" in text and "Index   CPU-001\n" in text
    assert any(k.startswith("pcp_") or k.startswith("buddy_") for k in
               cmp.results[0]["values"])


def test_plots_are_png_files_and_missing_matplotlib_is_one_clear_error(tmp_path, monkeypatch):
    """--plot writes readable PNGs; without matplotlib it is a usage error, not a traceback."""
    from emulator.observe import plots
    out = emulator("compare", "--variant", "v6.13", "--variant", "v7.0", "--workload",
                   "pthread-max:2,1+cyclictest", "--cpus", "2", "--duration", "5ms", "-j", "1",
                   "--plot", str(tmp_path))
    assert out.returncode == 0, out.stderr
    names = sorted(os.listdir(tmp_path))
    assert names == ["cid-pthread_max_2_1_cyclictest-2cpus.png",
                     "latency-pthread_max_2_1_cyclictest-2cpus.png", "scan-2cpus.png"]
    for name in names:
        assert f"compare: wrote {tmp_path / name}" in out.stderr
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UsageError, match=r"--plot needs matplotlib \(pip install"):
        plots.require()


def test_a_scans_duration_leaves_out_the_time_its_task_was_switched_out():
    """As seed 000's fexit probe did: entry to exit, less the time the task was preempted."""
    m = Machine(nr_cpus=1, seed=1)
    metrics = RunMetrics(m.kernel, MS)
    switch = lambda now, prev, nxt: (now, 0, "x", prev, "sched_switch", SchedSwitchFields(  # noqa: E731
        (SchedSwitchFields, "a", prev, 120, "R+", "b", nxt, 120)))
    metrics.funcgraph_entry((1000, 0, "kworker", 7, "funcgraph_entry",
                             FuncgraphFields((FuncgraphFields, "task_mm_cid_work"))))
    metrics.sched_switch(switch(4000, 7, 9))
    metrics.sched_switch(switch(10000, 9, 7))
    metrics.funcgraph_exit((12000, 0, "kworker", 7, "funcgraph_exit",
                            FuncgraphFields((FuncgraphFields, "task_mm_cid_work", 1000, 12000))))
    values = metrics.values()
    assert values["scan_invocations"] == 1 and values["scan_max_us"] == 5.0   # 11 us - 6 us away


def test_histogram_prints_rtla_layout():
    """rtla timerlat hist's layout: zero rows left out, over past 256 us, `-` for an empty column."""
    h = Histogram("timerlat")
    for ns in (1_500, 1_900, 3_000, 300_000):
        h.add(0, "Thr", ns)
    h.add(0, "IRQ", 0)
    h.columns[(1, "Thr")] = [[0] * 256, 0, 0, 0, 0, 0]
    lines = h.rtla_text(2_000_000_000).splitlines()
    assert lines[:3] == ["# RTLA timerlat histogram", "# Time unit is microseconds (us)",
                         "# Duration:   0 00:00:02"]
    assert lines[3] == "Index   IRQ-000   Thr-000   IRQ-001   Thr-001"
    assert lines[4:7] == ["0             1         0         0         0",
                          "1             0         2         0         0",
                          "3             0         1         0         0"]
    assert lines[7] == "over:         0         1         0         0"
    assert lines[8] == "count:        1         4         0         0"
    assert lines[11] == "max:          0       300         -         -"


def test_seeds_histograms_add_up_and_an_empty_column_sets_no_minimum():
    """Merging runs adds their samples; a CPU without samples in one run leaves min and max alone."""
    a, b = Histogram("osnoise"), Histogram("osnoise")
    a.columns[(1, "CPU")] = [[0] * 256, 0, 0, 0, 0, 0]
    b.add(1, "CPU", 7_000)
    b.add(1, "CPU", 9_000)
    merged = a.merge(b)
    assert merged.summary("CPU") == (2, 7_000, 8_000, 9_000)


def _runs(values_by_variant):
    """Run dicts as run_job() returns them, one per value of each counter."""
    out = []
    for variant, counters in values_by_variant.items():
        n = len(next(iter(counters.values())))
        for i in range(n):
            out.append({"workload": "w", "cpus": 2, "variant": variant, "subsystem": "mm_cid",
                        "seed": 1 + i, "duration_ns": MS, "failure": None,
                        "values": {k: v[i] for k, v in counters.items()}})
    return out


def test_changes_carry_mmtests_sign_and_asterisks_where_beyond_the_seeds_noise():
    """+ is better (pndiff for costs, pdiff for throughput; activity counts: + is more); a change
    larger than the two 95% confidence half-widths is starred, a noisy one is not."""
    from emulator.observe.report import Comparison
    cmp = Comparison(_runs({
        "head": {"ipis": [10, 11, 12], "hackbench messages/s": [100, 100, 100],
                 "context_switches": [1000, 1100, 1200]},
        "patch": {"ipis": [20, 21, 22], "hackbench messages/s": [110, 110, 110],
                  "context_switches": [1000, 1100, 1300]},
    }))
    block = ("w", 2)
    assert cmp.change(block, "patch", "ipis") == pytest.approx(100 - 21 * 100 / 11)   # worse: -
    assert cmp.change(block, "patch", "hackbench messages/s") == pytest.approx(10)  # better: +
    assert cmp.change(block, "patch", "context_switches") == pytest.approx(3400 / 33 - 100)
    # ipis: |21 - 11| = 10 > 2 * qt(0.975, 2) * 1 / sqrt(3) = 4.97; no spread: any difference
    assert cmp.significant(block, "patch", "ipis") is True
    assert cmp.significant(block, "patch", "hackbench messages/s") is True
    assert cmp.significant(block, "patch", "context_switches") is False
    assert cmp.significant(block, "head", "ipis") is None
    ratio = Comparison(_runs({"head": {"locks_per_switch": [2.0, 2.0]},
                              "patch": {"locks_per_switch": [2.5, 2.5]}}))
    assert ratio.significant(block, "patch", "locks_per_switch") is True    # seeds agree
    rows = {line.split()[1]: line for line in cmp.text().splitlines()
            if line.startswith(("Amean", "Hmean"))}
    assert rows["ipis"].startswith("Amean") and "* -90.91%*" in rows["ipis"]
    assert rows["hackbench"].startswith("Hmean") and "*  10.00%*" in rows["hackbench"]
    assert "(   3.03%)" in rows["context_switches"] and "*" not in rows["context_switches"]
    stddev = [line for line in cmp.text().splitlines() if line.startswith("Stddev")]
    assert stddev and not any("*" in line for line in stddev)
    one = Comparison(_runs({"head": {"ipis": [10]}, "patch": {"ipis": [20]}}))
    assert one.significant(block, "patch", "ipis") is None
    assert not any("*" in line for line in one.text().splitlines() if line.startswith("Amean"))


def test_the_head_scan_delays_a_real_time_probe_only_where_the_tick_runs():
    """The predecessor series' mechanism: with isolcpus= only, a tick that lands while the
    cyclictest thread runs queues v6.13's scan as task work in it, and its next wake-up is late by
    the whole scan (250 ns per possible CPU); seed-000 scans in a kworker and the probe never
    waits.  With nohz_full= the tick stops and v6.13's scan never runs on the isolated CPUs.
    (A 997 us period drifts against the 1 ms tick; a 1000 us one stays in phase with it.)"""
    from emulator.variants.mm_cid_v6_4 import SCAN_NS_PER_CPU
    key = "cyclictest Thr max us"
    ticking = compare(["v6.13", "seed-000"], ["cpu-load:80+cyclictest:997"], [4], "1s",
                      isolcpus="1-3")
    block = ticking.blocks[0]
    assert "isolated CPUs 1-3 (isolcpus only: their tick runs)" in ticking.text()
    late = ticking.stat(block, "v6.13", key)[0] - ticking.stat(block, "seed-000", key)[0]
    assert late == pytest.approx(4 * SCAN_NS_PER_CPU / 1000)
    assert ticking.change(block, "seed-000", key) > 0             # + is better: lower latency
    quiet = compare(["v6.13", "seed-000"], ["cpu-load:80+cyclictest:997"], [4], "1s",
                    nohz_full="1-3")
    assert quiet.stat(block, "v6.13", key)[0] == quiet.stat(block, "seed-000", key)[0]
    assert quiet.stat(block, "v6.13", "scan_invocations") is None    # no scan ran at all
