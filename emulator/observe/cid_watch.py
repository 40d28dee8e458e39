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

Reports.  ``cid_report()`` is the section a hard lockup or a P4 violation
adds for an mm: who owns each set bit (a task, with its state, or a CPU
slot), which set bit has no owner and, from the trace tail, when it was last
set, who held it last and the event where that holder dropped it without
clearing the bit.  Those events are pinned (``Tracepoints.pin()``), so the
minimal trace keeps them however old they are in the tail.
"""

import os
import sys

from ..kernel.cpumask import Cpumask, cpus_of
from ..kernel.locking import running_kernel
from ..kernel.task import state_char
from .trace import Fields

# Frames that are not where a cid was stored: this package (the watches, the
# function tracer's wrappers) and the shared-memory primitives.
_OBSERVE = os.path.dirname(os.path.abspath(__file__))
_LOCKING = os.path.join(os.path.dirname(_OBSERVE), "kernel", "locking.py")
_NOT_THE_STORE = (_OBSERVE, _LOCKING)

CID_EVENTS = ("mm_cid_get", "mm_cid_put", "mm_cid_owner")
TABLE_LINES = 16          # a report's owner table lists at most this many cids one by one
STORIES = 4               # and tells how the first this many set bits without an owner lost it


_skipped = {}              # code object -> whether its frames are not where a cid is stored


def stored_in(depth=3):
    """The innermost *depth* kernel functions on the stack, innermost first,
    as seen from an emitter called by a watch's store hook."""
    names = []
    frame = sys._getframe(3)
    while frame is not None:
        code = frame.f_code
        skip = _skipped.get(code)
        if skip is None:
            skip = _skipped[code] = code.co_filename.startswith(_NOT_THE_STORE)
        if not skip:
            names.append(code.co_name)
            if len(names) == depth:
                break
        frame = frame.f_back
    return "<-".join(names) or "?"


def tracing_cids(k):
    """Whether stores to the cid storage are to be watched."""
    tp = k.tp
    return tp.mm_cid_get or tp.mm_cid_put or tp.mm_cid_owner


class Watched:
    """What every watched storage class derives from, besides its own."""

    __slots__ = ()


# -- the bitmap ---------------------------------------------------------------------------------

class WatchedCidmask(Cpumask, Watched):
    """An mm's cid bitmap whose stores emit mm_cid_get and mm_cid_put."""

    __slots__ = ("mm",)

    def __setattr__(self, name, value):
        if name != "bits":
            object.__setattr__(self, name, value)
            return
        old = self.bits
        object.__setattr__(self, name, value)
        if value != old:
            _bits_stored(self.mm, old, value)


def watched_cidmask(mask, mm):
    """*mask* (a Cpumask) as a watched bitmap of *mm*."""
    if isinstance(mask, Watched):
        return mask
    watched = WatchedCidmask.__new__(WatchedCidmask)
    object.__setattr__(watched, "bits", mask.bits)
    object.__setattr__(watched, "mm", mm)
    return watched


def _bits_stored(mm, old, new):
    k = running_kernel()
    if k is None:
        return
    tp = k.tp
    where = None
    for event, bits in (("mm_cid_get", new & ~old), ("mm_cid_put", old & ~new)):
        if bits and getattr(tp, event):
            where = where or stored_in()
            for cid in cpus_of(bits):
                text = Fields(f"mm={mm!r} cid={cid} in={where}")
                text.fields = {"mm": mm, "cid": cid, "where": where}
                tp.emit(event, text)


# -- the owners: a CPU slot, a task ----------------------------------------------------------

_watched_classes = {}


def _slots_of(cls):
    return [name for c in cls.__mro__ for name in getattr(c, "__slots__", ())
            if name not in ("__dict__", "__weakref__")]


def _watched_class(cls, field):
    key = (cls, field)
    watched = _watched_classes.get(key)
    if watched is None:
        def __setattr__(self, name, value):
            if name != field:
                object.__setattr__(self, name, value)
                return
            old = getattr(self, field)
            object.__setattr__(self, name, value)
            if value != old:
                _owner_stored(self._watch_mm, self._watch_owner, self._watch_kind, old, value)
        watched = type(f"watched_{cls.__name__}", (cls, Watched),
                       {"__slots__": ("_watch_mm", "_watch_owner", "_watch_kind"),
                        "__setattr__": __setattr__,
                        "__doc__": f"{cls.__name__} whose stores to .{field} emit mm_cid_owner."})
        _watched_classes[key] = watched
    return watched


def watched_copy(obj, field, mm, owner):
    """A copy of *obj* (a slotted storage object) whose stores to *field*
    emit mm_cid_owner for *owner* (a CPU number, or a task) in *mm* (None:
    the task's mm at the time of the store)."""
    if isinstance(obj, Watched):
        return obj
    cls = _watched_class(type(obj), field)
    copy = cls.__new__(cls)
    for name in _slots_of(type(obj)):
        if hasattr(obj, name):
            object.__setattr__(copy, name, getattr(obj, name))
    object.__setattr__(copy, "_watch_mm", mm)
    object.__setattr__(copy, "_watch_owner", owner)
    object.__setattr__(copy, "_watch_kind", "cpu" if isinstance(owner, int) else "task")
    return copy


class _WatchedTaskField:
    """A task's own field (in its ``__dict__``) whose stores emit
    mm_cid_owner.  It has no ``__get__``: a read finds the instance dict,
    at the cost of a plain attribute."""

    def __init__(self, name):
        self.name = name

    def __set__(self, t, value):
        d = t.__dict__
        old = d.get(self.name)
        d[self.name] = value
        if old is not None and value != old:
            _owner_stored(None, t, "task", old, value)


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


def _owner_stored(mm, owner, kind, old, new):
    k = running_kernel()
    if k is None or not k.tp.mm_cid_owner:
        return
    if mm is None:
        mm = owner.mm
        if mm is None:
            return
    v = k.mm_cid
    lost, got = v.owned_cid(kind, old), v.owned_cid(kind, new)
    if lost == got:
        return
    where = stored_in()
    change = (f" lost={lost}" if lost >= 0 else "") + (f" got={got}" if got >= 0 else "")
    who = f"cpu{owner}" if kind == "cpu" else repr(owner)
    text = Fields(f"mm={mm!r} owner={who} old={v.cid_text(old)} new={v.cid_text(new)}{change} "
                  f"in={where}")
    text.fields = {"mm": mm, "owner": owner, "old": old, "new": new, "lost": lost, "got": got,
                   "where": where}
    k.tp.emit("mm_cid_owner", text)


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
    for r in records:
        fields = r[5].fields
        if fields["mm"] is not mm:
            continue
        event = r[4]
        if event == "mm_cid_owner":
            holders = story["holders"]
            if fields["got"] == cid:
                holders[_key(fields["owner"])] = r
                story["taken"] = r
                story["lost"] = None
            if fields["lost"] == cid:
                holders.pop(_key(fields["owner"]), None)
                if not holders:
                    story["lost"] = r
        elif fields["cid"] == cid:
            # A set starts the story anew; a put ends it (a set comes later
            # if the bit is set now).
            story = {"set": r if event == "mm_cid_get" else None, "taken": None,
                     "lost": None, "holders": {}}
    return story


def _key(owner):
    return owner if isinstance(owner, int) else id(owner)


def _event(r):
    """When and where an event happened, as the orphan lines say it."""
    return f"at {_seconds(r[0])} on CPU {r[1]} ({r[2]}-{r[3]}, in {r[5].fields['where']})"


def _orphan_lines(k, mm, cid, story, oldest):
    tp = k.tp
    lines = []
    what = f"cid {cid} of {mm!r}"
    if story["set"] is not None:
        lines.append(f"set {_event(story['set'])}")
        tp.pin(story["set"], f"{what} set")
    else:
        lines.append(f"set before the oldest event kept ({_seconds(oldest)})")
    taken, lost = story["taken"], story["lost"]
    if taken is not None:
        holder = taken[5].fields["owner"]
        name = repr(holder) if not isinstance(holder, int) else f"CPU {holder}'s slot"
        lines.append(f"last held by {name}, from {_seconds(taken[0])} "
                     f"(in {taken[5].fields['where']})")
        tp.pin(taken, f"{what} taken")
    if lost is not None:
        f = lost[5].fields
        holder = repr(f["owner"]) if not isinstance(f["owner"], int) else f"CPU {f['owner']}'s slot"
        lines.append(f"dropped by {holder} {_event(lost)}: {k.mm_cid.cid_text(f['old'])} -> "
                     f"{k.mm_cid.cid_text(f['new'])}, the bit left set")
        tp.pin(lost, f"{what} lost: the bit left set")
    elif story["holders"]:
        for r in story["holders"].values():
            owner = r[5].fields["owner"]
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
    records = [r for r in (tail or ()) if r[4] in CID_EVENTS and isinstance(r[5], Fields)]
    oldest = tail[0][0] if tail else 0
    gains = {(_key(r[5].fields["owner"]), r[5].fields["got"]): r for r in records
             if r[4] == "mm_cid_owner" and r[5].fields["mm"] is mm}
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
