"""The page allocator's invariants (seed 002), named PA1..PA7 and reported as
the mm_cid ones are (InvariantViolation with ``invariant="PA3"``).

  PA1 conservation: every page of a zone is in exactly one place, a buddy
      free list, one pcp list, or allocated (the zone's ledger).  Checked when
      the machine is quiet (a page being moved is in none while it moves).
  PA2 count consistency: when its protection is released, a pcp's count is
      the pages on its lists (each list's length << its order), and >= 0.
  PA3 mutual exclusion: a pcp list changes only in the context holding what
      the era protects it with: pcp->lock (seed 002 onwards), or the
      owning CPU's pagesets.lock with interrupts off (head); an offline CPU's
      lists may be drained by anyone (page_alloc_cpu_dead()).
  PA4 no same-CPU nesting on one lock: an interrupt spinning on a lock its
      own CPU's interrupted path holds is the hard lockup ("spinning on
      pcpN->lock in interrupt context"), reported by the lock model; a
      local_lock taken twice on a CPU is a KernelBug.
  PA5 balanced pinning: an allocation or free returns with the preemption
      count, the migrate-disable depth and the interrupt state it came with.
  PA6 drain completeness: after zone_pcp_disable() returns, and while it is
      in force, no online CPU's pcp of the zone holds a page when its lock
      goes.
  PA7 isolation, where the era promises it (``isolates_drains``): no drain
      runs as a work item (drain_local_pages_wq(), the head's way, which a
      patch deriving from seed 002 would reuse to bring work items back).
"""

from operator import lshift

from ..errors import InvariantViolation


def PA1_conservation(k, zone):
    """Every pfn of *zone* in exactly one place: the blocks of every place,
    sorted, neither overlap nor leave a hole."""
    blocks = []
    problems = []
    for order, by_mt in enumerate(zone.free_area):
        for area in by_mt:
            for pfn in area:
                if zone.buddy_order.get(pfn) != order:
                    problems.append(f"pfn {pfn:#x} on the order-{order} free list has buddy "
                                    f"order {zone.buddy_order.get(pfn)}")
                blocks.append((pfn, order, f"free in the buddy (order {order})"))
    for pcp in zone.per_cpu_pageset:
        for pindex, lst in enumerate(pcp.lists):
            order = pindex // 3
            for pfn in lst:
                blocks.append((pfn, order, f"on CPU {pcp.cpu}'s pcp list {pindex}"))
    for pfn, order in zone.allocated.items():
        blocks.append((pfn, order, f"allocated (order {order})"))
    blocks.sort()
    expect = zone.zone_start_pfn
    last = "the zone's start"
    for pfn, order, place in blocks:
        if pfn < expect:
            problems.append(f"pfn {pfn:#x} is both {place} and {last}")
        elif pfn > expect:
            problems.append(f"{pfn - expect} pages from pfn {expect:#x} are nowhere "
                            f"(after {last})")
        expect = max(expect, pfn + (1 << order))
        last = f"{place} at pfn {pfn:#x}"
    end = zone.zone_start_pfn + zone.spanned_pages
    if expect < end:
        problems.append(f"{end - expect} pages from pfn {expect:#x} are nowhere (after {last})")
    if problems:
        raise InvariantViolation(
            f"PA1 violated: pages of {zone!r} are lost or in two places: {problems[0]}",
            "\n".join(problems[:8]) + "\n" + _pcp_state(k, zone), invariant="PA1")


# pindex // 3, the order of list pindex (one pass in C instead of a generator:
# PA2 runs at every release of a pcp lock).
# (the kernel's NR_PCP_LISTS is 12 to 15: a longer array takes the generator)
_PINDEX_ORDER = tuple(pindex // 3 for pindex in range(64))


def PA2_pcp_count_matches_lists(k, pcp):
    lists = pcp.lists
    if len(lists) <= len(_PINDEX_ORDER):
        pages = sum(map(lshift, map(len, lists), _PINDEX_ORDER))
    else:
        pages = sum(len(lst) << (pindex // 3) for pindex, lst in enumerate(lists))
    if pcp.count != pages or pcp.count < 0:
        raise InvariantViolation(
            f"PA2 violated: CPU {pcp.cpu}'s pcp count is {pcp.count} with {pages} pages on its "
            f"lists, as its lock is released on CPU {k.cpu} by {k.lock_holder()!r}",
            _pcp_state(k, pcp.zone), invariant="PA2")


def PA3_pcp_list_changed_under_its_protection(k, pcp, protection, local_locks):
    holder = k.lock_holder()
    if not k.online_mask >> pcp.cpu & 1:
        return                                  # a dead CPU's lists
    if protection == "pcp->lock":
        if pcp.lock.owner is holder or pcp.lock.owner == holder:
            return
        held = f"pcp->lock is held by {pcp.lock.owner!r}"
    else:
        lock = local_locks[pcp.cpu]
        if k.cpu == pcp.cpu and (lock.owner is holder or lock.owner == holder) and \
                k.irqs_disabled():
            return
        held = f"its pagesets.lock is held by {lock.owner!r}"
    raise InvariantViolation(
        f"PA3 violated: CPU {pcp.cpu}'s pcp list changed by {holder!r} on CPU {k.cpu}, "
        f"which does not hold what protects it ({protection}): {held}",
        _pcp_state(k, pcp.zone), invariant="PA3")


def PA5_pinning_balanced(k, what, before, after):
    if before != after:
        raise InvariantViolation(
            f"PA5 violated: {what} on CPU {k.cpu} returned with (preempt count, migrate-disable "
            f"depth, interrupts off) {after}, not {before}", invariant="PA5")


def PA6_drained_while_disabled(k, pcp):
    if pcp.zone.pcp_disabled and pcp.count and k.online_mask >> pcp.cpu & 1:
        raise InvariantViolation(
            f"PA6 violated: CPU {pcp.cpu}'s pcp of {pcp.zone!r} holds {pcp.count} pages while "
            f"zone_pcp_disable() is in force", _pcp_state(k, pcp.zone), invariant="PA6")


def PA7_no_drain_work_on_another_cpu(k, cpu):
    raise InvariantViolation(
        f"PA7 violated: a pcp drain ran as work on CPU {cpu}, which the era "
        f"({k.page_alloc.name}) promises never to interrupt", invariant="PA7")


def _pcp_state(k, zone):
    lines = [f"{zone!r}: {zone.nr_free_pages} free buddy pages, {len(zone.allocated)} allocated "
             f"blocks, pcp high {zone.pageset_high} batch {zone.pageset_batch}"
             f"{' (pcp disabled)' if zone.pcp_disabled else ''}"]
    for pcp in zone.per_cpu_pageset:
        if pcp.count or pcp.lock.owner is not None or any(pcp.lists):
            lines.append(f"  CPU {pcp.cpu}: count {pcp.count}, lists "
                         f"{[len(lst) for lst in pcp.lists]}, lock held by {pcp.lock.owner!r}")
    return "\n".join(lines)


class PageAllocInvariants:
    """Mixin of Invariants: the page allocator's check points."""

    def pcp_list_changed(self, pcp):
        v = self.k.page_alloc
        PA3_pcp_list_changed_under_its_protection(self.k, pcp, v.pcp_protection,
                                                  getattr(v, "pagesets_lock", None))

    def pcp_released(self, pcps, v):
        for pcp in pcps:
            PA2_pcp_count_matches_lists(self.k, pcp)
            PA6_drained_while_disabled(self.k, pcp)

    def pcp_drained(self, zone):
        """zone_pcp_disable() has returned: every pcp not inside a critical
        section now is empty (one inside is checked as its lock goes).  (Not
        PA1: other CPUs may be in the middle of an allocation, a page between
        two lists.)"""
        local_locks = getattr(self.k.page_alloc, "pagesets_lock", None)
        for pcp in zone.per_cpu_pageset:
            if pcp.lock.owner is None and (local_locks is None or
                                           local_locks[pcp.cpu].owner is None):
                PA6_drained_while_disabled(self.k, pcp)

    def pcp_drain_work(self, v):
        if v.isolates_drains:
            PA7_no_drain_work_on_another_cpu(self.k, self.k.cpu)

    def page_alloc_quiet(self):
        k = self.k
        if pages_in_motion(k):
            return
        for zone in getattr(k, "zones", ()):
            PA1_conservation(k, zone)


def pages_in_motion(k):
    """Whether a block may be between two places: an allocation or free under
    way, or a zone or pcp lock held (a drain moving pages).  A run ends when
    its last user task does, and a kernel path (a work item's final mmdrop()
    freeing the page tables) may be in the middle of one then; PA1 is checked
    only where none is."""
    if getattr(k, "page_alloc_calls", 0):
        return True
    local_locks = getattr(getattr(k, "page_alloc", None), "pagesets_lock", None) or ()
    return any(lock.owner is not None for lock in local_locks) or any(
        zone.lock.owner is not None or any(pcp.lock.owner is not None
                                           for pcp in zone.per_cpu_pageset)
        for zone in getattr(k, "zones", ()))
