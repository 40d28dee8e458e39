"""kernel/sched/core.c: __schedule(), context_switch(), wake-ups, migration, ticks.

Locking, as in the kernel: a runqueue's fields are protected by ``rq->__lock``;
``__schedule()`` takes it and ``finish_task_switch()`` releases it on the next
task's stack; ``set_task_cpu()`` and ``activate_task()`` run with the relevant
rq lock held; ``try_to_wake_up()`` takes the target rq's lock.

Where this model departs from the kernel it says so at the function:
placement (select_task_rq) is a heuristic over load masks, not
select_idle_sibling()/wake_affine(); load balancing is idle pulling plus the
nohz kick from a busy CPU's tick, not sched domains; kernel code runs in zero
virtual time unless it charges a cost with ``charge()``.
"""

from ..locking import (
    _set_running_kernel, lockdep_assert_held, raw_spin_lock, raw_spin_unlock, running_kernel,
)
from ..task import (
    PF_KTHREAD, SCHED_FIFO, SCHED_NORMAL, SCHED_RR, TASK_DEAD, TASK_INTERRUPTIBLE,
    TASK_NEW, TASK_NORMAL, TASK_ON_RQ_MIGRATING, TASK_ON_RQ_QUEUED, TASK_RUNNING,
    TASK_WAKEKILL, MAX_RT_PRIO, DEFAULT_PRIO, state_char,
)
from ...errors import KernelBug
from ...observe.trace import (
    FuncgraphFields, IrqFields, SchedMigrateTaskFields, SchedSwitchFields, SchedWakeupFields,
)
from .fair import FairSchedClass
from .rt import RtSchedClass
from .sched import (
    DEQUEUE_NOCLOCK, DEQUEUE_SLEEP, ENQUEUE_MIGRATED, ENQUEUE_NOCLOCK, ENQUEUE_WAKEUP,
    RR_TIMESLICE_NS, WF_FORK, WF_MIGRATED, WF_TTWU,
)


class StopSchedClass:
    """kernel/sched/stop_task.c: the per-CPU stopper, above every other class."""
    name = "stop"
    rank = 3


class IdleSchedClass:
    """kernel/sched/idle.c."""
    name = "idle"
    rank = 0


FairSchedClass.rank = 1
RtSchedClass.rank = 2

# Virtual time a spinning CPU waits between two looks at a contended lock or a
# cpu_relax() loop; it doubles up to the cap, so that a CPU spinning for a
# whole lockup threshold costs thousands of iterations, not billions.
RELAX_NS_MIN = 10
RELAX_NS_MAX = 10_000


class SchedCore:
    """The scheduler core, as methods of the kernel object."""

    memory_model = None     # tso/weak: emulator/kernel/memory_model.py (Machine sets it)

    # -- current CPU and task -----------------------------------------------------

    def smp_processor_id(self):
        return self.cpu

    def cpu_rq(self, cpu):
        return self.rqs[cpu]

    def lockdep_assert_rq_held(self, rq):
        if rq.lock.owner is None or (rq.lock.owner is not self.cur and not self.in_irq):
            raise KernelBug(f"WARNING: lockdep_assert_rq_held(rq{rq.cpu}) failed on CPU "
                            f"{self.cpu}: held by {rq.lock.owner!r}")

    def rq_lock_irqsave(self, rq):
        """rq_lock_irqsave(): interrupts off on this CPU, then the rq lock."""
        flags = self.local_irq_save()
        raw_spin_lock(rq.lock)
        return flags

    def rq_unlock_irqrestore(self, rq, flags):
        raw_spin_unlock(rq.lock)
        self.local_irq_restore(flags)

    # -- scans: invocations and durations, as seed 000 measured them ----------------

    def scan_begin(self, name):
        if self.tp.funcgraph_entry:
            self.tp.emit("funcgraph_entry", FuncgraphFields((FuncgraphFields, name)))
        return (name, self.engine.now)

    def scan_end(self, token):
        name, start = token
        now = self.engine.now
        self.scan_stats.setdefault(name, []).append(now - start)
        if self.tp.funcgraph_exit:
            self.tp.emit("funcgraph_exit", FuncgraphFields((FuncgraphFields, name, start, now)))

    def this_rq(self):
        return self.rqs[self.cpu]

    @staticmethod
    def task_cpu(p):
        return p.cpu

    def task_rq(self, p):
        return self.rqs[p.cpu]

    def lock_holder(self):
        return f"irq/{self.cpu}" if self.in_irq else self.cur

    @property
    def held_locks(self):
        return self.rqs[self.cpu].irq_held if self.in_irq else self.cur.held_locks

    # -- entering a kernel stack ----------------------------------------------------

    def _enter(self, t):
        """Switch from the event loop into task *t*'s kernel stack on its CPU
        (also the handler of the event that ends a cpu_run())."""
        self.cur = t
        self.cpu = t.cpu
        self.in_irq = False
        t.stack.switch()

    def _irq_enter(self, rq, cause="irq"):
        """irq_enter() of an interrupt on *rq*'s CPU; *cause* names it as
        /proc/interrupts and osnoise do (irq_handler_entry's field)."""
        self.cpu = rq.cpu
        self.cur = rq.curr
        self.in_irq = True
        rq.irq_cause = cause
        rq.irq_start = rq.irq_time
        self.charge(self.costs["irq_entry_ns"])
        if self.tp.irq_handler_entry:
            self.tp.emit("irq_handler_entry", IrqFields((IrqFields, cause, 0)))

    def irq_exit(self, rq):
        """Interrupt return: preempt the interrupted task if it must reschedule
        (or die), as irqentry_exit() does on the way back to it."""
        if self.tp.irq_handler_exit:
            self.tp.emit("irq_handler_exit",
                         IrqFields((IrqFields, rq.irq_cause, rq.irq_time - rq.irq_start)))
        curr = rq.curr
        if curr.need_resched or curr.sigkill or (curr.notify_resume and curr.user is not None):
            # (TIF_NOTIFY_RESUME: a task interrupted in user mode goes back
            # through exit_to_user_mode_loop(), see cpu_run().)
            if curr.stack is None:
                curr.stack = self.engine.new_stack(self.idle_entry)
            self._enter(curr)

    # -- runqueue accounting: load masks ----------------------------------------------

    def add_nr_running(self, rq, count):
        old = rq.nr_running
        new = rq.nr_running = old + count
        bit = 1 << rq.cpu
        masks = self.load_masks
        masks[old] &= ~bit
        while len(masks) <= new:
            masks.append(0)
        masks[new] |= bit
        if new >= 2 and rq.tick_entry is None and self.nohz_full_mask & bit and \
                not self.sched_can_stop_tick(rq):
            # sched_update_tick_dependency(): a second task needs the tick back.
            self.tick_nohz_restart(rq)

    def sub_nr_running(self, rq, count):
        old = rq.nr_running
        new = rq.nr_running = old - count
        bit = 1 << rq.cpu
        masks = self.load_masks
        masks[old] &= ~bit
        masks[new] |= bit
        while not masks[-1] and len(masks) > 2:
            masks.pop()

    def idle_cpu(self, cpu):
        rq = self.rqs[cpu]
        return rq.curr is rq.idle and rq.nr_running == 0

    # -- enqueue / dequeue ---------------------------------------------------------------

    def enqueue_task(self, rq, p, flags):
        if p.sched_class is StopSchedClass:
            rq.stop_queued = True
        else:
            p.sched_class.enqueue_task(rq, p, flags)
        self.add_nr_running(rq, 1)

    def dequeue_task(self, rq, p, flags):
        if p.sched_class is StopSchedClass:
            rq.stop_queued = False
        else:
            p.sched_class.dequeue_task(rq, p, flags)
        self.sub_nr_running(rq, 1)

    def activate_task(self, rq, p, flags):
        """Put *p* on *rq*; the rq lock is held.  A migrating task arrives with
        ENQUEUE_MIGRATED and the variant's sched_mm_cid_migrate_to() runs first
        (seed 001 calls it for task_on_rq_migrating() tasks only, not wake-ups)."""
        if p.on_rq == TASK_ON_RQ_MIGRATING:
            flags |= ENQUEUE_MIGRATED
        elif p.on_rq:
            # Not the kernel's check: a task queued twice would be picked by
            # two CPUs at once (a waker or a mover that did not wait for a
            # migration to end, above all in a patch's own code).
            raise KernelBug(f"BUG: activate_task() on CPU {rq.cpu} of {p!r}, already queued "
                            f"on CPU {p.cpu}")
        self.mm_cid.migrate_to_in_activate_task(rq, p, flags)
        self.enqueue_task(rq, p, flags)
        p.on_rq = TASK_ON_RQ_QUEUED

    def deactivate_task(self, rq, p, flags):
        p.on_rq = 0 if flags & DEQUEUE_SLEEP else TASK_ON_RQ_MIGRATING
        if p is rq.curr:
            # The running task is not in its class's queue (set_next_task took
            # it out): only take it off the load count.
            self.sub_nr_running(rq, 1)
            if p.sched_class is StopSchedClass:
                rq.stop_queued = False
        else:
            self.dequeue_task(rq, p, flags)

    def set_task_cpu(self, p, new_cpu):
        """Move *p*'s CPU; rseq and the mm_cid variant learn of the migration here."""
        if p.cpu != new_cpu:
            tp = self.tp
            if tp.sched_migrate_task:
                tp.emit("sched_migrate_task", SchedMigrateTaskFields((
                    SchedMigrateTaskFields, p.comm, p.pid, p.prio, p.cpu, new_cpu)))
            self.rseq_migrate(p)
            self.mm_cid.sched_mm_cid_migrate_from(p)
        p.cpu = new_cpu
        p.wake_cpu = new_cpu

    def move_queued_task(self, rq, p, new_cpu):
        """Move a queued, not running, task to *new_cpu*; returns the new rq, locked."""
        lockdep_assert_held(rq.lock)
        self.deactivate_task(rq, p, DEQUEUE_NOCLOCK)
        self.set_task_cpu(p, new_cpu)
        raw_spin_unlock(rq.lock)
        rq = self.rqs[new_cpu]
        raw_spin_lock(rq.lock)
        self.activate_task(rq, p, 0)
        self.wakeup_preempt(rq, p)
        return rq

    # -- preemption ------------------------------------------------------------------------

    def resched_curr(self, rq):
        curr = rq.curr
        if curr.need_resched:
            return
        curr.need_resched = True
        if rq.cpu == self.cpu and (self.in_irq or self.cur is curr):
            # This CPU: irq_exit() or the return to user notices.
            return
        self.smp_send_reschedule(rq)

    def smp_send_reschedule(self, rq):
        if rq.ipi_entry is None:
            rq.ipi_entry = self.engine.at(self.engine.now + self.ipi_latency_ns, self.scheduler_ipi, rq)

    def kick_process(self, p):
        """Make *p*, running on another CPU, enter the kernel (an IPI) so that
        it notices work flagged for its return to user space."""
        cpu = p.cpu
        rq = self.rqs[cpu]
        if cpu != self.cpu and rq.curr is p:
            self.smp_send_reschedule(rq)

    def scheduler_ipi(self, rq):
        if self.irq_deferred(rq, self.scheduler_ipi, rq):
            return
        rq.ipi_entry = None
        rq.ipis += 1
        self._irq_enter(rq, "reschedule IPI")
        self.irq_exit(rq)

    def wakeup_preempt(self, rq, p):
        curr = rq.curr
        if p.sched_class is curr.sched_class:
            if p.sched_class is not StopSchedClass:
                p.sched_class.wakeup_preempt(self, rq, p)
        elif p.sched_class.rank > curr.sched_class.rank:
            self.resched_curr(rq)

    # -- placement -------------------------------------------------------------------------------

    def select_task_rq(self, p, prev_cpu, wake_flags):
        """Choose a CPU for a waking or new task.

        Model, not select_idle_sibling(): the previous CPU if it is idle and
        allowed; else an idle allowed CPU (scan from a chosen start); else, for
        an RT task, a CPU not running RT; else a least loaded allowed CPU,
        preferring the previous one.  Every step is O(words of a mask).
        """
        if p.flags & PF_KTHREAD:
            # is_cpu_allowed(): a kernel thread may run on an online CPU that
            # is not active, but only a per-CPU one on a CPU going down.
            allowed = p.cpus_mask & self.online_mask
            if p.nr_cpus_allowed != 1:
                allowed &= ~self.dying_mask
        else:
            allowed = p.cpus_mask & self.active_mask
        if not allowed:
            return self.select_fallback_rq(p)
        if not allowed & (allowed - 1):
            return allowed.bit_length() - 1
        masks = self.load_masks
        idle = masks[0] & allowed
        if (idle >> prev_cpu) & 1:
            return prev_cpu
        pick = self.chooser.pick_bit
        if idle:
            return pick(idle, self.nr_cpu_ids)
        if p.sched_class is RtSchedClass:
            lower = allowed & ~self.rt_curr_mask
            if lower:
                return prev_cpu if (lower >> prev_cpu) & 1 else pick(lower, self.nr_cpu_ids)
        for level in range(1, len(masks)):
            cand = masks[level] & allowed
            if cand:
                return prev_cpu if (cand >> prev_cpu) & 1 else pick(cand, self.nr_cpu_ids)
        return prev_cpu

    def select_fallback_rq(self, p):
        """No allowed CPU is active: widen the mask to every possible CPU."""
        self.do_set_cpus_allowed(p, self.possible_mask)
        return self.chooser.pick_bit(self.active_mask, self.nr_cpu_ids)

    # -- wake-ups -----------------------------------------------------------------------------------

    def try_to_wake_up(self, p, state, wake_flags=0):
        """Wake *p* if its state matches *state*; returns whether it woke.

        As in the kernel, p->pi_lock (irqsave) serializes wake-ups of one task
        against each other and against affinity and policy changes; the state
        is checked under it (ttwu_state_match())."""
        if not p.state & state:
            return False                    # the lockless early check
        flags = self.local_irq_save()
        raw_spin_lock(p.pi_lock)
        woke = bool(p.state & state) and self._try_to_wake_up(p, wake_flags)
        raw_spin_unlock(p.pi_lock)
        self.local_irq_restore(flags)
        return woke

    def _try_to_wake_up(self, p, wake_flags):
        tp = self.tp
        if p.on_cpu and not p.on_rq and p.state != TASK_RUNNING:
            # Still switching out on its CPU (a path paused inside __schedule()):
            # ttwu_queue_wakelist() hands the wake-up to that CPU, which runs it
            # once the switch is done (sched_ttwu_pending()), instead of
            # spinning on p->on_cpu.
            rq = self.rqs[p.cpu]
            if p not in rq.wake_list:
                rq.wake_list.append(p)
            return True
        if p.on_rq and self.ttwu_runnable(p):
            return True
        cpu = self.select_task_rq(p, p.wake_cpu, wake_flags | WF_TTWU)
        if cpu != p.cpu:
            wake_flags |= WF_MIGRATED
            self.set_task_cpu(p, cpu)
        # ttwu_queue() -> ttwu_do_activate()
        rq = self.rqs[cpu]
        raw_spin_lock(rq.lock)
        rq.clock = self.engine.now
        en_flags = ENQUEUE_WAKEUP | ENQUEUE_NOCLOCK
        if wake_flags & WF_MIGRATED:
            en_flags |= ENQUEUE_MIGRATED
        self.activate_task(rq, p, en_flags)
        self.wakeup_preempt(rq, p)
        p.state = TASK_RUNNING
        p.wait_reason = None
        if tp.sched_wakeup:
            tp.emit("sched_wakeup", SchedWakeupFields((SchedWakeupFields, p.comm, p.pid, p.prio, cpu)))
        raw_spin_unlock(rq.lock)
        return True

    def ttwu_runnable(self, p):
        """Still queued (it had not switched out yet): only the state changes.
        Checked again under the rq lock, as __task_rq_lock() does: the task
        may have gone to sleep while the waker waited for the lock."""
        rq = self.__task_rq_lock(p)
        queued = p.on_rq == TASK_ON_RQ_QUEUED
        if queued:
            self.wakeup_preempt(rq, p)
            p.state = TASK_RUNNING
        raw_spin_unlock(rq.lock)
        return queued

    def sched_ttwu_pending(self, arg):
        """The wake-list IPI: interrupt context on the CPU the tasks switched out of."""
        rq, pending = arg
        if self.irq_deferred(rq, self.sched_ttwu_pending, arg):
            return
        rq.ipis += 1
        self._irq_enter(rq, "function call IPI")
        for p in pending:
            self.try_to_wake_up(p, TASK_NORMAL)
        self.irq_exit(rq)

    def wake_up_process(self, p):
        return self.try_to_wake_up(p, TASK_NORMAL, 0)

    def wake_up_new_task(self, p):
        """Place and enqueue a new task (sched_fork() already gave it its class)."""
        flags = self.local_irq_save()
        raw_spin_lock(p.pi_lock)
        self._wake_up_new_task(p)
        raw_spin_unlock(p.pi_lock)
        self.local_irq_restore(flags)

    def _wake_up_new_task(self, p):
        p.state = TASK_RUNNING
        self.rseq_migrate(p)              # a forked child's inherited rseq area is stale
        cpu = self.select_task_rq(p, p.cpu, WF_FORK)
        p.cpu = p.wake_cpu = cpu          # __set_task_cpu(): a new task does not migrate
        rq = self.rqs[cpu]
        raw_spin_lock(rq.lock)
        rq.clock = self.engine.now
        self.activate_task(rq, p, ENQUEUE_NOCLOCK)
        if self.tp.sched_wakeup_new:
            self.tp.emit("sched_wakeup_new",
                         SchedWakeupFields((SchedWakeupFields, p.comm, p.pid, p.prio, cpu)))
        self.wakeup_preempt(rq, p)
        raw_spin_unlock(rq.lock)

    # -- __schedule -----------------------------------------------------------------------------------

    def schedule(self):
        if self.in_irq or self.cur.held_locks or self.rqs[self.cpu].irqs_disabled or \
                self.cur.preempt_count:
            self.might_sleep()
        self._schedule(False)

    def preempt_schedule(self):
        self._schedule(True)

    def preemptible(self, t):
        """preemptible() for task *t* on its CPU: no spinlock held, preemption
        on (``preempt_count``) and interrupts on.  Where a real kernel path may
        be preempted, and stopped for as long as the tasks preempting it take."""
        return not t.held_locks and not t.preempt_count and not self.rqs[t.cpu].irqs_disabled

    def might_sleep(self):
        """Sleeping is invalid in interrupt context, with a spinlock held or
        interrupts off, and with preemption disabled (``preempt_count``: the
        tail of a context switch, finish_task_switch())."""
        if self.in_irq or self.cur.held_locks or self.rqs[self.cpu].irqs_disabled or \
                self.cur.preempt_count:
            from ...checks.kasan import call_site
            raise KernelBug(
                f"BUG: sleeping function called from invalid context on CPU {self.cpu}: "
                f"in_irq={self.in_irq} locks held={self.held_locks} "
                f"preempt_count={self.cur.preempt_count}",
                f"  call chain: {call_site(2, depth=10)}")

    def _schedule(self, preempt):
        """__schedule(), with preemption disabled around it as schedule() and
        preempt_schedule() do: from here until the task runs again (the tail
        of the context switch included) nothing preempts it."""
        prev = self.cur
        prev.relax_since = None
        if prev.kdebt and not preempt and prev.state != TASK_RUNNING:
            # Kernel time still owed (system call entry, switch-in) is spent
            # before the task leaves its CPU.  A wake-up may come meanwhile.
            self.cpu_run(0, False)
        prev.preempt_count += 1                 # preempt_disable()
        rq = self.rqs[prev.cpu]
        if not rq.irqs_disabled:
            rq.irqs_off_since = self.engine.now
        rq.irqs_disabled += 1                   # local_irq_disable()
        raw_spin_lock(rq.lock)
        if self.memory_model is not None:       # smp_mb__after_spinlock(): tso/weak only,
            self.memory_model.fence(rq.cpu, "mb")   # not a counted point (sc unchanged)
        now = rq.clock = self.engine.now
        prev_state = prev.state
        if not preempt and prev_state != TASK_RUNNING:
            if prev.sigkill and prev_state & (TASK_INTERRUPTIBLE | TASK_WAKEKILL):
                # signal_pending_state(): a fatal signal keeps it running.
                prev.state = TASK_RUNNING
            else:
                self.deactivate_task(rq, prev, DEQUEUE_SLEEP | DEQUEUE_NOCLOCK)
                prev.nvcsw += 1
        else:
            prev.nivcsw += 1
            if prev.sched_class is RtSchedClass:
                # A preempted SCHED_FIFO task stays at the head of its list;
                # sched_yield() and an expired RR slice send it to the tail.
                expired = (prev.policy == SCHED_RR and
                           prev.sum_exec_runtime - prev.prev_sum_exec_runtime >= RR_TIMESLICE_NS)
                prev.rt_head = not prev.rt_yield and not expired
            prev.rt_yield = False
        next = self.pick_next_task(rq, prev, now)
        prev.need_resched = False
        if next is prev:
            raw_spin_unlock(rq.lock)
            self.local_irq_restore(rq)          # raw_spin_rq_unlock_irq()
            prev.preempt_count -= 1             # sched_preempt_enable_no_resched()
            return
        rq.nr_switches += 1
        self.nr_switches += 1
        # The run's schedule so far, as a number: which task each CPU switched to, in order
        # (exploration counts distinct schedules by it).
        self.schedule_digest = (self.schedule_digest * 1_000_003 + (rq.cpu << 24 | next.pid)) \
            & 0xFFFF_FFFF_FFFF_FFFF
        if self.memory_model is None:
            rq.curr = next
        else:                                   # RCU_INIT_POINTER(rq->curr, next): a store
            self.memory_model.store(rq.cpu, rq, "curr", next)   # other CPUs may see late
        if next.sched_class is RtSchedClass:
            self.rt_curr_mask |= 1 << rq.cpu
        elif prev.sched_class is RtSchedClass:
            self.rt_curr_mask &= ~(1 << rq.cpu)
        tp = self.tp
        if tp.sched_switch:
            tp.emit("sched_switch", SchedSwitchFields((
                SchedSwitchFields, prev.comm, prev.pid, prev.prio,
                state_char(prev_state) if not preempt else "R+", next.comm, next.pid, next.prio)))
        self.context_switch(rq, prev, next)
        self.cur.preempt_count -= 1             # sched_preempt_enable_no_resched()

    def pick_next_task(self, rq, prev, now):
        idle = rq.idle
        if prev is not idle:
            cls = prev.sched_class
            if cls is not StopSchedClass:
                cls.update_curr(rq, prev, now)
            if prev.on_rq == TASK_ON_RQ_QUEUED:
                # put_prev_task(): back into its class's queue.
                if cls is StopSchedClass:
                    rq.stop_queued = True
                else:
                    cls.put_prev_task(rq, prev)
        p = self._pick_task(rq)
        if p is None:
            p = self.newidle_balance(rq)
            if p is None:
                return idle
        p.exec_start = now
        p.prev_sum_exec_runtime = p.sum_exec_runtime
        return p

    def _pick_task(self, rq):
        if rq.stop_queued:
            rq.stop_queued = False
            return rq.stop
        if rq.rt.bitmap:
            return RtSchedClass.pick_next_task(rq)
        if rq.cfs.queue:
            return FairSchedClass.pick_next_task(rq)
        return None

    def context_switch(self, rq, prev, next):
        """Switch *rq* from *prev* to *next*, in the kernel's order."""
        # prepare_task_switch()
        self.rseq_preempt(prev)
        next.on_cpu = 1
        # The mm switch, with lazy active_mm for kernel threads.
        if next.mm is None:                        # to kernel
            self.lazy_tlb.enter_lazy_tlb(prev.active_mm, next)
            next.active_mm = prev.active_mm
            if prev.mm is not None:                # from user
                self.mmgrab_lazy_tlb(prev.active_mm)
            else:
                prev.active_mm = None
        else:                                      # to user
            self.switch_mm_irqs_off(prev.active_mm, next.mm, next)
            rq.nr_mm_switches += 1                 # seed 004's count (lazy_tlb variants)
            if prev.mm is None:                    # from kernel
                # will mmdrop() in finish_task_switch().
                rq.prev_mm = prev.active_mm
                prev.active_mm = None
        # switch_mm_cid() requires the memory barriers above.
        counters = self.counters
        locks, atomics = counters.lock_acquire, counters.atomic
        self.mm_cid.switch_mm_cid(rq, prev, next)
        self.switch_mm_cid_locks += counters.lock_acquire - locks
        self.switch_mm_cid_atomics += counters.atomic - atomics
        if self.invariants is not None:
            self.invariants.after_switch(rq, prev, next)
        # prepare_lock_switch(): the rq lock travels with the switch.
        lock = rq.lock
        lock.owner = next
        prev.held_locks.remove(lock)
        next.held_locks.append(lock)
        # switch_to(prev, next, prev)
        self.cur = next
        stack = next.stack
        if stack is None:
            # A new task: ret_from_fork() at the base of its own stack.
            next.stack = self.engine.task_stack()
            prev = self.engine.start_stack(next.stack, self.ret_from_fork, prev)
        else:
            prev = stack.switch(prev)
        # Back on our own stack, switched to from *prev*.
        self.finish_task_switch(prev)
        cur = self.cur
        if cur.user is not None:
            cur.kdebt += self.context_switch_ns

    def finish_task_switch(self, prev):
        """Runs with preemption disabled (see _schedule() and ret_from_fork()),
        so nothing here (the lazy mm's __mmdrop() included) may sleep."""
        rq = self.rqs[self.cpu]
        mm = rq.prev_mm
        rq.prev_mm = None
        prev_state = prev.state
        prev.on_cpu = 0
        if rq.wake_list:
            # Wake-ups that waited for prev to switch out: the IPI that
            # carries the wake list runs sched_ttwu_pending() on this CPU.
            pending, rq.wake_list = rq.wake_list, []
            self.engine.at(self.engine.now, self.sched_ttwu_pending, (rq, pending))
        # finish_lock_switch(): the rq lock goes, interrupts come back on.
        raw_spin_unlock(rq.lock)
        self.local_irq_restore(rq)
        curr = rq.curr
        if curr is rq.idle:
            # tick_nohz_idle_enter(): no tick on an idle CPU.
            if rq.tick_entry is not None:
                self.engine.cancel(rq.tick_entry)
                rq.tick_entry = None
        elif rq.tick_entry is None and not (self.nohz_full_mask >> rq.cpu & 1 and
                                            self.sched_can_stop_tick(rq)):
            self.tick_nohz_restart(rq)
        if mm is not None:
            self.mmdrop_lazy_tlb_sched(mm)
        if prev_state == TASK_DEAD:
            # Task is done with its stack: put_task_stack(), put_task_struct_rcu_user().
            self.put_task_stack(prev)
            self.release_task_struct(prev)

    def put_task_stack(self, tsk):
        """The dead *tsk*'s kernel stack is freed: its frames (do_task_dead()
        down to ret_from_fork()) unwind now, with no kernel running, so that
        kernel code their unwinding reached would stop at its first primitive
        (as in Machine's end of run) instead of acting on the machine."""
        stack, tsk.stack = tsk.stack, None
        running = running_kernel()
        _set_running_kernel(None)
        try:
            self.engine.free_stack(stack)
        finally:
            _set_running_kernel(running)

    def ret_from_fork(self, prev):
        """First code on a new task's stack: finish the switch, then run it.
        schedule_tail(): a new task starts with preemption disabled
        (FORK_PREEMPT_COUNT) and enables it after finish_task_switch()."""
        t = self.cur
        t.preempt_count += 1
        self.finish_task_switch(prev)
        t.preempt_count -= 1
        if t.user is not None:
            t.kdebt += self.context_switch_ns
        if t.flags & PF_KTHREAD:
            t.threadfn(t.threadarg)
            self.do_exit(0)
        self.user_entry(t)

    # -- running for a while ----------------------------------------------------------------------------

    def charge(self, ns):
        """Charge *ns* of virtual CPU time to the code running now.

        In task context the current task keeps its CPU busy for that long
        (preemptible unless it holds a lock); in interrupt context the cost is
        recorded on the CPU (irq time) but does not delay other events."""
        if ns <= 0 or self.cur is self.init_task:
            return
        if self.in_irq:
            self.rqs[self.cpu].irq_time += ns
            return
        self.cpu_run(ns, user=False)

    def cpu_run(self, ns, user):
        """Keep the current task running on its CPU for *ns*.  Ticks and IPIs
        may preempt it; in user mode it goes through exit_to_user_mode() when
        interrupted with work pending, as the interrupt return does."""
        t = self.cur
        engine = self.engine
        loop = engine.loop
        done = self._enter
        queue = engine._queue
        if t.kdebt:
            # Kernel time owed by the task runs first, in the same stretch.
            ns += t.kdebt
            t.kdebt = 0
        while ns > 0:
            start = engine.now
            end = start + ns
            if not queue or queue[0][2] > end:
                # Nothing else happens before this run ends: no other CPU can
                # act, no interrupt can come, so the clock simply moves on.
                engine.now = end
                break
            entry = engine.at(end, done, t)
            if t.held_locks:
                # A spinlock holder is off the CPU's event stream: other CPUs'
                # interrupt handlers, which cannot wait for it, wait until it
                # is back.  Its own CPU's still come (and self-deadlock on its
                # lock, as in the kernel, unless it took the lock irqsave).
                self._lock_holder_away(t.cpu)
                loop.switch()
                self._lock_holder_back(t.cpu)
            else:
                loop.switch()
            entry[3] = None
            ns -= engine.now - start
            if user:
                if t.need_resched or t.sigkill or t.notify_resume:
                    # irqentry_exit_to_user_mode(): the interrupted user task
                    # reschedules, takes its signal, runs task_work and updates
                    # rseq before it computes on.
                    t.user_busy = ns
                    self.exit_to_user_mode(t)
            elif t.need_resched and self.preemptible(t):
                # Kernel preemption: no spinlock, interrupts on, preemption on.
                self.preempt_schedule()
        if user:
            t.user_busy = 0

    def cpu_relax(self, what, spun, lock=None):
        """One look at a contended resource, *what* (*lock*, if it is a
        lock); *spun* ns so far.  Returns the new total.

        Task context lets virtual time pass (growing waits); interrupt context
        cannot, so nothing could ever release what it spins on: a lockup."""
        # The CPU looks again after a wait that doubles up to RELAX_NS_MAX and,
        # past 64 times that, grows with the time spun (1/64 of it): a release
        # is seen within 10 us or 1.6 % of the spin, and a lockup takes a few
        # hundred looks to reach the watchdog, not lockup_ns / RELAX_NS_MAX.
        wait = max(min(max(RELAX_NS_MIN, spun), RELAX_NS_MAX), spun >> 6)
        if self.in_irq:
            raise self.hard_lockup(f"spinning on {what} in interrupt context, which nothing can release",
                                   what, lock)
        if spun >= self.lockup_ns:
            raise self.hard_lockup(f"spinning on {what} for {spun} ns", what, lock)
        self.cpu_run(wait, user=False)
        return spun + wait

    def spin_on_lock(self, lock):
        spun = 0
        while lock.owner is not None:
            if lock.owner is self.lock_holder():
                raise KernelBug(f"BUG: spinlock recursion on {lock.name} on CPU {self.cpu}")
            spun = self.cpu_relax(lock.name, spun, lock)

    # -- a kernel path stopped at a scheduling point (emulator.explore.point decides) ----------------------

    def preempt_kernel_path(self):
        """The current kernel path is preempted here, as on a PREEMPT kernel
        when its slice ends: it goes behind the tasks of its class queued on
        its CPU, which run first.  Returns False (nothing done) when there are
        none.

        Departure: the preempted path comes back on the CPU it left (no idle
        CPU pulls it meanwhile), as if it ran under migrate_disable(); kernel
        paths of the model may keep a CPU's rq across a preemptible point."""
        t = self.cur
        rq = self.rqs[self.cpu]
        queued = getattr(t.sched_class, "queued_tasks", None)
        if queued is None or not queued(rq):
            return False
        t.sched_class.yield_task(rq, t)
        t.rt_yield = t.sched_class is RtSchedClass
        self.preempted_paths.add(t)
        try:
            self.preempt_schedule()
        finally:
            self.preempted_paths.discard(t)
        return True

    def pause_kernel_path(self, delay, until=None):
        """Let *delay* ns pass with the current kernel path stopped where it is.

        Other CPUs' paths and events run meanwhile.  The paused path holds off
        its own CPU's interrupts; while it holds a spinlock, every CPU's
        interrupts wait too (a handler cannot wait on the lock: it runs to
        completion on the event loop).  With *until* (an object), the path
        may also be resumed sooner: by wake_paused_path(until)."""
        t = self.cur
        cpu = self.cpu
        rq = self.rqs[cpu]
        holds = bool(t.held_locks)
        rq.irqs_disabled += 1
        if holds:
            self._lock_holder_away(cpu)
        entry = self.engine.at(self.engine.now + delay, self._resume_paused, (t, cpu))
        if until is not None:
            self.paused_until[id(until)] = (entry, until, cpu)
        self.engine.loop.switch()
        if until is not None and self.paused_until.get(id(until), (None,))[0] is entry:
            del self.paused_until[id(until)]       # resumed at its bound, not woken
        if holds:
            self._lock_holder_back(cpu)
        rq.irqs_disabled -= 1           # not local_irq_restore(): that is a point
        if not rq.irqs_disabled and rq.deferred_irqs:
            self.replay_deferred_irqs(rq)

    def _lock_holder_away(self, cpu):
        """A spinlock holder on *cpu* stops: interrupts for the other CPUs are
        held off (irq_deferred()) until _lock_holder_back()."""
        self.suspended_holders[cpu] += 1
        self.paused_lock_holders += 1

    def _lock_holder_back(self, cpu):
        self.suspended_holders[cpu] -= 1
        self.paused_lock_holders -= 1
        if not self.paused_lock_holders and self.held_off_irqs:
            pending, self.held_off_irqs = self.held_off_irqs, []
            for fn, arg in pending:
                self.engine.at(self.engine.now, fn, arg)

    def wake_paused_path(self, obj):
        """The path paused until *obj* (pause_kernel_path()) resumes now, as
        soon as the running path lets it: its CPU, if another.  Returns
        that CPU, or None when no path waits on *obj*."""
        w = self.paused_until.pop(id(obj), None)
        if w is None:
            return None
        entry, _, cpu = w
        arg = entry[4]
        self.engine.cancel(entry)
        self.engine.at(self.engine.now, self._resume_paused, arg)
        return cpu

    def _resume_paused(self, arg):
        t, cpu = arg
        self.cur = t
        self.cpu = cpu
        self.in_irq = False
        t.stack.switch()

    # -- idle -------------------------------------------------------------------------------------------------

    def idle_entry(self, _why=None):
        rq = self.rqs[self.cpu]
        self.do_idle(rq)

    def do_idle(self, rq):
        idle = rq.idle
        loop = self.engine.loop
        while True:
            while not idle.need_resched:
                if not rq.online:
                    # Dead (kernel/cpu.py); returns once brought up again.
                    self.cpuhp_report_idle_dead(rq)
                loop.switch()          # the CPU sleeps until an interrupt
            self._schedule(True)

    def newidle_balance(self, this_rq):
        """Pull one queued task from a busy CPU onto this idle one.

        Model: look at the most loaded CPUs first (level masks), up to 8
        candidates per level, for a queued task allowed here.  A CPU outside
        the scheduler domains (isolcpus=) neither pulls nor is pulled from."""
        this_cpu = this_rq.cpu
        masks = self.load_masks
        if len(masks) <= 2 or self.isolated_mask >> this_cpu & 1:
            return None                 # no CPU has a task queued behind its current one
        if not self.active_mask >> this_cpu & 1:
            return None                 # going down (balance_push()) or down
        pick = self.chooser.pick_bit
        others = ~(1 << this_cpu) & ~self.isolated_mask
        for level in range(len(masks) - 1, 1, -1):
            cand = masks[level] & others
            tries = 0
            while cand and tries < 8:
                cpu = pick(cand, self.nr_cpu_ids)
                cand &= ~(1 << cpu)
                tries += 1
                src = self.rqs[cpu]
                for p in self.queued_tasks(src):
                    # can_migrate_task(): allowed here, and not still on its CPU
                    # (a task switching out is queued before it is off the CPU).
                    # A kernel path preempted by preempt_kernel_path() stays on
                    # its CPU, as under migrate_disable() (see there).
                    if (p.cpus_mask >> this_cpu) & 1 and p.sched_class is not StopSchedClass \
                            and not p.on_cpu and p not in self.preempted_paths \
                            and not p.migration_disabled:
                        return self.detach_attach(src, this_rq, p)
        return None

    def queued_tasks(self, rq):
        return RtSchedClass.queued_tasks(rq) + FairSchedClass.queued_tasks(rq)

    def detach_attach(self, src, dst, p):
        """Move queued *p* from *src* to *dst* (dst locked by the caller) and return it picked."""
        raw_spin_lock(src.lock)
        # can_migrate_task() holds the busiest rq's lock: look again under it.
        if p.cpu != src.cpu or p.on_rq != TASK_ON_RQ_QUEUED or p.on_cpu or src.curr is p:
            raw_spin_unlock(src.lock)
            return self._pick_task(dst)
        self.deactivate_task(src, p, 0)
        self.set_task_cpu(p, dst.cpu)
        raw_spin_unlock(src.lock)
        self.activate_task(dst, p, 0)
        return self._pick_task(dst)

    # -- the tick -------------------------------------------------------------------------------------------------

    def tick_nohz_restart(self, rq):
        tick = self.tick_nsec
        when = (self.engine.now // tick + 1) * tick
        rq.tick_entry = self.engine.at(when, self.tick_sched_timer, rq)

    def tick_sched_timer(self, rq):
        if self.irq_deferred(rq, self.tick_sched_timer, rq):
            return
        rq.tick_entry = None
        self._irq_enter(rq, "local_timer")
        self.scheduler_tick(rq)
        self.watchdog_timer_fn(rq)              # (kernel/watchdog.py: its own hrtimer)
        if rq.curr is not rq.idle and rq.tick_entry is None and \
                not (self.nohz_full_mask >> rq.cpu & 1 and self.sched_can_stop_tick(rq)):
            # (tick_nohz_full: the tick of a CPU running one task stops here.)
            rq.tick_entry = self.engine.at(self.engine.now + self.tick_nsec, self.tick_sched_timer, rq)
        self.irq_exit(rq)

    def scheduler_tick(self, rq):
        raw_spin_lock(rq.lock)
        now = rq.clock = self.engine.now
        curr = rq.curr
        cls = curr.sched_class
        if cls is not StopSchedClass and cls is not IdleSchedClass:
            cls.update_curr(rq, curr, now)
            cls.task_tick(self, rq, curr)
        self.mm_cid.task_tick_mm_cid(rq, curr)
        wake_mm_gen = self.lazy_tlb.mm_gen_tick(rq.cpu, rq)
        raw_spin_unlock(rq.lock)
        if wake_mm_gen:
            self.lazy_tlb.mm_gen_wake()
        if rq.nr_running >= 2 and self.load_masks[0]:
            self.nohz_balancer_kick(rq)

    def nohz_balancer_kick(self, rq):
        """A busy CPU asks an idle CPU that can take one of its queued tasks to pull."""
        idle = self.load_masks[0] & ~self.isolated_mask & self.active_mask
        if self.isolated_mask >> rq.cpu & 1:
            return
        for p in self.queued_tasks(rq):
            cand = idle & p.cpus_mask
            if cand:
                target = self.rqs[self.chooser.pick_bit(cand, self.nr_cpu_ids)]
                self.resched_curr(target)
                return

    # -- migrate_disable() ---------------------------------------------------------------------------------

    def migrate_disable(self):
        """The task stays on its CPU (no load balancer takes it) but stays
        preemptible.  Departure: set_cpus_allowed_ptr() does not wait for
        migrate_enable() as affine_move_task() would."""
        self.cur.migration_disabled += 1

    def migrate_enable(self):
        self.cur.migration_disabled -= 1

    # -- yield, affinity, policy ------------------------------------------------------------------------------------

    def do_sched_yield(self):
        p = self.cur
        if p.kdebt:
            # The kernel time owed is spent before the task gives its CPU
            # away, as before it blocks (_schedule()): a loop of yields takes
            # time.
            self.cpu_run(0, False)
        rq = self.rqs[p.cpu]
        raw_spin_lock(rq.lock)
        if p.sched_class is FairSchedClass:
            FairSchedClass.yield_task(rq, p)
        elif p.sched_class is RtSchedClass:
            p.rt_head = False
            p.rt_yield = True
        raw_spin_unlock(rq.lock)
        self._schedule(True)
        return 0

    def do_set_cpus_allowed(self, p, new_mask):
        """__do_set_cpus_allowed(): the new mask takes effect (caller holds the rq lock)."""
        p.cpus_mask = new_mask
        p.nr_cpus_allowed = new_mask.bit_count()
        if p.mm is not None:
            self.mm_cid.mm_set_cpus_allowed(p.mm, new_mask)

    def set_cpus_allowed_ptr(self, p, new_mask):
        """__set_cpus_allowed_ptr(): change *p*'s affinity and move it if its
        CPU is no longer allowed (affine_move_task())."""
        if p.flags & PF_KTHREAD and p.flags & 0x04000000:  # PF_NO_SETAFFINITY
            return -22
        # Kernel threads are allowed on online && !active CPUs.
        valid = new_mask & (self.online_mask if p.flags & PF_KTHREAD else self.active_mask)
        if not valid:
            return -22  # EINVAL
        rq, flags = self.task_rq_lock(p)
        self.do_set_cpus_allowed(p, new_mask)
        if (valid >> p.cpu) & 1 or p.state == TASK_NEW:
            self.task_rq_unlock(rq, p, flags)
            return 0
        dest_cpu = self.chooser.pick_bit(valid, self.nr_cpu_ids)
        if rq.curr is p or p.on_cpu:
            # Running: the stopper must push it off its CPU; wait for it.
            self.task_rq_unlock(rq, p, flags)
            self.stop_one_cpu(p.cpu, self.migration_cpu_stop, (p, dest_cpu))
            return 0
        if p.on_rq:
            rq = self.move_queued_task(rq, p, dest_cpu)
            self.task_rq_unlock(rq, p, flags)
            return 0
        # Sleeping: it will be placed on an allowed CPU when it wakes.
        p.wake_cpu = dest_cpu
        self.task_rq_unlock(rq, p, flags)
        return 0

    def __task_rq_lock(self, p):
        """Lock the rq *p* is on, p->pi_lock held: looking again if it moved,
        and waiting while it is between two runqueues (move_queued_task()
        and the load balancer drop the old rq's lock before they take the
        new one's: "If we observe the new CPU in task_rq_lock(), the address
        dependency headed by '[L] rq = task_rq()' and the acquire will pair
        with the WMB to ensure we then also see migrating")."""
        spun = 0
        while True:
            rq = self.rqs[p.cpu]
            raw_spin_lock(rq.lock)
            if rq is self.rqs[p.cpu] and p.on_rq != TASK_ON_RQ_MIGRATING:
                return rq
            raw_spin_unlock(rq.lock)
            while p.on_rq == TASK_ON_RQ_MIGRATING:
                spun = self.cpu_relax("task_on_rq_migrating()", spun)

    def task_rq_lock(self, p):
        """Lock p->pi_lock (irqsave), then the rq p is on (__task_rq_lock());
        returns the rq and the flags to restore."""
        flags = self.local_irq_save()
        raw_spin_lock(p.pi_lock)
        return self.__task_rq_lock(p), flags

    def task_rq_unlock(self, rq, p, flags):
        raw_spin_unlock(rq.lock)
        raw_spin_unlock(p.pi_lock)
        self.local_irq_restore(flags)

    def migration_cpu_stop(self, arg):
        """Runs on the stopper of the task's old CPU, with p->pi_lock held
        as the kernel's does: "If task_rq(p) != rq, it cannot be migrated
        here, because we're holding rq->lock, if p->on_rq == 0 it cannot get
        enqueued because we're holding p->pi_lock."  Held across the move,
        it keeps a waker and task_rq_lock() of *p* out of the window where
        move_queued_task() holds neither runqueue's lock."""
        p, dest_cpu = arg
        rq = self.rqs[self.cpu]
        flags = self.local_irq_save()
        raw_spin_lock(p.pi_lock)
        raw_spin_lock(rq.lock)
        if p.cpu == rq.cpu and p.on_rq == TASK_ON_RQ_QUEUED and not (p.cpus_mask >> rq.cpu) & 1:
            rq = self.move_queued_task(rq, p, dest_cpu)
        elif not p.on_rq:
            p.wake_cpu = dest_cpu
        raw_spin_unlock(rq.lock)
        raw_spin_unlock(p.pi_lock)
        self.local_irq_restore(flags)

    def sched_setscheduler(self, p, policy, priority=0):
        """Set *p*'s policy: SCHED_OTHER, or SCHED_FIFO/SCHED_RR with 1..99."""
        if policy in (SCHED_FIFO, SCHED_RR):
            if not 1 <= priority <= 99:
                return -22
            cls, prio = RtSchedClass, MAX_RT_PRIO - 1 - priority
        elif policy == SCHED_NORMAL:
            if priority != 0:
                return -22
            cls, prio = FairSchedClass, DEFAULT_PRIO
        else:
            return -22
        if p.on_rq and p.sched_class is not StopSchedClass:
            rq, flags = self.task_rq_lock(p)
            running = rq.curr is p
            if not running:
                self.dequeue_task(rq, p, 0)
            p.policy, p.rt_priority, p.prio, p.sched_class = policy, priority, prio, cls
            if not running:
                self.enqueue_task(rq, p, 0)
                self.wakeup_preempt(rq, p)
            else:
                self.resched_curr(rq)
            self.task_rq_unlock(rq, p, flags)
        else:
            p.policy, p.rt_priority, p.prio, p.sched_class = policy, priority, prio, cls
        return 0

    # -- reports --------------------------------------------------------------------------------------------------------

    def cpu_states(self):
        """One line per CPU that is busy or has something queued."""
        lines = []
        for rq in self.rqs:
            if not rq.online:
                continue
            curr = rq.curr
            queued = self.queued_tasks(rq)
            if curr is rq.idle and not queued and not rq.lock.owner:
                continue
            held = ",".join(l.name for l in curr.held_locks) if curr.held_locks else "-"
            lines.append(f"  CPU {rq.cpu:3d}: curr={curr!r} nr_running={rq.nr_running} "
                         f"queued={queued} locks held={held} {self.mm_cid.cpu_state(rq)}")
        return "\n".join(lines) or "  every CPU idle"

    def hard_lockup(self, what, spinning_on=None, lock=None):
        """The watchdog's report of a spin (*what*: what it says the CPU
        does): who holds the *lock* it spins on and since when, each CPU's
        state, and the cid bitmap of every mm a CPU may be spinning for (full,
        or a set bit without an owner), with the owner of each bit and, for an
        orphan, the events that lost it (emulator/observe/cid_watch.py; the
        minimal trace keeps them).  Its ``spinning_on`` field is the lock's
        class, as lockdep names it, or *spinning_on*."""
        from ...checks.lockdep import lock_class
        from ...errors import HardLockup
        from ...observe.cid_watch import cid_reports, mms_short_of_cids
        from ..locking import raw_spinlock_t, spinlock_holder
        holder = ""
        if lock is not None:
            spinning_on = lock_class(lock.name)
            if lock.owner is not None:
                holder = (spinlock_holder(lock, self.engine.now) if isinstance(lock, raw_spinlock_t)
                          else f"{lock.name} held by {lock.owner!r}") + "\n"
        return HardLockup(f"watchdog: hard LOCKUP on CPU {self.cpu}: {self.cur!r} {what}",
                          holder + "CPU states:\n" + self.cpu_states()
                          + cid_reports(self, mms_short_of_cids(self)), spinning_on=spinning_on)
