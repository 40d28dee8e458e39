"""The invariants catch broken patches: each story is a small wrong patch of v6.3."""

from types import SimpleNamespace

import pytest

from emulator import Machine
from emulator.checks.invariants import InvariantViolation, Invariants
from emulator.kernel.cpumask import cpumask_first_zero
from emulator.uapi.libc import busy_wait, pthread_create, pthread_join, sched_setaffinity, usleep
from emulator.variants import get_variant

V6_3 = get_variant("v6.3")


def two_threads_computing_together():
    def worker(cpu):
        sched_setaffinity(0, {cpu})
        busy_wait(2_000_000)

    def main():
        threads = [pthread_create(worker, cpu) for cpu in (1, 2)]
        for t in threads:
            pthread_join(t)
        return 0
    return main


class ForgetsToSetTheBit(V6_3):
    """__mm_cid_get() finds the first zero bit but never sets it."""
    name = "test-forgets-bit"

    def _mm_cid_get(self, mm):
        cid = cpumask_first_zero(mm.cidmask.bits)
        return cid if cid < self.k.nr_cpu_ids else -1


class HandsOutOneCid(V6_3):
    """__mm_cid_get() marks cid 0 taken and hands it to every thread."""
    name = "test-one-cid"

    def _mm_cid_get(self, mm):
        mm.cidmask.bits |= 1
        return 0


class WritesRseqItself(V6_3):
    """switch_mm_cid() writes the new cid straight into the rseq area."""
    name = "test-writes-rseq"

    def switch_mm_cid(self, rq, prev, next):
        super().switch_mm_cid(rq, prev, next)
        if next.rseq is not None and next.mm_cid >= 0:
            next.rseq.mm_cid = next.mm_cid


class LeaksTheBit(V6_3):
    """mm_cid_put() forgets to clear the bit when a thread exits."""
    name = "test-leaks-bit"

    def sched_mm_cid_exit_signals(self, t):
        t.mm_cid = -1
        t.mm_cid_active = 0


def test_p1_catches_two_running_threads_with_one_cid():
    """Two threads on two CPUs get cid 0 from a patch that gives every thread the one id it marked: P1."""
    with pytest.raises(InvariantViolation, match=r"P1 uniqueness: mm#1: .* both run with mm_cid 0"):
        Machine(nr_cpus=4, variants=[HandsOutOneCid]).run(two_threads_computing_together())


def test_p11_catches_a_task_running_with_an_id_its_bitmap_does_not_hold():
    """A patch that never marks the id it hands out taken: the first thread to
    run with it breaks P11, before a second one could be given the same id."""
    with pytest.raises(InvariantViolation,
                       match=r"P11 held: main\[2\] on CPU 0 runs with mm_cid 0 of mm#1, which is not set"):
        Machine(nr_cpus=4, variants=[ForgetsToSetTheBit]).run(two_threads_computing_together())


def test_p3_catches_the_kernel_writing_rseq_outside_the_update():
    """A patch writing rseq->mm_cid at context switch, not on return to user: P3."""
    with pytest.raises(InvariantViolation, match="P3 visibility"):
        Machine(nr_cpus=4, variants=[WritesRseqItself]).run(two_threads_computing_together())


def test_p4_catches_a_bit_left_set_by_an_exited_thread():
    """Threads exit without putting their cid: once quiet, the mm still has owned-by-nobody bits."""
    def main():
        t = pthread_create(lambda _: usleep(10))
        pthread_join(t)
        usleep(10)
        return 0
    m = Machine(nr_cpus=2, variants=[LeaksTheBit])
    with pytest.raises(InvariantViolation, match=r"P4 no orphan: mm#1 has cid bits \[0, 1\] set with no owner"):
        m.run(main)


def test_invariants_can_be_switched_off():
    """With invariants=False the same broken patch runs to its end."""
    m = Machine(nr_cpus=4, variants=[ForgetsToSetTheBit], invariants=False)
    assert m.run(two_threads_computing_together()) == 0


def test_p1_waits_for_the_task_a_cpu_is_still_switching_in():
    """CPU 0 has stored its next task in rq->curr but not yet switched its cid in
    (the window a postponed or weakly ordered path widens): that task's cid
    field still holds the 0 it had when it last ran, and CPU 1 meanwhile takes
    0, which CPU 0's last task gave back.  Not two running tasks with one cid:
    P1 waits until CPU 0 has switched its task in, and catches it then if the
    cid it got is taken (a checker false positive found by a weak-memory run
    of seed-003 under pthread-max at 8 CPUs)."""
    class Era:                      # what P1 asks of a variant
        keeps_cid_bitmap = False

        def task_mm_cid(self, t):
            return t.cid

        def cid_active(self, t):
            return True

    def thread(name, cid):
        return SimpleNamespace(name=name, mm=mm, cid=cid, user=object(), in_do_exit=False,
                               in_execve=False)
    mm = object()
    last, woken, other = thread("last", 0), thread("woken", 0), thread("other", 1)
    rqs = [SimpleNamespace(curr=last), SimpleNamespace(curr=other)]
    k = SimpleNamespace(nr_cpu_ids=2, rqs=rqs, mm_cid=Era(), cpu_states=lambda: "")
    checks = Invariants(k)
    checks.index(0, last)
    checks.index(1, other)
    rqs[0].curr = woken             # CPU 0: rq->curr = next, switch_mm_cid() still to come
    other.cid = 0
    checks.index(1, other)          # CPU 1 takes the cid CPU 0's last task gave back
    with pytest.raises(InvariantViolation, match=r"P1 uniqueness: .* both run with mm_cid 0"):
        checks.index(0, woken)      # CPU 0 switches its task in with that cid: a duplicate
