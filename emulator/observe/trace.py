"""Tracepoints and the trace buffer.

A tracepoint is a boolean attribute of `Tracepoints` (``tp.sched_switch``):
the call site tests it and only then formats and emits, so a tracepoint nobody
listens to costs one attribute load.  Listeners are the ring buffer kept for
failure reports (the last ``tail`` events), a full trace written to a file,
and any callable a test subscribes.

The text format follows ftrace's::

    <comm>-<pid>   [cpu] <seconds>.<ns>: <event>: <fields>
"""

from collections import deque

EVENTS = (
    "sched_switch", "sched_wakeup", "sched_wakeup_new", "sched_migrate_task",
    "sched_process_fork", "sched_process_exec", "sched_process_exit",
    "workqueue_queue_work", "workqueue_execute_start", "workqueue_execute_end",
    "rseq_update", "mm_alloc", "mm_free",
)


class Tracepoints:
    def __init__(self, kernel, tail=64):
        self._k = kernel
        self._listeners = {name: [] for name in EVENTS}
        self.tail = deque(maxlen=tail) if tail else None
        self.full = None
        for name in EVENTS:
            setattr(self, name, False)
        if tail:
            for name in EVENTS:
                setattr(self, name, True)

    def subscribe(self, event, fn):
        """Call ``fn(record)`` for every *event* (a name from EVENTS, or "*")."""
        names = EVENTS if event == "*" else (event,)
        for name in names:
            if name not in self._listeners:
                raise ValueError(f"unknown tracepoint {name!r}")
            self._listeners[name].append(fn)
            setattr(self, name, True)

    def record_all(self):
        """Keep every event (for --trace FILE and determinism checks)."""
        self.full = []
        for name in EVENTS:
            setattr(self, name, True)

    def emit(self, event, text):
        k = self._k
        cur = k.cur
        record = (k.engine.now, k.cpu, cur.comm, cur.pid, event, text)
        if self.tail is not None:
            self.tail.append(record)
        if self.full is not None:
            self.full.append(record)
        for fn in self._listeners[event]:
            fn(record)

    @staticmethod
    def format(record):
        now, cpu, comm, pid, event, text = record
        sec, ns = divmod(now, 1_000_000_000)
        return f"{comm + '-' + str(pid):>20} [{cpu:03d}] {sec:5d}.{ns:09d}: {event}: {text}"

    def tail_text(self, n=40):
        if not self.tail:
            return "  (no trace recorded)"
        return "\n".join(self.format(r) for r in list(self.tail)[-n:])

    def text(self):
        return "\n".join(self.format(r) for r in self.full or ())
