"""kernel/rseq.c and include/uapi/linux/rseq.h.

The kernel writes a thread's ``struct rseq`` only on the way back to user
space, when TIF_NOTIFY_RESUME is set: after a preemption (rseq_preempt()), a
migration (rseq_migrate()), a registration or an explicit
rseq_set_notify_resume().  rseq_update_cpu_node_id() then writes
cpu_id_start, cpu_id, node_id and mm_cid (v6.3 onwards).

Departure: user code has no instruction pointer, so a critical section cannot
be aborted; rseq_ip_fixup() only clears ``rseq_cs`` (as an abort would) and
counts the abort in ``struct rseq.aborts`` (a field of the model, not the ABI).
"""

from ..checks.invariants import P3_rseq_written_by_the_kernel_update
from ..errors import KernelBug
from .task import PF_EXITING

ORIG_RSEQ_SIZE = 32
RSEQ_FEATURE_SIZE = 28             # AT_RSEQ_FEATURE_SIZE: up to mm_cid
RSEQ_ALIGN = 32                    # AT_RSEQ_ALIGN
RSEQ_FLAG_UNREGISTER = 1 << 0
RSEQ_SIG = 0x53053053              # x86
RSEQ_CPU_ID_UNINITIALIZED = -1
RSEQ_CPU_ID_REGISTRATION_FAILED = -2
RSEQ_EVENT_PREEMPT = 1 << 0
RSEQ_EVENT_SIGNAL = 1 << 1
RSEQ_EVENT_MIGRATE = 1 << 2

EINVAL = 22
EPERM = 1
EBUSY = 16
EFAULT = 14


class struct_rseq:
    """One thread's rseq area in user memory (``addr`` is its user address)."""

    __slots__ = ("addr", "mm", "cpu_id_start", "cpu_id", "rseq_cs", "flags", "node_id",
                 "mm_cid", "aborts", "kernel_view")

    def __init__(self, addr, mm):
        self.addr = addr
        self.mm = mm
        self.cpu_id_start = 0
        self.cpu_id = RSEQ_CPU_ID_UNINITIALIZED
        self.rseq_cs = 0
        self.flags = 0
        self.node_id = 0
        self.mm_cid = 0
        self.aborts = 0
        self.kernel_view = None       # what the kernel last wrote (P3)

    def copy(self, mm):
        c = struct_rseq(self.addr, mm)
        c.cpu_id_start, c.cpu_id, c.rseq_cs = self.cpu_id_start, self.cpu_id, self.rseq_cs
        c.flags, c.node_id, c.mm_cid = self.flags, self.node_id, self.mm_cid
        return c

    def __repr__(self):
        return (f"rseq@{self.addr:#x}(cpu_id_start={self.cpu_id_start} cpu_id={self.cpu_id} "
                f"node_id={self.node_id} mm_cid={self.mm_cid})")


class Rseq:
    """Mixin."""

    def sys_rseq(self, rseq, rseq_len, flags, sig):
        """The rseq system call, with kernel/rseq.c's checks in its order."""
        current = self.cur
        if flags & RSEQ_FLAG_UNREGISTER:
            if flags & ~RSEQ_FLAG_UNREGISTER:
                return -EINVAL
            # Unregister rseq for current thread.
            if current.rseq is not rseq or current.rseq is None:
                return -EINVAL
            if rseq_len != current.rseq_len:
                return -EINVAL
            if current.rseq_sig != sig:
                return -EPERM
            self.rseq_reset_rseq_cpu_node_id(current)
            current.rseq = None
            current.rseq_sig = 0
            current.rseq_len = 0
            return 0
        if flags:
            return -EINVAL
        if current.rseq is not None:
            # If rseq is already registered, check whether the provided address
            # differs from the prior one.
            if current.rseq is not rseq or rseq_len != current.rseq_len:
                return -EINVAL
            if current.rseq_sig != sig:
                return -EPERM
            # Already registered.
            return -EBUSY
        # If there was no rseq previously registered, ensure the provided rseq
        # is properly aligned, as communicated to user-space through the ELF
        # auxiliary vector AT_RSEQ_ALIGN.  If rseq_len is the original rseq
        # size, the required alignment is the original struct rseq alignment.
        mapped = isinstance(rseq, struct_rseq)      # None or anything else: NULL
        addr = rseq.addr if mapped else 0
        if (rseq_len < ORIG_RSEQ_SIZE
                or (rseq_len == ORIG_RSEQ_SIZE and addr % ORIG_RSEQ_SIZE)
                or (rseq_len != ORIG_RSEQ_SIZE and (addr % RSEQ_ALIGN or rseq_len < RSEQ_FEATURE_SIZE))):
            return -EINVAL
        if not mapped or rseq.mm is not current.mm or addr == 0:     # !access_ok()
            return -EFAULT
        current.rseq = rseq
        current.rseq_len = rseq_len
        current.rseq_sig = sig
        # If rseq was previously inactive, and has just been registered, ensure
        # the cpu_id_start and cpu_id fields are updated before returning to
        # user-space.
        self.rseq_set_notify_resume(current)
        return 0

    @staticmethod
    def rseq_set_notify_resume(t):
        if t.rseq is not None:
            t.notify_resume = True

    @staticmethod
    def rseq_preempt(t):
        t.rseq_event_mask |= RSEQ_EVENT_PREEMPT
        if t.rseq is not None:
            t.notify_resume = True

    @staticmethod
    def rseq_migrate(t):
        t.rseq_event_mask |= RSEQ_EVENT_MIGRATE
        if t.rseq is not None:
            t.notify_resume = True

    def rseq_handle_notify_resume(self, t):
        if t.flags & PF_EXITING or t.rseq is None:
            return
        if t.rseq.rseq_cs:
            self.rseq_ip_fixup(t)
        t.rseq_event_mask = 0
        self.rseq_resuming = t
        self.rseq_update_cpu_node_id(t)
        self.rseq_resuming = None

    def rseq_ip_fixup(self, t):
        """A critical section was active: abort it if an event happened."""
        rseq = t.rseq
        if t.rseq_event_mask:
            rseq.rseq_cs = 0
            rseq.aborts += 1

    def rseq_update_cpu_node_id(self, t):
        rseq = t.rseq
        cpu = t.cpu
        node_id = self.cpu_to_node[cpu]
        mm_cid = self.mm_cid.task_mm_cid(t)
        if mm_cid < 0:
            raise KernelBug(f"WARNING: rseq_update_cpu_node_id(): {t!r} has mm_cid {mm_cid} < 0")
        checks = self.invariants
        if checks is not None:
            if self.rseq_resuming is not t:
                P3_rseq_written_by_the_kernel_update(self, rseq, "mm_cid (not on return to user)")
            view = rseq.kernel_view
            if view is not None and view != (rseq.cpu_id_start, rseq.cpu_id, rseq.node_id, rseq.mm_cid):
                P3_rseq_written_by_the_kernel_update(self, rseq, "cpu_id_start/cpu_id/node_id/mm_cid")
            checks.on_rseq_update(t, mm_cid)
            rseq.kernel_view = (cpu, cpu, node_id, mm_cid)
        rseq.cpu_id_start = cpu
        rseq.cpu_id = cpu
        rseq.node_id = node_id
        rseq.mm_cid = mm_cid
        if self.tp.rseq_update:
            self.tp.emit("rseq_update", f"cpu_id={cpu} node_id={node_id} mm_cid={mm_cid} pid={t.pid}")

    def rseq_reset_rseq_cpu_node_id(self, t):
        rseq = t.rseq
        rseq.cpu_id_start = 0
        rseq.cpu_id = RSEQ_CPU_ID_UNINITIALIZED
        rseq.node_id = 0
        rseq.mm_cid = 0
        rseq.kernel_view = None

    def rseq_fork(self, t, clone_flags):
        """A thread (CLONE_VM) starts unregistered; a forked process inherits
        the registration, at the same address in its copy of the memory."""
        parent = self.cur
        if clone_flags & 0x100 or parent.rseq is None:      # CLONE_VM
            t.rseq = None
            t.rseq_len = 0
            t.rseq_sig = 0
            t.rseq_event_mask = 0
        else:
            t.rseq = parent.rseq.copy(t.mm)
            t.rseq_len = parent.rseq_len
            t.rseq_sig = parent.rseq_sig
            t.rseq_event_mask = parent.rseq_event_mask

    @staticmethod
    def rseq_execve(t):
        t.rseq = None
        t.rseq_len = 0
        t.rseq_sig = 0
        t.rseq_event_mask = 0

    def rseq_alloc_area(self, mm, align=RSEQ_ALIGN, misalign=0):
        """Allocate a struct rseq in *mm*'s user memory (a TLS slot)."""
        addr = -(-mm.next_addr // align) * align + misalign
        mm.next_addr = addr + 1024
        return struct_rseq(addr, mm)
