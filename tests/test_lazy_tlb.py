"""Lazy-TLB mm references (the lazy_tlb subsystem, seed 004): what each
scheme costs at a switch and at teardown, where it is known to fail, and the
objection raised in the seed thread, in numbers."""

import pytest

from emulator import Machine
from emulator.checks.invariants import InvariantViolation
from emulator.explore.findings import known_finding
from emulator.uapi import libc
from emulator.uapi.sysfs import write_cpu_online
from emulator.variants import get_variant, load_variant
from emulator.workload import Program, fork, repeat, run, sleep, thread

SUBSYSTEM = "lazy_tlb"
US, MS = 1_000, 1_000_000
HOTPLUG_FIX = "fixtures/patches/shootdown_hotplug_fix.py"


def ping_pong(rounds=200):
    """Two threads of one mm on two CPUs, each sleeping and waking: every
    wake-up is idle -> user, every sleep user -> idle."""
    return Program(repeat(2, thread(Program(repeat(rounds, run(20 * US), sleep(30 * US))))),
                   sleep(20 * MS))


def test_refcount_pays_atomics_on_mm_count_at_each_lazy_switch_shootdown_none():
    """REFCOUNT: a grab going idle and a drop coming back (two atomics per
    round trip, on one cache line from both CPUs); the non-refcounting
    schemes: none."""
    stats = {}
    for name in ("refcount", "shootdown-v6.4", "seed-004-generation"):
        m = Machine(nr_cpus=2, seed=1, variants=[name])
        assert m.run(ping_pong()) == 0
        stats[name] = m.stats()
    ref = stats["refcount"]
    assert 0.5 < ref["lazy_tlb_atomics_per_switch"] <= 1.0
    assert ref["lazy_tlb_bounce_cpus_per_mm_ms"] > 1.5      # both CPUs write it every ms
    for name in ("shootdown-v6.4", "seed-004-generation"):
        assert stats[name]["lazy_tlb_atomics_per_switch"] == 0


def idle_cpu_keeps_the_child():
    """The child runs on CPU 1 and exits; CPU 1 idles until main comes."""
    child = Program(run(200 * US))
    return Program(fork(child), sleep(3 * MS), run(100 * US))


def test_an_idle_cpu_pins_a_dead_mm_under_refcount_and_shootdown_frees_it_at_once():
    """The child runs and exits on CPU 1, which then idles.  REFCOUNT keeps its
    mm until a user task runs on CPU 1 again (main, 3 ms later); shootdown
    IPIs CPU 1 in the exit's final TLB flush (the radix piggyback) and frees
    it at once."""
    def child():
        libc.sched_setaffinity(0, {1})
        libc.busy_wait(200_000)
        return 0

    def main():
        libc.sched_setaffinity(0, {0})
        libc.waitpid(libc.fork(child))
        libc.usleep(3000)
        libc.sched_setaffinity(0, {1})
        return 0
    waits, ipis = {}, {}
    for name in ("refcount", "shootdown-v6.4"):
        m = Machine(nr_cpus=2, seed=1, variants=[name])
        assert m.run(main) == 0
        waits[name] = m.kernel.lazy_stats.free_wait_ns
        ipis[name] = m.stats()["lazy_tlb_shootdown_ipis"]
    assert len(waits["refcount"]) == 1 and waits["refcount"][0] > 3 * MS
    # (shootdown frees main's mm too, at its exit: two frees)
    assert len(waits["shootdown-v6.4"]) == 2 and max(waits["shootdown-v6.4"]) < 20 * US
    assert ipis["refcount"] == 0 and ipis["shootdown-v6.4"] >= 1


def hotplug_race(variant, last_exit_us):
    """A thread of the process exits on CPU 2, which idles with its mm; CPU 2
    is taken offline while the process's last thread, on CPU 0, exits
    *last_exit_us* after it started."""
    m = Machine(nr_cpus=3, seed=1, variants=[variant])

    def lazy(_):
        libc.sched_setaffinity(0, {2})
        libc.busy_wait(50_000)
        return 0

    def last(_):
        libc.sched_setaffinity(0, {0})
        libc.usleep(last_exit_us)
        return 0

    def process():
        libc.pthread_join(libc.pthread_create(lazy, 0))
        libc.pthread_create(last, 0)
        libc.pthread_exit(None)

    def main():
        libc.sched_setaffinity(0, {1})
        pid = libc.fork(process)
        libc.usleep(200)
        write_cpu_online(2, 0)
        libc.waitpid(pid)
        return 0
    return m, main


@pytest.mark.parametrize("name", ["shootdown-v6.4", "seed-004-shoot-lazies"])
def test_shootdown_misses_a_cpu_going_offline_with_the_mm_loaded(name):
    """The hotplug exit race: between __cpu_disable() and idle_task_exit()
    the outgoing CPU still has the mm loaded but is in no mask the shootdown
    IPIs; the last exit then frees the mm under it.  Found in the ~20 us that
    take_cpu_down() runs with interrupts off; the fix's placement (the switch
    in sched_cpu_wait_empty()) and refcounting never fail."""
    found = []
    for delay in range(90, 130, 5):
        m, main = hotplug_race(name, delay)
        try:
            m.run(main)
        except InvariantViolation as exc:
            assert "P9 shootdown coverage: CPU 2 uses mm#2 lazily but is offline" in str(exc)
            assert known_finding(get_variant(name), exc, m.kernel.causes)
            found.append(delay)
    assert found
    for other in ("refcount", HOTPLUG_FIX):
        for delay in found:
            m, main = hotplug_race(load_variant(other), delay)
            assert m.run(main) == 0


def generation_teardown(idle_cpu, nr_cpus=4, until_ms=300):
    """Every CPU but *idle_cpu* runs a thread that computes and sleeps (a
    switch to user at each wake-up); a short process exits at 5 ms.  Returns
    the victim's wait from its last mmput() to its free (None: not freed by
    the end) and the generations counted."""
    m = Machine(nr_cpus=nr_cpus, seed=1, variants=["seed-004-generation"])
    k = m.kernel
    frees = {}

    def switcher(cpu):
        libc.sched_setaffinity(0, {cpu})
        while m.now < until_ms * MS:
            libc.busy_wait(200_000)
            libc.usleep(50)
        return 0

    def victim():
        libc.busy_wait(100_000)
        frees["pid"] = libc.getpid()
        return 0

    def main():
        libc.sched_setaffinity(0, {0})
        pids = [libc.fork(lambda c=c: switcher(c)) for c in range(nr_cpus) if c != idle_cpu]
        libc.usleep(5000)
        libc.waitpid(libc.fork(victim))
        frees["stalled_by"] = k.lazy_tlb.stalling_cpus()
        for pid in pids:
            libc.waitpid(pid)
        return 0
    assert m.run(main) == 0
    waits = k.lazy_stats.free_wait_ns
    return (waits[0] if waits else None), k.lazy_tlb.generation, frees["stalled_by"]


def test_the_generation_scheme_frees_a_few_ms_late_while_every_cpu_switches():
    """4 CPUs all switching to user tasks: the dead mm is freed two
    generations after its last mmput(), 2.7 ms here (two or three ticks), and
    the generation moves every ms or so."""
    wait, generations, _ = generation_teardown(idle_cpu=None)
    assert 1 * MS < wait < 5 * MS
    assert generations > 100


def test_a_cpu_that_stops_ticking_stops_every_deferred_free():
    """The objection in the seed thread (Andy Lutomirski: "A CPU can go idle
    with lazy mm and nohz forever.  This could lead to unbounded memory use
    on a lightly loaded system"): with CPU 3 idle (no tick, no switch) the
    generation never moves, and the dead mm is still not freed 300 ms later,
    nor at the end of the run; the stalling CPU is CPU 3."""
    wait, generations, stalled_by = generation_teardown(idle_cpu=3)
    assert wait is None and generations == 0
    assert 3 in stalled_by


def test_an_offline_cpu_gives_its_lazy_mm_back_in_finish_cpu():
    """REFCOUNT: the dead child's mm, pinned by idle CPU 1, is freed once
    CPU 1 is dead (finish_cpu() on the control CPU drops the idle task's
    reference)."""
    m = Machine(nr_cpus=2, seed=1)
    k = m.kernel
    state = {}

    def child():
        libc.sched_setaffinity(0, {1})
        libc.busy_wait(100_000)
        return 0

    def main():
        libc.sched_setaffinity(0, {0})
        libc.waitpid(libc.fork(child))
        libc.usleep(1000)
        state["before"] = k.mms_freed
        write_cpu_online(1, 0)
        state["after"] = k.mms_freed
        return 0
    assert m.run(main) == 0
    assert state["after"] == state["before"] + 1


def kthread_borrows(m, ns=300 * US):
    """A user thread hands its mm to a kworker, which uses it with
    kthread_use_mm() for *ns* (vhost, io_uring SQPOLL), holding an
    mm_users reference, while the process exits."""
    from emulator.kernel.workqueue import work_struct
    k = m.kernel

    def use(mm):
        def fn(work):
            k.kthread_use_mm(mm)
            k.charge(ns)
            k.kthread_unuse_mm(mm)
            k.mmput(mm)
        return fn

    def submit(k_):
        mm = k_.cur.mm
        k_.mmget(mm)
        k_.queue_work(k_.system_unbound_wq, work_struct(use(mm), "use_mm"))
        return 0

    def child():
        libc._call(libc._user_call(), ("call", submit, (k,)))
        return 0

    def main():
        libc.waitpid(libc.fork(child))
        libc.usleep(2000)
        return 0
    return main


def test_a_kernel_thread_using_the_mm_keeps_the_references_balanced(emu_variant):
    """kthread_use_mm()/kthread_unuse_mm() while the process exits: the
    process's mm lives until the kworker's mmput() and is freed after it, or
    (refcount) when the last CPU borrowing it switches on; P8 holds."""
    m = Machine(nr_cpus=3, seed=2, variants=[emu_variant])
    frees = []
    m.kernel.tp.subscribe("mm_free", frees.append)
    uses = []
    m.kernel.tp.subscribe("workqueue_execute_end", uses.append)
    assert m.run(kthread_borrows(m)) == 0
    assert uses and (not frees or frees[0][0] >= uses[0][0]) or \
        (emu_variant.name == "seed-004-generation" and not frees)


class ForgetsTheExitGrab(get_variant("refcount")):
    """A patch: exit_mm()'s lazy reference "is not needed" (it skips the grab
    when the task still has users)."""
    name = "test-forgets-exit-grab"

    def mmgrab_lazy_tlb(self, mm):
        if self.k.cur.in_do_exit and mm.mm_users.counter > 1:
            return
        super().mmgrab_lazy_tlb(mm)


def test_a_patch_that_forgets_a_lazy_reference_is_caught():
    """Threads exit on their own CPUs, which idle with the mm; the patch took
    none of their lazy references: P8 finds the mm_count short."""
    m = Machine(nr_cpus=4, seed=1, variants=[ForgetsTheExitGrab])
    prog = Program(repeat(3, thread(Program(run(300 * US)))), sleep(2 * MS), run(100 * US))
    with pytest.raises(InvariantViolation, match=r"P8 lazy references: mm#1 has mm_count \d+ "
                                                 r"for \d lazy reference") as info:
        m.run(prog)
    assert "replay:" in str(info.value)


SHAPES = [dict(nr_cpus=1), dict(nr_cpus=3), dict(nr_cpus=3, nr_possible=4), dict(nr_cpus=8)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_conformance_processes_threads_kernel_users_and_hotplug(emu_variant, shape):
    """Every lazy_tlb variant on the usual shapes: threads and processes
    that fork, exec, exit and sleep, a kworker adopting an mm, and (with more
    than one CPU) CPUs going down and up; every invariant holds to the end,
    or the run ends in the variant's recorded finding."""
    m = Machine(seed=3, variants=[emu_variant], **shape)
    k = m.kernel
    n = shape["nr_cpus"]
    possible = shape.get("nr_possible", n)

    def worker(i):
        for step in range(12):
            libc.busy_wait(20_000 + 3000 * i)
            libc.usleep(40 + 7 * i)
            if step % 5 == 2:
                libc.waitpid(libc.fork(lambda: 0))
        return 0

    def main():
        threads = [libc.pthread_create(worker, i) for i in range(n + 2)]
        libc.waitpid(libc.fork(kthread_borrows(m)))
        for cpu in range(1, possible):
            write_cpu_online(cpu, 0)
            libc.usleep(150)
            write_cpu_online(cpu, 1)
        for t in threads:
            libc.pthread_join(t)
        return 0
    try:
        assert m.run(main) == 0
    except InvariantViolation as exc:
        reason = known_finding(emu_variant, exc, k.causes)
        if reason is None:
            raise
        pytest.xfail(reason)


SHOOT_LOCAL = "fixtures/patches/shoot_local_after_flush.py"


def test_the_search_catches_a_patch_that_trusts_the_exit_flush():
    """fixtures/patches/shoot_local_after_flush.py (a patch to shootdown-v6.4
    named by no other test) shoots only the CPU of the final mmdrop, trusting
    the exit flush to have cleared the others.  The stateful search a
    ``pytest --variant`` run gives a patch file (its shards in order, each of
    STATEFUL_PATCH_EXAMPLES examples) finds the CPU that ran exit_mmap()
    still holding the mm when another CPU frees it (P6), and reports it with
    the minimal trace and a replay key.  Shrinking is off here to keep the
    test short; the default run shrinks."""
    from hypothesis import Phase

    from emulator.errors import EmulationFailure
    from emulator.explore.stateful import lifecycle_machine, stateful_search
    from emulator.pytest_plugin import PATCH_SEARCH_SHARDS
    from test_lazy_tlb_stateful import PATCH_EXAMPLES
    patch = load_variant(SHOOT_LOCAL)
    for shard in range(PATCH_SEARCH_SHARDS):
        try:
            stateful_search(lifecycle_machine(patch), PATCH_EXAMPLES, shard,
                            phases=[Phase.explicit, Phase.generate])()
        except EmulationFailure as exc:
            text = str(exc)
            break
    else:
        pytest.fail(f"no shard of the default search caught {SHOOT_LOCAL}")
    assert text.startswith("P6 no use after free: mm#") and "still has it loaded" in text
    assert "minimal trace:" in text and "function: cleanup_lazy_tlbs(" in text
    assert "replay: python -m emulator replay emu1-" in text


def nohz_full_teardowns(variant, churn=20, isolated_ms=60):
    """4 CPUs, CPU 3 nohz_full and isolated.  A tenant process ran a thread
    on CPU 3 and exits while CPU 3 runs one task of another process for
    *isolated_ms* (its tick stopped: nohz_full with one task); CPUs 0-2
    keep switching to user tasks, and *churn* short processes fork and exit
    there, one a millisecond.  Then two tasks share CPU 3 for a few ms (its
    tick comes back).  Returns the lazy_tlb stats, the dead mms not yet
    freed and the frees done when the isolated task ended, and the CPUs the
    generation waited for then."""
    m = Machine(nr_cpus=4, seed=1, variants=[variant], nohz_full="3", isolcpus="3")
    k = m.kernel
    s = k.lazy_stats
    seen = {}

    def on(cpus, fn):
        def body():
            libc.sched_setaffinity(0, cpus)
            return fn()
        return body

    def switcher():
        while m.now < (isolated_ms + 30) * MS:
            libc.busy_wait(200_000)
            libc.usleep(50)
        return 0

    def tenant_thread(_):
        libc.sched_setaffinity(0, {3})
        libc.busy_wait(100_000)
        return 0

    def tenant():
        libc.pthread_join(libc.pthread_create(tenant_thread, 0))
        libc.usleep(4000)
        return 0

    def isolated():
        end = m.now + isolated_ms * MS
        while m.now < end:
            libc.busy_wait(500_000)           # never sleeps: no switch, no tick
        return 0

    def sharing():
        for _ in range(4):
            libc.busy_wait(1_500_000)
            libc.usleep(100)
        return 0

    def main():
        libc.sched_setaffinity(0, {0, 1, 2})
        switchers = [libc.fork(on({c}, switcher)) for c in (0, 1, 2)]
        t = libc.fork(on({0}, tenant))
        libc.usleep(1000)
        iso = libc.fork(on({3}, isolated))
        for _ in range(churn):
            libc.waitpid(libc.fork(lambda: libc.busy_wait(100_000) or 0))
            libc.usleep(1000)
        libc.waitpid(t)
        libc.waitpid(iso)
        libc.usleep(1000)
        seen["dead"] = len(s.mmput_ns)
        seen["freed"] = len(s.free_wait_ns)
        seen["stalled_by"] = getattr(k.lazy_tlb, "stalling_cpus", list)()
        for pid in [libc.fork(on({3}, sharing)) for _ in range(2)]:
            libc.waitpid(pid)
        for pid in switchers:
            libc.waitpid(pid)
        return 0
    assert m.run(main) == 0
    return s, seen


def test_an_isolated_cpu_running_one_task_holds_every_generation_free_back():
    """The objection in the seed thread, on a nohz_full CPU that is never
    idle: CPU 3 runs one task for 60 ms, so it neither ticks nor switches mm,
    and the generation scheme frees nothing meanwhile: the 22 mms that die
    (the churn, the tenant, the isolated process) wait up to 65.7 ms, all
    dead at once, until two tasks share CPU 3 and its tick comes back.
    Refcount frees each at its exit or at the next user switch of an idle
    CPU (at most 4 dead at once, 1.3 ms), without interrupting CPU 3;
    shootdown-v6.4 frees each at once (5 us) but IPIs the isolated CPU for
    the tenant it ran, and its DEBUG_VM_SHOOT_LAZIES sweep interrupts it at
    every free (25 times)."""
    gen, gen_seen = nohz_full_teardowns("seed-004-generation")
    assert gen_seen["freed"] == 0 and gen_seen["dead"] == 22
    assert gen_seen["stalled_by"] == [3]
    assert gen.max_dead_unfreed == 22 and len(gen.free_wait_ns) == 22
    assert max(gen.free_wait_ns) > 60 * MS
    assert gen.isolated_ipis == 0

    ref, ref_seen = nohz_full_teardowns("refcount")
    assert ref_seen["freed"] >= 20 and ref.max_dead_unfreed <= 4
    assert max(ref.free_wait_ns) < 2 * MS
    assert ref.isolated_ipis == 0

    v64, v64_seen = nohz_full_teardowns("shootdown-v6.4")
    assert v64_seen["dead"] == 0 and v64.max_dead_unfreed <= 2
    assert max(v64.free_wait_ns) < 20 * US
    assert v64.isolated_ipis == 1 and v64.debug_isolated_ipis > 20


def lazy_tlb_workload(variant, nr_cpus=4, ms=20):
    """The ``lazy-tlb`` workload of ``python -m emulator compare`` for *ms*."""
    from emulator.workload import fork as pfork
    from emulator.workloads import FOREVER, Context, load_workloads
    m = Machine(nr_cpus=nr_cpus, seed=1, variants=[variant])
    ctx = Context(m, ms * MS)
    programs = [p for w in load_workloads("lazy-tlb") for p in w.programs(ctx)]
    m.start(Program(*[pfork(p) for p in programs], sleep(FOREVER)))
    try:
        m.advance(ms * MS)
        return m.stats(), m.kernel.lazy_stats
    finally:
        m.close()


def test_the_compare_workload_shows_each_schemes_cost():
    """compare's lazy-tlb workload (threads of one mm going idle and coming
    back on every CPU, processes dying on two CPUs): refcount one mm_count
    atomic per switch from several CPUs each ms; shootdown none, and an IPI
    per teardown; the generation scheme none, its frees deferred by
    milliseconds."""
    ref, ref_stats = lazy_tlb_workload("refcount")
    assert 0.9 < ref["lazy_tlb_atomics_per_switch"] < 1.1
    assert ref["lazy_tlb_bounce_cpus_per_mm_ms"] > 2
    # the bounce proxy keeps one entry per live mm, not one per mm and ms for ever
    from emulator.checks.kasan import is_freed
    assert ref_stats.writer_windows > 20 and ref_stats.writers
    assert not any(is_freed(mm) for mm in ref_stats.writers)
    v64, v64_stats = lazy_tlb_workload("shootdown-v6.4")
    assert v64["lazy_tlb_atomics_per_switch"] == 0
    assert v64_stats.shootdowns > 0 and v64_stats.shootdown_ipis >= v64_stats.shootdowns
    assert v64_stats.debug_ipis == 3 * v64_stats.shootdowns      # every other CPU, each free
    assert max(v64_stats.free_wait_ns) < 50 * US
    gen, gen_stats = lazy_tlb_workload("seed-004-generation")
    assert gen["lazy_tlb_atomics_per_switch"] == 0 and gen_stats.shootdown_ipis == 0
    assert gen_stats.deferred > 0 and len(gen_stats.mmput_ns) > 0   # dead, not yet freed
    assert all(wait > 1 * MS for wait in gen_stats.deferred_wait_ns)
