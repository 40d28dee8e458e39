"""The page allocator's per-cpu lists (seed 002) over every page_alloc variant.

Conformance: tasks map, write and unmap memory, fork and exit (page-table
pages), an I/O completion interrupt frees buffers on another CPU, drains come
from any CPU; the invariants PA1-PA7 judge every step.  The stateful search
draws those steps with the mm lifecycle's (tests/test_stateful.py, over every
page_alloc variant).  Then the seed's motivating story
(an isolated CPU interrupted by the head's drain and not by the series'), and
the stories of each era's locking: the trylock fallbacks, interrupts on a CPU
holding its own pcp lock, the drain mutex, zone_pcp_disable().
"""

import os

import pytest

from emulator import Machine
from emulator.errors import EmulationFailure, HardLockup, UsageError
from emulator.kernel.page_alloc import GFP_KERNEL, MIGRATE_MOVABLE
from emulator.uapi import libc, mman

SUBSYSTEM = "page_alloc"

PAGE = mman.PAGE_SIZE
MS = 1_000_000


def map_and_write(pages):
    buf = mman.mmap(None, pages * PAGE, mman.PROT_READ | mman.PROT_WRITE,
                    mman.MAP_PRIVATE | mman.MAP_ANONYMOUS, -1, 0)
    mman.memset(buf, 0, pages * PAGE)
    return buf


def churn(pages, rounds):
    """Map, write and unmap *pages* pages, *rounds* times."""
    for _ in range(rounds):
        buf = map_and_write(pages)
        mman.munmap(buf, pages * PAGE)


# -- conformance: every variant keeps every page somewhere, once -----------------------------

def memory_workload(nr_cpus):
    def main():
        threads = [libc.pthread_create(lambda n: churn(37 + 11 * n, 5), i)
                   for i in range(nr_cpus)]
        children = [libc.fork(lambda: (churn(150, 3), 0)[1]) for _ in range(2)]
        for t in threads:
            libc.pthread_join(t)
        for pid in children:
            libc.waitpid(pid)
        return 0
    return main


@pytest.mark.parametrize("nr_cpus", [1, 3, 8])
def test_memory_churn_keeps_every_page_in_one_place(emu_variant, nr_cpus):
    """Threads and processes churn memory on every CPU; at the end (the
    machine quiet) every page is on a buddy list, a pcp list or allocated,
    exactly once (PA1), and the pcp counts match their lists (PA2 at every
    unlock)."""
    m = Machine(nr_cpus=nr_cpus, variants=[emu_variant], seed=nr_cpus)
    assert m.run(memory_workload(nr_cpus)) == 0
    k = m.kernel
    zone = k.zones[0]
    # Every page went back but the page tables of the mms an idle CPU still
    # borrows (lazy TLB: freed at its next switch to a user task).
    assert set(zone.allocated) == {mm.pgd for mm in k.live_mms.values()}
    assert zone.nr_free_pages + zone.pcp_pages() + len(zone.allocated) == zone.managed_pages


def test_possible_cpus_beyond_the_online_ones_have_idle_pcps(emu_variant):
    """A pcp exists for every possible CPU; the offline ones never fill, and
    a drain does not wait for them."""
    m = Machine(nr_cpus=3, nr_possible=8, variants=[emu_variant], seed=2)
    assert m.run(memory_workload(3)) == 0
    zone = m.kernel.zones[0]
    assert len(zone.per_cpu_pageset) == 8
    assert all(pcp.count == 0 for pcp in zone.per_cpu_pageset[3:])


def test_interrupt_frees_and_drains_from_every_cpu(emu_variant):
    """A driver's buffers are freed by completion interrupts on other CPUs
    while tasks allocate there and every CPU drains: nothing is lost."""
    def kernel_body(k):
        for cpu in range(4):
            blocks = [(k.alloc_pages(GFP_KERNEL, order), order) for order in (0, 1, 3, 0)]
            k.blk_submit(blocks, cpu, 1000 * (cpu + 1))
        k.page_alloc.drain_all_pages(None)
        k.msleep(1)
        k.offline_pages(k.zones[0])
        return k.page_alloc_stats

    m = Machine(nr_cpus=4, variants=[emu_variant], seed=3)
    m.run_kernel(kernel_body, cpu=1)
    k = m.kernel
    assert set(k.zones[0].allocated) == {mm.pgd for mm in k.live_mms.values()}


# -- the seed's motivating story ----------------------------------------------------------------

def isolated_cpu_story(variant, policy=libc.SCHED_OTHER, busy_ms=100):
    """CPU 3 is nohz_full and isolated; its one task frees 200 pages there
    (onto CPU 3's pcp) and computes.  On CPU 0 another task fills memory
    until direct reclaim drains every CPU's pcp lists."""
    def isolated():
        libc.sched_setaffinity(0, {3})
        if policy != libc.SCHED_OTHER:
            libc.sched_setscheduler(0, policy, 50)
        churn(200, 1)
        libc.busy_wait(busy_ms * MS)

    def reclaimer():
        libc.sched_setaffinity(0, {0})
        libc.usleep(2000)
        pages = 66_000                              # more than the zone: reclaim, then ENOMEM
        buf = mman.mmap(None, pages * PAGE, mman.PROT_READ | mman.PROT_WRITE,
                        mman.MAP_PRIVATE | mman.MAP_ANONYMOUS, -1, 0)
        with pytest.raises(OSError):
            mman.memset(buf, 0, pages * PAGE)
        mman.munmap(buf, pages * PAGE)

    def main():
        a = libc.pthread_create(lambda _: isolated())
        b = libc.pthread_create(lambda _: reclaimer())
        libc.pthread_join(a)
        libc.pthread_join(b)
        return 0

    m = Machine(nr_cpus=4, variants=[variant], seed=1, nohz_full="3", isolcpus="3")
    assert m.run(main) == 0
    return m


def test_the_head_interrupts_the_isolated_cpu_and_the_series_does_not():
    """Seed 002's promise, in numbers: the head's drain queues a work item on
    the isolated CPU, whose kworker preempts the task there; the series
    drains that CPU's pcp from CPU 0 and the task is never interrupted
    (its tick stays stopped: one task, nothing else to do)."""
    head = isolated_cpu_story("v5.19")
    series = isolated_cpu_story("seed-002")
    noise = head.osnoise.summary()[3]
    assert noise["causes"].get("thread:kworker/3:0") == 1
    assert head.kernel.page_alloc_stats.drain_work.get(3) == 1
    assert 3 not in series.osnoise.summary()
    assert series.kernel.page_alloc_stats.drain_work == {}
    # The drain's latency: waiting for the kworker on CPU 3, against
    # freeing CPU 3's pages from CPU 0.
    assert series.kernel.page_alloc_stats.drain_max_ns < head.kernel.page_alloc_stats.drain_max_ns


def test_under_a_fifo_task_the_heads_drain_waits_for_it():
    """A SCHED_FIFO task on the isolated CPU never yields to the CFS kworker:
    the head's drain (and the allocation in direct reclaim behind it) waits
    until the task is done; the series' drain does not wait at all."""
    head = isolated_cpu_story("v5.19", policy=libc.SCHED_FIFO, busy_ms=200)
    series = isolated_cpu_story("seed-002", policy=libc.SCHED_FIFO, busy_ms=200)
    # Reclaim starts after ~80 ms of page faults; the FIFO task computes until 200 ms.
    assert head.kernel.page_alloc_stats.drain_max_ns > 100 * MS
    assert series.kernel.page_alloc_stats.drain_max_ns < 1 * MS


# -- each era's locking ----------------------------------------------------------------------

def interrupt_while_own_pcp_held(variant):
    """A task on CPU 0 is inside its pcp critical section (refilling from
    the buddy lists) when a completion interrupt on CPU 0 frees a page."""
    def body(k):
        pfn = k.alloc_pages(GFP_KERNEL, 0)          # CPU 0's order-0 list refilled
        bulk = k.page_alloc.rmqueue_bulk

        def rmqueue_bulk(*args):
            got = bulk(*args)
            k.blk_submit([(pfn, 0)], 0, 0)          # the interrupt comes now,
            k.charge(1)                             # a nanosecond into the section
            return got
        k.page_alloc.rmqueue_bulk = rmqueue_bulk
        k.alloc_pages(GFP_KERNEL, 1)                # the order-1 list is empty: a refill
        del k.page_alloc.rmqueue_bulk
        k.msleep(1)
        return k.page_alloc_stats.trylock_failures

    m = Machine(nr_cpus=2, variants=[variant], seed=1)
    return m.run_kernel(body, cpu=0)


@pytest.mark.parametrize("variant", ["v5.19", "v6.0"])
def test_interrupts_wait_for_a_pcp_section_with_interrupts_off(variant):
    """Head and v6.0 hold the pcp with interrupts off: the interrupt is
    taken when the section ends, and its free then takes the pcp normally."""
    assert interrupt_while_own_pcp_held(variant) == 0


@pytest.mark.parametrize("variant", ["v6.2", "v6.11"])
def test_an_interrupt_on_the_holding_cpu_fails_the_trylock(variant):
    """v6.2 onwards keeps interrupts on: the interrupt runs inside the
    task's section, its trylock of the same pcp fails and the page goes to
    the buddy lists, with no deadlock (PA4) and no list touched by two."""
    assert interrupt_while_own_pcp_held(variant) == 1


def test_a_patch_whose_interrupt_path_spins_on_the_pcp_lock_locks_up():
    """The mutation of the scenario above: an interrupt free taking the pcp
    lock with spin_lock() spins on the lock its own CPU holds: the hard
    lockup the kernel would report (PA4)."""
    patch = os.path.join(os.path.dirname(__file__), "..", "fixtures", "patches",
                         "pcp_free_spins.py")
    with pytest.raises(HardLockup, match="pcp0->lock in interrupt context"):
        interrupt_while_own_pcp_held(patch)


def test_a_second_global_drain_returns_at_once_and_a_zone_drain_waits(emu_variant):
    """__drain_all_pages(): a global drain that finds the mutex held returns
    without draining (direct reclaim goes on); a drain of a zone waits."""
    order = []

    def body(k):
        zone = k.zones[0]
        pfns = [k.alloc_pages(GFP_KERNEL, 0) for _ in range(40)]
        for pfn in pfns:
            k._free_pages(pfn, 0)                   # pages on CPU 0's pcp
        v = k.page_alloc
        from emulator.kernel.locking import mutex_lock, mutex_unlock

        def other(_):
            order.append(("global", k.engine.now))
            v.drain_all_pages(None)                 # returns: the mutex is held
            order.append(("global done", k.engine.now, zone.per_cpu_pageset[0].count))
            v.drain_all_pages(zone)                 # waits for the mutex
            order.append(("zone done", k.engine.now, zone.per_cpu_pageset[0].count))
        mutex_lock(v.pcpu_drain_mutex)
        k.kthread_create_on_cpu(other, None, 1, "drainer")
        k.msleep(2)
        mutex_unlock(v.pcpu_drain_mutex)
        k.msleep(2)

    m = Machine(nr_cpus=2, variants=[emu_variant], seed=1)
    m.run_kernel(body, cpu=0)
    (_, start), (_, global_done, left), (_, zone_done, after) = order
    assert global_done == start and left > 0
    assert zone_done >= start + 2 * MS and after == 0


def test_after_zone_pcp_disable_every_pcp_is_empty(emu_variant):
    """Memory offline: zone_pcp_disable() drains every online CPU (forced)
    and while it is in force frees go straight to the buddy lists (PA6)."""
    def body(k):
        zone = k.zones[0]
        for cpu_pages in range(3):
            for pfn in [k.alloc_pages(GFP_KERNEL, 0) for _ in range(30)]:
                k._free_pages(pfn, 0)
        v = k.page_alloc
        v.zone_pcp_disable(zone)
        assert zone.pcp_pages() == 0
        pfn = k.alloc_pages(GFP_KERNEL, 0)
        k._free_pages(pfn, 0)
        assert zone.pcp_pages() == 0
        v.zone_pcp_enable(zone)
        assert zone.per_cpu_pageset[0].high == zone.pageset_high > 0

    Machine(nr_cpus=3, variants=[emu_variant], seed=1).run_kernel(body, cpu=2)


# -- the machine's isolation options --------------------------------------------------------------

def test_a_nohz_full_cpu_running_one_task_stops_its_tick():
    def main():
        libc.sched_setaffinity(0, {1})
        libc.busy_wait(50 * MS)
        return 0
    m = Machine(nr_cpus=2, nohz_full=[1], isolcpus=[1], seed=1, variants=["seed-002"])
    assert m.run(main) == 0
    # The task's first tick finds it alone and stops the tick: at most that one.
    assert m.osnoise.summary().get(1, {"count": 0})["count"] <= 1


@pytest.mark.parametrize("kwargs, error", [
    ({"nohz_full": "0-1"}, "no housekeeping CPU"),
    ({"isolcpus": [5]}, "not an online CPU"),
    ({"nohz_full": "1-x"}, "not a CPU list"),
    ({"nohz_full": "1-0"}, "not a CPU list"),           # a range backwards isolates nothing
    ({"isolcpus": 3}, "must be a CPU list"),
])
def test_bad_isolation_is_a_one_line_error(kwargs, error):
    with pytest.raises(UsageError, match=error):
        Machine(nr_cpus=2, **kwargs)


def test_isolcpus_keep_tasks_that_did_not_ask_for_them_away():
    """init's affinity is the housekeeping CPUs: threads land on 0-1 only."""
    cpus = set()

    def main():
        threads = [libc.pthread_create(lambda _: (cpus.add(libc.sched_getcpu()),
                                                  libc.busy_wait(MS))) for _ in range(6)]
        for t in threads:
            libc.pthread_join(t)
        return 0
    m = Machine(nr_cpus=4, isolcpus="2-3", seed=1)
    assert m.run(main) == 0
    assert cpus <= {0, 1}


def test_a_variant_of_each_subsystem_and_the_others_at_their_default():
    m = Machine(nr_cpus=2, variants=["v6.2", "v7.0"])
    assert m.kernel.page_alloc.name == "v6.2" and m.kernel.mm_cid.name == "v7.0"
    m = Machine(nr_cpus=2, variants=["v6.11"])
    assert m.kernel.mm_cid.name == "v6.3"
    with pytest.raises(UsageError, match="one page_alloc variant per machine"):
        Machine(nr_cpus=2, variants=["v6.2", "v5.19"])


def test_a_failure_names_every_subsystems_variant():
    m = Machine(nr_cpus=2, variants=["v6.11"], seed=4)
    with pytest.raises(EmulationFailure) as info:
        m.run_kernel(lambda k: k._free_pages(k.zones[0].zone_start_pfn, 0))
    assert "Bad page state" in str(info.value)
    assert "variant=v6.3,v6.11" in m.failure_report(info.value)
    assert MIGRATE_MOVABLE == 1


def test_a_cpu_going_offline_gives_its_pcp_pages_back(emu_variant):
    """CPU 2 frees pages onto its pcp lists and goes offline: the
    CPUHP_PAGE_ALLOC teardown (page_alloc_cpu_dead(), on the control CPU)
    drains them; when it comes back its pcp starts empty, and the pages are
    all accounted for at the end (PA1)."""
    from emulator.uapi import sysfs
    seen = {}

    def on_cpu2():
        libc.sched_setaffinity(0, {2})
        churn(100, 1)

    def main():
        libc.sched_setaffinity(0, {0})
        t = libc.pthread_create(lambda _: on_cpu2())
        libc.pthread_join(t)
        pcp = libc_kernel().zones[0].per_cpu_pageset[2]
        seen["before"] = pcp.count
        sysfs.write_cpu_online(2, 0)
        seen["offline"] = pcp.count
        sysfs.write_cpu_online(2, 1)
        t = libc.pthread_create(lambda _: on_cpu2())
        libc.pthread_join(t)
        return 0

    m = Machine(nr_cpus=3, variants=[emu_variant], seed=5)
    libc_kernel = lambda: m.kernel                  # noqa: E731 (the test's view of the kernel)
    assert m.run(main) == 0
    assert seen["before"] > 0 and seen["offline"] == 0


def test_a_cpu_dying_while_the_pcp_is_disabled_restores_no_high_until_enable(emu_variant):
    """A regression story for a defect the stateful search found in the
    model: CPUHP_PAGE_ALLOC's teardown recomputed every pcp's high and batch
    without pcp_batch_high_lock, so a CPU going offline during memory
    offline gave the pcp back its batch while zone_pcp_disable() was in
    force, and a refill left 15 pages there (PA6).  zone_pcp_update() takes
    the lock: the teardown waits for zone_pcp_enable()."""
    def body(k):
        zone = k.zones[0]
        v = k.page_alloc
        v.zone_pcp_disable(zone)
        k.kthread_create_on_cpu(lambda _: k.cpu_down(2), None, 1, "offliner")
        k.msleep(5)
        during = {pcp.high for pcp in zone.per_cpu_pageset}
        v.zone_pcp_enable(zone)
        k.msleep(5)
        return during, zone.per_cpu_pageset[0].high, k.online_mask

    during, after, online = Machine(nr_cpus=4, variants=[emu_variant], seed=1).run_kernel(body)
    assert during == {0}
    assert after > 0 and not online >> 2 & 1


def drain_once(variant):
    """CPU 1 frees pages onto its pcp; CPU 0 drains every CPU."""
    def body(k):
        def fill(_):
            for pfn in [k.alloc_pages(GFP_KERNEL, 0) for _ in range(40)]:
                k._free_pages(pfn, 0)
        k.kthread_create_on_cpu(fill, None, 1, "filler")
        k.msleep(1)
        k.page_alloc.drain_all_pages(None)
    Machine(nr_cpus=2, variants=[variant], seed=1).run_kernel(body, cpu=0)


def test_a_remote_drain_without_the_pcp_lock_breaks_mutual_exclusion():
    """PA3: seed 002's remote drain, with its pcp->lock left out."""
    from emulator.variants import get_variant

    class Unlocked(get_variant("seed-002")):
        name = "pcp-drain-unlocked"

        def drain_pages_zone(self, cpu, zone):
            pcp = zone.per_cpu_pageset[cpu]
            if pcp.count:
                self.free_pcppages_bulk(zone, pcp.count, pcp, 0)

    drain_once("seed-002")
    with pytest.raises(EmulationFailure, match="PA3 violated: CPU 1's pcp list changed"):
        drain_once(Unlocked)


def test_an_era_promising_isolation_may_not_drain_by_work_items():
    """PA7: seed 002 with the head's work items brought back."""
    from emulator.variants import get_variant

    class ByWork(get_variant("seed-002")):
        name = "pcp-drain-by-work"
        drain_cpus = get_variant("v5.19").drain_cpus

    drain_once("v5.19")
    with pytest.raises(EmulationFailure, match="PA7 violated"):
        drain_once(ByWork)


def alloc_and_free_orders(variant):
    """One task allocates and frees a block of each pcp order, twice."""
    def body(k):
        for _ in range(2):
            blocks = [(k.alloc_pages(GFP_KERNEL, order), order) for order in range(4)]
            for pfn, order in blocks:
                k._free_pages(pfn, order)
        return 0
    return Machine(nr_cpus=2, variants=[variant], seed=1).run_kernel(body, cpu=0)


def test_a_pcp_count_that_forgets_the_order_is_caught_as_its_lock_goes():
    """PA2: a patch taking a high-order block off a pcp list counts one
    page, not 1 << order; the count and the lists disagree the moment
    pcp->lock is released."""
    from emulator.variants import get_variant

    class CountsBlocks(get_variant("v6.2")):
        name = "pcp-counts-blocks"

        def _rmqueue_pcplist(self, zone, order, migratetype, pcp):
            pfn = super()._rmqueue_pcplist(zone, order, migratetype, pcp)
            if pfn is not None:
                pcp.count += (1 << order) - 1       # the patch's "pcp->count--"
            return pfn

    assert alloc_and_free_orders("v6.2") == 0
    with pytest.raises(EmulationFailure, match="PA2 violated: CPU 0's pcp count is"):
        alloc_and_free_orders(CountsBlocks)


def test_a_free_path_that_keeps_the_task_pinned_is_caught_on_return():
    """PA5: a patch's fallback, when the pcp is taken, frees to the buddy
    lists without pcpu_task_unpin().  An interrupt frees on the CPU whose
    task holds its pcp: the task's allocation returns with preemption still
    disabled.  (The model counts an interrupt's pinning on the task it
    interrupted; the kernel's preempt_count is the CPU's, the same here.)"""
    from emulator.kernel import page_alloc as pa
    from emulator.variants import get_variant

    class StaysPinned(get_variant("v6.2")):
        name = "pcp-free-stays-pinned"

        def free_unref_page(self, pfn, order):
            k = self.k
            zone = k.page_zone(pfn)
            pa.pcpu_task_pin()
            pcp = zone.per_cpu_pageset[k.cpu]
            if pcp.lock.owner is not None:          # "contended": the early exit
                k.free_one_page(zone, pfn, order, self.get_pcppage_migratetype(pfn))
                return                              # ...without pcpu_task_unpin()
            pa.pcpu_task_unpin()
            super().free_unref_page(pfn, order)

    def body(k):
        pfn = k.alloc_pages(GFP_KERNEL, 0)
        bulk = k.page_alloc.rmqueue_bulk

        def rmqueue_bulk(*args):                    # the interrupt comes inside the section
            got = bulk(*args)
            k.blk_submit([(pfn, 0)], 0, 0)
            k.charge(1)
            return got
        k.page_alloc.rmqueue_bulk = rmqueue_bulk
        k.alloc_pages(GFP_KERNEL, 1)
        del k.page_alloc.rmqueue_bulk
        k.msleep(1)
        return 0

    assert Machine(nr_cpus=2, variants=["v6.2"], seed=1).run_kernel(body, cpu=0) == 0
    with pytest.raises(EmulationFailure, match=r"PA5 violated: __alloc_pages\(\) on CPU 0 returned with .* \(1, 0, 0\)"):
        Machine(nr_cpus=2, variants=[StaysPinned], seed=1).run_kernel(body, cpu=0)


# -- a run that ends with a free under way ------------------------------------------------------

# Found by the weak-memory search (its wait at mmdrop() moved a work item's
# final mmdrop() to the end of the run), shrunk by hand to the steps that
# still showed it, then replayed under sc: the last user task exits while
# kworker/0:0 runs a deferred mmdrop() whose __mmdrop() is freeing the pgd,
# the page out of the ledger and not yet on the pcp list.  The end-of-run
# check counted it lost (PA1).  A regression story of a defect of the model's
# checks (emulator.checks.page_alloc.pages_in_motion), not of a kernel.
_ENDS_DURING_A_FREE = [
    ["async_io", {"ns": 1917, "then": 0, "who": 0}], ["exec", {"ok": False, "then": 0, "who": 55}],
    ["async_io", {"ns": 1, "then": 0, "who": 0}], ["async_io", {"ns": 1, "then": 0, "who": 0}],
    ["async_io", {"ns": 1, "then": 0, "who": 0}], ["async_io", {"ns": 1, "then": 0, "who": 47}],
    ["exec", {"ok": False, "then": 0, "who": 0}],
    ["async_io", {"ns": 4406, "then": 1048575, "who": 12}],
    ["async_io", {"ns": 1, "then": 65535, "who": 0}],
    ["async_io", {"ns": 3909, "then": 1955422, "who": 40}],
    ["async_io", {"ns": 1, "then": 0, "who": 23}], ["wake", {"cpu": 0, "then": 193822, "who": 52}],
    ["async_io", {"ns": 4, "then": 0, "who": 0}], ["async_io", {"ns": 9, "then": 0, "who": 0}],
    ["async_io", {"ns": 147477768, "then": 0, "who": 0}], ["async_io", {"ns": 1, "then": 0, "who": 0}],
    ["async_io", {"ns": 1260, "then": 0, "who": 42}], ["async_io", {"ns": 3879, "then": 0, "who": 17}],
    ["async_io", {"ns": 1, "then": 0, "who": 0}], ["async_io", {"ns": 5179, "then": 0, "who": 27}],
    ["async_io", {"ns": 1, "then": 0, "who": 19}], ["exec", {"ok": True, "then": 109, "who": 33}],
    ["async_io", {"ns": 1, "then": 0, "who": 20}], ["async_io", {"ns": 743, "then": 680058, "who": 46}],
    ["async_io", {"ns": 30659, "then": 0, "who": 15}],
    ["async_io", {"ns": 31, "then": 204217, "who": 58}], ["wake", {"cpu": 5, "then": 131071, "who": 46}],
    ["exec", {"ok": True, "then": 618714, "who": 63}],
]


def test_a_run_ending_while_a_work_item_frees_page_tables_loses_no_page():
    from emulator.checks.page_alloc import pages_in_motion
    from emulator.explore.stateful import replay_steps
    from emulator.variants import get_variant

    seen = []

    def watch(m):
        quiet = m.kernel.invariants.page_alloc_quiet

        def at_the_end():
            seen.append((pages_in_motion(m.kernel), m.kernel.cur.comm))
            quiet()
        m.kernel.invariants.page_alloc_quiet = at_the_end

    replay_steps(get_variant("v6.4"), {"nr_cpus": 8, "seed": 208}, _ENDS_DURING_A_FREE,
                 on_machine=watch)
    # the run ended with kworker/0:0 in the middle of its free, and that was no loss
    assert (True, "kworker/0:0") in seen
