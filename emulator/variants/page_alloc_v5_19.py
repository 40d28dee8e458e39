"""page_alloc v5.19: the head before seed 002.  The per-cpu lists are
protected by ``pagesets.lock``, a local_lock_t: interrupts off on the owning
CPU, so only that CPU may touch its lists, and a drain of another CPU's lists
is a work item queued on that CPU (mm_percpu_wq) and flushed.

Copies mm/page_alloc.c of v5.19 (rmqueue_pcplist(), _rmqueue_pcplist(),
rmqueue_bulk(), free_unref_page(), free_unref_page_commit(),
free_unref_page_list(), nr_pcp_free(), nr_pcp_high(), free_pcppages_bulk(),
drain_pages_zone(), drain_pages(), drain_local_pages(),
drain_local_pages_wq(), _drain_all_pages(), zone_pcp_disable() and
zone_pcp_enable(), page_alloc_cpu_dead(), zone_set_pageset_high_and_batch()),
in its order and with its comments; the parts every era shares are in
emulator/kernel/page_alloc.py.

Departures: ZONE_RECLAIM_ACTIVE is never set (kswapd is not modelled), so
nr_pcp_high() is pcp->high; free_unref_page_prepare()'s checks are
free_pages_prepare()'s ledger; the vmstat counters are not kept; costs are
orders of magnitude (emulator/kernel/costs.py), charged per fast-path
operation and per page moved under zone->lock.
"""

from ..kernel.locking import mutex, mutex_lock, mutex_trylock, mutex_unlock, spin_lock, spin_unlock
from ..kernel.page_alloc import (
    MIGRATE_PCPTYPES, NR_PCP_LISTS, pcp_allowed_order, local_lock_irqsave, local_lock_t, local_unlock_irqrestore,
    order_to_pindex, pcp_list_add, pcp_list_add_tail, pcp_list_del_first, pcp_list_del_last,
    pindex_to_order,
)
from ..kernel.workqueue import work_struct
from . import register
from .base import PageAllocPcp

SWAP_CLUSTER_MAX = 32


class pcpu_drain:
    """struct pcpu_drain: the zone to drain and the work item, per CPU."""

    __slots__ = ("zone", "work", "cpu")

    def __init__(self, cpu):
        self.cpu = cpu
        self.zone = None
        self.work = None


@register
class PageAllocV5_19(PageAllocPcp):
    name = "v5.19"
    copies = "mm/page_alloc.c of v5.19: local_lock_irqsave(&pagesets.lock), drains by mm_percpu_wq work"

    def __init__(self, kernel):
        super().__init__(kernel)
        k = kernel
        # static DEFINE_PER_CPU(struct pagesets, pagesets) = { .lock = INIT_LOCAL_LOCK(lock) };
        self.pagesets_lock = [local_lock_t(f"pagesets{cpu}.lock") for cpu in range(k.nr_cpu_ids)]
        self.pcpu_drain_mutex = mutex("pcpu_drain_mutex")
        self.pcp_batch_high_lock = mutex("pcp_batch_high_lock")
        self.pcpu_drain = [pcpu_drain(cpu) for cpu in range(k.nr_cpu_ids)]
        self.mm_percpu_wq = None

    # -- boot -----------------------------------------------------------------------------------

    def setup_per_cpu_pageset(self):
        """setup_per_cpu_pageset(): each zone's high and batch on every pcp;
        init_mm_internals() allocates mm_percpu_wq."""
        k = self.k
        for zone in k.zones:
            self.zone_set_pageset_high_and_batch(zone)
        self.mm_percpu_wq = k.alloc_workqueue("mm_percpu_wq", 0, 0)

    def zone_batchsize(self, zone):
        """zone_batchsize(): about a quarter of a 1/1024 of the zone, at most
        1 MiB worth, rounded to 2^n - 1 "to avoid cache aliasing"."""
        batch = min(zone.managed_pages >> 10, (1 << 20) // 4096)
        batch //= 4
        if batch < 1:
            batch = 1
        batch = 1 << ((batch + batch // 2).bit_length() - 1)   # rounddown_pow_of_two()
        return batch - 1 if batch > 1 else 1

    def zone_highsize(self, zone, batch, cpu_online):
        """zone_highsize() with percpu_pagelist_high_fraction 0: the low
        watermark split among the node's online CPUs and *cpu_online* more
        (a CPU coming up, not yet in the mask), at least batch << 2."""
        total = zone.wmark_low
        nr_split_cpus = max(1, cpu_online + sum(1 for cpu in range(self.k.nr_cpu_ids)
                                                if self.k.online_mask >> cpu & 1
                                                and self.k.cpu_to_node[cpu] == zone.node))
        high = total // nr_split_cpus
        return max(high, batch << 2)

    def zone_set_pageset_high_and_batch(self, zone, cpu_online=0):
        new_batch = max(1, self.zone_batchsize(zone))
        new_high = self.zone_highsize(zone, new_batch, cpu_online)
        if zone.pageset_high == new_high and zone.pageset_batch == new_batch:
            return
        zone.pageset_high = new_high
        zone.pageset_batch = new_batch
        self._zone_set_pageset_high_and_batch(zone, new_high, new_batch)

    def _zone_set_pageset_high_and_batch(self, zone, high, batch):
        for pcp in zone.per_cpu_pageset:
            self.pageset_update(pcp, high, batch)

    def pageset_update(self, pcp, high, batch):
        """pcp->high and pcp->batch are read without the lock: WRITE_ONCE()s."""
        pcp.batch = batch
        pcp.high = high

    # -- allocation -----------------------------------------------------------------------------

    def rmqueue(self, zone, order, migratetype):
        """rmqueue(): a pcp order is served by the pcp lists alone (v5.19:
        "goto out" whatever rmqueue_pcplist() returned), the others by the
        buddy lists under zone->lock."""
        if pcp_allowed_order(order):
            return self.rmqueue_pcplist(zone, order, migratetype)
        return self.k.rmqueue_buddy(zone, order, migratetype)

    def rmqueue_pcplist(self, zone, order, migratetype):
        k = self.k
        lock = self.pagesets_lock[k.cpu]
        flags = local_lock_irqsave(lock)
        # On allocation, reduce the number of pages that are batch freed.
        # See nr_pcp_free() where free_factor is increased for subsequent frees.
        pcp = zone.per_cpu_pageset[k.cpu]
        pcp.free_factor >>= 1
        pfn = self._rmqueue_pcplist(zone, order, migratetype, pcp)
        local_unlock_irqrestore(lock, flags)
        return pfn

    def _rmqueue_pcplist(self, zone, order, migratetype, pcp):
        """Remove page from the per-cpu list, caller must protect the list."""
        k = self.k
        pindex = order_to_pindex(migratetype, order)
        k.charge(k.costs["pcp_op_ns"])
        if not pcp.lists[pindex]:
            batch = pcp.batch                       # READ_ONCE(pcp->batch)
            # Scale batch relative to order if batch implies free pages can
            # be stored on the PCP. Batch can be 1 for small zones or for
            # boot pagesets which should never store free pages as the pages
            # may belong to arbitrary zones.
            if batch > 1:
                batch = max(batch >> order, 2)
            alloced = self.rmqueue_bulk(zone, order, batch, pcp, pindex, migratetype)
            pcp.count += alloced << order
            if not pcp.lists[pindex]:
                return None
        pfn = pcp_list_del_first(pcp, pindex)
        pcp.count -= 1 << order
        return pfn

    def rmqueue_bulk(self, zone, order, count, pcp, pindex, migratetype):
        """Obtain a specified number of elements from the buddy allocator, all
        under a single hold of the lock, for efficiency.  Add them to the
        supplied list.  Returns the number of new pages which were placed at
        *list."""
        spin_lock(zone.lock)                        # interrupts are off (pagesets.lock)
        allocated = self._rmqueue_bulk_locked(zone, order, count, pcp, pindex, migratetype)
        spin_unlock(zone.lock)
        return allocated

    def _rmqueue_bulk_locked(self, zone, order, count, pcp, pindex, migratetype):
        k = self.k
        allocated = 0
        for _ in range(count):
            pfn = k._rmqueue(zone, order, migratetype)
            if pfn is None:
                break
            # Split buddy pages returned by expand() are received here in
            # physical page order. The page is added to the tail of caller's
            # list. From the callers perspective, the linked list is ordered
            # by page number under some conditions.
            pcp_list_add_tail(pcp, pindex, pfn)
            allocated += 1
        k.charge(allocated * k.costs["buddy_page_ns"])
        return allocated

    # -- free -----------------------------------------------------------------------------------

    def free_unref_page(self, pfn, order):
        """Free a pcp page."""
        k = self.k
        migratetype = self.get_pcppage_migratetype(pfn)
        lock = self.pagesets_lock[k.cpu]
        flags = local_lock_irqsave(lock)
        zone = k.page_zone(pfn)
        self.free_unref_page_commit(zone, zone.per_cpu_pageset[k.cpu], pfn, migratetype, order)
        local_unlock_irqrestore(lock, flags)

    def get_pcppage_migratetype(self, pfn):
        """The pageblock's type, as free_unref_page_prepare() caches it in
        page->index (HIGHATOMIC and CMA are not modelled)."""
        return self.k.page_zone(pfn).get_pageblock_migratetype(pfn)

    def free_unref_page_commit(self, zone, pcp, pfn, migratetype, order):
        """(v5.19 looks pcp up inside, this_cpu_ptr(zone->per_cpu_pageset);
        its callers here pass it, as v6.0's signature has it.)"""
        k = self.k
        pindex = order_to_pindex(migratetype, order)
        k.charge(k.costs["pcp_op_ns"])
        pcp_list_add(pcp, pindex, pfn)
        pcp.count += 1 << order
        high = self.nr_pcp_high(pcp, zone)
        if pcp.count >= high:
            batch = pcp.batch                       # READ_ONCE(pcp->batch)
            self.free_pcppages_bulk(zone, self.nr_pcp_free(pcp, high, batch), pcp, pindex)

    def nr_pcp_free(self, pcp, high, batch):
        # Check for PCP disabled or boot pageset
        if high < batch:
            return 1
        # Leave at least pcp->batch pages on the list
        min_nr_free = batch
        max_nr_free = high - batch
        # Double the number of pages freed each time there is subsequent
        # freeing of pages without any allocation.
        batch <<= pcp.free_factor
        if batch < max_nr_free:
            pcp.free_factor += 1
        return max(min_nr_free, min(batch, max_nr_free))

    def nr_pcp_high(self, pcp, zone):
        high = pcp.high                             # READ_ONCE(pcp->high)
        if not high:
            return 0
        return high                                 # ZONE_RECLAIM_ACTIVE: not modelled

    def free_pcppages_bulk(self, zone, count, pcp, pindex):
        """Frees a number of pages from the PCP lists.  Assumes all pages on
        list are in same zone.  count is the number of pages to free."""
        k = self.k
        window = [0, NR_PCP_LISTS - 1]                  # min_pindex, max_pindex
        # Ensure proper count is passed which otherwise would stuck in the
        # below while (list_empty(list)) loop.
        count = min(pcp.count, count)
        # Ensure requested pindex is drained first.
        pindex = pindex - 1
        flags = self.zone_lock_for_bulk(zone)
        freed = 0
        while count > 0:
            pindex = self.next_pcp_list(pcp, pindex, window, count)
            order = pindex_to_order(pindex)
            nr_pages = 1 << order
            while True:
                pfn = pcp_list_del_last(pcp, pindex)
                mt = self.bulk_free_migratetype(zone, pfn, pindex)
                # must delete to avoid corrupting pcp list
                count -= nr_pages
                pcp.count -= nr_pages
                k._free_one_page(zone, pfn, order, mt)
                freed += 1
                if not (count > 0 and pcp.lists[pindex]):
                    break
        k.charge(freed * k.costs["buddy_page_ns"])
        self.zone_unlock_for_bulk(zone, flags)

    def next_pcp_list(self, pcp, pindex, window, count):
        """Remove pages from lists in a round-robin fashion: the next
        non-empty list after *pindex*, within the *window* of lists that
        may still have pages."""
        while True:
            pindex += 1
            if pindex > window[1]:
                pindex = window[0]
            if pcp.lists[pindex]:
                return pindex
            if pindex == window[1]:
                window[1] -= 1
            if pindex == window[0]:
                window[0] += 1

    def bulk_free_migratetype(self, zone, pfn, pindex):
        """get_pcppage_migratetype(page): the type cached at the free, the
        list's (HIGHATOMIC and CMA, which would differ, are not modelled)."""
        return pindex % MIGRATE_PCPTYPES

    def zone_lock_for_bulk(self, zone):
        """free_pcppages_bulk()'s zone->lock: plain spin_lock(), the caller
        having interrupts off (until v6.2)."""
        spin_lock(zone.lock)

    def zone_unlock_for_bulk(self, zone, flags):
        spin_unlock(zone.lock)

    def free_unref_page_list(self, pfns):
        """Free a list of 0-order pages."""
        k = self.k
        migratetypes = [self.get_pcppage_migratetype(pfn) for pfn in pfns]
        lock = self.pagesets_lock[k.cpu]
        flags = local_lock_irqsave(lock)
        batch_count = 0
        for pfn, migratetype in zip(pfns, migratetypes):
            zone = k.page_zone(pfn)
            self.free_unref_page_commit(zone, zone.per_cpu_pageset[k.cpu], pfn, migratetype, 0)
            # Guard against excessive IRQ disabled times when we get a large
            # list of pages to free.
            batch_count += 1
            if batch_count == SWAP_CLUSTER_MAX:
                local_unlock_irqrestore(lock, flags)
                batch_count = 0
                lock = self.pagesets_lock[k.cpu]
                flags = local_lock_irqsave(lock)
        local_unlock_irqrestore(lock, flags)

    # -- drains -----------------------------------------------------------------------------------

    def drain_pages_zone(self, cpu, zone):
        """Drain pcplists of the indicated processor and zone.

        The processor must either be the current processor and the thread
        pinned to the current processor or a processor that is not online."""
        k = self.k
        lock = self.pagesets_lock[k.cpu]
        flags = local_lock_irqsave(lock)
        pcp = zone.per_cpu_pageset[cpu]
        if pcp.count:
            self.free_pcppages_bulk(zone, pcp.count, pcp, 0)
        local_unlock_irqrestore(lock, flags)

    def drain_pages(self, cpu):
        """Drain pcplists of all zones on the indicated processor."""
        for zone in self.k.zones:
            self.drain_pages_zone(cpu, zone)

    def drain_local_pages(self, zone):
        """Spill all of this CPU's per-cpu pages back into the buddy allocator."""
        cpu = self.k.cpu
        if zone is not None:
            self.drain_pages_zone(cpu, zone)
        else:
            self.drain_pages(cpu)

    def drain_local_pages_wq(self, drain):
        k = self.k
        work = k.page_alloc_stats.drain_work
        work[k.cpu] = work.get(k.cpu, 0) + 1
        if k.invariants is not None:
            k.invariants.pcp_drain_work(self)
        # drain_all_pages doesn't use proper cpu hotplug protection so we can
        # race with cpu offline when the WQ can move this from a cpu pinned
        # worker to an unbound one. We can operate on a different cpu which
        # is alright but we also have to make sure to not move to a different
        # one.
        k.migrate_disable()
        self.drain_local_pages(drain.zone)
        k.migrate_enable()

    def drain_all_pages(self, zone):
        """Spill all the per-cpu pages from all CPUs back into the buddy
        allocator.  Note that this can be extremely slow as the draining
        happens in a workqueue."""
        self._drain_all_pages(zone, False)

    def _drain_all_pages(self, zone, force_all_cpus):
        k = self.k
        start = k.engine.now
        # Do not drain if one is already in progress unless it's specific to
        # a zone. Such callers are primarily CMA and memory hotplug and need
        # the drain to be complete when the call returns.
        if not mutex_trylock(self.pcpu_drain_mutex):
            if zone is None:
                return
            mutex_lock(self.pcpu_drain_mutex)
        cpus_with_pcps = self.cpus_with_pcps(zone, force_all_cpus)
        self.drain_cpus(cpus_with_pcps, zone)
        mutex_unlock(self.pcpu_drain_mutex)
        k.page_alloc_drained(start)

    def cpus_with_pcps(self, zone, force_all_cpus):
        """We don't care about racing with CPU hotplug event as offline
        notification will cause the notified cpu to drain that CPU pcps and
        on_each_cpu_mask disables preemption as part of its processing.
        (The pcp->count reads are racy, without the lock.)"""
        k = self.k
        cpus = []
        for cpu in range(k.nr_cpu_ids):
            if not k.online_mask >> cpu & 1:
                continue
            if force_all_cpus:
                # The pcp.count check is racy, some callers need a guarantee
                # that no cpu is missed.
                has_pcps = True
            elif zone is not None:
                has_pcps = zone.per_cpu_pageset[cpu].count != 0
            else:
                has_pcps = any(z.per_cpu_pageset[cpu].count for z in k.zones)
            if has_pcps:
                cpus.append(cpu)
        return cpus

    def drain_cpus(self, cpus_with_pcps, zone):
        """The head's drain: a work item on each CPU, then flush them all."""
        k = self.k
        for cpu in cpus_with_pcps:
            drain = self.pcpu_drain[cpu]
            drain.zone = zone
            # INIT_WORK(&drain->work, drain_local_pages_wq); container_of() is the closure.
            drain.work = work_struct(lambda work, drain=drain: self.drain_local_pages_wq(drain),
                                     "drain_local_pages_wq")
            k.queue_work_on(cpu, self.mm_percpu_wq, drain.work)
        for cpu in cpus_with_pcps:
            k.flush_work(self.pcpu_drain[cpu].work)

    # -- memory offline and CPU hotplug -------------------------------------------------------------

    def zone_pcp_disable(self, zone):
        """Effectively disable pcplists for the zone by setting the high limit
        to 0 and draining all cpus.  A concurrent page freeing on another CPU
        that's about to put the page on pcplist will either finish before the
        drain and the page will be drained, or observe the new high limit and
        skip the pcplist.  Must be paired with a call to zone_pcp_enable()."""
        mutex_lock(self.pcp_batch_high_lock)
        self._zone_set_pageset_high_and_batch(zone, 0, 1)
        self._drain_all_pages(zone, True)
        zone.pcp_disabled = True                # (the model's: PA6 holds from here)

    def zone_pcp_enable(self, zone):
        zone.pcp_disabled = False
        self._zone_set_pageset_high_and_batch(zone, zone.pageset_high, zone.pageset_batch)
        mutex_unlock(self.pcp_batch_high_lock)

    def zone_pcp_update(self, zone, cpu_online):
        """The pcp high and batch recomputed for a CPU coming or gone, under
        pcp_batch_high_lock: never while zone_pcp_disable() is in force."""
        mutex_lock(self.pcp_batch_high_lock)
        self.zone_set_pageset_high_and_batch(zone, cpu_online)
        mutex_unlock(self.pcp_batch_high_lock)

    def page_alloc_cpu_online(self, cpu):
        """CPUHP_PAGE_ALLOC's startup: zone_pcp_update(zone, 1) of every zone."""
        for zone in self.k.zones:
            self.zone_pcp_update(zone, 1)

    def page_alloc_cpu_dead(self, cpu):
        """CPUHP_PAGE_ALLOC's teardown, on the control CPU after *cpu* is
        dead: its lists go back to the buddy allocator (legal: nothing runs
        there), and the zones' pcp high is split among one CPU fewer."""
        self.drain_pages(cpu)
        for zone in self.k.zones:
            self.zone_pcp_update(zone, 0)
