"""lockdep's order graph catches an inverted lock order even when the run did not deadlock."""

import pytest

from emulator import Machine
from emulator.checks.lockdep import LockOrderViolation, lock_class
from emulator.kernel.locking import raw_spin_lock, raw_spin_unlock
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
