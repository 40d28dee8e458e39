"""Stories about rseq: the selftests' librseq (emulator.uapi.rseq) and the kernel's sys_rseq.

By default glibc owns rseq and registers every thread before user code runs;
``Machine(glibc_rseq=False)`` is GLIBC_TUNABLES=glibc.pthread.rseq=0, where
librseq registers for real.
"""

import errno

import pytest

from emulator.errors import UsageError
from emulator.uapi.libc import (
    busy_wait, execve, fork, gettid, pthread_barrier_t, pthread_create, pthread_join,
    pthread_setaffinity_np, sched_getaffinity, sched_getcpu, sched_setaffinity,
    usleep, waitpid,
)
from emulator.uapi.rseq import (
    RSEQ_CPU_ID_UNINITIALIZED, RSEQ_FLAG_UNREGISTER, RSEQ_SIG, rseq_alloc_abi, rseq_cpu_start,
    rseq_current_cpu, rseq_current_cpu_raw, rseq_current_mm_cid, rseq_current_node_id,
    rseq_errno, rseq_fallback_current_node, rseq_get_abi, rseq_mm_cid_available,
    rseq_node_id_available, rseq_register_current_thread, rseq_unregister_current_thread,
    sys_rseq,
)


def errno_of(fn, *args):
    """The errno *fn* fails with, or None if it succeeds (inside a body)."""
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    return None


def fields(area):
    return (area.cpu_id_start, area.cpu_id, area.node_id, area.mm_cid)


# -- librseq: registration -----------------------------------------------------------------------

def test_register_is_a_no_op_success_when_glibc_owns_rseq(machine_factory):
    """With glibc owning rseq, (un)registration returns 0 and the area is already live."""
    seen = {}

    def main():
        seen["raw_before"] = rseq_current_cpu_raw()
        seen["cpu"] = sched_getcpu()
        seen["register"] = rseq_register_current_thread()
        seen["register_again"] = rseq_register_current_thread()
        seen["unregister"] = rseq_unregister_current_thread()
        seen["raw_after"] = rseq_current_cpu_raw()
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen["register"] == seen["register_again"] == seen["unregister"] == 0
    assert seen["raw_before"] == seen["cpu"] == seen["raw_after"]


def test_register_for_real_without_glibc(machine_factory):
    """Without glibc's registration cpu_id reads -1 until librseq registers, then the CPU."""
    seen = {}

    def main():
        seen["before"] = rseq_current_cpu_raw()
        seen["register"] = rseq_register_current_thread()
        seen["after"] = rseq_current_cpu_raw()
        seen["cpu"] = sched_getcpu()
        return 0

    assert machine_factory(4, glibc_rseq=False).run(main) == 0
    assert seen["before"] == RSEQ_CPU_ID_UNINITIALIZED == -1
    assert seen["register"] == 0
    assert seen["after"] == seen["cpu"] >= 0


def test_register_twice_fails_with_ebusy(machine_factory):
    """A second librseq registration of the same thread returns -1 with rseq_errno EBUSY."""
    seen = {}

    def main():
        seen["errno_before"] = rseq_errno()
        seen["first"] = rseq_register_current_thread()
        seen["second"] = rseq_register_current_thread()
        seen["errno"] = rseq_errno()
        seen["still"] = rseq_current_cpu_raw() == sched_getcpu()
        return 0

    assert machine_factory(2, glibc_rseq=False).run(main) == 0
    assert seen == {"errno_before": 0, "first": 0, "second": -1, "errno": errno.EBUSY,
                    "still": True}


def test_rseq_errno_of_a_new_thread_is_0(machine_factory):
    """rseq_errno() is per thread: 0 in a new thread, whatever dead threads of earlier runs saw."""
    stale = []

    def worker(i):
        if rseq_errno() != 0:
            stale.append(i)
        rseq_unregister_current_thread()        # fails: not registered
        if rseq_errno() != errno.EINVAL:
            stale.append(("no errno", i))

    def main():
        threads = [pthread_create(worker, i) for i in range(30)]
        for t in threads:
            pthread_join(t)
        return 0

    for _ in range(12):
        assert machine_factory(2, glibc_rseq=False).run(main) == 0
    assert stale == []


def test_unregister_resets_the_area(machine_factory):
    """Unregistering resets cpu_id to -1 for good; unregistering again fails with EINVAL."""
    seen = {}

    def main():
        rseq_register_current_thread()
        sched_setaffinity(0, {1})
        seen["registered"] = (rseq_current_cpu_raw(), rseq_cpu_start(), rseq_current_mm_cid())
        seen["unregister"] = rseq_unregister_current_thread()
        seen["after"] = (rseq_current_cpu_raw(), rseq_cpu_start(), rseq_current_mm_cid())
        sched_setaffinity(0, {2})
        usleep(100)
        seen["migrated"] = rseq_current_cpu_raw()
        seen["again"] = rseq_unregister_current_thread()
        seen["errno"] = rseq_errno()
        return 0

    assert machine_factory(4, glibc_rseq=False).run(main) == 0
    assert seen["registered"] == (1, 1, 0)
    assert seen["unregister"] == 0
    assert seen["after"] == (-1, 0, 0)
    assert seen["migrated"] == -1
    assert (seen["again"], seen["errno"]) == (-1, errno.EINVAL)


def test_unregistered_thread_reads_mm_cid_0_and_cpu_id_minus_1(machine_factory):
    """Without glibc an unregistered thread reads cpu_id -1, cpu_id_start 0, mm_cid 0 anywhere."""
    seen = {}

    def worker(_):
        sched_setaffinity(0, {3})
        busy_wait(50_000)
        seen["thread"] = (rseq_current_cpu_raw(), rseq_cpu_start(), rseq_current_mm_cid())
        return 0

    def main():
        sched_setaffinity(0, {2})
        seen["main"] = (rseq_current_cpu_raw(), rseq_cpu_start(), rseq_current_mm_cid())
        pthread_join(pthread_create(worker))
        return 0

    assert machine_factory(4, glibc_rseq=False).run(main) == 0
    assert seen == {"main": (-1, 0, 0), "thread": (-1, 0, 0)}


def test_new_thread_starts_unregistered_without_glibc(machine_factory):
    """A new thread starts unregistered without glibc, registered with it; its area is its own."""
    def make(seen):
        def worker(_):
            seen["thread_before"] = rseq_current_cpu_raw()
            seen["thread_register"] = rseq_register_current_thread()
            seen["thread_after"] = rseq_current_cpu_raw() == sched_getcpu()
            seen["own_area"] = rseq_get_abi() is not seen["main_area"]
            return 0

        def main():
            rseq_register_current_thread()
            seen["main_area"] = rseq_get_abi()
            pthread_join(pthread_create(worker))
            return 0
        return main

    without, with_glibc = {}, {}
    assert machine_factory(4, glibc_rseq=False).run(make(without)) == 0
    assert machine_factory(4).run(make(with_glibc)) == 0
    assert without["thread_before"] == -1
    assert with_glibc["thread_before"] >= 0
    for seen in (without, with_glibc):
        assert seen["thread_register"] == 0
        assert seen["thread_after"] and seen["own_area"]


# -- librseq: readers ----------------------------------------------------------------------------

def test_rseq_current_cpu_and_cpu_start_follow_the_thread(machine_factory):
    """rseq_current_cpu and rseq_cpu_start read the CPU the thread runs on."""
    seen = []

    def main():
        for cpu in (3, 0, 2, 1):
            sched_setaffinity(0, {cpu})
            seen.append((sched_getcpu(), rseq_current_cpu(), rseq_current_cpu_raw(),
                         rseq_cpu_start()))
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen == [(c, c, c, c) for c in (3, 0, 2, 1)]


def test_rseq_current_cpu_falls_back_to_sched_getcpu_when_unregistered(machine_factory):
    """Unregistered, rseq_current_cpu() is sched_getcpu() though cpu_id reads -1."""
    seen = {}

    def main():
        sched_setaffinity(0, {2})
        seen["raw"] = rseq_current_cpu_raw()
        seen["cpu"] = rseq_current_cpu()
        return 0

    assert machine_factory(4, glibc_rseq=False).run(main) == 0
    assert seen == {"raw": -1, "cpu": 2}


def test_mm_cid_and_node_id_are_available(machine_factory):
    """The kernel's feature size covers node_id and mm_cid, registered by glibc or not."""
    for kwargs in ({}, {"glibc_rseq": False}):
        seen = {}

        def main():
            rseq_register_current_thread()
            seen["mm_cid"] = rseq_mm_cid_available()
            seen["node_id"] = rseq_node_id_available()
            return 0

        assert machine_factory(2, **kwargs).run(main) == 0
        assert seen == {"mm_cid": True, "node_id": True}


def test_mm_cid_of_a_lone_thread_is_0(machine_factory):
    """A single-threaded process's mm_cid is 0 on whichever CPU it runs."""
    seen = []

    def main():
        for cpu in (3, 1):
            sched_setaffinity(0, {cpu})
            seen.append(rseq_current_mm_cid())
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen == [0, 0]


def test_threads_running_at_once_have_distinct_mm_cids(machine_factory):
    """Threads spinning on different CPUs at once read distinct mm_cids below nr_cpus."""
    nthreads = 3
    barrier = pthread_barrier_t(nthreads)
    cids = {}

    def worker(cpu):
        sched_setaffinity(0, {cpu})
        barrier.wait()
        busy_wait(100_000)
        cids[cpu] = rseq_current_mm_cid()
        busy_wait(500_000)      # keep the cid while the others read theirs
        return 0

    def main():
        threads = [pthread_create(worker, c) for c in range(1, nthreads + 1)]
        for t in threads:
            pthread_join(t)
        return 0

    assert machine_factory(4).run(main) == 0
    assert len(cids) == nthreads
    assert len(set(cids.values())) == nthreads
    assert all(0 <= c < 4 for c in cids.values())


def test_rseq_current_node_id_on_two_nodes(machine_factory):
    """With two nodes, node_id is the running CPU's node: CPUs 0-1 node 0, CPUs 2-3 node 1."""
    seen = []

    def main():
        for cpu in range(4):
            sched_setaffinity(0, {cpu})
            seen.append((cpu, rseq_current_node_id(), rseq_fallback_current_node()))
        return 0

    assert machine_factory(4, nr_nodes=2).run(main) == 0
    assert seen == [(0, 0, 0), (1, 0, 0), (2, 1, 1), (3, 1, 1)]


# -- the kernel's sys_rseq -----------------------------------------------------------------------

def test_sys_rseq_registration_errors_before_registering(machine_factory):
    """Unknown flags, a length under 32, a misaligned area: EINVAL; no area at all: EFAULT."""
    seen = {}

    def main():
        good = rseq_alloc_abi()
        seen["flags"] = errno_of(sys_rseq, good, 32, 1 << 1, RSEQ_SIG)
        seen["unregister_and_more"] = errno_of(sys_rseq, good, 32, RSEQ_FLAG_UNREGISTER | 2,
                                               RSEQ_SIG)
        seen["len 16"] = errno_of(sys_rseq, good, 16, 0, RSEQ_SIG)
        seen["len 28"] = errno_of(sys_rseq, good, 28, 0, RSEQ_SIG)
        seen["misaligned 8"] = errno_of(sys_rseq, rseq_alloc_abi(misalign=8), 32, 0, RSEQ_SIG)
        seen["misaligned 4, len 64"] = errno_of(sys_rseq, rseq_alloc_abi(misalign=4), 64, 0,
                                                RSEQ_SIG)
        seen["None"] = errno_of(sys_rseq, None, 32, 0, RSEQ_SIG)
        seen["not an area"] = errno_of(sys_rseq, 0x1000, 32, 0, RSEQ_SIG)
        seen["raw"] = rseq_current_cpu_raw()
        return 0

    assert machine_factory(2, glibc_rseq=False).run(main) == 0
    assert seen == {"flags": errno.EINVAL, "unregister_and_more": errno.EINVAL,
                    "len 16": errno.EINVAL, "len 28": errno.EINVAL,
                    "misaligned 8": errno.EINVAL, "misaligned 4, len 64": errno.EINVAL,
                    "None": errno.EFAULT, "not an area": errno.EFAULT, "raw": -1}


def test_sys_rseq_checks_the_length_before_the_address(machine_factory):
    """kernel/rseq.c's order: a bad length is EINVAL even for NULL; a good one gets EFAULT."""
    seen = {}

    def main():
        seen["None, len 16"] = errno_of(sys_rseq, None, 16, 0, RSEQ_SIG)
        seen["None, len 64"] = errno_of(sys_rseq, None, 64, 0, RSEQ_SIG)
        seen["None, len 32"] = errno_of(sys_rseq, None, 32, 0, RSEQ_SIG)
        return 0

    assert machine_factory(2, glibc_rseq=False).run(main) == 0
    assert seen == {"None, len 16": errno.EINVAL, "None, len 64": errno.EFAULT,
                    "None, len 32": errno.EFAULT}


def test_sys_rseq_errors_while_registered(machine_factory):
    """While registered: same area EBUSY, other area or len EINVAL, other sig EPERM."""
    seen = {}

    def main():
        mine = rseq_get_abi()
        seen["same"] = errno_of(sys_rseq, mine, 32, 0, RSEQ_SIG)
        seen["other area"] = errno_of(sys_rseq, rseq_alloc_abi(), 32, 0, RSEQ_SIG)
        seen["same area, other len"] = errno_of(sys_rseq, mine, 64, 0, RSEQ_SIG)
        seen["wrong sig"] = errno_of(sys_rseq, mine, 32, 0, RSEQ_SIG ^ 1)
        seen["flags"] = errno_of(sys_rseq, mine, 32, 4, RSEQ_SIG)
        seen["None"] = errno_of(sys_rseq, None, 32, 0, RSEQ_SIG)
        seen["still registered"] = rseq_current_cpu_raw() == sched_getcpu()
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"same": errno.EBUSY, "other area": errno.EINVAL,
                    "same area, other len": errno.EINVAL, "wrong sig": errno.EPERM,
                    "flags": errno.EINVAL, "None": errno.EINVAL, "still registered": True}


def test_sys_rseq_unregister_errors(machine_factory):
    """Unregister: wrong len EINVAL, wrong sig EPERM, other area EINVAL; registration stands."""
    seen = {}

    def main():
        mine = rseq_get_abi()
        seen["wrong len"] = errno_of(sys_rseq, mine, 64, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        seen["wrong sig"] = errno_of(sys_rseq, mine, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG + 1)
        seen["other area"] = errno_of(sys_rseq, rseq_alloc_abi(), 32, RSEQ_FLAG_UNREGISTER,
                                      RSEQ_SIG)
        seen["None"] = errno_of(sys_rseq, None, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        seen["still registered"] = rseq_current_cpu_raw() == sched_getcpu()
        seen["unregister"] = sys_rseq(mine, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        seen["cpu_id"] = mine.cpu_id
        seen["twice"] = errno_of(sys_rseq, mine, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"wrong len": errno.EINVAL, "wrong sig": errno.EPERM,
                    "other area": errno.EINVAL, "None": errno.EINVAL,
                    "still registered": True, "unregister": 0, "cpu_id": -1,
                    "twice": errno.EINVAL}


def test_sys_rseq_unregister_when_nothing_is_registered_is_einval(machine_factory):
    """Without any registration, unregistering any area is EINVAL."""
    seen = {}

    def main():
        seen["own"] = errno_of(sys_rseq, rseq_get_abi(), 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        seen["fresh"] = errno_of(sys_rseq, rseq_alloc_abi(), 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        return 0

    assert machine_factory(2, glibc_rseq=False).run(main) == 0
    assert seen == {"own": errno.EINVAL, "fresh": errno.EINVAL}


def test_sys_rseq_fields_are_valid_when_registration_returns(machine_factory):
    """The area's fields are valid as soon as a 32- or 64-byte registration returns."""
    seen = {}

    def main():
        sched_setaffinity(0, {3})
        area = rseq_alloc_abi()
        seen["before"] = fields(area)
        seen["ret"] = sys_rseq(area, 32, 0, RSEQ_SIG)
        seen["after"] = fields(area)
        seen["unregister"] = sys_rseq(area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        seen["reset"] = fields(area)
        big = rseq_alloc_abi()
        seen["big"] = sys_rseq(big, 64, 0, RSEQ_SIG)
        seen["big_fields"] = fields(big)
        seen["big_unregister_32"] = errno_of(sys_rseq, big, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        seen["big_unregister"] = sys_rseq(big, 64, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
        return 0

    assert machine_factory(4, nr_nodes=2, glibc_rseq=False).run(main) == 0
    assert seen["before"] == (0, -1, 0, 0)
    assert seen["ret"] == 0
    assert seen["after"] == (3, 3, 1, 0)
    assert seen["unregister"] == 0
    assert seen["reset"] == (0, -1, 0, 0)
    assert seen["big"] == 0 and seen["big_fields"] == (3, 3, 1, 0)
    assert seen["big_unregister_32"] == errno.EINVAL
    assert seen["big_unregister"] == 0


OUTSIDE_CALLS = {
    "rseq_register_current_thread": rseq_register_current_thread,
    "rseq_unregister_current_thread": rseq_unregister_current_thread,
    "rseq_current_cpu": rseq_current_cpu,
    "rseq_current_cpu_raw": rseq_current_cpu_raw,
    "rseq_cpu_start": rseq_cpu_start,
    "rseq_current_mm_cid": rseq_current_mm_cid,
    "rseq_mm_cid_available": rseq_mm_cid_available,
    "rseq_node_id_available": rseq_node_id_available,
    "rseq_current_node_id": rseq_current_node_id,
    "rseq_fallback_current_node": rseq_fallback_current_node,
    "rseq_get_abi": rseq_get_abi,
    "rseq_errno": rseq_errno,
    "rseq_alloc_abi": rseq_alloc_abi,
    "sys_rseq": lambda: sys_rseq(None, 32, 0, RSEQ_SIG),
}


@pytest.mark.parametrize("name", sorted(OUTSIDE_CALLS))
def test_rseq_api_outside_an_emulated_thread_is_a_usage_error(name):
    """librseq and sys_rseq called from the test itself, not a body, raise UsageError."""
    with pytest.raises(UsageError, match="outside an emulated thread"):
        OUTSIDE_CALLS[name]()


# -- when the kernel writes the area -------------------------------------------------------------

def test_migration_by_sched_setaffinity_is_visible_when_the_call_returns(machine_factory):
    """After sched_setaffinity(0, {c}) returns, the area already says c."""
    seen = []

    def main():
        area = rseq_get_abi()
        for cpu in (1, 3, 0, 2):
            sched_setaffinity(0, {cpu})
            seen.append((area.cpu_id, area.cpu_id_start))
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen == [(1, 1), (3, 3), (0, 0), (2, 2)]


def test_area_is_written_only_on_return_to_user_space(machine_factory):
    """A sleeping thread moved to another CPU keeps its old cpu_id until it runs again."""
    seen = {}

    def worker(_):
        sched_setaffinity(0, {0})
        seen["tid"], seen["area"] = gettid(), rseq_get_abi()
        usleep(10_000)                   # main moves us meanwhile
        seen["own_read"] = (rseq_current_cpu_raw(), rseq_cpu_start(), sched_getcpu())
        return 0

    def main():
        sched_setaffinity(0, {2})
        t = pthread_create(worker)
        usleep(1000)
        pthread_setaffinity_np(t, {1})
        area = seen["area"]
        seen["seen_by_main"] = (area.cpu_id, area.cpu_id_start)
        seen["affinity"] = sched_getaffinity(seen["tid"])
        pthread_join(t)
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen["affinity"] == {1}
    assert seen["seen_by_main"] == (0, 0)
    assert seen["own_read"] == (1, 1, 1)


def test_interrupted_computation_sees_its_new_cpu_when_it_resumes(machine_factory):
    """A thread moved while computing updates its area as it returns from the interrupt."""
    seen = {}

    def worker(_):
        sched_setaffinity(0, {0})
        busy_wait(5_000_000)            # main moves us meanwhile
        seen["own_read"] = (rseq_current_cpu_raw(), sched_getcpu())
        return 0

    def main():
        sched_setaffinity(0, {2})
        t = pthread_create(worker)
        usleep(1000)
        pthread_setaffinity_np(t, {1})
        pthread_join(t)
        return 0

    assert machine_factory(4).run(main) == 0
    assert seen["own_read"] == (1, 1)


# -- rseq across fork and exec -------------------------------------------------------------------

def test_forked_child_reads_its_own_cpu(machine_factory):
    """A forked child inherits the registration and reads its own CPU, not the parent's, at once."""
    seen = {}

    def child():
        seen["child"] = (sched_getcpu(), rseq_current_cpu_raw(), rseq_cpu_start(),
                         rseq_current_mm_cid())
        return 0

    def main():
        rseq_register_current_thread()
        sched_setaffinity(0, {1})
        seen["parent"] = rseq_current_cpu_raw()
        sched_setaffinity(0, {0, 1, 2, 3})        # still on CPU 1: the child goes elsewhere
        waitpid(fork(child))
        return 0

    for kwargs in ({}, {"glibc_rseq": False}):
        seen.clear()
        assert machine_factory(4, **kwargs).run(main) == 0
        cpu, raw, start, cid = seen["child"]
        assert seen["parent"] == 1
        assert (raw, start, cid) == (cpu, cpu, 0), kwargs


def test_exec_drops_the_registration(machine_factory):
    """execve drops the registration: the new program starts unregistered and can register."""
    seen = {}

    def new_main():
        seen["new_before"] = rseq_current_cpu_raw()
        seen["new_register"] = rseq_register_current_thread()
        seen["new_after"] = rseq_current_cpu_raw() == sched_getcpu()
        return 0

    def main():
        seen["old_register"] = rseq_register_current_thread()
        execve(new_main)

    assert machine_factory(2, glibc_rseq=False).run(main) == 0
    assert seen == {"old_register": 0, "new_before": -1, "new_register": 0, "new_after": True}


def test_exec_with_glibc_registers_the_new_program(machine_factory):
    """With glibc, the new program's main thread is registered before its first line."""
    seen = {}

    def new_main():
        seen["raw"], seen["cpu"] = rseq_current_cpu_raw(), sched_getcpu()
        return 0

    def main():
        sched_setaffinity(0, {1})
        execve(new_main)

    assert machine_factory(2).run(main) == 0
    assert seen["raw"] == seen["cpu"] == 1
