"""kernel/sched/fair.c: the fair class, CFS-like.

Departs from the kernel: tasks are ordered by plain vruntime (nice weights,
EEVDF lag and deadlines are not modelled); a waking or migrating task is placed
at ``max(vruntime, min_vruntime)``; the tick preempts the current task after a
3 ms slice when another task is queued, and a wake-up preempts when the woken
task's vruntime is more than 1 ms behind.  The mm_cid behaviour this project
studies depends on when tasks switch and migrate, not on fair-share accounting.
"""

from bisect import insort

from .sched import ENQUEUE_HEAD, SCHED_SLICE_NS, WAKEUP_GRAN_NS


class CfsRq:
    __slots__ = ("queue", "min_vruntime", "seq")

    def __init__(self):
        self.queue = []               # (vruntime, seq, task), curr excluded
        self.min_vruntime = 0
        self.seq = 0


class FairSchedClass:
    name = "fair"

    @staticmethod
    def enqueue_task(rq, p, flags):
        cfs = rq.cfs
        if p.vruntime < cfs.min_vruntime:
            p.vruntime = cfs.min_vruntime
        cfs.seq += 1
        key = (p.vruntime, -cfs.seq if flags & ENQUEUE_HEAD else cfs.seq, p)
        p.rq_key = key
        insort(cfs.queue, key)

    @staticmethod
    def dequeue_task(rq, p, flags):
        key = p.rq_key
        if key is not None:
            rq.cfs.queue.remove(key)
            p.rq_key = None

    @staticmethod
    def pick_next_task(rq):
        queue = rq.cfs.queue
        if not queue:
            return None
        p = queue.pop(0)[2]
        p.rq_key = None
        return p

    @staticmethod
    def put_prev_task(rq, p):
        """Put a still-runnable previous task back in the queue."""
        FairSchedClass.enqueue_task(rq, p, 0)

    @staticmethod
    def update_curr(rq, curr, now):
        delta = now - curr.exec_start
        if delta > 0:
            curr.sum_exec_runtime += delta
            curr.vruntime += delta
            curr.exec_start = now
        cfs = rq.cfs
        low = curr.vruntime
        if cfs.queue and cfs.queue[0][0] < low:
            low = cfs.queue[0][0]
        if low > cfs.min_vruntime:
            cfs.min_vruntime = low

    @staticmethod
    def task_tick(k, rq, curr):
        """Preempt after a slice if someone else is waiting (check_preempt_tick)."""
        if rq.cfs.queue and curr.sum_exec_runtime - curr.prev_sum_exec_runtime >= SCHED_SLICE_NS:
            k.resched_curr(rq)

    @staticmethod
    def wakeup_preempt(k, rq, p):
        curr = rq.curr
        if curr.sched_class is FairSchedClass and p.vruntime + WAKEUP_GRAN_NS < curr.vruntime:
            k.resched_curr(rq)

    @staticmethod
    def yield_task(rq, p):
        # Go behind everyone queued now.
        if rq.cfs.queue:
            p.vruntime = max(p.vruntime, rq.cfs.queue[-1][0] + 1)

    @staticmethod
    def queued_tasks(rq):
        return [key[2] for key in rq.cfs.queue]
