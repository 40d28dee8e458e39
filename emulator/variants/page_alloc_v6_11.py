"""page_alloc v6.11: v6.2's locking with the drain of 55f77df7d715 (Lucas
Stach, "mm: page_alloc: control latency caused by zone PCP draining", v6.10)
and 66eca1021a42 (Li Zhijian, "mm/page_alloc: fix pcp->count race between
drain_pages_zone() vs __rmqueue_pcplist()", v6.11, Fixes: 4b23a68f9536):
drain_pages_zone() frees at most ``batch << CONFIG_PCP_BATCH_SCALE_MAX``
pages per hold of the remote pcp->lock and reads the count under it.  Its
free_pcppages_bulk() walks the lists round robin with no window of
non-empty lists: a count larger than the lists would spin forever with
zone->lock held (reported here as the hard lockup it would be).  Frees of
page lists are free_unref_folios() of folio batches (at most 31 pages, one
trylock per zone, no SWAP_CLUSTER_MAX relock).

Copies drain_pages_zone(), free_pcppages_bulk() and free_unref_folios() of
v6.11.11's mm/page_alloc.c.  Departure: v6.7's automatic tuning of
pcp->high (high_min/high_max, alloc_factor, free_count, decay_pcp_high())
is not modelled: high, batch and free_factor are v6.2's.
"""

from ..kernel.locking import spin_lock
from ..kernel.page_alloc import NR_PCP_LISTS, pcp_spin_trylock, pcp_spin_unlock, spin_unlock_pcp
from . import register
from .page_alloc_v6_2 import PageAllocV6_2

CONFIG_PCP_BATCH_SCALE_MAX = 5
PAGEVEC_SIZE = 31


@register
class PageAllocV6_11(PageAllocV6_2):
    name = "v6.11"
    copies = "v6.2 + 55f77df7d715 (v6.10), 66eca1021a42 (v6.11): chunked remote drain, count under the lock"

    def drain_pages_zone(self, cpu, zone):
        """Drain pcplists of the indicated processor and zone."""
        pcp = zone.per_cpu_pageset[cpu]
        while True:
            spin_lock(pcp.lock)
            count = pcp.count
            if count:
                to_drain = min(count, pcp.batch << CONFIG_PCP_BATCH_SCALE_MAX)
                self.free_pcppages_bulk(zone, to_drain, pcp, 0)
                count -= to_drain
            spin_unlock_pcp(pcp)
            if not count:
                break

    def next_pcp_list(self, pcp, pindex, window, count):
        """The round robin without its window: relies on pcp->count matching
        the lists."""
        for _ in range(NR_PCP_LISTS + 1):
            pindex += 1
            if pindex > NR_PCP_LISTS - 1:
                pindex = 0
            if pcp.lists[pindex]:
                return pindex
        # Every list is empty with count > 0: the kernel loops here for ever,
        # zone->lock held.
        raise self.k.hard_lockup(f"free_pcppages_bulk() looking for {count} pages on CPU "
                                 f"{pcp.cpu}'s empty pcp lists (pcp->count {pcp.count}), "
                                 f"zone->lock held", "free_pcppages_bulk()")

    def bulk_free_migratetype(self, zone, pfn, pindex):
        return zone.get_pageblock_migratetype(pfn)      # get_pfnblock_migratetype()

    def free_unref_page_list(self, pfns):
        """free_unref_folios() of the pages, PAGEVEC_SIZE at a time (the
        folio_batches of the callers)."""
        for start in range(0, len(pfns), PAGEVEC_SIZE):
            self.free_unref_folios(pfns[start:start + PAGEVEC_SIZE])

    def free_unref_folios(self, pfns):
        k = self.k
        pcp = locked_zone = None
        for pfn in pfns:
            zone = k.page_zone(pfn)
            migratetype = self.get_pcppage_migratetype(pfn)
            # Different zone requires a different pcp lock
            if zone is not locked_zone:
                if pcp is not None:
                    pcp_spin_unlock(pcp)
                    pcp = None
                # trylock is necessary as folios may be getting freed from
                # IRQ or SoftIRQ context after an IO completion.
                pcp = pcp_spin_trylock(zone)
                if pcp is None:
                    k.free_one_page(zone, pfn, 0, migratetype)
                    continue
                locked_zone = zone
            self.free_unref_page_commit(zone, pcp, pfn, migratetype, 0)
        if pcp is not None:
            pcp_spin_unlock(pcp)
