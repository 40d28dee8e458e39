"""include/linux/sched.h: task_struct, signal_struct and their flags.

Fields keep the kernel's names where the kernel has one.  Variants may add
their own fields to a task (``t.mm_cid`` and friends): tasks carry a
``__dict__`` for that, and the variant's ``init_task_fields()`` sets them at
dup_task_struct() time, as the kernel's dup_task_struct() does.
"""

from .locking import raw_spinlock_t
from .wait_queue import wait_queue_head_t

# task->__state
TASK_RUNNING = 0x0000
TASK_INTERRUPTIBLE = 0x0001
TASK_UNINTERRUPTIBLE = 0x0002
TASK_DEAD = 0x0080
TASK_WAKEKILL = 0x0100
TASK_NEW = 0x0800
TASK_KILLABLE = TASK_WAKEKILL | TASK_UNINTERRUPTIBLE
TASK_NORMAL = TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE

# task->exit_state
EXIT_ZOMBIE = 0x0020
EXIT_DEAD = 0x0010

# task->flags
PF_IDLE = 0x00000002
PF_EXITING = 0x00000004
PF_WQ_WORKER = 0x00000020
PF_FORKNOEXEC = 0x00000040
PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000

# policies
SCHED_NORMAL = 0
SCHED_OTHER = SCHED_NORMAL
SCHED_FIFO = 1
SCHED_RR = 2

MAX_RT_PRIO = 100
DEFAULT_PRIO = 120

# on_rq
TASK_ON_RQ_QUEUED = 1
TASK_ON_RQ_MIGRATING = 2


def state_char(state):
    """The letter sched_switch prints for prev_state."""
    if state == TASK_RUNNING:
        return "R"
    if state & TASK_DEAD:
        return "X"
    if state & TASK_UNINTERRUPTIBLE:
        return "D"
    if state & TASK_INTERRUPTIBLE:
        return "S"
    return "?"


class SignalStruct:
    """signal_struct: what the threads of one process share."""

    def __init__(self, tgid):
        self.tgid = tgid
        self.live = 0                 # atomic_t live: threads not yet exited
        self.threads = []             # the thread group, leader first
        self.group_exit = False       # SIGNAL_GROUP_EXIT
        self.group_exit_code = 0
        self.group_exec_task = None   # de_thread() in progress
        self.exit_status = None       # wait status once the whole group is dead
        self.children = []            # child processes (their leaders)
        self.parent = None            # the parent's signal struct
        self.reaped = False
        self.wait_chldexit = wait_queue_head_t(f"wait_chldexit of {tgid}")
        self.user_nthreads = 0        # glibc's __nptl_nthreads (user memory)
        # sighand_struct (shared with CLONE_SIGHAND, which every thread has):
        # sig -> (handler, sa_mask, sa_flags); absent is SIG_DFL (kernel/signal.py)
        self.sighand = {}
        self.shared_pending = 0       # process-directed signals (kill())


class Task:
    """task_struct.  The fields every task has live in slots; a variant's own
    fields (``t.mm_cid``...) go to the instance dict."""

    __slots__ = ("pid", "tgid", "comm", "flags", "state", "exit_state", "exit_code", "on_rq", "on_cpu", "cpu", "wake_cpu", "policy", "prio", "rt_priority", "sched_class", "cpus_mask", "nr_cpus_allowed", "mm", "active_mm", "vruntime", "sum_exec_runtime", "prev_sum_exec_runtime", "exec_start", "rq_key", "rt_head", "rt_yield", "time_slice", "nvcsw", "nivcsw", "need_resched", "notify_resume", "sigkill", "sigpending", "blocked", "pending", "in_do_exit", "in_execve", "preempt_count", "stack", "user", "user_busy", "kdebt", "wait_reason", "sleep_entry", "held_locks", "held_mutexes", "pi_lock", "relax_since", "signal", "group_leader", "real_parent", "vfork_done", "clear_child_tid", "task_works", "task_works_exited", "rseq", "rseq_len", "rseq_sig", "rseq_event_mask", "sleep_timer", "sleep_expired", "futex_woken", "threadfn", "threadarg", "__dict__", "__weakref__")

    def __init__(self, pid, comm):
        self.pid = pid                # the thread id (gettid)
        self.tgid = pid
        self.comm = comm
        self.flags = 0
        self.state = TASK_NEW         # __state
        self.exit_state = 0
        self.exit_code = 0
        self.on_rq = 0
        self.on_cpu = 0
        self.cpu = 0
        self.wake_cpu = 0
        self.policy = SCHED_NORMAL
        self.prio = DEFAULT_PRIO
        self.rt_priority = 0
        self.sched_class = None
        self.cpus_mask = 0
        self.nr_cpus_allowed = 0
        self.mm = None
        self.active_mm = None
        # sched_entity
        self.vruntime = 0
        self.sum_exec_runtime = 0
        self.prev_sum_exec_runtime = 0
        self.exec_start = 0
        self.rq_key = None            # the task's position in its runqueue
        self.rt_head = False          # requeue at the head (preempted SCHED_FIFO)
        self.rt_yield = False
        self.time_slice = 0           # SCHED_RR
        self.nvcsw = 0
        self.nivcsw = 0
        # thread_info flags
        self.need_resched = False     # TIF_NEED_RESCHED
        self.notify_resume = False    # TIF_NOTIFY_RESUME
        self.sigkill = False          # SIGKILL pending: the group is dying (fatal signal)
        self.sigpending = False       # TIF_SIGPENDING (kernel/signal.c)
        # signals, as masks with bit (sig - 1): blocked, and pending for this thread only
        self.blocked = 0
        self.pending = 0
        self.in_do_exit = False       # in do_exit(): never returns to user space
        self.in_execve = False        # current->in_execve
        self.preempt_count = 0
        self.migration_disabled = 0   # migrate_disable() depth
        # kernel stack and the user side
        self.stack = None             # greenlet
        self.user = None              # HostContext or ProgramContext
        self.user_busy = 0            # ns of user computation still to run
        self.kdebt = 0                # kernel time owed (syscall entry, switch-in)
        self.wait_reason = None       # what a sleeping task waits for (reports)
        self.sleep_entry = None
        self.held_locks = []
        self.held_mutexes = []
        self.pi_lock = raw_spinlock_t(f"{comm}[{pid}]->pi_lock")
        self.relax_since = None       # start of the current cpu_relax() streak
        # process relationships
        self.signal = None
        self.group_leader = self
        self.real_parent = None
        self.vfork_done = None
        self.clear_child_tid = None   # the pthread whose tid word the kernel clears at exit
        # task_work
        self.task_works = []
        self.task_works_exited = False
        # rseq
        self.rseq = None              # the registered struct rseq (user memory)
        self.rseq_len = 0
        self.rseq_sig = 0
        self.rseq_event_mask = 0
        # sleeping
        self.sleep_timer = None
        self.sleep_expired = False
        self.futex_woken = False
        # kernel threads
        self.threadfn = None
        self.threadarg = None

    def __repr__(self):
        return f"{self.comm}[{self.pid}]"
