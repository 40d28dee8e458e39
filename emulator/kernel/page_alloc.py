"""mm/page_alloc.c and include/linux/mmzone.h: zones, the buddy allocator, and
the per-cpu page lists (``struct per_cpu_pages``) that the page_alloc
variants protect each in their era's way.

Here is what every era shares: the structures, the buddy free lists under
``zone->lock`` (__free_one_page(), __rmqueue() with its migratetype
fallbacks, rmqueue_buddy(), free_one_page()), the allocation and free entry
points that choose between the per-cpu lists and the buddy lists, and the
callers of a global drain (direct reclaim, alloc_contig_range(), memory
offline).  The per-cpu parts (rmqueue_pcplist(), free_unref_page*(), the bulk
helpers, the drains, zone_pcp_disable()) are the variant's (``k.page_alloc``,
emulator/variants/page_alloc_*.py), called at the kernel's call sites.

A page is its pfn (an int); a block of 2^order pages is its first pfn.  Where
pages are is kept as the kernel keeps it: PageBuddy blocks by order and
migratetype on ``zone.free_area``, pcp pages on the lists of their CPU's
``per_cpu_pages`` (head first, as list_add() puts them), and an allocated
block in the zone's ledger ``zone.allocated`` (pfn -> order: the page's
refcount, one user) until it is freed.

A kernel name with two leading underscores has one here (``_free_one_page``
is __free_one_page()): Python mangles the other spelling inside a class.

Departures, all for run time, none in the locking:
  * One zone per node (ZONE_NORMAL) of ``ZONE_PAGES`` pages, small enough to
    run fast and large enough for pcp refills, bulk frees and fallbacks.
  * CONFIG_TRANSPARENT_HUGEPAGE=n (no THP pcp list), no CMA, no HIGHATOMIC
    reserves, no ISOLATE migratetype: the pcp lists hold orders 0..3 of the
    three PCPTYPES, and a page's pcp migratetype is its pageblock's
    (so I-P8, migratetype fidelity on the trylock fallback, is not modelled).
  * Watermarks are min/low/high of the zone's free buddy pages, fixed at
    boot; no kswapd, and direct reclaim reclaims nothing: its only effect is
    the drain of the per-cpu lists (__alloc_pages_direct_reclaim()'s
    drain_all_pages(NULL) when the retry fails), then the allocation fails.
  * A pageblock's migratetype changes only when __rmqueue_fallback() steals
    it whole (can_steal_fallback(): order >= pageblock_order / 2); the
    partial steals of steal_suitable_fallback() by counting free pages in
    the block are not modelled.
"""

from collections import deque

from ..checks.page_alloc import PA5_pinning_balanced
from ..errors import KernelBug
from . import locking as _locking
from .cpu import CPUHP_PAGE_ALLOC
from .locking import (
    lock_hold_tracked, preempt_disable, preempt_enable, raw_spin_lock, raw_spin_unlock,
    raw_spinlock_t, spin_lock, spin_lock_irqsave, spin_trylock, spin_trylock_irqsave,
    spin_unlock,
)

MAX_ORDER = 11                      # orders 0..MAX_ORDER-1 (v5.19..v6.3 spelling)
PAGE_ALLOC_COSTLY_ORDER = 3
pageblock_order = 9                 # x86-64: HPAGE_PMD_ORDER

MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3                # the types with pcp lists

NR_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)

# fallbacks[]: where __rmqueue_fallback() looks when a type's lists are empty.
fallbacks = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),      # MIGRATE_UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),    # MIGRATE_MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),        # MIGRATE_RECLAIMABLE
)

ZONE_PAGES = 1 << 16                # 256 MiB of 4 KiB pages per node: pcp batch 15

# gfp_t, the bits the model reads.
__GFP_MOVABLE = 0x08
__GFP_RECLAIMABLE = 0x10
__GFP_DIRECT_RECLAIM = 0x400
GFP_KERNEL = __GFP_DIRECT_RECLAIM
GFP_ATOMIC = 0
GFP_HIGHUSER_MOVABLE = __GFP_DIRECT_RECLAIM | __GFP_MOVABLE


def gfpflags_allow_blocking(gfp):
    """(A function, not the flag, inside the mixin: Python would mangle the name.)"""
    return bool(gfp & __GFP_DIRECT_RECLAIM)


def gfp_migratetype(gfp):
    return (gfp & (__GFP_MOVABLE | __GFP_RECLAIMABLE)) >> 3


def pcp_allowed_order(order):
    return order <= PAGE_ALLOC_COSTLY_ORDER


def order_to_pindex(migratetype, order):
    return order * MIGRATE_PCPTYPES + migratetype


def pindex_to_order(pindex):
    return pindex // MIGRATE_PCPTYPES


class per_cpu_pages:
    """struct per_cpu_pages of one (CPU, zone).  ``lock`` is the series'
    pcp->lock (seed 002 patch 5 onwards; head eras never take it)."""

    __slots__ = ("lock", "count", "high", "batch", "free_factor", "lists", "cpu", "zone")

    def __init__(self, zone, cpu):
        self.lock = lock_hold_tracked(raw_spinlock_t(f"pcp{cpu}->lock"))
        self.count = 0                # pages on all lists, in base pages
        self.high = 0                 # the boot pageset: high 0, batch 1
        self.batch = 1
        self.free_factor = 0
        self.lists = [deque() for _ in range(NR_PCP_LISTS)]
        self.cpu = cpu
        self.zone = zone

    def __repr__(self):
        return f"pcp({self.cpu}, {self.zone.name})"


class local_lock_t:
    """local_lock_t (!PREEMPT_RT): interrupts off on this CPU; ``owner`` as
    CONFIG_DEBUG_LOCK_ALLOC keeps it, which the invariants read."""

    __slots__ = ("name", "owner")

    def __init__(self, name):
        self.name = name
        self.owner = None


class zone:
    """struct zone: the buddy free lists by order and migratetype (each an
    insertion-ordered dict of block pfns: list_add() at the head is the
    dict's end), PageBuddy orders, pageblock migratetypes, watermarks and the
    per-CPU pagesets of every possible CPU."""

    def __init__(self, node, start_pfn, nr_pages, nr_cpu_ids):
        self.node = node
        self.name = f"Normal{node}" if node else "Normal"
        self.zone_start_pfn = start_pfn
        self.spanned_pages = nr_pages
        self.managed_pages = nr_pages
        self.lock = lock_hold_tracked(raw_spinlock_t(f"zone{node}->lock"))
        self.free_area = [[{} for _ in range(MIGRATE_PCPTYPES)] for _ in range(MAX_ORDER)]
        self.buddy_order = {}           # pfn -> order of a free PageBuddy block
        self.nr_free_pages = 0          # NR_FREE_PAGES: buddy pages only, not pcp ones
        nr_blocks = -(-nr_pages >> pageblock_order)
        self.pageblock_mt = [MIGRATE_MOVABLE] * nr_blocks
        self.allocated = {}             # pfn -> order: blocks handed out (the ledger)
        # setup_per_zone_wmarks() for a small zone: min_free_kbytes scaled
        # down with the zone (min 1/128 of it), low and high 5/4 and 3/2 of min
        # (departure: the kernel's min_free_kbytes is sqrt(lowmem_kbytes * 16)).
        self.wmark_min = max(16, nr_pages >> 7)
        self.wmark_low = self.wmark_min * 5 // 4
        self.wmark_high = self.wmark_min * 3 // 2
        self.per_cpu_pageset = [per_cpu_pages(self, cpu) for cpu in range(nr_cpu_ids)]
        self.pcp_disabled = False       # between zone_pcp_disable() and zone_pcp_enable()
        self.pageset_high = 0
        self.pageset_batch = 1

    def __repr__(self):
        return f"zone {self.name}"

    def get_pageblock_migratetype(self, pfn):
        return self.pageblock_mt[(pfn - self.zone_start_pfn) >> pageblock_order]

    def set_pageblock_migratetype(self, pfn, mt):
        self.pageblock_mt[(pfn - self.zone_start_pfn) >> pageblock_order] = mt

    def pcp_pages(self):
        return sum(pcp.count for pcp in self.per_cpu_pageset)


class PageAlloc:
    """Mixin: the era-independent page allocator."""

    def page_alloc_init(self):
        """free_area_init() and memblock_free_all() for ``ZONE_PAGES`` per node,
        then setup_per_cpu_pageset(): every possible CPU's pageset gets the
        zone's high and batch (the variant's zone_set_pageset_high_and_batch())."""
        self.zones = []
        # Allocations and frees under way: each holds a block between two
        # places (off a list and not yet in the ledger, or the reverse) while
        # it runs, which PA1 must not count as lost (emulator.checks.page_alloc).
        self.page_alloc_calls = 0
        for node in range(self.nr_node_ids):
            z = zone(node, node * ZONE_PAGES, ZONE_PAGES, self.nr_cpu_ids)
            self.zones.append(z)
            for pfn in range(z.zone_start_pfn, z.zone_start_pfn + ZONE_PAGES, 1 << (MAX_ORDER - 1)):
                self._free_one_page(z, pfn, MAX_ORDER - 1, MIGRATE_MOVABLE)
        self.page_alloc_stats = PageAllocStats()
        self.page_alloc.setup_per_cpu_pageset()
        self.cpuhp_setup_state_nocalls(CPUHP_PAGE_ALLOC, "mm/page_alloc:pcp",
                                       self.page_alloc_cpu_online, self.page_alloc_cpu_dead)

    def page_alloc_cpu_online(self, cpu):
        """CPUHP_PAGE_ALLOC's startup: the zones' pcp high, split among one
        more CPU (zone_pcp_update(zone, 1))."""
        self.page_alloc.page_alloc_cpu_online(cpu)
        return 0

    def page_alloc_cpu_dead(self, cpu):
        """CPUHP_PAGE_ALLOC's teardown, on the control CPU once *cpu* is dead."""
        self.page_alloc.page_alloc_cpu_dead(cpu)
        return 0

    def page_zone(self, pfn):
        return self.zones[pfn // ZONE_PAGES]

    def local_pcps(self):
        """This CPU's pagesets, one per zone."""
        cpu = self.cpu
        return [z.per_cpu_pageset[cpu] for z in self.zones]

    def local_zone(self):
        return self.zones[self.cpu_to_node[self.cpu]]

    # -- the buddy lists, under zone->lock ------------------------------------------------

    def _free_one_page(self, zone, pfn, order, migratetype):
        """Put the block at *pfn* on the buddy lists, merged with its free buddies."""
        base = zone.zone_start_pfn
        buddy_order = zone.buddy_order
        free_area = zone.free_area
        zone.nr_free_pages += 1 << order
        while order < MAX_ORDER - 1:
            buddy = base + ((pfn - base) ^ (1 << order))
            if buddy_order.get(buddy) != order:
                break
            # del_page_from_free_list()
            bmt = self._free_list_of(zone, buddy, order)
            del free_area[order][bmt][buddy]
            del buddy_order[buddy]
            pfn = min(pfn, buddy)
            order += 1
        buddy_order[pfn] = order
        free_area[order][migratetype][pfn] = None

    def _free_list_of(self, zone, pfn, order):
        for mt in range(MIGRATE_PCPTYPES):
            if pfn in zone.free_area[order][mt]:
                return mt
        raise KernelBug(f"BUG: Bad page state: pfn {pfn:#x} is PageBuddy of order {order} "
                        f"on no free list")

    def expand(self, zone, pfn, low, high, migratetype):
        """Split the 2^high block at *pfn* down to 2^low, freeing the upper halves."""
        while high > low:
            high -= 1
            half = pfn + (1 << high)
            zone.buddy_order[half] = high
            zone.free_area[high][migratetype][half] = None
            zone.nr_free_pages += 1 << high

    def _rmqueue_smallest(self, zone, order, migratetype):
        free_area = zone.free_area
        for current in range(order, MAX_ORDER):
            area = free_area[current][migratetype]
            if area:
                pfn = next(reversed(area))          # get_page_from_free_area(): the head
                del area[pfn]
                del zone.buddy_order[pfn]
                zone.nr_free_pages -= 1 << current
                self.expand(zone, pfn, order, current, migratetype)
                return pfn
        return None

    def _rmqueue_fallback(self, zone, order, start_migratetype):
        """Steal the largest free block of a fallback type (find_suitable_fallback()
        from MAX_ORDER-1 down); a block of at least half a pageblock takes its
        pageblock over (can_steal_fallback(), steal_suitable_fallback())."""
        free_area = zone.free_area
        for current in range(MAX_ORDER - 1, order - 1, -1):
            for fallback_mt in fallbacks[start_migratetype]:
                area = free_area[current][fallback_mt]
                if not area:
                    continue
                pfn = next(reversed(area))
                mt = fallback_mt
                if current >= pageblock_order // 2:
                    # steal_suitable_fallback(): the pageblock changes type and
                    # move_freepages_block() moves its free blocks with it.
                    start = pfn & ~((1 << pageblock_order) - 1)
                    end = max(pfn + (1 << current), start + (1 << pageblock_order))
                    self.move_freepages(zone, start, end, start_migratetype)
                    mt = start_migratetype
                self.page_alloc_stats.fallbacks += 1
                return self._rmqueue_smallest(zone, order, mt)
        return None

    def move_freepages(self, zone, start, end, migratetype):
        """move_freepages_block(): the pageblocks of [start, end) become
        *migratetype* and their free blocks move to its lists."""
        for block in range(start, end, 1 << pageblock_order):
            zone.set_pageblock_migratetype(block, migratetype)
        pfn = start
        while pfn < end:
            order = zone.buddy_order.get(pfn)
            if order is None:
                pfn += 1
                continue
            area = zone.free_area[order]
            del area[self._free_list_of(zone, pfn, order)][pfn]
            area[migratetype][pfn] = None
            pfn += 1 << order

    def _rmqueue(self, zone, order, migratetype):
        pfn = self._rmqueue_smallest(zone, order, migratetype)
        if pfn is None:
            pfn = self._rmqueue_fallback(zone, order, migratetype)
        return pfn

    def rmqueue_buddy(self, zone, order, migratetype):
        """The allocation of an order the pcp lists do not hold, or of a pcp
        order whose pcp was locked (seed 002 onwards): zone->lock, irqsave in
        every era."""
        flags = self.local_irq_save()
        raw_spin_lock(zone.lock)
        pfn = self._rmqueue(zone, order, migratetype)
        raw_spin_unlock(zone.lock)
        self.local_irq_restore(flags)
        self.page_alloc_stats.buddy_allocs += 1
        return pfn

    def free_one_page(self, zone, pfn, order, migratetype):
        flags = self.local_irq_save()
        raw_spin_lock(zone.lock)
        self._free_one_page(zone, pfn, order, migratetype)
        raw_spin_unlock(zone.lock)
        self.local_irq_restore(flags)

    # -- the entry points -------------------------------------------------------------------

    def alloc_pages(self, gfp, order):
        self.page_alloc_calls += 1
        try:
            return self._alloc_pages(gfp, order)
        finally:
            self.page_alloc_calls -= 1

    def _alloc_pages(self, gfp, order):
        """__alloc_pages(): a block of 2^*order* pages (its pfn), or None.

        get_page_from_freelist() on the local node's zone, checked against
        its min watermark; on failure with __GFP_DIRECT_RECLAIM the slow
        path's __alloc_pages_direct_reclaim().  Departure: reclaim frees
        nothing (no LRU, no page cache) but is taken to have made progress,
        so that the retry after it drains the per-cpu lists
        (drain_all_pages(NULL) once) as the kernel does after a reclaim that
        freed pages others took; then the allocation fails (no OOM killer,
        no further retries)."""
        if not 0 <= order < MAX_ORDER:
            raise KernelBug(f"WARNING: __alloc_pages() order {order} >= MAX_ORDER")
        zone = self.local_zone()
        migratetype = gfp_migratetype(gfp)
        before = self.pinning()
        pfn = self.get_page_from_freelist(zone, gfp, order, migratetype)
        if pfn is None and gfpflags_allow_blocking(gfp):
            self.might_sleep()
            self.page_alloc_stats.direct_reclaims += 1
            # __alloc_pages_direct_reclaim(): "If an allocation failed after
            # direct reclaim, it could be because pages are pinned on the
            # per-cpu lists or in high alloc reserves. Shrink them and try again"
            self.page_alloc.drain_all_pages(None)
            pfn = self.get_page_from_freelist(zone, gfp, order, migratetype)
        if self.invariants is not None:
            PA5_pinning_balanced(self, "__alloc_pages()", before, self.pinning())
        if pfn is None:
            self.page_alloc_stats.failed += 1
            return None
        zone.allocated[pfn] = order
        return pfn

    def get_page_from_freelist(self, zone, gfp, order, migratetype):
        # zone_watermark_fast(): the zone's free buddy pages (NR_FREE_PAGES,
        # which pcp pages are not) must stay above its min watermark.
        if zone.nr_free_pages - (1 << order) < zone.wmark_min:
            return None
        return self.rmqueue(zone, order, migratetype)

    def rmqueue(self, zone, order, migratetype):
        rq = self.rqs[self.cpu]
        before = rq.irqs_off_ns
        pfn = self.page_alloc.rmqueue(zone, order, migratetype)
        self._irqs_off_of_op(rq, before)
        return pfn

    def _irqs_off_of_op(self, rq, before):
        """Interrupts-off time of an allocator operation that ran on *rq*'s CPU."""
        if self.cpu == rq.cpu and not self.in_irq:
            stats = self.page_alloc_stats
            stats.irqs_off_ns += rq.irqs_off_ns - before
            stats.irqs_off_ops += 1

    def _free_pages(self, pfn, order):
        """The last reference to the block at *pfn* goes: free_the_page()."""
        self.page_alloc_calls += 1
        try:
            self.free_the_page(pfn, order)
        finally:
            self.page_alloc_calls -= 1

    def free_the_page(self, pfn, order):
        zone = self.page_zone(pfn)
        self.free_pages_prepare(zone, pfn, order)
        before = self.pinning()
        rq = self.rqs[self.cpu]
        irqs_off = rq.irqs_off_ns
        if pcp_allowed_order(order):
            self.page_alloc.free_unref_page(pfn, order)
            self._irqs_off_of_op(rq, irqs_off)
        else:
            self.free_one_page(zone, pfn, order, zone.get_pageblock_migratetype(pfn))
        if self.invariants is not None:
            PA5_pinning_balanced(self, "__free_pages()", before, self.pinning())

    def free_pages_prepare(self, zone, pfn, order):
        """The page must be allocated, once (bad_page() otherwise)."""
        if zone.allocated.get(pfn) != order:
            raise KernelBug(f"BUG: Bad page state in process {self.cur.comm} pfn:{pfn:#x}: "
                            f"freeing a block of order {order} that is not allocated "
                            f"(allocated as {zone.allocated.get(pfn)})")
        del zone.allocated[pfn]

    def release_pages(self, pfns):
        """release_pages() of order-0 pages (exit_mmap(), munmap(), an I/O
        completion): free_unref_page_list() of those whose last reference went."""
        self.page_alloc_calls += 1
        try:
            self._release_pages(pfns)
        finally:
            self.page_alloc_calls -= 1

    def _release_pages(self, pfns):
        for pfn in pfns:
            self.free_pages_prepare(self.page_zone(pfn), pfn, 0)
        if pfns:
            before = self.pinning()
            self.page_alloc.free_unref_page_list(list(pfns))
            if self.invariants is not None:
                PA5_pinning_balanced(self, "free_unref_page_list()", before, self.pinning())

    def page_alloc_drained(self, start):
        """A drain_all_pages() that started at *start* returns."""
        stats = self.page_alloc_stats
        took = self.engine.now - start
        stats.drains += 1
        stats.drain_ns += took
        stats.drain_max_ns = max(stats.drain_max_ns, took)

    def pinning(self):
        """What an allocator call must leave as it found it (PA5)."""
        if self.in_irq:
            return (0, 0, self.rqs[self.cpu].irqs_disabled)
        t = self.cur
        return (t.preempt_count, t.migration_disabled, self.rqs[self.cpu].irqs_disabled)

    # -- global drains: their callers ---------------------------------------------------------

    def alloc_contig_range(self, zone):
        """alloc_contig_range()'s drain after isolating the range: the pages
        must leave the pcp lists for the range to be migrated (the isolation
        and migration are not modelled)."""
        self.page_alloc.drain_all_pages(zone)

    def offline_pages(self, zone):
        """offline_pages(): zone_pcp_disable() (high 0, batch 1, every CPU's
        pcp drained), the range isolated and migrated (not modelled), then
        zone_pcp_enable().  A failed offline enables it again as well."""
        self.page_alloc.zone_pcp_disable(zone)
        if self.invariants is not None:
            self.invariants.pcp_drained(zone)
        self.page_alloc.zone_pcp_enable(zone)


class PageAllocStats:
    """The allocator's counters for --stats and reports."""

    __slots__ = ("buddy_allocs", "fallbacks", "direct_reclaims", "failed", "trylock_failures",
                 "drains", "drain_ns", "drain_max_ns", "drain_work", "irqs_off_ns",
                 "irqs_off_ops")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)
        self.drain_work = {}            # cpu -> drain work items run there

    def as_stats(self, k):
        """The --stats lines of the page allocator."""
        drains = max(1, self.drains)
        pcp_hold = max((pcp.lock.max_hold for z in k.zones for pcp in z.per_cpu_pageset), default=0)
        zone_hold = max((z.lock.max_hold for z in k.zones), default=0)
        return {
            "pcp_drains": self.drains,
            "pcp_drain_avg_us": self.drain_ns / drains / 1000,
            "pcp_drain_max_us": self.drain_max_ns / 1000,
            "pcp_drain_work_items": " ".join(f"cpu{cpu}={n}" for cpu, n in
                                             sorted(self.drain_work.items())) or "0",
            "pcp_trylock_failures": self.trylock_failures,
            "buddy_allocs": self.buddy_allocs,
            "pcp_lock_max_hold_us": pcp_hold / 1000,
            "zone_lock_max_hold_us": zone_hold / 1000,
            "irqs_off_ns_per_pcp_op": self.irqs_off_ns / max(1, self.irqs_off_ops),
            "page_alloc_failures": self.failed,
        }


# -- pcp list changes (list_add(), list_del()), checked against the era's protection ----------
#
# The variants change pcp lists only through these, as the kernel does through
# the list helpers; with the invariants on, each change is checked (PA3).

def _changed(pcp):
    k = _locking._machine
    if k.invariants is not None:
        k.invariants.pcp_list_changed(pcp)


def pcp_list_add(pcp, pindex, pfn):
    """list_add(&page->pcp_list, &pcp->lists[pindex]): at the head."""
    _changed(pcp)
    pcp.lists[pindex].appendleft(pfn)


def pcp_list_add_tail(pcp, pindex, pfn):
    _changed(pcp)
    pcp.lists[pindex].append(pfn)


def pcp_list_del_first(pcp, pindex):
    """list_first_entry() and list_del(): the page an allocation takes."""
    _changed(pcp)
    return pcp.lists[pindex].popleft()


def pcp_list_del_last(pcp, pindex):
    """list_last_entry() and list_del(): the page free_pcppages_bulk() frees."""
    _changed(pcp)
    return pcp.lists[pindex].pop()


# -- local_lock_t (head) and the series' pcp_spin_* helpers (mm/page_alloc.c macros) ------------

def local_lock_irqsave(lock):
    """local_lock_irqsave() on !PREEMPT_RT: interrupts off on this CPU, and the
    lock's owner recorded (CONFIG_DEBUG_LOCK_ALLOC's local_lock_acquire())."""
    k = _locking._machine
    flags = k.local_irq_save()
    if lock.owner is not None:
        raise KernelBug(f"BUG: {lock.name} taken on CPU {k.cpu} while held by {lock.owner!r}")
    lock.owner = k.lock_holder()
    if _locking._memory is not None:      # ACQUIRE, as locking.py's locks (memory_model.py)
        _locking._memory.lock_acquired(k.cpu, lock)
    return flags


def local_unlock_irqrestore(lock, flags):
    k = _locking._machine
    if k.invariants is not None:
        k.invariants.pcp_released(k.local_pcps(), k.page_alloc)
    if _locking._memory is not None:      # RELEASE
        _locking._memory.lock_releasing(k.cpu, lock)
    lock.owner = None
    k.local_irq_restore(flags)


def pcpu_task_pin():
    """preempt_disable() on !PREEMPT_RT (migrate_disable() on RT)."""
    preempt_disable()


def pcpu_task_unpin():
    preempt_enable()


def pcp_spin_lock_irqsave(zone):
    """pcpu_spin_lock_irqsave(struct per_cpu_pages, lock, zone->per_cpu_pageset,
    flags): pin, this_cpu_ptr(), spin_lock_irqsave(&pcp->lock).  (pcp, flags)."""
    k = _locking._machine
    pcpu_task_pin()
    pcp = zone.per_cpu_pageset[k.cpu]
    return pcp, spin_lock_irqsave(pcp.lock)


def pcp_spin_trylock_irqsave(zone):
    """As pcp_spin_lock_irqsave() with spin_trylock_irqsave(): (None, None)
    and unpinned if the lock is taken."""
    k = _locking._machine
    pcpu_task_pin()
    pcp = zone.per_cpu_pageset[k.cpu]
    taken, flags = spin_trylock_irqsave(pcp.lock)
    if not taken:
        pcpu_task_unpin()
        k.page_alloc_stats.trylock_failures += 1
        return None, None
    return pcp, flags


def pcp_spin_unlock_irqrestore(pcp, flags):
    spin_unlock_pcp(pcp)
    _locking._machine.local_irq_restore(flags)
    pcpu_task_unpin()


def pcp_spin_lock(zone):
    """pcpu_spin_lock() (v6.2 onwards, interrupts left on): pin, this_cpu_ptr(),
    spin_lock(&pcp->lock)."""
    k = _locking._machine
    pcpu_task_pin()
    pcp = zone.per_cpu_pageset[k.cpu]
    spin_lock(pcp.lock)
    return pcp


def pcp_spin_trylock(zone):
    k = _locking._machine
    pcpu_task_pin()
    pcp = zone.per_cpu_pageset[k.cpu]
    if not spin_trylock(pcp.lock):
        pcpu_task_unpin()
        k.page_alloc_stats.trylock_failures += 1
        return None
    return pcp


def pcp_spin_unlock(pcp):
    spin_unlock_pcp(pcp)
    pcpu_task_unpin()


def spin_unlock_pcp(pcp):
    """spin_unlock(&pcp->lock), remote lockers' included: the lists are
    whole again (PA2) as the lock goes."""
    k = _locking._machine
    if k.invariants is not None:
        k.invariants.pcp_released((pcp,), k.page_alloc)
    spin_unlock(pcp.lock)
