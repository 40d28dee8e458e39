"""seed 003 (V3 of the MM CID rewrite, 2025-10-29) against v7.0: the same
stories, with the endings where V3 differs: the direct hand-over to the
CPU, TRANSIT only on the way back, a schedout that always drops, the
counting thread walk, and no floor under pcpu_thrs."""

import pytest

from emulator import Machine
from emulator.errors import HardLockup
from emulator.uapi.libc import busy_wait, pthread_create, pthread_join, usleep, vfork, waitpid
from emulator.variants import get_variant
from emulator.variants.mm_cid_v7_0 import (
    MM_CID_ONCPU, MM_CID_TRANSIT, MM_CID_UNSET, cid_on_task,
)

MS = 1_000_000
SEED003 = get_variant("seed-003")
V70 = get_variant("v7.0")


def test_registered_as_a_subclass_of_v7_0_called_from_copy_mm():
    """seed-003 derives from v7.0 and keeps V3's call site of sched_mm_cid_fork()."""
    assert issubclass(SEED003, V70)
    assert "[patch V3 00/20]" in SEED003.copies
    assert SEED003.fork_in_copy_mm is not V70.fork_in_copy_mm
    assert SEED003.fork_in_sched_post_fork is not V70.fork_in_sched_post_fork


def switch_to_per_cpu_with_threads_running(variant):
    """4 users spinning on 4 CPUs, then a 5th: the cids of the running
    threads and of their CPUs' slots right after the fork's fixup."""
    m = Machine(nr_cpus=4, variants=[variant], seed=1)
    k = m.kernel
    out = {}

    def main():
        threads = [pthread_create(lambda _: busy_wait(2 * MS)) for _ in range(3)]
        threads.append(pthread_create(lambda _: busy_wait(2 * MS)))
        mm = k.cur.mm
        running = [rq.curr for rq in k.rqs if rq.curr.mm is mm]
        out["running"] = sorted((t.mm_cid.cid, mm.mm_cid.pcpu[t.cpu].cid) for t in running)
        out["bits"] = mm.cidmask.bits
        for t in threads:
            pthread_join(t)
        return 0
    assert m.run(main) == 0
    return out


def test_the_switch_to_per_cpu_mode_hands_running_cids_directly_to_their_cpus():
    """V3's mm_cid_transfer_to_cpu() makes each running task's CID its CPU's
    at once (``|= MM_CID_ONCPU``); v7.0's mm_cid_transit_to_cpu() only marks
    it TRANSIT, so that it goes back to the pool if the task leaves its CPU
    before the transition is over (4327fb13fa47).  Same bits either way."""
    v3 = switch_to_per_cpu_with_threads_running("seed-003")
    v7 = switch_to_per_cpu_with_threads_running("v7.0")
    assert v3["running"] == [(n | MM_CID_ONCPU, n | MM_CID_ONCPU) for n in range(4)]
    assert v7["running"] == [(n | MM_CID_TRANSIT, n | MM_CID_TRANSIT) for n in range(4)]
    assert v3["bits"] == v7["bits"] == 0b1111


def test_transit_is_set_only_on_the_way_back_to_per_task_mode():
    """V3 keeps two words: the fork's fixup runs with percpu=1, transit=0;
    the exit's with percpu=0, transit=TRANSIT, cleared at the end."""
    seen = []

    class Recording(SEED003):
        name = "seed-003-recording-fixups"

        def mm_cid_fixup_tasks_to_cpus(self):
            mc = self.k.cur.mm.mm_cid
            seen.append(("tasks_to_cpus", mc.percpu, mc.transit))
            super().mm_cid_fixup_tasks_to_cpus()

        def mm_cid_fixup_cpus_to_tasks(self, mm):
            seen.append(("cpus_to_tasks", mm.mm_cid.percpu, mm.mm_cid.transit))
            super().mm_cid_fixup_cpus_to_tasks(mm)
            seen.append(("done", mm.mm_cid.percpu, mm.mm_cid.transit))

    def main():
        threads = [pthread_create(lambda _: busy_wait(MS)) for _ in range(4)]
        for t in threads:
            pthread_join(t)
        return 0
    assert Machine(nr_cpus=4, variants=[Recording], seed=1).run(main) == 0
    assert seen == [("tasks_to_cpus", 1, 0), ("cpus_to_tasks", 0, MM_CID_TRANSIT), ("done", 0, 0)]


def per_task_mode(mm):
    mc = mm.mm_cid
    return not (mc.mode & MM_CID_ONCPU) if hasattr(mc, "mode") else not mc.percpu


@pytest.mark.parametrize("variant, kept", [("seed-003", False), ("v7.0", True)])
def test_schedout_after_the_switch_back(variant, kept):
    """9 users on 8 CPUs go per-CPU (pcpu_thrs 4); the exit that leaves 3
    users switches back while two threads still compute with transitional
    CIDs.  When they schedule out after the fixup: V3 drops the CID into the
    pool (and takes one again at schedule-in); v7.0 keeps it (4463c7aa11a6)."""
    seen = []

    class Recording(get_variant(variant)):
        name = f"{variant}-recording-schedout"

        def mm_cid_schedout(self, prev):
            before = prev.mm_cid.cid
            super().mm_cid_schedout(prev)
            if before & MM_CID_TRANSIT and prev.mm_cid.active and per_task_mode(prev.mm):
                cid = before & ~MM_CID_TRANSIT
                seen.append((cid, prev.mm_cid.cid, prev.mm.cidmask.bits >> cid & 1))

    def leaver(i):
        usleep(1000 + 200 * i)

    def stayer(_):
        busy_wait(4 * MS)                # computing through the switch back
        usleep(100)

    def main():
        stay = [pthread_create(stayer) for _ in range(2)]
        threads = [pthread_create(leaver, i) for i in range(6)]
        for t in threads + stay:
            pthread_join(t)
        return 0
    assert Machine(nr_cpus=8, variants=[Recording], seed=1).run(main) == 0
    assert len(seen) == 2, seen
    for cid, after, bit in seen:
        assert (after, bit) == ((cid, 1) if kept else (MM_CID_UNSET, 0))


def vfork_while_a_thread_forks(vchild, threads, ns, forker_ns=0):
    """A main that vfork()s *vchild* while its thread, once main is in
    vfork(), creates *threads* threads computing *ns* each (and computes
    *forker_ns* itself), crossing max_cids on 4 CPUs."""
    def forker(_):
        usleep(500)                      # main is in vfork() by now
        started = [pthread_create(lambda _: busy_wait(ns)) for _ in range(threads)]
        busy_wait(forker_ns)
        for t in started:
            pthread_join(t)

    def main():
        t = pthread_create(forker)
        pid = vfork(vchild)
        assert waitpid(pid) == (pid, 0)
        pthread_join(t)
        return 0
    return main


@pytest.mark.parametrize("variant", ["seed-003", "v7.0"])
def test_the_walk_to_per_cpu_mode_and_a_vforked_user(variant):
    """A vfork()ed child computes on the parent's mm, outside its thread
    group, when a thread of the parent crosses max_cids.  V3 counts the users
    it fixed: over the thread group, then over every thread of the system,
    where it meets the thread group again first and stops before the child,
    whose CID stays task-owned in per-CPU mode (the "flaky counting logic"
    192d852129b1 replaced); v7.0's user_list walk reaches it."""
    seen = {}

    class Recording(get_variant(variant)):
        name = f"{variant}-recording-walk"

        def mm_cid_fixup_tasks_to_cpus(self):
            current = self.k.cur
            mm = current.mm
            super().mm_cid_fixup_tasks_to_cpus()
            (child,) = [t for t in self.k.tasks.values()
                        if t.mm is mm and t.tgid != current.tgid]
            seen["child"] = child.mm_cid.cid

    def vchild():
        busy_wait(3 * MS)
        return 0

    main = vfork_while_a_thread_forks(vchild, threads=2, ns=MS)
    assert Machine(nr_cpus=4, variants=[Recording], seed=1).run(main) == 0
    if variant == "seed-003":
        assert cid_on_task(seen["child"])
    else:
        assert seen["child"] & MM_CID_TRANSIT and not cid_on_task(seen["child"])


def test_the_missed_vforked_user_keeps_its_cid_and_a_cpu_spins_for_one():
    """The same walk with the child asleep through it: its task-owned CID is
    never handed over, so the four CPUs have three CIDs between them.  Four
    threads computing at once: the fourth CPU spins in mm_get_cid() with its
    runqueue lock held.  Recorded as V3's finding, its cause noted when the
    walk stops; v7.0 runs the same program to its end.  The report's owner
    table shows why: every bit owned, one by the child's task in per-CPU mode."""
    import re
    from emulator.explore.findings import known_finding
    from emulator.uapi.libc import gettid
    from emulator.variants.mm_cid_seed_003 import SEED_003_COUNTING_WALK
    seen = {}

    def vchild():
        seen["child"] = gettid()
        usleep(20_000)                   # asleep through the switch to per-CPU mode
        return 0

    main = vfork_while_a_thread_forks(vchild, threads=3, ns=5 * MS, forker_ns=5 * MS)
    m = Machine(nr_cpus=4, variants=["seed-003"], seed=1)
    with pytest.raises(HardLockup, match=r"spinning on cpu_relax\(\) loop[\s\S]*"
                                         r"cidmask=\[0, 1, 2, 3\]") as info:
        m.run(main)
    assert known_finding(SEED003, info.value, m.kernel.causes) == SEED_003_COUNTING_WALK
    detail = info.value.detail
    assert "cid bitmap of mm#1: [0, 1, 2, 3] set, bound 4, 0 without an owner; mm_cid(percpu=1" \
        in detail
    assert re.search(rf"  cid \d: main\[{seen['child']}\] \(task: \d, asleep", detail)
    assert len(re.findall(r"  cid \d: CPU \d's slot \(\d\|ONCPU, ", detail)) == 3
    assert Machine(nr_cpus=4, variants=["v7.0"], seed=1).run(main) == 0


def test_two_threads_on_a_uniprocessor_lock_up_without_a_floor_under_pcpu_thrs():
    """num_possible_cpus() == 1: V3's pcpu_thrs = min(1 - 0, 1/2) = 0 means
    "per-CPU mode off", so the second user stays in per-task mode with
    max_cids = 1 and mm_get_cid() spins for a second CID that the one-bit
    bitmap cannot have (Nathan Chancellor's report, fixed by 14b2b17cca54);
    v7.0 switches to per-CPU mode."""
    def main():
        pthread_join(pthread_create(lambda _: usleep(100)))
        return 0
    with pytest.raises(HardLockup, match=r"spinning on cpu_relax\(\) loop") as info:
        Machine(nr_cpus=1, variants=["seed-003"], seed=1).run(main)
    assert "users=2 max_cids=1 pcpu_thrs=0" in str(info.value)
    assert "cid bitmap of mm#1: [0] set, bound 1, 0 without an owner" in info.value.detail
    assert "mm_cid.lock" in str(info.value)          # held: sched_mm_cid_fork()
    assert Machine(nr_cpus=1, variants=["v7.0"], seed=1).run(main) == 0


def test_a_leaked_cid_lockup_is_recognised_from_each_cpu_it_stops():
    """The watchdog may name the CPU spinning in mm_get_cid() or, first, the
    fixup walk spinning on the runqueue lock that CPU holds ("the fixup
    thread can livelock on the held runqueue lock", 47ee94efccf6), or a thread
    spinning on the mutex that walk holds (a weak stress campaign met that
    one first): each is the recorded finding when its cause was noted, none
    when it was not.  The watchdog names what a CPU spins on by the lock's
    class, as lockdep does, so every runqueue and every mm is one class; a
    lockup on another lock is not the finding."""
    from emulator.checks.lockdep import lock_class
    from emulator.explore.findings import known_finding
    from emulator.variants.mm_cid_seed_003 import SEED_003_COUNTING_WALK, WALK_MISSED_CLONE_VM_USER
    v = get_variant("seed-003")
    assert lock_class("rq0->__lock") == "rq->__lock"
    assert lock_class("mm#8->mm_cid.mutex") == "mm->mm_cid.mutex"
    spinner = HardLockup("watchdog: hard LOCKUP on CPU 0: puppet[2] spinning on cpu_relax() loop "
                         "for 1005784715 ns", spinning_on="cpu_relax() loop")
    walk = HardLockup("watchdog: hard LOCKUP on CPU 3: puppet[17] spinning on rq0->__lock for "
                      "1010824481 ns", spinning_on=lock_class("rq0->__lock"))
    waiter = HardLockup("watchdog: hard LOCKUP on CPU 0: stress[1498] spinning on mutex "
                        "mm#8->mm_cid.mutex (optimistic spin) for 10112592 ns",
                        spinning_on=lock_class("mm#8->mm_cid.mutex"))
    for exc in (spinner, walk, waiter):
        assert known_finding(v, exc, {WALK_MISSED_CLONE_VM_USER}) == SEED_003_COUNTING_WALK
        assert known_finding(v, exc, set()) is None
    zone = HardLockup("watchdog: hard LOCKUP on CPU 0: puppet[2] spinning on zone0->lock for "
                      "1005784715 ns", spinning_on=lock_class("zone0->lock"))
    assert known_finding(v, zone, {WALK_MISSED_CLONE_VM_USER}) is None


def test_the_weak_stress_search_met_47ee94efccf6s_lockup_which_v7_0_does_not_have():
    """Found, not written: `explore --variant seed-003 --memory-model weak --workload
    stress --cpus 6 --cpus 7 --cpus 8 --seed 4` met it after 74 minutes (about 10,000
    runs, 2026-12-07), with machine seed 51758.  A task scheduling in during the switch
    back to per-task mode read percpu as 0 and transit as 0 (MM_CID_TRANSIT stored, not
    yet seen), kept its CID when it left, and the next task on that CPU spun in
    mm_get_cid() holding the runqueue lock the fixup walk then spun on.  When the walk's
    task_rq_lock() took p->pi_lock, as the kernel's does, that run moved off the lockup;
    this one is the same loads on the same machine with the first machine seed of 51700
    on that meets it again, scanned again when the stopper took p->pi_lock across a
    migration (52738 before).  It passes under sc and tso, and on v7.0 (one mode word,
    smp_mb()).  A change of the model's timing may move it again: a new campaign, or the
    seeds of this case, then give the one to put here."""
    from emulator.explore.stress import StressCase, run_stress
    from emulator.variants.mm_cid_seed_003 import SCHEDIN_MISSED_TRANSIT, SEED_003_WEAK_TRANSITION
    case = StressCase(8, 52639, "cpu-load:20,slice=1ms+pthread-max:16,3+cyclictest:100",
                      20 * MS, "random:p=0.05,max_ns=20000", isolation={"nohz_full": [3]})
    machines = []
    assert run_stress(SEED003, case, on_machine=machines.append,
                      memory_model="weak") == SEED_003_WEAK_TRANSITION
    assert SCHEDIN_MISSED_TRANSIT in machines[0].kernel.causes
    for variant, model in ((SEED003, "sc"), (SEED003, "tso"), (V70, "weak")):
        assert run_stress(variant, case, memory_model=model) is None, (variant.name, model)


def test_a_schedin_notes_a_missed_transit_only_when_it_read_0_over_a_stored_transit():
    """The cause of the finding above is noted where a task scheduling in reads
    mm_cid.transit: a 0 read while MM_CID_TRANSIT is the newest value; not a 0 read
    of a 0, nor a TRANSIT read; and the lockup is the recorded finding only with it."""
    from types import SimpleNamespace
    from emulator.explore.findings import known_finding
    from emulator.variants.mm_cid_seed_003 import SCHEDIN_MISSED_TRANSIT, SEED_003_WEAK_TRANSITION

    def notes(read, newest):
        k = Machine(nr_cpus=2, variants=["seed-003"]).kernel
        k.mm_cid.note_schedin_read_transit(SimpleNamespace(mm_cid=SimpleNamespace(
            transit=newest)), read)
        return k.causes
    assert notes(0, MM_CID_TRANSIT) == {SCHEDIN_MISSED_TRANSIT}
    assert notes(0, 0) == set() and notes(MM_CID_TRANSIT, MM_CID_TRANSIT) == set()
    walk = HardLockup("watchdog: hard LOCKUP on CPU 1: stress[1195] spinning on rq0->__lock "
                      "for 10112592 ns", spinning_on="rq->__lock")
    assert known_finding(SEED003, walk, {SCHEDIN_MISSED_TRANSIT}) == SEED_003_WEAK_TRANSITION
    assert known_finding(SEED003, walk, set()) is None
