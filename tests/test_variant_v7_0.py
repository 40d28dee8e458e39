"""v7.0: the MM CID rewrite (mm_cid.md 3.6): per-task and per-CPU ownership,
the TRANSIT phases in both directions, the user_list walk, the hysteresis,
convergence at schedule-in, and a steady state that touches no bitmap."""

import re

import pytest

from emulator import Machine
from emulator.checks.invariants import InvariantViolation
from emulator.kernel.list import hlist_for_each_entry
from emulator.kernel.percpu import touched
from emulator.uapi.libc import (
    busy_wait, execve, pthread_create, pthread_exit, pthread_join, pthread_self,
    pthread_setaffinity_np, sched_setaffinity, sched_yield, usleep, fork, waitpid,
)
from emulator.uapi.rseq import rseq_current_mm_cid
from emulator.variants import get_variant
from emulator.variants.mm_cid_v7_0 import (
    MM_CID_ONCPU, MM_CID_TRANSIT, MM_CID_UNSET, cid_on_cpu, cid_on_task,
)

MS = 1_000_000
V70 = get_variant("v7.0")


def cids_of_users(mm):
    return {t.pid: t.mm_cid.cid for t in hlist_for_each_entry(mm.mm_cid.user_list)}


def cpu_owned(mm):
    return {cpu: pcp.cid & ~MM_CID_ONCPU for cpu, pcp in touched(mm.mm_cid.pcpu)
            if cid_on_cpu(pcp.cid)}


def test_fork_past_max_cids_switches_to_per_cpu_mode_and_no_task_owns_a_cid():
    """The 5th user on 4 CPUs flips the process to per-CPU mode; the forking
    task's fixup leaves no task-owned CID: the running threads keep theirs in
    transit (no bitmap operation), the new thread has none yet."""
    m = Machine(nr_cpus=4, variants=["v7.0"], seed=1)
    k = m.kernel
    out = {}

    def spin(_):
        busy_wait(2 * MS)

    def main():
        mm = k.cur.mm
        threads = [pthread_create(spin) for _ in range(3)]
        mc = mm.mm_cid
        out["before"] = (mc.mode, mc.users, mc.max_cids, sorted(cids_of_users(mm).values()))
        threads.append(pthread_create(spin))
        out["after"] = (mc.mode, mc.users, mc.max_cids, mc.pcpu_thrs)
        out["cids"] = cids_of_users(mm)
        out["bits"] = mm.cidmask.bits
        for t in threads:
            pthread_join(t)
        out["end"] = (mc.mode, mc.users, cpu_owned(mm), cids_of_users(mm))
        return 0
    assert m.run(main) == 0
    assert out["before"] == (0, 4, 4, [0, 1, 2, 3])                 # one CID per task
    assert out["after"] == (MM_CID_ONCPU, 5, 4, 2)                  # transition complete
    cids = out["cids"]
    assert not any(cid_on_task(cid) for cid in cids.values())
    new = max(cids)
    assert cids.pop(new) == MM_CID_UNSET                            # borrows at schedule-in
    assert sorted(cids.values()) == [n | MM_CID_TRANSIT for n in range(4)]
    assert out["bits"] == 0b1111
    # The exits took users back below pcpu_thrs (2): per-task again, no CPU owns a CID.
    mode, users, owned, left = out["end"]
    assert (mode, users, owned) == (0, 1, {})
    assert all(cid_on_task(cid) for cid in left.values())


def test_the_mode_word_carries_transit_in_both_directions():
    """fork() runs the task-to-CPU fixup with mode ONCPU|TRANSIT, exit() the
    CPU-to-task fixup with mode TRANSIT; each ends with TRANSIT cleared
    (4327fb13fa47, 47ee94efccf6)."""
    seen = []

    class Recording(V70):
        name = "v7.0-recording-fixups"

        def mm_cid_fixup_tasks_to_cpus(self):
            seen.append(("tasks_to_cpus", self.k.cur.mm.mm_cid.mode))
            super().mm_cid_fixup_tasks_to_cpus()
            seen.append(("done", self.k.cur.mm.mm_cid.mode))

        def mm_cid_fixup_cpus_to_tasks(self, mm):
            seen.append(("cpus_to_tasks", mm.mm_cid.mode))
            super().mm_cid_fixup_cpus_to_tasks(mm)
            seen.append(("done", mm.mm_cid.mode))

    def main():
        threads = [pthread_create(lambda _: busy_wait(MS)) for _ in range(4)]
        for t in threads:
            pthread_join(t)
        return 0
    assert Machine(nr_cpus=4, variants=[Recording], seed=1).run(main) == 0
    assert seen == [("tasks_to_cpus", MM_CID_ONCPU | MM_CID_TRANSIT), ("done", MM_CID_ONCPU),
                    ("cpus_to_tasks", MM_CID_TRANSIT), ("done", 0)]


def test_exit_below_pcpu_thrs_switches_back_and_drops_the_exiting_cpus_cid():
    """9 users on 8 CPUs: per-CPU mode with pcpu_thrs = min(8 - 8/4, 8/2) = 4.
    Exits down to 4 users keep it (hysteresis); the exit that leaves 3 users
    switches back itself, without the deferred work: the exiting task has no
    CID and its CPU's CID is dropped before the walk (007d84287c74)."""
    seen = {}

    class Recording(V70):
        name = "v7.0-recording-exit"

        def mm_cid_fixup_cpus_to_tasks(self, mm):
            k = self.k
            seen["by"] = (k.cur.comm, k.cur.mm_cid.cid, k.cur.mm_cid.active,
                          mm.mm_cid.pcpu[k.cpu].cid, mm.mm_cid.users)
            super().mm_cid_fixup_cpus_to_tasks(mm)

    m = Machine(nr_cpus=8, variants=[Recording], seed=1)
    k = m.kernel
    modes = []

    def worker(i):
        usleep(2000 + 1000 * i)          # they leave one by one, in order

    def main():
        mm = k.cur.mm
        threads = [pthread_create(worker, i) for i in range(8)]
        mc = mm.mm_cid
        modes.append((mc.users, mc.mode, mc.pcpu_thrs))
        for t in threads[:6]:
            pthread_join(t)
            modes.append((mc.users, mc.mode))
        for t in threads[6:]:
            pthread_join(t)
        seen["owned"] = cpu_owned(mm)
        seen["work"] = (mc.work.nr_queued, mc.irq_work.pending)
        return 0
    assert m.run(main) == 0
    assert modes[0] == (9, MM_CID_ONCPU, 4)
    assert modes[1:] == [(8, MM_CID_ONCPU), (7, MM_CID_ONCPU), (6, MM_CID_ONCPU),
                         (5, MM_CID_ONCPU), (4, MM_CID_ONCPU), (3, 0)]
    comm, cid, active, slot, users = seen["by"]
    assert (cid, active, users) == (MM_CID_UNSET, 0, 3)
    assert not cid_on_cpu(slot)
    assert seen["owned"] == {}
    assert seen["work"] == (0, False)


def narrow_process_widened(variant, on_widen):
    """A process born on CPUs {0, 1} of 8 (mm nr_cpus_allowed 2) with 3 users:
    per-CPU mode.  One thread widens its affinity to all 8 CPUs; then the
    threads exit one at a time.  ``on_widen(mm)`` runs right after the
    affinity call; returns the machine."""
    m = Machine(nr_cpus=8, variants=[variant], seed=1)
    k = m.kernel

    def widener(_):
        usleep(1000)                     # the third user exists by now
        sched_setaffinity(0, set(range(8)))
        on_widen(k.cur.mm)
        usleep(5000)

    def sleeper(_):
        usleep(10_000)

    def child():
        t1 = pthread_create(widener)
        t2 = pthread_create(sleeper)
        pthread_join(t1)
        pthread_join(t2)
        return 0

    def main():
        sched_setaffinity(0, {0, 1})
        pid = fork(child)
        return waitpid(pid)[1]
    assert m.run(main) == 0
    return m


def test_affinity_widening_raises_the_threshold_but_never_defers_a_switch():
    """Widening updates max_cids and pcpu_thrs under the rq lock, but
    pcpu_thrs = max(min(opt - opt/4, ...), 1) with opt = min(nr_cpus_allowed,
    users) can never exceed users: mm_update_cpus_allowed() never queues the
    irq_work; the process stays per-CPU although users (3) <= max_cids (3)."""
    state = {}

    def on_widen(mm):
        mc = mm.mm_cid
        state["widened"] = (mc.nr_cpus_allowed, mc.max_cids, mc.pcpu_thrs, mc.users, mc.mode,
                            mc.update_deferred, mc.irq_work.pending, mc.work.nr_queued)
    narrow_process_widened("v7.0", on_widen)
    assert state["widened"] == (8, 3, 3, 3, MM_CID_ONCPU, 0, False, 0)


def test_deferred_mode_change_runs_through_irq_work_and_a_worker():
    """The machinery 9da6ccbcea3d provides, driven by a hypothetical patch
    whose threshold follows the allowed CPUs instead of min(allowed, users):
    the affinity call (rq lock held) only queues the irq_work, the irq_work
    schedules the work, and mm_cid_work_fn() in a kworker flips the mode and
    runs the CPU-to-task fixup."""
    log = []

    class ThresholdOnAllowedCpus(V70):
        name = "v7.0-thrs-on-allowed-cpus"

        def mm_cid_calc_pcpu_thrs(self, mc):
            opt_cids = mc.nr_cpus_allowed
            return max(min(opt_cids - opt_cids // 4, self.num_possible_cpus // 2), 1)

        def mm_cid_irq_work(self, work):
            log.append(("irq_work", self.k.in_irq, work.mm.mm_cid.mode))
            super().mm_cid_irq_work(work)

        def mm_cid_work_fn(self, work):
            log.append(("work_fn", self.k.cur.comm, work.mm.mm_cid.mode))
            super().mm_cid_work_fn(work)
            log.append(("done", self.k.cur.comm, work.mm.mm_cid.mode))

    def on_widen(mm):
        log.append(("widened", mm.mm_cid.mode, mm.mm_cid.update_deferred, mm.mm_cid.pcpu_thrs))
    narrow_process_widened(ThresholdOnAllowedCpus, on_widen)
    # The irq_work may run before the affinity syscall returns to user space.
    steps = [entry[0] for entry in log]
    assert steps.index("irq_work") < steps.index("work_fn") < steps.index("done")
    irq = log[steps.index("irq_work")]
    work = log[steps.index("work_fn")]
    done = log[steps.index("done")]
    assert irq == ("irq_work", True, MM_CID_ONCPU)
    assert work[1].startswith("kworker/") and work[2] == MM_CID_ONCPU
    assert done == ("done", work[1], 0)
    assert log[steps.index("widened")][1:] in [(MM_CID_ONCPU, True, 4), (0, 0, 0)]


def count_switch_costs(m, phase):
    """Mark the switch-path lock/atomic counters and the bitmap at the
    start and the end of a phase (``phase("start")``/``phase("end")``)."""
    k = m.kernel
    marks = {}

    def mark(name):
        mm = k.cur.mm
        marks[name] = (k.switch_mm_cid_atomics, k.switch_mm_cid_locks, k.nr_switches,
                       mm.cidmask.bits, mm.mm_cid.mode)
    phase["mark"] = mark
    return marks


@pytest.mark.parametrize("nr_threads, mode", [(3, 0), (7, MM_CID_ONCPU)],
                         ids=["per-task", "per-CPU"])
def test_steady_state_switches_touch_no_bitmap(nr_threads, mode):
    """Once the mode is stable and every CID is within max_cids, context
    switches (yields between threads of the mm, migrations between CPUs 0 and
    1) take no lock and do no atomic operation: the bitmap is not touched."""
    m = Machine(nr_cpus=4, variants=["v7.0"], seed=1)
    phase = {}
    marks = count_switch_costs(m, phase)

    def worker(i):
        for step in range(60):
            if step == 20 and i == 0:
                phase["mark"]("start")
            if step == 50 and i == 0:
                phase["mark"]("end")
            if step % 10 == 5:
                sched_setaffinity(0, {(i + step // 10) % 2})     # hop between CPU 0 and 1
            sched_yield()
            busy_wait(20_000)

    def main():
        sched_setaffinity(0, {2})
        threads = [pthread_create(worker, i) for i in range(nr_threads)]
        for t in threads:
            pthread_join(t)
        return 0
    assert m.run(main) == 0
    a0, l0, s0, bits0, mode0 = marks["start"]
    a1, l1, s1, bits1, mode1 = marks["end"]
    assert mode0 == mode1 == mode
    assert s1 - s0 >= 20                 # switches happened in between
    assert (a1 - a0, l1 - l0) == (0, 0)
    assert bits1 == bits0


def test_the_last_thread_converges_to_cid_0():
    """7 threads pinned to CPUs 1..7 hold CIDs 1..7; all but the one on CPU 7
    exit, then the main thread leaves with pthread_exit(): users = 1,
    max_cids = 1, and the survivor's next schedule-in converges it to 0."""
    m = Machine(nr_cpus=8, variants=["v7.0"], seed=1)
    k = m.kernel
    seen = {}

    def runner(cpu):
        pthread_setaffinity_np(pthread_self(), {cpu})
        usleep(1000)
        seen[cpu] = rseq_current_mm_cid()
        if cpu != 7:
            return
        usleep(20_000)                   # main is gone by now
        usleep(1000)
        mc = k.cur.mm.mm_cid
        seen["end"] = (rseq_current_mm_cid(), mc.users, mc.max_cids, k.cur.mm.cidmask.bits)

    def main():
        sched_setaffinity(0, {0})
        threads = [pthread_create(runner, cpu) for cpu in range(1, 8)]
        for t in threads[:6]:
            pthread_join(t)
        pthread_exit(None)
    assert m.run(main) == 0
    assert [seen[cpu] for cpu in range(1, 8)] == list(range(1, 8))
    assert seen["end"] == (0, 1, 1, 0b1)


def test_user_list_walk_reaches_a_vforked_user_of_the_mm():
    """A vfork()ed child runs on the parent's mm, outside its thread group.
    When a thread of the parent crosses max_cids, the user_list walk
    (192d852129b1) fixes the child's CID up too."""
    seen = {}

    class Recording(V70):
        name = "v7.0-recording-walk"

        def mm_cid_fixup_tasks_to_cpus(self):
            mm = self.k.cur.mm
            users = hlist_for_each_entry(mm.mm_cid.user_list)
            seen["users"] = sorted((t.tgid != self.k.cur.tgid, t.pid) for t in users)
            super().mm_cid_fixup_tasks_to_cpus()
            users = hlist_for_each_entry(mm.mm_cid.user_list)
            seen["cids"] = {t.pid: t.mm_cid.cid for t in users}
            seen["child"] = [t.pid for t in users if t.tgid != self.k.cur.tgid]

    from test_variant_seed_003 import vfork_while_a_thread_forks

    def vchild():
        busy_wait(3 * MS)
        return 0

    main = vfork_while_a_thread_forks(vchild, threads=2, ns=MS)
    assert Machine(nr_cpus=4, variants=[Recording], seed=1).run(main) == 0
    assert [other for other, _ in seen["users"]].count(True) == 1
    (child,) = seen["child"]
    assert seen["cids"][child] & MM_CID_TRANSIT       # running: in transit to its CPU
    assert not any(cid_on_task(cid) for cid in seen["cids"].values())


def test_pcpu_thrs_is_at_least_one_on_a_uniprocessor():
    """num_possible_cpus() == 1: two users exceed max_cids (1), and
    pcpu_thrs = max(min(1, 1/2), 1) = 1 lets the switch to per-CPU mode
    happen (14b2b17cca54)."""
    m = Machine(nr_cpus=1, variants=["v7.0"], seed=1)
    k = m.kernel
    seen = {}

    def thread(_):
        usleep(100)
        mc = k.cur.mm.mm_cid
        seen["mode"] = (mc.mode, mc.users, mc.max_cids, mc.pcpu_thrs, rseq_current_mm_cid())

    def main():
        pthread_join(pthread_create(thread))
        return 0
    assert m.run(main) == 0
    assert seen["mode"] == (MM_CID_ONCPU, 2, 1, 1, 0)


def failing_exec_in_per_cpu_mode():
    """5 users on 4 CPUs (per-CPU mode); the main thread's execve() of a file
    no binary handler takes fails (ENOEXEC, inside bprm_execve(); an ENOENT
    fails earlier since v6.8, in alloc_bprm(), the model's exec does not)."""
    seen = {}

    def main():
        threads = [pthread_create(lambda _: busy_wait(2 * MS)) for _ in range(4)]
        try:
            execve(b"#!/no/such/interpreter")
        except OSError:
            pass
        seen["mm_cid"] = rseq_current_mm_cid()
        for t in threads:
            pthread_join(t)
        return 0
    return main, seen


def test_a_failed_execve_in_per_cpu_mode_returns_to_user_space_without_a_cid():
    """sched_mm_cid_before_execve() (= exit) leaves the CPU its CID, and
    sched_mm_cid_after_execve() (= fork) gives a task none in per-CPU mode:
    it borrows one at its next schedule-in.  bprm_execve() then forces an
    rseq update (rseq_force_update()), which writes task_mm_cid() =
    MM_CID_UNSET = 1 << 31 to user space.  P2 reports it."""
    main, seen = failing_exec_in_per_cpu_mode()
    assert Machine(nr_cpus=4, variants=["v7.0"], seed=1, invariants=False).run(main) == 0
    assert seen["mm_cid"] == 1 << 31
    main, seen = failing_exec_in_per_cpu_mode()
    with pytest.raises(InvariantViolation, match=r"P2 bound: .* sees mm_cid 2147483648, "
                                                 r"outside \[0, 4\) \(v7.0\)"):
        Machine(nr_cpus=4, variants=["v7.0"], seed=1).run(main)


def test_cid_owners_count_task_and_cpu_ownership_not_borrowing():
    """P4's owner set: task-owned and transit CIDs of tasks, ONCPU slots;
    a task's ONCPU CID (borrowed) and a plain slot (a mirror) own nothing."""
    m = Machine(nr_cpus=4, variants=["v7.0"], seed=1)
    k = m.kernel
    seen = {}

    def main():
        threads = [pthread_create(lambda _: busy_wait(2 * MS)) for _ in range(4)]
        mm = k.cur.mm
        seen["owners"] = k.mm_cid.cid_owners(mm)
        seen["bits"] = mm.cidmask.bits
        for t in threads:
            pthread_join(t)
        return 0
    assert m.run(main) == 0
    mask = 0
    for cid in seen["owners"]:
        mask |= 1 << cid
    assert mask == seen["bits"] == 0b1111


def test_a_failed_execve_then_a_switch_back_makes_schedout_clear_bit_31():
    """The same failed execve() by the thread whose fork() made the switch
    to per-CPU mode: its CPU's slot holds its CID in transit, not ONCPU.
    When the process later switches back while that thread runs, the
    CPU-to-task walk marks its UNSET CID "in transit" (UNSET|TRANSIT); at its
    next schedule-out, mm_cid_schedout() drops cid_from_transit_cid() =
    MM_CID_UNSET = bit 31 of a num_possible_cpus()-bit bitmap: clear_bit()
    far outside the bitmap, which the model stops as a KASAN report."""
    from emulator.errors import KernelBug
    seen = {}

    def main():
        threads = [pthread_create(lambda _: busy_wait(MS)) for _ in range(4)]
        try:
            execve(b"#!/no/such/interpreter")
        except OSError:
            pass
        seen["after exec"] = rseq_current_mm_cid()
        busy_wait(3 * MS)                # meanwhile the threads exit: per-task mode again
        usleep(100)
        for t in threads:
            pthread_join(t)
        return 0
    with pytest.raises(KernelBug, match=r"slab-out-of-bounds in mm_drop_cid\(\): "
                                        r"clear_bit\(0x80000000\) on a bitmap of 4 bits"):
        Machine(nr_cpus=4, variants=["v7.0"], seed=1, invariants=False).run(main)
    assert seen["after exec"] == 1 << 31


def test_a_failed_execve_by_the_last_user_strands_cpu_cids_and_the_next_fork_spins():
    """Per-CPU mode, the other threads exit (their CPUs keep their CIDs), then the
    last user's execve() fails.  sched_mm_cid_exit() takes the "Last user" branch:
    "Ignore mode change. There is nothing to do." -- true when the mm goes away,
    but a failed exec keeps it: mode stays cpu->task (TRANSIT never cleared) and
    CPU 1 still owns CID 1.  With two possible CPUs the next pthread_create()
    finds no free CID in sched_mm_cid_fork(): mm_get_cid() spins with
    mm_cid.lock held, a hard lockup.  (With more possible CPUs the CID leaks.)"""
    from emulator.errors import HardLockup

    def main():
        threads = [pthread_create(lambda _: None) for _ in range(2)]   # 3 users > 2: per-CPU
        for t in threads:
            pthread_join(t)
        try:
            execve(b"#!/no/such/interpreter")                          # ENOEXEC
        except OSError:
            pass
        pthread_join(pthread_create(lambda _: None))
        return 0
    with pytest.raises(HardLockup, match=r"spinning on cpu_relax\(\) loop[\s\S]*mm_cid\("
                                         r"mode=cpu->task users=2 .*cidmask=\[0, 1\]") as failed:
        Machine(nr_cpus=2, variants=["v7.0"], seed=1).run(main)
    # The owner table: CPU 0 still owns the CID the mode change left it.
    assert "  cid 0: CPU 0's slot (0|ONCPU, no task of mm#1 on it" in failed.value.detail


def slow_failing_exec(variant):
    """*variant* whose execve() by a thread of a live process spends 3 ms
    between sched_mm_cid_before_execve() and its failure (as a binary handler
    reading an interpreter from a slow disk would; the path is held, the
    other CPUs run meanwhile)."""
    class SlowExec(variant):
        name = f"{variant.name}-slow-exec"

        def sched_mm_cid_before_execve(self, t):
            super().sched_mm_cid_before_execve(t)
            if t.mm is not None and t.mm.mm_cid.users:
                self.k.pause_kernel_path(3 * MS)
    return SlowExec


def test_siblings_exiting_during_a_failed_execve_orphan_the_exec_cpus_cid():
    """The same "Last user" branch when the last user is not the exec'ing
    thread: main (CPU 1) begins an execve() that will fail; meanwhile its two
    threads (CPU 0) exit and the second is the last user, so the mode stays
    cpu->task and CPU 1 keeps the CID it owns.  The failed exec's fork is the
    mm's first user again: "Required for execve()" sets CPU 1's slot to the
    new CID, and the CID CPU 1 owned has no owner left (P4).  Recorded as the
    same finding, its cause noted when the fork finds the mm so."""
    from emulator.explore.findings import known_finding
    from emulator.variants.mm_cid_v7_0 import V6_19_LAST_USER_EXEC
    from emulator.variants.mm_cid_v7_0 import LAST_USER_FAILED_EXECVE_PERCPU

    def worker(_):
        pthread_setaffinity_np(pthread_self(), {0})
        busy_wait(MS)

    def main():
        sched_setaffinity(0, {1})
        threads = [pthread_create(worker) for _ in range(2)]       # 3 users > 2: per-CPU
        usleep(100)
        try:
            execve(b"#!/no/such/interpreter")                        # ENOEXEC, 3 ms later
        except OSError:
            pass
        for t in threads:
            pthread_join(t)
        return 0
    variant = slow_failing_exec(V70)
    m = Machine(nr_cpus=2, variants=[variant], seed=1)
    with pytest.raises(InvariantViolation, match=r"P4 no orphan: mm#1 has cid bits \[0\] set "
                                                 r"with no owner") as failed:
        m.run(main)
    assert LAST_USER_FAILED_EXECVE_PERCPU in m.kernel.causes
    assert known_finding(variant, failed.value, m.kernel.causes) == V6_19_LAST_USER_EXEC
    # The report names the store that lost it: "Required for execve()".
    assert re.search(r"  cid 0: NO OWNER\n.*\n      last held by CPU 1's slot, .*\n      dropped by "
                     r"CPU 1's slot at \S+ on CPU 1 \(main-\d+, in sched_mm_cid_fork<-"
                     r"sched_mm_cid_after_execve<-\S+\): 0\|ONCPU -> 1, the bit left set",
                     failed.value.detail)
    # The same run without the cause (a patch orphaning a CID another way) is not excused.
    assert known_finding(variant, failed.value, set()) is None


def transition_workload():
    """An mm in per-CPU mode on all 8 CPUs (8 workers, one per CPU 1-7 and
    three threads on CPU 0) whose workers exit until three users are left,
    all on CPU 0, switching among themselves."""
    from emulator.workload import Program, repeat, run, setaffinity, sleep, thread, yield_
    workers = [thread(Program(setaffinity([1 + i % 7]), sleep(300_000), run(500_000),
                              sleep(100_000), run(1_000_000 + 50_000 * i), comm=f"w{i}"))
               for i in range(8)]
    stayer = Program(setaffinity([0]), run(200_000), repeat(20_000, yield_()), comm="stay")
    return Program(*workers, thread(stayer), thread(stayer), setaffinity([0]), run(200_000),
                   repeat(20_000, yield_()), sleep(20_000_000), comm="main")


def walk_preempted(variant):
    """*variant* whose fixup walk is preempted for 10 us before it starts (it
    runs with interrupts and preemption on, holding only mm_cid.mutex)."""
    class Preempted(variant):
        name = f"{variant.name}-preempted-walk"

        def mm_cid_fixup_cpus_to_tasks(self, mm):
            self.k.pause_kernel_path(10_000)
            super().mm_cid_fixup_cpus_to_tasks(mm)
    return Preempted


def test_the_transit_phase_survives_tasks_scheduling_in_before_the_fixup():
    """seed 003: "a direct transfer of ownership would fail if two tasks are
    scheduled in on the same CPU before the fixup freed per CPU CIDs".  With
    TRANSIT the three users on CPU 0 switch freely while the walk waits."""
    m = Machine(nr_cpus=8, variants=[walk_preempted(get_variant("v7.0"))], seed=1)
    assert m.run(transition_workload()) == 0


def test_a_direct_transfer_exhausts_the_cid_space_as_seed_003_says():
    """The same schedule on fixtures/patches/direct_transfer.py: the first
    user on CPU 0 takes the CPU's cid, the next two allocate, and with seven
    CPUs still holding theirs the third spins in mm_get_cid() holding the rq
    lock that the walk needs next: a hard lockup."""
    from emulator.errors import HardLockup
    from emulator.variants import load_variant
    patch = load_variant("fixtures/patches/direct_transfer.py")
    m = Machine(nr_cpus=8, variants=[walk_preempted(patch)], seed=1, trace_functions=True)
    with pytest.raises(HardLockup, match=r"(?s)hard LOCKUP on CPU 0.*mode=task.*"
                                         r"cidmask=\[0, 1, 2, 3, 4, 5, 6, 7\]") as failed:
        m.run(transition_workload())
    # The report's minimal trace tells it: the exit on CPU 1 starts the walk,
    # CPU 0's third user spins in one folded line.
    # Its owner table: mode=task, and six CPUs still own the CIDs the walk
    # has not reached.
    assert len(re.findall(r"  cid \d: CPU \d's slot \(\d\|ONCPU, no task of mm#1 on it\)",
                          failed.value.detail)) == 6
    report = failed.value.report
    walk = report.index("function: mm_cid_fixup_cpus_to_tasks(mm#1)")
    spin = report.index("function: _mm_get_cid(mm#1, 8)   (and ")
    assert report.index("function: mm_update_max_cids(mm#1)") < walk < spin
    assert report.count("_mm_get_cid(mm#1, 8)") == 1


def test_the_search_met_the_failed_thread_creation_defect_of_the_b2e48c429ec5_revert():
    """Found, not written: the stateful search of
    fixtures/patches/reverts/without_b2e48c429ec5.py (Hypothesis seed 3 of the eight a
    patch gets, 2026-12-07), shrunk to these steps.  A process in per-CPU mode is killed
    while one of its threads creates another; the late fatal-signal check fails that
    fork after copy_mm(), and bad_fork_cleanup_mm's sched_mm_cid_exit(child), from the
    parent, switches the mm back to per-task mode and drops this CPU's slot while the
    parent still runs with it as 0|ONCPU.  The parent's next schedule-out drops
    0x40000000 as a CID.  v7.0, where b2e48c429ec5 removed that call, runs the same
    steps to the end.  (README, "Revert patches".)"""
    from emulator.errors import KernelBug
    from emulator.explore.stateful import replay_steps
    from emulator.variants import load_variant
    boot = {"nr_cpus": 4, "preempt_p": 0.25, "seed": 0}
    steps = [("migrate", {"back": False, "cpu": 0, "then": 1, "who": 0, "whom": 0}),
             ("advance", {"ns": 20 * MS}),
             ("preempt", {"after": 1, "ns": 1, "resched": False}),
             ("spawn", {"n": 5, "then": 1, "who": 0}),
             ("advance", {"ns": 65696}),
             ("exit_group", {"code": 0, "then": 1, "who": 0}),
             ("advance", {"ns": 1}), ("advance", {"ns": 1}), ("advance", {"ns": 1}),
             ("spawn", {"n": 1, "then": 0, "who": 1}),
             ("advance", {"ns": 20 * MS})]
    import os
    revert = load_variant(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                       "fixtures/patches/reverts/without_b2e48c429ec5.py"))
    with pytest.raises(KernelBug) as info:
        replay_steps(revert, boot, steps)
    assert info.value.fields == {"function": "mm_drop_cid", "cid": MM_CID_ONCPU}
    assert replay_steps(V70, boot, steps) is None


def test_a_failed_exec_whose_own_refork_switches_to_per_cpu_mode_is_the_recorded_finding():
    """Met by a 30-minute stateful campaign (2026-12-07) and first reported as new: a
    thread's execve() fails in per-task mode with the mm one user below the per-CPU
    threshold; sched_mm_cid_after_execve()'s fork counts it again, switches the mm to
    per-CPU mode with the thread as current and as child, and it returns to user
    space with MM_CID_UNSET (P2).  The recorded failed-exec finding's mechanism,
    reached by the exec's own fork rather than another thread's: its cause is noted
    after that fork too now.  (The campaign's 19 steps; the nine first only let time
    pass.)"""
    from emulator.explore.stateful import replay_steps
    from emulator.variants.mm_cid_v7_0 import FAILED_EXECVE_PERCPU, V6_19_FAILED_EXEC
    steps = [("advance", {"ns": 1})] * 9 + [
        ("fork", {"then": 0, "vfork": True, "who": 0}),
        ("advance", {"ns": 20 * MS}),
        ("spawn", {"n": 2, "then": 0, "who": 1}),
        ("async_io", {"ns": 1, "then": 1, "who": 0}),
        ("spawn", {"n": 4, "then": 1, "who": 1}),
        ("async_io", {"ns": 1, "then": 34296, "who": 0}),
        ("migrate", {"back": False, "cpu": 0, "then": 1, "who": 0, "whom": 0}),
        ("migrate", {"back": False, "cpu": 2, "then": 1, "who": 1, "whom": 1}),
        ("spawn", {"n": 1, "then": 0, "who": 1}),
        ("exec", {"ok": False, "then": 126850, "who": 4})]
    modes = []

    class Watched(V70):
        name = "v7.0-watched"

        def sched_mm_cid_after_execve(self, t):
            modes.append(self.mm_cid_percpu(t.mm.mm_cid))
            super().sched_mm_cid_after_execve(t)
            modes.append(self.mm_cid_percpu(t.mm.mm_cid))
    machines = []
    boot = {"nr_cpus": 8, "preempt_p": 1, "seed": 1000}
    assert replay_steps(Watched, boot, steps, on_machine=machines.append) == V6_19_FAILED_EXEC
    assert FAILED_EXECVE_PERCPU in machines[0].kernel.causes
    assert modes[-2:] == [False, True]          # per-task before its fork, per-CPU after
