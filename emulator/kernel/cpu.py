"""kernel/cpu.c: CPU hotplug, as far as the model needs it.

A CPU goes down and comes up through the hotplug state machine, one state at
a time, each state with an optional startup (on the way up) and teardown (on
the way down) callback.  Where a callback runs depends on its section, as in
the kernel (include/linux/cpuhotplug.h):

    PREPARE   CPUHP_OFFLINE < state < CPUHP_BRINGUP_CPU: on the control CPU
              (the "BP"): startup before the CPU boots, teardown after it is
              dead (page_alloc_cpu_dead() is one of these)
    BRINGUP   bringup_cpu() boots it; its teardown, finish_cpu(), drops the
              dead CPU's idle task's lazy mm
    STARTING  CPUHP_AP_OFFLINE < state < CPUHP_AP_ONLINE: on the CPU itself,
              interrupts off: startup in notify_cpu_starting() while it boots,
              teardown in take_cpu_down() under stop_machine, after
              __cpu_disable() has taken it out of cpu_online_mask
    TEARDOWN  takedown_cpu(): on the control CPU, stops the CPU
    ONLINE    state > CPUHP_AP_ONLINE_IDLE: on the CPU's hotplug thread
              (cpuhp/N): sched_cpu_activate()/sched_cpu_deactivate(),
              workqueue_online_cpu()/workqueue_offline_cpu(),
              sched_cpu_wait_empty(), dynamic states

``cpu_down(cpu)`` and ``cpu_up(cpu)`` are what a write of 0 or 1 to
/sys/devices/system/cpu/cpuN/online calls (cpu_device_down()/cpu_device_up(),
``sys_cpu_online_write()`` below); they sleep, so they run in task context.
``cpuhp_setup_state_nocalls(state, name, startup, teardown)`` registers a
state's callbacks, ``fn(cpu) -> 0 or -errno``; a dynamic state
(CPUHP_AP_ONLINE_DYN, CPUHP_BP_PREPARE_DYN) gets the first free slot, which
it returns.

Going down (_cpu_down(), on a kworker of another online CPU, as
cpu_down_maps_locked() arranges with work_on_cpu()): the ONLINE teardowns on
the CPU's hotplug thread (sched_cpu_deactivate() clears it from
cpu_active_mask, workqueue_offline_cpu() unbinds its pool's workers,
sched_cpu_wait_empty() pushes its tasks away and, where the lazy_tlb variant
says so, switches the hotplug thread off its lazy mm); takedown_cpu():
stop_machine runs take_cpu_down() on the CPU (__cpu_disable(): out of
cpu_online_mask; the STARTING teardowns: hrtimers migrated, pending IPIs
flushed); the stopper sleeps, the idle task runs, sees the CPU offline and
reports itself dead (cpuhp_report_idle_dead(), idle_task_exit() where the
variant still has it); then, on the control CPU, finish_cpu() and the
PREPARE teardowns.  Coming up is the reverse: PREPARE startups, the CPU's
idle task starts (notify_cpu_starting(), cpu_online_mask, its hotplug thread
runs the ONLINE startups up to sched_cpu_activate()).

Departures: stop_machine() stops only the outgoing CPU (the others keep
running instead of spinning with interrupts off); the push of tasks off the
CPU is one migrate_tasks() pass in sched_cpu_wait_empty() (pre-5.11
sched_cpu_dying() style) instead of balance_push() on every schedule, and a
task with migration disabled is moved too; the arch's boot and death of the
CPU (__cpu_up(), __cpu_die()) are a latency (``cpu_up_ns``), with no
CPU0-cannot-go (x86 has no online file for CPU 0 since v6.3; arm64 and
powerpc let any CPU go but the last); cpus_read_lock() is not modelled
(nothing in the model takes it).

Checked against the kernel (kernel/cpu.c, kernel/sched/core.c and
include/linux/cpuhotplug.h as quoted in lore threads and mirrors of 6.x;
the index has no current kernel/cpu.c of its own):

- take_cpu_down(): __cpu_disable(), then the DYING callbacks down to
  max(st->target, CPUHP_AP_OFFLINE), which must not fail
  (cpuhp_invoke_callback_range_nofail()), then stop_machine_park(); on
  interrupts off under stop_machine.  tick_handover_do_timer() and
  tick_offline_cpu() (since 6.9 the CPUHP_AP_TICK_DYING state) are not
  modelled;
- takedown_cpu(): kthread_park() of the hotplug thread (not modelled: it is
  left asleep), stop_machine_cpuslocked(take_cpu_down) on the CPU,
  BUG_ON(cpu_online(cpu)), wait_for_ap_thread(st, false),
  BUG_ON(st->state != CPUHP_AP_IDLE_DEAD), then __cpu_die();
- idle_task_exit() (since bf2c59fce4074, 5.8): BUG_ON(cpu_online()), then
  switch_mm(mm, &init_mm, current) if the idle task's active_mm is not
  init_mm, active_mm and its reference left for finish_cpu();
- finish_cpu(), CPUHP_BRINGUP_CPU's teardown on the control CPU: if the
  idle task's active_mm is not init_mm it becomes init_mm, and the old one
  is dropped with mmdrop_lazy_tlb() (init_mm included: the boot grab);
- the states' order (only those the model has): CPUHP_CREATE_THREADS <
  CPUHP_PAGE_ALLOC < CPUHP_WORKQUEUE_PREP < CPUHP_TIMERS_PREPARE <
  CPUHP_BP_PREPARE_DYN < CPUHP_BRINGUP_CPU < CPUHP_AP_IDLE_DEAD <
  CPUHP_AP_OFFLINE < CPUHP_AP_SCHED_STARTING < CPUHP_AP_SMPCFD_DYING <
  CPUHP_AP_HRTIMERS_DYING < CPUHP_AP_ONLINE < CPUHP_TEARDOWN_CPU <
  CPUHP_AP_ONLINE_IDLE < CPUHP_AP_SCHED_WAIT_EMPTY <
  CPUHP_AP_WORKQUEUE_ONLINE < CPUHP_AP_ONLINE_DYN < CPUHP_AP_ACTIVE <
  CPUHP_ONLINE (the model had CPUHP_WORKQUEUE_PREP before CPUHP_PAGE_ALLOC
  until this check).  6.5's CPUHP_BP_KICK_AP (the parallel bring-up) is
  not modelled.

Not confirmed: the finish_cpu() and sched_force_init_mm() of the hotplug
exit race fix (linux-next a08311b423ad) are written from the posted patch's
description (the idle task's active_mm is init_mm by then, finish_cpu()
drops that reference), not from its diff; the arches' __cpu_disable()
beyond powerpc radix's cleanup_cpu_mmu_context().  Confirmed:
cpuhp_report_idle_dead() sets CPUHP_AP_IDLE_DEAD and completes the control
CPU's wait by smp_call_function_single() to cpumask_first(cpu_online_mask).
Departure: the kernel calls idle_task_exit() from arch_cpu_idle_dead()
after cpuhp_report_idle_dead() has sent that IPI; the model switches first
and sends it after (the IPI takes ``ipi_latency_ns`` either way, and the
dead CPU runs nothing in between, so no other CPU can tell).
"""

from .locking import mutex, mutex_lock, mutex_unlock, raw_spin_lock, raw_spin_unlock
from .task import PF_NO_SETAFFINITY, TASK_INTERRUPTIBLE
from .wait import completion, wait_queue_head_t
from ..errors import KernelBug

EINVAL = 22
EBUSY = 16
ENOSPC = 28

# include/linux/cpuhotplug.h: the states the model has, in the kernel's order
# (the numbers are the model's; a caller uses the names).
CPUHP_INVALID = -1
CPUHP_OFFLINE = 0
CPUHP_CREATE_THREADS = 1
CPUHP_PAGE_ALLOC = 2
CPUHP_WORKQUEUE_PREP = 3
CPUHP_TIMERS_PREPARE = 4
CPUHP_BP_PREPARE_DYN = 5
CPUHP_BP_PREPARE_DYN_END = CPUHP_BP_PREPARE_DYN + 20
CPUHP_BRINGUP_CPU = 26
CPUHP_AP_IDLE_DEAD = 27
CPUHP_AP_OFFLINE = 28
CPUHP_AP_SCHED_STARTING = 29
CPUHP_AP_SMPCFD_DYING = 30
CPUHP_AP_HRTIMERS_DYING = 31
CPUHP_AP_ONLINE = 32
CPUHP_TEARDOWN_CPU = 33
CPUHP_AP_ONLINE_IDLE = 34
CPUHP_AP_SCHED_WAIT_EMPTY = 35
CPUHP_AP_WORKQUEUE_ONLINE = 36
CPUHP_AP_ONLINE_DYN = 37
CPUHP_AP_ONLINE_DYN_END = CPUHP_AP_ONLINE_DYN + 40
CPUHP_AP_ACTIVE = 78
CPUHP_ONLINE = 79


class cpuhp_step:
    __slots__ = ("name", "startup", "teardown")

    def __init__(self, name, startup, teardown):
        self.name, self.startup, self.teardown = name, startup, teardown


class cpuhp_cpu_state:
    """Per CPU: where it is in the state machine, its hotplug thread and the
    completions the control CPU waits on."""

    def __init__(self, state):
        self.state = state
        self.target = state
        self.thread = None            # cpuhp/N, made on first use
        self.work = None              # (bringup, target) for the hotplug thread
        self.result = 0
        self.done_up = completion("cpuhp done_up")
        self.done_down = completion("cpuhp done_down")
        self.wait = wait_queue_head_t("cpuhp thread")
        self.booting = False          # the AP has been told to start (__cpu_up())


def _section(state):
    if state <= CPUHP_BP_PREPARE_DYN_END:
        return "prepare"
    if CPUHP_AP_OFFLINE < state < CPUHP_AP_ONLINE:
        return "starting"
    if state > CPUHP_AP_ONLINE_IDLE:
        return "online"
    return "bp"        # CPUHP_BRINGUP_CPU, CPUHP_TEARDOWN_CPU: the control CPU's own


class Cpu:
    """Mixin."""

    def cpuhp_init(self):
        """The built-in states (cpuhp_hp_states[]); before the variants, which
        may register their own."""
        self.cpu_add_remove_lock = mutex("cpu_add_remove_lock")
        self.cpu_hotplug_lock = mutex("cpu_hotplug_lock")      # a percpu rwsem: writers only
        self.cpu_hotplug_disabled = 0
        self.dying_mask = 0                                     # cpu_dying_mask
        self.cpuhp_steps = {
            CPUHP_BRINGUP_CPU: cpuhp_step("cpu:bringup", self.bringup_cpu, self.finish_cpu),
            CPUHP_AP_SCHED_STARTING: cpuhp_step("sched:starting", self.sched_cpu_starting,
                                                self.sched_cpu_dying),
            CPUHP_AP_SMPCFD_DYING: cpuhp_step("smpcfd:dying", None, self.smpcfd_dying_cpu),
            CPUHP_AP_HRTIMERS_DYING: cpuhp_step("hrtimers:dying", None, self.hrtimers_cpu_dying),
            CPUHP_TEARDOWN_CPU: cpuhp_step("cpu:teardown", None, self.takedown_cpu),
            CPUHP_AP_SCHED_WAIT_EMPTY: cpuhp_step("sched:waitempty", None,
                                                  self.sched_cpu_wait_empty),
            CPUHP_AP_WORKQUEUE_ONLINE: cpuhp_step("workqueue:online", self.workqueue_online_cpu,
                                                  self.workqueue_offline_cpu),
            CPUHP_AP_ACTIVE: cpuhp_step("sched:active", self.sched_cpu_activate,
                                        self.sched_cpu_deactivate),
        }
        self.cpuhp_states = None         # per CPU, made with the runqueues (cpuhp_state_of())
        self.hotplug_events = []         # (virtual time, cpu, "down"/"up", result): for tests

    def cpuhp_state_of(self, cpu):
        if self.cpuhp_states is None:
            self.cpuhp_states = [cpuhp_cpu_state(CPUHP_ONLINE if self.online_mask >> c & 1
                                                 else CPUHP_OFFLINE)
                                 for c in range(self.nr_cpu_ids)]
        return self.cpuhp_states[cpu]

    # -- registration ------------------------------------------------------------------------

    def cpuhp_setup_state_nocalls(self, state, name, startup, teardown):
        """Install *startup*/*teardown* (``fn(cpu) -> 0 or -errno``, None for
        none) for *state* without calling them for the CPUs already past it.
        Returns 0, or for a dynamic state the state allocated; -EBUSY if a
        fixed state is taken, -ENOSPC if no dynamic slot is free."""
        if state in (CPUHP_AP_ONLINE_DYN, CPUHP_BP_PREPARE_DYN):
            end = CPUHP_AP_ONLINE_DYN_END if state == CPUHP_AP_ONLINE_DYN else \
                CPUHP_BP_PREPARE_DYN_END
            for s in range(state, end):
                if s not in self.cpuhp_steps:
                    self.cpuhp_steps[s] = cpuhp_step(name, startup, teardown)
                    return s
            return -ENOSPC
        if not CPUHP_OFFLINE < state < CPUHP_ONLINE:
            return -EINVAL
        if state in self.cpuhp_steps:
            return -EBUSY
        self.cpuhp_steps[state] = cpuhp_step(name, startup, teardown)
        return 0

    # -- the sysfs entry point ----------------------------------------------------------------

    def sys_cpu_online_write(self, cpu, online):
        """write(2) of "0" or "1" to /sys/devices/system/cpu/cpuN/online:
        0 on success (a CPU already in that state included, as
        device_offline()/device_online() return 1 for it), -EBUSY for the last
        online CPU, -ENODEV for a CPU that is not possible."""
        if not 0 <= cpu < self.nr_cpu_ids:
            return -19                   # ENODEV: no cpuN directory
        if online not in (0, 1):
            return -EINVAL
        return self.cpu_device_up(cpu) if online else self.cpu_device_down(cpu)

    def cpu_device_down(self, cpu):
        return self.cpu_down(cpu, CPUHP_OFFLINE)

    def cpu_device_up(self, cpu):
        return self.cpu_up(cpu, CPUHP_ONLINE)

    # -- down ------------------------------------------------------------------------------

    def cpu_down(self, cpu, target=CPUHP_OFFLINE):
        mutex_lock(self.cpu_add_remove_lock)          # cpu_maps_update_begin()
        try:
            return self.cpu_down_maps_locked(cpu, target)
        finally:
            mutex_unlock(self.cpu_add_remove_lock)

    def cpu_down_maps_locked(self, cpu, target):
        if self.cpu_hotplug_disabled:
            return -EBUSY
        # Ensure that the control task does not run on the to be offlined
        # CPU to prevent a deadlock against cfs_b->period_timer.  Also keep
        # at least one housekeeping cpu onlined.
        housekeeping = self.housekeeping_cpumask("domain")
        for other in range(self.nr_cpu_ids):
            if other != cpu and self.online_mask >> other & 1 and housekeeping >> other & 1:
                return self.work_on_cpu(other, lambda _: self._cpu_down(cpu, target), None)
        return -EBUSY

    def _cpu_down(self, cpu, target):
        if self.nr_online == 1:
            return -EBUSY
        if not 0 <= cpu < self.nr_cpu_ids:
            return -EINVAL
        st = self.cpuhp_state_of(cpu)
        if st.state <= target:
            return 0
        mutex_lock(self.cpu_hotplug_lock)                # cpus_write_lock()
        try:
            # The stopper exists before the CPU leaves cpu_active_mask (smpboot
            # made it at boot in the kernel).
            self.cpu_stopper_thread(cpu)
            self.dying_mask |= 1 << cpu                   # cpuhp_set_state(): going down
            st.target = target
            prev_state = st.state
            if st.state > CPUHP_TEARDOWN_CPU:
                ret = self.cpuhp_kick_ap_work(cpu, st, max(CPUHP_TEARDOWN_CPU, target))
                if ret:
                    self._cpuhp_rollback(cpu, st, prev_state)
                    return ret
                if st.state > CPUHP_TEARDOWN_CPU:
                    return 0
            ret = self.cpuhp_down_callbacks(cpu, st, target)
            return ret
        finally:
            self.hotplug_events.append((self.engine.now, cpu, "down", st.state))
            mutex_unlock(self.cpu_hotplug_lock)

    def cpuhp_down_callbacks(self, cpu, st, target):
        """The teardowns the control CPU runs, from st.state down to *target*
        (takedown_cpu() jumps over the STARTING section, which the CPU ran)."""
        while st.state > target:
            state = st.state
            st.state = state - 1        # ahead, as cpuhp_next_state() does
            step = self.cpuhp_steps.get(state)
            if step is not None and step.teardown is not None and _section(state) != "starting":
                # Dead-section teardowns must not fail; takedown_cpu() leaves
                # st.state where the CPU's own teardown left it (AP_IDLE_DEAD).
                step.teardown(cpu)
        return 0

    def cpuhp_kick_ap_work(self, cpu, st, target):
        """Run the ONLINE teardowns (or startups) down (up) to *target* on the
        CPU's hotplug thread and wait for it."""
        return self._cpuhp_thread_request(cpu, st, False, target)

    def _cpuhp_thread_request(self, cpu, st, bringup, target):
        if st.thread is None:
            t = self.kthread_create_on_cpu(self.cpuhp_thread_fun, st, cpu, f"cpuhp/{cpu}",
                                           wake=True)
            t.flags |= PF_NO_SETAFFINITY
            st.thread = t
        done = st.done_up if bringup else st.done_down
        st.work = (bringup, target)
        self.wake_up(st.wait)
        self.wait_for_completion(done)
        return st.result

    def cpuhp_thread_fun(self, st):
        """cpuhp/N: runs the ONLINE section's callbacks of its CPU."""
        me = self.cur
        while True:
            while st.work is None:
                self.wait_event(st.wait, lambda: st.work is not None, TASK_INTERRUPTIBLE)
            bringup, target = st.work
            st.work = None
            cpu = me.cpu
            st.result = 0
            if bringup:
                while st.state < target:
                    state = st.state + 1
                    step = self.cpuhp_steps.get(state)
                    ret = (step.startup(cpu) or 0) if step is not None and step.startup else 0
                    if ret:
                        st.result = ret
                        break
                    st.state = state
                self.complete(st.done_up)
            else:
                while st.state > target:
                    state = st.state
                    step = self.cpuhp_steps.get(state)
                    ret = (step.teardown(cpu) or 0) if step is not None and step.teardown else 0
                    if ret:
                        st.result = ret
                        break
                    st.state = state - 1
                self.complete(st.done_down)

    def _cpuhp_rollback(self, cpu, st, prev_state):
        """An ONLINE teardown failed: bring the states torn down back up."""
        self._cpuhp_thread_request(cpu, st, True, prev_state)
        self.dying_mask &= ~(1 << cpu)

    # -- the built-in callbacks, going down -----------------------------------------------

    def sched_cpu_deactivate(self, cpu):
        """kernel/sched/core.c: no more tasks are placed here."""
        self.active_mask &= ~(1 << cpu)
        return 0

    def sched_cpu_wait_empty(self, cpu):
        """kernel/sched/core.c, on the CPU's hotplug thread: every other task
        goes (balance_hotplug_wait(); model: migrate_tasks() here), then the
        hotplug thread leaves its lazy mm where the variant does it here
        (sched_force_init_mm(), the lazy-TLB hotplug exit race fix)."""
        self.migrate_tasks(self.rqs[cpu])
        self.lazy_tlb.sched_force_init_mm()
        return 0

    def migrate_tasks(self, rq):
        """Move every queued task but the hotplug thread and the stopper off
        *rq* to an active CPU; one allowed nowhere else is widened
        (select_fallback_rq(): "no longer affine to cpuN")."""
        from .sched.core import StopSchedClass
        hotplug_thread = self.cpuhp_state_of(rq.cpu).thread
        for p in list(self.queued_tasks(rq)):
            # The hotplug thread is parked in the kernel (kthread_park());
            # here it is left to go to sleep on its CPU.
            if p is self.cur or p is hotplug_thread or p.sched_class is StopSchedClass \
                    or p.cpu != rq.cpu:
                continue
            dest = p.cpus_mask & self.active_mask
            if not dest:
                self.do_set_cpus_allowed(p, self.possible_mask)
                dest = self.active_mask
            # "Rules for changing task_struct::cpus_mask are holding both
            # pi_lock and rq->lock, such that holding either stabilizes the
            # mask" (migrate_tasks(); __balance_push_cpu_stop() since v5.11):
            # p->pi_lock, held across the move, keeps wakers out of it.
            flags = self.local_irq_save()
            raw_spin_lock(p.pi_lock)
            raw_spin_lock(rq.lock)
            if p.on_rq and p.cpu == rq.cpu and not p.on_cpu:
                new_rq = self.move_queued_task(rq, p, self.chooser.pick_bit(dest, self.nr_cpu_ids))
                raw_spin_unlock(new_rq.lock)
            else:
                raw_spin_unlock(rq.lock)
            raw_spin_unlock(p.pi_lock)
            self.local_irq_restore(flags)

    def workqueue_offline_cpu(self, cpu):
        """kernel/workqueue.c unbind_workers(): the pool is DISSOCIATED, its
        workers may run anywhere and run what is queued to it from there."""
        pool = self.cpu_pools.get(cpu)
        if pool is not None:
            pool.dissociated = True
            for w in pool.workers:
                if w.task is not None and not w.task.exit_state:
                    self.set_cpus_allowed_ptr(w.task, self.possible_mask)
        return 0

    def takedown_cpu(self, cpu):
        """On the control CPU: stop_machine runs take_cpu_down() on *cpu*,
        then wait for its idle task to report it dead."""
        st = self.cpuhp_state_of(cpu)
        self.stop_one_cpu(cpu, self.take_cpu_down, st)
        if self.online_mask >> cpu & 1:
            raise KernelBug(f"BUG: CPU {cpu} still online after take_cpu_down()")
        self.wait_for_completion(st.done_down)       # wait_for_ap_thread(st, false)
        if st.state != CPUHP_AP_IDLE_DEAD:
            raise KernelBug(f"BUG: CPU {cpu} state {st.state} != CPUHP_AP_IDLE_DEAD")
        return 0

    def take_cpu_down(self, st):
        """On the outgoing CPU's stopper, interrupts off: __cpu_disable(), then
        the STARTING section's teardowns (DYING must not fail)."""
        cpu = self.cpu
        flags = self.local_irq_save()
        self._cpu_disable(cpu)
        while st.state > CPUHP_AP_OFFLINE:
            step = self.cpuhp_steps.get(st.state)
            if step is not None and step.teardown is not None and _section(st.state) == "starting":
                step.teardown(cpu)
            st.state -= 1
        self.charge(self.costs.get("cpu_dying_ns", 0))
        self.local_irq_restore(flags)
        # stop_machine_park(): this stopper runs no more work.

    def _cpu_disable(self, cpu):
        """The arch's: the CPU takes no more interrupts and leaves
        cpu_online_mask; powerpc radix also clears it from every mm's
        mm_cpumask (cleanup_cpu_mmu_context(), the mask the lazy shootdown
        IPIs)."""
        self.online_mask &= ~(1 << cpu)
        self.nr_online -= 1
        self.rqs[cpu].online = False
        if self.lazy_tlb.arch == "powerpc-radix":
            for mm in list(self.live_mms.values()):
                mm.cpu_bitmap &= ~(1 << cpu)
        loaded = self.rqs[cpu].loaded_mm
        if loaded is not self.init_mm:
            self.causes.add("lazy mm in use on a CPU past __cpu_disable()")

    def sched_cpu_dying(self, cpu):
        """sched_cpu_wait_empty() pushed the tasks away; one preempted there
        since (by the stopper) goes now, as pre-5.11 sched_cpu_dying()'s
        migrate_tasks() did (the kernel warns "Dying CPU not properly
        vacated" instead: its balance_push() leaves none)."""
        self.migrate_tasks(self.rqs[cpu])
        return 0

    def smpcfd_dying_cpu(self, cpu):
        """The IPIs queued for this CPU before it left cpu_online_mask run now
        (flush_smp_call_function_queue(), irq_work_run())."""
        self._run_pending_irqs(cpu)
        return 0

    def _run_pending_irqs(self, cpu):
        """Called with interrupts off: the IPIs come due now and are taken
        when take_cpu_down() turns interrupts back on, still on this CPU."""
        names = ("_call_function_ipi", "_irq_work_run")
        for entry in list(self.engine._queue):
            fn = entry[3]
            if fn is None or getattr(fn, "__name__", None) not in names:
                continue
            arg = entry[4]
            target = arg[0].cpu if isinstance(arg, tuple) else getattr(arg, "cpu", None)
            if target == cpu and entry[2] > self.engine.now:
                entry[3] = None
                self.engine.at(self.engine.now, fn, arg)

    def hrtimers_cpu_dying(self, cpu):
        """kernel/time/hrtimer.c: the CPU's timers go to the first active
        housekeeping CPU, and fire there."""
        target = self.active_mask & self.housekeeping_cpumask("tick") or self.active_mask
        ncpu = (target & -target).bit_length() - 1
        for entry in self.engine._queue:
            fn = entry[3]
            if getattr(fn, "__name__", None) == "_hrtimer_run" and entry[4].cpu == cpu:
                entry[4].cpu = ncpu
        return 0

    def cpuhp_report_idle_dead(self, rq):
        """The dead CPU's idle task: the control CPU learns of it by an IPI
        (cpuhp_complete_idle_dead()); then arch_cpu_idle_dead(), which does
        not return until the CPU is brought up again (start_secondary())."""
        st = self.cpuhp_state_of(rq.cpu)
        st.state = CPUHP_AP_IDLE_DEAD
        self.lazy_tlb.idle_task_exit()      # before the hotplug exit race fix
        st.booting = False
        first = (self.online_mask & -self.online_mask).bit_length() - 1
        self.engine.at(self.engine.now + self.ipi_latency_ns, self._cpuhp_complete_idle_dead,
                       (self.rqs[first], st))
        while not st.booting:
            self.engine.loop.switch()           # play_dead(): the CPU is off
            self.cur, self.cpu, self.in_irq = rq.idle, rq.cpu, False
        self.start_secondary(rq)

    def _cpuhp_complete_idle_dead(self, arg):
        rq, st = arg
        if self.irq_deferred(rq, self._cpuhp_complete_idle_dead, arg):
            return
        self._irq_enter(rq)
        self.complete(st.done_down)
        self.irq_exit(rq)

    def finish_cpu(self, cpu):
        """On the control CPU, once the CPU is dead: its idle task's lazy mm
        reference goes (the lazy-TLB variant's: the hotplug exit race fix
        changed it)."""
        self.lazy_tlb.finish_cpu(self.rqs[cpu].idle)
        return 0

    # -- up --------------------------------------------------------------------------------

    def cpu_up(self, cpu, target=CPUHP_ONLINE):
        if not 0 <= cpu < self.nr_cpu_ids:
            # "can't online cpu %d because it is not configured as may-hotadd
            # at boot time"
            return -EINVAL
        mutex_lock(self.cpu_add_remove_lock)
        try:
            if self.cpu_hotplug_disabled:
                return -EBUSY
            return self._cpu_up(cpu, target)
        finally:
            mutex_unlock(self.cpu_add_remove_lock)

    def _cpu_up(self, cpu, target):
        st = self.cpuhp_state_of(cpu)
        if st.state >= target:
            return 0
        mutex_lock(self.cpu_hotplug_lock)
        try:
            self.dying_mask &= ~(1 << cpu)
            st.target = target
            while st.state < min(target, CPUHP_BRINGUP_CPU):
                state = st.state + 1
                st.state = state
                step = self.cpuhp_steps.get(state)
                if step is not None and step.startup is not None:
                    ret = step.startup(cpu) or 0
                    if ret:
                        st.state = state - 1
                        self.cpuhp_down_callbacks(cpu, st, CPUHP_OFFLINE)
                        return ret
            # bringup_cpu() returned with the CPU at CPUHP_AP_ONLINE_IDLE.
            if st.state >= CPUHP_AP_ONLINE_IDLE and target > CPUHP_AP_ONLINE_IDLE:
                return self._cpuhp_thread_request(cpu, st, True, target)
            return 0
        finally:
            self.hotplug_events.append((self.engine.now, cpu, "up", st.state))
            mutex_unlock(self.cpu_hotplug_lock)

    def bringup_cpu(self, cpu):
        """__cpu_up(): the CPU starts (after ``cpu_up_ns``) and the control CPU
        waits until it is online and idle."""
        st = self.cpuhp_state_of(cpu)
        self.engine.at(self.engine.now + self.costs.get("cpu_up_ns", 0), self._ap_start, cpu)
        self.wait_for_completion(st.done_up)        # bringup_wait_for_ap_online()
        return 0

    def _ap_start(self, cpu):
        rq = self.rqs[cpu]
        st = self.cpuhp_state_of(cpu)
        st.booting = True
        idle = rq.idle
        if idle.stack is None:
            # Never online before: its idle task starts in start_secondary().
            idle.stack = self.engine.new_stack(self._secondary_entry)
        self._enter(idle)

    def _secondary_entry(self, _arg=None):
        rq = self.rqs[self.cpu]
        self.start_secondary(rq)
        self.do_idle(rq)

    def start_secondary(self, rq):
        """The booting CPU: init_mm as its lazy mm (cpu_init()), the STARTING
        startups with interrupts off (notify_cpu_starting()), into
        cpu_online_mask, then cpuhp_online_idle() tells the control CPU."""
        cpu = rq.cpu
        st = self.cpuhp_state_of(cpu)
        idle = rq.idle
        self.mmgrab_lazy_tlb(self.init_mm)
        idle.active_mm = self.init_mm
        rq.loaded_mm = self.init_mm
        flags = self.local_irq_save()
        st.state = CPUHP_AP_OFFLINE
        while st.state < CPUHP_AP_ONLINE:
            state = st.state + 1
            step = self.cpuhp_steps.get(state)
            if step is not None and step.startup is not None and _section(state) == "starting":
                step.startup(cpu)
            st.state = state
        self.online_mask |= 1 << cpu                  # set_cpu_online(cpu, true)
        self.nr_online += 1
        rq.online = True
        self.local_irq_restore(flags)
        st.state = CPUHP_AP_ONLINE_IDLE                # cpuhp_online_idle()
        self.complete(st.done_up)

    def sched_cpu_starting(self, cpu):
        return 0

    def workqueue_online_cpu(self, cpu):
        """rebind_workers(): the pool's workers are bound to the CPU again."""
        pool = self.cpu_pools.get(cpu)
        if pool is not None and getattr(pool, "dissociated", False):
            pool.dissociated = False
            for w in pool.workers:
                if w.task is not None and not w.task.exit_state:
                    self.set_cpus_allowed_ptr(w.task, 1 << cpu)
        return 0

    def sched_cpu_activate(self, cpu):
        """The CPU takes tasks again: cpu_active_mask, and the load masks'
        idle level (its runqueue is empty)."""
        rq = self.rqs[cpu]
        self.active_mask |= 1 << cpu
        bit = 1 << cpu
        masks = self.load_masks
        for level in range(len(masks)):
            masks[level] &= ~bit
        while len(masks) <= rq.nr_running:
            masks.append(0)
        masks[rq.nr_running] |= bit
        return 0


