"""Tracepoints and the trace buffer.

A tracepoint is a boolean attribute of `Tracepoints` (``tp.sched_switch``):
the call site tests it and only then formats and emits, so a tracepoint nobody
listens to costs one attribute load.  Listeners are the ring buffer kept for
failure reports (the last ``tail`` events), a full trace written to a file,
and any callable a test subscribes.

The text format follows ftrace's::

    <comm>-<pid>   [cpu] <seconds>.<ns>: <event>: <fields>

``function`` is ftrace's function tracer over the mm_cid variant: with
``trace_functions()`` every method of the variant (the kernel functions it
models, by their kernel names, a patch's overrides included) emits one event
when called.  It costs a wrapper per call, so it is on only where a failure
is being reported: the final run of a shrunk Hypothesis example and a replay.

``minimal_trace()`` is what a failure report prints: the events of the CPUs
and tasks the failure names, with a repeating cycle of events folded into one
occurrence and a count, and the events the report *pinned* (``pin()``: the
ones that explain it, such as where a concurrency id lost its owner) however
old they are in the tail.

An event carries its fields (`Fields`, one class per event format below),
so that a report, a check or a metric reads ``record[5].fields["cid"]``
rather than parsing text, and an event costs a tuple: its text, ftrace's
for the event, is made only when printed (``str(record[5])``: a report, the
minimal trace, --trace).  Only ``function`` (the function tracer, on in
replays) is still a str.  Where only the tail listens to the mm_cid events
(``tail_only``: no full trace, no subscriber of theirs), their emitter (the watched cid storage of
emulator/observe/cid_watch.py) appends the record to the tail itself, the
fields a plain tuple there: ``Fields.of(record[5])`` reads a tail's record.

Departures from ftrace's formats (include/trace/events/): a work item is
named where ftrace prints its address (and its function by the name the item
was given, which is its function's unless named otherwise); ``signal_generate``
has no ``errno=``, ``code=`` or ``res=``, ``signal_deliver`` no ``errno=`` or
``code=`` (the model has no siginfo);
``mm_alloc`` and ``mm_free`` are the model's own events.
"""

import re
from collections import deque

EVENTS = (
    "sched_switch", "sched_wakeup", "sched_wakeup_new", "sched_migrate_task",
    "sched_process_fork", "sched_process_exec", "sched_process_exit",
    "workqueue_queue_work", "workqueue_execute_start", "workqueue_execute_end",
    "rseq_update", "rseq_ip_fixup", "signal_generate", "signal_deliver",
    "mm_alloc", "mm_free", "function", "irq_handler_entry", "irq_handler_exit",
    "mm_cid_get", "mm_cid_put", "mm_cid_owner", "funcgraph_entry", "funcgraph_exit",
)


# Not kept in the tail unless asked (subscribe(), record_all()): frequent
# events that would push a failure's story out of it.
NOT_IN_TAIL = frozenset(["function", "irq_handler_entry", "irq_handler_exit",
                         "funcgraph_entry", "funcgraph_exit"])
# The events whose emitter appends to the tail itself while only the tail
# listens to them (Tracepoints.tail_only).
TAIL_ONLY_EVENTS = frozenset(["mm_cid_get", "mm_cid_put", "mm_cid_owner"])

_NO_RECORD = (None,) * 8       # what emit() compares the first event of the tail with


class Fields(tuple):
    """An event's fields, as ftrace's events have a format with named fields:
    a tuple of its class and the values the event records, by position,
    which prints as the event's text (``str()``, made only then).  A
    subclass says what the positions are: ``fields`` (their names and
    values, a dict) and ``text()``.  The values are those of the time of the
    event (what may change later, a task's comm, is copied); two events with
    equal fields are equal, so repeats fold as their texts would.

    The tail may keep an event's fields as the plain tuple of the same items
    (cheaper to make, for an emitter that appends to the tail itself):
    ``Fields.of(record[5])`` is a record's text, or its Fields either way."""

    __slots__ = ()

    @staticmethod
    def of(text):
        """*text* (a record's), its plain tuple of fields as their Fields."""
        return text[0](text) if text.__class__ is tuple else text

    @property
    def fields(self):
        raise NotImplementedError

    def text(self):
        raise NotImplementedError

    def __str__(self):
        return self.text()

    def __repr__(self):
        return repr(self.text())


class NamedFields(Fields):
    """Fields whose positions ``NAMES`` names, in order."""

    __slots__ = ()
    NAMES = ()

    @property
    def fields(self):
        return dict(zip(self.NAMES, self[1:]))


class SchedSwitchFields(NamedFields):
    """sched_switch's fields, as ftrace prints them: ``prev_comm=main
    prev_pid=5 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0
    next_prio=120`` (prev_state ``R+``: preempted)."""

    __slots__ = ()
    NAMES = ("prev_comm", "prev_pid", "prev_prio", "prev_state", "next_comm", "next_pid",
             "next_prio")

    def text(self):
        _, pc, pp, ppr, ps, nc, np, npr = self
        return (f"prev_comm={pc} prev_pid={pp} prev_prio={ppr} prev_state={ps} ==> "
                f"next_comm={nc} next_pid={np} next_prio={npr}")


class SchedWakeupFields(NamedFields):
    """sched_wakeup's and sched_wakeup_new's fields: ``comm=main pid=5
    prio=120 target_cpu=003``."""

    __slots__ = ()
    NAMES = ("comm", "pid", "prio", "target_cpu")

    def text(self):
        return f"comm={self[1]} pid={self[2]} prio={self[3]} target_cpu={self[4]:03d}"


class RseqUpdateFields(NamedFields):
    """rseq_update's fields: ``cpu_id=3 node_id=0 mm_cid=1 pid=5``."""

    __slots__ = ()
    NAMES = ("cpu_id", "node_id", "mm_cid", "pid")

    def text(self):
        return f"cpu_id={self[1]} node_id={self[2]} mm_cid={self[3]} pid={self[4]}"


class SchedMigrateTaskFields(NamedFields):
    """sched_migrate_task's fields: ``comm=main pid=5 prio=120 orig_cpu=0
    dest_cpu=3``."""

    __slots__ = ()
    NAMES = ("comm", "pid", "prio", "orig_cpu", "dest_cpu")

    def text(self):
        _, comm, pid, prio, orig, dest = self
        return f"comm={comm} pid={pid} prio={prio} orig_cpu={orig} dest_cpu={dest}"


class SchedProcessForkFields(NamedFields):
    """sched_process_fork's fields: ``comm=main pid=5 child_comm=main
    child_pid=6``."""

    __slots__ = ()
    NAMES = ("comm", "pid", "child_comm", "child_pid")

    def text(self):
        return f"comm={self[1]} pid={self[2]} child_comm={self[3]} child_pid={self[4]}"


class SchedProcessExecFields(NamedFields):
    """sched_process_exec's fields: ``filename=newimage pid=5 old_pid=5``."""

    __slots__ = ()
    NAMES = ("filename", "pid", "old_pid")

    def text(self):
        return f"filename={self[1]} pid={self[2]} old_pid={self[3]}"


class SchedProcessExitFields(NamedFields):
    """sched_process_exit's fields: ``comm=main pid=5 prio=120``."""

    __slots__ = ()
    NAMES = ("comm", "pid", "prio")

    def text(self):
        return f"comm={self[1]} pid={self[2]} prio={self[3]}"


class WorkqueueQueueWorkFields(NamedFields):
    """workqueue_queue_work's fields: ``work struct=task_mm_cid_work
    function=task_mm_cid_work workqueue=events req_cpu=3 cpu=3``
    (include/trace/events/workqueue.h: "work struct=%p function=%ps
    workqueue=%s req_cpu=%d cpu=%d"; a work item is named by its function's
    name, where ftrace prints its address; ``cpu``: the pool's, -1 for the
    unbound pool)."""

    __slots__ = ()
    NAMES = ("work", "function", "workqueue", "req_cpu", "cpu")

    def text(self):
        return (f"work struct={self[1]} function={self[2]} workqueue={self[3]} "
                f"req_cpu={self[4]} cpu={self[5]}")


class WorkqueueExecuteFields(NamedFields):
    """workqueue_execute_start's and _end's fields: ``work struct
    task_mm_cid_work: function task_mm_cid_work``."""

    __slots__ = ()
    NAMES = ("work", "function")

    def text(self):
        return f"work struct {self[1]}: function {self[2]}"


class SignalGenerateFields(NamedFields):
    """signal_generate's fields: ``sig=10 comm=main pid=5 grp=1``."""

    __slots__ = ()
    NAMES = ("sig", "comm", "pid", "grp")

    def text(self):
        return f"sig={self[1]} comm={self[2]} pid={self[3]} grp={self[4]}"


class SignalDeliverFields(NamedFields):
    """signal_deliver's fields: ``sig=10 sa_handler=handler sa_flags=0x0``
    (a handler by its name; a default action ``sa_handler=0 sa_flags=0``).
    The last item, not a field, says which: whether the flags print in hex."""

    __slots__ = ()
    NAMES = ("sig", "sa_handler", "sa_flags")

    def text(self):
        _, sig, handler, flags, handled = self
        if handled:
            return f"sig={sig} sa_handler={handler} sa_flags={flags:#x}"
        return f"sig={sig} sa_handler={handler} sa_flags={flags}"     # the default action


class RseqIpFixupFields(NamedFields):
    """rseq_ip_fixup's fields: ``regs_ip=0x401010 start_ip=0x401000
    post_commit_offset=32 abort_ip=0x401040``."""

    __slots__ = ()
    NAMES = ("regs_ip", "start_ip", "post_commit_offset", "abort_ip")

    def text(self):
        _, ip, start, offset, abort = self
        return (f"regs_ip={ip:#x} start_ip={start:#x} post_commit_offset={offset} "
                f"abort_ip={abort:#x}")


class MmFields(Fields):
    """mm_alloc's and mm_free's fields (the model's own events): ``mm=mm#3
    by main[5]`` at an allocation (the task that allocated), ``mm=mm#3`` at
    a free.  ``mm`` is the mm_struct, ``id`` its number; its name is
    ``mm#<id>``, as a live mm's repr()."""

    __slots__ = ()
    # (MmFields, mm, mm.id[, by comm, by pid])

    @property
    def fields(self):
        if len(self) == 3:
            return {"mm": self[1], "id": self[2]}
        return {"mm": self[1], "id": self[2], "by_comm": self[3], "by_pid": self[4]}

    def text(self):
        if len(self) == 3:
            return f"mm=mm#{self[2]}"
        return f"mm=mm#{self[2]} by {self[3]}[{self[4]}]"


class FuncgraphFields(Fields):
    """funcgraph_entry's and funcgraph_exit's fields, the function graph
    tracer's view of the kernel functions the model times (a variant's
    scan: ``scan_begin()``/``scan_end()``): ``func=task_mm_cid_work`` at the
    entry, with ``calltime`` and ``rettime`` (ns) at the exit."""

    __slots__ = ()

    @property
    def fields(self):
        if len(self) == 2:
            return {"func": self[1]}
        return {"func": self[1], "calltime": self[2], "rettime": self[3]}

    def text(self):
        if len(self) == 2:
            return f"func={self[1]}"
        return f"func={self[1]} calltime={self[2]} rettime={self[3]}"


class IrqFields(Fields):
    """irq_handler_entry's and _exit's fields: ``irq=local_timer ns=1000``
    (``ns``: the handler's time, at exit)."""

    __slots__ = ()

    @property
    def fields(self):
        return {"irq": self[1], "ns": self[2]}

    def text(self):
        return f"irq={self[1]} ns={self[2]}" if self[2] else f"irq={self[1]}"


class Tracepoints:
    def __init__(self, kernel, tail=64):
        self._k = kernel
        self._listeners = {name: [] for name in EVENTS}
        self.tail = deque(maxlen=tail) if tail else None
        self.full = None
        self.pinned = {}         # id(record) -> (record, note): what minimal_trace() always keeps
        self.names = {}          # an emitter's cache: an object -> what its events call it
        # Whether a cid watch ever named a struct it watches in place in
        # self.names (by id(): cid_watch._watched()); until one does, a free
        # has no such entry to forget (forget_mm(), forget_task()).
        self.watched_in_place = False
        # Only the tail listens to TAIL_ONLY_EVENTS (the mm_cid events): their
        # emitter, whose events never repeat the one before them (each a change
        # of state), may append its record to the tail itself, as emit() would,
        # saving emit()'s call.  Subscribers of other events (compare's
        # metrics) leave it so.
        self.tail_only = self.tail is not None
        for name in EVENTS:
            setattr(self, name, False)
        if tail:
            for name in EVENTS:
                setattr(self, name, name not in NOT_IN_TAIL)

    def subscribe(self, event, fn):
        """Call ``fn(record)`` for every *event* (a name from EVENTS, or "*")."""
        names = EVENTS if event == "*" else (event,)
        for name in names:
            if name not in self._listeners:
                raise ValueError(f"unknown tracepoint {name!r}")
            self._listeners[name].append(fn)
            setattr(self, name, True)
            if name in TAIL_ONLY_EVENTS:
                self.tail_only = False

    def record_all(self):
        """Keep every event (for --trace FILE and determinism checks)."""
        self.full = []
        self.tail_only = False
        for name in EVENTS:
            setattr(self, name, name != "function" or self.function)

    def emit(self, event, text):
        k = self._k
        cur = k.cur
        now, cpu = k.engine.now, k.cpu
        tail = self.tail
        if tail is not None:
            # A loop emitting the same event on the same CPU and task is kept as one
            # record and a count (a spinning CPU must not push the story out of the tail).
            last = tail[-1] if tail else _NO_RECORD
            # (the cheap comparisons first: the texts only when all else is the same)
            if last[4] == event and last[1] == cpu and last[3] == cur.pid and last[5] == text:
                tail[-1] = last[:6] + (last[6] + 1, now)
            else:
                tail.append((now, cpu, cur.comm, cur.pid, event, text, 0, 0))
        listeners = self._listeners[event]
        if self.full is not None or listeners:
            record = (now, cpu, cur.comm, cur.pid, event, text)
            if self.full is not None:
                self.full.append(record)
            for fn in listeners:
                fn(record)

    @staticmethod
    def format(record):
        now, cpu, comm, pid, event, text = record[:6]
        text = Fields.of(text)
        sec, ns = divmod(now, 1_000_000_000)
        line = f"{comm + '-' + str(pid):>20} [{cpu:03d}] {sec:5d}.{ns:09d}: {event}: {text}"
        if len(record) > 6 and record[6]:
            line += f"   (and {record[6]} more times until {record[7] / 1e9:.9f})"
        return line

    def text(self):
        """The recorded events as ftrace's ``trace`` file prints them (the
        nop tracer's header, irq-info off)."""
        events = self.full or ()
        header = ("# tracer: nop\n#\n"
                  f"# entries-in-buffer/entries-written: {len(events)}/{len(events)}   "
                  f"#P:{self._k.nr_online}\n#\n"
                  "#           TASK-PID  CPU#       TIMESTAMP  FUNCTION\n"
                  "#              | |      |             |         |")
        return "\n".join([header] + [self.format(r) for r in events])

    def trace_functions(self, obj):
        """ftrace's function tracer over *obj* (the mm_cid variant): each of
        its methods emits a ``function`` event with its arguments when called."""
        self.function = True
        names = {name for cls in type(obj).__mro__ if cls is not object
                 for name, value in vars(cls).items()
                 if callable(value) and not isinstance(value, (staticmethod, classmethod, type))
                 and not name.startswith("__")}
        names -= set(getattr(obj, "NOT_KERNEL_FUNCTIONS", ()))
        for name in sorted(names):
            setattr(obj, name, self._traced(name, getattr(obj, name)))

    def _traced(self, name, fn):
        def traced(*args, **kwargs):
            if self.function:
                self.emit("function", f"{name}({', '.join(_short(a) for a in args)})")
            return fn(*args, **kwargs)
        return traced

    def pin(self, record, note):
        """Keep *record*, a record of the tail, in minimal_trace() whatever
        CPUs and tasks the failure names and however old it is, marked with
        *note* (a report pins the events that explain it)."""
        self.pinned[id(record)] = (record, note)

    def minimal_trace(self, about, lines=60):
        """The tail's events of the CPUs and tasks that *about* (a failure's
        text) names as ``CPU n`` and ``comm[pid]``, repeats folded; the last
        *lines* lines of it, preceded by the pinned events older than those."""
        if not self.tail:
            return "  (no trace recorded)"
        records = list(self.tail)
        notes = {id(r): note for r, note in self.pinned.values()}
        cpus = {int(n) for n in re.findall(r"\bCPU\s+(\d+)", about)}
        pids = {int(n) for n in re.findall(r"[\w/.:-]\[(\d+)\]", about)}
        if cpus or pids:
            records = [r for r in records if r[1] in cpus or r[3] in pids or id(r) in notes]
        out = []
        for r in fold_repeats(records, keep=notes):
            if not isinstance(r, tuple):
                out.append((r, False))
            elif id(r) in notes:
                out.append((f"{self.format(r)}   <- {notes[id(r)]}", True))
            else:
                out.append((self.format(r), False))
        if len(out) <= lines:
            return "\n".join(line for line, _ in out)
        kept = [line for line, pinned in out[:-lines] if pinned]
        head = (f"  (events of CPUs {sorted(cpus) or '-'} and tasks {sorted(pids) or '-'}; "
                f"{len(out) - lines - len(kept)} earlier lines not shown"
                + (f", but the {len(kept)} the report points at)" if kept else ")"))
        gap = [f"{'':>20}   ..."] if kept else []
        return "\n".join([head] + kept + gap + [line for line, _ in out[-lines:]])


def _short(value):
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


# The cid watches (cid_watch.py) name objects in Tracepoints.names; the kernel
# forgets them here, below the kernel, when it frees them (cid_watch imports
# the kernel).
def forget_mm(k, mm, slots):
    """*mm* is freed (__mmdrop()): what the watches remember of it and of
    its per-CPU *slots* goes (kept, every mm a fork storm made stayed in
    memory: 130 entries a fork for v7.0 at 128 CPUs)."""
    names = k.tp.names
    names.pop(mm, None)
    if not k.tp.watched_in_place:
        return                                # no struct watched in place: no table entries
    for slot in slots.values() if slots else ():      # (a kernel.percpu allocation)
        entry = names.get(id(slot))
        if entry is not None and entry[0] is slot:
            del names[id(slot)]


def forget_task(k, t):
    """*t*'s task_struct is freed (dead and reaped): what the watches
    remember of its cid storage (a variant's struct in its fields) goes."""
    if not k.tp.watched_in_place:
        return                                # no struct watched in place: no table entries
    names = k.tp.names
    for value in t.__dict__.values():
        entry = names.get(id(value))
        if entry is not None and entry[0] is value:
            del names[id(value)]


def fold_repeats(records, longest=8, least=3, keep=()):
    """*records* with every cycle of up to *longest* events (the same CPU,
    task, event and text, whatever the time) repeating at least *least* times
    in a row kept once, followed by a line saying how often it repeated.  A
    record whose id() is in *keep* repeats nothing: it is never folded away."""
    keys = [id(r) if id(r) in keep else r[1:6] for r in records]
    out = []
    i = 0
    while i < len(records):
        for size in range(1, min(longest, (len(records) - i) // least) + 1):
            block = keys[i:i + size]
            n = 1
            while keys[i + n * size:i + (n + 1) * size] == block:
                n += 1
            if n >= least:
                out.extend(records[i:i + size])
                first, last = records[i + size][0], records[i + n * size - 1][0]
                out.append(f"{'':>20}   ...   the {size} event{'s' * (size > 1)} above "
                           f"repeat {n - 1} more times, from {first / 1e9:.9f} "
                           f"to {last / 1e9:.9f}")
                i += n * size
                break
        else:
            out.append(records[i])
            i += 1
    return out
