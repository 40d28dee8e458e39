"""CPU hotplug (emulator/kernel/cpu.py): a CPU written offline through
/sys/devices/system/cpu/cpuN/online leaves the online and active masks, its
tasks, timers and work go elsewhere, and it comes back; the registered
states run where the kernel runs them."""

import pytest

from emulator import Machine
from emulator.kernel.cpu import CPUHP_AP_ONLINE_DYN, CPUHP_BP_PREPARE_DYN, CPUHP_ONLINE
from emulator.kernel.workqueue import work_struct
from emulator.uapi import libc
from emulator.uapi.sysfs import read_cpu_online, write_cpu_online

MS = 1_000_000


def switches_by_cpu(m):
    seen = []
    m.kernel.tp.subscribe("sched_switch", seen.append)
    return seen


def offline_while(body, cpu, after_us):
    """A main that starts a thread running *body*, takes *cpu* offline
    *after_us* later and joins the thread."""
    def main():
        t = libc.pthread_create(body, 0)
        libc.usleep(after_us)
        write_cpu_online(cpu, 0)
        libc.pthread_join(t)
        return 0
    return main


def test_a_cpu_goes_down_its_threads_move_and_it_comes_back():
    """Threads that ran on CPU 2 run elsewhere while it is offline; once it
    is back, the scheduler uses it again."""
    m = Machine(nr_cpus=4, seed=1)
    k = m.kernel
    seen = switches_by_cpu(m)
    times = {}

    def worker(i):
        for _ in range(40):
            libc.busy_wait(100_000)
            libc.usleep(50)
        return 0

    def main():
        threads = [libc.pthread_create(worker, i) for i in range(6)]
        libc.usleep(500)
        write_cpu_online(2, 0)
        times["down"] = m.now
        assert read_cpu_online(2) == 0 and 2 not in libc.sched_getaffinity(0)
        libc.usleep(2000)
        times["up"] = m.now
        write_cpu_online(2, 1)
        for t in threads:
            libc.pthread_join(t)
        return 0
    assert m.run(main) == 0
    assert k.online_mask == k.active_mask == 0b1111
    on_2 = [r[0] for r in seen if r[1] == 2 and r[5].fields["next_comm"] != "swapper/2"]
    assert any(t < times["down"] for t in on_2)
    # While it was down only its stopper and hotplug thread ran there, then nothing.
    while_down = [r for r in seen if r[1] == 2 and times["down"] < r[0] < times["up"]]
    assert not while_down
    assert any(t > times["up"] for t in on_2)


def test_the_last_online_cpu_cannot_go_offline():
    """One CPU: EBUSY.  Two: the first goes, the second then cannot."""
    errors = []

    def main():
        try:
            write_cpu_online(0, 0)
        except OSError as exc:
            errors.append(exc.errno)
        return 0
    assert Machine(nr_cpus=1, seed=1).run(main) == 0
    assert errors == [16]

    errors.clear()

    def two():
        write_cpu_online(0, 0)
        try:
            write_cpu_online(1, 0)
        except OSError as exc:
            errors.append(exc.errno)
        return libc.sched_getcpu()
    assert Machine(nr_cpus=2, seed=1).run(two) == 1
    assert errors == [16]


def test_possible_cpus_beyond_the_online_ones_come_up_and_take_tasks():
    """3 online of 5 possible: CPU 4 was never online; once it is up a task
    may move there, and an odd CPU goes down meanwhile."""
    m = Machine(nr_cpus=3, nr_possible=5, seed=2)
    k = m.kernel
    where = []

    def main():
        with pytest.raises(OSError):
            libc.sched_setaffinity(0, {4})             # EINVAL: offline
        write_cpu_online(4, 1)
        libc.sched_setaffinity(0, {4})
        where.append(libc.sched_getcpu())
        write_cpu_online(1, 0)
        write_cpu_online(1, 0)                         # already offline: no error
        with pytest.raises(OSError):
            write_cpu_online(7, 1)                     # ENODEV: not possible
        return 0
    assert m.run(main) == 0
    assert where == [4]
    assert k.online_mask == 0b10101 and k.nr_online == 3
    assert k.cpuhp_state_of(4).state == CPUHP_ONLINE


def test_a_task_allowed_only_on_the_outgoing_cpu_is_moved_and_widened():
    """select_fallback_rq(): "no longer affine to cpu2", it runs elsewhere."""
    m = Machine(nr_cpus=4, seed=3)
    cpus = []

    def pinned(_):
        libc.sched_setaffinity(0, {2})
        for _ in range(30):
            libc.busy_wait(100_000)
            cpus.append(libc.sched_getcpu())
        return 0

    assert m.run(offline_while(pinned, cpu=2, after_us=400)) == 0
    assert cpus[0] == 2 and cpus[-1] != 2
    assert all(t.cpus_mask == m.kernel.possible_mask for t in m.kernel.tasks.values()
               if t.comm == "pinned")


def test_a_sleepers_timer_on_the_outgoing_cpu_fires_on_another():
    """hrtimers_cpu_dying(): the timer moves; the sleep ends on time."""
    m = Machine(nr_cpus=3, seed=1)
    woke = []

    def sleeper(_):
        libc.sched_setaffinity(0, {1})
        libc.sched_setaffinity(0, {0, 1, 2})          # stays on CPU 1, allowed anywhere
        start = m.now
        libc.usleep(3000)
        woke.append((m.now - start, libc.sched_getcpu()))
        return 0

    assert m.run(offline_while(sleeper, cpu=1, after_us=500)) == 0
    (slept, cpu), = woke
    assert 3 * MS <= slept < 3 * MS + 200_000 and cpu != 1


def test_work_queued_to_an_offline_cpu_runs_unbound_and_its_workers_rebind():
    """workqueue_offline_cpu(): the pool is dissociated, its work runs
    elsewhere; workqueue_online_cpu() binds its workers again."""
    m = Machine(nr_cpus=3, seed=1)
    ran = []

    def body(k):
        work = work_struct(lambda w: ran.append(k.cpu))
        k.queue_work_on(2, k.system_wq, work)       # a worker for CPU 2's pool
        k.flush_work(work)
        assert k.cpu_down(2) == 0
        k.queue_work_on(2, k.system_wq, work)
        k.flush_work(work)
        assert k.cpu_up(2) == 0
        k.queue_work_on(2, k.system_wq, work)
        k.flush_work(work)
        return [w.task.cpus_mask for w in k.cpu_pools[2].workers]
    masks = m.run_kernel(body)
    assert ran[0] == 2 and ran[1] != 2 and ran[2] == 2
    assert masks == [1 << 2]


def test_registered_states_run_where_the_kernel_runs_them():
    """A PREPARE-section teardown (page_alloc_cpu_dead()'s kind) runs on a
    surviving CPU once the CPU is dead; an ONLINE-section one on the
    outgoing CPU, still online; startups in the reverse order."""
    m = Machine(nr_cpus=4, seed=1)
    calls = []

    def body(k):
        def record(what):
            def cb(cpu):
                calls.append((what, cpu, k.cpu, bool(k.online_mask >> cpu & 1),
                              k.cpuhp_state_of(cpu).state))
                return 0
            return cb
        dead = k.cpuhp_setup_state_nocalls(CPUHP_BP_PREPARE_DYN, "test:dead",
                                           record("prepare"), record("dead"))
        online = k.cpuhp_setup_state_nocalls(CPUHP_AP_ONLINE_DYN, "test:online",
                                             record("online"), record("offline"))
        assert dead >= CPUHP_BP_PREPARE_DYN and online >= CPUHP_AP_ONLINE_DYN
        assert k.cpu_down(3) == 0 and k.cpu_up(3) == 0
    m.run_kernel(body)
    what = [c[0] for c in calls]
    assert what == ["offline", "dead", "prepare", "online"]
    (_, _, on, online_then, _), (_, _, dead_on, online_dead, _) = calls[:2]
    assert on == 3 and online_then                 # on the outgoing CPU, still online
    assert dead_on != 3 and not online_dead        # on a survivor, the CPU dead
    assert calls[2][2] != 3 and not calls[2][3]    # prepare: before it boots
    assert calls[3][2] == 3 and calls[3][3]        # online: on it, online


def test_cpus_come_and_go_under_load_and_the_invariants_hold():
    """Five offline/online rounds over three CPUs while threads fork, exec,
    sleep and exit: the run ends and every check holds."""
    m = Machine(nr_cpus=5, seed=4)

    def worker(i):
        for step in range(25):
            libc.busy_wait(30_000 + 1000 * i)
            libc.usleep(80 + i)
            if step % 10 == 3:
                pid = libc.fork(lambda: 0)
                libc.waitpid(pid)
        return 0

    def main():
        threads = [libc.pthread_create(worker, i) for i in range(7)]
        for cpu in (1, 3, 4, 1, 2):
            write_cpu_online(cpu, 0)
            libc.usleep(300)
            write_cpu_online(cpu, 1)
        for t in threads:
            libc.pthread_join(t)
        return 0
    assert m.run(main) == 0
    k = m.kernel
    assert k.online_mask == 0b11111 and len(k.hotplug_events) == 10
