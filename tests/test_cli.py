"""``python -m emulator``: what a developer types, what they get back."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def emulator(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "emulator", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_variants_lists_names_with_the_commit_they_copy():
    """`variants` prints one line per registered variant with what it copies."""
    out = emulator("variants")
    assert out.returncode == 0
    assert "v6.3" in out.stdout and "af7f588d8f73" in out.stdout


def test_run_passes_and_prints_a_tap_line():
    """A passing mirror prints KTAP with `ok 1 ...` (tests/test_ktap.py) and exits 0."""
    out = emulator("run", "mm_cid_compaction", "--variant", "v6.3", "--cpus", "8", "--seed", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[2].startswith("ok 1 mm_cid_compaction variant=v6.3 cpus=8 seed=1")


def test_vacuous_pass_exits_with_ksft_skip():
    """A mirror run that tested nothing is a skip (exit 4), with the reason."""
    out = emulator("run", "mm_cid_compaction", "--variant", "v6.3", "--cpus", "128")
    assert out.returncode == 4, out.stdout
    assert "# SKIP" in out.stdout and "vacuous" in out.stdout


def test_trace_file_holds_an_ftrace_like_trace(tmp_path):
    """--trace FILE writes one ftrace-like line per event."""
    trace = tmp_path / "trace.txt"
    out = emulator("run", "basic", "--cpus", "4", "--trace", str(trace))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = trace.read_text().splitlines()
    assert any(": sched_switch: prev_comm=" in line for line in lines)
    assert any(": rseq_update: cpu_id=" in line for line in lines)
    assert any(": sched_migrate_task: " in line for line in lines)


def test_stats_prints_counters():
    """--stats prints lock and atomic counts per context switch."""
    out = emulator("run", "basic", "--cpus", "4", "--stats")
    assert out.returncode == 0
    assert "# locks_per_switch:" in out.stdout and "# context_switches:" in out.stdout


@pytest.mark.parametrize("args, message", [
    (("run", "nosuchtest"), "unknown selftest 'nosuchtest'"),
    (("run", "basic", "--variant", "v0.0"), "unknown variant 'v0.0'"),
    (("run", "basic", "--variant", "missing_patch.py"), "does not exist"),
    (("run", "basic", "--cpus", "0"), "must be in 1..1024"),
    (("run", "basic", "--cpus", "many"), "invalid int value"),
    (("run", "basic", "--trace", "/nonexistent/dir/t.txt"), "cannot write trace file"),
    (("frobnicate",), "invalid choice"),
    ((), "a command is needed"),
])
def test_bad_input_gets_one_line_and_exit_2(args, message):
    """Bad input: one clear line on stderr, exit status 2, no traceback."""
    out = emulator(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_patch_file_runs_from_the_command_line(tmp_path):
    """A patch file deriving from a registered variant runs under `run --variant FILE`."""
    patch = tmp_path / "lazy_put.py"
    patch.write_text(
        "from emulator.variants import get_variant\n\n"
        "class NoHandOver(get_variant('v6.3')):\n"
        "    '''Drop the same-mm hand-over: always put and get.'''\n"
        "    name = 'no-hand-over'\n"
        "    def switch_mm_cid(self, rq, prev, next):\n"
        "        if prev.mm_cid_active:\n"
        "            self.mm_cid_put(prev.mm, prev.mm_cid)\n"
        "            prev.mm_cid = -1\n"
        "        if next.mm_cid_active:\n"
        "            next.mm_cid = self.mm_cid_get(next.mm)\n")
    out = emulator("run", "mm_cid_compaction", "--variant", str(patch), "--cpus", "4")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "variant=no-hand-over" in out.stdout


def test_run_with_a_strategy_names_it_in_the_replay_line():
    """--strategy explores, and the replay line carries it."""
    out = emulator("run", "basic", "--cpus", "4", "--strategy", "random:p=0.05")
    assert out.returncode == 0, out.stdout + out.stderr
    bad = emulator("run", "basic", "--strategy", "chaos")
    assert bad.returncode == 2 and "unknown strategy 'chaos'" in bad.stderr
