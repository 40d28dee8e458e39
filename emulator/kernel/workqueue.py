"""kernel/workqueue.c: work items, delayed work, per-CPU and unbound pools.

Workers are kernel threads scheduled like any task; a work function runs on
its worker's kernel stack, so it may sleep and may charge virtual time, during
which it is still "running" for flush_work() and cancel_*_sync().

Departures: a per-CPU pool has one worker (no concurrency management spawning
a second worker when the first sleeps); the unbound pool grows a worker per
concurrently pending item up to ``max_active`` and never shrinks.
"""

from collections import deque

from ..observe.trace import WorkqueueExecuteFields, WorkqueueQueueWorkFields
from .task import PF_WQ_WORKER, TASK_INTERRUPTIBLE, TASK_RUNNING
from .time import timer_list
from .wait import wait_queue_head_t

WORK_CPU_UNBOUND = -1
WQ_UNBOUND = 1 << 1


class work_struct:
    """A work item: ``func(work)`` runs on a worker.  ``data`` carries PENDING."""

    __slots__ = ("func", "pending", "pool", "nr_queued", "nr_done", "running_on",
                 "disable", "canceling", "name")

    def __init__(self, func, name=None):
        self.func = func
        self.name = name or getattr(func, "__name__", "work")
        self.pending = False          # WORK_STRUCT_PENDING
        self.pool = None
        self.nr_queued = 0            # executions queued so far
        self.nr_done = 0              # executions finished so far
        self.running_on = None        # the worker executing it
        self.disable = 0              # disable_work() count
        self.canceling = False

    def __repr__(self):
        return f"work {self.name}"


class delayed_work(work_struct):
    __slots__ = ("timer", "wq", "cpu")

    def __init__(self, func, name=None):
        super().__init__(func, name)
        self.timer = timer_list(None, self)
        self.wq = None
        self.cpu = WORK_CPU_UNBOUND

    @property
    def work(self):
        return self


class worker_pool:
    def __init__(self, cpu, name):
        self.cpu = cpu
        self.name = name
        self.worklist = deque()
        self.workers = []
        self.idle = []


class workqueue_struct:
    def __init__(self, name, flags, max_active):
        self.name = name
        self.flags = flags
        self.max_active = max_active


class worker:
    __slots__ = ("task", "pool", "current_work", "id")

    def __init__(self, pool, wid):
        self.pool = pool
        self.id = wid
        self.task = None
        self.current_work = None


class Workqueue:
    """Mixin."""

    def workqueue_init(self):
        self.cpu_pools = {}
        self.unbound_pool = worker_pool(WORK_CPU_UNBOUND, "unbound")
        self.system_wq = self.alloc_workqueue("events", 0, 0)
        self.system_unbound_wq = self.alloc_workqueue("events_unbound", WQ_UNBOUND, 0)
        self.work_done = wait_queue_head_t("work completion")

    def alloc_workqueue(self, name, flags, max_active):
        return workqueue_struct(name, flags, max_active or max(4, self.nr_online))

    # -- queueing --------------------------------------------------------------------------------

    def queue_work_on(self, cpu, wq, work):
        """Queue *work* unless it is pending or disabled; returns whether queued."""
        if work.pending or work.disable or work.canceling:
            return False
        work.pending = True
        self._queue_work(cpu, wq, work)
        return True

    def work_on_cpu(self, cpu, fn, arg):
        """Run ``fn(arg)`` on a kworker of *cpu* (system_wq), wait for it and
        return what it returned."""
        box = {}
        work = work_struct(lambda w: box.setdefault("ret", fn(arg)), "work_for_cpu_fn")
        self.queue_work_on(cpu, self.system_wq, work)
        self.flush_work(work)
        return box.get("ret")

    def queue_work(self, wq, work):
        return self.queue_work_on(WORK_CPU_UNBOUND, wq, work)

    def _queue_work(self, cpu, wq, work):
        if wq.flags & WQ_UNBOUND:
            pool = self.unbound_pool
        else:
            if cpu == WORK_CPU_UNBOUND:
                cpu = self.cpu
            pool = self.cpu_pool(cpu)
        work.pool = pool
        work.nr_queued += 1
        pool.worklist.append(work)
        if self.tp.workqueue_queue_work:
            self.tp.emit("workqueue_queue_work", WorkqueueQueueWorkFields((
                WorkqueueQueueWorkFields, work.name, work.name, wq.name, cpu, pool.cpu)))
        self.wake_up_worker(pool, wq)

    def cpu_pool(self, cpu):
        pool = self.cpu_pools.get(cpu)
        if pool is None:
            pool = self.cpu_pools[cpu] = worker_pool(cpu, f"{cpu}")
        return pool

    def wake_up_worker(self, pool, wq):
        if pool.idle:
            w = pool.idle.pop()
            self.wake_up_process(w.task)
            return
        busy = len(pool.workers)
        if not pool.workers or (pool.cpu == WORK_CPU_UNBOUND and busy < wq.max_active):
            self.create_worker(pool)

    def create_worker(self, pool):
        w = worker(pool, len(pool.workers))
        pool.workers.append(w)
        if pool.cpu == WORK_CPU_UNBOUND:
            # wq_unbound_cpumask: the housekeeping CPUs of HK_TYPE_WQ and _DOMAIN
            w.task = self.kthread_create(self.worker_thread, w, f"kworker/u:{w.id}",
                                         cpus=self.housekeeping_cpumask("wq"), wake=False)
        else:
            w.task = self.kthread_create_on_cpu(self.worker_thread, w, pool.cpu,
                                                f"kworker/{pool.cpu}:{w.id}", wake=False)
        w.task.flags |= PF_WQ_WORKER
        # Woken once whole (create_worker() wakes it after attaching it): a
        # woken worker preempting its creator must find w.task set.
        self.wake_up_new_task(w.task)
        return w

    def queue_delayed_work_on(self, cpu, wq, dwork, delay):
        """Queue *dwork* after *delay* jiffies; returns whether it was queued."""
        if dwork.pending or dwork.disable or dwork.canceling:
            return False
        dwork.pending = True
        self._queue_delayed_work(cpu, wq, dwork, delay)
        return True

    def queue_delayed_work(self, wq, dwork, delay):
        return self.queue_delayed_work_on(WORK_CPU_UNBOUND, wq, dwork, delay)

    def schedule_work(self, work):
        """include/linux/workqueue.h: queue_work(system_wq, work)."""
        return self.queue_work(self.system_wq, work)

    def schedule_delayed_work(self, dwork, delay):
        """include/linux/workqueue.h: queue_delayed_work(system_wq, dwork, delay)."""
        return self.queue_delayed_work(self.system_wq, dwork, delay)

    def _queue_delayed_work(self, cpu, wq, dwork, delay):
        dwork.wq = wq
        dwork.cpu = cpu
        if delay == 0:
            self._queue_work(cpu, wq, dwork)
            return
        timer = dwork.timer
        timer.function = self.delayed_work_timer_fn
        self.mod_timer(timer, self.jiffies + delay)

    def delayed_work_timer_fn(self, timer):
        dwork = timer.data
        self._queue_work(dwork.cpu, dwork.wq, dwork)

    def mod_delayed_work_on(self, cpu, wq, dwork, delay):
        """Modify the delay of a pending delayed work, or queue it."""
        if dwork.disable or dwork.canceling:
            return False
        was = self.try_to_grab_pending(dwork)
        dwork.pending = True
        self._queue_delayed_work(cpu, wq, dwork, delay)
        return was

    def mod_delayed_work(self, wq, dwork, delay):
        return self.mod_delayed_work_on(WORK_CPU_UNBOUND, wq, dwork, delay)

    # -- cancelling and flushing -----------------------------------------------------------------

    def try_to_grab_pending(self, work):
        """Steal PENDING: stop the timer or take the item off its worklist."""
        if not work.pending:
            return False
        if isinstance(work, delayed_work) and self.del_timer(work.timer):
            work.pending = False
            return True
        if work.pool is not None and work in work.pool.worklist:
            work.pool.worklist.remove(work)
            work.nr_queued -= 1
        work.pending = False
        return True

    def cancel_work(self, work):
        return self.try_to_grab_pending(work)

    cancel_delayed_work = cancel_work

    def cancel_work_sync(self, work):
        """Cancel and wait for a running instance to finish; returns whether it was pending."""
        work.canceling = True
        was = self.try_to_grab_pending(work)
        self.flush_work(work)
        work.canceling = False
        return was

    cancel_delayed_work_sync = cancel_work_sync

    def flush_work(self, work):
        """Wait for the last queued execution of *work* to finish; returns
        whether there was one to wait for."""
        self.might_sleep()              # whether or not there is anything to wait for
        target = work.nr_queued
        if work.nr_done >= target:
            return False
        self.wait_event(self.work_done, lambda: work.nr_done >= target)
        return True

    def disable_work(self, work):
        """Disable and cancel *work*: queueing fails until enable_work()."""
        work.disable += 1
        return self.try_to_grab_pending(work)

    disable_delayed_work = disable_work

    def disable_work_sync(self, work):
        work.disable += 1
        was = self.try_to_grab_pending(work)
        self.flush_work(work)
        return was

    disable_delayed_work_sync = disable_work_sync

    def enable_work(self, work):
        work.disable -= 1
        return work.disable == 0

    def work_pending(self, work):
        return work.pending

    delayed_work_pending = work_pending

    # -- the worker ------------------------------------------------------------------------------------

    def worker_thread(self, w):
        pool = w.pool
        me = w.task
        while True:
            while pool.worklist:
                work = pool.worklist.popleft()
                self.process_one_work(w, work)
            me.state = TASK_INTERRUPTIBLE
            me.wait_reason = "worker_thread"
            pool.idle.append(w)
            self.schedule()
            me.state = TASK_RUNNING
            if w in pool.idle:
                pool.idle.remove(w)

    def process_one_work(self, w, work):
        w.current_work = work
        work.running_on = w
        work.pending = False           # set_work_pool_and_clear_pending()
        tp = self.tp
        if tp.workqueue_execute_start:
            tp.emit("workqueue_execute_start",
                    WorkqueueExecuteFields((WorkqueueExecuteFields, work.name, work.name)))
        work.func(work)
        if tp.workqueue_execute_end:
            tp.emit("workqueue_execute_end",
                    WorkqueueExecuteFields((WorkqueueExecuteFields, work.name, work.name)))
        w.current_work = None
        work.running_on = None
        work.nr_done += 1
        if self.work_done.waiters:
            self.wake_up(self.work_done)
