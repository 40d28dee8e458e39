"""kernel/sched/membarrier.c and include/uapi/linux/membarrier.h.

Checked against kernel/sched/membarrier.c as of v6.19 (the commands,
MEMBARRIER_CMD_BITMASK, the per-command checks, sync_runqueues_membarrier_state(),
membarrier_get_registrations()) and the MEMBARRIER_STATE_* / MEMBARRIER_FLAG_*
enums of include/linux/sched/mm.h.  GET_REGISTRATIONS is v6.3's
(every modelled kernel has it); MEMBARRIER_CMD_FLAG_CPU v5.10's.

The commands the rseq selftests and glibc use: QUERY, the private expedited
barrier with and without _RSEQ (whose IPI makes the running thread abort its
critical section, ipi_rseq() -> rseq_preempt()), their registrations, the
global expedited barrier and its registration, and GET_REGISTRATIONS (v6.3).
Order of checks and error returns as in sys_membarrier() and
membarrier_private_expedited(): bad flags (any flag but
MEMBARRIER_CMD_FLAG_CPU with PRIVATE_EXPEDITED_RSEQ) or an unknown command
-EINVAL, an unregistered private command -EPERM (never ENXIO: a target CPU
that is offline, out of range or runs another mm is skipped and 0 returned),
a single-threaded mm or a single online CPU returns at once (not for
SYNC_CORE), and with nohz_full CPUs MEMBARRIER_CMD_GLOBAL is -EINVAL and
left out of QUERY's answer (tick_nohz_full_enabled()).  Registering any
private command sets MEMBARRIER_STATE_PRIVATE_EXPEDITED too (set_state
starts from it), so GET_REGISTRATIONS after registering only _RSEQ answers
REGISTER_PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED_RSEQ, as the kernel
does (its states[] pair each bit with its _READY bit).

The registration state lives in ``mm.membarrier_state`` (absent is 0): a fork
copies it with the mm (dup_mm() copies scalar fields), execve() starts from a
new mm, which has none (membarrier_exec_mmap()).

Departures: the barriers themselves are no-ops in a sequentially consistent
model, so only the IPIs and their rseq effect are modelled; the runqueue's
copy of the state (rq->membarrier_state, membarrier_switch_mm()) is read
from the current task's mm instead; membarrier_ipi_mutex and
cpus_read_lock() are not taken; MEMBARRIER_CMD_GLOBAL (synchronize_rcu())
returns at once; SYNC_CORE is accepted (x86 has
CONFIG_ARCH_HAS_MEMBARRIER_SYNC_CORE) and its IPI is a plain one;
CONFIG_RSEQ is on; -ENOMEM (zalloc_cpumask_var()) cannot happen.
"""

MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL = 1 << 0
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2
MEMBARRIER_CMD_PRIVATE_EXPEDITED = 1 << 3
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 1 << 4
MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 5
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 6
MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ = 1 << 7
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ = 1 << 8
MEMBARRIER_CMD_GET_REGISTRATIONS = 1 << 9
MEMBARRIER_CMD_SHARED = MEMBARRIER_CMD_GLOBAL

MEMBARRIER_CMD_FLAG_CPU = 1 << 0

# include/linux/sched/mm.h
MEMBARRIER_STATE_PRIVATE_EXPEDITED_READY = 1 << 0
MEMBARRIER_STATE_PRIVATE_EXPEDITED = 1 << 1
MEMBARRIER_STATE_GLOBAL_EXPEDITED_READY = 1 << 2
MEMBARRIER_STATE_GLOBAL_EXPEDITED = 1 << 3
MEMBARRIER_STATE_PRIVATE_EXPEDITED_SYNC_CORE_READY = 1 << 4
MEMBARRIER_STATE_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 5
MEMBARRIER_STATE_PRIVATE_EXPEDITED_RSEQ_READY = 1 << 6
MEMBARRIER_STATE_PRIVATE_EXPEDITED_RSEQ = 1 << 7

MEMBARRIER_FLAG_SYNC_CORE = 1 << 0
MEMBARRIER_FLAG_RSEQ = 1 << 1

MEMBARRIER_CMD_BITMASK = (
    MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_GLOBAL_EXPEDITED
    | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED | MEMBARRIER_CMD_PRIVATE_EXPEDITED
    | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED | MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE
    | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
    | MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ
    | MEMBARRIER_CMD_GET_REGISTRATIONS)

EINVAL = 22
EPERM = 1


def membarrier_state(mm):
    return getattr(mm, "membarrier_state", 0)


class Membarrier:
    """Mixin."""

    def sys_membarrier(self, cmd, flags, cpu_id):
        if cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ:
            if flags and flags != MEMBARRIER_CMD_FLAG_CPU:
                return -EINVAL
        elif flags:
            return -EINVAL
        if not flags & MEMBARRIER_CMD_FLAG_CPU:
            cpu_id = -1
        if cmd == MEMBARRIER_CMD_QUERY:
            cmd_mask = MEMBARRIER_CMD_BITMASK
            if self.tick_nohz_full_enabled():
                cmd_mask &= ~MEMBARRIER_CMD_GLOBAL
            return cmd_mask
        if cmd == MEMBARRIER_CMD_GLOBAL:
            # MEMBARRIER_CMD_GLOBAL is not compatible with nohz_full.
            if self.tick_nohz_full_enabled():
                return -EINVAL
            return 0                            # synchronize_rcu(): not modelled
        if cmd == MEMBARRIER_CMD_GLOBAL_EXPEDITED:
            return self.membarrier_global_expedited()
        if cmd == MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED:
            return self.membarrier_register_global_expedited()
        if cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED:
            return self.membarrier_private_expedited(0, cpu_id)
        if cmd == MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED:
            return self.membarrier_register_private_expedited(0)
        if cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE:
            return self.membarrier_private_expedited(MEMBARRIER_FLAG_SYNC_CORE, cpu_id)
        if cmd == MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE:
            return self.membarrier_register_private_expedited(MEMBARRIER_FLAG_SYNC_CORE)
        if cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ:
            return self.membarrier_private_expedited(MEMBARRIER_FLAG_RSEQ, cpu_id)
        if cmd == MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ:
            return self.membarrier_register_private_expedited(MEMBARRIER_FLAG_RSEQ)
        if cmd == MEMBARRIER_CMD_GET_REGISTRATIONS:
            return self.membarrier_get_registrations()
        return -EINVAL

    # -- IPI functions (hard interrupt context on the target CPU) ------------------------------

    def ipi_mb(self, _info):
        pass                                    # smp_mb(): nothing to model

    ipi_sync_core = ipi_mb

    def ipi_rseq(self, _info):
        # Ensure that all stores done by the calling thread are visible to
        # the current task before the current task resumes (smp_mb()), then
        # restart its critical section, if any, on its way back to user.
        self.rseq_preempt(self.cur)

    # -- the commands ---------------------------------------------------------------------------

    def membarrier_global_expedited(self):
        if self.nr_online == 1:
            return 0
        mask = 0
        this = self.cpu
        for rq in self.rqs:
            if not rq.online or rq.cpu == this:
                continue
            p = rq.curr
            # Skip the CPU if it runs a kernel thread which is not using a
            # task mm.
            if p.mm is None:
                continue
            if membarrier_state(p.mm) & MEMBARRIER_STATE_GLOBAL_EXPEDITED:
                mask |= 1 << rq.cpu
        self.smp_call_function_many(mask, self.ipi_mb, None, True)
        return 0

    def membarrier_private_expedited(self, flags, cpu_id):
        mm = self.cur.mm
        state = membarrier_state(mm)
        if flags == MEMBARRIER_FLAG_SYNC_CORE:
            if not state & MEMBARRIER_STATE_PRIVATE_EXPEDITED_SYNC_CORE_READY:
                return -EPERM
            ipi_func = self.ipi_sync_core
        elif flags == MEMBARRIER_FLAG_RSEQ:
            if not state & MEMBARRIER_STATE_PRIVATE_EXPEDITED_RSEQ_READY:
                return -EPERM
            ipi_func = self.ipi_rseq
        else:
            if not state & MEMBARRIER_STATE_PRIVATE_EXPEDITED_READY:
                return -EPERM
            ipi_func = self.ipi_mb
        if flags != MEMBARRIER_FLAG_SYNC_CORE and (mm.mm_users.counter == 1 or self.nr_online == 1):
            return 0
        if cpu_id >= 0:
            if cpu_id >= self.nr_cpu_ids or not self.rqs[cpu_id].online:
                return 0
            p = self.rqs[cpu_id].curr
            if p.mm is not mm:
                return 0
            # smp_call_function_single() calls ipi_func() here if cpu_id is
            # the calling CPU.
            self.smp_call_function_single(cpu_id, ipi_func, None, True)
            return 0
        mask = 0
        for rq in self.rqs:
            if rq.online and rq.curr.mm is mm:
                mask |= 1 << rq.cpu
        if flags != MEMBARRIER_FLAG_SYNC_CORE:
            # For RSEQ, don't rseq_preempt() the caller: user code is not
            # supposed to issue syscalls at all from inside an rseq
            # critical section.
            self.smp_call_function_many(mask, ipi_func, None, True)
        else:
            # For SYNC_CORE, we do need a barrier on the current cpu
            # (on_each_cpu_mask() runs ipi_func here too).
            self.on_each_cpu_mask(mask, ipi_func, None, True)     # kernel/lazy_tlb.py's
        return 0

    def membarrier_register_global_expedited(self):
        mm = self.cur.mm
        if membarrier_state(mm) & MEMBARRIER_STATE_GLOBAL_EXPEDITED_READY:
            return 0
        mm.membarrier_state = membarrier_state(mm) | MEMBARRIER_STATE_GLOBAL_EXPEDITED | \
            MEMBARRIER_STATE_GLOBAL_EXPEDITED_READY
        return 0

    def membarrier_register_private_expedited(self, flags):
        mm = self.cur.mm
        ready_state = MEMBARRIER_STATE_PRIVATE_EXPEDITED_READY
        set_state = MEMBARRIER_STATE_PRIVATE_EXPEDITED
        if flags == MEMBARRIER_FLAG_SYNC_CORE:
            ready_state = MEMBARRIER_STATE_PRIVATE_EXPEDITED_SYNC_CORE_READY
        elif flags == MEMBARRIER_FLAG_RSEQ:
            ready_state = MEMBARRIER_STATE_PRIVATE_EXPEDITED_RSEQ_READY
        state = membarrier_state(mm)
        # We need to consider threads belonging to different thread groups,
        # which use the same mm. (CLONE_VM but not CLONE_THREAD).
        if state & ready_state == ready_state:
            return 0
        if flags & MEMBARRIER_FLAG_SYNC_CORE:
            set_state |= MEMBARRIER_STATE_PRIVATE_EXPEDITED_SYNC_CORE
        if flags & MEMBARRIER_FLAG_RSEQ:
            set_state |= MEMBARRIER_STATE_PRIVATE_EXPEDITED_RSEQ
        mm.membarrier_state = state | set_state
        # (sync_runqueues_membarrier_state(): the runqueues' copies are not modelled)
        mm.membarrier_state |= ready_state
        return 0

    def membarrier_get_registrations(self):
        membarrier_state_ = membarrier_state(self.cur.mm)
        states = (
            MEMBARRIER_STATE_GLOBAL_EXPEDITED | MEMBARRIER_STATE_GLOBAL_EXPEDITED_READY,
            MEMBARRIER_STATE_PRIVATE_EXPEDITED | MEMBARRIER_STATE_PRIVATE_EXPEDITED_READY,
            MEMBARRIER_STATE_PRIVATE_EXPEDITED_SYNC_CORE
            | MEMBARRIER_STATE_PRIVATE_EXPEDITED_SYNC_CORE_READY,
            MEMBARRIER_STATE_PRIVATE_EXPEDITED_RSEQ | MEMBARRIER_STATE_PRIVATE_EXPEDITED_RSEQ_READY,
        )
        registration_cmds = (
            MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
        )
        registrations_mask = 0
        for state, cmd in zip(states, registration_cmds):
            if membarrier_state_ & state:
                registrations_mask |= cmd
                membarrier_state_ &= ~state
        assert membarrier_state_ == 0, "WARN_ON_ONCE(membarrier_state != 0)"
        return registrations_mask

    def tick_nohz_full_enabled(self):
        return bool(getattr(self, "nohz_full_mask", 0))

    # -- kernel/smp.c, for the IPIs above -------------------------------------------------------

    # (on_each_cpu_mask(): emulator.kernel.lazy_tlb)

    def smp_call_function_single(self, cpu, func, info, wait):
        if cpu == self.cpu:
            flags = self.local_irq_save()
            func(info)
            self.local_irq_restore(flags)
            return 0
        return self.smp_call_function_many(1 << cpu, func, info, wait)

    def smp_call_function_many(self, mask, func, info, wait):
        """Run ``func(info)`` on every CPU of *mask* but this one, in hard
        interrupt context; with *wait*, spin until all have run it
        (csd_lock_wait())."""
        mask &= ~(1 << self.cpu)
        if not mask:
            return 0
        left = [mask.bit_count()]
        when = self.engine.now + self.ipi_latency_ns
        for cpu in range(self.nr_cpu_ids):
            if mask >> cpu & 1:
                self.engine.at(when, self._call_function_ipi, (self.rqs[cpu], func, info, left))
        if wait:
            t = self.cur
            t.preempt_count += 1                # preempt_disable()
            spun = 0
            while left[0]:
                spun = self.cpu_relax("csd_lock_wait", spun)
            t.preempt_count -= 1
        return 0

    def _call_function_ipi(self, arg):
        rq, func, info, left = arg
        if self.irq_deferred(rq, self._call_function_ipi, arg):
            return
        self._irq_enter(rq)
        func(info)
        left[0] -= 1
        self.irq_exit(rq)
