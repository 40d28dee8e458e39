"""Kernel services as stories: workqueues, delayed work, task_work, irq_work,
hrtimers and timer_list, and sleeping where one must not."""

import pytest

from emulator.errors import KernelBug
from emulator.kernel.irq_work import irq_work
from emulator.kernel.locking import raw_spin_lock, raw_spin_unlock, raw_spinlock_t
from emulator.kernel.task_work import TWA_RESUME, callback_head
from emulator.kernel.time import hrtimer, timer_list
from emulator.kernel.workqueue import delayed_work, work_struct
from emulator.machine import Machine
from emulator.variants import get_variant
from emulator.workload import Program, ProgramUser, exit_, run, setaffinity, sleep

MS = 1_000_000
US = 1_000
ESRCH = 3
V63 = get_variant("v6.3")


def run_kernel(fn, cpu=0, nr_cpus=4, seed=1):
    """Run ``fn(k)`` on a kernel thread of a fresh machine; returns its value."""
    return Machine(nr_cpus=nr_cpus, seed=seed).run_kernel(fn, cpu=cpu)


def where(k, log, tag=None):
    """A work/timer function that logs its context: (tag, time, cpu, comm, in_irq)."""
    def fn(arg):
        log.append((tag, k.engine.now, k.cpu, k.cur.comm, k.in_irq))
    return fn


def spawn(m, k, program):
    """From kernel context, start a user process that execs *program*; returns its task."""
    pid = k.kernel_clone(17, program.comm, ProgramUser(m, None, "main", image=program))
    return k.tasks[pid]


# -- workqueues -----------------------------------------------------------------------------------


def test_bound_work_runs_on_its_cpus_kworker():
    """Work queued on a per-CPU workqueue runs on that CPU's worker thread, kworker/N:0."""
    log = []

    def test(k):
        k.queue_work(k.system_wq, work_struct(where(k, log, "local")))
        k.queue_work_on(1, k.system_wq, work_struct(where(k, log, "on1")))
        k.hrtimer_nanosleep(1 * MS)
        return k.cur.comm
    assert run_kernel(test, cpu=2) == "ktest"
    assert sorted(log_entry[0::2] for log_entry in log) == [("local", 2, False), ("on1", 1, False)]
    assert {(tag, comm) for tag, _, _, comm, _ in log} == {
        ("local", "kworker/2:0"), ("on1", "kworker/1:0")}


def test_unbound_work_runs_on_an_unbound_kworker():
    """Work queued on system_unbound_wq runs on a kworker/u:N thread."""
    log = []

    def test(k):
        for i in range(3):
            k.queue_work(k.system_unbound_wq, work_struct(where(k, log, i)))
        k.hrtimer_nanosleep(1 * MS)
    run_kernel(test)
    assert sorted(tag for tag, *_ in log) == [0, 1, 2]
    assert all(comm.startswith("kworker/u:") and not irq for *_, comm, irq in log)


def test_queue_work_on_a_pending_work_returns_false():
    """queue_work() on a work still pending returns False and it runs once; once run, it queues again."""
    log = []
    result = {}

    def test(k):
        w = work_struct(where(k, log))
        result["first"] = k.queue_work(k.system_wq, w)
        result["again"] = k.queue_work(k.system_wq, w)
        result["pending"] = k.work_pending(w)
        k.hrtimer_nanosleep(1 * MS)
        result["ran"] = len(log)
        result["requeue"] = k.queue_work(k.system_wq, w)
        k.hrtimer_nanosleep(1 * MS)
        result["ran2"] = len(log)
    run_kernel(test)
    assert result == {"first": True, "again": False, "pending": True, "ran": 1,
                      "requeue": True, "ran2": 2}


def test_delayed_work_fires_after_its_delay_in_jiffies():
    """queue_delayed_work(wq, dw, 5) runs the work at the 5th jiffy from now (HZ=1000: 5 ms)."""
    log = []
    armed = {}

    def test(k):
        k.hrtimer_nanosleep(300 * US)
        armed["jiffies"] = k.jiffies
        assert k.queue_delayed_work(k.system_wq, delayed_work(where(k, log)), 5)
        k.hrtimer_nanosleep(10 * MS)
    run_kernel(test)
    assert len(log) == 1
    _, when, cpu, comm, _ = log[0]
    assert (armed["jiffies"] + 5) * MS <= when <= (armed["jiffies"] + 5) * MS + 10 * US
    assert comm == f"kworker/{cpu}:0"


def test_delayed_work_delay_follows_hz():
    """With HZ=100 a jiffy is 10 ms: a delay of 2 jiffies is 20 ms."""
    log = []

    def test(k):
        assert k.msecs_to_jiffies(25) == 3
        k.queue_delayed_work(k.system_wq, delayed_work(where(k, log)), 2)
        k.hrtimer_nanosleep(50 * MS)
    Machine(nr_cpus=2, seed=1, hz=100).run_kernel(test)
    assert len(log) == 1 and 20 * MS <= log[0][1] <= 20 * MS + 10 * US


def test_mod_delayed_work_rearms_a_pending_work():
    """mod_delayed_work() moves a pending delayed work's expiry, and queues an idle one."""
    log = []
    result = {}

    def test(k):
        dw = delayed_work(where(k, log, "dw"))
        k.queue_delayed_work(k.system_wq, dw, 10)
        k.hrtimer_nanosleep(2 * MS)
        result["rearm"] = k.mod_delayed_work(k.system_wq, dw, 3)      # now 5 ms, not 10
        k.hrtimer_nanosleep(20 * MS)
        result["idle"] = k.mod_delayed_work(k.system_wq, dw, 1)       # was not pending
        k.hrtimer_nanosleep(5 * MS)
    run_kernel(test)
    assert result == {"rearm": True, "idle": False}
    times = [when for _, when, *_ in log]
    assert len(times) == 2
    assert 5 * MS <= times[0] < 5 * MS + 10 * US
    assert 23 * MS <= times[1] < 23 * MS + 10 * US


def test_cancel_delayed_work_sync_cancels_a_pending_timer():
    """cancel_delayed_work_sync() on a work whose timer is pending stops it: it never runs."""
    log = []
    result = {}

    def test(k):
        dw = delayed_work(where(k, log))
        k.queue_delayed_work(k.system_wq, dw, 5)
        k.hrtimer_nanosleep(1 * MS)
        t0 = k.engine.now
        result["cancel"] = k.cancel_delayed_work_sync(dw)
        result["waited"] = k.engine.now - t0
        result["pending"] = k.delayed_work_pending(dw)
        k.hrtimer_nanosleep(20 * MS)
        result["again"] = k.cancel_delayed_work_sync(dw)
    run_kernel(test)
    assert log == []
    assert result == {"cancel": True, "waited": 0, "pending": False, "again": False}


def test_cancel_delayed_work_sync_waits_for_a_running_work():
    """cancel_delayed_work_sync() on a running work returns only once it has finished."""
    result = {}

    def test(k):
        def slow(work):
            result["start"] = k.engine.now
            k.charge(3 * MS)                     # runs for 3 ms on its worker
            result["end"] = k.engine.now
        dw = delayed_work(slow)
        k.queue_delayed_work_on(1, k.system_wq, dw, 1)
        k.hrtimer_nanosleep(2 * MS)              # the work is running now
        assert dw.running_on is not None
        result["cancel"] = k.cancel_delayed_work_sync(dw)
        result["returned"] = k.engine.now
        result["queue_while_canceling"] = None
    run_kernel(test)
    assert result["start"] < 2 * MS < result["end"]
    assert result["end"] - result["start"] == 3 * MS
    assert result["returned"] >= result["end"]
    assert result["cancel"] is False             # it was no longer pending


def test_flush_work_waits_for_the_queued_execution():
    """flush_work() sleeps until the queued execution has finished, and returns at once if none."""
    result = {}

    def test(k):
        def slow(work):
            k.charge(2 * MS)
            result["end"] = k.engine.now
        w = work_struct(slow)
        k.queue_work_on(1, k.system_wq, w)
        result["flush"] = k.flush_work(w)
        result["returned"] = k.engine.now
        result["idle_flush"] = k.flush_work(w)
        result["idle_returned"] = k.engine.now
    run_kernel(test)
    assert result["flush"] is True and result["idle_flush"] is False
    assert result["end"] >= 2 * MS and result["returned"] >= result["end"]
    assert result["idle_returned"] == result["returned"]


def test_disable_work_makes_queueing_fail_until_enable_work():
    """disable_work() cancels the work and refuses queueing until the matching enable_work()."""
    log = []
    result = {}

    def test(k):
        w = work_struct(where(k, log))
        dw = delayed_work(where(k, log))
        k.queue_work(k.system_wq, w)
        k.queue_delayed_work(k.system_wq, dw, 2)
        result["disable"] = (k.disable_work(w), k.disable_delayed_work(dw))   # both were pending
        result["disable2"] = k.disable_work(w)                                 # nested, not pending
        result["queued"] = (k.queue_work(k.system_wq, w), k.queue_delayed_work(k.system_wq, dw, 1),
                            k.mod_delayed_work(k.system_wq, dw, 1))
        k.hrtimer_nanosleep(5 * MS)
        result["ran_disabled"] = len(log)
        result["enable"] = (k.enable_work(w), k.enable_work(w), k.enable_work(dw))
        result["queued_after"] = (k.queue_work(k.system_wq, w), k.queue_delayed_work(k.system_wq, dw, 1))
        k.hrtimer_nanosleep(5 * MS)
        result["ran"] = len(log)
    run_kernel(test)
    assert result == {
        "disable": (True, True), "disable2": False, "queued": (False, False, False),
        "ran_disabled": 0, "enable": (False, True, True), "queued_after": (True, True), "ran": 2,
    }


# -- task_work -----------------------------------------------------------------------------------------


def test_task_work_runs_when_the_task_returns_to_user():
    """A TWA_RESUME task_work runs in its task's context on its way back to user space."""
    m = Machine(nr_cpus=2, seed=1)
    log = []
    result = {}
    wakeups = []
    m.kernel.tp.subscribe("sched_wakeup", lambda r: wakeups.append(r[0]) if "comm=user" in str(r[5]) else None)

    def test(k):
        user = spawn(m, k, Program(setaffinity({1}), sleep(2 * MS), run(1 * MS), comm="user"))
        k.hrtimer_nanosleep(1 * MS)                   # the user task sleeps in nanosleep
        result["state"] = (user.state, user.comm)

        def func(cb):
            log.append((k.engine.now, k.cur is user, k.in_irq, cb is head))
        head = callback_head(func)
        result["add"] = k.task_work_add(user, head, TWA_RESUME)
        result["pending"] = k.task_work_pending(user)
        result["ran_at_add"] = len(log)
        k.hrtimer_nanosleep(5 * MS)
    m.run_kernel(test, cpu=0)
    assert result == {"state": (1, "user"), "add": 0, "pending": True, "ran_at_add": 0}
    assert len(log) == 1
    when, in_user_task, in_irq, same = log[0]
    assert in_user_task and not in_irq and same
    woke = wakeups[-1]                           # the end of its nanosleep ...
    assert 2 * MS <= woke <= when <= woke + 10 * US     # ... and the way back to user


def test_task_work_kicks_a_task_computing_in_user_mode_on_another_cpu():
    """TWA_RESUME on a task busy in user mode elsewhere kicks it (IPI): the work runs within the IPI latency."""
    m = Machine(nr_cpus=2, seed=1)
    log = []
    result = {}

    def test(k):
        user = spawn(m, k, Program(setaffinity({1}), run(10 * MS), comm="user"))
        k.hrtimer_nanosleep(1 * MS)
        result["running"] = k.cpu_rq(1).curr is user
        result["added"] = k.engine.now
        k.task_work_add(user, callback_head(
            lambda cb: log.append((k.engine.now, k.cur is user, k.cpu))), TWA_RESUME)
        k.hrtimer_nanosleep(20 * MS)
    m.run_kernel(test, cpu=0)
    assert result["running"] and len(log) == 1
    when, in_user_task, cpu = log[0]
    assert in_user_task and cpu == 1
    assert when - result["added"] <= m.kernel.ipi_latency_ns     # not when its 10 ms end


class TickTaskWork(V63):
    """Queues a task_work on the current user task from the tick, as the mm_cid
    compaction of v6.4+ does from task_tick_mm_cid()."""
    name = "test-tick-task-work"
    log = None

    def task_tick_mm_cid(self, rq, curr):
        super().task_tick_mm_cid(rq, curr)
        if curr.mm is not None and not self.log:
            k = self.k
            self.log.append(("tick", k.engine.now, curr.pid))
            k.task_work_add(curr, callback_head(
                lambda cb: self.log.append(("work", k.engine.now, k.cur.pid, k.in_irq))), TWA_RESUME)


def test_task_work_added_from_the_tick_runs_on_the_interrupt_return_to_user():
    """A task_work the tick adds to the user task it interrupted runs on that interrupt's return to user."""
    m = Machine(nr_cpus=2, seed=1, variants=[TickTaskWork])
    log = m.kernel.mm_cid.log = []
    assert m.run(Program(run(10 * MS))) == 0
    (_, tick, pid), (what, when, work_pid, in_irq) = log
    assert what == "work" and work_pid == pid and not in_irq
    assert when == tick                          # not at the end of the 10 ms computation


def test_task_work_add_fails_with_esrch_after_the_task_exited():
    """task_work_add() on a task past exit_task_work() returns -ESRCH and never runs the work."""
    m = Machine(nr_cpus=2, seed=1)
    log = []
    result = {}

    def test(k):
        user = spawn(m, k, Program(run(100 * US), exit_(3), comm="user"))
        k.hrtimer_nanosleep(2 * MS)
        result["exited"] = bool(user.exit_state)
        result["add"] = k.task_work_add(user, callback_head(lambda cb: log.append(cb)), TWA_RESUME)
        result["pending"] = k.task_work_pending(user)
    m.run_kernel(test, cpu=0)
    assert result == {"exited": True, "add": -ESRCH, "pending": False}
    assert log == []


def test_task_work_of_a_killed_task_runs_before_it_dies():
    """A task_work added to a sleeping task that is then killed still runs, in that task."""
    m = Machine(nr_cpus=2, seed=1)
    log = []
    m.kernel.tp.subscribe("sched_process_exit", lambda r: log.append(("exit", r[3])))

    def test(k):
        user = spawn(m, k, Program(sleep(5 * MS), comm="user"))
        k.hrtimer_nanosleep(1 * MS)
        k.task_work_add(user, callback_head(lambda cb: log.append(("work", k.cur.pid))))
        user.sigkill = True
        k.signal_wake_up(user)
        k.hrtimer_nanosleep(1 * MS)
        return user.pid
    pid = m.run_kernel(test, cpu=0)
    # Linux runs it from get_signal(), before do_exit(); the model from exit_task_work()
    # in do_exit(): either way once, in the task, before it is dead.
    assert sorted(entry for entry in log if entry[1] == pid) == [("exit", pid), ("work", pid)]


# -- irq_work ---------------------------------------------------------------------------------------------


def test_irq_work_runs_in_interrupt_context_on_this_cpu():
    """irq_work_queue() runs the function soon, in hard interrupt context, on the queueing CPU."""
    log = []
    result = {}

    def test(k):
        work = irq_work(where(k, log, "irq"))
        result["queue"] = (k.irq_work_queue(work), k.irq_work_queue(work))
        result["pending"] = k.irq_work_is_pending(work)
        result["queued_at"] = k.engine.now
        k.charge(10 * US)                        # the interrupt arrives while this CPU runs
        result["after"] = k.irq_work_is_pending(work)
    run_kernel(test, cpu=2)
    assert result["queue"] == (True, False) and result["pending"] and not result["after"]
    assert len(log) == 1
    tag, when, cpu, comm, in_irq = log[0]
    assert in_irq and cpu == 2 and comm == "ktest"   # it interrupted the task on CPU 2
    assert when == result["queued_at"]


# -- hrtimers and timer_list ------------------------------------------------------------------------------


def test_hrtimer_fires_at_its_expiry_in_interrupt_context():
    """An hrtimer fires at exactly its expiry time, in interrupt context, on the arming CPU."""
    log = []
    result = {}

    def test(k):
        k.hrtimer_nanosleep(123 * US)
        t = hrtimer(where(k, log, "t"))
        result["armed_at"] = k.engine.now
        k.hrtimer_start(t, k.engine.now + 2 * MS + 7)
        result["active"] = k.hrtimer_active(t)
        result["expires"] = t.expires
        k.hrtimer_nanosleep(5 * MS)
        result["cancel_after"] = k.hrtimer_cancel(t)
    run_kernel(test, cpu=3)
    assert result["active"] and result["cancel_after"] is False
    assert len(log) == 1
    tag, when, cpu, comm, in_irq = log[0]
    assert when == result["expires"] == result["armed_at"] + 2 * MS + 7
    assert cpu == 3 and in_irq


def test_hrtimer_cancel_stops_it_and_restart_rearms_it():
    """hrtimer_cancel() before expiry stops the timer; hrtimer_start() again moves its expiry."""
    log = []
    result = {}

    def test(k):
        cancelled = hrtimer(where(k, log, "cancelled"))
        moved = hrtimer(where(k, log, "moved"))
        k.hrtimer_start(cancelled, 1 * MS)
        k.hrtimer_start(moved, 1 * MS)
        k.hrtimer_nanosleep(500 * US)
        result["cancel"] = k.hrtimer_cancel(cancelled)
        k.hrtimer_start(moved, 3 * MS)
        k.hrtimer_nanosleep(5 * MS)
    run_kernel(test)
    assert result["cancel"] is True
    assert [(tag, when) for tag, when, *_ in log] == [("moved", 3 * MS)]


def test_mod_timer_and_del_timer():
    """mod_timer() arms a timer_list for a jiffy, re-arms a pending one; del_timer() stops it."""
    log = []
    result = {}

    def test(k):
        a = timer_list(where(k, log, "a"))
        b = timer_list(where(k, log, "b"))
        k.hrtimer_nanosleep(1500 * US)               # jiffies == 1
        result["jiffies"] = k.jiffies
        result["mod"] = (k.mod_timer(a, k.jiffies + 2), k.mod_timer(b, k.jiffies + 2))
        result["remod"] = k.mod_timer(a, k.jiffies + 4)   # pending: re-armed later
        result["pending"] = k.timer_pending(b)
        result["del"] = k.del_timer(b)
        result["del_again"] = k.del_timer(b)
        k.hrtimer_nanosleep(10 * MS)
        result["pending_after"] = k.timer_pending(a)
    run_kernel(test)
    assert result == {"jiffies": 1, "mod": (False, False), "remod": True, "pending": True,
                      "del": True, "del_again": False, "pending_after": False}
    assert [(tag, when, irq) for tag, when, _, _, irq in log] == [("a", 5 * MS, True)]


# -- sleeping in atomic context --------------------------------------------------------------------------


def test_sleeping_in_a_timer_callback_is_a_kernel_bug():
    """A timer callback that sleeps fails the run: 'sleeping function called from invalid context'."""
    m = Machine(nr_cpus=2, seed=7)

    def test(k):
        t = hrtimer(lambda timer: k.hrtimer_nanosleep(1 * MS))
        k.hrtimer_start(t, 1 * MS)
        k.hrtimer_nanosleep(5 * MS)
    with pytest.raises(KernelBug) as info:
        m.run_kernel(test)
    text = str(info.value)
    assert "sleeping function called from invalid context" in text
    assert "in_irq=True" in text
    assert "replay:" in text and "seed=7" in text   # how to replay it


def test_waiting_in_irq_work_is_a_kernel_bug():
    """flush_work() from an irq_work function is sleeping in interrupt context: a kernel bug."""
    m = Machine(nr_cpus=2, seed=1)

    def test(k):
        def slow(work):
            k.charge(1 * MS)
        w = work_struct(slow)
        k.queue_work_on(1, k.system_wq, w)
        k.irq_work_queue(irq_work(lambda iw: k.flush_work(w)))
        k.hrtimer_nanosleep(5 * MS)
    with pytest.raises(KernelBug, match="sleeping function called from invalid context"):
        m.run_kernel(test)


def test_sleeping_with_a_spinlock_held_is_a_kernel_bug():
    """Sleeping while holding a spinlock is reported the same way, naming the lock."""
    m = Machine(nr_cpus=2, seed=1)
    lock = raw_spinlock_t("test_lock")

    def test(k):
        raw_spin_lock(lock)
        k.hrtimer_nanosleep(1 * MS)
        raw_spin_unlock(lock)
    with pytest.raises(KernelBug) as info:
        m.run_kernel(test)
    assert "sleeping function called from invalid context" in str(info.value)
    assert "test_lock" in str(info.value)


def test_interrupts_wait_while_the_cpu_has_them_off():
    """A timer expiring while its CPU computes with interrupts off fires when they come back on."""
    from emulator.kernel.time import hrtimer
    seen = {}

    def body(k):
        timer = hrtimer(lambda t: seen.setdefault("fired", k.engine.now))
        flags = k.local_irq_save()
        start = k.engine.now
        k.hrtimer_start(timer, start + 1_000)
        k.charge(10_000)                       # busy with interrupts off
        seen["enabled"] = k.engine.now
        k.local_irq_restore(flags)
        k.hrtimer_nanosleep(5_000)
        seen["start"] = start
    Machine(nr_cpus=2, seed=1).run_kernel(body)
    assert seen["enabled"] >= seen["start"] + 10_000
    assert seen["fired"] == seen["enabled"]


# -- mutexes --------------------------------------------------------------------------------------


def _contend(owner_holds):
    """An owner on CPU 1 takes a mutex and ``owner_holds(k)``; 20 us later a
    waiter on CPU 2 takes it.  Returns (the waiter's voluntary switches
    during its mutex_lock(), when it got the lock, when the owner let go)."""
    from emulator.kernel.locking import mutex, mutex_lock, mutex_unlock
    lock, out = mutex("test_mutex"), {}

    def owner(k):
        k.hrtimer_nanosleep(100 * US)            # both threads started
        mutex_lock(lock)
        owner_holds(k)
        out["released"] = k.engine.now
        mutex_unlock(lock)

    def waiter(k):
        k.hrtimer_nanosleep(120 * US)
        assert lock.owner is not None
        before = k.cur.nvcsw
        mutex_lock(lock)
        out["acquired"], out["slept"] = k.engine.now, k.cur.nvcsw - before
        mutex_unlock(lock)

    def test(k):
        k.kthread_create_on_cpu(lambda _: owner(k), None, 1, "owner")
        k.kthread_create_on_cpu(lambda _: waiter(k), None, 2, "waiter")
        k.hrtimer_nanosleep(1 * MS)
    run_kernel(test)
    return out["slept"], out["acquired"], out["released"]


def test_a_mutex_waiter_spins_while_the_owner_runs_on_a_cpu():
    """CONFIG_MUTEX_SPIN_ON_OWNER: the owner computes 50 us holding the mutex;
    the waiter spins on its CPU meanwhile and takes the mutex within the
    last cpu_relax() wait of the release (10 us at most), never sleeping."""
    slept, acquired, released = _contend(lambda k: k.charge(50 * US))
    assert slept == 0 and released <= acquired <= released + 10 * US


def test_a_mutex_waiter_sleeps_once_the_owner_sleeps():
    """The owner sleeps 50 us holding the mutex: the waiter stops spinning
    (the owner is off its CPU) and sleeps until the release wakes it."""
    slept, acquired, released = _contend(lambda k: k.hrtimer_nanosleep(50 * US))
    assert slept == 1 and acquired >= released


def test_a_per_cpu_allocation_makes_each_cpus_copy_when_first_touched():
    """alloc_percpu(): per_cpu_ptr() of a possible CPU gives its copy, made with
    its class's initial values when first touched and the same object after;
    an impossible CPU is an error, not a copy; touched() lists the copies made,
    by CPU; iterating the allocation itself is refused (a loop over CPUs, or
    over touched(), says which it means)."""
    from emulator.kernel.percpu import alloc_percpu, touched

    class slot:
        def __init__(self):
            self.cid = -1

    ptr = alloc_percpu(slot, 4)
    assert touched(ptr) == ()
    ptr[3].cid = 7
    assert ptr[3].cid == 7 and ptr[1].cid == -1
    assert [(cpu, s.cid) for cpu, s in touched(ptr)] == [(1, -1), (3, 7)]
    for impossible in (4, -1):
        with pytest.raises(IndexError):
            ptr[impossible]
    with pytest.raises(TypeError):
        list(ptr)
