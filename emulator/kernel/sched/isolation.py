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

The residual 1 Hz tick: since v4.17 (d84b31313ef8 "sched/isolation: Offload
residual 1Hz scheduler tick") a nohz_full CPU running one task keeps no tick
of its own at all (tick_nohz_next_event() lets a CPU without the do_timer
duty defer to KTIME_MAX; scheduler_tick_max_deferment() and its one tick per
second are gone).  A housekeeping CPU runs sched_tick_remote() for it instead,
once a second (a delayed work on system_unbound_wq, re-armed with HZ), and
that calls only ``curr->sched_class->task_tick()`` (and
calc_load_nohz_remote()) under the remote rq lock: not task_tick_mm_cid().
So on a nohz_full CPU whose tick is stopped, v6.4-v6.13's tick-driven
task_mm_cid_work is never queued.  Modelled below as v6.13's
kernel/sched/core.c has it (sched_tick_start() at boot, the remote tick
while the CPU's tick is stopped); calc_load_nohz_remote() (the load
average) and sched_tick_stop() at CPU hot-unplug are not (the work checks
that its CPU is online).

Departures: the tick of a nohz_full CPU restarts at once when a second task
is queued there (the kernel sends it an IPI, tick_nohz_dep_set_cpu(), which
is not an event of its own here); the tick dependencies other than the
scheduler's (posix CPU timers, perf, RCU, tick_nohz_next_event()'s "a timer
in the next period keeps the tick") are not modelled: with hrtimers only,
the last does not apply (get_next_timer_interrupt() then sees only the
timer wheel).
"""

from ..locking import raw_spin_lock, raw_spin_unlock
from ..task import SCHED_FIFO, SCHED_RR
from ..workqueue import delayed_work

HK_TYPE_TICK = "tick"
HK_TYPE_DOMAIN = "domain"
HK_TYPE_WQ = "wq"
HK_TYPE_KTHREAD = "kthread"


class tick_work(delayed_work):
    """struct tick_work: the remote tick of one nohz_full CPU."""

    __slots__ = ("tick_cpu",)


class Isolation:
    """Mixin."""

    def housekeeping_init(self, nohz_full, isolcpus):
        self.nohz_full_mask = nohz_full
        self.isolated_mask = isolcpus
        others = self.possible_mask
        self.tick_works = {}
        self.remote_ticks = 0
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

    # -- the residual 1 Hz tick, offloaded (kernel/sched/core.c, CONFIG_NO_HZ_FULL) ----------

    def sched_tick_start(self, cpu):
        """sched_tick_start() (from sched_cpu_starting()): a nohz_full CPU's
        remote tick, first due a second (HZ jiffies) from now."""
        if self.housekeeping_cpu(cpu, HK_TYPE_TICK):
            return
        twork = tick_work(self.sched_tick_remote, "sched_tick_remote")
        twork.tick_cpu = cpu
        self.tick_works[cpu] = twork
        self.queue_delayed_work(self.system_unbound_wq, twork, self.hz)

    def sched_tick_remote(self, work):
        """sched_tick_remote(): on a housekeeping CPU, the scheduler tick of
        a nohz_full CPU whose own tick is stopped.  Only the class's
        task_tick(): no task_tick_mm_cid(), no irq on the remote CPU."""
        cpu = work.tick_cpu
        rq = self.rqs[cpu]
        # Handle the tick only if it appears the remote CPU is running in
        # full dynticks mode (tick_nohz_tick_stopped_cpu(); racy by nature).
        if rq.tick_entry is None:
            flags = self.local_irq_save()                 # guard(rq_lock_irq)(rq)
            raw_spin_lock(rq.lock)
            curr = rq.curr
            if self.online_mask >> cpu & 1:
                now = rq.clock = self.engine.now          # update_rq_clock()
                cls = curr.sched_class
                # (the stopper's and the idle task's task_tick() do nothing)
                if hasattr(cls, "task_tick"):
                    # WARN_ON_ONCE(delta > 3 * NSEC_PER_SEC) on the time
                    # since curr's exec_start: not checked.
                    cls.update_curr(rq, curr, now)
                    cls.task_tick(self, rq, curr)
                self.remote_ticks += 1
            raw_spin_unlock(rq.lock)
            self.local_irq_restore(flags)
        # Run the remote tick once per second (1Hz).
        self.queue_delayed_work(self.system_unbound_wq, work, self.hz)
