"""kernel/sched/rt.c: SCHED_FIFO and SCHED_RR, one FIFO list per priority.

A preempted RT task goes back to the head of its list (in the kernel it never
left it); sched_yield() and an expired RR slice put it at the tail.
"""

from collections import deque

from .sched import ENQUEUE_HEAD, RR_TIMESLICE_NS
from ..task import SCHED_RR


class RtRq:
    __slots__ = ("queues", "bitmap", "nr_running")

    def __init__(self):
        self.queues = {}      # prio -> deque of tasks
        self.bitmap = 0       # bit prio set when queues[prio] is not empty
        self.nr_running = 0


class RtSchedClass:
    name = "rt"

    @staticmethod
    def enqueue_task(rq, p, flags):
        rt = rq.rt
        q = rt.queues.get(p.prio)
        if q is None:
            q = rt.queues[p.prio] = deque()
        if flags & ENQUEUE_HEAD or p.rt_head:
            q.appendleft(p)
        else:
            q.append(p)
        p.rt_head = False
        p.rq_key = q
        rt.bitmap |= 1 << p.prio
        rt.nr_running += 1

    @staticmethod
    def dequeue_task(rq, p, flags):
        q = p.rq_key
        if q is None:
            return
        q.remove(p)
        p.rq_key = None
        rt = rq.rt
        rt.nr_running -= 1
        if not q:
            rt.bitmap &= ~(1 << p.prio)

    @staticmethod
    def pick_next_task(rq):
        rt = rq.rt
        if not rt.bitmap:
            return None
        prio = (rt.bitmap & -rt.bitmap).bit_length() - 1
        q = rt.queues[prio]
        p = q.popleft()
        p.rq_key = None
        rt.nr_running -= 1
        if not q:
            rt.bitmap &= ~(1 << prio)
        return p

    @staticmethod
    def put_prev_task(rq, p):
        RtSchedClass.enqueue_task(rq, p, 0)

    @staticmethod
    def update_curr(rq, curr, now):
        delta = now - curr.exec_start
        if delta > 0:
            curr.sum_exec_runtime += delta
            curr.exec_start = now

    @staticmethod
    def task_tick(k, rq, curr):
        if curr.policy != SCHED_RR:
            return
        if curr.sum_exec_runtime - curr.prev_sum_exec_runtime >= RR_TIMESLICE_NS:
            q = rq.rt.queues.get(curr.prio)
            if q:
                k.resched_curr(rq)

    @staticmethod
    def wakeup_preempt(k, rq, p):
        curr = rq.curr
        if p.prio < curr.prio:
            k.resched_curr(rq)

    @staticmethod
    def yield_task(rq, p):
        p.rt_head = False

    @staticmethod
    def queued_tasks(rq):
        return [p for prio in sorted(rq.rt.queues) for p in rq.rt.queues[prio]]
