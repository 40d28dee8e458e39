"""page_alloc seed-002: Mel Gorman, "[PATCH v5 00/7] Drain remote per-cpu
directly" (2022-06-24, on v5.19-rc3), all seven patches: each pcp has a
spinlock (patch 5), a drain takes a remote CPU's pcp->lock and frees its
pages from the draining CPU (patch 6, Nicolas Saenz Julienne), and the
local_lock is replaced by pcp->lock taken with interrupts off and the task
pinned (patch 7): pcp_spin_trylock_irqsave() on the fast paths, falling back
to the buddy lists when the lock is taken (by a remote drainer), and a
blocking pcp_spin_lock_irqsave() in free_unref_page_list().

Copies the v5 posting's rmqueue_pcplist(), free_unref_page(),
free_unref_page_list(), drain_pages_zone() and __drain_all_pages() (checked
against the posting and against v6.0, whose code is the same: see
page_alloc_v6_0.py); the rest is the head's (page_alloc_v5_19.py).

The promise: a drain queues no work on, and sends no IPI to, another CPU
(``isolates_drains``, PA7).  What the target still sees: its trylock fails
while the drainer holds its lock, and its allocation or free goes to
zone->lock instead.  The drain_pages_zone() ``if (pcp->count)`` is read
without the lock (fixed by 66eca1021a42 in v6.11, Fixes: 4b23a68f9536, this
series' patch 5).
"""

from ..checks.invariants import InvariantViolation
from ..kernel.locking import spin_lock_irqsave
from ..kernel.page_alloc import (
    pcp_allowed_order, pcp_spin_lock_irqsave, pcp_spin_trylock_irqsave,
    pcp_spin_unlock_irqrestore, spin_unlock_pcp,
)
from . import register
from .base import Finding
from .page_alloc_v5_19 import SWAP_CLUSTER_MAX, PageAllocV5_19

COUNT_READ_UNLOCKED = "drain_pages_zone() skipped a pcp whose count it read as 0 unlocked, its lock held"

# 66eca1021a42 (Li Zhijian, v6.11, Fixes: 4b23a68f9536, this series' patch 5):
# "It's expected that no page should be left in pcp_list after calling
# zone_pcp_disable() in offline_pages().  Previously, it's observed that
# offline_pages() gets stuck [...] due to some pages remaining in pcp_list."
# The drainer read pcp->count (0) without the lock while another CPU, holding
# it in __rmqueue_pcplist(), was refilling from rmqueue_bulk() and had not yet
# added what it got.  Found by the model's stateful search (a patch's default
# run, PA6) before it was recorded here.
RACE_66eca1021a42 = ("66eca1021a42 (v6.11): drain_pages_zone() reads pcp->count without "
                     "pcp->lock; a refill in progress leaves pages on the pcp after "
                     "zone_pcp_disable()")


@register
class PageAllocSeed002(PageAllocV5_19):
    name = "seed-002"
    copies = "Mel Gorman, [PATCH v5 0/7] Drain remote per-cpu directly (2022-06-24, on v5.19-rc3)"
    isolates_drains = True
    pcp_protection = "pcp->lock"
    known_findings = (
        Finding(InvariantViolation, COUNT_READ_UNLOCKED, RACE_66eca1021a42, invariant="PA6"),
    )

    def rmqueue(self, zone, order, migratetype):
        """A pcp order the pcp cannot serve (its lock is taken) falls through
        to the buddy lists (patch 3's rmqueue_buddy())."""
        if pcp_allowed_order(order):
            pfn = self.rmqueue_pcplist(zone, order, migratetype)
            if pfn is not None:
                return pfn
        return self.k.rmqueue_buddy(zone, order, migratetype)

    def rmqueue_pcplist(self, zone, order, migratetype):
        """Lock and remove page from the per-cpu list."""
        # spin_trylock may fail due to a parallel drain. In the future, the
        # trylock will also protect against IRQ reentrancy.
        pcp, flags = pcp_spin_trylock_irqsave(zone)
        if pcp is None:
            return None
        # On allocation, reduce the number of pages that are batch freed.
        # See nr_pcp_free() where free_factor is increased for subsequent frees.
        pcp.free_factor >>= 1
        pfn = self._rmqueue_pcplist(zone, order, migratetype, pcp)
        pcp_spin_unlock_irqrestore(pcp, flags)
        return pfn

    def free_unref_page(self, pfn, order):
        k = self.k
        migratetype = self.get_pcppage_migratetype(pfn)
        zone = k.page_zone(pfn)
        pcp, flags = pcp_spin_trylock_irqsave(zone)
        if pcp is not None:
            self.free_unref_page_commit(zone, pcp, pfn, migratetype, order)
            pcp_spin_unlock_irqrestore(pcp, flags)
        else:
            k.free_one_page(zone, pfn, order, migratetype)

    def free_unref_page_list(self, pfns):
        """Free a list of 0-order pages: the pcp lock is taken, not tried
        (interrupts off), and retaken on a zone change and every
        SWAP_CLUSTER_MAX pages."""
        k = self.k
        migratetypes = [self.get_pcppage_migratetype(pfn) for pfn in pfns]
        locked_zone = k.page_zone(pfns[0])
        pcp, flags = pcp_spin_lock_irqsave(locked_zone)
        batch_count = 0
        for pfn, migratetype in zip(pfns, migratetypes):
            zone = k.page_zone(pfn)
            # Different zone, different pcp lock.
            if zone is not locked_zone:
                pcp_spin_unlock_irqrestore(pcp, flags)
                locked_zone = zone
                pcp, flags = pcp_spin_lock_irqsave(locked_zone)
            self.free_unref_page_commit(zone, pcp, pfn, migratetype, 0)
            # Guard against excessive IRQ disabled times when we get a large
            # list of pages to free.
            batch_count += 1
            if batch_count == SWAP_CLUSTER_MAX:
                pcp_spin_unlock_irqrestore(pcp, flags)
                batch_count = 0
                pcp, flags = pcp_spin_lock_irqsave(locked_zone)
        pcp_spin_unlock_irqrestore(pcp, flags)

    def drain_pages_zone(self, cpu, zone):
        """Drain pcplists of the indicated processor and zone."""
        pcp = zone.per_cpu_pageset[cpu]
        if pcp.count:                                   # read without the lock
            # See drain_zone_pages on why this is disabling IRQs
            flags = spin_lock_irqsave(pcp.lock)
            self.free_pcppages_bulk(zone, pcp.count, pcp, 0)
            spin_unlock_pcp(pcp)
            self.k.local_irq_restore(flags)
        else:
            self.note_count_read_unlocked(pcp)

    def note_count_read_unlocked(self, pcp):
        """Not kernel code: records the cause of the 66eca1021a42 finding
        when it happens (a skip while a holder may be refilling)."""
        if pcp.lock.owner is not None:
            self.k.causes.add(COUNT_READ_UNLOCKED)

    def drain_cpus(self, cpus_with_pcps, zone):
        """Patch 6: the caller drains every CPU's lists itself."""
        for cpu in cpus_with_pcps:
            if zone is not None:
                self.drain_pages_zone(cpu, zone)
            else:
                self.drain_pages(cpu)
