"""Ctrl-C and SIGTERM: a run stops at its next safe point and ends as an
abandoned run, a command stops cleanly with what it found, and an interrupt is
never a failure of the variant (emulator.interrupt).

The first tests raise a signal inside kernel code of this process; the last
ones start the commands as processes of their own and signal them at moments
Hypothesis draws."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from emulator import Machine, interrupt
from emulator.errors import EmulationFailure, Interrupted, KernelBug, UsageError
from emulator.explore.campaign import Campaign
from emulator.explore.findings import FindingsFile
from emulator.explore.generated import generated_search, run_case
from emulator.explore.stateful import PuppetImage
from emulator.uapi.libc import pthread_create, pthread_join, usleep
from emulator.variants import get_variant

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A patch that fails as soon as a process creates a thread (test_replay's): campaigns
# over it find, shrink and report failures within seconds.
from test_replay import NO_THREADS  # noqa: E402


@pytest.fixture
def one_signal():
    """This process may take one signal per test: the second would be "a
    second Ctrl-C" and end it at once."""
    yield
    interrupt._state.received = interrupt._state.pending = None


def signalled_at(n, fail_threads=False, base="v6.4"):
    """A variant whose n-th sched_mm_cid_fork() raises SIGINT in this process,
    in the middle of kernel code, which goes on to its end (``went_on``)."""

    class SignalledAtFork(get_variant(base)):
        name = "signalled-at-fork"
        calls = 0
        went_on = False

        def sched_mm_cid_fork(self, t):
            cls = type(self)
            cls.calls += 1
            if cls.calls == n:
                signal.raise_signal(signal.SIGINT)      # the handler runs here
                cls.went_on = True
            if fail_threads and t.mm is self.k.cur.mm:
                raise KernelBug(f"BUG: no threads in this patch ({self.k.cur!r})")
            super().sched_mm_cid_fork(t)
    return SignalledAtFork


def threads_that_sleep():
    threads = [pthread_create(lambda _: usleep(1000) or 0) for _ in range(6)]
    for t in threads:
        pthread_join(t)
    return 0


def test_a_signal_in_kernel_code_ends_the_run_between_two_events(one_signal):
    """The signal comes in the middle of a kernel path, which runs to its
    end; the loop stops after the event, and the run ends as an abandoned run
    ends: no host thread, no kernel stack, the pinning and the handlers as
    they were, and Interrupted (a KeyboardInterrupt), never a failure."""
    variant = signalled_at(3)
    m = Machine(nr_cpus=4, variants=[variant], seed=1)
    handlers = [signal.getsignal(s) for s in interrupt.SIGNALS]
    affinity = os.sched_getaffinity(0)
    with pytest.raises(Interrupted, match="interrupted by SIGINT") as stopped:
        m.run(threads_that_sleep)
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert not isinstance(stopped.value, EmulationFailure)
    assert variant.went_on and variant.calls == 3
    assert not m.live_host_threads() and not m.engine.stacks
    assert os.sched_getaffinity(0) == affinity
    assert [signal.getsignal(s) for s in interrupt.SIGNALS] == handlers


def test_a_signal_between_two_steps_ends_a_step_by_step_run_at_the_next(one_signal):
    """Between two advance() calls the run is not running, but it is under
    way: the signal is recorded, and the next step ends the run."""
    m = Machine(nr_cpus=2, variants=["v6.4"], seed=1)
    m.start(PuppetImage())
    m.advance(1_000_000)
    signal.raise_signal(signal.SIGTERM)               # recorded, nothing raised here
    with pytest.raises(Interrupted, match="SIGTERM"):
        m.advance(1_000_000)
    assert not m.running and not m.live_host_threads()
    m.close()                                         # nothing left to abandon


def test_hypothesis_passes_an_interrupt_on_instead_of_reporting_it(one_signal):
    """Inside a search the interrupted run is neither a failing example nor a
    flaky one: Hypothesis re-raises it as it came."""
    variant = signalled_at(5)
    search = generated_search(lambda case: run_case(variant, case), 50, seed=1, cpus=(2,))
    with pytest.raises(Interrupted):
        search()


def test_an_interrupted_campaign_keeps_the_failure_it_was_shrinking(one_signal, tmp_path):
    """The signal comes while Hypothesis shrinks a failure (in the run of a
    failing example: the failure goes first, the next run stops): the campaign
    stops, keeps the failure as found, in its summary and in its findings
    file, and reports no failure of the interrupt."""
    campaign = Campaign(signalled_at(8, fail_threads=True), workload="generated", cpus=(2,),
                        seed=1)
    path = campaign.record_findings(str(tmp_path / "findings.jsonl"))
    with pytest.raises(Interrupted):
        campaign.run(runs=200, progress=False)
    assert list(campaign.failures) == ["kernel bug"]
    summary = campaign.summary()
    assert "interrupted by SIGINT" in summary and "python error" not in summary
    [record] = [json.loads(line) for line in open(path)]
    assert record["category"] == "kernel bug" and "interrupted before" in record["note"]
    assert record["first_line"].startswith("BUG: no threads")


def test_a_campaign_writes_each_failure_once_as_it_finds_it(tmp_path):
    """Each category's first failure goes to the findings file when the
    campaign records it; the same campaign again (the same failures, the same
    keys) appends nothing, and still reports them."""
    path = tmp_path / "findings.jsonl"
    found = KernelBug("BUG: no threads in this patch (gen[2])")
    found.report = "replay: python -m emulator replay emu1-abc"
    for _ in range(2):
        campaign = Campaign("v6.4", workload="generated", cpus=(2,), seed=1, out=io.StringIO())
        campaign.record_findings(str(path))
        campaign.started = time.monotonic()
        campaign._failed(found)
        campaign._failed(found)
        assert campaign.failures["kernel bug"].count == 2
        [line] = path.read_text().splitlines()
    record = json.loads(line)
    assert record["category"] == "kernel bug" and record["key"] == "emu1-abc"
    assert record["first_line"] == "BUG: no threads in this patch (gen[2])"
    assert record["replay"] == "python -m emulator replay emu1-abc" and "note" not in record


def test_a_findings_file_cut_short_by_a_crash_is_read_and_a_foreign_file_refused(tmp_path):
    path = tmp_path / "f.jsonl"
    record = {"category": "P1", "first_line": "P1 uniqueness: ...", "key": "emu1-abc"}
    path.write_text(json.dumps(record) + "\n" + '{"category": "P2", "fir')   # torn by SIGKILL
    f = FindingsFile(str(path))
    assert not f.add(dict(record))                    # had it
    assert f.add({"category": "P2", "first_line": "P2 bound", "key": None})
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["category"] == "P2" and len(lines) == 3
    assert FindingsFile(str(path)).recorded == {("P1", "emu1-abc"), ("P2", "P2 bound")}
    (tmp_path / "notes.txt").write_text("my notes\nmore\n")
    with pytest.raises(UsageError, match="line 1: not a finding"):
        FindingsFile(str(tmp_path / "notes.txt"))
    with pytest.raises(UsageError, match="no such directory"):
        FindingsFile(str(tmp_path / "nowhere" / "f.jsonl"))


# -- the commands, signalled for real ---------------------------------------------------------

ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},
       "PYTHONPATH": ROOT}


def catches_sigterm(pid):
    """True once *pid* has a handler for SIGTERM: the command's own (Python
    leaves SIGTERM to the system), installed as it starts."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


class Signalled:
    """A command started in a session of its own, signalled (alone, or with
    its process group as by Ctrl-C) once ready (its handlers installed, its
    workers' too) after *delay* s, and again *again* s later if asked; what it
    printed, its status, how long it took to end, and every process it
    started."""

    def __init__(self, args, cwd, signum, delay, again=None, workers=0, group=False,
                 timeout=60):
        self.args, self.signum = args, signum
        p = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.children = {}
        deadline = time.monotonic() + timeout
        try:
            while not self._ready(p, workers):
                assert p.poll() is None, f"{args} ended before it was ready"
                assert time.monotonic() < deadline, f"{args} not ready after {timeout} s"
                time.sleep(0.02)
            time.sleep(delay)
            self.finished_first = p.poll() is not None
            self._look(p)
            send = (lambda: os.killpg(p.pid, signum)) if group else (lambda: p.send_signal(signum))
            if p.poll() is None:
                send()
            self.signalled = time.monotonic()
            if again is not None:
                time.sleep(again)
                self._look(p)
                if p.poll() is None:
                    send()
            self.out, self.err = p.communicate(timeout=timeout)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()
        self.took = time.monotonic() - self.signalled
        self.status = p.returncode
        self.left = self._left_behind()

    def _ready(self, p, workers):
        if not catches_sigterm(p.pid):
            return False
        self._look(p)
        return sum(catches_sigterm(pid) for pid in self.children) >= workers

    def _look(self, p):
        try:
            for child in psutil.Process(p.pid).children(recursive=True):
                self.children.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def _left_behind(self, grace=15.0):
        deadline = time.monotonic() + grace
        while True:
            alive = []
            for child in self.children.values():
                try:
                    if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                        alive.append(child)
                except psutil.Error:
                    pass
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)

    def check_clean(self, statuses):
        text = self.out + self.err
        where = f"{' '.join(self.args[2:])}: status {self.status}\n{text[-3000:]}"
        assert self.status in statuses, where
        assert "Traceback" not in text and "Exception ignored" not in text, where
        assert not self.left, where
        return text


COMMANDS = ("explore-generated", "explore-stateful", "run", "replay")
# Made by the code the replay runs (a key names the emulator's source).
REPLAY_KEY = ("from emulator.explore.mirror import selftest_replay\n"
              "from emulator.variants import get_variant\n"
              "print(selftest_replay('mm_cid_compaction', get_variant('v7.0'), 1024, 1))")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
@settings(max_examples=14, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(command=st.sampled_from(COMMANDS), signum=st.sampled_from(interrupt.SIGNALS),
       moment=st.floats(0, 1), again=st.none() | st.floats(0, 1.5))
@example(command="explore-generated", signum=signal.SIGINT, moment=0.45, again=None)
@example(command="explore-stateful", signum=signal.SIGTERM, moment=0.6, again=0.05)
@example(command="explore-generated", signum=signal.SIGINT, moment=0.7, again=0.3)
def test_a_command_signalled_at_any_moment_stops_cleanly_with_what_it_found(
        tmp_path_factory, command, signum, moment, again):
    """``explore`` (starting, running, shrinking, printing its summary),
    ``run`` and ``replay``, signalled once or twice (the second ends it at
    once): exit status 130, no traceback, no "Exception ignored", no process
    left, no failure but the patch's, and every failure printed in the
    findings file."""
    cwd = tmp_path_factory.mktemp("signalled")
    (cwd / "no_threads.py").write_text(NO_THREADS)
    findings = cwd / "findings.jsonl"
    if command.startswith("explore"):
        # Start-up, the first runs, a failure found, shrunk and reported, the next...
        args = ["explore", "--variant", "no_threads.py", "--workload", command[8:],
                "--time", "60s", "--seed", "1", "--findings", str(findings)]
        delay = 3.5 * moment
    else:
        # Start-up or the run, which takes longer than a second.
        key = subprocess.run([sys.executable, "-c", REPLAY_KEY], env=ENV, capture_output=True,
                             text=True, check=True).stdout.split()[-1]
        args = ["replay", key] if command == "replay" else \
            ["run", "mm_cid_compaction", "--variant", "v7.0", "--cpus", "1024"]
        delay = 1.0 * moment
    done = Signalled([sys.executable, "-m", "emulator", *args], cwd, signum, delay, again)
    assert not done.finished_first, "the command ended before the signal"
    text = done.check_clean({130})
    assert done.took < 20, f"ended {done.took:.1f} s after the signal"
    if command.startswith("explore"):
        lines = findings.read_text().splitlines() if findings.exists() else []
        recorded = {(r["category"], r["key"]) for r in map(json.loads, lines)}
        printed = re.findall(r"^finding, ([^:]+): .*\n  python -m emulator replay (\S+)$",
                             done.err, re.M)
        printed += re.findall(r"^  failures, ([^:]+): \d+ .*\n    replay: python -m emulator "
                              r"replay (\S+)$", done.out, re.M)
        assert set(printed) <= recorded, text
        assert {category for category, _ in recorded} <= {"kernel bug"}, text
        assert re.findall(r"failures, ([^:]+):", done.out) in ([], ["kernel bug"]), text
        if again is None:
            assert f"interrupted by {signal.Signals(signum).name}" in done.out, text
    elif again is None:
        assert re.search(r"^Bail out! interrupted by ", done.out, re.M), text
        assert "not ok" not in text


PYTEST_FILE = '''\
from hypothesis import given, settings, strategies as st

from emulator import Machine
from emulator.workload import Program, repeat, run, sleep, thread, yield_


def churn(n):
    return Program(repeat(n, thread(Program(run(5_000), sleep(20_000), yield_()))), run(10_000))


@settings(max_examples=10 ** 6, deadline=None, database=None)
@given(seed=st.integers(0, 1 << 16), nr_cpus=st.sampled_from([2, 8, 64]))
def test_searched_runs(seed, nr_cpus):
    assert Machine(nr_cpus=nr_cpus, variants=["v6.4"], seed=seed).run(churn(20)) == 0


def test_plain_runs():
    for seed in range(10 ** 6):
        assert Machine(nr_cpus=64, variants=["v6.4"], seed=seed).run(churn(40)) == 0
'''


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
@settings(max_examples=1, deadline=None, database=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(workers=st.sampled_from([0, 2]), signum=st.sampled_from(interrupt.SIGNALS),
       group=st.booleans(), delay=st.floats(0, 3))
@example(workers=0, signum=signal.SIGINT, group=True, delay=1.5)      # Ctrl-C
@example(workers=2, signum=signal.SIGTERM, group=False, delay=2.0)    # a CI job's kill
@example(workers=2, signum=signal.SIGINT, group=True, delay=0.7)
def test_pytest_signalled_stops_as_on_keyboard_interrupt(tmp_path_factory, workers, signum,
                                                         group, delay):
    """pytest, alone or with xdist workers, signalled during its runs (the
    process alone, as a CI job does, or its whole group, as Ctrl-C does):
    pytest's summary and exit status 2, no test failed, no worker left."""
    cwd = tmp_path_factory.mktemp("pytest_signalled")
    (cwd / "test_long.py").write_text(PYTEST_FILE)
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:benchmark",
            "-q", "test_long.py"] + (["-n", str(workers)] if workers else [])
    done = Signalled(args, cwd, signum, delay, workers=workers, group=group)
    text = done.check_clean({2})
    # Ours, or xdist's when a worker's interrupt reached the controller first.
    assert re.search(r"!!! .*(Interrupted|KeyboardInterrupt)", text), text
    assert " failed" not in text and " error" not in text and "Flaky" not in text, text


def test_an_interrupt_grouped_with_failures_by_hypothesis_still_stops_pytest(tmp_path):
    """Hypothesis may report an interrupt with the failures it found as one
    BaseExceptionGroup: the plugin makes it the interrupt it is."""
    (tmp_path / "test_group.py").write_text(
        "from emulator.errors import Interrupted\n"
        "import signal\n\n"
        "def test_group():\n"
        "    raise BaseExceptionGroup('found 2', [ValueError('x'), Interrupted(signal.SIGINT)])\n\n"
        "def test_never_run():\n"
        "    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "test_group.py"], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Interrupted: interrupted by SIGINT" in done.stdout and "failed" not in done.stdout


def test_a_signal_during_an_import_lets_the_import_finish_and_acts_after(one_signal, tmp_path,
                                                                           monkeypatch):
    """Raised at once, the interrupt would leave a module half initialised for
    the rest of the process (pytest's summary then failed to import
    Hypothesis, signalled while a test file imported it: exit status 1).  In
    an import it is recorded; the import ends, and the next checkpoint acts."""
    (tmp_path / "signals_while_imported.py").write_text(
        "import signal\n"
        "signal.raise_signal(signal.SIGINT)\n"
        "FINISHED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    token = interrupt.enter()
    try:
        import signals_while_imported
        assert signals_while_imported.FINISHED
        with pytest.raises(Interrupted, match="SIGINT"):
            interrupt.checkpoint()
    finally:
        interrupt.leave(token)


def test_pytest_signalled_while_importing_a_test_file_stops_after_collection(tmp_path):
    """The end-to-end story: pytest's summary, status 2, the file imported whole."""
    (tmp_path / "test_signalled_import.py").write_text(
        "import signal\n"
        "signal.raise_signal(signal.SIGINT)\n"
        "print('imported to the end')\n\n"
        "def test_never_run():\n"
        "    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s",
                           "test_signalled_import.py"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "imported to the end" in done.stdout and "Interrupted" in done.stdout
    assert "passed" not in done.stdout


def test_an_interrupt_crosses_processes_as_itself():
    """A worker of compare -j J stopped by the signal returns its Interrupted
    to the parent pickled: it is made again from its signal, not from its
    message ("'interrupted by SIGTERM' is not a valid Signals" broke the pool)."""
    import pickle
    again = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert isinstance(again, Interrupted) and again.signum == signal.SIGTERM
    assert str(again) == "interrupted by SIGTERM"
