"""The scheduler core as stories: placement, the tick, RT, balancing, migration
hooks, affinity, nohz, and context_switch()'s order of hooks and lazy mm."""


import pytest

from emulator.checks.kasan import is_freed
from emulator.explore.strategies import Strategy
from emulator.kernel.rseq import RSEQ_EVENT_PREEMPT
from emulator.kernel.task import TASK_ON_RQ_MIGRATING
from emulator.machine import Machine
from emulator.uapi import libc
from emulator.variants import get_variant
from emulator.workload import (
    SCHED_FIFO, Program, ProgramUser, fork, repeat, run, setaffinity, sleep, thread,
)

MS = 1_000_000
US = 1_000
V63 = get_variant("v6.3")


def fields(record):
    """A trace record's fields, as the strings ftrace prints."""
    return {name: str(value) for name, value in record[5].fields.items()}


def recorder(m, *events):
    """Subscribe to *events*; returns the list the records go to."""
    out = []
    for event in events:
        m.kernel.tp.subscribe(event, out.append)
    return out


def spawn(m, k, program):
    """From kernel context, start a user process that execs *program*."""
    return k.kernel_clone(17, program.comm, ProgramUser(m, None, "main", image=program))


def sleep_kthread(k, cpus, naps, log, name="sleeper"):
    """A kernel thread allowed on *cpus* that naps *naps* times 1 ms, logging its CPU."""
    def fn(_):
        for _ in range(naps):
            log.append((k.engine.now, k.cpu))
            k.hrtimer_nanosleep(1 * MS)
        log.append((k.engine.now, k.cpu))
    return k.kthread_create(fn, None, name, cpus)


def hog_kthread(k, cpu_mask, ns, done, name="hog"):
    """A kernel thread that keeps a CPU of *cpu_mask* busy for *ns*, then logs when it ended."""
    def fn(_):
        k.charge(ns)
        done[name] = k.engine.now
    return k.kthread_create(fn, None, name, cpu_mask)


# -- placement -----------------------------------------------------------------------------


def test_task_pinned_to_cpu3_always_runs_on_cpu3():
    """A task pinned to {3} is switched in and woken only on CPU 3, even while CPU 3 is busy."""
    m = Machine(nr_cpus=4, seed=3)
    ev = recorder(m, "sched_switch", "sched_wakeup", "sched_process_fork")
    pinned = Program(setaffinity({3}), repeat(20, run(200 * US), sleep(300 * US)))
    rival = Program(setaffinity({3}), run(8 * MS))
    assert m.run(Program(fork(rival), fork(pinned), run(5 * MS))) == 0
    pid = [int(fields(r)["child_pid"]) for r in ev if r[4] == "sched_process_fork"][-1]
    arrived = False
    cpus = []
    for r in ev:
        f = fields(r)
        if r[4] == "sched_switch" and int(f["next_pid"]) == pid:
            arrived = arrived or r[1] == 3
            if arrived:
                cpus.append(r[1])
        elif r[4] == "sched_wakeup" and int(f["pid"]) == pid:
            assert int(f["target_cpu"]) == 3
    assert len(cpus) >= 20 and set(cpus) == {3}


def test_woken_task_returns_to_its_idle_previous_cpu():
    """With every CPU idle, a woken task goes back to the CPU it slept on, every time."""
    for seed in range(4):
        m = Machine(nr_cpus=4, seed=seed)
        log = []

        def test(k):
            sleep_kthread(k, 0b1111, 6, log)
            k.hrtimer_nanosleep(10 * MS)
        m.run_kernel(test, cpu=0)
        assert len(log) == 7
        assert len({cpu for _, cpu in log}) == 1, log


def test_woken_task_avoids_busy_previous_cpu_for_an_idle_allowed_one():
    """When its previous CPU is busy, a woken task goes to the idle CPU its affinity allows."""
    for seed in range(4):
        m = Machine(nr_cpus=4, seed=seed)
        log, done = [], {}
        wakeups = recorder(m, "sched_wakeup")

        def test(k):
            sleep_kthread(k, 0b0110, 1, log)          # allowed on CPUs 1 and 2
            k.hrtimer_nanosleep(100 * US)
            hog_kthread(k, 1 << log[0][1], 5 * MS, done)  # its CPU is busy when it wakes
            k.hrtimer_nanosleep(10 * MS)
        m.run_kernel(test, cpu=0)
        (_, first), (woke, second) = log
        assert first in (1, 2)
        assert second == 3 - first          # the other allowed CPU; never the idle 0 or 3
        target = [int(fields(r)["target_cpu"]) for r in wakeups if fields(r)["comm"] == "sleeper"]
        assert target == [second]  # placed there by the wake-up, not pulled later
        assert done["hog"] > woke


# -- the tick and preemption ------------------------------------------------------------------


def test_tick_shares_one_cpu_between_two_cpu_bound_tasks():
    """Two CPU-bound tasks pinned to one CPU take turns, the tick switching them about every 3 ms."""
    m = Machine(nr_cpus=2, seed=1)
    ev = recorder(m, "sched_switch")
    prog = Program(setaffinity({1}), thread(Program(run(30 * MS))), run(30 * MS))
    assert m.run(prog) == 0
    turns = [r for r in ev if r[1] == 1 and fields(r)["prev_state"] == "R+"
             and fields(r)["prev_pid"] != "0" and fields(r)["next_pid"] != "0"]
    pids = {int(fields(r)["prev_pid"]) for r in turns}
    assert len(pids) == 2 and m.main_pid in pids
    gaps = [b[0] - a[0] for a, b in zip(turns, turns[1:])]
    assert 15 <= len(turns) <= 21, len(turns)
    assert all(3 * MS <= g <= 6 * MS for g in gaps), gaps
    assert sorted(gaps)[len(gaps) // 2] == 3 * MS
    # Both progressed all along: both end in the last slice, not one after the other.
    exits = [r[0] for r in ev if r[1] == 1 and fields(r)["prev_state"] == "X"]
    assert len(exits) == 2 and min(exits) > 55 * MS


def test_a_dying_task_spends_its_owed_kernel_time_without_preemption():
    """do_task_dead() disables preemption before its last schedule.  A thread
    exits owing 5 ms of kernel time (a 5 ms system call entry), which it spends
    in that schedule, past its 3 ms slice, with another thread queued: the tick
    that finds the slice used up does not preempt it, and it switches out
    dead, once."""
    m = Machine(nr_cpus=1, seed=1, costs={"syscall_ns": 5 * MS, "exit_ns": 0})
    ev = recorder(m, "sched_switch")

    def main():
        spinner = libc.pthread_create(lambda _: libc.busy_wait(20 * MS))
        dying = libc.pthread_create(lambda _: None)
        libc.pthread_join(spinner)
        libc.pthread_join(dying)
        return 0
    assert m.run(main) == 0
    dead = [fields(r)["prev_pid"] for r in ev if fields(r)["prev_state"] == "X"]
    assert sorted(dead) == ["3", "4"]                      # each thread once


def test_rt_task_preempts_a_fair_task_at_once():
    """A SCHED_FIFO task waking on a CPU busy with a fair task runs at its wake-up time."""
    m = Machine(nr_cpus=2, seed=1)
    ev = recorder(m, "sched_switch", "sched_wakeup")
    hog = Program(setaffinity({1}), run(20 * MS))
    rt = Program(setaffinity({1}), repeat(5, sleep(2 * MS), run(100 * US)),
                 policy=SCHED_FIFO, priority=10)
    assert m.run(Program(fork(hog), fork(rt))) == 0
    delays = []
    woke = None
    for r in ev:
        f = fields(r)
        if r[4] == "sched_wakeup" and f["prio"] == "89":
            woke = r[0]
            assert int(f["target_cpu"]) == 1
        elif r[4] == "sched_switch" and f["next_prio"] == "89" and woke is not None:
            assert r[1] == 1 and f["prev_prio"] == "120" and f["prev_state"] == "R+"
            delays.append(r[0] - woke)
            woke = None
    assert len(delays) >= 5
    # Woken by its timer on CPU 1 itself: no delay at all; from another CPU: one IPI.
    assert all(d <= m.kernel.ipi_latency_ns for d in delays), delays
    assert delays.count(0) >= 5


# -- load balancing -------------------------------------------------------------------------------


def test_cpu_going_idle_pulls_a_task_queued_behind_another():
    """A CPU that goes idle pulls, at once, a task waiting in another CPU's queue."""
    m = Machine(nr_cpus=3, seed=1)
    done = {}
    moved = []

    def test(k):
        a = hog_kthread(k, 0b001, 10 * MS, done, "a")
        b = hog_kthread(k, 0b001, 10 * MS, done, "b")      # queued behind a on CPU 0
        log = []
        sleep_kthread(k, 0b010, 1, log, "napper")          # busy on CPU 1 until it naps
        k.hrtimer_nanosleep(500 * US)
        for p in (a, b):
            k.set_cpus_allowed_ptr(p, 0b011)
        moved.append(k.engine.now)
        k.hrtimer_nanosleep(20 * MS)
    ev = recorder(m, "sched_migrate_task")
    m.run_kernel(test, cpu=2)
    pulls = [r for r in ev if fields(r)["dest_cpu"] == "1"]
    assert len(pulls) == 1
    # The napper slept at once; CPU 1 pulled as soon as the affinity allowed it.
    assert pulls[0][0] - moved[0] <= 1 * MS + 10 * US
    assert max(done.values()) < 12 * MS, done       # both ran in parallel, not 20 ms in series


def test_busy_cpu_tick_kicks_an_idle_cpu_to_pull():
    """An idle CPU's queue-mate is pulled by the nohz kick of the busy CPU's next tick."""
    m = Machine(nr_cpus=3, seed=2)
    done = {}
    moved = []

    def test(k):
        a = hog_kthread(k, 0b001, 10 * MS, done, "a")
        b = hog_kthread(k, 0b001, 10 * MS, done, "b")
        k.hrtimer_nanosleep(1500 * US)              # CPU 1 idle all along
        for p in (a, b):
            k.set_cpus_allowed_ptr(p, 0b011)
        moved.append(k.engine.now)
        k.hrtimer_nanosleep(20 * MS)
    ev = recorder(m, "sched_migrate_task", "sched_switch")
    m.run_kernel(test, cpu=2)
    pulls = [r for r in ev if r[4] == "sched_migrate_task" and fields(r)["dest_cpu"] == "1"]
    assert len(pulls) == 1
    tick = (moved[0] // MS + 1) * MS
    assert tick <= pulls[0][0] <= tick + 10 * US    # CPU 0's next tick, plus the IPI
    assert max(done.values()) < 13 * MS, done


# -- migration and affinity ------------------------------------------------------------------------


class MigrateSpy(V63):
    name = "test-migrate-spy"
    log = None

    def sched_mm_cid_migrate_from(self, t):
        self.log.append(("from", t.pid, t.cpu))
        super().sched_mm_cid_migrate_from(t)

    def sched_mm_cid_migrate_to(self, dst_rq, t):
        queued = t.rq_key is not None
        self.log.append(("to", t.pid, dst_rq.cpu, t.cpu, dst_rq.lock.owner is not None, queued,
                         t.on_rq))
        super().sched_mm_cid_migrate_to(dst_rq, t)


def test_migration_calls_mm_cid_migrate_from_then_migrate_to():
    """Each migration calls migrate_from(t), then migrate_to(dst_rq, t) locked, before the enqueue."""
    m = Machine(nr_cpus=4, seed=1, variants=[MigrateSpy])
    log = m.kernel.mm_cid.log = []
    m.kernel.tp.subscribe("sched_migrate_task", lambda r: log.append(
        ("tp", int(fields(r)["pid"]), int(fields(r)["orig_cpu"]), int(fields(r)["dest_cpu"]))))
    pids = {}

    def test(k):
        # A user task moved by its own affinity changes and woken onto other CPUs.
        pids["user"] = spawn(m, k, Program(
            setaffinity({1}), sleep(100 * US), setaffinity({2}), run(100 * US),
            setaffinity({1}), sleep(100 * US), setaffinity({1, 2}), sleep(100 * US)))
        # A queued task moved by move_queued_task().
        done = {}
        a = hog_kthread(k, 0b0001, 2 * MS, done, "a")
        b = hog_kthread(k, 0b0001, 2 * MS, done, "b")
        k.hrtimer_nanosleep(500 * US)
        queued = b if k.cpu_rq(0).curr is a else a
        pids["queued"] = queued.pid
        k.set_cpus_allowed_ptr(queued, 0b0100)
        k.hrtimer_nanosleep(5 * MS)
    m.run_kernel(test, cpu=3)
    assert len(log) % 3 == 0
    kinds = set()
    for tp, frm, to in zip(log[0::3], log[1::3], log[2::3]):
        _, pid, orig, dest = tp
        assert frm == ("from", pid, orig), log          # before the task's CPU changes
        # On the new rq, its lock held, before enqueue_task() puts the task in its queue.
        assert to[:6] == ("to", pid, dest, dest, True, False), log
        kinds.add((pid, to[6]))
    assert sum(1 for e in log if e[:2] == ("tp", pids["user"])) >= 3
    assert (pids["user"], 0) in kinds                   # ttwu: not on a queue yet
    assert (pids["queued"], 2) in kinds                 # TASK_ON_RQ_MIGRATING


def test_setaffinity_moves_running_self_to_an_allowed_cpu():
    """sched_setaffinity(0, ...) from a running task returns with the task on an allowed CPU."""
    m = Machine(nr_cpus=4, seed=1)
    seen = []

    def main():
        libc.sched_setaffinity(0, {1})
        seen.append(libc.sched_getcpu())
        libc.sched_setaffinity(0, {2, 3})
        seen.append(libc.sched_getcpu())
        libc.busy_wait(2 * MS)
        seen.append(libc.sched_getcpu())
        return 0
    assert m.run(main) == 0
    assert seen[0] == 1 and seen[1] in (2, 3) and seen[2] == seen[1]


def test_setaffinity_moves_a_queued_task_at_once():
    """Changing the affinity of a task queued on a busy CPU moves it to an allowed CPU right away."""
    m = Machine(nr_cpus=4, seed=1)
    done = {}
    seen = {}

    def test(k):
        a = hog_kthread(k, 0b0001, 5 * MS, done, "a")
        b = hog_kthread(k, 0b0001, 5 * MS, done, "b")
        k.hrtimer_nanosleep(500 * US)
        rq0 = k.cpu_rq(0)
        queued = b if rq0.curr is a else a
        seen["queued_before"] = (queued.cpu, queued.on_rq, rq0.curr is not queued)
        assert k.set_cpus_allowed_ptr(queued, 0b0100) == 0
        seen["after"] = (queued.cpu, queued.on_rq)
        k.hrtimer_nanosleep(10 * MS)
    m.run_kernel(test, cpu=3)
    assert seen["queued_before"] == (0, 1, True)
    assert seen["after"] == (2, 1)
    assert max(done.values()) < 6 * MS, done


def test_setaffinity_moves_another_running_task_through_the_stopper():
    """Changing the affinity of a task running elsewhere migrates it through migration/N."""
    m = Machine(nr_cpus=4, seed=1)
    done = {}
    seen = {}
    ev = recorder(m, "sched_switch")

    def test(k):
        a = hog_kthread(k, 0b0001, 5 * MS, done, "a")
        k.hrtimer_nanosleep(500 * US)
        seen["before"] = (a.cpu, k.cpu_rq(0).curr is a)
        assert k.set_cpus_allowed_ptr(a, 0b0010) == 0
        seen["after"] = a.cpu
        k.hrtimer_nanosleep(10 * MS)
    m.run_kernel(test, cpu=3)
    assert seen == {"before": (0, True), "after": 1}
    assert any(fields(r).get("next_comm") == "migration/0" for r in ev if r[1] == 0)
    assert done["a"] < 6 * MS


# -- nohz ---------------------------------------------------------------------------------------------


class TickSpy(V63):
    name = "test-tick-spy"
    ticks = None

    def task_tick_mm_cid(self, rq, curr):
        self.ticks.append((self.k.engine.now, rq.cpu, curr is rq.idle, rq.lock.owner is not None))
        super().task_tick_mm_cid(rq, curr)


def test_idle_cpu_takes_no_tick():
    """scheduler_tick() runs only on CPUs running a task, once a ms, never for the idle task."""
    m = Machine(nr_cpus=4, seed=1, variants=[TickSpy])
    ticks = m.kernel.mm_cid.ticks = []
    prog = Program(setaffinity({2}), repeat(3, run(10 * MS), sleep(10 * MS)))
    assert m.run(prog) == 0
    assert ticks and not any(idle for _, _, idle, _ in ticks)
    assert all(locked for *_, locked in ticks)
    on2 = [t for t, cpu, *_ in ticks if cpu == 2]
    assert 27 <= len(on2) <= 33, len(on2)       # 30 ms busy out of ~60
    assert {cpu for _, cpu, *_ in ticks} <= {0, 2}
    assert len(ticks) - len(on2) <= 2           # CPU 0 only ran the start of main


# -- context_switch() ------------------------------------------------------------------------------------


class SwitchSpy(V63):
    name = "test-switch-spy"
    log = None

    def switch_mm_cid(self, rq, prev, next):
        self.log.append(("switch_mm_cid", prev, next, next.mm, next.active_mm,
                         prev.rseq_event_mask))
        super().switch_mm_cid(rq, prev, next)


def test_context_switch_calls_rseq_preempt_before_switch_mm_cid():
    """context_switch() calls rseq_preempt(prev), then switches mm, then switch_mm_cid()."""
    m = Machine(nr_cpus=2, seed=1, variants=[SwitchSpy])
    k = m.kernel
    log = k.mm_cid.log = []
    real_rseq_preempt = k.rseq_preempt

    def rseq_preempt(t):
        log.append(("rseq_preempt", t, t.active_mm))
        real_rseq_preempt(t)
    k.rseq_preempt = rseq_preempt
    prog = Program(thread(Program(repeat(5, run(1 * MS), sleep(500 * US)))),
                   repeat(5, run(2 * MS), sleep(200 * US)))
    assert m.run(prog) == 0
    switches = [i for i, e in enumerate(log) if e[0] == "switch_mm_cid"]
    assert len(switches) >= 20
    to_kthread = 0
    for i in switches:
        _, prev, next, next_mm, next_active_mm, mask = log[i]
        what, preempted, prev_active_mm = log[i - 1]
        assert (what, preempted) == ("rseq_preempt", prev)
        assert mask & RSEQ_EVENT_PREEMPT
        # The mm switch is done: a user task runs on its mm, a kthread on prev's.
        if next_mm is None:
            to_kthread += 1
            assert next_active_mm is prev_active_mm
        else:
            assert next_active_mm is next_mm
    assert to_kthread >= 10


def borrowers(k, mm):
    """Kernel threads (idle included) whose active_mm is *mm*: the lazy references."""
    tasks = set(k.tasks.values()) | {k.cur}         # k.cur: a dead prev, already released
    for rq in k.rqs:
        tasks |= {rq.idle, rq.curr}
    return [t for t in tasks if t.mm is None and t.active_mm is mm]


def test_kworker_borrows_the_user_mm_lazily_and_gives_it_back():
    """A kworker run after a user task borrows its mm as active_mm, with one mm_count each."""
    m = Machine(nr_cpus=2, seed=1)
    seen = {}

    def test(k):
        pid = spawn(m, k, Program(setaffinity({1}), repeat(4, run(2 * MS), sleep(1 * MS)),
                                  comm="user"))
        k.hrtimer_nanosleep(1 * MS)
        user = k.tasks[pid]
        mm = user.mm
        assert user.cpu == 1 and k.cpu_rq(1).curr is user

        def work_fn(work):
            me = k.cur
            seen["worker"] = (me.comm, me.mm, me.active_mm is mm,
                              mm.mm_count.counter, len(borrowers(k, mm)))
        from emulator.kernel.workqueue import work_struct
        assert k.queue_work_on(1, k.system_wq, work_struct(work_fn))
        k.hrtimer_nanosleep(5 * MS)                 # the user task runs again meanwhile
        seen["after"] = (mm.mm_count.counter, len(borrowers(k, mm)), mm.mm_users.counter)
        k.hrtimer_nanosleep(20 * MS)
    m.run_kernel(test, cpu=0)
    comm, worker_mm, borrowed, count, nborrow = seen["worker"]
    assert comm == "kworker/1:0" and worker_mm is None and borrowed
    assert count == 1 + nborrow and nborrow >= 1      # mmgrab_lazy_tlb() per borrower
    count, nborrow, users = seen["after"]
    assert users == 1 and count == 1 + nborrow        # finish_task_switch() dropped the rest


def test_lazy_mm_references_balance_at_every_switch():
    """At each sched_switch, an mm's mm_count is its users' reference plus one per lazy borrower."""
    m = Machine(nr_cpus=3, seed=4)
    k = m.kernel
    bad = []
    mms = {}

    def check(record):
        for t in set(k.tasks.values()) | {rq.curr for rq in k.rqs}:
            if t.mm is not None and t.mm is not k.init_mm:
                mms[t.mm.id] = t.mm
        for mm in mms.values():
            if is_freed(mm):
                continue
            pending = sum(1 for rq in k.rqs if rq.prev_mm is mm)
            want = (1 if mm.mm_users.counter > 0 else 0) + len(borrowers(k, mm)) + pending
            if mm.mm_count.counter != want:
                bad.append((record[0], mm, mm.mm_count.counter, want))
    k.tp.subscribe("sched_switch", check)
    child = Program(repeat(3, run(300 * US), sleep(200 * US)))
    # Main ends with a tour of every CPU, so that each idle CPU that borrowed a
    # dead child's mm switches to a user task and drops it.
    tour = [phase for cpu in range(3) for phase in (setaffinity({cpu}), run(200 * US))]
    prog = Program(fork(child), thread(child), repeat(4, run(500 * US), sleep(300 * US)),
                   fork(child), sleep(3 * MS), *tour)
    assert m.run(prog) == 0
    assert not bad, bad[:5]
    assert len(mms) == k.mms_allocated == 3
    # What is left is only borrowed by idle CPUs, until a user task runs there.
    for mm in mms.values():
        if not is_freed(mm):
            assert mm.mm_users.counter == 0
            assert mm.mm_count.counter == len(borrowers(k, mm)) >= 1
    assert k.mms_freed == 2                     # the children's; main's is still borrowed


def test_a_loop_of_yields_takes_time():
    """Two threads yielding to each other on one CPU pay each system call and
    each switch as they go: a thousand yields do not happen at one instant."""
    from emulator.kernel.costs import DEFAULT
    from emulator.workload import Program, repeat, sleep, thread, yield_
    m = Machine(nr_cpus=1, seed=1, trace=True)
    m.run(Program(thread(Program(repeat(500, yield_()))), repeat(500, yield_()), sleep(1)))
    times = [float(line.split()[2][:-1]) * 1e9 for line in m.trace_text().splitlines()
             if "sched_switch" in line and "prev_state=R+" in line]
    assert len(times) >= 900
    assert times[-1] - times[0] >= 900 * DEFAULT["syscall_ns"]


# -- sleeping and waking, and the watchdog ---------------------------------------------------------------


def pipe_ping_pong(pairs):
    """*pairs* pairs of threads of one process, each pair pinned to two CPUs
    (2i, 2i+1), passing a one-byte token through two pipes (will-it-scale's
    context_switch1_threads), and a worker forking processes whose two
    threads die on two CPUs, one after the other."""
    from emulator.workload import pipe, pthread_join, read, wait, write
    threads = []
    for i in range(pairs):
        a, b = pipe(f"a{i}"), pipe(f"b{i}")
        threads.append(thread(Program(setaffinity({2 * i}), repeat(1 << 30, write(a, 1), read(b, 1)))))
        threads.append(thread(Program(setaffinity({2 * i + 1}), repeat(1 << 30, read(a, 1), write(b, 1)))))
    victim = Program(thread(Program(run(50 * US))), run(100 * US), pthread_join())
    worker = Program(repeat(1 << 30, fork(victim), wait(), sleep(200 * US)))
    return Program(fork(Program(*threads, sleep(1 << 40))), fork(worker), sleep(1 << 40))


def test_pipe_ping_pong_keeps_switching_while_ipis_arrive():
    """Regression story for a defect in the model: pipe ping-pong pairs kept
    switching only until IPIs came.  Under shootdown-v6.4, every mm teardown
    IPIs every CPU (DEBUG_VM_SHOOT_LAZIES's on_each_cpu()); such an IPI
    brings an idle CPU with a wake-up pending in early, and the pairs fell
    into step: the model charged a system call's entry cost after its body
    had run, so each write woke its reader within the reader's own entry
    cost, spent between prepare_to_wait() and __schedule()'s dequeue, where
    a wake-up only sets TASK_RUNNING again.  Neither task ever slept, both
    stayed rq->curr in TASK_INTERRUPTIBLE at every tick, and their CPUs
    never switched again (80% fewer context switches than refcount).  Now
    pipe_read() and pipe_write() spend the owed time where the kernel takes
    pipe->mutex, and every pair's CPUs switch to the end."""
    m = Machine(nr_cpus=8, variants=["shootdown-v6.4"], seed=1)
    k = m.kernel
    m.start(pipe_ping_pong(pairs=4))             # every CPU busy with a pair
    m.advance(4 * MS)
    before = [rq.nr_switches for rq in k.rqs]
    m.advance(4 * MS)                   # (a soft lockup would fail the run here)
    switched = [rq.nr_switches - n for rq, n in zip(k.rqs, before)]
    assert k.lazy_stats.debug_ipis >= 8 * 7, k.lazy_stats.debug_ipis  # IPIs came, to every CPU
    # A round trip is an IPI, a switch-in and a system call: about 4 us each way.
    assert all(n >= 500 for n in switched), switched
    m.close()


def test_a_task_left_current_in_a_sleeping_state_is_a_soft_lockup():
    """A kernel path that sets TASK_UNINTERRUPTIBLE and then computes on
    without calling schedule() (a missed schedule()) keeps its CPU from
    switching: the watchdog reports it as a soft lockup on that CPU, naming
    the task and its state, rather than the run ending with low figures."""
    import pytest
    from emulator.errors import SoftLockup
    from emulator.kernel.task import TASK_UNINTERRUPTIBLE

    def fn(k):
        k.cur.state = TASK_UNINTERRUPTIBLE      # set_current_state()
        k.charge(50 * MS)                       # ... and no schedule()
    m = Machine(nr_cpus=2, seed=1)
    with pytest.raises(SoftLockup, match=r"soft lockup - CPU#1 stuck for 10ms! \[ktest:\d+\]: "
                                         r"on CPU 1, ktest\[\d+\] was rq->curr in state D"):
        m.run_kernel(fn, cpu=1)
    assert 10 * MS <= m.now <= 12 * MS


def test_a_cpu_bound_task_alone_on_its_cpu_is_no_soft_lockup():
    """A task computing alone on its CPU does not switch either, but it is
    TASK_RUNNING: no report, however long it runs."""
    m = Machine(nr_cpus=2, seed=1)
    assert m.run(Program(setaffinity({1}), run(50 * MS))) == 0
    assert m.now >= 50 * MS


class PausesTheStopperMidMove(Strategy):
    """Stops the stopper for 2 ms at its first scheduling point while the task
    it moves is between two runqueues (move_queued_task(): the old rq's lock
    dropped, the new one's not yet taken)."""

    name = "pauses-the-stopper-mid-move"

    def install(self, kernel):
        self.k, self.paused = kernel, False
        super().install(kernel)

    def pause_ns(self, kind, preemptible=False):
        mover = self.k.cur
        moving = [t for t in self.k.tasks.values() if t.on_rq == TASK_ON_RQ_MIGRATING]
        if not self.paused and mover.comm.startswith("migration/") and moving:
            self.paused = True
            return 2 * MS
        return None


def test_an_affinity_change_waits_for_a_migration_the_stopper_has_under_way():
    """Regression story for a model bug the weak stateful search met (v6.14,
    2026-12-07: "BUG: spinlock recursion on rq0->__lock", the task running on two
    CPUs).  The stopper moving a thread held no p->pi_lock and task_rq_lock() did
    not wait for a task between two runqueues, so another thread's
    sched_setaffinity() of the thread moved it a second time from the runqueue it
    was not yet on, and the stopper then queued it there too.  As in the kernel,
    migration_cpu_stop() holds p->pi_lock across the move and task_rq_lock()
    waits: the second change waits, then moves it once."""
    seen = {}

    def worker(_):
        libc.sched_setaffinity(0, {1})
        seen["tid"] = libc.gettid()
        while "stop" not in seen:
            libc.busy_wait(20 * US)
        seen["cpu"] = libc.sched_getcpu()
        return 0

    def meddler(_):
        libc.sched_setaffinity(0, {0})
        libc.busy_wait(100 * US)            # inside the stopper's 2 ms
        libc.sched_setaffinity(seen["tid"], {0})
        return 0

    def main():
        t = libc.pthread_create(worker)
        while "tid" not in seen:
            libc.busy_wait(20 * US)
        u = libc.pthread_create(meddler)
        libc.sched_setaffinity(seen["tid"], {2})    # the stopper of CPU 1 moves it
        libc.pthread_join(u)
        seen["stop"] = True
        libc.pthread_join(t)
        return 0

    strategy = PausesTheStopperMidMove()
    assert Machine(nr_cpus=3, seed=1, strategy=strategy).run(main) == 0
    assert strategy.paused and seen["cpu"] == 0


def test_task_rq_lock_waits_for_a_task_between_two_runqueues():
    """__task_rq_lock(), as the kernel's: a task another CPU is moving (on_rq
    TASK_ON_RQ_MIGRATING, neither runqueue's lock held) is locked only once the
    move is done.  The model's own movers hold p->pi_lock, which keeps
    task_rq_lock() out already; here a mover that does not, as a patch's might."""
    m = Machine(nr_cpus=3, seed=1)
    got = {}

    def test(k):
        sleeper = k.kthread_create(lambda _: k.hrtimer_nanosleep(10 * MS), None, "sleeper", 0b100)
        k.hrtimer_nanosleep(100 * US)

        def mover(_):
            sleeper.on_rq = TASK_ON_RQ_MIGRATING    # between two runqueues, no lock held
            k.charge(1 * MS)
            got["moved"] = k.engine.now
            sleeper.on_rq = 0

        def locker(_):
            k.hrtimer_nanosleep(100 * US)
            rq, flags = k.task_rq_lock(sleeper)
            got["locked"] = k.engine.now
            k.task_rq_unlock(rq, sleeper, flags)
        k.kthread_create(mover, None, "mover", 0b010)
        k.kthread_create(locker, None, "locker", 0b001)
        k.hrtimer_nanosleep(20 * MS)
    m.run_kernel(test, cpu=0)
    assert got["locked"] >= got["moved"], got


def test_a_task_queued_twice_is_a_kernel_bug():
    """activate_task() of a task already on a runqueue (the model's own check,
    not the kernel's): it would be picked by two CPUs at once."""
    from types import SimpleNamespace
    from emulator.errors import KernelBug
    from emulator.kernel.task import TASK_ON_RQ_QUEUED
    k = Machine(nr_cpus=2).kernel
    with pytest.raises(KernelBug, match="already queued on CPU 1"):
        k.activate_task(k.rqs[0], SimpleNamespace(on_rq=TASK_ON_RQ_QUEUED, cpu=1), 0)
