"""kernel/rseq.c and include/uapi/linux/rseq.h.

The kernel writes a thread's ``struct rseq`` only on the way back to user
space, when TIF_NOTIFY_RESUME is set: after a preemption (rseq_preempt()), a
migration (rseq_migrate()), a signal (rseq_signal_deliver()), a registration
or an explicit rseq_set_notify_resume().  rseq_update_cpu_node_id() then
writes cpu_id_start, cpu_id, node_id and mm_cid (v6.3 onwards).

Critical sections.  ``rseq.rseq_cs`` holds a user address: 0, or the address
of a ``struct rseq_cs`` descriptor (`struct_rseq_cs`, registered by address
in `RSEQ_CS_AT`, the program's data) whose start_ip, post_commit_offset and
abort_ip are addresses in the program's text (`USER_TEXT`: address -> the
32-bit word there; the word before an abort_ip is its signature).  The user
side (emulator.uapi.rseq) keeps an abstract instruction pointer,
``user.regs_ip``, which it sets before each instruction of a section; the
fixup reads and moves it as instruction_pointer(regs) and
instruction_pointer_set().  Two eras:

- v6.3 .. v6.18 (kernel/rseq.c, Mathieu Desnoyers; 0190e4198e47 deprecated
  the NO_RESTART flags and the later rseq_warn_flags() refuses any flag):
  at every TIF_NOTIFY_RESUME, rseq_get_rseq_cs() validates the descriptor
  (pointer and ips below TASK_SIZE, version 0, no overflow, abort_ip outside
  the section) and checks the signature before abort_ip against the
  registered one; outside the section rseq_cs is cleared; inside, a nonzero
  flag in rseq_cs or rseq is -EINVAL, and a pending event (preempt, signal,
  migrate) clears rseq_cs and moves the instruction pointer to abort_ip.
  Every error is force_sigsegv().
- v6.19+ (Thomas Gleixner's rework: rseq_update_user_cs() in
  include/linux/rseq_entry.h, confirmed from the V2 posting "rseq: Provide
  and use rseq_update_user_cs()", not from the merged tree): the section is
  looked at only after an event, without any check ("If user space screwed
  it up, it can keep the pieces"): abort_ip is masked to user space, no
  signature, version or flag is read.  With the debug static key
  (``Kernel.rseq_debug``, CONFIG_RSEQ_DEBUG_DEFAULT_ENABLE) the full checks
  of rseq_debug_update_user_cs() run and a failure is fatal (SIGSEGV).  The
  eras whose mm_cid builds on the rework are `RSEQ_REWORK_ERAS`; a patch
  deriving from one of them has its rseq.

Departures: the v6.19 rework's distinction between an interrupt from user
mode (user_irq) and a system call is not modelled: the section is checked
after any event (a correct program makes no system call inside a section);
CONFIG_DEBUG_RSEQ's rseq_syscall() check is not modelled; a write to the rseq
area cannot fault (the area is always mapped), so the SIGSEGV paths are a
bad descriptor pointer, a bad descriptor, a bad signature and the flags.
"""

from ..checks.invariants import P3_rseq_written_by_the_kernel_update
from ..errors import KernelBug
from ..observe.trace import RseqIpFixupFields, RseqUpdateFields
from .task import PF_EXITING

# x86-64 with 4-level page tables: the end of the user address space.
TASK_SIZE = 0x7ffffffff000
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
RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT = 1 << 0
RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL = 1 << 1
RSEQ_CS_FLAG_NO_RESTART_ON_MIGRATE = 1 << 2
RSEQ_CS_NO_RESTART_FLAGS = (RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT | RSEQ_CS_FLAG_NO_RESTART_ON_SIGNAL
                            | RSEQ_CS_FLAG_NO_RESTART_ON_MIGRATE)
SIGSEGV = 11

# The kernel each mm_cid era is (or was posted against), which decides its
# rseq: the eras' rseq behaviour changed at
#   v6.0   0190e4198e47 "rseq: Deprecate RSEQ_CS_FLAG_NO_RESTART_ON_* flags" and
#          c17a6ff93213 "rseq: Kill process when unknown flags are encountered in
#          ABI structures": any flag in rseq or rseq_cs is -EINVAL (SIGSEGV);
#          the pr_warn_once() rseq_warn_flags() came later, same outcome;
#   v6.3   af7f588d8f73 / the extensible ABI: mm_cid and node_id written,
#          rseq_len >= 32 with AT_RSEQ_ALIGN alignment checked before access
#          (EINVAL, never EFAULT, for an unaligned area);
#   v6.19  Thomas Gleixner's rseq rework (rseq_update_user_cs(), no checks
#          without the debug static key).
# Every modelled era is v6.3 or later, so only the last step shows.  seed-000
# is posted against 231825b2e1ff (v6.13-rc), seed-001 against v6.3-rc; seed-003
# (V3, 2025-10-29) sits on the rseq rework: inferred from its being the tree
# v7.0 merged, not from its cover letter.  A patch has the era of the
# registered variant it derives from; an mm_cid era missing here is an error.
RSEQ_KERNEL_OF = {"v6.3": (6, 3), "seed-001": (6, 3), "v6.4": (6, 4), "v6.13": (6, 13),
                  "v6.14": (6, 14), "seed-000": (6, 13), "seed-003": (6, 19),
                  "v7.0": (7, 0)}
RSEQ_REWORK = (6, 19)
RSEQ_REWORK_ERAS = tuple(n for n, v in RSEQ_KERNEL_OF.items() if v >= RSEQ_REWORK)

# The program text every emulated process maps (they all run one binary):
# address -> the 32-bit word there.  What get_user() of a code address reads.
USER_TEXT = {}
# The program's struct rseq_cs descriptors, by address (its data).
RSEQ_CS_AT = {}

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


class struct_rseq_cs:
    """A critical section's descriptor in user memory (``addr``), 32-byte
    aligned as RSEQ_ASM_DEFINE_TABLE() places it."""

    __slots__ = ("addr", "version", "flags", "start_ip", "post_commit_offset", "abort_ip")

    def __init__(self, addr, version, flags, start_ip, post_commit_offset, abort_ip):
        self.addr = addr
        self.version = version
        self.flags = flags
        self.start_ip = start_ip
        self.post_commit_offset = post_commit_offset
        self.abort_ip = abort_ip
        RSEQ_CS_AT[addr] = self

    def __repr__(self):
        return (f"rseq_cs@{self.addr:#x}(version={self.version} flags={self.flags} "
                f"start_ip={self.start_ip:#x} post_commit_offset={self.post_commit_offset} "
                f"abort_ip={self.abort_ip:#x})")


def in_rseq_cs(ip, rseq_cs):
    """Unsigned comparison: true when ip >= start_ip and ip < start_ip +
    post_commit_offset."""
    return (ip - rseq_cs.start_ip) % (1 << 64) < rseq_cs.post_commit_offset


class Rseq:
    """Mixin."""

    rseq_debug = False              # the v6.19+ rseq_debug_enabled static key

    def rseq_kernel_version(self):
        """The kernel version whose rseq this machine runs: that of its
        mm_cid variant, or of the nearest registered era it derives from
        (RSEQ_KERNEL_OF)."""
        for c in type(self.mm_cid).__mro__:
            version = RSEQ_KERNEL_OF.get(getattr(c, "name", None))
            if version is not None:
                return version
        raise KernelBug(f"no rseq era recorded for mm_cid variant "
                        f"{getattr(self.mm_cid, 'name', type(self.mm_cid).__name__)!r} "
                        f"(emulator/kernel/rseq.py RSEQ_KERNEL_OF)")

    def rseq_reworked(self):
        """True if this kernel's rseq is the v6.19 rework."""
        era = self.__dict__.get("_rseq_reworked")
        if era is None:
            era = self._rseq_reworked = self.rseq_kernel_version() >= RSEQ_REWORK
        return era

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
        # A struct_rseq is mapped memory of its mm; an int is a raw address
        # (mapped nowhere); None is NULL.
        mapped = isinstance(rseq, struct_rseq)
        addr = rseq.addr if mapped else (rseq if isinstance(rseq, int) else 0)
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

    def rseq_signal_deliver(self, t, sig):
        """Before a signal's frame is set up: the section it interrupts aborts."""
        t.rseq_event_mask |= RSEQ_EVENT_SIGNAL
        self.rseq_handle_notify_resume(t, sig)

    def rseq_handle_notify_resume(self, t, ksig=0):
        """__rseq_handle_notify_resume(): fix the critical section up, then
        write the ids; on an error, SIGSEGV (force_sigsegv(ksig's signal))."""
        if t.flags & PF_EXITING or t.rseq is None:
            return
        if self.rseq_reworked():
            ret = self.rseq_update_user_cs(t) if t.rseq_event_mask else 0
            t.rseq_event_mask = 0
        else:
            ret = self.rseq_ip_fixup(t)
        if ret < 0:
            self.force_sigsegv(ksig)
            return
        self.rseq_resuming = t
        self.rseq_update_cpu_node_id(t)
        self.rseq_resuming = None

    # -- v6.3 .. v6.18 -----------------------------------------------------------------------

    def rseq_get_rseq_cs(self, t):
        """(0, descriptor or None) or (-errno, None): the descriptor rseq_cs
        points at, validated, and the signature before its abort_ip checked."""
        ptr = t.rseq.rseq_cs
        if not ptr:
            return 0, None
        if ptr >= TASK_SIZE or ptr < 0:
            return -EINVAL, None
        cs = RSEQ_CS_AT.get(ptr)
        if cs is None:
            return -EFAULT, None                    # copy_from_user() faults
        if (cs.start_ip >= TASK_SIZE or cs.start_ip + cs.post_commit_offset >= TASK_SIZE
                or cs.abort_ip >= TASK_SIZE or cs.version > 0):
            return -EINVAL, None
        # Check for overflow.
        if cs.start_ip + cs.post_commit_offset < cs.start_ip:
            return -EINVAL, None
        # Ensure that abort_ip is not in the critical section.
        if (cs.abort_ip - cs.start_ip) % (1 << 64) < cs.post_commit_offset:
            return -EINVAL, None
        sig = USER_TEXT.get(cs.abort_ip - 4)
        if sig is None:
            return -EFAULT, None                    # get_user() faults
        if t.rseq_sig != sig:
            # "Possible attack attempt. Unexpected rseq signature 0x%x,
            # expecting 0x%x (pid=%d, addr=%p)."
            return -EINVAL, None
        return 0, cs

    @staticmethod
    def rseq_warn_flags(flags):
        """Any flag is refused: the NO_RESTART ones are deprecated ("Deprecated
        flags (%u) in %s ABI structure"), the others unknown."""
        return flags != 0

    def rseq_need_restart(self, t, cs_flags):
        if self.rseq_warn_flags(cs_flags):
            return -EINVAL
        if self.rseq_warn_flags(t.rseq.flags):
            return -EINVAL
        # Load and clear event mask atomically with respect to scheduler
        # preemption.
        event_mask, t.rseq_event_mask = t.rseq_event_mask, 0
        return 1 if event_mask else 0

    def rseq_ip_fixup(self, t):
        ip = self.instruction_pointer(t)
        ret, cs = self.rseq_get_rseq_cs(t)
        if ret:
            return ret
        # Handle potentially not being within a critical section.  If not
        # nested over a rseq critical section, restart is useless.  Clear
        # the rseq_cs pointer and return.
        if cs is None or not in_rseq_cs(ip, cs):
            t.rseq.rseq_cs = 0                      # clear_rseq_cs()
            return 0
        ret = self.rseq_need_restart(t, cs.flags)
        if ret <= 0:
            return ret
        t.rseq.rseq_cs = 0
        self.trace_rseq_ip_fixup(t, ip, cs.start_ip, cs.post_commit_offset, cs.abort_ip)
        self.instruction_pointer_set(t, cs.abort_ip)
        return 0

    # -- v6.19+ ------------------------------------------------------------------------------

    def rseq_update_user_cs(self, t):
        """rseq_update_user_cs(): after an event.  Returns 0 or -EINVAL (fatal)."""
        csaddr = t.rseq.rseq_cs
        if not csaddr:
            return 0
        if csaddr >= TASK_SIZE or csaddr < 0:
            return -EINVAL                          # rseq_event.fatal
        if self.rseq_debug:
            return self.rseq_debug_update_user_cs(t, csaddr)
        cs = RSEQ_CS_AT.get(csaddr)
        if cs is None:
            return -EFAULT
        ip = self.instruction_pointer(t)
        # No sanity checks.  If outside, just clear the critical section.
        if not in_rseq_cs(ip, cs):
            t.rseq.rseq_cs = 0
            return 0
        # Force it to be in user space as x86 IRET would happily return to
        # the kernel.
        abort_ip = cs.abort_ip & ((1 << 63) - 1)
        t.rseq.rseq_cs = 0
        self.trace_rseq_ip_fixup(t, ip, cs.start_ip, cs.post_commit_offset, abort_ip)
        self.instruction_pointer_set(t, abort_ip)
        return 0

    def rseq_debug_update_user_cs(self, t, csaddr):
        cs = RSEQ_CS_AT.get(csaddr)
        if cs is None:
            return -EFAULT
        ip = self.instruction_pointer(t)
        start_ip, offset, abort_ip = cs.start_ip, cs.post_commit_offset, cs.abort_ip
        if start_ip >= TASK_SIZE:
            return -EINVAL
        if ip < start_ip:
            t.rseq.rseq_cs = 0
            return 0
        cs_end = start_ip + offset
        if cs_end >= TASK_SIZE or cs_end < start_ip:
            return -EINVAL
        if ip >= cs_end:
            t.rseq.rseq_cs = 0
            return 0
        if abort_ip >= TASK_SIZE or abort_ip < 4:
            return -EINVAL
        if (abort_ip - start_ip) % (1 << 64) < offset:
            return -EINVAL
        # Check version and flags for 0.
        if cs.version or cs.flags:
            return -EINVAL
        if USER_TEXT.get(abort_ip - 4) != t.rseq_sig:
            return -EINVAL
        t.rseq.rseq_cs = 0
        self.trace_rseq_ip_fixup(t, ip, start_ip, offset, abort_ip)
        self.instruction_pointer_set(t, abort_ip)
        return 0

    # -- pt_regs -----------------------------------------------------------------------------

    @staticmethod
    def instruction_pointer(t):
        return getattr(t.user, "regs_ip", 0)

    @staticmethod
    def instruction_pointer_set(t, ip):
        t.user.regs_ip = ip

    def trace_rseq_ip_fixup(self, t, ip, start_ip, post_commit_offset, abort_ip):
        t.rseq.aborts += 1
        if self.tp.rseq_ip_fixup:
            self.tp.emit("rseq_ip_fixup", RseqIpFixupFields((
                RseqIpFixupFields, ip, start_ip, post_commit_offset, abort_ip)))

    def rseq_update_cpu_node_id(self, t):
        rseq = t.rseq
        cpu = t.cpu
        node_id = self.cpu_to_node[cpu]
        mm_cid = self.mm_cid.task_mm_cid(t)
        if mm_cid < 0:
            raise KernelBug(f"WARNING: rseq_update_cpu_node_id(): {t!r} has mm_cid {mm_cid} < 0",
                            mm_cid=mm_cid)
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
            self.tp.emit("rseq_update", RseqUpdateFields((RseqUpdateFields, cpu, node_id, mm_cid, t.pid)))

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
