"""kernel/sched/sched.h: struct rq, flags and constants shared by the classes."""

from ..locking import raw_spinlock_t

# enqueue/dequeue flags
DEQUEUE_SLEEP = 0x01
DEQUEUE_SAVE = 0x02
DEQUEUE_MOVE = 0x04
DEQUEUE_NOCLOCK = 0x08
ENQUEUE_WAKEUP = 0x01
ENQUEUE_RESTORE = 0x02
ENQUEUE_MOVE = 0x04
ENQUEUE_NOCLOCK = 0x08
ENQUEUE_HEAD = 0x10
ENQUEUE_REPLENISH = 0x20
ENQUEUE_MIGRATED = 0x40
ENQUEUE_INITIAL = 0x80

# wake flags
WF_EXEC = 0x02
WF_FORK = 0x04
WF_TTWU = 0x08
WF_SYNC = 0x10
WF_MIGRATED = 0x20

# Time slice of a fair task (sysctl_sched_base_slice scaled as for 8 CPUs:
# 0.75 ms * (1 + ilog2(8)) = 3 ms) and the wake-up preemption granularity.
SCHED_SLICE_NS = 3_000_000
WAKEUP_GRAN_NS = 1_000_000
RR_TIMESLICE_NS = 100_000_000


class Rq:
    """struct rq: one per possible CPU."""

    __slots__ = ("cpu", "node", "lock", "curr", "idle", "stop", "online", "nr_running", "nr_switches", "clock", "prev_mm", "cfs", "rt", "stop_queued", "tick_entry", "ipi_entry", "irq_held", "irqs_disabled", "irq_time", "deferred_irqs", "wake_list", "loaded_mm", "__dict__")

    def __init__(self, cpu, node):
        self.cpu = cpu
        self.node = node
        self.lock = raw_spinlock_t(f"rq{cpu}->__lock")
        self.curr = None
        self.idle = None
        self.stop = None
        self.online = False
        self.nr_running = 0
        self.nr_switches = 0
        self.nr_mm_switches = 0       # switches to a user mm (seed 004's count)
        self.clock = 0
        self.prev_mm = None           # mm to mmdrop in finish_task_switch()
        self.cfs = None
        self.rt = None
        self.stop_queued = False
        self.tick_entry = None        # the pending tick event (None: tick stopped)
        self.ipi_entry = None         # a pending reschedule IPI
        self.irq_held = []            # locks taken in interrupt context
        self.irqs_disabled = 0
        self.ipis = 0                 # IPIs taken (reschedule, function call)
        self.irq_cause = None         # the interrupt being handled (irq_handler_entry)
        self.irq_start = 0            # irq_time when it came
        self.irqs_off_since = 0       # local_irq_save() from interrupts on: when
        self.irqs_off_ns = 0          # the time local_irq_save() kept them off
        self.irq_time = 0             # virtual time charged in interrupt context
        self.deferred_irqs = []       # interrupts waiting for irqs to be enabled
        self.wake_list = []           # wake-ups waiting for a task to switch out
        # kernel/watchdog.py: nr_switches at the last look, and when (and in
        # which state) a look saw curr sleeping with no switch since (None: not)
        self.watchdog_touch_switches = 0
        self.watchdog_touch_ts = None
        self.watchdog_state = 0

    def __repr__(self):
        return f"rq{self.cpu}"
