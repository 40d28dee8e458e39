"""The kernel model: one object whose methods mirror the kernel's functions.

Each mixin lives in a module named after the kernel file it models
(sched/core.py, fork.py, exit.py, exec.py, rseq.py, workqueue.py, ...).  The
kernel knows its selected variants only through their call-site methods.
"""

from ..errors import KernelBug
from ..checks.invariants import Invariants
from ..checks.lockdep import Lockdep
from ..observe.trace import Tracepoints
from .costs import resolve as resolve_costs
from .entry import Entry
from .exec import Exec
from .exit import Exit
from .fork import Fork, mm_struct
from .irq_work import IrqWork
from .locking import Counters, raw_spinlock_t
from .membarrier import Membarrier
from .blk import Blk
from .cpu import Cpu
from .kthread import Kthread
from .lazy_tlb import LazyTlbMm
from .mmap import Mmap
from .page_alloc import PageAlloc
from .pipe import Pipe
from .rseq import Rseq
from .sched.core import IdleSchedClass, SchedCore
from .sched.fair import CfsRq, FairSchedClass
from .sched.isolation import HK_TYPE_DOMAIN, Isolation
from .sched.rt import RtRq
from .sched.sched import Rq
from .signal import Signal
from .stop_machine import StopMachine
from .sys import Sys
from .task import SignalStruct, Task, TASK_INTERRUPTIBLE, TASK_RUNNING
from .task_work import TaskWork
from .time import Time
from .wait import Wait
from .watchdog import Watchdog
from .workqueue import Workqueue


class Kernel(SchedCore, Fork, Exit, Exec, Rseq, Signal, Membarrier, Entry, Sys, Wait, Time, TaskWork, IrqWork,
             Workqueue, StopMachine, PageAlloc, Isolation, Mmap, Blk, Cpu, LazyTlbMm, Kthread, Pipe,
             Watchdog):

    def __init__(self, engine, *, nr_cpus, nr_possible, nr_nodes, hz, variants, glibc_rseq,
                 lockup_ns, trace_tail, max_threads, costs=None, invariants=True, nohz_full=0,
                 isolcpus=0):
        self.engine = engine
        self.chooser = engine.chooser
        self.nr_cpu_ids = nr_possible
        self.nr_online = nr_cpus
        self.possible_mask = (1 << nr_possible) - 1
        self.online_mask = (1 << nr_cpus) - 1
        self.active_mask = self.online_mask
        self.housekeeping_init(nohz_full, isolcpus)
        self.nr_node_ids = nr_nodes
        self.cpu_to_node = [cpu * nr_nodes // nr_possible for cpu in range(nr_possible)]
        self.hz = hz
        self.tick_nsec = 1_000_000_000 // hz
        self.glibc_rseq = glibc_rseq
        self.lockup_ns = lockup_ns
        self.max_threads = max_threads
        self.counters = Counters()
        c = resolve_costs(costs)
        self.costs = c
        self.syscall_ns = c["syscall_ns"]
        self.context_switch_ns = c["context_switch_ns"]
        self.ttwu_remote_ns = c["ttwu_remote_ns"]
        self.ipi_latency_ns = c["ipi_latency_ns"]
        self.timer_slack_ns = c["timer_slack_ns"]
        self.sched_point_hook = None   # set by an exploration strategy (emulator.explore.point)
        self.access_hook = None        # records plain accesses while a search observes them
        self.preempted_paths = set()    # tasks inside preempt_kernel_path()
        self.stop_condition = lambda: False
        self.tp = Tracepoints(self, trace_tail)
        self.futexes = {}
        self.tasks = {}
        self.process_status = {}
        self.stoppers = {}
        self.last_pid = 0
        self.mm_seq = 0
        self.mms_allocated = 0
        self.mms_freed = 0
        self.nr_threads = 0
        self.nr_user_tasks = 0
        self.nr_switches = 0
        self.schedule_digest = 0
        self.switch_mm_cid_locks = 0
        self.switch_mm_cid_atomics = 0
        self.scan_stats = {}
        self.live_mms = {}
        self.rseq_resuming = None
        self.paused_lock_holders = 0
        self.paused_until = {}           # id(obj) -> a path paused until obj (pause_kernel_path)
        # Causes of recorded findings seen in this run (emulator.explore.findings.known_finding)
        self.causes = set()
        self.suspended_holders = [0] * nr_possible
        self.held_off_irqs = []
        self.rt_curr_mask = 0
        self.load_masks = [self.online_mask, 0, 0, 0]
        self.in_irq = False
        self.cpu = 0
        self.cpuhp_init()                          # hotplug states, before variants add theirs
        self.lazy_tlb_init()
        for subsystem, cls in variants.items():    # self.mm_cid, ...: one variant each
            setattr(self, subsystem, cls(self))

        self.pidmap_lock = raw_spinlock_t("pidmap_lock")
        self.tasklist_lock = raw_spinlock_t("tasklist_lock")     # an rwlock; writers only here
        self.init_mm = mm_struct(0)
        self.init_mm.mm_count.counter = 1 << 40
        self.init_mm.mm_users.counter = 1 << 40
        self.mm_cid.mm_init_cid(self.init_mm, None)

        self.rqs = []
        for cpu in range(nr_possible):
            rq = Rq(cpu, self.cpu_to_node[cpu])
            rq.cfs = CfsRq()
            rq.rt = RtRq()
            rq.online = cpu < nr_cpus
            idle = Task(0, f"swapper/{cpu}")
            idle.sched_class = IdleSchedClass
            idle.prio = 120
            idle.cpu = idle.wake_cpu = cpu
            idle.cpus_mask = 1 << cpu
            idle.nr_cpus_allowed = 1
            idle.state = TASK_RUNNING
            idle.on_cpu = 1
            idle.flags = 0x00200000 | 0x2      # PF_KTHREAD | PF_IDLE
            idle.active_mm = self.init_mm
            self.mm_cid.init_task_fields(idle)
            rq.idle = rq.curr = idle
            rq.loaded_mm = self.init_mm
            self.rqs.append(rq)

        # The reaper that parents the first user process (pid 1, never runs).
        self.init_task = Task(self.alloc_pid(), "init")
        self.init_task.flags = 0x00200000
        self.init_task.state = TASK_INTERRUPTIBLE
        # Every possible CPU, offline ones included: sched_init_smp() gives
        # init housekeeping_cpumask(HK_TYPE_DOMAIN), cpu_possible_mask without
        # isolcpus=, and the top cpuset keeps offline CPUs in its tasks' masks
        # (3fb906e7fabb), so an mm's allowed CPUs count them.
        self.init_task.cpus_mask = self.housekeeping_cpumask(HK_TYPE_DOMAIN)
        self.init_task.nr_cpus_allowed = self.init_task.cpus_mask.bit_count()
        self.init_task.sched_class = FairSchedClass
        self.init_task.active_mm = self.init_mm
        self.init_signal = SignalStruct(1)
        self.init_task.signal = self.init_signal
        self.mm_cid.init_task_fields(self.init_task)
        self.cur = self.init_task
        self.workqueue_init()
        for cpu in range(self.nr_online):          # sched_cpu_starting()
            self.sched_tick_start(cpu)
        self.invariants = Invariants(self) if invariants else None
        self.lockdep = Lockdep(self) if invariants else None
        self.page_alloc_init()

    # -- irq flags --------------------------------------------------------------------

    def local_irq_save(self):
        rq = self.rqs[self.cpu]
        if not rq.irqs_disabled:
            rq.irqs_off_since = self.engine.now
        rq.irqs_disabled += 1
        return rq

    def local_irq_restore(self, flags):
        """Interrupts back on: the interrupts that came meanwhile are taken now.

        Turning interrupts back on is a scheduling point: a pending interrupt
        is taken here and, on its return, a preemptible path may be preempted
        for as long as the tasks that preempt it run."""
        flags.irqs_disabled -= 1
        if not flags.irqs_disabled:
            flags.irqs_off_ns += self.engine.now - flags.irqs_off_since
            if flags.deferred_irqs:
                self.replay_deferred_irqs(flags)
            if self.sched_point_hook is not None and not self.in_irq:
                self.sched_point_hook("irq_enable", flags)

    def irq_deferred(self, rq, fn, arg):
        """An interrupt for *rq*'s CPU while its interrupted path has interrupts
        off (spinning in cpu_relax() or charging time with them off): it is
        taken when the path turns them back on.  Returns True if deferred."""
        if rq.irqs_disabled:
            rq.deferred_irqs.append((fn, arg))
            return True
        if self.paused_lock_holders > self.suspended_holders[rq.cpu]:
            # a spinlock holder on another CPU is suspended
            self.held_off_irqs.append((fn, arg))
            return True
        return False

    def replay_deferred_irqs(self, rq):
        pending, rq.deferred_irqs = rq.deferred_irqs, []
        now = self.engine.now
        for fn, arg in pending:
            self.engine.at(now, fn, arg)

    def irqs_disabled(self):
        return self.in_irq or self.rqs[self.cpu].irqs_disabled > 0 or \
            self.rqs[self.cpu].lock.owner is self.cur

    def lockdep_assert_irqs_disabled(self):
        if not self.irqs_disabled():
            raise KernelBug(f"WARNING: lockdep_assert_irqs_disabled() on CPU {self.cpu} "
                            f"in {self.cur!r}: interrupts are enabled")
