"""The mm lifecycle rule by rule, with what moves lazy mms around: the
stateful machine of a lazy_tlb variant.

``lifecycle_machine(variant)`` (emulator/explore/stateful.py) gives a
lazy_tlb variant these rules besides its own (threads, forks, vforks, execs,
exits, affinity, migrations, work, sleeps and wake-ups, mm pinning, time,
PREEMPT preemptions):

    cpu_online(who, cpu, online)
                             who writes 0 or 1 to cpuN/online (any possible
                             CPU; the last online one refuses: EBUSY)
    kthread_use(who, ns)     who hands its mm to a kworker that adopts it
                             with kthread_use_mm() for ns, holding an
                             mm_users reference (vhost, io_uring SQPOLL)
    ipi_delay(ns)            IPIs (the shootdowns', the reschedule ones)
                             take ns from now on

Idle CPUs stop their tick (nohz idle) and restart it when a task comes, as
the machine always does, so nohz entry and exit come with sleeps and
wake-ups.  Besides P1-P7, the lazy-TLB invariants are checked: P6 at every
free, P8 at every drop, P9 at every shootdown, and P8 and P10 at every quiet
step (and at the end).
"""

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from ..checks.lazy_tlb import lazy_tlb_at_quiet
from ..errors import EmulationFailure
from ..kernel.workqueue import work_struct
from .stateful_rules import THEN, CpuHotplugRules, recorded


def _kthread_use(k, ns):
    """A system call handing the caller's mm to a kworker for *ns*."""
    mm = k.cur.mm

    def use(work):
        k.kthread_use_mm(mm)
        k.charge(ns)
        k.kthread_unuse_mm(mm)
        k.mmput(mm)
    k.mmget(mm)
    k.queue_work(k.system_unbound_wq, work_struct(use, "use_mm"))
    return 0


def lazy_tlb_rules(base):
    """*base* (the lifecycle machine) with the lazy-TLB rules."""

    class LazyTlbLifecycle(CpuHotplugRules, base):
        @precondition(lambda self: self.has_live())
        @rule(who=st.integers(0, 63), ns=st.integers(1, 3_000_000), then=THEN)
        @recorded
        def kthread_use(self, who, ns, then):
            self.pick(who).give(("call", _kthread_use, (self.m.kernel, ns)))
            self._then(then)

        @precondition(lambda self: self.running())
        @rule(ns=st.sampled_from([0, 500, 2_000, 50_000, 1_000_000]))
        @recorded
        def ipi_delay(self, ns):
            self.m.kernel.ipi_latency_ns = ns

        def no_orphan_cid_bits_when_quiet(self):
            super().no_orphan_cid_bits_when_quiet()
            if self.running() and self.m.quiet() and self.m.kernel.invariants is not None:
                try:
                    lazy_tlb_at_quiet(self.m.kernel)
                except EmulationFailure as exc:
                    raise self._reported(exc)

    return LazyTlbLifecycle

