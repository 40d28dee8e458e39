"""kernel/fork.c: mm_struct and its two reference counts, copy_process().

``mm_users`` counts users of the address space (threads, mmget() holders);
``mm_count`` counts references to the struct itself (mmgrab(): lazy TLB,
kernel users), with one reference held on behalf of all mm_users.  The last
mmput() tears the address space down and drops that reference; the last
mmdrop() frees the struct (__mmdrop), after which it is poisoned.
"""

from ..checks.kasan import kasan_poison, kasan_record_alloc
from ..errors import KernelBug
from ..observe.trace import MmFields, SchedProcessForkFields, forget_mm, forget_task
from .locking import (
    atomic_dec_and_test, atomic_inc, atomic_read, atomic_t, raw_spin_lock, raw_spin_unlock,
)
from .sched.fair import FairSchedClass
from .task import (
    EXIT_DEAD, PF_KTHREAD, SCHED_NORMAL, SignalStruct, Task, TASK_DEAD, TASK_NEW,
)

CLONE_VM = 0x00000100
CLONE_FS = 0x00000200
CLONE_FILES = 0x00000400
CLONE_SIGHAND = 0x00000800
CLONE_VFORK = 0x00004000
CLONE_THREAD = 0x00010000
CLONE_SYSVSEM = 0x00040000
CLONE_SETTLS = 0x00080000
CLONE_CHILD_CLEARTID = 0x00200000
CLONE_PTHREAD = (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                 CLONE_SYSVSEM | CLONE_SETTLS | CLONE_CHILD_CLEARTID)
SIGCHLD = 17

EAGAIN = 11
EINTR = 4


# Fields dup_mm() does not take over from the parent (the kernel resets them).
_MM_OWN_FIELDS = {"id", "mm_users", "mm_count", "owner", "cpu_bitmap", "next_addr"}


class mm_struct:
    """The parts of mm_struct the model needs; variants add their own fields
    in ``mm_init_cid()``."""

    def __init__(self, mm_id):
        self.id = mm_id
        self.mm_users = atomic_t(1)
        self.mm_count = atomic_t(1)
        self.owner = None
        self.cpu_bitmap = 0           # mm_cpumask(): CPUs that have run it
        self.next_addr = 0x7f0000001000

    def __repr__(self):
        return f"mm#{self.id}"


class Fork:
    """Mixin."""

    # -- mm reference counts -----------------------------------------------------------

    def allocate_mm(self):
        self.mm_seq += 1
        mm = mm_struct(self.mm_seq)
        kasan_record_alloc(mm, self, f"mm#{mm.id}")
        self.live_mms[mm.id] = mm
        self.mms_allocated += 1
        if self.tp.mm_alloc:
            cur = self.cur
            self.tp.emit("mm_alloc", MmFields((MmFields, mm, mm.id, cur.comm, cur.pid)))
        return mm

    def mm_alloc(self):
        mm = self.allocate_mm()
        self.mm_init(mm, self.cur)
        return mm

    def mm_init(self, mm, p):
        mm.owner = p
        self.mm_alloc_pgd(mm)
        self.mm_cid.mm_alloc_cid(mm, p)

    def mmget(self, mm):
        atomic_inc(mm.mm_users)

    def mmget_not_zero(self, mm):
        if atomic_read(mm.mm_users) == 0:
            return False
        atomic_inc(mm.mm_users)
        return True

    def mmput(self, mm):
        if atomic_dec_and_test(mm.mm_users):
            self._mmput(mm)

    def _mmput(self, mm):
        """__mmput(): the address space goes (exit_mmap); the struct may live on."""
        self.exit_mmap(mm)
        self.tlb_finish_mmu(mm)                     # the fullmm flush (kernel/lazy_tlb.py)
        mm.owner = None
        self.mmdrop(mm)

    def mmgrab(self, mm):
        atomic_inc(mm.mm_count)

    def mmdrop(self, mm):
        if atomic_dec_and_test(mm.mm_count):
            self._mmdrop(mm)

    # mmgrab_lazy_tlb() and friends are the lazy_tlb variant's (kernel/lazy_tlb.py);
    # mmdrop_sched() would defer to RCU on PREEMPT_RT, which is not modelled.
    mmdrop_sched = mmdrop

    def _mmdrop(self, mm, deferred_since=None):
        """__mmdrop(): free the struct.  Variants tear their state down first
        (mm_destroy_cid(), cancelling delayed work...).  A lazy_tlb variant
        that defers the free calls it again later with *deferred_since*."""
        if mm is self.init_mm:
            raise KernelBug("BUG: __mmdrop(&init_mm)")
        # Ensure no CPUs are using this as their lazy tlb mm (v6.4); False:
        # the lazy_tlb variant took the free over.
        if deferred_since is None and not self.cleanup_lazy_tlbs(mm):
            return
        self.mmdrop_free(mm, deferred_since)        # the lazy-TLB check (P6) and bookkeeping
        self.mm_free_pgd(mm)
        slots = self.mm_cid.cid_slots(mm)
        self.mm_cid.mm_destroy_cid(mm)
        if self.tp.mm_free:
            self.tp.emit("mm_free", MmFields((MmFields, mm, mm.id)))
        self.mms_freed += 1
        del self.live_mms[mm.id]
        kasan_poison(mm, self)
        if self.tp.names:
            forget_mm(self, mm, slots)

    def switch_mm_irqs_off(self, prev_mm, next_mm, tsk):
        """Load *next_mm* on this CPU (the TLB side is not modelled)."""
        cpu = self.cpu
        if prev_mm is not next_mm:
            next_mm.cpu_bitmap |= 1 << cpu
            if self.memory_model is not None:
                self.memory_model.switch_mm(cpu)    # the arch's implied barrier, if any
        self.rqs[cpu].loaded_mm = next_mm

    # -- tasks -----------------------------------------------------------------------------

    def alloc_pid(self):
        self.last_pid += 1
        return self.last_pid

    def dup_task_struct(self, orig, comm):
        p = Task(self.alloc_pid(), comm or orig.comm)
        p.flags = orig.flags & ~PF_KTHREAD if orig is not None else 0
        if orig is not None:
            # The struct copy: until copy_mm() the child points at the parent's mm,
            # which is what __sched_fork() (init_sched_mm_cid()) sees.
            p.mm, p.active_mm = orig.mm, orig.active_mm
            p.policy, p.prio, p.rt_priority = orig.policy, orig.prio, orig.rt_priority
            p.sched_class = orig.sched_class
            p.cpus_mask, p.nr_cpus_allowed = orig.cpus_mask, orig.nr_cpus_allowed
            p.cpu = p.wake_cpu = orig.cpu
        self.mm_cid.init_task_fields(p)
        return p

    def sched_fork(self, p):
        """__sched_fork() and sched_fork(): a new task starts TASK_NEW on this CPU."""
        p.on_rq = 0
        p.sum_exec_runtime = p.prev_sum_exec_runtime = 0
        p.vruntime = self.rqs[self.cpu].cfs.min_vruntime
        self.mm_cid.init_sched_mm_cid(p)
        p.state = TASK_NEW
        if p.policy == SCHED_NORMAL:
            p.sched_class = FairSchedClass
        p.cpu = p.wake_cpu = self.cpu

    def copy_mm(self, clone_flags, p):
        p.mm = p.active_mm = None
        oldmm = self.cur.mm
        if oldmm is None:
            return 0
        if clone_flags & CLONE_VM:
            self.mmget(oldmm)
            mm = oldmm
        else:
            mm = self.dup_mm(p, oldmm)
        p.mm = p.active_mm = mm
        self.mm_cid.fork_in_copy_mm(p)
        return 0

    def dup_mm(self, p, oldmm):
        """The child's mm starts as a memcpy() of the parent's, then mm_init()
        re-initialises it.  Scalar fields are copied (a variant's
        ``mm_cid_next_scan``, say); objects are not, since Python would share
        what C copies by value, and mm_init() replaces them anyway."""
        mm = self.allocate_mm()
        for name, value in vars(oldmm).items():
            if name not in _MM_OWN_FIELDS and isinstance(value, (int, bool)):
                setattr(mm, name, value)
        self.mm_init(mm, p)
        self.dup_mmap(mm, oldmm)
        mm.next_addr = oldmm.next_addr
        return mm

    def copy_process(self, clone_flags, comm, user):
        cur = self.cur
        if self.nr_threads >= self.max_threads:
            return None
        p = self.dup_task_struct(cur, comm)
        self.sched_fork(p)
        self.copy_mm(clone_flags, p)
        # copy_namespaces(), copy_io(), copy_thread(), alloc_pid(): from
        # copy_mm() on the child can be an mm user, but no walk of the thread
        # or task lists sees it before the list_add_tail_rcu()s under
        # tasklist_lock below.  alloc_pid() takes pidmap_lock with interrupts
        # off; turning them back on is a point where the forking path may be
        # preempted, as the kernel's path may be (its allocations sleep).
        # (The model numbered the pid in dup_task_struct() already.)
        flags = self.local_irq_save()
        raw_spin_lock(self.pidmap_lock)
        raw_spin_unlock(self.pidmap_lock)
        self.local_irq_restore(flags)
        p.user = user
        if user is not None:
            user.task = p
            if user.pthread is not None:
                user.pthread.task = p
            if clone_flags & CLONE_CHILD_CLEARTID:
                p.clear_child_tid = user.pthread
        if clone_flags & CLONE_THREAD:
            p.tgid = cur.tgid
            p.signal = cur.signal
            p.group_leader = cur.group_leader
            p.real_parent = cur.real_parent
        else:
            p.tgid = p.pid
            p.signal = SignalStruct(p.pid)
            p.signal.parent = cur.signal
            cur.signal.children.append(p.signal)
            p.real_parent = cur.group_leader
        p.signal.live += 1
        self.copy_sighand(clone_flags, p)          # handlers and mask (kernel/signal.py)
        # write_lock_irq(&tasklist_lock): the child joins its thread group and
        # the task list; walkers (for_each_process_thread()) read them under RCU.
        flags = self.local_irq_save()
        raw_spin_lock(self.tasklist_lock)
        # Let kill terminate clone/fork in the middle (under the parent's
        # siglock in the kernel: a kill that marked the threads before this
        # point finds this one refusing to join; one after it finds it in
        # the list).
        if cur.sigkill:                            # fatal_signal_pending(current)
            raw_spin_unlock(self.tasklist_lock)
            self.local_irq_restore(flags)
            self.bad_fork_cleanup(clone_flags, p)
            return -EINTR
        p.signal.threads.append(p)
        self.tasks[p.pid] = p
        raw_spin_unlock(self.tasklist_lock)
        self.local_irq_restore(flags)
        self.rseq_fork(p, clone_flags)
        self.nr_threads += 1
        if user is not None:
            self.nr_user_tasks += 1
        if self.tp.sched_process_fork:
            self.tp.emit("sched_process_fork", SchedProcessForkFields((
                SchedProcessForkFields, cur.comm, cur.pid, p.comm, p.pid)))
        return p

    def bad_fork_cleanup(self, clone_flags, p):
        """copy_process()'s error path from the late fatal-signal check
        (bad_fork_cancel_cgroup down to bad_fork_free), for what the model's
        copy_process() set up: the child's share of its signal struct, the
        mm (bad_fork_cleanup_mm: the mm_cid hook of the eras that count the
        child as a user from copy_mm(), then mmput()).  The child never ran:
        it has no kernel stack yet and no list holds it."""
        if clone_flags & CLONE_THREAD:
            p.signal.live -= 1
        else:
            self.cur.signal.children.remove(p.signal)
        if p.user is not None:
            p.user.task = None
            if p.user.pthread is not None:
                p.user.pthread.task = None
            p.user = None
        p.clear_child_tid = None
        if p.mm is not None:                        # bad_fork_cleanup_mm
            self.mm_cid.cancel_fork_in_bad_fork_cleanup_mm(p)
            self.mmput(p.mm)
        p.mm = p.active_mm = None
        p.state = TASK_DEAD                         # bad_fork_free: delayed_free_task()

    def kernel_clone(self, clone_flags, comm, user):
        """Create a task running *user* (a host or program context); returns its
        pid, or -EAGAIN (too many tasks), or -EINTR (a fatal signal came
        while the child was being made).  With CLONE_VFORK the caller waits
        for the child to exec or exit."""
        self.charge(self.costs["clone_ns"])
        p = self.copy_process(clone_flags, comm, user)
        if p is None:
            return -EAGAIN
        if isinstance(p, int):
            return p
        vfork = None
        if clone_flags & CLONE_VFORK:
            # The parent waits on its own completion (struct completion vfork
            # on its stack): the child may exec or exit, and clear
            # p.vfork_done, before the parent gets to wait.
            vfork = p.vfork_done = self.init_completion("vfork_done")
        self.sched_post_fork(p)
        self.wake_up_new_task(p)
        if vfork is not None:
            self.wait_for_completion_killable(vfork)
        return p.pid

    def sched_post_fork(self, p):
        """After the task is visible in the thread and task lists (v6.19+:
        b2e48c429ec5 moved sched_mm_cid_fork() here from copy_mm())."""
        if p.mm is not None:
            self.mm_cid.fork_in_sched_post_fork(p)

    # -- kernel threads ----------------------------------------------------------------------

    def kthread_create(self, fn, arg, name, cpus, wake=True):
        """Create a kernel thread running ``fn(arg)`` on *cpus*, and start it
        unless *wake* is False (kthread_create() then wake_up_process())."""
        p = Task(self.alloc_pid(), name)
        p.flags = PF_KTHREAD
        p.sched_class = FairSchedClass
        p.cpus_mask = cpus
        p.nr_cpus_allowed = cpus.bit_count()
        p.cpu = p.wake_cpu = (cpus & -cpus).bit_length() - 1
        p.threadfn, p.threadarg = fn, arg
        p.signal = SignalStruct(p.pid)
        p.signal.live = 1
        p.signal.threads.append(p)
        self.mm_cid.init_task_fields(p)
        p.vruntime = self.rqs[p.cpu].cfs.min_vruntime
        self.tasks[p.pid] = p
        self.nr_threads += 1
        if wake:
            self.wake_up_new_task(p)
        return p

    def kthread_create_on_cpu(self, fn, arg, cpu, name, wake=True):
        return self.kthread_create(fn, arg, name, 1 << cpu, wake)

    def release_task_struct(self, p):
        """put_task_struct_rcu_user(): nothing of the dead task is used after this."""
        p.user = None
        if p.exit_state == EXIT_DEAD:
            self.free_task(p)

    def free_task(self, p):
        """The last reference to *p* is gone: it is dead (put_task_struct_rcu_user())
        and reaped (release_task()), whichever came last calls this.  Nothing
        uses it any more: its own references that make a cycle go, so that
        Python frees it at once rather than at the collector's next pass (a
        fork storm's tasks were a third of what the collector freed, and the
        collector 12 % of the time)."""
        p.group_leader = None                   # a leader's is itself
        if self.tp.names:
            forget_task(self, p)
