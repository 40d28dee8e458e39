"""The workloads of ``compare`` and the synthetic-program calls they are
built of: pipes, condition variables, joins, cyclictest's periodic sleep."""

import pytest

from emulator.errors import UsageError
from emulator.machine import Machine
from emulator.workload import (
    SCHED_FIFO, Program, clock_nanosleep, fork, pipe, pthread_cond_broadcast, pthread_cond_t,
    pthread_cond_wait, pthread_join, read, repeat, run, setaffinity, sleep, spin_until_started,
    thread, write,
)
from emulator.workloads import FOREVER, Context, load_workloads, parse_duration

US = 1_000
MS = 1_000_000


def exits(m):
    """pid -> virtual time of its sched_process_exit."""
    out = {}
    m.kernel.tp.subscribe("sched_process_exit",
                          lambda r: out.setdefault(int(str(r[5]).split("pid=")[1].split()[0]), r[0]))
    return out


def test_a_writer_blocks_on_a_full_pipe_until_the_reader_drains_it():
    """A pipe holds 64 KiB: the 66th 1000-byte write waits for the reader, then every byte arrives."""
    p = pipe("p")
    writer = Program(repeat(70, write(p, 1000)))
    reader = Program(sleep(1 * MS), repeat(70, read(p, 1000)))
    m = Machine(nr_cpus=2, seed=1)
    m.start(Program(fork(writer), fork(reader), sleep(5 * MS)))
    m.advance(500 * US)
    assert p.inode.writes == 65 and p.inode.bytes == 65_000     # full: 65 KB of 64 KiB
    m.advance(2 * MS)
    assert p.inode.writes == 70 and p.inode.read_bytes == 70_000 and p.inode.bytes == 0
    m.close()


def test_a_reader_sleeps_on_an_empty_pipe_until_a_write():
    """read() of an empty pipe sleeps; the write wakes it then."""
    p = pipe("p")
    m = Machine(nr_cpus=2, seed=1)
    done = exits(m)
    m.run(Program(fork(Program(read(p, 100))), sleep(2 * MS), write(p, 100), sleep(1 * MS)))
    reader = min(done)
    assert done[reader] >= 2 * MS


def test_cond_broadcast_wakes_every_waiting_thread_and_join_waits_for_them():
    """Threads wait on the condition until the broadcast; pthread_join() returns once all exited."""
    cond = pthread_cond_t()
    waiter = Program(pthread_cond_wait(cond))
    m = Machine(nr_cpus=4, seed=2)
    done = exits(m)
    status = m.run(Program(thread(waiter), thread(waiter), thread(waiter), spin_until_started(),
                           sleep(1 * MS), pthread_cond_broadcast(cond), pthread_join(),
                           run(10 * US)))
    assert status == 0
    leader = m.main_pid
    threads = [pid for pid in done if pid != leader]
    assert len(threads) == 3
    assert all(1 * MS <= done[t] < done[leader] for t in threads)


def test_a_thread_created_before_the_broadcast_but_started_after_it_does_not_wait():
    """No lost wake-up: the broadcast after a thread's creation releases it even if it had not started."""
    cond = pthread_cond_t()
    m = Machine(nr_cpus=1, seed=1)
    status = m.run(Program(thread(Program(pthread_cond_wait(cond))),
                           pthread_cond_broadcast(cond), pthread_join()))
    assert status == 0


def test_a_forked_worker_outlives_its_threads():
    """A forked program's threads exiting leave its process running (it was counted as a thread)."""
    cond = pthread_cond_t()
    worker = Program(repeat(3, thread(Program(pthread_cond_wait(cond))), spin_until_started(),
                            pthread_cond_broadcast(cond), pthread_join()), sleep(1 * MS))
    m = Machine(nr_cpus=2, seed=1)
    done = exits(m)
    forks = []
    m.kernel.tp.subscribe("sched_process_fork", forks.append)
    m.run(Program(fork(worker), sleep(3 * MS)))
    worker_pid = next(int(str(r[5]).split("child_pid=")[1]) for r in forks if r[3] == m.main_pid)
    assert len(done) == 5                    # three threads, the worker, the main
    assert done[worker_pid] >= 1 * MS and done[worker_pid] == max(
        t for pid, t in done.items() if pid != m.main_pid)


def test_cyclictest_step_wakes_on_its_period_without_drift():
    """clock_nanosleep(TIMER_ABSTIME) steps: each wake-up is measured from its own expiry."""
    samples = []
    probe = Program(setaffinity({1}), repeat(20, clock_nanosleep(100 * US, lambda *s: samples.append(s))),
                    policy=SCHED_FIFO, priority=95)
    hog = Program(setaffinity({1}), run(5 * MS))
    m = Machine(nr_cpus=2, seed=1)
    m.run(Program(fork(hog), fork(probe)))
    assert len(samples) == 20
    assert all(cpu == 1 and irq == 0 and 0 <= thr < 20 * US for cpu, irq, thr in samples)


def _users_over_time(spec, nr_cpus=4, steps=400, step=5 * US):
    """Run workload *spec*; every *step*, the most tasks sharing one mm and the zombies."""
    (w,) = load_workloads(spec)
    m = Machine(nr_cpus=nr_cpus, seed=1)
    m.start(Program(*[fork(p) for p in w.programs(Context(m, steps * step))], sleep(FOREVER)))
    users, zombies = [], []
    for _ in range(steps):
        m.advance(step)
        per_mm = {}
        for t in m.kernel.tasks.values():
            if t.mm is not None:
                per_mm[id(t.mm)] = per_mm.get(id(t.mm), 0) + 1
        users.append(max(per_mm.values(), default=0))
        zombies.append(sum(1 for t in m.kernel.tasks.values() if t.exit_state))
    m.close()
    return w, users, zombies


def test_hackbench_in_thread_mode_grows_one_mm_each_round_and_shrinks_it_back():
    """hackbench -T -l 4 -f 3, run back to back: each round main creates 3 receivers and 3 senders as
    its threads and joins them, so its mm goes from one user to seven and back, round after round;
    every receiver reads all 12 messages of a round before the next starts."""
    w, users, _ = _users_over_time("hackbench:1,fds=3,mode=thread,loops=4")
    assert max(users) == 2 * 3 + 1
    rounds = sum(1 for a, b in zip(users, users[1:]) if a == 1 and b > 1)
    assert rounds >= 3
    for p in w.pipes:
        assert p.inode.writes >= 3 * 12 and 0 <= p.inode.writes - p.inode.reads <= 12


def test_hackbench_in_process_mode_reaps_every_round_and_never_shares_an_mm():
    """hackbench -P -l 4 -f 3: each sender and receiver is a process of its own, reaped by main with
    wait() before the next round, so no mm has two users and no zombie outlives a round."""
    w, users, zombies = _users_over_time("hackbench:1,fds=3,loops=4")
    assert max(users) == 1
    assert 0 in zombies[len(zombies) // 2:]
    assert all(p.inode.writes >= 3 * 12 for p in w.pipes)


def test_workload_specs_parse_into_workloads_and_reject_bad_ones():
    """`a:ARG+b` builds each workload; an unknown name or a bad argument is one clear error."""
    a, b = load_workloads("cpu-load:80,slice=2ms+cyclictest:200")
    assert (a.load, a.slice, b.interval) == (80, 2 * MS, 200 * US)
    for bad, words in (("nosuch", "unknown workload 'nosuch'"), ("cpu-load", "needs its load"),
                       ("cpu-load:120", "0..100"), ("fork:x", "not a number"),
                       ("cpu-load:80+", "empty part"), ("cpu-load:80,speed=3", "unknown option"),
                       ("hackbench:1,mode=fibre", "process or thread"),
                       ("hackbench:1,loops=0", "hackbench: loops 0: must be at least 1"),
                       ("pthread-max:4,0", "pthread-max: workers 0: must be at least 1"),
                       ("lazy-tlb:0,0", "nothing to run")):
        with pytest.raises(UsageError, match=words):
            load_workloads(bad)
    assert parse_duration("200ms") == 200 * MS and parse_duration("1.5s") == 1_500 * MS
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration("fast")


def test_a_workload_file_is_found_by_path(tmp_path):
    """A user's workload file, named by its path with an argument, builds its programs."""
    path = tmp_path / "spin.py"
    path.write_text(
        "from emulator.workload import Program, repeat, run, sleep\n"
        "from emulator.workloads import FOREVER, Workload\n"
        "class Spin(Workload):\n"
        "    name = 'spin'\n"
        "    def __init__(self, arg=None):\n"
        "        self.n = self.int_arg(arg, 1, least=1)\n"
        "    def programs(self, ctx):\n"
        "        return [Program(repeat(FOREVER, run(1000), sleep(1000)))] * self.n\n")
    (w,) = load_workloads(f"{path}:3")
    m = Machine(nr_cpus=2, seed=1)
    assert w.name == "spin" and len(w.programs(Context(m, MS))) == 3
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(UsageError, match="exactly one Workload class"):
        load_workloads(str(tmp_path / "empty.py"))


def test_per_cpu_workloads_go_to_the_isolated_cpus():
    """On a machine with isolated CPUs, cpu-load pins a worker to each and cyclictest probes only them."""
    m = Machine(nr_cpus=4, seed=1, nohz_full="2-3", isolcpus="2-3")
    ctx = Context(m, MS)
    assert ctx.cpus == [2, 3]
    load, probe = load_workloads("cpu-load:80+cyclictest")
    (parent,) = load.programs(ctx)
    pins = [p[1].phases[0] for p in parent.phases if p[0] == "fork"]
    assert pins == [("setaffinity", frozenset({2})), ("setaffinity", frozenset({3}))]
    (main,) = probe.programs(ctx)
    assert [t[1].phases[0][1] for t in main.phases if t[0] == "thread"] == [{2}, {3}]


def test_a_nohz_full_cpu_is_ticked_remotely_once_a_second_and_never_scans_cids():
    """sched_tick_remote(): a nohz_full CPU running one task has no tick of its own; a
    housekeeping kworker ticks it at 1 Hz without task_tick_mm_cid(), so v6.13's scan never runs
    for its mm, where the same CPU without nohz_full queues it every 100 ms."""
    from emulator.workloads import FOREVER

    def run_hog(nohz):
        m = Machine(nr_cpus=2, variants=["v6.13"], seed=1, nohz_full=nohz, isolcpus=nohz)
        try:
            m.start(Program(fork(Program(setaffinity({1}), run(FOREVER), comm="hog")),
                            sleep(FOREVER)))
            m.advance(2_500 * MS)
            k = m.kernel
            return k.remote_ticks, len(k.scan_stats.get("task_mm_cid_work", ()))
        finally:
            m.close()

    assert run_hog("1") == (2, 0)             # at 1 s and 2 s; no scan
    remote, scans = run_hog(None)
    assert remote == 0 and 20 <= scans <= 25   # MM_CID_SCAN_DELAY 100 ms, from the first tick
