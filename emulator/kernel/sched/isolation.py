"""kernel/sched/isolation.c and kernel/time/tick-sched.c's nohz_full: which
CPUs do housekeeping, from the boot parameters nohz_full= and isolcpus=.

  nohz_full=CPUS  the CPUs' tick stops while they run one task with nothing
                  else to do (sched_can_stop_tick()), and they leave the
                  housekeeping masks of kernel threads, unbound workqueues and
                  the timer/RCU/misc work (HK_TYPE_TICK, _WQ, _KTHREAD, ...);
  isolcpus=CPUS   (the "domain" flag) the CPUs leave the scheduler domains:
                  no load balancing to or from them, and init (so every task
                  that does not set its affinity) runs on the others
                  (sched_init_smp()'s housekeeping_cpumask(HK_TYPE_DOMAIN)).

Per-CPU work (a bound kworker, a work item queued on that CPU) and IPIs still
reach an isolated CPU: that is what seed 002 removes for the pcp drain.

Departures: the tick of a nohz_full CPU restarts at once when a second task
is queued there (the kernel sends it an IPI, tick_nohz_dep_set_cpu(), which
is not an event of its own here); there is no residual 1 Hz tick (offloaded
to housekeeping since v4.17, sched_tick_remote(), which is not modelled).
"""

from ..task import SCHED_FIFO, SCHED_RR

HK_TYPE_TICK = "tick"
HK_TYPE_DOMAIN = "domain"
HK_TYPE_WQ = "wq"
HK_TYPE_KTHREAD = "kthread"


class Isolation:
    """Mixin."""

    def housekeeping_init(self, nohz_full, isolcpus):
        self.nohz_full_mask = nohz_full
        self.isolated_mask = isolcpus
        others = self.possible_mask
        self.housekeeping = {
            HK_TYPE_TICK: others & ~nohz_full,
            HK_TYPE_WQ: others & ~nohz_full & ~isolcpus,
            HK_TYPE_KTHREAD: others & ~nohz_full,
            HK_TYPE_DOMAIN: others & ~isolcpus,
        }

    def housekeeping_cpumask(self, kind):
        return self.housekeeping[kind]

    def housekeeping_cpu(self, cpu, kind):
        return self.housekeeping[kind] >> cpu & 1

    def tick_nohz_full_cpu(self, cpu):
        return self.nohz_full_mask >> cpu & 1

    def sched_can_stop_tick(self, rq):
        """sched_can_stop_tick(): no tick is needed unless RR tasks must
        rotate (more than one) or fair tasks must be preempted (more than one
        task, none of them RT): a FIFO task keeps the tick stopped whatever
        waits behind it."""
        rt = [p for queue in rq.rt.queues.values() for p in queue]
        curr = rq.curr
        if curr.policy in (SCHED_FIFO, SCHED_RR) and curr not in rt:
            rt.append(curr)
        rr = sum(1 for p in rt if p.policy == SCHED_RR)
        if rr:
            return rr == 1
        if rt:
            return True
        return rq.nr_running <= 1

    def sched_domain_cpu(self, cpu):
        """Whether *cpu* is in a scheduler domain (load balancing reaches it)."""
        return not self.isolated_mask >> cpu & 1
