"""v6.13 (7e019dcc470f): recent_cid, the mm's allowed-CPU union, max_nr_cid.

The stories here are also told against v6.14 where 02d954c0fdf9 changes the
ending: a CPU's stale recent_cid is handed back in v6.13, not in v6.14.
"""

import pytest

from emulator import Machine
from emulator.uapi.libc import (
    busy_wait, fork, pthread_create, pthread_join, pthread_setaffinity_np, pthread_self,
    sched_setaffinity, usleep, waitpid,
)
from emulator.uapi.rseq import rseq_current_mm_cid
from emulator.variants import get_variant
from emulator.variants.mm_cid_v6_4 import MM_CID_UNSET

MS = 1_000_000


def busy_leader_after_threads_exit(variant, nr_cpus=8, seed=1):
    """One thread per CPU, each pinned; all but the main thread and the one
    with the highest cid exit; that one then computes 2 ms and sleeps 1 ms for
    1.5 s, so that ticks find it current and queue task_mm_cid_work.
    Returns (machine, cid before, cids seen at the end, its CPU's pcpu slot,
    max_nr_cid, mm_users)."""
    m = Machine(nr_cpus=nr_cpus, variants=[variant], seed=seed)
    k = m.kernel
    seen = {}
    out = {}

    def runner(cpu):
        pthread_setaffinity_np(pthread_self(), {cpu})
        usleep(20_000)
        seen[cpu] = rseq_current_mm_cid()
        usleep(20_000)
        if cpu != out.get("leader_cpu"):
            return
        for _ in range(500):
            busy_wait(2 * MS)
            usleep(1000)
        mm = k.cur.mm
        out["end"] = rseq_current_mm_cid()
        out["slot"] = mm.pcpu_cid[cpu]
        out["max_nr_cid"] = mm.max_nr_cid.counter
        out["mm_users"] = mm.mm_users.counter

    def main():
        sched_setaffinity(0, {0})
        threads = {cpu: pthread_create(runner, cpu) for cpu in range(1, nr_cpus)}
        usleep(30_000)
        leader = max(seen, key=seen.get)
        out["leader_cpu"] = leader
        out["before"] = seen[leader]
        for cpu, t in threads.items():
            pthread_join(t)
        return 0

    assert m.run(main) == 0
    return m, out


def test_v6_13_hands_a_cpu_its_recent_cid_back_after_the_scan_cleared_it():
    """The scan runs (the leader is current at ticks) and clears the leader's
    high cid, but __mm_cid_try_get() first retries its CPU's recent_cid: the
    leader gets the same cid back, and max_nr_cid keeps its high-water mark."""
    m, out = busy_leader_after_threads_exit("v6.13")
    assert out["before"] >= 2
    assert "scan task_mm_cid_work" in m.stats()         # the tick did queue the scan
    assert out["end"] == out["before"]
    assert out["slot"].recent_cid == out["before"]
    assert out["max_nr_cid"] == 8


def test_v6_14_lowers_max_nr_cid_and_ignores_a_recent_cid_above_it():
    """Same story on v6.14: after the scan clears the leader's cid, max_nr_cid
    drops to min(nr_cpus_allowed, mm_users) = 2 and the stale recent_cid is
    not re-used: the leader's cid goes below 2."""
    m, out = busy_leader_after_threads_exit("v6.14")
    assert out["before"] >= 2
    assert "scan task_mm_cid_work" in m.stats()
    assert out["mm_users"] == 2
    assert out["max_nr_cid"] == 2
    assert out["end"] < 2
    assert out["slot"].recent_cid == out["end"]


@pytest.mark.parametrize("variant", ["v6.13", "v6.14"])
def test_mm_cpus_allowed_is_the_grow_only_union_of_the_threads_masks(variant):
    """mm_init_cid() copies the forking task's mask; sched_setaffinity() widens
    the union through __do_set_cpus_allowed() -> mm_set_cpus_allowed(); a
    narrower mask never shrinks it; cid_bound() (P2) is nr_cpus_allowed."""
    m = Machine(nr_cpus=8, variants=[variant], seed=3)
    k = m.kernel
    seen = []

    def child():
        mm = k.cur.mm
        seen.append((mm.cpus_allowed.bits, mm.nr_cpus_allowed))
        sched_setaffinity(0, {1, 2, 3})
        seen.append((mm.cpus_allowed.bits, mm.nr_cpus_allowed))
        sched_setaffinity(0, {2})
        seen.append((mm.cpus_allowed.bits, mm.nr_cpus_allowed))
        seen.append(k.mm_cid.cid_bound(mm))
        return 0

    def main():
        sched_setaffinity(0, {1})
        pid = fork(child)
        waitpid(pid)
        return 0

    assert m.run(main) == 0
    assert seen == [(0b10, 1), (0b1110, 3), (0b1110, 3), 3]


def test_v6_13_cids_come_from_expanding_max_nr_cid_and_moving_on_migration():
    """Main (cid 0, pinned to CPU 0) starts three threads there; the first one
    takes over CPU 0's cid 0 and carries it to CPU 1 when it migrates
    (sched_mm_cid_migrate_to() moves an unused source cid and sets the
    destination's recent_cid); the others expand max_nr_cid to 1 and 2.  Each
    CPU's recent_cid records the cid last used there."""
    m = Machine(nr_cpus=4, variants=["v6.13"], seed=2)
    k = m.kernel
    seen = {}

    def runner(cpu):
        pthread_setaffinity_np(pthread_self(), {cpu})
        usleep(1000)
        seen[cpu] = (rseq_current_mm_cid(), k.cur.mm.pcpu_cid[cpu].recent_cid)

    def main():
        sched_setaffinity(0, {0})
        threads = [pthread_create(runner, cpu) for cpu in (1, 2, 3)]
        for t in threads:
            pthread_join(t)
        seen["max_nr_cid"] = k.cur.mm.max_nr_cid.counter
        return 0

    assert m.run(main) == 0
    assert seen.pop("max_nr_cid") == 3
    assert seen == {1: (0, 0), 2: (1, 1), 3: (2, 2)}


def test_v6_13_idle_cpu_slots_start_unset():
    """mm_init_cid(): every slot starts with cid and recent_cid UNSET."""
    m = Machine(nr_cpus=2, variants=["v6.13"], seed=1)
    k = m.kernel
    slots = []

    def main():
        slots.extend((s.cid, s.recent_cid) for s in map(k.cur.mm.pcpu_cid.__getitem__,
                                                          range(k.nr_cpu_ids)))
        return 0

    assert m.run(main) == 0
    cpu = [i for i, s in enumerate(slots) if s != (MM_CID_UNSET, MM_CID_UNSET)]
    assert len(cpu) == 1                                  # only the CPU main ran on
    assert slots[cpu[0]] == (0, 0)


def test_v6_14_derives_from_v6_13_and_overrides_only_mm_cid_try_get():
    """02d954c0fdf9 changes one function."""
    v13, v14 = get_variant("v6.13"), get_variant("v6.14")
    assert issubclass(v14, v13)
    assert set(vars(v14)) - {"__module__", "__doc__", "name", "copies", "__qualname__"} == \
        {"_mm_cid_try_get"}
