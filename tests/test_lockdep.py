"""lockdep's order graph catches an inverted lock order even when the run did not deadlock."""

import pytest

from emulator import Machine
from emulator.checks.lockdep import InconsistentLockState, LockOrderViolation, lock_class
from emulator.kernel.locking import raw_spin_lock, raw_spin_unlock, raw_spinlock_t
from emulator.kernel.time import hrtimer
from emulator.uapi.libc import busy_wait, pthread_create, pthread_join, sched_setaffinity
from emulator.variants import get_variant

V6_3 = get_variant("v6.3")


class PutsUnderTheRqLockBackwards(V6_3):
    """At exit, take mm->cid_lock and then this CPU's rq lock to "stabilize" the cid.

    Schedule-in takes them the other way round (rq->__lock held by __schedule(),
    then mm->cid_lock in mm_cid_get()): an ABBA deadlock between an exiting thread
    and a context switch on the same mm, whether or not this run hits it.
    """
    name = "test-abba"

    def sched_mm_cid_exit_signals(self, t):
        mm = t.mm
        if mm is None:
            return
        k = self.k
        flags = k.local_irq_save()
        raw_spin_lock(mm.cid_lock)
        rq = k.rqs[k.cpu]
        raw_spin_lock(rq.lock)
        mm.cidmask.bits &= ~(1 << t.mm_cid) if t.mm_cid >= 0 else ~0
        raw_spin_unlock(rq.lock)
        raw_spin_unlock(mm.cid_lock)
        t.mm_cid = -1
        t.mm_cid_active = 0
        k.local_irq_restore(flags)


def one_thread_then_exit():
    def worker(cpu):
        sched_setaffinity(0, {cpu})
        busy_wait(100_000)

    def main():
        pthread_join(pthread_create(worker, 1))
        return 0
    return main


def test_lock_classes_drop_instance_numbers():
    assert lock_class("rq3->__lock") == "rq->__lock"
    assert lock_class("mm#12->cid_lock") == "mm->cid_lock"
    assert lock_class("main[6]->pi_lock") == "task->pi_lock"


def test_inverted_order_is_reported_with_both_chains():
    """cid_lock -> rq lock at exit, after rq lock -> cid_lock at schedule-in: reported."""
    m = Machine(nr_cpus=2, variants=[PutsUnderTheRqLockBackwards])
    with pytest.raises(LockOrderViolation, match=r"possible circular locking dependency") as e:
        m.run(one_thread_then_exit())
    report = str(e.value)
    assert "acquire rq->__lock while holding mm->cid_lock" in report
    assert "rq->__lock -> mm->cid_lock, first seen" in report


def test_the_merged_v6_3_order_is_clean():
    """The same story on v6.3 as merged records the graph without a cycle."""
    m = Machine(nr_cpus=2, variants=[V6_3])
    assert m.run(one_thread_then_exit()) == 0
    assert "mm->cid_lock" in m.kernel.lockdep.after["rq->__lock"]


def test_lockdep_is_off_with_the_invariants():
    m = Machine(nr_cpus=2, variants=[PutsUnderTheRqLockBackwards], invariants=False)
    assert m.run(one_thread_then_exit()) == 0


def an_interrupt_takes(k, lock):
    """A timer interrupt on this CPU takes and releases *lock*; it has run
    when this returns."""
    def in_irq(timer):
        raw_spin_lock(lock)
        raw_spin_unlock(lock)
    k.hrtimer_start(hrtimer(in_irq), k.engine.now + 1000)
    k.charge(10_000)


def test_a_lock_taken_in_an_interrupt_and_with_interrupts_on_is_inconsistent():
    """A task takes a lock with interrupts on; later a timer interrupt takes it
    too.  Nothing deadlocks in this run (the task had released it), but an
    interrupt on the task's CPU while it holds the lock would spin forever:
    lockdep's inconsistent lock state, naming both usages."""
    def story(k):
        lock = raw_spinlock_t("dev->lock")
        raw_spin_lock(lock)                     # interrupts on
        raw_spin_unlock(lock)
        an_interrupt_takes(k, lock)
    with pytest.raises(InconsistentLockState, match=r"inconsistent \{HARDIRQ-ON-W\} -> "
                                                    r"\{IN-HARDIRQ-W\} usage: .* takes "
                                                    r"dev->lock in interrupt context") as info:
        Machine(nr_cpus=2).run_kernel(story)
    assert "{HARDIRQ-ON-W} first seen in raw_spin_lock <- story" in str(info.value)


def test_an_irq_safe_lock_must_not_lead_to_an_irq_unsafe_one():
    """dev->lock is taken by a timer interrupt (irq-safe), stats->lock with
    interrupts on (irq-unsafe); a path holding dev->lock takes stats->lock.  An
    interrupt waiting for dev->lock can then wait, through its holder, on a CPU
    that the interrupt itself stopped while it held stats->lock."""
    def story(k):
        dev, stats = raw_spinlock_t("dev->lock"), raw_spinlock_t("stats->lock")
        an_interrupt_takes(k, dev)
        raw_spin_lock(stats)                    # interrupts on: irq-unsafe
        raw_spin_unlock(stats)
        flags = k.local_irq_save()
        raw_spin_lock(dev)
        raw_spin_lock(stats)                    # dev -> stats: safe -> unsafe
        raw_spin_unlock(stats)
        raw_spin_unlock(dev)
        k.local_irq_restore(flags)
    with pytest.raises(InconsistentLockState, match=r"HARDIRQ-safe -> HARDIRQ-unsafe lock order "
                                                    r"detected: dev->lock .* stats->lock") as info:
        Machine(nr_cpus=2).run_kernel(story)
    assert "dev->lock -> stats->lock, first seen in raw_spin_lock <- story" in str(info.value)


def test_the_same_usage_in_either_order_is_caught():
    """The order edge first, the irq-unsafe usage after: still reported."""
    def story(k):
        dev, stats = raw_spinlock_t("dev->lock"), raw_spinlock_t("stats->lock")
        an_interrupt_takes(k, dev)
        flags = k.local_irq_save()
        raw_spin_lock(dev)
        raw_spin_lock(stats)
        raw_spin_unlock(stats)
        raw_spin_unlock(dev)
        k.local_irq_restore(flags)
        raw_spin_lock(stats)                    # now irq-unsafe
        raw_spin_unlock(stats)
    with pytest.raises(InconsistentLockState, match="HARDIRQ-safe -> HARDIRQ-unsafe"):
        Machine(nr_cpus=2).run_kernel(story)
