"""The mm_cid tracepoints, and what a stall report says about a cid bitmap.

Watches.  Where an era keeps its concurrency ids -- the mm's cid bitmap, the
CPU slots (``mm->pcpu_cid[cpu]``, ``mm->mm_cid.pcpu[cpu]``), a task's cid --
is *watched* while the mm_cid tracepoints are on (the trace tail is kept, or
someone subscribed): the variant keeps it in a subclass of its storage class
whose stores emit

    mm_cid_get    a bit of the bitmap set       mm=mm#1 cid=2 in=...
    mm_cid_put    a bit of the bitmap cleared   mm=mm#1 cid=2 in=...
    mm_cid_owner  the cid a task or a CPU slot owns changed
                  mm=mm#1 owner=main[5] old=UNSET new=2 got=2 in=...
                  mm=mm#1 owner=cpu3 old=2|ONCPU new=2 lost=2 in=...

whatever code stores (the variant's, a patch's override), with ``in=`` the
innermost kernel functions that stored.  What a stored value owns is the
variant's word (``owned_cid()``, the rule P4's ``cid_owners()`` applies).
As KASAN's poisoning, a watch is a subclass of the storage's class; with the
tracepoints off the variant keeps the plain class and a store costs nothing
more.  Departure: the kernel would have tracepoints at its call sites; a
watch also sees the stores of code that has none, which is what a report on
a patch needs.

Cost.  The tail is kept by default, so the watches are on in every run, and
an era may store a cid at every context switch: an event records values
only (a tuple of its fields, the code objects of the functions that stored)
and its text, the names of ``in=`` included, is made when a report, the
minimal trace or ``--trace`` prints it.  The values are those of the time of
the store: a task's comm and pid are copied, an mm's name is kept with the
class it had (KASAN's poisoning of a freed mm changes its class).

Reports.  ``cid_report()`` is the section a hard lockup or a P4 violation
adds for an mm: who owns each set bit (a task, with its state, or a CPU
slot), which set bit has no owner and, from the trace tail, when it was last
set, who held it last and the event where that holder dropped it without
clearing the bit.  Those events are pinned (``Tracepoints.pin()``), so the
minimal trace keeps them however old they are in the tail.
"""

import os
from operator import attrgetter
from sys import _getframe

from ..kernel import locking as _locking
from ..kernel.cpumask import Cpumask, cpus_of
from ..kernel.percpu import percpu, touched
from ..kernel.task import state_char
from . import trace as _trace
from .trace import Fields

CID_EVENTS = ("mm_cid_get", "mm_cid_put", "mm_cid_owner")
TABLE_LINES = 16          # a report's owner table lists at most this many cids one by one
STORIES = 4               # and tells how the first this many set bits without an owner lost it


def tracing_cids(k):
    """Whether stores to the cid storage are to be watched."""
    tp = k.tp
    return tp.mm_cid_get or tp.mm_cid_put or tp.mm_cid_owner


# -- where a store happened -------------------------------------------------------------------
#
# An event keeps the code objects of the innermost kernel functions on the
# stack (a few attribute loads); their names are joined only when the text
# is made.  Frames that are not where a cid was stored: this package (the
# watches, the function tracer's wrappers) and the shared-memory primitives.

_OBSERVE = os.path.dirname(os.path.abspath(__file__))
_LOCKING = os.path.join(os.path.dirname(_OBSERVE), "kernel", "locking.py")
_NOT_THE_STORE = frozenset([_LOCKING, _locking.__file__, __file__, _trace.__file__] + [
    os.path.join(_OBSERVE, name) for name in os.listdir(_OBSERVE) if name.endswith(".py")])
SITE_DEPTH = 3            # in= names this many kernel functions, innermost first


def store_site(frame, tp):
    """The code objects of the innermost SITE_DEPTH kernel functions on the
    stack from *frame* (the hook's caller) outwards: where a store happened."""
    skip = _NOT_THE_STORE
    code = frame.f_code
    while code.co_filename in skip:           # a primitive (cmpxchg(), ...) stored
        frame = frame.f_back
        if frame is None:
            return ()
        code = frame.f_code
    if not tp.function:
        # The kernel function that stored, or whose primitive did, and its
        # callers: kernel functions, unless the function tracer's wrappers
        # are between them (the frames are read, not checked: a frame's
        # attributes are the event's largest cost).
        try:
            up = frame.f_back
            return (code, up.f_code, up.f_back.f_code)
        except AttributeError:                # the stack's end
            pass
    codes = []
    while frame is not None:
        code = frame.f_code
        if code.co_filename not in skip:
            codes.append(code)
            if len(codes) == SITE_DEPTH:
                break
        frame = frame.f_back
    return tuple(codes)


def site_names(site):
    """A store_site() as ``in=`` says it: ``_mm_get_cid<-mm_get_cid<-sched_mm_cid_fork``."""
    return "<-".join(code.co_name for code in site) or "?"


# -- the events -------------------------------------------------------------------------------
#
# An event's fields are a tuple whose first item is its Fields class; where
# only the trace tail listens, the tail keeps the plain tuple (Fields.of()
# makes the Fields of it when a report or a trace is printed), and the
# emitter appends the record itself: an mm_cid event is a change of state,
# never the repeat of the event before, which is all emit() would add.

def _mm_watch(mm):
    """What a watch keeps of its mm: (mm, its name, its class).  An event
    keeps it and the mm's class at the time: the mm's name then is the name
    kept while the mm has its class, what a freed one's repr says once KASAN
    poisoned it (a class of its own)."""
    return (mm, repr(mm), mm.__class__)


def _mm_name(watch, then):
    mm, name, live = watch
    return name if then is live else repr(mm)


class CidBitFields(Fields):
    """mm_cid_get's and mm_cid_put's fields: ``mm=mm#1 cid=2 in=...``."""

    __slots__ = ()
    # (CidBitFields, _mm_watch(mm), mm's class then, cid, store_site())

    @property
    def fields(self):
        return {"mm": self[1][0], "cid": self[3], "where": site_names(self[4])}

    def text(self):
        return f"mm={_mm_name(self[1], self[2])} cid={self[3]} in={site_names(self[4])}"


class CidOwnerFields(Fields):
    """mm_cid_owner's fields: ``mm=mm#1 owner=main[5] old=UNSET new=2 got=2
    in=...`` (``owner=cpu3`` for a CPU's slot; ``lost=``, ``got=``: the cid
    the store gave up, took, if any)."""

    __slots__ = ()
    # (CidOwnerFields, variant, _mm_watch(mm), mm's class then, owner, the
    #  owner task's comm and pid then (None for a CPU), old, new, lost, got,
    #  store_site())

    @property
    def fields(self):
        _, _, watch, _, owner, _, _, old, new, lost, got, site = self
        return {"mm": watch[0], "owner": owner, "old": old, "new": new, "lost": lost, "got": got,
                "where": site_names(site)}

    def text(self):
        _, v, watch, then, owner, comm, pid, old, new, lost, got, site = self
        who = f"cpu{owner}" if comm is None else f"{comm}[{pid}]"
        change = (f" lost={lost}" if lost >= 0 else "") + (f" got={got}" if got >= 0 else "")
        return (f"mm={_mm_name(watch, then)} owner={who} old={v.cid_text(old)} "
                f"new={v.cid_text(new)}{change} in={site_names(site)}")


class Watched:
    """What every watched storage class derives from, besides its own."""

    __slots__ = ()


# -- the bitmap ---------------------------------------------------------------------------------

class WatchedCidmask(Cpumask, Watched):
    """An mm's cid bitmap whose stores emit mm_cid_get and mm_cid_put."""

    __slots__ = ("watch",)        # _mm_watch(mm)

    def __setattr__(self, name, value):
        if name != "bits":
            object.__setattr__(self, name, value)
            return
        old = self.bits
        _set_bits(self, value)
        changed = old ^ value                 # (a mask of 1024 CPUs is a long int: few operations)
        if not changed:
            return
        k = _locking._machine                 # running_kernel()
        if k is None:
            return
        tp = k.tp
        if changed & (changed - 1) or not tp.tail_only:
            if tp.mm_cid_get or tp.mm_cid_put:
                _bits_emit(tp, self.watch, value & changed if tp.mm_cid_get else 0,
                           old & changed if tp.mm_cid_put else 0, store_site(_getframe(1), tp))
            return
        # One bit set or cleared, only the tail listening.
        if value & changed:
            if not tp.mm_cid_get:
                return
            event = "mm_cid_get"
        elif tp.mm_cid_put:
            event = "mm_cid_put"
        else:
            return
        site = store_site(_getframe(1), tp)
        watch = self.watch
        cur = k.cur
        tp.tail.append((k.engine.now, k.cpu, cur.comm, cur.pid, event,
                        (CidBitFields, watch, watch[0].__class__, changed.bit_length() - 1, site),
                        0, 0))


_set_bits = Cpumask.__dict__["bits"].__set__


def _bits_emit(tp, watch, got, put, site):
    """The events of a store to a watched bitmap that set the bits *got* and
    cleared *put*, through emit()."""
    if not got and not put:
        return
    then = watch[0].__class__
    for cid in cpus_of(got):
        tp.emit("mm_cid_get", CidBitFields((CidBitFields, watch, then, cid, site)))
    for cid in cpus_of(put):
        tp.emit("mm_cid_put", CidBitFields((CidBitFields, watch, then, cid, site)))


def watched_cidmask(mask, mm):
    """*mask* (a Cpumask) as a watched bitmap of *mm*."""
    if isinstance(mask, Watched):
        return mask
    watched = WatchedCidmask.__new__(WatchedCidmask)
    object.__setattr__(watched, "bits", mask.bits)
    object.__setattr__(watched, "watch", _mm_watch(mm))
    return watched


# -- the owners: a CPU slot, a task ----------------------------------------------------------
#
# A task's own field (its __dict__'s) is watched by a data descriptor without
# __get__ on a subclass of its class: a store calls the descriptor, a read
# finds the instance dict at the cost of a plain attribute.  A slotted struct
# (a CPU's slot, a task's struct of cid fields) is copied to a subclass that
# either intercepts every store (__setattr__: its reads stay a slot's, a
# store to another field costs a call), where the cid field is the only one
# or is read far more often than the others are stored (v7.0's task cid:
# ~4 reads a context switch), or keeps the cid in a slot of its own under a
# property (only the cid's stores cost a call, its reads a C getter), where
# another field is stored at every switch (v6.4's slot time); the copy has
# no __dict__, since a fork at 128 CPUs makes (and its free drops) 128 of
# them.  The emitter is each store hook's own body: a call would add a
# tenth to an event, which one context switch in two emits in some eras.

class _WatchedTaskField:
    """A task's own field (in its ``__dict__``) whose stores emit mm_cid_owner."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __set__(self, t, value):
        d = t.__dict__
        name = self.name
        old = d.get(name)
        d[name] = value
        if value == old or old is None:
            return
        k = _locking._machine                 # running_kernel()
        if k is None:
            return
        tp = k.tp
        if not tp.mm_cid_owner:
            return
        v = k.mm_cid
        lost = v.owned_cid("task", old)
        got = v.owned_cid("task", value)
        if lost == got:
            return
        mm = t.mm
        if mm is None:
            return
        watch = tp.names.get(mm)
        if watch is None:
            watch = tp.names[mm] = _mm_watch(mm)
        site = store_site(_getframe(1), tp)
        fields = (CidOwnerFields, v, watch, mm.__class__, t, t.comm, t.pid, old, value, lost, got,
                  site)
        if tp.tail_only:
            cur = k.cur
            tp.tail.append((k.engine.now, k.cpu, cur.comm, cur.pid, "mm_cid_owner", fields, 0, 0))
        else:
            tp.emit("mm_cid_owner", CidOwnerFields(fields))


def _owner_event(k, tp, kind, owner, watch, old, value):
    """The mm_cid_owner event, if any, of a store of *value* over *old* by
    the caller's caller to a watched struct of *owner* (*kind* "cpu" or
    "task"; *watch*: _mm_watch() of its mm, None: a task's mm at the time)."""
    names = tp.names
    lost = names.get((kind, old))             # owned_cid(), memoized
    if lost is None:
        lost = names[kind, old] = k.mm_cid.owned_cid(kind, old)
    got = names.get((kind, value))
    if got is None:
        got = names[kind, value] = k.mm_cid.owned_cid(kind, value)
    if lost == got:
        return
    if watch is None:                         # a task's: its mm now
        mm = owner.mm
        if mm is None:
            return
        watch = names.get(mm)
        if watch is None:
            watch = names[mm] = _mm_watch(mm)
    if kind == "cpu":
        fields = (CidOwnerFields, k.mm_cid, watch, watch[0].__class__, owner, None, None, old,
                  value, lost, got, store_site(_getframe(2), tp))
    else:
        fields = (CidOwnerFields, k.mm_cid, watch, watch[0].__class__, owner, owner.comm,
                  owner.pid, old, value, lost, got, store_site(_getframe(2), tp))
    if tp.tail_only:
        cur = k.cur
        tp.tail.append((k.engine.now, k.cpu, cur.comm, cur.pid, "mm_cid_owner", fields, 0, 0))
    else:
        tp.emit("mm_cid_owner", CidOwnerFields(fields))


def _watched_struct_field(store):
    """The property of the field of a watched copy of a slotted struct, kept
    in the copy's slot *store*, whose stores emit mm_cid_owner for the copy's
    owner (``_owner``) as ``_watch`` says (the kind of owner, _mm_watch() of
    its mm: one tuple for the slots of an mm); a read is the slot's, through
    a C getter."""
    get = attrgetter(store)

    def store_field(obj, value):
        old = get(obj)
        _object_setattr(obj, store, value)
        if value != old:
            k = _locking._machine             # running_kernel()
            if k is not None and k.tp.mm_cid_owner:
                kind, watch = obj._watch
                _owner_event(k, k.tp, kind, obj._owner, watch, old, value)
    return property(get, store_field)


def _struct_setattr(field, slot):
    """The __setattr__ of a watched slotted struct whose stores to *field*
    (*slot*, the struct's member descriptor) emit mm_cid_owner for the
    owner the kernel's table says (``tp.names[id(obj)]``: the struct, the
    kind of owner, the owner, _mm_watch() of its mm)."""
    write = slot.__set__

    def __setattr__(obj, name, value):
        if name != field:
            _object_setattr(obj, name, value)
            return
        old = getattr(obj, field)
        write(obj, value)
        if value != old:
            k = _locking._machine             # running_kernel()
            if k is not None:
                tp = k.tp
                if tp.mm_cid_owner:
                    entry = tp.names.get(id(obj))
                    if entry is not None and entry[0] is obj:
                        _owner_event(k, tp, entry[1], entry[2], entry[3], old, value)
    return __setattr__


_object_setattr = object.__setattr__
_watched_classes = {}


def _slots_of(cls):
    return [name for c in cls.__mro__ for name in getattr(c, "__slots__", ())
            if name not in ("__dict__", "__weakref__")]


def _watched_class(cls, field, by_setattr=None):
    key = (cls, field, by_setattr)
    watched = _watched_classes.get(key)
    if watched is None:
        slots = _slots_of(cls)
        if by_setattr is None:
            by_setattr = slots == [field]
        if by_setattr:                        # the layout of cls: watched in place
            how = {"__slots__": (), "__setattr__": _struct_setattr(field, getattr(cls, field))}
        else:
            store = f"_watched_{field}"
            how = {"__slots__": ("_watch", "_owner", store), field: _watched_struct_field(store),
                   "_copied": [name for name in slots if name != field], "_store": store}
        watched = type(f"watched_{cls.__name__}", (cls, Watched),
                       dict(how, __doc__=f"{cls.__name__} whose stores to .{field} emit "
                                         f"mm_cid_owner."))
        _watched_classes[key] = watched
    return watched


def _watched(tp, obj, cls, field, kind, owner, watch):
    """*obj* as an instance of its watched class *cls*: itself, its class
    switched, if *cls* has its layout, else a copy."""
    if "_copied" not in cls.__dict__:
        obj.__class__ = cls
        tp.names[id(obj)] = (obj, kind, owner, watch)
        tp.watched_in_place = True            # forget_mm() and forget_task() look for them
        return obj
    copy = cls.__new__(cls)
    for name in cls._copied:
        value = getattr(obj, name, _watched)
        if value is not _watched:             # a slot never set stays unset
            _object_setattr(copy, name, value)
    _object_setattr(copy, cls._store, getattr(obj, field))
    copy._watch = (kind, watch)
    copy._owner = owner
    return copy


def watch_struct(k, obj, field, mm, owner, by_setattr=None):
    """*obj* (a slotted storage object of kernel *k*) watched: its stores to
    *field* emit mm_cid_owner for *owner* (a CPU number, or a task) in *mm*
    (None: the task's mm at the time of the store).  *by_setattr*: whether
    its class intercepts every store, which keeps the reads of *field* a
    slot's and watches *obj* itself (default: if *field* is its only field);
    else the result is a copy whose *field* is a property over a slot of its own."""
    if isinstance(obj, Watched):
        return obj
    return _watched(k.tp, obj, _watched_class(type(obj), field, by_setattr), field,
                    "cpu" if isinstance(owner, int) else "task", owner,
                    None if mm is None else _mm_watch(mm))


def watch_slots(k, slots, field, mm):
    """Watch *mm*'s per-CPU *slots* (a kernel.percpu allocation of slotted
    structs of kernel *k*), each as watch_struct() watches its CPU's: the
    copies made so far in place, the others as they are made."""
    watch = _mm_watch(mm)
    tp = k.tp

    def watched(cpu, slot):
        if isinstance(slot, Watched):
            return slot
        return _watched(tp, slot, _watched_class(type(slot), field), field, "cpu", cpu, watch)

    if not isinstance(slots, percpu):
        return                                # none (init_mm's)
    for cpu, slot in touched(slots):
        slots[cpu] = watched(cpu, slot)
    make = slots.make
    slots.make = lambda cpu: watched(cpu, make(cpu))


def watch_task_field(t, field):
    """Watch *t*'s *field* (a variant's int field of the task): *t* becomes
    an instance of a subclass of its class with the same layout."""
    cls = type(t)
    if field in cls.__dict__:
        return
    key = (cls, field)
    watched = _watched_classes.get(key)
    if watched is None:
        watched = type(f"Watched{cls.__name__}", (cls, Watched),
                       {"__slots__": (), field: _WatchedTaskField(field)})
        _watched_classes[key] = watched
    t.__class__ = watched


# -- reports ----------------------------------------------------------------------------------

def _seconds(ns):
    return f"{ns / 1e9:.9f}"


def _cid_list(cids):
    """[0, 1, 2] as such; a long list as ranges, [0-63, 65-127]."""
    if len(cids) <= TABLE_LINES:
        return str(cids)
    ranges = []
    for cid in cids:
        if ranges and ranges[-1][1] == cid - 1:
            ranges[-1][1] = cid
        else:
            ranges.append([cid, cid])
    return "[" + ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges) + "]"


def mms_short_of_cids(k):
    """The live mms a CPU may be spinning for: a set bit without an owner, or
    no clear bit below the era's bound."""
    v = k.mm_cid
    short = []
    for mm in list(k.live_mms.values()):
        holders = v.cid_holders(mm)
        if holders is None:
            return []                     # the era keeps no bitmap
        bits = v.cidmask_bits(mm)
        full = (1 << v.cid_bound(mm)) - 1
        owned = 0
        for cid in holders:
            owned |= 1 << cid
        if bits & ~owned or (full and (bits & full) == full):
            short.append(mm)
    return short


def describe_owner(k, mm, owner, value, since=None):
    """An owner as the table prints it: a task and its state, or a CPU slot,
    and since when it owns its cid if the trace tail says it."""
    v = k.mm_cid
    since = "" if since is None else f", since {_seconds(since[0])}"
    if isinstance(owner, int):
        curr = k.rqs[owner].curr
        on = f"running {curr!r}" if curr.mm is mm else f"no task of {mm!r} on it"
        return f"CPU {owner}'s slot ({v.cid_text(value)}, {on}{since})"
    t = owner
    if k.tasks.get(t.pid) is not t:
        state = "exited"
    elif k.rqs[t.cpu].curr is t:
        state = f"running on CPU {t.cpu}"
    elif t.on_rq:
        state = f"runnable on CPU {t.cpu}"
    elif t.in_do_exit:
        state = "exiting"
    else:
        state = f"asleep ({state_char(t.state)})"
    return f"{t!r} (task: {v.cid_text(value)}, {state}{since})"


def _owner_value(k, mm, owner):
    v = k.mm_cid
    if isinstance(owner, int):
        return v.cid_slots(mm)[owner].cid
    return v.task_cid_value(owner)


def _history(records, mm, cid):
    """What the tail says of *cid* of *mm* since its bit was last set: the
    set, the last holder's taking of it, the event that left it without a
    holder, and the holders the events leave it with."""
    story = {"set": None, "taken": None, "lost": None, "holders": {}}
    for event in records:
        r, fields = event
        if fields["mm"] is not mm:
            continue
        if r[4] == "mm_cid_owner":
            holders = story["holders"]
            if fields["got"] == cid:
                holders[_key(fields["owner"])] = event
                story["taken"] = event
                story["lost"] = None
            if fields["lost"] == cid:
                holders.pop(_key(fields["owner"]), None)
                if not holders:
                    story["lost"] = event
        elif fields["cid"] == cid:
            # A set starts the story anew; a put ends it (a set comes later
            # if the bit is set now).
            story = {"set": event if r[4] == "mm_cid_get" else None, "taken": None,
                     "lost": None, "holders": {}}
    return story


def _key(owner):
    return owner if isinstance(owner, int) else id(owner)


def _event(event):
    """When and where an event (a record and its fields) happened, as the
    orphan lines say it."""
    r, fields = event
    return f"at {_seconds(r[0])} on CPU {r[1]} ({r[2]}-{r[3]}, in {fields['where']})"


def _orphan_lines(k, mm, cid, story, oldest):
    tp = k.tp
    lines = []
    what = f"cid {cid} of {mm!r}"
    if story["set"] is not None:
        lines.append(f"set {_event(story['set'])}")
        tp.pin(story["set"][0], f"{what} set")
    else:
        lines.append(f"set before the oldest event kept ({_seconds(oldest)})")
    taken, lost = story["taken"], story["lost"]
    if taken is not None:
        r, f = taken
        holder = f["owner"]
        name = repr(holder) if not isinstance(holder, int) else f"CPU {holder}'s slot"
        lines.append(f"last held by {name}, from {_seconds(r[0])} (in {f['where']})")
        tp.pin(r, f"{what} taken")
    if lost is not None:
        r, f = lost
        holder = repr(f["owner"]) if not isinstance(f["owner"], int) else f"CPU {f['owner']}'s slot"
        lines.append(f"dropped by {holder} {_event(lost)}: {k.mm_cid.cid_text(f['old'])} -> "
                     f"{k.mm_cid.cid_text(f['new'])}, the bit left set")
        tp.pin(r, f"{what} lost: the bit left set")
    elif story["holders"]:
        for _, f in story["holders"].values():
            owner = f["owner"]
            lines.append(f"no event of {describe_owner(k, mm, owner, _owner_value(k, mm, owner))} "
                         f"giving it up: the store that did was not watched")
    elif story["set"] is not None:
        lines.append("no task or CPU slot has taken it")
    return lines


def cid_report(k, mm):
    """The owner table of *mm*'s cid bitmap, with the story of the first
    STORIES set bits that have no owner (the others listed); the events of
    those stories are pinned."""
    v = k.mm_cid
    holders = v.cid_holders(mm)
    if holders is None:
        return ""
    bits = v.cidmask_bits(mm)
    orphans = [cid for cid in cpus_of(bits) if cid not in holders]
    state = v.cid_mm_state(mm)
    lines = [f"cid bitmap of {mm!r}: {_cid_list(cpus_of(bits))} set, bound {v.cid_bound(mm)}, "
             f"{len(orphans)} without an owner{'; ' + state if state else ''}"]
    tail = k.tp.tail
    # The tail's mm_cid events, each a record and its fields by name.
    records = [(r, text.fields) for r in (tail or ()) if r[4] in CID_EVENTS
               for text in (Fields.of(r[5]),) if isinstance(text, Fields)]
    oldest = tail[0][0] if tail else 0
    gains = {(_key(f["owner"]), f["got"]): r for r, f in records
             if r[4] == "mm_cid_owner" and f["mm"] is mm}
    told, shown = orphans[:STORIES], 0
    for cid in sorted(set(cpus_of(bits)) | set(holders)):
        if cid in holders:
            if shown >= TABLE_LINES - len(told):
                continue
            names = ", ".join(describe_owner(k, mm, owner, _owner_value(k, mm, owner),
                                             gains.get((_key(owner), cid)))
                              for owner in holders[cid])
            flag = "" if bits >> cid & 1 else "  (its bit is clear)"
            lines.append(f"  cid {cid}: {names}{flag}")
            shown += 1
        elif cid in told:
            lines.append(f"  cid {cid}: NO OWNER")
            if tail is None:
                lines.append("      (no mm_cid events: the trace tail is off)")
            else:
                lines.extend(f"      {line}" for line in
                             _orphan_lines(k, mm, cid, _history(records, mm, cid), oldest))
    if orphans[STORIES:]:
        lines.append(f"  cids {_cid_list(orphans[STORIES:])}: NO OWNER either")
    hidden = len(holders) - shown
    if hidden:
        lines.append(f"  ... and {hidden} more cids with an owner")
    return "\n".join(lines)


def cid_reports(k, mms):
    """cid_report() of each of *mms* (at most four), one section each."""
    sections = [cid_report(k, mm) for mm in mms[:4]]
    return "".join(f"\n{s}" for s in sections if s)
