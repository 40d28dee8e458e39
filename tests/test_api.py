"""Stories about emulator.uapi.libc: what each function does for a body, and how it fails.

A body records what it sees; the test asserts on the record once the run is
over, so a failing assertion names the story, not a crashed host thread.
"""

import errno
import os

import pytest

from emulator.errors import TaskCrashed, UsageError
from emulator.uapi import libc, mman
from emulator.uapi.libc import (
    CPU_SETSIZE, EBUSY, PTHREAD_BARRIER_SERIAL_THREAD, busy_wait, execve, fork,
    get_nprocs, get_nprocs_conf, getpid, gettid, nanosleep, pthread_barrier_t,
    pthread_create, pthread_equal, pthread_exit, pthread_getaffinity_np, pthread_join,
    pthread_mutex_t, pthread_self, pthread_setaffinity_np, pthread_t, sched_getaffinity,
    sched_getcpu, sched_setaffinity, sched_yield, usleep, vfork, waitpid,
)


def errno_of(fn, *args):
    """The errno *fn* fails with, or None if it succeeds (inside a body)."""
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    return None


def usage_error(fn, *args):
    """True if *fn* rejects its arguments with UsageError (inside a body)."""
    try:
        fn(*args)
    except UsageError:
        return True
    return False


# -- pthread_create / pthread_join / pthread_exit ------------------------------------------------

def test_pthread_create_runs_start_routine_with_its_arg_in_the_same_process(machine_factory):
    """A new thread runs start_routine(arg) with its own tid in the caller's process."""
    seen = {}

    def worker(arg):
        seen["arg"] = arg
        seen["pid"], seen["tid"] = getpid(), gettid()
        return None

    def main():
        seen["main"] = (getpid(), gettid())
        pthread_join(pthread_create(worker, "hello"))
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["arg"] == "hello"
    assert seen["pid"] == seen["main"][0]
    assert seen["tid"] != seen["main"][1]


def test_pthread_create_is_eagain_past_max_threads(machine_factory):
    """Past max_threads pthread_create is EAGAIN; the process still ends with its last thread."""
    seen = {"created": 0}

    def main():
        try:
            for _ in range(100):
                pthread_create(lambda _: usleep(1000))
                seen["created"] += 1
        except OSError as exc:
            seen["err"] = exc.errno
        pthread_exit(None)

    assert machine_factory(2, max_threads=6).run(main) == 0
    assert seen["err"] == errno.EAGAIN
    assert 0 < seen["created"] < 6


def test_new_threads_and_children_inherit_the_affinity(machine_factory):
    """A thread or a forked child starts with its creator's CPU affinity."""
    seen = {}

    def worker(_):
        seen["thread"] = (sched_getaffinity(0), sched_getcpu())

    def child():
        seen["child"] = (sched_getaffinity(0), sched_getcpu())
        return 0

    def main():
        sched_setaffinity(0, {2})
        pthread_join(pthread_create(worker))
        waitpid(fork(child))
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen == {"thread": ({2}, 2), "child": ({2}, 2)}


def test_pthread_create_rejects_a_non_callable(machine_factory):
    """pthread_create(non-callable) raises UsageError and starts nothing."""
    seen = {}

    def main():
        seen["rejected"] = usage_error(pthread_create, 42)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["rejected"]


def test_pthread_join_returns_the_threads_return_value_after_it_ends(machine_factory):
    """pthread_join waits for the thread and returns what start_routine returned."""
    seen = {}

    def worker(arg):
        usleep(2000)
        seen["worker_done"] = True
        return arg * 2

    def main():
        t = pthread_create(worker, 21)
        seen["ret"] = pthread_join(t)
        seen["done_at_join"] = seen.get("worker_done", False)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["ret"] == 42
    assert seen["done_at_join"]


def test_pthread_join_of_self_is_edeadlk(machine_factory):
    """A thread joining itself gets EDEADLK."""
    seen = {}

    def worker(_):
        seen["thread"] = errno_of(pthread_join, pthread_self())

    def main():
        seen["main"] = errno_of(pthread_join, pthread_self())
        pthread_join(pthread_create(worker))
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"main": errno.EDEADLK, "thread": errno.EDEADLK}


def test_pthread_join_twice_is_einval(machine_factory):
    """A thread can be joined once; the second join gets EINVAL."""
    seen = {}

    def main():
        t = pthread_create(lambda _: 5)
        seen["first"] = pthread_join(t)
        seen["second"] = errno_of(pthread_join, t)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"first": 5, "second": errno.EINVAL}


def test_pthread_join_rejects_what_is_not_a_pthread_t(machine_factory):
    """pthread_join(a tid) raises UsageError: it takes a pthread_t."""
    seen = {}

    def main():
        seen["rejected"] = usage_error(pthread_join, gettid())
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["rejected"]


def test_pthread_exit_from_a_thread_hands_its_retval_to_join(machine_factory):
    """pthread_exit(v) ends the thread there; pthread_join returns v."""
    seen = []

    def helper():
        pthread_exit("from helper")

    def worker(_):
        seen.append("before")
        helper()
        seen.append("after pthread_exit")
        return "returned"

    def main():
        seen.append(pthread_join(pthread_create(worker)))
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == ["before", "from helper"]


def test_pthread_exit_from_main_lets_the_process_live_until_its_last_thread(machine_factory):
    """After main's pthread_exit the threads run on; the process ends, status 0, with the last."""
    seen = []

    def worker(_):
        usleep(5000)
        seen.append(("worker", getpid()))
        return 7

    def main():
        pthread_create(worker)
        pthread_create(worker)
        seen.append("main exits")
        pthread_exit(None)
        seen.append("main after pthread_exit")

    m = machine_factory(2)
    assert m.run(main) == 0
    assert seen == ["main exits", ("worker", m.main_pid), ("worker", m.main_pid)]
    assert m.now >= 5_000_000


def test_a_thread_can_join_main_after_mains_pthread_exit(machine_factory):
    """The main thread's pthread_exit value reaches a thread that joins it."""
    seen = {}

    def worker(main_thread):
        seen["joined"] = pthread_join(main_thread)
        return 0

    def main():
        pthread_create(worker, pthread_self())
        usleep(1000)
        pthread_exit("main's value")

    assert machine_factory(2).run(main) == 0
    assert seen["joined"] == "main's value"


# -- pthread_self / pthread_equal ----------------------------------------------------------------

def test_pthread_equal_is_true_exactly_for_the_same_thread(machine_factory):
    """pthread_self() names the calling thread: equal to its own handle, not another's."""
    seen = {}

    def worker(_):
        seen["self_in_thread"] = pthread_self()
        seen["thread_self_twice"] = pthread_equal(pthread_self(), pthread_self())
        return 0

    def main():
        me = pthread_self()
        t = pthread_create(worker)
        pthread_join(t)
        seen["main_self_twice"] = bool(pthread_equal(me, pthread_self()))
        seen["created_is_its_self"] = bool(pthread_equal(t, seen["self_in_thread"]))
        seen["main_vs_thread"] = bool(pthread_equal(me, t))
        seen["thread_vs_main"] = bool(pthread_equal(t, me))
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["main_self_twice"] and seen["thread_self_twice"]
    assert seen["created_is_its_self"]
    assert not seen["main_vs_thread"] and not seen["thread_vs_main"]


# -- pthread_setaffinity_np / pthread_getaffinity_np ---------------------------------------------

def test_pthread_setaffinity_np_keeps_a_thread_on_its_allowed_cpus(machine_factory):
    """After pthread_setaffinity_np(self, {1, 2}) the thread only ever runs on CPU 1 or 2."""
    seen = {"cpus": set()}

    def worker(_):
        pthread_setaffinity_np(pthread_self(), {1, 2})
        seen["mask"] = pthread_getaffinity_np(pthread_self())
        for i in range(40):
            seen["cpus"].add(sched_getcpu())
            if i % 3 == 0:
                usleep(50)
            elif i % 3 == 1:
                sched_yield()
            else:
                busy_wait(200_000)
        return 0

    def hog(_):
        busy_wait(5_000_000)
        return 0

    def main():
        hogs = [pthread_create(hog) for _ in range(3)]
        pthread_join(pthread_create(worker))
        for h in hogs:
            pthread_join(h)
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen["mask"] == {1, 2}
    assert seen["cpus"] and seen["cpus"] <= {1, 2}


def test_pthread_setaffinity_np_moves_another_thread(machine_factory):
    """Setting another thread's affinity moves it: it reads the new CPU when it next runs."""
    seen = {}
    barrier = pthread_barrier_t(2)

    def worker(_):
        pthread_setaffinity_np(pthread_self(), {0})
        seen["before"] = sched_getcpu()
        barrier.wait()          # main moves us now
        barrier.wait()
        seen["after"] = sched_getcpu()
        return 0

    def main():
        t = pthread_create(worker)
        barrier.wait()
        pthread_setaffinity_np(t, {3})
        seen["mask"] = pthread_getaffinity_np(t)
        barrier.wait()
        pthread_join(t)
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen == {"before": 0, "mask": {3}, "after": 3}


def test_pthread_setaffinity_np_with_an_empty_set_is_einval(machine_factory):
    """An empty CPU set is EINVAL, and the old affinity stays."""
    seen = {}

    def main():
        seen["err"] = errno_of(pthread_setaffinity_np, pthread_self(), set())
        seen["mask"] = pthread_getaffinity_np(pthread_self())
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen == {"err": errno.EINVAL, "mask": {0, 1, 2, 3}}


def test_pthread_setaffinity_np_rejects_a_cpu_beyond_cpu_setsize(machine_factory):
    """CPU 1024 does not fit a cpu_set_t: UsageError; so does a non-int or a string."""
    seen = {}

    def main():
        me = pthread_self()
        seen["1024"] = usage_error(pthread_setaffinity_np, me, {0, CPU_SETSIZE})
        seen["-1"] = usage_error(pthread_setaffinity_np, me, {-1})
        seen["str"] = usage_error(pthread_setaffinity_np, me, "01")
        seen["float"] = usage_error(pthread_setaffinity_np, me, {1.0})
        seen["not a thread"] = usage_error(pthread_setaffinity_np, gettid(), {0})
        seen["mask"] = pthread_getaffinity_np(me)
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen == {"1024": True, "-1": True, "str": True, "float": True,
                    "not a thread": True, "mask": {0, 1, 2, 3}}


def test_pthread_setaffinity_np_drops_cpus_beyond_the_machine(machine_factory):
    """CPUs past nr_cpus (< CPU_SETSIZE) are dropped; a set of only such CPUs is EINVAL."""
    seen = {"cpus": set()}

    def main():
        me = pthread_self()
        pthread_setaffinity_np(me, {1, 5, 6, 1023})
        seen["mask"] = pthread_getaffinity_np(me)
        for _ in range(20):
            seen["cpus"].add(sched_getcpu())
            usleep(10)
        seen["only_absent"] = errno_of(pthread_setaffinity_np, me, {4, 7, 1000})
        seen["mask_after"] = pthread_getaffinity_np(me)
        return 0

    assert machine_factory(4, nr_possible=8).run(main) == 0
    assert seen["mask"] == {1}
    assert seen["cpus"] == {1}
    assert seen["only_absent"] == errno.EINVAL
    assert seen["mask_after"] == {1}


def test_pthread_affinity_of_a_joined_thread_is_esrch(machine_factory):
    """Once a thread is joined its handle names no task: ESRCH."""
    seen = {}

    def main():
        t = pthread_create(lambda _: 0)
        pthread_join(t)
        seen["set"] = errno_of(pthread_setaffinity_np, t, {0})
        seen["get"] = errno_of(pthread_getaffinity_np, t)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"set": errno.ESRCH, "get": errno.ESRCH}


# -- pthread_mutex_t -----------------------------------------------------------------------------

def test_mutex_excludes_under_contention(machine_factory):
    """Four threads sleeping inside the critical section never overlap and lose no update."""
    state = {"inside": 0, "max_inside": 0, "counter": 0}
    lock = pthread_mutex_t()

    def worker(_):
        for _ in range(10):
            lock.lock()
            state["inside"] += 1
            state["max_inside"] = max(state["max_inside"], state["inside"])
            value = state["counter"]
            usleep(20)
            state["counter"] = value + 1
            state["inside"] -= 1
            lock.unlock()
        return 0

    def main():
        threads = [pthread_create(worker) for _ in range(4)]
        for t in threads:
            pthread_join(t)
        return 0

    assert machine_factory(4).run(main) == 0
    assert state["counter"] == 40
    assert state["max_inside"] == 1
    assert lock.futex == 0


def test_mutex_trylock_is_ebusy_while_another_thread_holds_it(machine_factory):
    """trylock returns EBUSY (not raising) while the mutex is held, 0 once it is free."""
    seen = {}
    lock = pthread_mutex_t()

    def worker(_):
        seen["held"] = lock.trylock()
        return 0

    def main():
        assert lock.lock() == 0
        pthread_join(pthread_create(worker))
        seen["relock_own"] = lock.trylock()
        lock.unlock()
        seen["free"] = lock.trylock()
        lock.unlock()
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["held"] == EBUSY == errno.EBUSY
    assert seen["relock_own"] == EBUSY
    assert seen["free"] == 0


def test_mutex_unlock_of_an_unlocked_mutex_is_eperm(machine_factory):
    """Unlocking a mutex nobody holds raises EPERM; destroying a held one EBUSY."""
    seen = {}
    lock = pthread_mutex_t()

    def main():
        seen["unlock_unlocked"] = errno_of(lock.unlock)
        lock.lock()
        seen["destroy_held"] = errno_of(lock.destroy)
        lock.unlock()
        seen["unlock_twice"] = errno_of(lock.unlock)
        seen["destroy"] = lock.destroy()
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"unlock_unlocked": errno.EPERM, "destroy_held": errno.EBUSY,
                    "unlock_twice": errno.EPERM, "destroy": 0}


# -- pthread_barrier_t ---------------------------------------------------------------------------

def test_barrier_of_count_zero_is_einval(machine_factory):
    """pthread_barrier_init with count 0 (or less) is EINVAL; a non-int count a UsageError."""
    seen = {}

    def main():
        seen["zero"] = errno_of(pthread_barrier_t, 0)
        seen["negative"] = errno_of(pthread_barrier_t, -3)
        seen["float"] = usage_error(pthread_barrier_t, 2.0)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"zero": errno.EINVAL, "negative": errno.EINVAL, "float": True}


def test_barrier_releases_nobody_before_all_arrive_and_one_serial_thread_per_round(
        machine_factory):
    """No waiter passes before the last arrives; one per round gets the SERIAL_THREAD value."""
    nthreads, rounds = 4, 3
    barrier = pthread_barrier_t(nthreads)
    arrived = [0] * rounds
    seen_on_exit = []
    results = [[] for _ in range(rounds)]

    def worker(i):
        for r in range(rounds):
            usleep(100 * ((i + r) % nthreads) + 1)       # arrive in a different order each round
            arrived[r] += 1
            ret = barrier.wait()
            seen_on_exit.append((r, arrived[r]))
            results[r].append(ret)
        return 0

    def main():
        threads = [pthread_create(worker, i) for i in range(nthreads)]
        for t in threads:
            pthread_join(t)
        barrier.destroy()
        return 0

    assert machine_factory(4).run(main) == 0
    assert len(seen_on_exit) == nthreads * rounds
    assert all(n == nthreads for _, n in seen_on_exit)
    for r in range(rounds):
        assert sorted(results[r]) == [PTHREAD_BARRIER_SERIAL_THREAD] + [0] * (nthreads - 1)


def test_barrier_of_one_never_blocks_and_a_busy_barrier_cannot_be_destroyed(machine_factory):
    """A barrier of 1 always returns SERIAL; destroying a barrier a thread waits on is EBUSY."""
    seen = {}
    single = pthread_barrier_t(1)
    pair = pthread_barrier_t(2)

    def main():
        seen["single"] = [single.wait() for _ in range(3)]
        t = pthread_create(lambda _: pair.wait())
        usleep(1000)
        seen["destroy_busy"] = errno_of(pair.destroy)
        pair.wait()
        pthread_join(t)
        seen["destroy"] = pair.destroy()
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"single": [PTHREAD_BARRIER_SERIAL_THREAD] * 3,
                    "destroy_busy": errno.EBUSY, "destroy": 0}


# -- sched_getaffinity / sched_setaffinity / sched_getcpu / sched_yield --------------------------

def test_sched_setaffinity_pid_0_pins_the_caller(machine_factory):
    """sched_setaffinity(0, {c}) moves the caller to CPU c at once; sched_getaffinity reads it."""
    seen = {"cpus": []}

    def main():
        seen["initial"] = sched_getaffinity(0)
        for cpu in (2, 0, 3, 1):
            sched_setaffinity(0, {cpu})
            seen["cpus"].append((sched_getcpu(), sched_getaffinity(0)))
        sched_setaffinity(0, {1, 2, 3})
        seen["final"] = sched_getaffinity(gettid())
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen["initial"] == {0, 1, 2, 3}
    assert seen["cpus"] == [(2, {2}), (0, {0}), (3, {3}), (1, {1})]
    assert seen["final"] == {1, 2, 3}


def test_sched_setaffinity_by_tid_moves_another_thread(machine_factory):
    """sched_setaffinity(tid, set) applies to that thread, not the caller."""
    seen = {}
    barrier = pthread_barrier_t(2)

    def worker(_):
        seen["tid"] = gettid()
        barrier.wait()
        barrier.wait()
        seen["cpu"] = sched_getcpu()
        return 0

    def main():
        t = pthread_create(worker)
        barrier.wait()
        sched_setaffinity(seen["tid"], {2})
        seen["theirs"] = sched_getaffinity(seen["tid"])
        seen["mine"] = sched_getaffinity(0)
        barrier.wait()
        pthread_join(t)
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen["theirs"] == {2} and seen["cpu"] == 2
    assert seen["mine"] == {0, 1, 2, 3}


def test_sched_affinity_of_an_unknown_pid_is_esrch(machine_factory):
    """sched_getaffinity/sched_setaffinity of a pid that names no task: ESRCH."""
    seen = {}

    def main():
        missing = getpid() + 1000
        seen["get"] = errno_of(sched_getaffinity, missing)
        seen["set"] = errno_of(sched_setaffinity, missing, {0})
        seen["bad_pid"] = usage_error(sched_getaffinity, "0")
        seen["bad_set"] = usage_error(sched_setaffinity, 0, {CPU_SETSIZE})
        seen["empty"] = errno_of(sched_setaffinity, 0, set())
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"get": errno.ESRCH, "set": errno.ESRCH, "bad_pid": True,
                    "bad_set": True, "empty": errno.EINVAL}


def test_sched_getcpu_reports_an_online_cpu(machine_factory):
    """sched_getcpu() is an online CPU, and a pinned spinning thread's own CPU."""
    seen = {}

    def worker(cpu):
        sched_setaffinity(0, {cpu})
        busy_wait(100_000)
        seen[cpu] = sched_getcpu()
        return 0

    def main():
        seen["main"] = sched_getcpu()
        threads = [pthread_create(worker, c) for c in (1, 2)]
        for t in threads:
            pthread_join(t)
        return 0

    assert machine_factory(3).run(main) == 0
    assert seen["main"] in range(3)
    assert seen[1] == 1 and seen[2] == 2


def test_sched_yield_lets_a_runnable_thread_on_the_same_cpu_run(machine_factory):
    """On one CPU, sched_yield() hands the CPU to the other runnable thread."""
    log = []

    def worker(_):
        log.append("worker")
        return 0

    def main():
        sched_setaffinity(0, {0})
        t = pthread_create(worker)
        log.append("main before yield")
        for _ in range(3):
            assert sched_yield() == 0
            if "worker" in log:
                break
        log.append("main after yield")
        pthread_join(t)
        return 0

    assert machine_factory(2).run(main) == 0
    assert log.index("worker") < log.index("main after yield")


# -- usleep / nanosleep / busy_wait --------------------------------------------------------------

def test_usleep_advances_virtual_time_by_at_least_the_sleep(machine_factory):
    """usleep(5000) lets at least 5 ms of virtual time pass."""
    m = machine_factory(2)
    assert m.run(lambda: usleep(5000)) == 0
    assert m.now >= 5_000_000


def test_nanosleep_advances_virtual_time_by_at_least_the_sleep(machine_factory):
    """nanosleep(3 ms) twice lets at least 6 ms of virtual time pass."""
    def main():
        assert nanosleep(3_000_000) == 0
        assert nanosleep(3_000_000) == 0
        return 0

    m = machine_factory(2)
    assert m.run(main) == 0
    assert m.now >= 6_000_000


def test_sleeping_threads_sleep_at_the_same_time(machine_factory):
    """Four threads sleeping 10 ms each take about 10 ms, not 40."""
    def main():
        threads = [pthread_create(lambda _: usleep(10_000)) for _ in range(4)]
        for t in threads:
            pthread_join(t)
        return 0

    m = machine_factory(2)
    assert m.run(main) == 0
    assert 10_000_000 <= m.now < 20_000_000


def test_sleep_rejects_a_negative_or_non_int_duration(machine_factory):
    """A negative sleep is EINVAL; a float, str or bool sleep is a UsageError."""
    seen = {}

    def main():
        seen["usleep -1"] = errno_of(usleep, -1)
        seen["nanosleep -1"] = errno_of(nanosleep, -1)
        seen["usleep 1.5"] = usage_error(usleep, 1.5)
        seen["nanosleep '1'"] = usage_error(nanosleep, "1")
        seen["nanosleep True"] = usage_error(nanosleep, True)
        seen["zero"] = (usleep(0), nanosleep(0))
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"usleep -1": errno.EINVAL, "nanosleep -1": errno.EINVAL,
                    "usleep 1.5": True, "nanosleep '1'": True, "nanosleep True": True,
                    "zero": (0, 0)}


def test_busy_wait_advances_virtual_time(machine_factory):
    """busy_wait(2 ms) burns at least 2 ms of virtual time; two on one CPU take 4 ms."""
    def main():
        sched_setaffinity(0, {0})
        t = pthread_create(lambda _: busy_wait(2_000_000))
        assert busy_wait(2_000_000) == 0
        assert busy_wait(0) == 0
        pthread_join(t)
        return 0

    m = machine_factory(2)
    assert m.run(main) == 0
    assert m.now >= 4_000_000


def test_busy_wait_rejects_a_negative_or_non_int_duration(machine_factory):
    """busy_wait(-1) and busy_wait(1.0) are UsageErrors."""
    seen = {}

    def main():
        seen["negative"] = usage_error(busy_wait, -1)
        seen["float"] = usage_error(busy_wait, 1.0)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"negative": True, "float": True}


# -- getpid / gettid / get_nprocs ----------------------------------------------------------------

def test_getpid_and_gettid(machine_factory):
    """The main thread's tid is the pid; a thread shares the pid, with a tid of its own."""
    seen = {}

    def worker(_):
        seen["thread"] = (getpid(), gettid())
        return 0

    def main():
        seen["main"] = (getpid(), gettid())
        pthread_join(pthread_create(worker))
        return 0

    m = machine_factory(2)
    assert m.run(main) == 0
    pid, tid = seen["main"]
    assert pid == tid == m.main_pid
    assert seen["thread"][0] == pid and seen["thread"][1] not in (pid, 0)


def test_get_nprocs_counts_online_and_possible_cpus(machine_factory):
    """get_nprocs() is the online CPU count, get_nprocs_conf() the possible one."""
    seen = {}

    def main():
        seen["nprocs"], seen["conf"] = get_nprocs(), get_nprocs_conf()
        seen["affinity"] = sched_getaffinity(0)
        return 0

    assert machine_factory(4, nr_possible=8).run(main) == 0
    assert seen == {"nprocs": 4, "conf": 8, "affinity": {0, 1, 2, 3}}


# -- exit / main's return ------------------------------------------------------------------------

@pytest.mark.parametrize("status, expected", [(0, 0), (3, 3), (255, 255), (256 + 5, 5), (-1, 255)])
def test_exit_status_is_the_low_byte(machine_factory, status, expected):
    """exit(n) ends the process with n & 0xff; nothing after it runs."""
    seen = []

    def main():
        libc.exit(status)
        seen.append("after exit")

    assert machine_factory(2).run(main) == expected
    assert seen == []


def test_main_return_value_is_the_exit_status(machine_factory):
    """main returning n is exit(n)."""
    assert machine_factory(2).run(lambda: 9) == 9


def test_returning_from_main_ends_the_threads_still_running(machine_factory):
    """main's return is exit(): threads still sleeping or spinning end with the process."""
    seen = []

    def sleeper(_):
        usleep(10 ** 9)
        seen.append("sleeper woke")

    def spinner(_):
        while True:
            busy_wait(100_000)

    def main():
        pthread_create(sleeper)
        pthread_create(spinner)
        usleep(1000)
        return 4

    m = machine_factory(2)
    assert m.run(main) == 4
    assert seen == [] and m.now < 10 ** 9


def test_exit_from_a_thread_ends_every_thread(machine_factory):
    """exit(n) in one thread ends the whole process, even threads blocked forever."""
    seen = []
    never = pthread_barrier_t(3)

    def sleeper(_):
        never.wait()
        seen.append("sleeper passed")

    def exiter(_):
        usleep(1000)
        libc.exit(4)

    def main():
        pthread_create(sleeper)
        pthread_create(exiter)
        never.wait()
        seen.append("main passed")

    assert machine_factory(2).run(main) == 4
    assert seen == []


def test_exit_rejects_a_non_int_status(machine_factory):
    """exit('1') is a UsageError; the process goes on."""
    seen = {}

    def main():
        seen["rejected"] = usage_error(libc.exit, "1")
        return 2

    assert machine_factory(2).run(main) == 2
    assert seen["rejected"]


def test_a_body_that_raises_crashes_the_run(machine_factory):
    """An exception escaping a body makes run raise TaskCrashed naming it."""
    def main():
        raise ValueError("boom")

    with pytest.raises(TaskCrashed, match="ValueError: boom"):
        machine_factory(2).run(main)


def test_main_returning_a_non_int_crashes_the_run(machine_factory):
    """main must return an int (or None): returning a str is reported as a crash."""
    with pytest.raises(TaskCrashed, match="exit status"):
        machine_factory(2).run(lambda: "ok")


# -- fork / vfork / waitpid ----------------------------------------------------------------------

def test_fork_runs_the_child_in_a_new_process_and_waitpid_reports_its_status(machine_factory):
    """fork: the child runs with its own pid, the parent gets it, waitpid reports its status."""
    seen = {}

    def child_main():
        seen["child"] = (getpid(), gettid())
        return 7

    def main():
        seen["parent"] = getpid()
        pid = fork(child_main)
        seen["forked"] = pid
        seen["waited"] = waitpid(pid)
        return 0

    assert machine_factory(2).run(main) == 0
    pid = seen["forked"]
    assert pid != seen["parent"]
    assert seen["child"] == (pid, pid)
    wpid, wstatus = seen["waited"]
    assert wpid == pid
    assert os.WIFEXITED(wstatus) and os.WEXITSTATUS(wstatus) == 7


def test_fork_child_exit_status_is_the_low_byte_of_exit(machine_factory):
    """A child's exit(258) shows as WEXITSTATUS 2; waitpid(-1) reaps any child, once."""
    seen = {}

    def main():
        pid = fork(lambda: libc.exit(258))
        seen["waited"] = waitpid(-1)
        seen["pid"] = pid
        seen["again"] = errno_of(waitpid, pid)
        return 0

    assert machine_factory(2).run(main) == 0
    wpid, wstatus = seen["waited"]
    assert wpid == seen["pid"] and os.WEXITSTATUS(wstatus) == 2
    assert seen["again"] == errno.ECHILD


def test_fork_rejects_a_non_callable(machine_factory):
    """fork and vfork take a callable child_main; anything else is a UsageError."""
    seen = {}

    def main():
        seen["fork"] = usage_error(fork, "child")
        seen["vfork"] = usage_error(vfork, None)
        seen["no_child"] = errno_of(waitpid, -1)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"fork": True, "vfork": True, "no_child": errno.ECHILD}


def vfork_and_wait(child_main, log):
    """A main that vfork()s *child_main*, then logs its resumption and the
    child's exit status."""
    def main():
        pid = vfork(child_main)
        log.append("parent resumes")
        log.append(os.WEXITSTATUS(waitpid(pid)[1]))
        return 0
    return main


def test_vfork_parent_waits_until_the_child_exits(machine_factory):
    """After vfork the parent does not run until the child has exited."""
    log = []

    def child_main():
        usleep(2000)
        log.append("child exits")
        return 3

    assert machine_factory(2).run(vfork_and_wait(child_main, log)) == 0
    assert log == ["child exits", "parent resumes", 3]


def test_vfork_parent_resumes_when_the_child_execs(machine_factory):
    """A vfork child that execs frees its parent at the exec, before the new program ends."""
    log = []

    def new_program():
        usleep(5000)
        log.append("new program ends")
        return 6

    def child_main():
        usleep(1000)
        log.append("child execs")
        execve(new_program)

    assert machine_factory(2).run(vfork_and_wait(child_main, log)) == 0
    assert log == ["child execs", "parent resumes", "new program ends", 6]


def test_vfork_child_may_be_gone_before_the_parent_waits():
    """The parent is held 3 ms right after waking its vfork child; the child
    exits on the other CPU meanwhile and clears its vfork_done.  The parent
    then waits on its own completion (struct completion vfork, on its stack
    in kernel_clone()), which the child has completed, and resumes."""
    from emulator import Machine
    from emulator.explore import Strategy

    class HoldTheParent(Strategy):
        """Pauses the task that woke a new task at its next preemptible point."""
        name = "hold-the-parent"
        waker = None

        def pause_ns(self, kind, preemptible=False):
            self.points += 1
            if preemptible and self.waker is not None and m.kernel.cur.pid == self.waker:
                self.waker = None
                return 3_000_000
            return None

    log = []

    def child_main():
        log.append("child exits")
        return 3

    hold = HoldTheParent()
    m = Machine(nr_cpus=2, seed=1, strategy=hold)
    m.kernel.tp.subscribe("sched_wakeup_new", lambda record: setattr(hold, "waker", record[3]))
    assert m.run(vfork_and_wait(child_main, log)) == 0
    assert log == ["child exits", "parent resumes", 3]


def test_waitpid_without_such_a_child_is_echild(machine_factory):
    """waitpid of no child, of oneself, or of a pid never used: ECHILD."""
    seen = {}

    def main():
        seen["any"] = errno_of(waitpid, -1)
        seen["self"] = errno_of(waitpid, getpid())
        seen["unused"] = errno_of(waitpid, getpid() + 500)
        seen["bad"] = usage_error(waitpid, "1")
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"any": errno.ECHILD, "self": errno.ECHILD, "unused": errno.ECHILD,
                    "bad": True}


def test_waitpid_does_not_reap_a_grandchild(machine_factory):
    """Only one's own children can be waited for: a grandchild is ECHILD."""
    seen = {}

    def grandchild():
        usleep(1000)
        return 1

    def child():
        seen["grandchild"] = fork(grandchild)
        return os.WEXITSTATUS(waitpid(seen["grandchild"])[1]) + 1

    def main():
        pid = fork(child)
        usleep(100)
        seen["err"] = errno_of(waitpid, seen["grandchild"])
        seen["child_status"] = os.WEXITSTATUS(waitpid(pid)[1])
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["err"] == errno.ECHILD
    assert seen["child_status"] == 2


# -- execve --------------------------------------------------------------------------------------

def test_execve_replaces_the_program(machine_factory):
    """execve(new_main) does not return; new_main's return value is the exit status."""
    seen = []

    def new_main():
        seen.append(("new", getpid()))
        return 11

    def main():
        seen.append(("old", getpid()))
        execve(new_main)
        seen.append("returned from execve")
        return 0

    m = machine_factory(2)
    assert m.run(main) == 11
    assert seen == [("old", m.main_pid), ("new", m.main_pid)]


def test_execve_of_a_missing_path_is_enoent_and_the_old_program_continues(machine_factory):
    """execve('/bin/true') fails with ENOENT; the caller goes on as before."""
    seen = {}

    def main():
        seen["err"] = errno_of(execve, "/bin/true")
        seen["still_here"] = getpid()
        return 5

    m = machine_factory(2)
    assert m.run(main) == 5
    assert seen == {"err": errno.ENOENT, "still_here": m.main_pid}


def test_execve_of_a_non_callable_is_enoexec(machine_factory):
    """execve of an object that is neither a callable nor a path fails with ENOEXEC."""
    seen = {}

    def main():
        seen["int"] = errno_of(execve, 42)
        seen["none"] = errno_of(execve, None)
        return 6

    assert machine_factory(2).run(main) == 6
    assert seen == {"int": errno.ENOEXEC, "none": errno.ENOEXEC}


def test_execve_from_a_thread_ends_the_other_threads_and_takes_the_pid(machine_factory):
    """A thread that execs kills its siblings; the new program runs alone with tid == pid."""
    seen = []

    def new_main():
        seen.append(("new", getpid(), gettid()))
        return 12

    def worker(_):
        usleep(1000)
        execve(new_main)

    def main():
        pthread_join(pthread_create(worker))
        seen.append("main joined")
        return 0

    m = machine_factory(2)
    assert m.run(main) == 12
    assert seen == [("new", m.main_pid, m.main_pid)]


# -- outside an emulated thread ------------------------------------------------------------------

OUTSIDE_CALLS = {
    "pthread_create": lambda: pthread_create(lambda _: 0),
    "pthread_join": lambda: pthread_join(pthread_t()),
    "pthread_exit": lambda: pthread_exit(None),
    "pthread_self": lambda: pthread_self(),
    "pthread_setaffinity_np": lambda: pthread_setaffinity_np(pthread_t(), {0}),
    "pthread_getaffinity_np": lambda: pthread_getaffinity_np(pthread_t()),
    "pthread_mutex_t.lock": lambda: pthread_mutex_t().lock(),
    "pthread_mutex_t.trylock": lambda: pthread_mutex_t().trylock(),
    "pthread_mutex_t.unlock": lambda: pthread_mutex_t().unlock(),
    "pthread_barrier_t.wait": lambda: pthread_barrier_t(1).wait(),
    "sched_getaffinity": lambda: sched_getaffinity(0),
    "sched_setaffinity": lambda: sched_setaffinity(0, {0}),
    "sched_getcpu": lambda: sched_getcpu(),
    "sched_yield": lambda: sched_yield(),
    "usleep": lambda: usleep(1),
    "nanosleep": lambda: nanosleep(1),
    "busy_wait": lambda: busy_wait(1),
    "getpid": lambda: getpid(),
    "gettid": lambda: gettid(),
    "get_nprocs": lambda: get_nprocs(),
    "get_nprocs_conf": lambda: get_nprocs_conf(),
    "exit": lambda: libc.exit(0),
    "fork": lambda: fork(lambda: 0),
    "vfork": lambda: vfork(lambda: 0),
    "execve": lambda: execve(lambda: 0),
    "waitpid": lambda: waitpid(-1),
    "sched_setscheduler": lambda: libc.sched_setscheduler(0, libc.SCHED_FIFO, 1),
    "mman.mmap": lambda: mman.mmap(None, 4096, mman.PROT_READ, mman.MAP_PRIVATE | mman.MAP_ANONYMOUS,
                                   -1, 0),
    "mman.munmap": lambda: mman.munmap(0, 4096),
    "mman.memset": lambda: mman.memset(0, 0, 4096),
}


@pytest.mark.parametrize("name", sorted(OUTSIDE_CALLS))
def test_api_outside_an_emulated_thread_is_a_usage_error(name):
    """Calling the API from the test itself, not from a body, raises UsageError."""
    with pytest.raises(UsageError, match="outside an emulated thread"):
        OUTSIDE_CALLS[name]()


def test_outside_calls_cover_every_libc_function():
    """Every function libc exports is in the outside-a-thread table (or is pure)."""
    pure = {"pthread_equal"}
    functions = {n for n in libc.__all__ if callable(getattr(libc, n))
                 and not isinstance(getattr(libc, n), type)}
    covered = {n.split(".")[0] for n in OUTSIDE_CALLS}
    assert functions - pure <= covered


def test_waitpid_zero_waits_for_any_child_of_the_group():
    """waitpid(0) reaps a child: every child is in the caller's process group."""
    from emulator.uapi.libc import exit as _exit, fork, waitpid
    import os as _os
    seen = []

    def main():
        pid = fork(lambda: _exit(5))
        seen.append((pid,) + waitpid(0))
        return 0
    from emulator import Machine
    assert Machine(nr_cpus=2).run(main) == 0
    pid, reaped, status = seen[0]
    assert reaped == pid and _os.WEXITSTATUS(status) == 5
