"""The variant base classes and the mm_cid call-site interface.

`SchedMmCid` is what the kernel model calls, at the kernel's call sites, for
the mm_cid subsystem.  Its methods are the ``#else /* !CONFIG_SCHED_MM_CID */``
stubs of the kernel headers: a variant overrides the ones its era implements.

| method                            | called from (kernel call site)                         |
|-----------------------------------|--------------------------------------------------------|
| init_task_fields(t)               | dup_task_struct()                                      |
| init_sched_mm_cid(t)              | __sched_fork()                                         |
| mm_alloc_cid(mm, p)               | mm_init() (v6.4+; default: mm_init_cid(mm, p))         |
| mm_init_cid(mm, p)                | mm_alloc_cid(); the machine's init_mm (p is None)      |
| exec_mmap(mm)                     | exec_mmap() (mm_init_cid(mm, tsk) in v6.3..v6.18)      |
| mm_destroy_cid(mm)                | __mmdrop()                                             |
| fork_in_copy_mm(t)                | copy_mm(): sched_mm_cid_fork(t) until v6.18           |
| fork_in_sched_post_fork(t)        | sched_post_fork(): sched_mm_cid_fork(t) from v6.19     |
| cancel_fork_in_bad_fork_cleanup_mm| copy_process()'s bad_fork_cleanup_mm: sched_mm_cid_exit|
|   (t)                             | (t) while the CID rewrite forked in copy_mm() (seed 003)|
| sched_mm_cid_exit(t)              | do_exit(), before exit_signals() (v6.19+)              |
| sched_mm_cid_exit_signals(t)      | exit_signals(), before PF_EXITING (v6.3-v6.18)         |
| sched_mm_cid_before_execve(t)     | bprm_execve()                                          |
| sched_mm_cid_after_execve(t)      | bprm_execve(), success and failure paths               |
| switch_mm_cid(rq, prev, next)     | context_switch(), after the mm switch                  |
| sched_mm_cid_migrate_from(t)      | set_task_cpu()                                         |
| migrate_to_in_activate_task(..)   | activate_task(): sched_mm_cid_migrate_to(rq, t) for an |
|                                   | ENQUEUE_MIGRATED enqueue (seed 001: a queued migration)|
| task_tick_mm_cid(rq, curr)        | scheduler_tick(), rq lock held                         |
| mm_set_cpus_allowed(mm, mask)     | __do_set_cpus_allowed()                                |
| task_mm_cid(t)                    | rseq_update_cpu_node_id()                              |
"""

from ..kernel.percpu import touched
from ..kernel.sched.sched import ENQUEUE_MIGRATED
from ..observe.cid_watch import tracing_cids, watch_slots, watched_cidmask


class Finding:
    """A recorded finding of a variant: a failure of class *error* whose
    fields (``EmulationFailure.fields``) are those given, in a run where the
    variant noted *cause* (``Kernel.causes``; None: any run), is the known bug
    *reason* explains.  A field given as a tuple matches any of its values.
    A patch deriving from the variant inherits it (emulator.explore.findings).

        Finding(InvariantViolation, CLEARED_CID_IN_USE, REASON, invariant=("P1", "P11"))
    """

    __slots__ = ("error", "cause", "reason", "fields")

    def __init__(self, error, cause, reason, **fields):
        self.error, self.cause, self.reason = error, cause, reason
        self.fields = {name: value if isinstance(value, tuple) else (value,)
                       for name, value in fields.items()}

    def matches(self, exc, causes):
        """Whether failure *exc*, in a run that noted *causes* (None: not
        known), is this finding."""
        return isinstance(exc, self.error) and \
            all(exc.fields.get(name, _MISSING) in values for name, values in self.fields.items()) and \
            (self.cause is None or causes is None or self.cause in causes)


_MISSING = object()


class Variant:
    """A kernel version or patch of one subsystem.  ``self.k`` is the kernel."""

    subsystem = None
    name = None
    copies = ""          # the commit or posting it copies
    source = None        # the file a user patch was loaded from
    known_findings = ()  # Finding()s this variant itself adds (not its bases')

    def __init__(self, kernel):
        self.k = kernel

    @classmethod
    def describe(cls):
        return f"{cls.name:<24} {cls.copies}"


class SchedMmCid(Variant):
    """CONFIG_SCHED_MM_CID=n: no concurrency ids; rseq's mm_cid is the CPU."""

    subsystem = "mm_cid"

    def init_task_fields(self, t):
        pass

    # The call sites that moved between eras: the kernel calls each hook at
    # its site, and an era does there what its kernel does.

    def fork_in_copy_mm(self, t):
        """copy_mm(), once the child's mm is set: sched_mm_cid_fork() there
        until v6.18."""
        self.sched_mm_cid_fork(t)

    def fork_in_sched_post_fork(self, t):
        """sched_post_fork(), for a child with an mm: sched_mm_cid_fork()
        there since b2e48c429ec5 (v6.19)."""

    def cancel_fork_in_bad_fork_cleanup_mm(self, t):
        """copy_process()'s bad_fork_cleanup_mm, for a child that will never
        run: the CID rewrite called sched_mm_cid_exit(p) there while its
        fork hook ran in copy_mm() (b2e48c429ec5 removed both); the eras
        before it had nothing there, and none after it needs anything."""

    def migrate_to_in_activate_task(self, rq, t, flags):
        """activate_task(): sched_mm_cid_migrate_to() for every enqueue with
        ENQUEUE_MIGRATED, migrating wake-ups included (v6.4 onwards)."""
        if flags & ENQUEUE_MIGRATED:
            self.sched_mm_cid_migrate_to(rq, t)

    def init_sched_mm_cid(self, t):
        pass

    def mm_alloc_cid(self, mm, p):
        """mm_init() calls mm_alloc_cid(mm, p) (v6.4 onwards), which allocates
        the per-CPU state and calls mm_init_cid(); v6.4+ exec_mmap() calls
        mm_init_cid() alone.  A variant that keeps both in mm_init_cid() need
        not override this."""
        self.mm_init_cid(mm, p)

    def mm_init_cid(self, mm, p):
        pass

    def exec_mmap(self, mm):
        pass

    def mm_destroy_cid(self, mm):
        pass

    def sched_mm_cid_fork(self, t):
        pass

    def sched_mm_cid_exit(self, t):
        pass

    def sched_mm_cid_exit_signals(self, t):
        pass

    def sched_mm_cid_before_execve(self, t):
        pass

    def sched_mm_cid_after_execve(self, t):
        pass

    def switch_mm_cid(self, rq, prev, next):
        pass

    def sched_mm_cid_migrate_from(self, t):
        pass

    def sched_mm_cid_migrate_to(self, dst_rq, t):
        pass

    def task_tick_mm_cid(self, rq, curr):
        pass

    def mm_set_cpus_allowed(self, mm, mask):
        pass

    def task_mm_cid(self, t):
        return t.cpu

    # -- what the invariant checks ask of a variant ----------------------------------
    # (not kernel functions: the function tracer leaves them out, and
    # task_mm_cid(), whose result the rseq_update event prints)

    NOT_KERNEL_FUNCTIONS = ("task_mm_cid", "cid_active", "cid_bound", "cid_owners", "cidmask_bits",
                            "cpu_state", "describe", "init_task_fields", "coverage_state",
                            "fork_in_copy_mm", "fork_in_sched_post_fork",
                            "cancel_fork_in_bad_fork_cleanup_mm", "migrate_to_in_activate_task")

    def cid_active(self, t):
        """Whether *t* holds a concurrency id the invariants must check."""
        return False

    def cid_bound(self, mm):
        """P2: every cid user space sees is below this (the era's bound)."""
        return self.k.nr_cpu_ids

    def cid_owners(self, mm):
        """P4: the cids of *mm* that someone owns (a task, a CPU slot), or None
        if the era keeps no bitmap."""
        holders = self.cid_holders(mm)
        return None if holders is None else set(holders)

    def cidmask_bits(self, mm):
        """P4: the cids set in *mm*'s bitmap."""
        return 0

    def cpu_state(self, rq):
        """A short description of this CPU's mm_cid state, for reports."""
        return ""

    # -- where an era keeps its cids: who owns what, for P4 and the owner table
    # of stall reports, and the watches of the mm_cid tracepoints
    # (emulator/observe/cid_watch.py).  Not kernel functions either.

    NOT_KERNEL_FUNCTIONS = NOT_KERNEL_FUNCTIONS + (
        "cid_holders", "owned_cid", "cid_text", "cid_slots", "task_cid_value", "cid_mm_state",
        "watch_cids", "watch_task_cid")
    keeps_cid_bitmap = False        # an era with a per-mm cid bitmap sets it

    def task_cid_value(self, t):
        """What *t* stores of its cid (``t->mm_cid``, ``t->mm_cid.cid``)."""
        return None

    def cid_slots(self, mm):
        """*mm*'s per-CPU storage of cids (a kernel.percpu allocation of
        objects with a ``cid`` field), or () if it has none."""
        return ()

    def owned_cid(self, kind, value):
        """The cid (the bit of the bitmap) that a stored *value* owns, or -1:
        *kind* says whose it is, "task" or "cpu" (a slot).  A function of
        its arguments alone: the mm_cid watches remember its answers."""
        return -1

    def cid_text(self, value):
        """A stored cid value as the era's reports print it (flags by name)."""
        return str(value)

    def cid_mm_state(self, mm):
        """*mm*'s mode and counts, for the owner table's heading."""
        return ""

    def cid_holders(self, mm):
        """{cid: [owner, ...]} of *mm*: an owner is a task or a CPU number
        (its slot); None if the era keeps no bitmap.  cid_owners() is its keys."""
        if not self.keeps_cid_bitmap:
            return None
        holders = {}
        for t in self.k.tasks.values():
            if t.mm is mm:
                cid = self.owned_cid("task", self.task_cid_value(t))
                if cid >= 0:
                    holders.setdefault(cid, []).append(t)
        for cpu, slot in touched(self.cid_slots(mm)):
            cid = self.owned_cid("cpu", slot.cid)
            if cid >= 0:
                holders.setdefault(cid, []).append(cpu)
        return holders

    def watch_cids(self, mm):
        """Not kernel code: called where an era allocates *mm*'s bitmap and
        slots; while the mm_cid tracepoints are on, their stores emit events."""
        if not tracing_cids(self.k):
            return
        mm.cidmask = watched_cidmask(mm.cidmask, mm)
        watch_slots(self.k, self.cid_slots(mm), "cid", mm)

    def watch_task_cid(self, t):
        """Not kernel code: called from init_task_fields() of an era whose
        tasks own cids; while the mm_cid tracepoints are on, stores to *t*'s
        cid emit events."""


class PageAllocPcp(Variant):
    """The page allocator's per-cpu lists (mm/page_alloc.c): what the kernel
    model calls at the kernel's call sites for the page_alloc subsystem.
    There is no CONFIG option without pcp lists, so there are no stubs: an
    era implements every method (emulator/variants/page_alloc_v5_19.py is
    the head, and the later eras derive from it).

    | method                               | called from (kernel call site)            |
    |--------------------------------------|-------------------------------------------|
    | setup_per_cpu_pageset()              | page_alloc_init() (boot)                  |
    | rmqueue(zone, order, mt)             | get_page_from_freelist(): pfn or None     |
    | free_unref_page(pfn, order)          | free_the_page() (__free_pages())          |
    | free_unref_page_list(pfns)           | release_pages() (exit_mmap, munmap, I/O)  |
    | drain_all_pages(zone)                | direct reclaim, alloc_contig_range()      |
    | drain_local_pages(zone)              | the caller's own CPU                      |
    | zone_pcp_disable(zone) / _enable     | offline_pages()                           |
    | page_alloc_cpu_dead(cpu)             | the CPUHP_PAGE_ALLOC_DEAD teardown        |

    ``isolates_drains``: the era promises that a drain never queues work
    on, or sends an IPI to, another CPU (seed 002 onwards); I-P7 checks it.
    ``pcp_protection``: what protects a pcp list, "local_lock" (the owning
    CPU with interrupts off, head) or "pcp->lock" (the series); I-P3
    checks each list change against it.
    """

    subsystem = "page_alloc"
    isolates_drains = False
    pcp_protection = "local_lock"


class LazyTlb(Variant):
    """Lazy-TLB mm references (the lazy_tlb subsystem): what the kernel model
    calls where a kernel thread or the idle task borrows the previous task's
    mm.  The defaults are CONFIG_MMU_LAZY_TLB_REFCOUNT=y (x86, and every arch
    before v6.4): a lazy user holds an mm_count reference.

    | method                            | called from (kernel call site)                        |
    |-----------------------------------|-------------------------------------------------------|
    | mmgrab_lazy_tlb(mm)               | context_switch() user->kernel, exit_mm(),             |
    |                                   | kthread_unuse_mm(), sched_force_init_mm(), CPU boot   |
    | mmdrop_lazy_tlb(mm)               | exec_mmap() (from a kernel thread's lazy mm),         |
    |                                   | kthread_use_mm(), finish_cpu(), sched_force_init_mm() |
    | mmdrop_lazy_tlb_sched(mm)         | finish_task_switch(): rq->prev_mm                     |
    | enter_lazy_tlb(mm, tsk)           | context_switch() to a kernel thread, kthread_unuse_mm |
    | cleanup_lazy_tlbs(mm) -> bool     | __mmdrop(), first; False: the variant took the free   |
    |                                   | over and calls k._mmdrop(mm, deferred_since) later    |
    | tlb_flush_fullmm(mm)              | exit_mmap()'s final flush (the arch's tlb_flush())    |
    | mm_gen_tick(cpu, rq) -> bool      | scheduler_tick(), rq lock held (seed 004's sketch)    |
    | mm_gen_wake()                     | scheduler_tick(), after the rq lock, if it said True  |
    | sched_force_init_mm()             | sched_cpu_wait_empty(), on the outgoing CPU's hotplug |
    |                                   | thread (the hotplug exit race fix; nothing before it) |
    | idle_task_exit()                  | the dead CPU's idle task, after __cpu_disable()       |
    |                                   | (before the fix; nothing after it)                    |
    | finish_cpu(idle)                  | finish_cpu(), on the control CPU: the dead CPU's idle |
    |                                   | task's lazy mm reference goes                         |

    Class attributes the kernel reads at its call sites:
    ``arch``: "x86" (a CPU stays in mm_cpumask() once it ran the mm) or
    "powerpc-radix" (the mask is trimmed: __cpu_disable() clears the CPU from
    every mm's mask, cleanup_cpu_mmu_context()); ``refcounts_lazy``: lazy users hold
    mm_count references (P8 checks their balance); ``shoots_lazies``:
    cleanup_lazy_tlbs() IPIs the mm's CPUs (P9 checks that every lazy user is among
    them).
    """

    subsystem = "lazy_tlb"
    arch = "x86"
    refcounts_lazy = True
    shoots_lazies = False

    NOT_KERNEL_FUNCTIONS = ("describe",)

    def mmgrab_lazy_tlb(self, mm):
        self.k.mmgrab(mm)

    def mmdrop_lazy_tlb(self, mm):
        self.k.mmdrop(mm)

    def mmdrop_lazy_tlb_sched(self, mm):
        # mmdrop_sched(): call_rcu() of __mmdrop() on PREEMPT_RT, not modelled.
        self.k.mmdrop(mm)

    def enter_lazy_tlb(self, mm, tsk):
        pass

    def cleanup_lazy_tlbs(self, mm):
        return True

    def tlb_flush_fullmm(self, mm):
        pass

    def mm_gen_tick(self, cpu, rq):
        return False

    def mm_gen_wake(self):
        pass

    # -- CPU hotplug: where an outgoing CPU leaves its lazy mm for init_mm.  These
    # are v6.4's (and every kernel's before "lazy tlb: fix hotplug exit race with
    # MMU_LAZY_TLB_SHOOTDOWN", linux-next a08311b423ad, Nov 2024, which moved the
    # switch to sched_force_init_mm(), before __cpu_disable():
    # fixtures/patches/shootdown_hotplug_fix.py).

    def sched_force_init_mm(self):
        pass

    def idle_task_exit(self):
        """kernel/sched/core.c, from the dead CPU's arch_cpu_idle_dead():
        switch to init_mm, keeping active_mm (and its lazy reference) for
        finish_cpu() to drop."""
        k = self.k
        cur = k.cur
        mm = cur.active_mm
        if mm is not k.init_mm and mm is not None:
            k.switch_mm_irqs_off(mm, k.init_mm, cur)

    def finish_cpu(self, idle):
        """kernel/cpu.c, on the control CPU once the CPU is dead."""
        k = self.k
        mm = idle.active_mm
        if mm is not k.init_mm:
            # idle_task_exit() will have switched to &init_mm, now
            # clean up any remaining active_mm state.
            idle.active_mm = k.init_mm
        k.mmdrop_lazy_tlb(mm)
