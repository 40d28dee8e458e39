"""page_alloc v6.2: 574907741599 "mm/page_alloc: leave IRQs enabled for
per-cpu page allocations" and a4bafffb5dc5 "simplify locking during
free_unref_page_list" (with c3e58a70425a "always remove pages from temporary
list").  pcp->lock is taken with interrupts on: pcp_spin_trylock() on every
path that can run in interrupt context, an interrupt on the CPU holding its
own pcp lock fails the trylock and goes to the buddy lists, and interrupts
are off only inside zone->lock (spin_lock_irqsave() in rmqueue_bulk() and
free_pcppages_bulk()).  The drain takes a remote pcp->lock with plain
spin_lock(); its ``if (pcp->count)`` is still read without the lock.

Copies mm/page_alloc.c of v6.2 (checked against 6.2.12) for
rmqueue_pcplist(), free_unref_page(), free_unref_page_list(),
rmqueue_bulk(), free_pcppages_bulk()'s zone->lock, drain_pages_zone();
the rest is seed 002's.  Departure: 7b086755fb8c's bug (a CMA or
HIGHATOMIC page freed to the MOVABLE buddy list on the trylock fallback) is
present in v6.2 but cannot show, the model having neither type.
"""

from ..kernel.locking import spin_lock, spin_lock_irqsave, spin_unlock_irqrestore
from ..kernel.page_alloc import pcp_spin_trylock, pcp_spin_unlock, spin_unlock_pcp
from . import register
from .page_alloc_v5_19 import SWAP_CLUSTER_MAX
from .page_alloc_v6_0 import PageAllocV6_0


@register
class PageAllocV6_2(PageAllocV6_0):
    name = "v6.2"
    copies = "574907741599, a4bafffb5dc5 (v6.2): pcp->lock with interrupts on, trylock fallbacks"

    def rmqueue_pcplist(self, zone, order, migratetype):
        # spin_trylock may fail due to a parallel drain or IRQ reentrancy.
        pcp = pcp_spin_trylock(zone)
        if pcp is None:
            return None
        pcp.free_factor >>= 1
        pfn = self._rmqueue_pcplist(zone, order, migratetype, pcp)
        pcp_spin_unlock(pcp)
        return pfn

    def rmqueue_bulk(self, zone, order, count, pcp, pindex, migratetype):
        flags = spin_lock_irqsave(zone.lock)
        allocated = self._rmqueue_bulk_locked(zone, order, count, pcp, pindex, migratetype)
        spin_unlock_irqrestore(zone.lock, flags)
        return allocated

    def zone_lock_for_bulk(self, zone):
        return spin_lock_irqsave(zone.lock)

    def zone_unlock_for_bulk(self, zone, flags):
        spin_unlock_irqrestore(zone.lock, flags)

    def free_unref_page(self, pfn, order):
        k = self.k
        migratetype = self.get_pcppage_migratetype(pfn)
        zone = k.page_zone(pfn)
        pcp = pcp_spin_trylock(zone)
        if pcp is not None:
            self.free_unref_page_commit(zone, pcp, pfn, migratetype, order)
            pcp_spin_unlock(pcp)
        else:
            k.free_one_page(zone, pfn, order, migratetype)

    def free_unref_page_list(self, pfns):
        k = self.k
        migratetypes = [self.get_pcppage_migratetype(pfn) for pfn in pfns]
        pcp = locked_zone = None
        batch_count = 0
        for pfn, migratetype in zip(pfns, migratetypes):
            zone = k.page_zone(pfn)
            # Different zone requires a different pcp lock
            if zone is not locked_zone or batch_count == SWAP_CLUSTER_MAX:
                if pcp is not None:
                    pcp_spin_unlock(pcp)
                batch_count = 0
                # trylock is necessary as pages may be getting freed from IRQ
                # or SoftIRQ context after an IO completion.
                pcp = pcp_spin_trylock(zone)
                if pcp is None:
                    k.free_one_page(zone, pfn, 0, migratetype)
                    locked_zone = None
                    continue
                locked_zone = zone
            self.free_unref_page_commit(zone, pcp, pfn, migratetype, 0)
            batch_count += 1
        if pcp is not None:
            pcp_spin_unlock(pcp)

    def drain_pages_zone(self, cpu, zone):
        pcp = zone.per_cpu_pageset[cpu]
        if pcp.count:                                   # read without the lock
            spin_lock(pcp.lock)
            self.free_pcppages_bulk(zone, pcp.count, pcp, 0)
            spin_unlock_pcp(pcp)
        else:
            self.note_count_read_unlocked(pcp)
