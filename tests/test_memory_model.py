"""The memory models (emulator/kernel/memory_model.py) against the kernel's own
litmus tests (litmus/memory-model/: tools/memory-model/litmus-tests/;
litmus/atomic/: Documentation/litmus-tests/atomic/), and under the machine's
primitives (emulator/kernel/locking.py)."""

import os
import re
import subprocess
import sys

import pytest

from emulator.errors import UsageError
from emulator.explore.litmus import (
    LitmusError, default_litmus_files, judge, load_litmus, parse_litmus, run_litmus, verdict,
)
from emulator.kernel.memory_model import MODELS, WeakModel
from emulator.machine import Machine

TESTS = default_litmus_files() + default_litmus_files("atomic")


def _name(path):
    return path.rsplit("/", 1)[-1][:-len(".litmus")]


def test_the_in_tree_litmus_tests_are_all_here():
    """The 35 tests of tools/memory-model/litmus-tests/, each with its Result line."""
    tests = [load_litmus(p) for p in default_litmus_files()]
    assert len(tests) == 35
    assert {t.result for t in tests} == {"Never", "Sometimes"}
    assert sum(t.result == "Never" for t in tests) == 23


@pytest.mark.parametrize("mode", MODELS)
@pytest.mark.parametrize("path", TESTS, ids=_name)
def test_no_mode_produces_what_a_litmus_test_forbids(path, mode):
    """judgelitmus.sh's comparison: a mode may be stronger than the LKMM (a
    Sometimes it cannot produce is a miss, with its reason), never weaker."""
    test = load_litmus(path)
    observed, pos, neg = judge(test, run_litmus(test, mode))
    assert pos + neg > 0, "no outcome at all: the search ran nothing"
    v, why = verdict(test, mode, observed)
    assert v != "FAIL", f"{test.name} [{mode}]: {why} ({pos} of {pos + neg} outcomes)"
    if v == "miss":
        assert why and not why.startswith("not explained"), f"{test.name} [{mode}]: {why}"


@pytest.mark.parametrize("mode", ["tso", "weak"])
def test_the_machine_meets_only_outcomes_the_model_allows(mode):
    """Each test run as kernel threads on a Machine (the primitives of
    locking.py, as klitmus7 runs it on hardware): every outcome met is one the
    exhaustive search of the model produces, so none a Never test forbids; and
    the weak machine meets store buffering and message passing."""
    from emulator.explore.litmus import machine_supports, run_on_machine
    met = {}
    for path in default_litmus_files():
        test = load_litmus(path)
        assert machine_supports(test), test.name
        found = run_on_machine(test, mode, runs=10)
        assert set(found) <= run_litmus(test, mode), test.name
        met[test.name] = sum(c for o, c in found.items() if test.cond(dict(o)))
    assert met["SB+poonceonces"] > 0
    if mode == "weak":                 # reorderings TSO cannot make
        assert met["Z6.0+pooncelock+pooncelock+pombonce"] + met["MP+poonceonces"] > 0


def test_weak_produces_every_sometimes_but_load_buffering():
    """The weak mode reaches what the LKMM allows, except load buffering, which a
    step simulator executing loads in order cannot show."""
    missed = []
    for path in TESTS:
        test = load_litmus(path)
        if test.result == "Sometimes" and judge(test, run_litmus(test, "weak"))[0] == "Never":
            missed.append(test.name)
    assert missed == ["LB+poonceonces"]


def test_tso_reorders_only_a_store_with_a_later_load():
    """x86-TSO: store buffering (SB, R) shows; message passing and IRIW do not."""
    def observed(name):
        return judge(load_litmus(_path(name)), run_litmus(load_litmus(_path(name)), "tso"))[0]
    assert observed("SB+poonceonces") == "Sometimes"
    assert observed("SB+rfionceonce-poonceonces") == "Sometimes"
    assert observed("R+poonceonces") == "Sometimes"
    assert observed("MP+poonceonces") == "Never"
    assert observed("IRIW+poonceonces+OnceOnce") == "Never"


def _path(name):
    return next(p for p in TESTS if _name(p) == name)


@pytest.mark.parametrize("kind,test", [("rmb", "MP+fencewmbonceonce+fencermbonceonce"),
                                        ("mb", "SB+fencembonceonces"),
                                        ("wmb", "S+fencewmbonceonce+poacquireonce")])
def test_a_weak_model_that_drops_a_barrier_fails_the_suite(monkeypatch, kind, test):
    """The suite can fail: the weak model with one barrier made a no-op produces
    the outcome the test that barrier is for forbids."""
    fence = WeakModel.fence

    def broken(self, c, k):
        if k != kind:
            fence(self, c, k)
    monkeypatch.setattr(WeakModel, "fence", broken)
    t = load_litmus(_path(test))
    observed, pos, _ = judge(t, run_litmus(t, "weak"))
    assert verdict(t, "weak", observed)[0] == "FAIL" and pos > 0


def test_the_reader_takes_a_test_written_here():
    """A litmus test outside the tree: cmpxchg, if, atomic_inc; failed cmpxchg is unordered."""
    t = parse_litmus("""C cmpxchg-fail-unordered-mine

(*
 * Result: Sometimes
 *)

{}

P0(int *x, int *y, int *z)
{
	int r0;
	int r1;

	WRITE_ONCE(*x, 1);
	r1 = cmpxchg(z, 1, 0);
	r0 = READ_ONCE(*y);
}

P1(int *x, int *y, int *z)
{
	int r0;

	WRITE_ONCE(*y, 1);
	r1 = cmpxchg(z, 1, 0);
	if (r1 == 0)
		atomic_inc(z);
	r0 = READ_ONCE(*x);
}

exists (0:r0=0 /\\ 1:r0=0)
""".replace("\tr1 = cmpxchg(z, 1, 0);\n\tif", "\tint r1;\n\tr1 = cmpxchg(z, 1, 0);\n\tif"))
    assert judge(t, run_litmus(t, "weak"))[0] == "Sometimes"
    assert judge(t, run_litmus(t, "tso"))[0] == "Never"      # LOCK CMPXCHG: a full barrier
    assert judge(t, run_litmus(t, "sc"))[0] == "Never"


@pytest.mark.parametrize("text,message", [
    ("P0(int *x) { }", "not a C litmus test"),
    ("C t\n{}\nP0(int *x) { WRITE_ONCE(*x, 1); }\n", "no exists clause"),
    ("C t\n{}\nP0(int *x) { frobnicate(x); }\nexists (x=1)", "unknown primitive frobnicate()"),
])
def test_a_bad_litmus_test_is_one_clear_error(text, message):
    with pytest.raises(LitmusError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_litmus(text, "bad.litmus")


def test_a_bad_memory_model_is_a_usage_error():
    with pytest.raises(UsageError, match="memory_model must be one of sc, tso, weak"):
        Machine(nr_cpus=2, memory_model="arm64")


def _message_passing(mode, seed, barriers):
    """The kernel's MP pattern on the machine: a kthread on CPU 1 writes data
    then flag, CPU 0 spins on flag then reads data; what it read."""
    from emulator.kernel.locking import READ_ONCE, WRITE_ONCE, cpu_relax, smp_rmb, smp_wmb

    class Shared:
        data = 0
        flag = 0
    d = Shared()

    def writer(_):
        WRITE_ONCE(d, "data", 1)
        if barriers:
            smp_wmb()
        WRITE_ONCE(d, "flag", 1)

    def reader(k):
        k.kthread_create_on_cpu(writer, None, 1, "writer")
        while not READ_ONCE(d, "flag"):
            cpu_relax()
        if barriers:
            smp_rmb()
        return READ_ONCE(d, "data")
    return Machine(nr_cpus=2, seed=seed, memory_model=mode).run_kernel(reader)


def test_message_passing_on_the_machine_needs_its_barriers_in_weak_mode_only():
    """Without smp_wmb()/smp_rmb() the weak machine lets CPU 0 see the flag and
    not the data on some seeds; with them never; sc and tso never reorder it."""
    seeds = range(24)
    assert 0 in {_message_passing("weak", s, False) for s in seeds}
    assert {_message_passing("weak", s, True) for s in seeds} == {1}
    assert {_message_passing("tso", s, False) for s in seeds} == {1}
    assert {_message_passing("sc", s, False) for s in seeds} == {1}


def test_a_spinlock_orders_what_it_protects_on_the_weak_machine():
    """MP through a lock: the reader that takes the lock after the writer
    released it sees everything the writer stored before the release."""
    from emulator.kernel.locking import (
        READ_ONCE, WRITE_ONCE, cpu_relax, raw_spin_lock, raw_spin_unlock, raw_spinlock_t,
    )

    def run(seed):
        class Shared:
            data = 0
            flag = 0
        d = Shared()
        lock = raw_spinlock_t("test_lock")

        def writer(_):
            WRITE_ONCE(d, "data", 1)
            raw_spin_lock(lock)
            WRITE_ONCE(d, "flag", 1)
            raw_spin_unlock(lock)

        def reader(k):
            k.kthread_create_on_cpu(writer, None, 1, "writer")
            while True:
                raw_spin_lock(lock)
                flag = READ_ONCE(d, "flag")
                raw_spin_unlock(lock)
                if flag:
                    return READ_ONCE(d, "data")
                cpu_relax()
        return Machine(nr_cpus=2, seed=seed, memory_model="weak").run_kernel(reader)
    assert {run(s) for s in range(16)} == {1}


def test_store_buffering_on_the_machine_needs_smp_mb_in_tso_mode():
    """SB on the tso machine: both CPUs read the other's flag as 0 on some seed
    without smp_mb(), on none with it."""
    from emulator.kernel.locking import READ_ONCE, WRITE_ONCE, cpu_relax, smp_mb

    def run(seed, mb):
        class Shared:
            x = 0
            y = 0
        d = Shared()
        seen = {}        # the harness's own notes (not shared memory of the model)

        def wait_for(key):
            while key not in seen:
                cpu_relax()

        def p1(_):
            WRITE_ONCE(d, "y", 1)
            seen["w1"] = True
            if mb:
                smp_mb()
            wait_for("w0")
            seen[1] = READ_ONCE(d, "x")

        def p0(k):
            k.kthread_create_on_cpu(p1, None, 1, "p1")
            WRITE_ONCE(d, "x", 1)
            seen["w0"] = True
            if mb:
                smp_mb()
            wait_for("w1")
            seen[0] = READ_ONCE(d, "y")
            wait_for(1)
            return seen[0], seen[1]
        return Machine(nr_cpus=2, seed=seed, memory_model="tso").run_kernel(p0)
    assert (0, 0) in {run(s, False) for s in range(24)}
    assert (0, 0) not in {run(s, True) for s in range(24)}


def test_the_failure_report_shows_the_stores_in_flight():
    """A failing weak-mode run names its memory model, the stores some CPU may
    still not see, and a replay command that rebuilds it in weak mode."""
    from emulator.errors import EmulationFailure
    from emulator.kernel.locking import WRITE_ONCE

    class Shared:
        name = "shared"
        flag = 0
    d = Shared()

    def body(k):
        WRITE_ONCE(d, "flag", 1)
        WRITE_ONCE(d, "flag", 2)
        raise EmulationFailure("stop here")
    m = Machine(nr_cpus=2, seed=1, memory_model="weak")
    with pytest.raises(EmulationFailure) as info:
        m.run_kernel(body)
    report = info.value.report
    assert "memory_model=weak" in report
    flight = report[report.index("stores in flight:"):report.index("minimal trace")]
    assert "\n  shared.flag: 0@" in flight and "-> 2@" in flight
    assert "memory_model='weak'" in report


@pytest.mark.parametrize("mode", ["tso", "weak"])
def test_a_run_under_a_memory_model_replays_from_its_seed(mode):
    """The model's choices come from the run's chooser: same seed, same trace."""
    from selftests.rseq import mm_cid_compaction_test as mirror

    def trace(seed):
        m = Machine(nr_cpus=4, variants=["v7.0"], seed=seed, memory_model=mode, trace=True)
        mirror.run(m)
        return m.trace_text()
    assert trace(5) == trace(5)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def emulator(*args, cwd):
    return subprocess.run([sys.executable, "-m", "emulator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})


def test_the_litmus_command_prints_the_table(tmp_path):
    out = emulator("litmus", "--memory-model", "weak", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| test | expected | weak |" in out.stdout
    assert "| SB+poonceonces | Sometimes | Sometimes |" in out.stdout
    assert "# LB+poonceonces [weak]: miss: no load buffering" in out.stdout
    bad = tmp_path / "bad.litmus"
    bad.write_text("C bad\n{}\nP0(int *x) { WRITE_ONCE(*x, 1); }\n")
    out = emulator("litmus", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no exists clause" in out.stderr


def test_a_weak_failure_replays_in_weak_mode(tmp_path):
    """--memory-model on run goes into the replay key, and the replay runs in
    that mode, its report listing the stores in flight."""
    patch = os.path.join(ROOT, "fixtures", "patches", "cid_bit_not_set.py")
    out = emulator("run", "mm_cid_compaction", "--variant", patch, "--cpus", "4",
                   "--memory-model", "weak", cwd=tmp_path)
    assert out.returncode == 1 and "memory_model=weak" in out.stdout
    key = re.search(r"python -m emulator replay (emu1-[\w-]+)", out.stdout).group(1)
    again = emulator("replay", key, cwd=tmp_path)
    assert again.returncode == 1 and "memory_model=weak" in again.stdout
    assert "stores in flight:" in again.stdout
    assert emulator("run", "basic", "--memory-model", "arm64", cwd=tmp_path).returncode == 2


def test_pytest_memory_model_builds_every_machine_in_that_mode(tmp_path):
    """``pytest --memory-model=tso``: the machines a test builds without
    memory_model= are tso; a bad mode is a usage error."""
    (tmp_path / "test_mode.py").write_text(
        "from emulator import Machine\n"
        "def test_mode():\n"
        "    assert Machine(nr_cpus=2).memory_model == 'tso'\n")
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *a], cwd=tmp_path,
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert run("--memory-model=tso", "test_mode.py").returncode == 0
    assert run("test_mode.py").returncode == 1           # sc by default
    bad = run("--memory-model=arm64", "test_mode.py")
    assert bad.returncode != 0 and "must be one of sc, tso, weak" in bad.stderr


def test_on_the_machine_each_site_reads_fresh_stale_or_random_for_the_whole_run():
    """Swarm-style site modes (memory_model.py): a run draws once per site
    (object type, field) whether its loads read the newest store, the oldest
    the model allows, or one at random; the view still bounds every choice."""
    from emulator.kernel.memory_model import WeakModel

    class Shared:
        x = 0
    draws = []

    def run(mode):
        d = Shared()
        d.x = 0

        def below(n):
            draws.append(n)
            return mode if n == 3 else n - 1        # the site's mode; else the oldest of 2
        w = WeakModel(2, below, now=lambda: 0, window_ns=50_000)
        w.store(1, d, "x", 2)
        first = [w.load(0, d, "x") for _ in range(2)]
        w.fence(1, "mb")
        w.fence(0, "mb")                 # CPU 0 now ordered after CPU 1's stores
        return first, w.load(0, d, "x"), w.stale_reads, w.in_flight()[-1]
    assert run(WeakModel.SITE_FRESH)[:3] == ([2, 2], 2, 0)
    first, after, stale, note = run(WeakModel.SITE_STALE)
    assert first == [0, 0] and after == 2 and stale == 2
    assert "oldest store allowed at: Shared.x; 2 stale reads" in note
    draws.clear()
    first, after, _, _ = run(WeakModel.SITE_RANDOM)
    assert draws.count(3) == 1            # the site's mode is drawn once, then per load
    assert first == [0, 0] and after == 2


def test_the_litmus_enumeration_draws_no_site_mode():
    """Off the machine (no window) loads choose by the chooser alone, so the
    enumeration takes every store a load may read, as before."""
    from emulator.kernel.memory_model import WeakModel

    class Shared:
        x = 0
    w = WeakModel(2, lambda n: 0)
    assert w.sites is None
    d = Shared()
    w.store(1, d, "x", 1)
    assert w.load(0, d, "x") == 1 and w.stale_reads == 0


def test_under_a_strategy_a_path_lingers_after_storing_to_a_lingering_site():
    """Per run each store site lingers with probability 1/LINGER_ONE_IN: the
    path that stored there pauses at its next scheduling point (other CPUs
    run while the store is in flight); never under sc, nor without a strategy."""
    from emulator.explore.strategies import ScriptStrategy
    from emulator.kernel.locking import READ_ONCE, WRITE_ONCE
    from emulator.kernel.memory_model import WeakModel

    def run(seed, mode="weak", strategy=True):
        class Shared:
            x = 0
        d = Shared()

        def body(k):
            WRITE_ONCE(d, "x", 1)
            before = k.engine.now
            READ_ONCE(d, "x")                # the next scheduling point
            mem = k.memory_model
            # (a run's access sites may also wait for another CPU: see below)
            return (k.engine.now - before, bool(mem and mem.store_sites.get(("Shared", "x"))),
                    mem.postpones if mem else 0)
        m = Machine(nr_cpus=2, seed=seed, memory_model=mode,
                    strategy=ScriptStrategy() if strategy else None)
        return m.run_kernel(body)
    runs = [run(s) for s in range(24)]
    lingered = [paused for paused, n, _ in runs if n]
    assert lingered and len(lingered) < len(runs)
    assert all(0 < paused <= WeakModel.LINGER_MAX_NS for paused in lingered)
    assert all(paused == 0 for paused, n, postponed in runs if not n and not postponed)
    assert {run(s, strategy=False)[0] for s in range(24)} == {0}
    assert {run(s, mode="sc") for s in range(8)} == {(0, False, 0)}


def test_a_bad_count_of_memory_search_examples_is_a_usage_error(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    run = lambda *a, **env: subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *a], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": ROOT, **env})
    bad = run("--emu-memory-examples=0", "test_x.py")
    assert bad.returncode != 0 and "--emu-memory-examples 0: must be >= 1" in bad.stderr
    bad = run("test_x.py", EMU_MEMORY_EXAMPLES="lots")
    assert bad.returncode != 0 and "EMU_MEMORY_EXAMPLES='lots'" in bad.stderr
    assert run("--emu-memory-examples=3", "test_x.py").returncode == 0


def test_under_a_strategy_a_path_waits_at_an_access_for_another_cpus_access():
    """Per run each access site (primitive, object type) postpones with
    probability 1/POSTPONE_ONE_IN, each access there with 1/POSTPONE_EACH: the
    path stops until another CPU reaches an access to the same object, then
    goes on as soon as that CPU lets it (active testing, Sen PLDI 2008), or
    at its drawn bound.  Here every access postpones: kthread A on CPU 0 waits
    at its READ_ONCE(x) for B, which reads x on CPU 1 after 1 ms."""
    from emulator.explore.strategies import ScriptStrategy
    from emulator.kernel.locking import READ_ONCE

    def run(seed):
        class Shared:
            x = 0
        d = Shared()
        seen = {}

        def other(k):
            k.msleep(1)
            seen["b"] = k.engine.now
            READ_ONCE(d, "x")

        def body(k):
            k.kthread_create_on_cpu(other, k, 1, "B")
            start = k.engine.now
            READ_ONCE(d, "x")
            return start, k.engine.now, seen.get("b"), k.memory_model.postpones
        m = Machine(nr_cpus=2, seed=seed, memory_model="weak", strategy=ScriptStrategy())
        return m.run_kernel(body)

    saved = WeakModel.POSTPONE_ONE_IN, WeakModel.POSTPONE_EACH, WeakModel.POSTPONE_MAX_NS
    WeakModel.POSTPONE_ONE_IN = WeakModel.POSTPONE_EACH = 1
    WeakModel.POSTPONE_MAX_NS = bound = 40_000_000
    try:
        runs = [run(seed) for seed in range(8)]
    finally:
        WeakModel.POSTPONE_ONE_IN, WeakModel.POSTPONE_EACH, WeakModel.POSTPONE_MAX_NS = saved
    woken = [r for r in runs if r[2] is not None and r[1] - r[2] <= 1]
    # most draws outlast B's sleep: A goes on when B reads x, not at its bound
    assert len(woken) >= 6, runs
    assert all(postpones >= 1 for _, _, _, postpones in runs)
    # a drawn bound shorter than B's sleep ends the wait without B
    assert all(end - start <= bound + 2000 for start, end, _, _ in runs)


def test_v6_4_notes_its_finding_only_when_the_cid_cleared_is_the_one_a_switch_took():
    """v6.4's recorded store-buffering finding (fe90f3967bdb) is excused only
    in a run where a remote clear took the very cid that the CPU switching in
    a user of the mm read (before the clear or, stale, after it); a clear of
    a CPU running another mm's task, or of another cid, notes nothing, and
    the same P11 without the cause is reported."""
    from types import SimpleNamespace
    from emulator.checks.invariants import InvariantViolation
    from emulator.explore.findings import known_finding
    from emulator.variants import get_variant
    from emulator.variants.mm_cid_v6_4 import (
        CLEARED_CID_IN_USE, MM_CID_UNSET, V6_4_MISSING_SWITCH_MM_BARRIER)

    def notes(*events):
        k = Machine(nr_cpus=2, variants=["v6.4"]).kernel
        mm, other_mm = object(), object()
        slot = SimpleNamespace(cid=3)           # CPU 1's slot of mm: its newest value
        rq = SimpleNamespace(cpu=1, curr=SimpleNamespace(mm=mm, mm_cid_active=1, mm_cid=-1))
        for what, cid in events:
            if what == "got":                   # CPU 1's switch_mm_cid() reads its slot
                k.mm_cid.note_got_cid(rq, mm, slot, cid)
            elif what == "cleared":             # a remote path cleared CPU 1's cid
                slot.cid = MM_CID_UNSET
                k.mm_cid.note_cleared_cid(rq, mm, cid)
            else:                               # CPU 1 switches to another mm's task
                rq.curr = SimpleNamespace(mm=other_mm, mm_cid_active=1, mm_cid=-1)
        return k.causes
    assert notes(("got", 3), ("cleared", 3)) == {CLEARED_CID_IN_USE}
    assert notes(("cleared", 3), ("got", 3)) == {CLEARED_CID_IN_USE}     # its load stale
    assert notes(("cleared", 3), ("got", MM_CID_UNSET)) == set()         # its load fresh
    assert notes(("got", 2), ("cleared", 3)) == set()
    assert notes(("got", 3), ("other mm", None), ("cleared", 3)) == set()
    p11 = InvariantViolation("P11 held: t[3] on CPU 1 runs with mm_cid 3 of mm#2, which is not "
                             "set in its cid bitmap (another task may be given it)",
                             invariant="P11")
    v6_4 = get_variant("v6.4")
    assert known_finding(v6_4, p11, {CLEARED_CID_IN_USE}) == V6_4_MISSING_SWITCH_MM_BARRIER
    assert known_finding(v6_4, p11, set()) is None


@pytest.mark.parametrize("variant", ["v6.4", "seed-003"])
def test_forgetting_what_no_cpu_can_read_stale_changes_no_run(monkeypatch, variant):
    """The weak machine forgets the histories nothing is in flight in, and the view
    entries that can no longer order a read (WeakModel._sweep()), or its views grow
    with every location touched: sweeping at every access, at the default period or
    never, a stress run is the same run, stale reads and all."""
    from emulator.explore.stress import StressCase, run_stress
    case = StressCase(8, 7, "hackbench:2,fds=3,mode=thread,loops=10+pthread-max:6,2",
                      5_000_000, "random:p=0.02,max_ns=5000")
    default = WeakModel.SWEEP_MASK

    def run(mask):
        monkeypatch.setattr(WeakModel, "SWEEP_MASK", mask)
        machines = []
        run_stress(variant, case, on_machine=machines.append, memory_model="weak", trace=True)
        (m,) = machines
        return m.kernel.memory_model.stale_reads, m.trace_text()
    never = run((1 << 62) - 1)
    assert never[0] > 10
    assert run(default) == never
    assert run(0) == never
