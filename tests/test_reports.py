"""Reports that explain a stall: the owner of each bit of a cid bitmap, the
story of a bit that has none (last set, last held, dropped without being
cleared), the holder of a spinlock and since when, and a minimal trace that
keeps the events the report points at (emulator/observe/cid_watch.py)."""

import re

import pytest

from emulator import Machine
from emulator.checks.invariants import InvariantViolation
from emulator.errors import EmulationFailure, HardLockup
from emulator.kernel.cpumask import Cpumask
from emulator.kernel.percpu import touched
from emulator.kernel.task import Task
from emulator.checks.kasan import kasan_poison, kasan_record_alloc
from emulator.kernel.fork import mm_struct
from emulator.observe.cid_watch import CID_EVENTS, CidBitFields, Watched, _mm_watch
from emulator.observe.trace import Fields, Tracepoints
from emulator.uapi.libc import (
    busy_wait, fork, gettid, pthread_create, pthread_join, pthread_self, pthread_setaffinity_np,
    sched_getcpu, sched_setaffinity, usleep, waitpid,
)
from emulator.variants import get_variant
from emulator.variants.mm_cid_v7_0 import MM_CID_UNSET, mm_cid_pcpu, sched_mm_cid


def forgets_to_clear_on_unset(variant):
    """*variant* (v6.19+) whose task gives its CID up without clearing its bit."""
    class ForgetsToClear(variant):
        name = f"{variant.name}-forgets-to-clear"

        def mm_unset_cid_on_task(self, t):
            t.mm_cid.cid = MM_CID_UNSET

    return ForgetsToClear


def forgets_to_clear_on_put(variant):
    """*variant* (v6.4 to v6.18) whose put of a CPU's cid leaves its bit set."""
    class ForgetsToClear(variant):
        name = f"{variant.name}-forgets-to-clear"

        def _mm_cid_put(self, mm, cid):
            pass

    return ForgetsToClear


def a_thread_exits_then_another_starts(seen, moves=0):
    """main starts a thread that exits at once (noting its tid and CPU), moves
    *moves* times from one CPU to the other, then starts a second thread."""
    def first(_):
        seen["tid"], seen["cpu"] = gettid(), sched_getcpu()
        busy_wait(100_000)

    def main():
        seen["main"] = gettid()
        pthread_join(pthread_create(first))
        for i in range(moves):
            sched_setaffinity(0, {i % 2})
            usleep(10)
        pthread_join(pthread_create(lambda _: busy_wait(100_000)))
        return 0
    return main


def test_a_cid_a_task_gave_up_without_clearing_its_bit_is_named_with_its_story():
    """v7.0 with a task that gives its CID up at exit without clearing the
    bit: on 2 CPUs the second thread's fork spins in mm_get_cid().  The report
    lists each bit's owner, names the bit with none, who held it last and
    where that holder dropped it, and the minimal trace keeps those events."""
    seen = {}
    m = Machine(nr_cpus=2, variants=[forgets_to_clear_on_unset(get_variant("v7.0"))], seed=1)
    with pytest.raises(HardLockup, match=r"spinning on cpu_relax\(\) loop") as failed:
        m.run(a_thread_exits_then_another_starts(seen))
    detail, report = failed.value.detail, failed.value.report
    main, tid = seen["main"], seen["tid"]
    assert "cid bitmap of mm#1: [0, 1] set, bound 2, 1 without an owner; mm_cid(mode=task" in detail
    assert re.search(rf"  cid 0: main\[{main}\] \(task: 0, running on CPU \d, since ", detail)
    story = detail[detail.index("  cid 1: NO OWNER"):]
    assert re.search(r"set at 0\.\d+ on CPU \d \(main-\d+, in _mm_get_cid<-mm_get_cid<-"
                     r"sched_mm_cid_fork\)", story)
    assert f"last held by main[{tid}], from " in story
    assert re.search(rf"dropped by main\[{tid}\] at 0\.\d+ on CPU {seen['cpu']} \(main-{tid}, in "
                     rf"mm_unset_cid_on_task<-sched_mm_cid_remove_user<-_sched_mm_cid_exit\): "
                     rf"1 -> UNSET, the bit left set", story)
    # The minimal trace marks the three events.
    assert re.search(r"mm_cid_get: mm=mm#1 cid=1 in=\S+   <- cid 1 of mm#1 set", report)
    assert re.search(rf"mm_cid_owner: mm=mm#1 owner=main\[{tid}\] old=UNSET new=1 got=1 in=\S+"
                     r"   <- cid 1 of mm#1 taken", report)
    assert re.search(rf"main-{tid} +\[\d+\] +[\d.]+: mm_cid_owner: mm=mm#1 owner=main\[{tid}\] "
                     rf"old=1 new=UNSET lost=1 in=\S+   <- cid 1 of mm#1 lost: the bit left set",
                     report)


def test_the_minimal_trace_keeps_the_events_of_a_lost_cid_however_old():
    """The same leak, then 30 moves of main before the fork that spins: the
    events that lost the CID are far older than the last 60 lines of the CPUs
    and tasks the report names, and the minimal trace still shows them, ahead
    of those lines."""
    seen = {}
    m = Machine(nr_cpus=2, variants=[forgets_to_clear_on_unset(get_variant("v7.0"))], seed=1)
    with pytest.raises(HardLockup) as failed:
        m.run(a_thread_exits_then_another_starts(seen, moves=30))
    trace = failed.value.report.split("minimal trace")[1].splitlines()[1:-1]
    head = trace[0]
    assert re.match(r"  \(events of CPUs \[0, 1\] and tasks \[.*\]; \d+ earlier lines not shown, "
                    r"but the 3 the report points at\)", head), head
    kept, gap, last = trace[1:4], trace[4], trace[5:]
    assert [line.split("   <- ")[1] for line in kept] == [
        "cid 1 of mm#1 set", "cid 1 of mm#1 taken", "cid 1 of mm#1 lost: the bit left set"]
    assert gap.strip() == "..." and len(last) == 60
    assert not any("   <- " in line for line in last)


@pytest.mark.parametrize("era", ["v6.4", "v6.13"])
def test_a_cpu_slot_that_dropped_its_cid_without_clearing_it_is_named(era):
    """v6.4 to v6.18: a put of a CPU's cid that leaves the bit set.  The exit
    of the first thread unsets its CPU's slot, and on 2 CPUs the CPU that
    schedules the second thread in spins in __mm_cid_try_get(): the report
    names the slot that dropped the cid and where."""
    seen = {}
    m = Machine(nr_cpus=2, variants=[forgets_to_clear_on_put(get_variant(era))], seed=1)
    with pytest.raises(HardLockup, match=r"spinning on cpu_relax\(\) loop") as failed:
        m.run(a_thread_exits_then_another_starts(seen))
    detail = failed.value.detail
    cpu, tid = seen["cpu"], seen["tid"]
    assert re.search(r"  cid 0: CPU \d's slot \(0, ", detail)
    assert re.search(rf"  cid 1: NO OWNER\n      set at .*\n      last held by CPU {cpu}'s slot, "
                     rf"from .*\n      dropped by CPU {cpu}'s slot at 0\.\d+ on CPU {cpu} "
                     rf"\(main-{tid}, in mm_cid_pcpu_unset<-mm_cid_put<-"
                     rf"sched_mm_cid_exit_signals\): 1 -> UNSET, the bit left set", detail)
    assert f"owner=cpu{cpu} old=1 new=UNSET lost=1" in failed.value.report


def test_a_task_that_exits_holding_its_cid_is_a_p4_orphan_with_its_story():
    """v6.3 with an exit that forgets mm_cid_put(): once quiet, mm#1 (still
    held by an idle CPU's lazy reference) has bits set that no task owns, and
    P4's report says which task dropped each and where."""
    class ForgetsToPut(get_variant("v6.3")):
        name = "v6.3-forgets-to-put"

        def sched_mm_cid_exit_signals(self, t):
            if t.mm is not None:
                t.mm_cid = -1
                t.mm_cid_active = 0

    seen = {}

    def first(_):
        seen["tid"] = gettid()
        busy_wait(100_000)

    def main():
        pthread_join(pthread_create(first))
        usleep(10)
        return 0
    with pytest.raises(InvariantViolation, match=r"P4 no orphan: mm#1 has cid bits \[0, 1\] set "
                                                 r"with no owner") as failed:
        Machine(nr_cpus=2, variants=[ForgetsToPut], seed=1).run(main)
    tid = seen["tid"]
    assert re.search(rf"last held by main\[{tid}\], from .*\n      dropped by main\[{tid}\] at "
                     rf"0\.\d+ on CPU \d \(main-{tid}, in sched_mm_cid_exit_signals<-exit_signals<-"
                     rf"do_exit\): \d -> -1, the bit left set", failed.value.detail)
    assert f"owner=main[{tid}] old=0 new=-1 lost=0" in failed.value.report


def test_a_cpu_spinning_on_a_spinlock_is_told_who_holds_it_and_since_when():
    """v6.3 whose allocation, once, keeps mm->cid_lock for 2 s (a path
    stopped with the lock held): the next CPU to switch a thread of the mm in
    spins on cid_lock, and the report names the holder, its CPU and the time
    it took the lock."""
    class SlowAllocation(get_variant("v6.3")):
        name = "v6.3-slow-allocation"
        slow = True

        def _mm_cid_get(self, mm):
            cid = super()._mm_cid_get(mm)
            if self.slow and cid == 1:
                self.slow = False
                self.k.pause_kernel_path(2_000_000_000)
            return cid

    def main():
        threads = [pthread_create(lambda _: busy_wait(100_000)) for _ in range(3)]
        for t in threads:
            pthread_join(t)
        return 0
    with pytest.raises(HardLockup, match=r"hard LOCKUP on CPU (\d): .* spinning on "
                                         r"mm#1->cid_lock for") as failed:
        Machine(nr_cpus=4, variants=[SlowAllocation], seed=1).run(main)
    spinning = int(re.search(r"LOCKUP on CPU (\d)", failed.value.message).group(1))
    holder = re.match(r"mm#1->cid_lock held by (\S+) on CPU (\d) since (0\.\d+) \((\d+\.\d) us\)",
                      failed.value.detail)
    assert holder, failed.value.detail
    assert int(holder.group(2)) != spinning
    assert float(holder.group(4)) > 1e6                      # over a second held


def test_with_the_trace_tail_off_nothing_is_watched_and_the_table_remains():
    """trace_tail=0 and no subscriber: the bitmap and the cids stay in their
    plain classes (a store costs what it always did), and the report still
    has the owner table, saying it has no events to tell the story by."""
    seen = {}
    variant = forgets_to_clear_on_unset(get_variant("v7.0"))

    class Looking(variant):
        def sched_mm_cid_fork(self, t):
            super().sched_mm_cid_fork(t)
            seen.setdefault("types", (type(t.mm.cidmask), type(t.mm_cid),
                                      {type(pcp) for _, pcp in touched(t.mm.mm_cid.pcpu)},
                                      type(t)))

    m = Machine(nr_cpus=2, variants=[Looking], seed=1, trace_tail=0)
    with pytest.raises(HardLockup) as failed:
        m.run(a_thread_exits_then_another_starts({}))
    assert seen["types"] == (Cpumask, sched_mm_cid, {mm_cid_pcpu}, Task)
    assert ("  cid 1: NO OWNER\n      (no mm_cid events: the trace tail is off)"
            in failed.value.detail)


def workload(nr_cpus):
    """Threads that sleep, compute, move to another CPU and exit, more of
    them than CPUs (v6.19+ goes to per-CPU mode and back), and a child
    process with a thread of its own."""
    def worker(i):
        for n in range(3):
            usleep(50 + 20 * i)
            busy_wait(200_000)
            pthread_setaffinity_np(pthread_self(), {(i + n + 1) % nr_cpus})
            busy_wait(300_000)

    def child():
        pthread_join(pthread_create(lambda _: busy_wait(100_000)))
        return 0

    def main():
        threads = [pthread_create(worker, i) for i in range(nr_cpus + 2)]
        for t in threads:
            pthread_join(t)
        waitpid(fork(child))
        return 0
    return main


def test_every_store_to_the_cid_storage_is_an_event(emu_variant):
    """The bitmap and what each watched task or CPU slot owns, rebuilt from
    the mm_cid events alone, match the variant's state at every context
    switch of a run: the watches miss no store."""
    m = Machine(nr_cpus=4, variants=[emu_variant], seed=1)
    k = m.kernel
    v = k.mm_cid
    bits, owns, wrong, checks = {}, {}, [], []

    def key(owner):
        return owner if isinstance(owner, int) else id(owner)

    def on_bit(record):
        f = record[5].fields
        bit = 1 << f["cid"]
        old = bits.get(f["mm"], 0)
        bits[f["mm"]] = old | bit if record[4] == "mm_cid_get" else old & ~bit

    def on_owner(record):
        f = record[5].fields
        owns[f["mm"], key(f["owner"])] = f["got"]

    def check(record):
        for mm in list(k.live_mms.values()):
            if v.cid_holders(mm) is None:
                return
            if bits.get(mm, 0) != v.cidmask_bits(mm):
                wrong.append((record, mm, "bits", bits.get(mm, 0), v.cidmask_bits(mm)))
            for cpu, slot in touched(v.cid_slots(mm)):
                have = v.owned_cid("cpu", slot.cid)
                if isinstance(slot, Watched) and owns.get((mm, cpu), -1) != have:
                    wrong.append((record, mm, f"CPU {cpu}", owns.get((mm, cpu), -1), slot.cid))
            for t in list(k.tasks.values()):
                watched = isinstance(t, Watched) or isinstance(t.__dict__.get("mm_cid"), Watched)
                if t.mm is mm and watched:
                    have = v.owned_cid("task", v.task_cid_value(t))
                    if owns.get((mm, id(t)), -1) != have:
                        wrong.append((record, mm, t, owns.get((mm, id(t)), -1), have))
            checks.append(mm)

    k.tp.subscribe("mm_cid_get", on_bit)
    k.tp.subscribe("mm_cid_put", on_bit)
    k.tp.subscribe("mm_cid_owner", on_owner)
    k.tp.subscribe("sched_switch", check)
    try:
        m.run(workload(4))
    except EmulationFailure:
        pass                    # a patch's own failure: what ran until it is checked
    assert not wrong, wrong[:3]
    if k.mm_cid.keeps_cid_bitmap:
        assert len(checks) > 60 and bits and owns


def test_pinned_events_are_kept_ahead_of_the_last_lines():
    """Tracepoints.pin(): a pinned event of a CPU the failure does not name,
    older than the window, is printed with its note before the window."""
    m = Machine(nr_cpus=2, seed=1)
    tp = m.kernel.tp
    k = m.kernel
    k.cpu = 1
    tp.emit("function", "the_one_that_matters()")
    pinned = tp.tail[-1]
    k.cpu = 0
    for i in range(100):
        tp.emit("function", f"noise_{i}()")
    tp.pin(pinned, "this one")
    lines = tp.minimal_trace("CPU 0", lines=10).splitlines()
    assert "90 earlier lines not shown, but the 1 the report points at" in lines[0]
    assert lines[1].endswith("function: the_one_that_matters()   <- this one")
    assert lines[2].strip() == "..."
    assert [line.split(": ")[-1] for line in lines[3:]] == [f"noise_{i}()" for i in range(90, 100)]


def test_the_tail_keeps_the_mm_cid_fields_raw_and_prints_them_as_a_subscriber_sees_them(
        emu_variant):
    """Where only the trace tail listens, it keeps an mm_cid event's fields
    as a plain tuple (the cheap form) and prints it when asked: the same
    lines, and the same fields, as the run of the same machine whose
    subscriber has each event's Fields from emit()."""
    tails, seen = [], []
    for subscribed in (False, True):
        m = Machine(nr_cpus=4, variants=[emu_variant], seed=1)
        if subscribed:
            for event in CID_EVENTS:
                m.kernel.tp.subscribe(event, lambda record: None)
        try:
            m.run(workload(4))
        except EmulationFailure:
            pass
        tails.append(list(m.kernel.tp.tail))
    raw, emitted = tails
    assert [Tracepoints.format(r) for r in raw] == [Tracepoints.format(r) for r in emitted]
    cid = [(r, e) for r, e in zip(raw, emitted) if r[4] in CID_EVENTS]
    if m.mm_cid_class.keeps_cid_bitmap:     # (emu_variant may be of another subsystem)
        assert cid
    for r, e in cid:
        assert type(r[5]) is tuple and isinstance(e[5], Fields)
        seen.append(Fields.of(r[5]).fields["where"])
        assert Fields.of(r[5]).fields.keys() == e[5].fields.keys()
    assert "?" not in seen


@pytest.mark.parametrize("era", ["v6.3", "v6.4", "v7.0"])
def test_in_names_the_same_kernel_functions_under_the_function_tracer(era):
    """in= skips the function tracer's wrappers between the kernel functions
    (a replay has them): the mm_cid lines of a run are the same with it."""
    lines = []
    for functions in (False, True):
        m = Machine(nr_cpus=3, variants=[era], seed=2, trace=True, trace_functions=functions)
        m.run(workload(3))
        lines.append([line for line in m.trace_text().splitlines()
                      if ": mm_cid_" in line and ": function: " not in line])
    assert lines[0] == lines[1] and len(lines[0]) > 10
    assert not any("traced" in line for line in lines[1])


def test_an_event_names_its_mm_as_it_was_then():
    """An event keeps its mm's name of the time: a child's mm freed (and
    poisoned) before the trace is printed is still mm#2 in the events of
    the child, and an event on an mm already freed names it <freed mm#N>."""
    def child():
        pthread_join(pthread_create(lambda _: busy_wait(100_000)))
        return 0

    def main():
        waitpid(fork(child))
        for _ in range(3):
            for t in [pthread_create(lambda _: busy_wait(200_000)) for _ in range(3)]:
                pthread_join(t)
        return 0
    m = Machine(nr_cpus=2, variants=["v7.0"], seed=1, trace=True)
    m.run(main)
    assert m.kernel.mms_freed == 1
    lines = [line for line in m.trace_text().splitlines() if ": mm_cid_" in line]
    assert any(" mm=mm#2 " in line for line in lines)
    assert not any("freed" in line for line in lines)

    k = Machine(nr_cpus=1, seed=1).kernel
    mm = mm_struct(9)
    kasan_record_alloc(mm, k, "mm#9")
    watch, live = _mm_watch(mm), mm.__class__
    kasan_poison(mm, k)
    assert str(Fields.of((CidBitFields, watch, live, 1, ()))) == "mm=mm#9 cid=1 in=?"
    assert str(Fields.of((CidBitFields, watch, mm.__class__, 1, ()))) == \
        "mm=<freed mm#9> cid=1 in=?"
