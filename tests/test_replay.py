"""Replay keys and campaigns: a failure names the run that replays it, a key
from other code is refused, and a campaign reports what it found."""

import os
import re
import shlex
import subprocess
import sys

import pytest

from emulator import Machine
from emulator.checks.invariants import InvariantViolation
from emulator.errors import KernelBug, UsageError
from emulator.explore import keys as replay_mod
from emulator.explore.campaign import Campaign, parse_duration
from emulator.explore.findings import failure_category
from emulator.explore.generated import Case, run_case
from emulator.explore.keys import make_key, parse_key
from emulator.explore.replay import replay
from emulator.explore.stateful import replay_steps
from emulator.variants import load_variant
from emulator.workload import Program, program_from_data, program_to_data, repeat, run, \
    setaffinity, sleep, thread, exec_, yield_

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NO_THREADS = '''\
from emulator.errors import KernelBug
from emulator.variants import get_variant


class NoThreads(get_variant("v6.4")):
    """A patch that cannot give a second thread of a process a cid."""

    name = "no-threads"

    def sched_mm_cid_fork(self, t):
        if t.mm is self.k.cur.mm:           # CLONE_VM: a thread
            raise KernelBug(f"BUG: no threads in this patch ({self.k.cur!r})")
        super().sched_mm_cid_fork(t)
'''


@pytest.fixture
def no_threads(tmp_path, monkeypatch):
    """A patch file that fails whenever a process creates a thread; the test
    runs in its directory, as a developer with their patch would."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "no_threads.py").write_text(NO_THREADS)
    return "no_threads.py"


def key_in(text):
    for word in text.split():
        if word.startswith("emu1-"):
            return word
    raise AssertionError(f"no replay key in:\n{text}")


def emulator(*args, cwd):
    return subprocess.run([sys.executable, "-m", "emulator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})


def pytest_run(*args, cwd):
    """pytest in a process of its own, run from *cwd* as a developer runs it
    (not as a worker of this test run's xdist)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.startswith("PYTEST_XDIST")}, "PYTHONPATH": ROOT})


TWO_THREADS = Case(2, 7, Program(thread(Program(run(10_000))), run(50_000)))


def test_a_failing_generated_case_prints_the_key_that_replays_it(no_threads, tmp_path):
    with pytest.raises(KernelBug) as failed:
        run_case(load_variant(no_threads), TWO_THREADS)
    key = key_in(str(failed.value))
    out = emulator("replay", key, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("not ok 1 generated case on no-threads")
    assert "BUG: no threads in this patch (synthetic[2])" in out.stdout
    assert "function: sched_mm_cid_fork(" not in str(failed.value)   # not traced in a search
    assert "[001]" in out.stdout or "[000]" in out.stdout
    assert ": function: init_sched_mm_cid(synthetic[3])" in out.stdout   # a replay traces them
    assert key_in(out.stdout) == key                     # the replay names itself


def test_a_run_under_a_memory_model_of_its_own_prints_a_key_that_replays_under_it(no_threads):
    """A run given memory_model= (not the default) names it in its key: the key of
    a failure found under weak replays under weak, not under the default sc."""
    with pytest.raises(KernelBug) as failed:
        run_case(load_variant(no_threads), TWO_THREADS, memory_model="weak")
    assert parse_key(key_in(str(failed.value)))["memory_model"] == "weak"
    with pytest.raises(KernelBug) as failed:
        run_case(load_variant(no_threads), TWO_THREADS)
    assert "memory_model" not in parse_key(key_in(str(failed.value)))


def test_a_stateful_example_replays_from_its_steps_without_hypothesis(no_threads):
    """The key of a stateful example carries its boot and steps as they ran."""
    steps = [["work", {"who": 0, "kind": "run", "ns": 1000, "times": 2, "then": 0}],
             ["spawn", {"who": 0, "n": 2, "then": 500_000}]]
    with pytest.raises(KernelBug) as failed:
        replay_steps(load_variant(no_threads), {"nr_cpus": 2, "seed": 3}, steps)
    key = key_in(str(failed.value))
    data = parse_key(key)
    assert (data["kind"], data["boot"], data["steps"]) == \
        ("stateful", {"nr_cpus": 2, "seed": 3}, steps)
    lines = []
    assert replay(key, out=lines.append) == 1
    assert "BUG: no threads in this patch" in lines[1]


def test_a_passing_run_replays_as_passing():
    key = make_key("run", "v6.3", selftest="basic", cpus=4, seed=2, strategy="random:p=0.05")
    lines = []
    assert replay(key, out=lines.append) == 0
    assert lines[2].startswith("ok 1 basic variant=v6.3 cpus=4 seed=2")


def test_a_key_from_other_code_is_refused(monkeypatch):
    monkeypatch.setattr(replay_mod, "_version", "0.1.0+0123456789ab")
    key = make_key("run", "v6.3", selftest="basic", cpus=4, seed=2, strategy=None)
    monkeypatch.undo()
    with pytest.raises(UsageError, match=r"made by emulator 0\.1\.0\+0123456789ab, this is "):
        parse_key(key)


def test_a_key_for_a_patch_that_changed_since_is_refused(no_threads, tmp_path):
    key = make_key("generated", no_threads, cpus=2, seed=1, program=program_to_data(Program()),
                   pauses={})
    with open(no_threads, "a") as f:
        f.write("# edited\n")
    with pytest.raises(UsageError, match="has changed since the key was made"):
        replay(key)
    os.remove(no_threads)
    with pytest.raises(UsageError, match="is not here"):
        replay(key)


@pytest.mark.parametrize("key, message", [
    ("nonsense", "not a replay key"),
    ("emu1-AAAA", "damaged"),
    ("emu1-" + "x" * 30, "damaged"),
])
def test_a_bad_key_gets_one_line_and_exit_2(key, message, tmp_path):
    out = emulator("replay", key, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_variant_defined_in_a_test_has_no_key():
    """Only registered variants and patch files can be named by a key; a
    class defined in code falls back to the replay line it had."""
    class Local(load_variant("v6.4")):
        name = "local-only"
    assert make_key("run", Local, selftest="basic", cpus=2, seed=1, strategy=None) is None


def test_a_program_goes_through_a_key_unchanged():
    program = Program(setaffinity([0, 2]), repeat(3, run(10), yield_()),
                      thread(Program(sleep(5), exec_("/no/such/file"), comm="t")),
                      exec_(Program(run(1), comm="img")), comm="p")
    assert repr(program_from_data(program_to_data(program))) == repr(program)
    with pytest.raises(UsageError, match="not a workload program"):
        program_from_data({"phases": [["run"]], "comm": "x", "policy": 0, "priority": 0})


def test_pytest_replays_a_key(no_threads, tmp_path):
    with pytest.raises(KernelBug) as failed:
        run_case(load_variant(no_threads), TWO_THREADS)
    out = pytest_run(f"--emu-replay={key_in(str(failed.value))}", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "BUG: no threads in this patch" in out.stdout and "1 failed" in out.stdout


# -- campaigns -------------------------------------------------------------------------------------

def test_a_campaign_finds_the_patch_failing_and_gives_the_key(no_threads):
    campaign = Campaign(no_threads, workload="generated", cpus=(2,), seed=1)
    campaign.run(runs=30, progress=False)
    assert list(campaign.failures) == ["kernel bug"]
    failure = campaign.failures["kernel bug"]
    assert "BUG: no threads in this patch" in failure.first_line
    lines = []
    assert replay(failure.key, out=lines.append) == 1      # shrunk, and it replays
    summary = campaign.summary()
    assert f"failures, kernel bug: {failure.count}" in summary and failure.key in summary


def test_a_stress_campaign_finds_the_patch_failing_and_its_key_replays(no_threads):
    """Mixes of compare's loads, drawn and shrunk: the shrunk case is one
    load that creates threads, and its key replays the failure."""
    campaign = Campaign(no_threads, workload="stress", cpus=(2,), seed=1)
    campaign.run(runs=10, progress=False)
    assert list(campaign.failures) == ["kernel bug"]
    failure = campaign.failures["kernel bug"]
    assert "BUG: no threads in this patch" in failure.first_line
    data = parse_key(failure.key)
    assert (data["kind"], data["cpus"], data["duration_ns"]) == ("stress", 2, 5_000_000)
    lines = []
    assert replay(failure.key, out=lines.append) == 1
    assert lines[0] == "not ok 1 stress case on no-threads"


def test_a_campaign_gives_a_key_for_the_first_run_of_each_recorded_finding():
    """Seed-003 at one CPU meets its recorded finding in most runs: the summary
    counts them and gives the first one's replay, which replays to that finding."""
    campaign = Campaign("seed-003", workload="stress", cpus=(1,), seed=1)
    campaign.run(runs=3, progress=False)
    (reason, n), = campaign.known.items()
    assert n >= 1 and not campaign.failures
    key = key_in(campaign.known_replay[reason])
    assert f"    first: python -m emulator replay {key}" in campaign.summary()
    lines = []
    assert replay(key, out=lines.append) == 0
    assert lines[0] == f"ok 1 stress case on seed-003 # known finding: {reason}"


def test_a_campaign_over_a_sound_variant_counts_runs_and_schedules():
    campaign = Campaign("v6.4", cpus=(4,), seed=2).run(runs=25, progress=False)
    assert not campaign.failures
    assert campaign.runs >= 25 and 1 < len(campaign.schedules) <= campaign.runs
    assert "failures: none" in campaign.summary()


def test_a_strategy_campaign_runs_a_mirror_once_per_seed():
    campaign = Campaign("v7.0", strategy="preempt:p=0.05", seed=0).run(runs=5, progress=False)
    assert campaign.runs == 5 and len(campaign.schedules) == 5 and not campaign.failures


def test_failures_are_grouped_by_invariant_or_detector():
    assert failure_category(InvariantViolation("P2 bound: ...", invariant="P2")) == "P2"
    assert failure_category(KernelBug("WARNING: ...")) == "kernel bug"
    assert failure_category(ValueError("x")) == "python error: ValueError"


def test_a_failure_says_what_it_is_as_data_not_only_in_its_message():
    """What a recorded finding matches: a WARN names the function that warned
    (WARN_ON_ONCE()'s caller), a Python error in kernel code the function it
    was raised in and its class; their messages may change freely."""
    from emulator.kernel.bug import WARN_ON_ONCE
    from emulator.variants import get_variant

    class Patch(get_variant("v6.4")):
        name = "fails-at-fork"
        fails = None

        def sched_mm_cid_fork(self, t):
            if self.fails == "warn":
                WARN_ON_ONCE(t.mm is self.k.cur.mm, "a thread")
            elif self.fails == "python":
                self.k.nr_threads_forked += 1
            super().sched_mm_cid_fork(t)

    def failure(fails):
        Patch.fails = fails
        with pytest.raises(KernelBug) as info:
            Machine(nr_cpus=2, variants=[Patch], seed=1).run(
                Program(thread(Program(run(1000))), run(1000)))
        return info.value.fields
    assert failure("warn") == {"function": "sched_mm_cid_fork"}
    assert failure("python") == {"function": "sched_mm_cid_fork", "exception": "AttributeError"}


@pytest.mark.parametrize("args, message", [
    (("explore", "--variant", "v6.4", "--time", "soon"), "a duration such as 60s"),
    (("explore", "--variant", "v6.4", "--runs", "0"), "at least 1"),
    (("explore", "--variant", "v6.4", "--workload", "nosuch"), "stateful, generated, stress"),
    (("explore", "--variant", "v6.4", "--strategy", "systematic", "--workload", "stress"),
     "cannot enumerate"),
    (("explore", "--variant", "v6.4", "--strategy", "pct", "--workload", "nosuch"),
     "unknown selftest"),
    (("explore",), "--variant"),
])
def test_bad_campaign_arguments_get_one_line(args, message, tmp_path):
    out = emulator(*args, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_explore_prints_a_summary_and_exits_0_when_nothing_failed(tmp_path):
    out = emulator("explore", "--variant", "v6.4", "--runs", "20", "--cpus", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("explore v6.4: strategy hypothesis, stateful workload, CPUs 2")
    assert "failures: none" in out.stdout


def test_a_spin_is_one_line_and_a_repeating_cycle_is_folded():
    """A CPU looping on the same event keeps one record with a count; a
    cycle of events repeating is printed once, then how often it repeated."""
    from emulator.observe.trace import fold_repeats
    from emulator.workload import Program
    m = Machine(nr_cpus=2, seed=1)
    m.run(Program(run(1000)))
    tp = m.kernel.tp
    for _ in range(5):
        tp.emit("function", "spin()")
    assert tp.tail[-1][6] == 4 and tp.tail[-2][5] != "spin()"
    assert tp.format(tp.tail[-1]).endswith(f"spin()   (and 4 more times until {m.now / 1e9:.9f})")
    cycle = [(t, 0, "a", 1, "e", "xyz"[t % 3]) for t in range(12)]
    folded = fold_repeats(cycle)
    assert folded[:3] == cycle[:3] and "the 3 events above repeat 3 more times" in folded[3]
    assert len(folded) == 4


def test_durations():
    assert [parse_duration(t) for t in ("90", "90s", "1.5m", "1h")] == [90, 90, 90, 3600]


def test_a_failing_mirror_run_prints_the_key_that_replays_it(no_threads, tmp_path):
    out = emulator("run", "mm_cid_compaction", "--variant", no_threads, "--cpus", "4",
                   cwd=tmp_path)
    assert out.returncode == 1 and "BUG: no threads in this patch" in out.stdout
    again = emulator("replay", key_in(out.stdout), cwd=tmp_path)
    assert again.returncode == 1
    assert again.stdout.splitlines()[:2] == out.stdout.splitlines()[:2]


def test_the_reported_run_of_a_shrunk_example_traces_the_variant(no_threads):
    """Searching runs no function tracer; the run Hypothesis reports does."""
    from emulator.explore.generated import generated_search
    reports = []

    def search(case):
        try:
            run_case(load_variant(no_threads), case)
        except KernelBug as exc:
            reports.append(exc.report)
            raise
    with pytest.raises(KernelBug):
        generated_search(search, 50, cpus=(2,))()
    assert ": function: sched_mm_cid_fork(" in reports[-1]
    assert not any(": function: " in report for report in reports[:-1])


def test_pytest_runs_a_campaign_per_variant_and_worker(no_threads, tmp_path):
    """Without xdist, one worker: one campaign per variant."""
    out = pytest_run("--emu-explore=1s", f"--variant={no_threads}", "--variant=v6.4",
                     "--emu-workload=generated", "--cpus=2", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed, 1 passed" in out.stdout
    assert "explore[no-threads-0]" in out.stdout and "failures, kernel bug:" in out.stdout


def test_a_seeded_search_draws_the_same_whatever_the_process_imported(tmp_path, monkeypatch):
    """Hypothesis draws some integers from the constants of the local modules
    loaded in the process; a search of this project must not: its failure
    reproduces alone from the pytest command printed in the full suite."""
    from emulator.explore.generated import generated_search
    from emulator.explore.stateful import lifecycle_machine, stateful_search
    from emulator.variants import get_variant

    def searched():
        cases, examples = [], []

        class Recorded(lifecycle_machine(get_variant("v6.4"), cpus=(2,))):
            def teardown(self):
                super().teardown()
                examples.append((self.boot_args, self.steps))

        def drawn(case):
            cases.append(case)
        stateful_search(Recorded, 8, 1)()
        generated_search(drawn, 20, seed=1, cpus=(2,))()
        return examples, [c.key(get_variant("v6.4")) for c in cases]

    before = searched()
    (tmp_path / "many_constants.py").write_text(
        "".join(f"C{n} = {n * 7919 + 3}\n" for n in range(300)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "many_constants", raising=False)   # gone at the end
    __import__("many_constants")
    assert searched() == before


def test_the_printed_pytest_command_reruns_the_failing_test_on_the_patch(no_threads, tmp_path):
    """From the patch's directory: the command names the patch file, and the
    test file as seen from there."""
    test = os.path.join(ROOT, "tests", "test_generated.py::test_generated_workloads_keep_the_invariants")
    out = pytest_run(test, f"--variant={no_threads}", "--emu-seed=3", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    command = shlex.split(next(lines[i + 1] for i, line in enumerate(lines)
                               if line.startswith("---") and " emulator replay " in line))
    assert command[0] == "pytest" and f"--variant={no_threads}" in command and "--emu-seed=3" in command
    again = pytest_run(*command[1:], cwd=tmp_path)
    assert again.returncode == 1 and "1 failed" in again.stdout, again.stdout + again.stderr
    assert "BUG: no threads in this patch" in again.stdout


def test_once_a_search_of_a_patch_failed_its_searches_not_yet_started_are_skipped(no_threads,
                                                                                    tmp_path):
    """Across xdist workers: each further search would shrink the same bug."""
    test = os.path.join(ROOT, "tests", "test_stateful.py::"
                        "test_rule_by_rule_the_variant_keeps_the_invariants")
    out = pytest_run("-n", "2", test, f"--variant={no_threads}", cwd=tmp_path)
    counts = re.search(r"(\d+) failed, (\d+) skipped in", out.stdout)
    assert counts, out.stdout + out.stderr
    failed, skipped = map(int, counts.groups())
    assert failed >= 1 and skipped >= 1 and failed + skipped == 8, out.stdout
