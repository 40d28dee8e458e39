"""A failing run always ends, names the culprit, and leaves no host thread or kernel
stack behind."""

import gc
import weakref

import pytest

from emulator import Machine
from emulator.errors import (
    BatonTimeout, Deadlock, HardLockup, KernelBug, TaskCrashed, UseAfterFree,
)
from emulator.kernel.locking import (
    cpu_relax, mutex, mutex_lock, mutex_unlock, raw_spin_lock, raw_spin_unlock, raw_spinlock_t,
)
from emulator.kernel.wait import wait_queue_head_t
from emulator.uapi.libc import pthread_create, pthread_join, pthread_mutex_t, usleep
from emulator.variants import get_variant
from emulator.workload import Program, sleep, thread


def opposite_orders():
    """Two threads taking two mutexes in opposite orders."""
    a, b = pthread_mutex_t(), pthread_mutex_t()

    def t1(_):
        a.lock()
        usleep(10)
        b.lock()

    def t2(_):
        b.lock()
        usleep(10)
        a.lock()
    x, y = pthread_create(t1), pthread_create(t2)
    pthread_join(x)
    pthread_join(y)


def test_deadlock_names_who_waits_on_what():
    """Two threads taking two mutexes in opposite orders: a deadlock, with both waiters named."""
    with pytest.raises(Deadlock) as info:
        Machine(nr_cpus=2, seed=1).run(opposite_orders)
    text = str(info.value)
    assert text.count("waits on futex pthread_mutex_t") == 2
    assert "replay:" in text and "seed=1" in text


def test_body_holding_the_baton_is_reported_and_stopped():
    """A body spinning in Python without calling the API is reported, and its thread ends."""
    def main():
        while True:
            pass
    m = Machine(nr_cpus=2, baton_timeout=0.3)
    with pytest.raises(BatonTimeout, match="held the baton"):
        m.run(main)
    assert m.live_host_threads() == []


def test_python_exception_in_a_body_names_task_and_time():
    """An exception in a body fails the run naming the task and the virtual time."""
    def main():
        usleep(5)
        raise ValueError("boom")
    with pytest.raises(TaskCrashed, match=r"main\[\d+\] raised ValueError: boom .* at virtual time \d+ ns"):
        Machine(nr_cpus=2).run(main)


def test_kernel_path_spinning_without_progress_is_stopped():
    """A kernel path looping in Python without any primitive is ended by the watchdog."""
    def stuck(k):
        while True:
            pass
    with pytest.raises(HardLockup, match="without reaching a scheduling point"):
        Machine(nr_cpus=2, stall_timeout=0.5).run_kernel(stuck)


def test_spinning_on_a_lock_nobody_releases_is_a_hard_lockup():
    """Spinning on a held lock past the threshold is a hard lockup with each CPU's state."""
    def spin(k):
        lock = raw_spinlock_t("orphan_lock")
        lock.owner = "a task that died"
        raw_spin_lock(lock)
    with pytest.raises(HardLockup) as info:
        Machine(nr_cpus=2, lockup_ns=5_000_000).run_kernel(spin)
    assert "hard LOCKUP on CPU 0" in str(info.value)
    assert "orphan_lock" in str(info.value) and "CPU states:" in str(info.value)


def test_cpu_relax_loop_past_the_threshold_is_a_hard_lockup():
    """A retry loop with cpu_relax() that never succeeds is a hard lockup, after virtual time passed."""
    def spin(k):
        while True:
            cpu_relax()
    m = Machine(nr_cpus=2, lockup_ns=5_000_000)
    with pytest.raises(HardLockup, match="cpu_relax"):
        m.run_kernel(spin)
    assert m.now >= 5_000_000


def test_a_failure_in_the_cleanup_of_a_failing_path_reports_the_first():
    """The model's kernel code runs its try/finally (its guard()s) while a
    failure unwinds, which the kernel never does: a cleanup that fails in turn
    does not hide the lockup that started it."""
    lock = raw_spinlock_t("lock")

    def spin(k):
        try:
            while True:
                cpu_relax()
        finally:
            raw_spin_unlock(lock)          # not locked: a BUG of its own
    m = Machine(nr_cpus=2, lockup_ns=5_000_000)
    with pytest.raises(HardLockup, match="cpu_relax"):
        m.run_kernel(spin)


def test_spinning_in_interrupt_context_is_an_immediate_lockup():
    """In interrupt context nothing can release the lock: the lockup is reported
    at once (lockdep off: with it, the interrupt's acquisition is reported
    first, tests/test_lockdep.py)."""
    def arm(k):
        from emulator.kernel.time import hrtimer
        lock = raw_spinlock_t("held_lock")
        raw_spin_lock(lock)
        k.hrtimer_start(hrtimer(lambda timer: raw_spin_lock(lock)), k.engine.now + 1000)
        k.charge(10_000)            # busy with the lock held: the timer interrupts
    with pytest.raises(HardLockup, match="interrupt context"):
        Machine(nr_cpus=2, invariants=False).run_kernel(arm)


def test_use_after_free_names_allocation_and_free_sites():
    """Touching an mm after __mmdrop raises KASAN's report: who allocated, who freed."""
    def uaf(k):
        mm = k.mm_alloc()
        k.mmdrop(mm)
        return mm.mm_users
    with pytest.raises(UseAfterFree) as info:
        Machine(nr_cpus=2, seed=3).run_kernel(uaf)
    text = str(info.value)
    assert "use-after-free: read of mm#" in text
    assert "accessed by uaf" in text
    assert "allocated by allocate_mm <- mm_alloc <- uaf" in text
    assert "freed by _mmdrop <- mmdrop <- uaf" in text
    assert "seed=3" in text and "replay:" in text


def test_python_error_in_variant_code_fails_the_run_cleanly():
    """A bug in a patch's Python (not a kernel finding) still ends the run with a report."""
    class Broken(get_variant("v6.3")):
        name = "broken-test"

        def switch_mm_cid(self, rq, prev, next):
            raise AttributeError("typo in my patch")

    def main():
        usleep(10)
        return 0
    with pytest.raises(KernelBug, match="AttributeError: typo in my patch"):
        Machine(nr_cpus=2, variants=[Broken]).run(main)


def test_sleeping_in_interrupt_context_is_a_kernel_bug():
    """Sleeping from a timer callback is reported as the kernel reports it."""
    def arm(k):
        from emulator.kernel.time import hrtimer
        k.hrtimer_start(hrtimer(lambda timer: k.schedule()), k.engine.now + 1000)
        k.hrtimer_nanosleep(10_000)
    with pytest.raises(KernelBug, match="sleeping function called from invalid context"):
        Machine(nr_cpus=2).run_kernel(arm)


def test_what_a_failed_run_left_suspended_unwinds_without_touching_it():
    """A kernel thread falls asleep inside a guarded section, holding a mutex,
    and the run then dies of a hard lockup on another CPU.  When the run ends
    the sleeper's stack unwinds, and its finally block does not act on the
    machine: the mutex stays the sleeper's, as the report saw it."""
    held = mutex("held_mutex")

    def sleeper(_):
        mutex_lock(held)
        try:
            kernel[0].wait_event(wait_queue_head_t("never"), lambda: False)
        finally:
            mutex_unlock(held)

    def spin(k):
        kernel.append(k)
        k.kthread_create_on_cpu(sleeper, None, 1, "sleeper")
        lock = raw_spinlock_t("orphan_lock")
        lock.owner = "a task that died"
        raw_spin_lock(lock)

    kernel = []
    with pytest.raises(HardLockup):
        Machine(nr_cpus=2, lockup_ns=5_000_000).run_kernel(spin)
    sleeper_task = held.owner
    assert sleeper_task is not None and sleeper_task.comm == "sleeper"
    assert sleeper_task.stack.dead


def test_a_run_that_ended_with_tasks_blocked_goes_with_its_last_reference():
    """A deadlocked run, and a run abandoned while its threads sleep: nothing
    of either stays suspended to keep its machine alive (a search of a
    thousand examples would keep a thousand machines) or to act later."""
    def deadlock():
        m = Machine(nr_cpus=2, seed=1)
        with pytest.raises(Deadlock):
            m.run(opposite_orders)
        return weakref.ref(m)

    def abandoned():
        sleeper = Program(thread(Program(sleep(10**12))), sleep(10**12))
        m = Machine(nr_cpus=2, seed=1).start(sleeper)
        m.advance(1_000_000)
        m.close()
        return weakref.ref(m)
    machines = [deadlock(), abandoned()]
    gc.collect()
    assert [m() for m in machines] == [None, None]
