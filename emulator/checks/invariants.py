"""The mm_cid invariants, as named functions checked while the machine runs.

    P1  uniqueness: two tasks of one mm running at the same time never have the
        same concurrency id (checked after every context switch and whenever
        the kernel writes an id to user space);
    P2  bound: every id user space sees is below the era's bound
        (``variant.cid_bound(mm)``: nr_cpu_ids, the mm's allowed CPUs, the
        possible CPUs);
    P3  visibility: rseq->mm_cid (and cpu_id, node_id) is written only by
        rseq_update_cpu_node_id() on the way back to user space, or reset at
        unregistration;
    P4  no orphan: once the machine is quiet (every user task gone), no bit of
        a live mm's cid bitmap is set without an owner (a task or a CPU slot,
        ``variant.cid_owners(mm)``);
    P5  progress: no CPU spins forever looking for an id (the hard-lockup
        detector of cpu_relax() and spinlocks, kernel/sched/core.py);
    P6  no use after free: nothing touches an mm after __mmdrop(), its delayed
        work and timers included (checks/kasan.py);
    P11 held: the id a running task takes back to user space is set in its
        mm's cid bitmap (P4's converse: a clear bit is an id the next
        allocation may hand to another task; checked where P1 is, in the
        eras that keep a bitmap).

The page allocator's PA1..PA7 are in checks/page_alloc.py.
The lazy-TLB invariants (P6 at the free, P8-P10) are in checks/lazy_tlb.py.

A violation stops the run with the invariant's name, the state that breaks
it, and (added by the machine) the trace tail and the replay command.
``Machine(invariants=False)`` switches P1-P4 and P11 off (and lockdep, P7).
"""

from ..errors import InvariantViolation
from .lazy_tlb import lazy_tlb_at_quiet
from .page_alloc import PageAllocInvariants


def exposes_cid(k, t):
    """Whether *t* can take its cid back to user space: not a task in do_exit()
    (which never returns) nor one inside execve() (between the before and
    after hooks its cid is being given back and taken anew)."""
    return not t.in_do_exit and not t.in_execve and k.mm_cid.cid_active(t)


def P1_unique_cid_among_running_tasks(k, mm, cpu, t, other_cpu, indexed):
    """*t*, running on *cpu*, must not share its cid with the task of *mm*
    running on *other_cpu* (the index's candidate, verified on live state).

    *indexed* is the task the index last saw switched in on *other_cpu*: if
    that CPU's rq->curr is another task, that CPU is between the store to
    rq->curr and switch_mm_cid() (a weakly ordered or postponed path makes
    that window wide), and its new task's cid field still holds what it had
    when it last ran; it is checked against the others once switched in."""
    v = k.mm_cid
    other = k.rqs[other_cpu].curr
    if other is not indexed:
        return
    cid = v.task_mm_cid(t)
    if other is not t and other.mm is mm and exposes_cid(k, other) and v.task_mm_cid(other) == cid:
        raise InvariantViolation(
            f"P1 uniqueness: {mm!r}: {t!r} on CPU {cpu} and {other!r} on CPU {other_cpu} "
            f"both run with mm_cid {cid}", _state(k), "P1")


def P2_cid_within_bound(k, t, mm_cid):
    """The id user space sees is below the era's bound."""
    bound = k.mm_cid.cid_bound(t.mm)
    if not 0 <= mm_cid < bound:
        raise InvariantViolation(
            f"P2 bound: {t!r} on CPU {t.cpu} sees mm_cid {mm_cid}, outside [0, {bound}) "
            f"({k.mm_cid.name})", _state(k), "P2", mm_cid=mm_cid)


def P3_rseq_written_by_the_kernel_update(k, area, field):
    """Raised when rseq fields are written outside the kernel's rseq update."""
    raise InvariantViolation(
        f"P3 visibility: {area!r}.{field} written outside rseq_update_cpu_node_id() "
        f"(by {k.cur!r} on CPU {k.cpu}, in_irq={k.in_irq})", _state(k), "P3")


def P4_no_orphan_cid_bits(k):
    """Every set bit of a live mm's bitmap has an owner.  The report adds the
    mm's owner table and, for each orphan, the events that lost it
    (observe/cid_watch.py; the minimal trace keeps them)."""
    v = k.mm_cid
    for mm in list(k.live_mms.values()):
        owners = v.cid_owners(mm)
        if owners is None:
            continue
        bits = v.cidmask_bits(mm)
        mask = 0
        for cid in owners:
            mask |= 1 << cid
        orphans = bits & ~mask
        if orphans:
            from ..kernel.cpumask import cpus_of
            from ..observe.cid_watch import cid_report
            raise InvariantViolation(
                f"P4 no orphan: {mm!r} has cid bits {cpus_of(orphans)} set with no owner "
                f"(owners: {sorted(owners)})", f"{_state(k)}\n{cid_report(k, mm)}", "P4")


def P11_cid_held_in_bitmap(k, mm, cpu, t, cid):
    """*t*, running on *cpu*, exposes *cid*, which must be set in *mm*'s bitmap."""
    if not k.mm_cid.cidmask_bits(mm) >> cid & 1:
        from ..observe.cid_watch import cid_report
        raise InvariantViolation(
            f"P11 held: {t!r} on CPU {cpu} runs with mm_cid {cid} of {mm!r}, which is not set "
            f"in its cid bitmap (another task may be given it)",
            f"{_state(k)}\n{cid_report(k, mm)}", "P11")


def _state(k):
    return "CPU states:\n" + k.cpu_states()


class Invariants(PageAllocInvariants):
    """Indexes the cid of the task running on each CPU, per mm, and calls the
    checks at their points.  A running task's cid changes only when it is
    switched in or execs (and its rseq area is then updated), so the index is
    refreshed there; a suspected duplicate is verified on live state."""

    def __init__(self, kernel):
        self.k = kernel
        self.cid_cpu = {}                      # mm -> {cid: cpu}
        self.cpu_entry = [None] * kernel.nr_cpu_ids   # cpu -> (mm, cid, task)

    def _unindex(self, cpu):
        entry = self.cpu_entry[cpu]
        if entry is not None:
            mm, cid, _ = entry
            index = self.cid_cpu.get(mm)
            if index is not None and index.get(cid) == cpu:
                del index[cid]
                if not index:
                    del self.cid_cpu[mm]
            self.cpu_entry[cpu] = None

    def index(self, cpu, t):
        """*t* runs on *cpu* now: check it against the others and index it."""
        self._unindex(cpu)
        mm = t.mm
        v = self.k.mm_cid
        if mm is None or t.user is None or not exposes_cid(self.k, t):
            return
        cid = v.task_mm_cid(t)
        if v.keeps_cid_bitmap:
            P11_cid_held_in_bitmap(self.k, mm, cpu, t, cid)
        index = self.cid_cpu.setdefault(mm, {})
        other_cpu = index.get(cid)
        if other_cpu is not None and other_cpu != cpu:
            P1_unique_cid_among_running_tasks(self.k, mm, cpu, t, other_cpu,
                                              self.cpu_entry[other_cpu][2])
        index[cid] = cpu
        self.cpu_entry[cpu] = (mm, cid, t)

    def after_switch(self, rq, prev, next):
        self.index(rq.cpu, next)

    def on_rseq_update(self, t, mm_cid):
        P2_cid_within_bound(self.k, t, mm_cid)
        self.index(t.cpu, t)

    def at_quiet(self):
        P4_no_orphan_cid_bits(self.k)
        lazy_tlb_at_quiet(self.k)
        self.page_alloc_quiet()
