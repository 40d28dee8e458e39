"""The mm lifecycle as stories: fork, threads, vfork and exec; mm_users and
mm_count; freeing, lazy references and use-after-free; exit and wait."""

import errno
import re

import pytest

from emulator.checks.kasan import is_freed
from emulator.errors import UseAfterFree
from emulator.kernel.workqueue import delayed_work
from emulator.machine import Machine
from emulator.uapi import libc
from emulator.variants import get_variant
from emulator.workload import Program, exec_, exit_, fork, run, setaffinity, sleep, thread

MS = 1_000_000
US = 1_000
V63 = get_variant("v6.3")


def mm_events(m):
    """Record mm_alloc / mm_free as (event, mm id, pid, time)."""
    out = []

    def rec(r):
        out.append((r[4], r[5].fields["id"], r[3], r[0]))
    m.kernel.tp.subscribe("mm_alloc", rec)
    m.kernel.tp.subscribe("mm_free", rec)
    return out


def forks(m):
    """Record, at each sched_process_fork: (child pid, parent pid, child mm, parent mm, same tgid)."""
    k = m.kernel
    out = []

    def rec(r):
        child = k.tasks[r[5].fields["child_pid"]]
        out.append((child.pid, k.cur.pid, child.mm, k.cur.mm, child.tgid == k.cur.tgid))
    k.tp.subscribe("sched_process_fork", rec)
    return out


# -- fork, threads ---------------------------------------------------------------------------------


def test_fork_gives_the_child_a_new_mm_and_threads_share_it():
    """A thread shares its creator's mm (mm_users 2); a forked child gets a new mm of its own."""
    m = Machine(nr_cpus=2, seed=1)
    made = forks(m)
    mms = mm_events(m)
    users = []
    m.kernel.tp.subscribe("sched_process_fork", lambda r: users.append(
        m.kernel.cur.mm and m.kernel.cur.mm.mm_users.counter))

    def child():
        return 0

    def thread(_):
        libc.usleep(100)

    def main():
        t = libc.pthread_create(thread)
        pid = libc.fork(child)
        assert libc.waitpid(pid) == (pid, 0)
        libc.pthread_join(t)
        return 0
    assert m.run(main) == 0
    (tid, p1, tmm, pmm, same1), (cpid, p2, cmm, pmm2, same2) = made[1:]    # made[0]: main itself
    assert p1 == p2 == m.main_pid and same1 and not same2
    assert tmm is pmm and pmm2 is pmm and cmm is not pmm
    assert users[1:] == [2, 2]                 # the thread is a user of the parent's mm
    allocs = [(mm_id, pid) for ev, mm_id, pid, _ in mms if ev == "mm_alloc"]
    assert allocs == [(1, m.main_pid), (2, m.main_pid)]    # exec, then the child's dup_mm()
    assert is_freed(cmm) and ("mm_free", 2) in [(ev, mm_id) for ev, mm_id, *_ in mms]


# -- reference counts -------------------------------------------------------------------------------


def test_mm_users_and_mm_count_transitions():
    """mmget/mmput count users, mmgrab/mmdrop count references; __mmdrop runs only at mm_count 0."""
    m = Machine(nr_cpus=1, seed=1)
    mms = mm_events(m)
    steps = []

    def test(k):
        mm = k.mm_alloc()
        def state(what):
            steps.append((what, mm.mm_users.counter, mm.mm_count.counter, len(mms)))
        state("alloc")
        k.mmget(mm)
        state("mmget")
        k.mmgrab(mm)
        state("mmgrab")
        k.mmput(mm)
        state("mmput")
        k.mmput(mm)                        # last user: __mmput() drops the users' reference
        state("last mmput")
        steps.append(("get_not_zero", k.mmget_not_zero(mm)))
        k.mmdrop(mm)                       # last reference: __mmdrop()
        steps.append(("freed", is_freed(mm), len(mms)))
    m.run_kernel(test)
    assert steps == [
        ("alloc", 1, 1, 1), ("mmget", 2, 1, 1), ("mmgrab", 2, 2, 1), ("mmput", 1, 2, 1),
        ("last mmput", 0, 1, 1), ("get_not_zero", False), ("freed", True, 2),
    ]
    assert [ev for ev, *_ in mms] == ["mm_alloc", "mm_free"]


class DestroySpy(V63):
    name = "test-destroy-spy"
    log = None

    def mm_destroy_cid(self, mm):
        self.log.append((mm.id, mm.mm_count.counter))
        super().mm_destroy_cid(mm)


def test_mmdrop_to_zero_tears_down_the_variant_state_once():
    """__mmdrop() calls the variant's mm_destroy_cid() once, at mm_count 0, before the free."""
    m = Machine(nr_cpus=1, seed=1, variants=[DestroySpy])
    log = m.kernel.mm_cid.log = []

    def test(k):
        mm = k.mm_alloc()
        k.mmgrab(mm)
        k.mmput(mm)
        seen = list(log)
        k.mmdrop(mm)
        return seen
    assert m.run_kernel(test) == []
    assert len(log) == 1 and log[0][1] == 0


# -- use-after-free -------------------------------------------------------------------------------------


def test_access_to_a_freed_mm_raises_use_after_free_naming_alloc_and_free():
    """After __mmdrop, reading or writing the mm raises UseAfterFree saying who allocated and freed it."""
    m = Machine(nr_cpus=1, seed=1)
    out = {}

    def test(k):
        mm = k.mm_alloc()
        k.mmput(mm)
        for what, access in (("read", lambda: mm.mm_users), ("write", lambda: setattr(mm, "owner", None)),
                             ("variant", lambda: mm.cid_lock)):
            try:
                access()
            except UseAfterFree as exc:
                out[what] = str(exc)
        out["repr"] = repr(mm)
        out["same"] = mm is mm                  # comparing pointers is no access
    m.run_kernel(test)
    assert set(out) == {"read", "write", "variant", "repr", "same"}
    assert "read of mm#1.mm_users" in out["read"] and "write of mm#1.owner" in out["write"]
    for text in (out["read"], out["write"], out["variant"]):
        assert "allocated by" in text and "freed by" in text
        assert re.search(r"allocated by .*mm_alloc.* by ktest\[\d+\]", text)
        assert re.search(r"freed by .*_mmdrop.*mmput.* by ktest\[\d+\]", text)
    assert out["repr"] == "<freed mm#1>" and out["same"]


def test_use_after_free_in_kernel_code_fails_the_run_with_its_replay():
    """A use-after-free in kernel code makes run_kernel() raise UseAfterFree with the replay command."""
    m = Machine(nr_cpus=2, seed=5)

    def test(k):
        mm = k.mm_alloc()
        k.mmput(mm)
        k.mmgrab(mm)                            # a late reference to a freed mm
    with pytest.raises(UseAfterFree) as info:
        m.run_kernel(test)
    text = str(info.value)
    assert "use-after-free" in text and "allocated by" in text and "freed by" in text
    assert "mmgrab" in text                     # where the bad access came from
    assert "replay:" in text and "seed=5" in text


class DeferredCidRelease(V63):
    """A buggy variant: at exit it leaves work that reads the mm 2 jiffies later, without
    holding a reference on the mm for the work (the fix would be mmgrab()/mmdrop())."""
    name = "test-deferred-cid-release"

    def sched_mm_cid_exit_signals(self, t):
        mm = t.mm
        super().sched_mm_cid_exit_signals(t)
        if mm is not None:
            k = self.k

            def release_cids(work):
                mm.cidmask.bits = 0

            k.queue_delayed_work(k.system_wq, delayed_work(release_cids), 2)


def test_use_after_free_by_a_variant_during_run_raises_with_replay():
    """A variant touching an mm freed under it makes run() raise UseAfterFree naming alloc, free, replay."""
    m = Machine(nr_cpus=1, seed=9, variants=[DeferredCidRelease])
    prog = Program(fork(Program(run(100 * US))), sleep(1 * MS), run(100 * US), sleep(3 * MS))
    with pytest.raises(UseAfterFree) as info:
        m.run(prog)
    text = str(info.value)
    assert "write of mm#2.cidmask" not in text and "read of mm#2.cidmask" in text
    assert "accessed by release_cids <- process_one_work" in text
    assert re.search(r"freed by _mmdrop <- .*finish_task_switch", text)
    assert "allocated by" in text and "replay:" in text and "seed=9" in text
    assert not m.live_host_threads()


# -- exit ----------------------------------------------------------------------------------------------------


def test_exit_frees_the_mm_at_the_next_switch_to_a_user_task():
    """An exiting process's mm is freed when its CPU next switches to a user task (one CPU)."""
    m = Machine(nr_cpus=1, seed=1)
    mms = mm_events(m)
    ev = []
    m.kernel.tp.subscribe("sched_switch", ev.append)

    def child():
        libc.busy_wait(100 * US)
        return 0

    def main():
        pid = libc.fork(child)
        libc.waitpid(pid)
        return 0
    assert m.run(main) == 0
    child_mm = [mm_id for e, mm_id, pid, _ in mms if e == "mm_alloc"][1]
    freed = [(pid, t) for e, mm_id, pid, t in mms if e == "mm_free" and mm_id == child_mm]
    assert len(freed) == 1
    pid, when = freed[0]
    # Freed by the parent, right after the dead child switched to it (its
    # page tables go back to the allocator first: __mmdrop()'s mm_free_pgd()).
    to_parent = [r[0] for r in ev
                 if r[5].fields["next_pid"] == m.main_pid and r[5].fields["prev_state"] == "X"]
    assert pid == m.main_pid and len(to_parent) == 1
    assert 0 <= when - to_parent[0] <= m.kernel.costs["pcp_op_ns"]


def test_exited_mm_lives_while_an_idle_cpu_borrows_it():
    """An idle CPU that ran the dead child keeps its mm (lazy TLB) until a user task runs there."""
    m = Machine(nr_cpus=2, seed=1)
    mms = mm_events(m)
    k = m.kernel
    ev = []
    k.tp.subscribe("sched_switch", ev.append)
    child = Program(setaffinity({1}), run(200 * US), exit_(0))
    prog = Program(setaffinity({0}), fork(child), sleep(3 * MS), setaffinity({1}), run(100 * US))
    assert m.run(prog) == 0
    child_mm = [mm_id for e, mm_id, pid, _ in mms if e == "mm_alloc"][1]
    freed = [t for e, mm_id, pid, t in mms if e == "mm_free" and mm_id == child_mm]
    child_exit = [r[0] for r in ev if r[1] == 1 and r[5].fields["prev_state"] == "X"][0]
    main_on_1 = [r[0] for r in ev if r[1] == 1 and r[5].fields["next_pid"] == m.main_pid][0]
    assert len(freed) == 1
    assert child_exit < 1 * MS < 3 * MS < main_on_1 <= freed[0] <= main_on_1 + \
        m.kernel.costs["pcp_op_ns"]                 # (__mmdrop()'s mm_free_pgd() first)


# -- vfork and exec ------------------------------------------------------------------------------------------


def test_vfork_shares_the_mm_and_the_parent_waits_for_exit():
    """vfork(): the child runs on the parent's mm, and the parent resumes only once it has exited."""
    m = Machine(nr_cpus=2, seed=1)
    made = forks(m)
    mms = mm_events(m)
    times = {}
    ev = []
    m.kernel.tp.subscribe("sched_process_exit", ev.append)

    def child():
        libc.busy_wait(2 * MS)
        return 4

    def main():
        pid = libc.vfork(child)
        times["resumed"] = m.now
        assert libc.waitpid(pid) == (pid, 4 << 8)
        return 0
    assert m.run(main) == 0
    cpid, parent, cmm, pmm, _ = made[-1]
    assert parent == m.main_pid and cmm is pmm
    assert len([e for e in mms if e[0] == "mm_alloc"]) == 1           # no copy
    child_exit = [r[0] for r in ev if r[3] == cpid][0]
    assert times["resumed"] >= child_exit >= 2 * MS


def test_vfork_parent_resumes_when_the_child_execs():
    """vfork(): the parent resumes at the child's exec, which gives the child an mm of its own."""
    m = Machine(nr_cpus=2, seed=1)
    mms = mm_events(m)
    times = {}
    execs = []
    m.kernel.tp.subscribe("sched_process_exec", execs.append)

    def new_image():
        libc.busy_wait(3 * MS)
        return 6

    def child():
        libc.busy_wait(1 * MS)
        libc.execve(new_image)

    def main():
        pid = libc.vfork(child)
        times["resumed"] = m.now
        assert libc.waitpid(pid) == (pid, 6 << 8)
        times["reaped"] = m.now
        return 0
    assert m.run(main) == 0
    exec_time = [r[0] for r in execs if r[3] != m.main_pid][0]
    assert exec_time <= times["resumed"] < exec_time + 1 * MS < times["reaped"]
    allocs = [(mm_id, pid) for e, mm_id, pid, _ in mms if e == "mm_alloc"]
    assert len(allocs) == 2 and allocs[1][1] != m.main_pid                 # the child's exec


def test_execve_installs_a_new_mm_and_drops_the_old_one():
    """execve() gives the task a new mm and frees the old one (its only user)."""
    m = Machine(nr_cpus=1, seed=1)
    mms = mm_events(m)
    k = m.kernel
    seen = []

    def second():
        return 7

    def first():
        seen.append(k.tasks[m.main_pid].mm)
        libc.execve(second)
    m.kernel.tp.subscribe("sched_process_exec", lambda r: seen.append(k.cur.mm))
    assert m.run(first) == 7
    assert [(e, mm_id, pid) for e, mm_id, pid, _ in mms] == [
        ("mm_alloc", 1, m.main_pid),            # the first exec, from the kernel's clone
        ("mm_alloc", 2, m.main_pid),            # execve(second): bprm mm
        ("mm_free", 1, m.main_pid),             # the old mm, put by exec_mmap()
    ]
    at_first_exec, in_first, at_second_exec = seen
    assert in_first is at_first_exec and at_second_exec is not in_first
    assert is_freed(in_first)


def test_exec_from_a_thread_kills_the_others_and_takes_the_leaders_pid():
    """execve() in a non-leader thread: the others die, it becomes the leader (trace: old_pid) on a new mm."""
    m = Machine(nr_cpus=2, seed=1)
    mms = mm_events(m)
    execs, exits = [], []
    m.kernel.tp.subscribe("sched_process_exec", execs.append)
    m.kernel.tp.subscribe("sched_process_exit", exits.append)
    out = {}

    def new_image():
        out["new"] = (libc.getpid(), libc.gettid())
        return 9

    def thread(_):
        out["tid"] = libc.gettid()
        libc.usleep(200)
        libc.execve(new_image)

    def main():
        libc.pthread_create(thread)
        libc.busy_wait(5 * MS)
        out["main survived"] = True
        return 1
    assert m.run(main) == 9
    leader, tid = m.main_pid, out["tid"]
    assert out == {"tid": tid, "new": (leader, leader)}
    assert [r[3] for r in exits][:1] == [leader]             # the old leader died first
    assert fields_of(execs[-1]) == {"filename": "new_image", "pid": str(leader), "old_pid": str(tid)}
    assert [(e, mm_id, pid) for e, mm_id, pid, _ in mms][:2] == [
        ("mm_alloc", 1, leader), ("mm_alloc", 2, tid)]


@pytest.mark.parametrize("variant", ["v6.3", "v6.4", "v7.0"])
@pytest.mark.parametrize("seed", range(4))
def test_two_threads_exec_at_once_one_wins(variant, seed):
    """Main and a thread exec together: de_thread() lets only the first through; the
    second gets -EAGAIN with SIGKILL pending and dies, and the winner's image runs.
    (Found by the generated search: both used to zap each other, both execs failed and
    v7.0's cid state was left for two failed execs to fight over: a hard lockup.)"""
    def image(code):
        return Program(exit_(code), comm=f"image{code}")
    t = Program(thread(Program(sleep(1))), exec_(image(11)), comm="t")
    main = Program(thread(t), exec_(image(10)), comm="main")
    status = Machine(nr_cpus=2, variants=[variant], seed=seed).run(main)
    assert status in (10, 11)


def fields_of(record):
    """A record's fields as the strings ftrace prints."""
    return {name: str(value) for name, value in record[5].fields.items()}


@pytest.mark.parametrize("image, err", [("/no/such/file", errno.ENOENT), (42, errno.ENOEXEC)])
def test_failing_exec_keeps_the_old_mm_and_frees_the_bprm_mm(image, err):
    """A failing execve() raises its errno, keeps the old mm, and frees the mm it had allocated."""
    m = Machine(nr_cpus=1, seed=1)
    mms = mm_events(m)
    k = m.kernel
    out = {}

    def main():
        before = k.tasks[m.main_pid].mm
        with pytest.raises(OSError) as info:
            libc.execve(image)
        out["errno"] = info.value.errno
        out["same_mm"] = k.tasks[m.main_pid].mm is before
        libc.usleep(100)                         # the old mm still works
        return 0
    assert m.run(main) == 0
    assert out == {"errno": err, "same_mm": True}
    assert [(e, mm_id) for e, mm_id, *_ in mms] == [("mm_alloc", 1), ("mm_alloc", 2), ("mm_free", 2)]


# -- wait and exit status ----------------------------------------------------------------------------------


def test_waitpid_reports_each_childs_exit_status():
    """waitpid() returns (pid, status << 8) for exit(status), any child with -1, then ECHILD."""
    m = Machine(nr_cpus=2, seed=1)
    out = {}

    def child_a():
        return 3

    def child_b():
        libc.usleep(500)
        return 300                               # & 0xff = 44

    def main():
        a = libc.fork(child_a)
        b = libc.fork(child_b)
        out["b"] = libc.waitpid(b)
        out["any"] = libc.waitpid(-1)
        out["a"] = (a, b)
        with pytest.raises(OSError) as info:
            libc.waitpid(-1)
        out["echild"] = info.value.errno
        return 12
    assert m.run(main) == 12
    a, b = out["a"]
    assert out["b"] == (b, 44 << 8) and out["any"] == (a, 3 << 8)
    assert out["echild"] == errno.ECHILD


def test_process_ends_with_its_last_thread_after_main_pthread_exit():
    """When main calls pthread_exit(), the process lives on until its last thread ends (status 0)."""
    m = Machine(nr_cpus=2, seed=1)
    k = m.kernel
    mms = mm_events(m)
    exits = []
    k.tp.subscribe("sched_process_exit", lambda r: exits.append(
        (r[0], r[3], k.process_status.get(m.main_pid), k.cur.mm.mm_users.counter if k.cur.mm else None)))
    done = []

    def worker(_):
        libc.busy_wait(2 * MS)
        done.append(m.now)
        return "ignored"

    def main():
        libc.pthread_create(worker)
        libc.pthread_exit(None)
        raise AssertionError("pthread_exit() returned")
    assert m.run(main) == 0
    assert len(done) == 1
    (t_main, pid_main, status_main, users_main), (t_thr, pid_thr, status_thr, users_thr) = exits
    assert pid_main == m.main_pid and pid_thr != pid_main
    assert t_main < done[0] <= t_thr
    assert status_main is None and status_thr is None      # not reaped before its last thread
    assert users_main == 2 and users_thr == 1
    assert k.process_status[m.main_pid] == 0
    assert [e for e, *_ in mms][:1] == ["mm_alloc"]
    assert all(t >= t_thr for e, _, _, t in mms if e == "mm_free")      # the mm outlived main


def test_a_sigkill_wake_up_in_flight_finishes_before_its_target_is_dead():
    """Regression story, found by the systematic search (a model bug): main's
    exit_group() sends SIGKILL to its thread and wakes it; the wake-up is
    paused inside try_to_wake_up() holding the thread's pi_lock, the thread
    sees the signal and exits meanwhile.  do_task_dead() sets TASK_DEAD under
    pi_lock (set_special_state()), so the wake-up finishes first and never
    re-queues a dead task (before, the dead task ran again: a Python crash)."""
    from emulator.explore.strategies import ScriptStrategy
    from emulator.workload import yield_
    program = Program(thread(Program(sleep(1), comm="gen")), yield_(), comm="gen")
    m = Machine(nr_cpus=2, variants=["v7.0"], seed=0, strategy=ScriptStrategy({26: 2001, 41: 11501}))
    assert m.run(program) == 0


@pytest.mark.parametrize("variant", ["v6.13", "seed-003", "v7.0"])
@pytest.mark.parametrize("how", ["thread", "fork"])
def test_a_kill_arriving_in_the_middle_of_a_clone_terminates_it(variant, how):
    """Regression story (a model bug, found trying to end stress runs with a
    kill): "Let kill terminate clone/fork in the middle".  SIGKILL reaches a
    worker process while it is inside clone() (sent here from the child's
    copy_mm(), after its mm is set up): copy_process() sees the fatal signal
    under tasklist_lock before the child joins the lists, undoes it and
    returns -EINTR.  Nothing escapes the kill: the worker dies and no task of
    it is left, every mm but init's and main's is freed, and seed 003, which
    counts the child as an mm_cid user from copy_mm(), gives the count back
    (sched_mm_cid_exit(p) in bad_fork_cleanup_mm).  Before, the child joined
    the thread group after the kill had marked its threads, and lived on."""
    from emulator.kernel.signal import SIGKILL
    from emulator.workload import pthread_join, wait
    mm_users = []

    class KilledMidClone(get_variant(variant)):
        name = f"test-killed-mid-clone-{variant}"
        clones = 0

        def fork_in_copy_mm(self, t):
            super().fork_in_copy_mm(t)
            KilledMidClone.clones += 1
            if KilledMidClone.clones == 2:               # the worker's clone
                self.k.sys_kill(self.k.cur.tgid, SIGKILL)

        def cancel_fork_in_bad_fork_cleanup_mm(self, t):
            super().cancel_fork_in_bad_fork_cleanup_mm(t)
            if hasattr(t.mm, "mm_cid") and hasattr(t.mm.mm_cid, "users"):
                mm_users.append(t.mm.mm_cid.users)

    child = Program(sleep(10 * 10**9), comm="child")           # 10 s
    worker = Program(thread(child), pthread_join(), comm="worker") if how == "thread" else \
        Program(fork(child), wait(), comm="worker")
    m = Machine(nr_cpus=2, variants=[KilledMidClone], seed=1)
    assert m.run(Program(fork(worker), wait(), comm="main")) == 0
    k = m.kernel
    assert KilledMidClone.clones == 2 and k.engine.now < 10**9
    assert not [t for t in k.tasks.values() if t.comm in ("worker", "child") and not t.exit_state]
    assert len(k.live_mms) <= 2                           # init_mm's and main's at most
    if variant == "seed-003" and how == "thread":
        assert mm_users == [1]                            # the worker alone, as before the clone
