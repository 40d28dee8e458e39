"""emulator.uapi.rseq: the selftests' librseq (tools/testing/selftests/rseq/rseq.c).

Return conventions are librseq's: registration returns 0 or -1 (errno in the
OSError-free style of C: the failing errno is kept in ``rseq_errno()``), the
readers return the raw field values.  When glibc owns rseq (the default, as
glibc >= 2.35 registers every thread) registration and unregistration are
no-ops that succeed ("Treat libc's ownership as a successful registration").
"""

import weakref

from ..kernel.rseq import (
    ORIG_RSEQ_SIZE, RSEQ_CPU_ID_REGISTRATION_FAILED, RSEQ_CPU_ID_UNINITIALIZED,
    RSEQ_FEATURE_SIZE, RSEQ_FLAG_UNREGISTER, RSEQ_SIG, USER_TEXT, struct_rseq_cs,
)
from .libc import USER_CHARGE_NS, _call, _check, _self, _syscall, _user_call, sched_getcpu

__all__ = [
    "rseq_register_current_thread", "rseq_unregister_current_thread", "rseq_current_cpu",
    "rseq_current_cpu_raw", "rseq_cpu_start", "rseq_current_mm_cid", "rseq_mm_cid_available",
    "rseq_node_id_available", "rseq_current_node_id", "rseq_fallback_current_node",
    "rseq_get_abi", "rseq_errno", "sys_rseq", "rseq_alloc_abi", "RSEQ_SIG",
    "RSEQ_FLAG_UNREGISTER", "RSEQ_CPU_ID_UNINITIALIZED", "RSEQ_CPU_ID_REGISTRATION_FAILED",
]

# offsetofend(struct rseq_abi, node_id) and (..., mm_cid)
_NODE_ID_END = 24
_MM_CID_END = 28
_errno = weakref.WeakKeyDictionary()   # per thread; not id(): ids of dead threads are reused


def _rseq_size(u):
    # glibc registers 32 bytes (its __rseq_size is 20 or 32): librseq then
    # uses min(32, the kernel's feature size); on its own it uses the feature size.
    return min(ORIG_RSEQ_SIZE, RSEQ_FEATURE_SIZE)


def _tls_load():
    """An inline RSEQ_READ_ONCE() of this thread's area: one instruction of
    user time (a libc call costs USER_CALL_NS; these are loads)."""
    u = _self()
    _insn(u, C_IP)
    return u.tls_rseq


def rseq_get_abi():
    """This thread's struct rseq (glibc's TLS area, or librseq's __rseq_abi)."""
    return _user_call().tls_rseq


def rseq_register_current_thread():
    u = _self()
    if u.k.glibc_rseq:
        return 0
    ret = _syscall(u, "sys_rseq_call", u.tls_rseq, ORIG_RSEQ_SIZE, 0, RSEQ_SIG)
    if ret < 0:
        _errno[u] = -ret
        return -1
    u.libc_rseq_registered = False
    assert rseq_current_cpu_raw() >= 0
    return 0


def rseq_unregister_current_thread():
    u = _self()
    if u.k.glibc_rseq:
        return 0
    ret = _syscall(u, "sys_rseq_call", u.tls_rseq, ORIG_RSEQ_SIZE, RSEQ_FLAG_UNREGISTER, RSEQ_SIG)
    if ret < 0:
        _errno[u] = -ret
        return -1
    return 0


def rseq_errno():
    """The errno of this thread's last failed (un)registration."""
    return _errno.get(_self(), 0)


def rseq_current_cpu_raw():
    return _tls_load().cpu_id


def rseq_cpu_start():
    return _tls_load().cpu_id_start


def rseq_current_cpu():
    cpu = rseq_current_cpu_raw()
    if cpu < 0:
        cpu = sched_getcpu()
    return cpu


def rseq_current_mm_cid():
    return _tls_load().mm_cid


def rseq_mm_cid_available():
    return _rseq_size(_user_call()) >= _MM_CID_END


def rseq_node_id_available():
    return _rseq_size(_user_call()) >= _NODE_ID_END


def rseq_current_node_id():
    return _tls_load().node_id


def rseq_fallback_current_node():
    """getcpu()'s node: what the kernel knows, not what rseq reported."""
    u = _user_call()
    return u.k.cpu_to_node[u.task.cpu]


def rseq_alloc_abi(misalign=0):
    """A new struct rseq in this process's memory (``misalign`` bytes off its alignment)."""
    u = _user_call()
    return u.k.rseq_alloc_area(u.task.mm, misalign=misalign)


def sys_rseq(rseq_abi, rseq_len, flags, sig):
    """The raw system call; raises OSError on failure, as os functions do."""
    u = _self()
    return _check(_syscall(u, "sys_rseq_call", rseq_abi, rseq_len, flags, sig))


# -- critical sections (rseq.h, rseq-x86-bits.h, librseq's pseudocode.h) ---------------------
#
# Each operation is the x86-64 asm block of the selftests' rseq-x86-bits.h,
# one user step per instruction: the body sets its instruction pointer
# (``regs_ip``) to the instruction, spends its time, and executes it unless
# the kernel moved the pointer to the block's abort_ip meanwhile (a
# preemption, migration, signal or membarrier IPI while inside the section:
# then the operation returns -1, as the C code does at its ``abort:``
# label).  The layout of a block, in the program text:
#
#   RSEQ_INJECT_ASM(1), store &rseq_cs into rseq->rseq_cs     (before start_ip)
#   start_ip: RSEQ_INJECT_ASM(2), compare cpu with rseq->cpu_id (or mm_cid)
#   ... loads, compares (a mismatch leaves the section: return 1) ...
#   [RSEQ_COMPARE_TWICE: the cpu and the values again; a mismatch is rseq_bug()]
#   the commit (the final store)
#   post_commit_ip: RSEQ_INJECT_ASM(n) ...
#   __rseq_failure: .long RSEQ_SIG; abort_ip: jmp abort
#
# An instruction takes INSN_NS of user time; an injection loop of n
# iterations (param_test's -1..-6) one step of n * INJECT_LOOP_NS at its
# place.  A body runs its instructions inline until an event is due and it
# has used a slice of up to SLICE_NS (emulator.kernel.entry.user_event_due()):
# so an interrupt is taken at most SLICE_NS late, at an instruction boundary,
# and two CPUs' bodies interleave at least every SLICE_NS of their time, at
# any instruction.
#
# Pointers are `ptr` objects (``ptr(obj, "field")`` is &obj->field,
# ``ptr(array, i)`` is &array[i]); an offset (voffp, off) is a field name or
# an index, what offsetof() and sizeof() * i give in C.  memcpy copies a
# struct field by field, one step each.
#
# Names and return conventions are librseq's (include/rseq/rseq.h and
# pseudocode.h, the names the kernel selftests' rseq.h also uses since its
# sync with librseq): 0 success, 1 the comparison failed (ne/eq), -1 abort;
# an unsupported memory order -1.  The pre-sync selftest names
# (rseq_cmpeqv_storev, ...) are aliases below.  Unconfirmed: the exact
# instruction count of each block (the model's is the asm's instructions,
# one step each, with loads and compares fused as x86's cmp with a memory
# operand fuses them).

RSEQ_MO_RELAXED = 0
RSEQ_MO_CONSUME = 1
RSEQ_MO_ACQUIRE = 2
RSEQ_MO_RELEASE = 3
RSEQ_MO_ACQ_REL = 4
RSEQ_MO_SEQ_CST = 5
RSEQ_PERCPU_CPU_ID = 0
RSEQ_PERCPU_MM_CID = 1

INSN_NS = 1
INJECT_LOOP_NS = 1
SLICE_NS = 100

C_IP = 0x401000                 # the program's C code: outside every section
_text = [0x402000]              # next free text address
_data = [0x600000]              # next free descriptor address (32-byte aligned)

__all__ += [
    "RSEQ_MO_RELAXED", "RSEQ_MO_RELEASE", "RSEQ_PERCPU_CPU_ID", "RSEQ_PERCPU_MM_CID", "ptr",
    "rseq_load_cbne_store__ptr", "rseq_load_cbeq_store_add_load_store__ptr",
    "rseq_load_add_store__ptr", "rseq_load_add_load_load_add_store__ptr",
    "rseq_load_cbne_store_store__ptr", "rseq_load_cbne_load_cbne_store__ptr",
    "rseq_load_cbne_memcpy_store__ptr", "rseq_cmpeqv_storev", "rseq_cmpnev_storeoffp_load",
    "rseq_addv", "rseq_offset_deref_addv", "rseq_cmpeqv_cmpeqv_storev",
    "rseq_cmpeqv_trystorev_storev", "rseq_cmpeqv_trymemcpy_storev", "rseq_prepare_unload",
    "rseq_clear_rseq_cs", "rseq_smp_store_release", "rseq_smp_acquire__after_ctrl_dep",
    "RSEQ_READ_ONCE", "RSEQ_WRITE_ONCE", "rseq_barrier", "rseq_program", "rseq_asm_block",
    "rseq_run_block", "rseq_available", "RSEQ_AVAILABLE_QUERY_KERNEL",
]


class ptr:
    """A C pointer to one word (or struct) of user memory."""

    __slots__ = ("base", "key")

    def __init__(self, base, key):
        self.base = base
        self.key = key

    def load(self):
        k = self.key
        return self.base[k] if k.__class__ is int else getattr(self.base, k)

    def store(self, value):
        k = self.key
        if k.__class__ is int:
            self.base[k] = value
        else:
            setattr(self.base, k, value)

    def __repr__(self):
        return f"&{type(self.base).__name__}[{self.key!r}]"


def _deref(p, off):
    """*(p + off): an attribute (a field name) or an element (an index)."""
    if off.__class__ is int:
        return p.c[off] if hasattr(p, "c") else p[off]
    return getattr(p, off)


class rseq_asm_block:
    """One asm block's place in the program text and its struct rseq_cs.

    *pre* names the instructions before start_ip, *body* those from start_ip
    through the commit, *post* those after it.  ``ip[name]`` is an
    instruction's address.  The signature word (``sig``) precedes abort_ip;
    ``version`` and ``flags`` go into the descriptor (a wrong one is what the
    kernel's checks are for)."""

    __slots__ = ("name", "ip", "cs", "abort_ip", "start_ip", "post_commit_ip")

    def __init__(self, name, pre, body, post=(), sig=RSEQ_SIG, version=0, flags=0):
        self.name = name
        addr = _text[0]
        ip = {}
        for part in (pre, body):
            for insn in part:
                ip[insn] = addr
                addr += 4
            if part is pre:
                self.start_ip = addr
        self.post_commit_ip = addr
        for insn in post:
            ip[insn] = addr
            addr += 4
        USER_TEXT[addr] = sig & 0xffffffff        # .long RSEQ_SIG in __rseq_failure
        self.abort_ip = addr + 4
        USER_TEXT[self.abort_ip] = 0x000000e9     # jmp abort
        _text[0] = (addr + 8 + 63) & ~63
        self.ip = ip
        desc = _data[0]
        _data[0] += 32
        self.cs = struct_rseq_cs(desc, version, flags, self.start_ip,
                                 self.post_commit_ip - self.start_ip, self.abort_ip)

    def __repr__(self):
        return f"rseq_asm_block({self.name}: {self.cs!r})"


class _Build:
    """What the program was compiled with: RSEQ_COMPARE_TWICE and the
    RSEQ_INJECT_* macros (param_test)."""

    __slots__ = ("compare_twice", "loop_cnt", "inject_c", "inject_failed", "stderr")

    def __init__(self, compare_twice=False, loop_cnt=None, inject_c=None, inject_failed=None,
                 stderr=None):
        self.compare_twice = compare_twice
        self.loop_cnt = loop_cnt or [0] * 10
        self.inject_c = inject_c
        self.inject_failed = inject_failed
        self.stderr = stderr


_DEFAULT_BUILD = _Build()
_builds = weakref.WeakKeyDictionary()       # machine -> _Build


def rseq_program(compare_twice=False, loop_cnt=None, inject_c=None, inject_failed=None,
                 stderr=None):
    """Declare how the running program was built (call it from its main):
    ``compare_twice`` is -DRSEQ_COMPARE_TWICE; ``loop_cnt[1..6]`` the
    iterations of RSEQ_INJECT_ASM(n); ``inject_c(n)`` RSEQ_INJECT_C(n) (C code
    before each block: n is 9); ``inject_failed()`` RSEQ_INJECT_FAILED (each
    abort); ``stderr(line)`` where rseq_bug() prints."""
    u = _self()
    _builds[u.machine] = _Build(compare_twice, loop_cnt, inject_c, inject_failed, stderr)
    return 0


_blocks = {}


def _block(op, mode, twice, layout):
    key = (op, mode, twice)
    blk = _blocks.get(key)
    if blk is None:
        pre, body, post = layout(twice)
        blk = _blocks[key] = rseq_asm_block(f"{op}_{'mm_cid' if mode else 'cpu_id'}"
                                            f"{'_twice' if twice else ''}", pre, body, post)
    return blk


def _insn(u, ip, ns=INSN_NS):
    """Reach the instruction at *ip* and spend *ns* on it; returns the
    instruction pointer to go on at (*ip*, unless the kernel moved it).

    The body goes on inline until it has used its slice (drawn from the
    machine's chooser, 1..SLICE_NS, anew at each hand-off, so that hand-offs
    fall on every instruction of a loop) and an event is due."""
    u.regs_ip = ip
    debt = u.debt + ns
    if debt >= u.slice and (debt >= USER_CHARGE_NS or u.k.user_event_due(u.task, debt)):
        u.debt = 0
        u.slice = u.k.chooser.below(SLICE_NS) + 1
        _call(u, ("busy", debt))
        return u.regs_ip
    u.debt = debt
    return ip


def _cpu_field(area, mode):
    return area.mm_cid if mode else area.cpu_id


class _Run:
    """One execution of a block: the build, the area, and the helpers."""

    __slots__ = ("u", "blk", "build", "area", "mode")

    def __init__(self, u, blk, build, mode):
        self.u = u
        self.blk = blk
        self.build = build
        self.area = u.tls_rseq
        self.mode = mode

    def step(self, name, ns=INSN_NS):
        ip = self.blk.ip[name]
        return _insn(self.u, ip, ns) == ip

    def inject(self, n):
        loops = self.build.loop_cnt[n]
        if loops > 0:
            return self.step(f"inject{n}", loops * INJECT_LOOP_NS)
        return self.step(f"inject{n}", 0) if n == 1 else True

    def start(self):
        """RSEQ_INJECT_ASM(1) and the store of &rseq_cs: the section starts."""
        if not self.inject(1) or not self.step("store_cs"):
            return False
        self.area.rseq_cs = self.blk.cs.addr
        return True

    def cmp_cpu(self, cpu, name="cmp_cpu"):
        """RSEQ_INJECT_ASM(2) then ``cmp cpu, rseq->cpu_id; jnz abort``."""
        if name == "cmp_cpu" and not self.inject(2):
            return False
        return self.step(name) and _cpu_field(self.area, self.mode) == cpu

    def cmp_cpu_twice(self, cpu):
        """RSEQ_COMPARE_TWICE's second cpu compare: True if it matches, False
        if the kernel aborted the section meanwhile; a mismatch is rseq_bug()."""
        if self.cmp_cpu(cpu, "cmp_cpu_2"):
            return True
        if self.u.regs_ip != self.blk.abort_ip:
            _rseq_bug("cpu_id comparison failed")
        return False

    def enter(self, cpu):
        """What every operation does first: start(), the cpu compare and
        RSEQ_INJECT_ASM(3)."""
        return self.start() and self.cmp_cpu(cpu) and self.inject(3)

    def cmp_v_twice(self, cpu, v, expect):
        """RSEQ_COMPARE_TWICE of the cbne operations (True when not built
        with it): the cpu and *v compared again; False if the kernel aborted
        the section meanwhile; a changed *v is rseq_bug()."""
        if not self.build.compare_twice:
            return True
        if not self.cmp_cpu_twice(cpu) or not self.step("cmp_v_2"):
            return False
        if v.load() != expect:
            _rseq_bug("expected value comparison failed")
        return True

    def done(self, ret):
        self.u.regs_ip = C_IP
        return ret

    def abort(self):
        """abort: RSEQ_INJECT_FAILED; return -1."""
        self.u.regs_ip = C_IP
        if self.build.inject_failed is not None:
            self.build.inject_failed()
        return -1


def _run(op, mode, layout):
    u = _self()
    build = _builds.get(u.machine, _DEFAULT_BUILD)
    if build.inject_c is not None:
        build.inject_c(9)
    return _Run(u, _block(op, mode, build.compare_twice, layout), build, mode)


def _rseq_bug(what):
    """rseq_bug(): print and abort() (SIGABRT)."""
    from .signal import abort
    u = _self()
    stderr = _builds.get(u.machine, _DEFAULT_BUILD).stderr
    if stderr is not None:
        stderr(f"[error] {what}")
    abort()


def _inj(*ns):
    return tuple(f"inject{n}" for n in ns)


_PRE = ("inject1", "store_cs")


def _layout_cbne_store(twice):
    body = _inj(2) + ("cmp_cpu",) + _inj(3) + ("cmp_v",) + _inj(4)
    if twice:
        body += ("cmp_cpu_2", "cmp_v_2")
    return _PRE, body + ("commit",), _inj(5)


def rseq_load_cbne_store__ptr(rseq_mo, percpu_mode, v, expect, newv, cpu):
    """if (*v != expect) return 1; *v = newv."""
    if rseq_mo != RSEQ_MO_RELAXED:
        return -1
    r = _run("load_cbne_store", percpu_mode, _layout_cbne_store)
    if not r.enter(cpu) or not r.step("cmp_v"):
        return r.abort()
    if v.load() != expect:
        return r.done(1)
    if not r.inject(4):
        return r.abort()
    if not r.cmp_v_twice(cpu, v, expect):
        return r.abort()
    if not r.step("commit"):
        return r.abort()
    v.store(newv)
    r.inject(5)
    return r.done(0)


def _layout_cbeq_store_add_load_store(twice):
    body = _inj(2) + ("cmp_cpu",) + _inj(3) + ("load_v", "cmp_expectnot") + _inj(4)
    if twice:
        body += ("cmp_cpu_2", "load_v_2", "cmp_expectnot_2")
    return _PRE, body + ("store_load", "add_voffp", "load_next", "commit"), _inj(5)


def rseq_load_cbeq_store_add_load_store__ptr(rseq_mo, percpu_mode, v, expectnot, voffp, load,
                                             cpu):
    """r1 = *v; if (r1 == expectnot) return 1; *load = r1; *v = *(r1 + voffp)."""
    if rseq_mo != RSEQ_MO_RELAXED:
        return -1
    r = _run("load_cbeq_store_add_load_store", percpu_mode, _layout_cbeq_store_add_load_store)
    if not r.enter(cpu) or not r.step("load_v"):
        return r.abort()
    r1 = v.load()
    if not r.step("cmp_expectnot"):
        return r.abort()
    if r1 == expectnot:
        return r.done(1)
    if not r.inject(4):
        return r.abort()
    if r.build.compare_twice:
        if not r.cmp_cpu_twice(cpu):
            return r.abort()
        if not r.step("load_v_2") or not r.step("cmp_expectnot_2"):
            return r.abort()
        if v.load() == expectnot:
            _rseq_bug("expected value comparison failed")
    if not r.step("store_load"):
        return r.abort()
    load.store(r1)
    if not r.step("add_voffp") or not r.step("load_next"):
        return r.abort()
    r2 = _deref(r1, voffp)
    if not r.step("commit"):
        return r.abort()
    v.store(r2)
    r.inject(5)
    return r.done(0)


def _layout_add_store(twice):
    body = _inj(2) + ("cmp_cpu",) + _inj(3)
    if twice:
        body += ("cmp_cpu_2",)
    return _PRE, body + ("load_v", "add", "commit"), _inj(4)


def rseq_load_add_store__ptr(rseq_mo, percpu_mode, v, count, cpu):
    """*v += count, as load, add, store: three instructions, each a place to
    be interrupted (x86's ``addq %[count], %[v]`` is one; the pseudo-code's
    three steps are kept so that a shared slot loses updates as on a
    load/store architecture)."""
    if rseq_mo != RSEQ_MO_RELAXED:
        return -1
    r = _run("load_add_store", percpu_mode, _layout_add_store)
    if not r.enter(cpu):
        return r.abort()
    if r.build.compare_twice and not r.cmp_cpu_twice(cpu):
        return r.abort()
    if not r.step("load_v"):
        return r.abort()
    r1 = v.load()
    if not r.step("add"):
        return r.abort()
    r1 += count
    if not r.step("commit"):
        return r.abort()
    v.store(r1)
    r.inject(4)
    return r.done(0)


def _layout_add_load_load_add_store(twice):
    body = _inj(2) + ("cmp_cpu",) + _inj(3)
    if twice:
        body += ("cmp_cpu_2",)
    return _PRE, body + ("load_ptr", "add_off", "load_pv", "load_val", "add", "commit"), _inj(4)


def rseq_load_add_load_load_add_store__ptr(rseq_mo, percpu_mode, p, off, inc, cpu):
    """pval = *(*p + off); *pval += inc (param_test's membarrier test: *p is
    the active list, off selects the cpu's entry, whose head's first word is
    incremented)."""
    if rseq_mo != RSEQ_MO_RELAXED:
        return -1
    r = _run("load_add_load_load_add_store", percpu_mode, _layout_add_load_load_add_store)
    if not r.enter(cpu):
        return r.abort()
    if r.build.compare_twice and not r.cmp_cpu_twice(cpu):
        return r.abort()
    if not r.step("load_ptr"):
        return r.abort()
    r1 = p.load()
    if not r.step("add_off") or not r.step("load_pv"):
        return r.abort()
    r2 = _deref(r1, off)            # the entry; its head is the node
    node = r2.head
    if not r.step("load_val"):
        return r.abort()
    r3 = node.data
    if not r.step("add"):
        return r.abort()
    r3 += inc
    if not r.step("commit"):
        return r.abort()
    node.data = r3
    r.inject(4)
    return r.done(0)


def _layout_cbne_store_store(twice):
    body = _inj(2) + ("cmp_cpu",) + _inj(3) + ("cmp_v",) + _inj(4)
    if twice:
        body += ("cmp_cpu_2", "cmp_v_2")
    return _PRE, body + ("try_store",) + _inj(5) + ("commit",), _inj(6)


def rseq_load_cbne_store_store__ptr(rseq_mo, percpu_mode, v, expect, v2, newv2, newv, cpu):
    """if (*v != expect) return 1; *v2 = newv2 (the try store); *v = newv."""
    if rseq_mo not in (RSEQ_MO_RELAXED, RSEQ_MO_RELEASE):
        return -1
    r = _run(f"load_cbne_store_store_{rseq_mo}", percpu_mode, _layout_cbne_store_store)
    if not r.enter(cpu) or not r.step("cmp_v"):
        return r.abort()
    if v.load() != expect:
        return r.done(1)
    if not r.inject(4):
        return r.abort()
    if not r.cmp_v_twice(cpu, v, expect):
        return r.abort()
    if not r.step("try_store"):
        return r.abort()
    v2.store(newv2)
    if not r.inject(5) or not r.step("commit"):
        return r.abort()
    v.store(newv)                   # RSEQ_MO_RELEASE: the same store, a barrier before
    r.inject(6)
    return r.done(0)


def _layout_cbne_load_cbne_store(twice):
    body = _inj(2) + ("cmp_cpu",) + _inj(3) + ("cmp_v",) + _inj(4) + ("cmp_v2",) + _inj(5)
    if twice:
        body += ("cmp_cpu_2", "cmp_v_2", "cmp_v2_2")
    return _PRE, body + ("commit",), _inj(6)


def rseq_load_cbne_load_cbne_store__ptr(rseq_mo, percpu_mode, v, expect, v2, expect2, newv,
                                        cpu):
    """if (*v != expect || *v2 != expect2) return 1; *v = newv."""
    if rseq_mo != RSEQ_MO_RELAXED:
        return -1
    r = _run("load_cbne_load_cbne_store", percpu_mode, _layout_cbne_load_cbne_store)
    if not r.enter(cpu) or not r.step("cmp_v"):
        return r.abort()
    if v.load() != expect:
        return r.done(1)
    if not r.inject(4) or not r.step("cmp_v2"):
        return r.abort()
    if v2.load() != expect2:
        return r.done(1)
    if not r.inject(5):
        return r.abort()
    if r.build.compare_twice:
        if not r.cmp_cpu_twice(cpu):
            return r.abort()
        if not r.step("cmp_v_2"):
            return r.abort()
        if v.load() != expect:
            _rseq_bug("1st expected value comparison failed")
        if not r.step("cmp_v2_2"):
            return r.abort()
        if v2.load() != expect2:
            _rseq_bug("2nd expected value comparison failed")
    if not r.step("commit"):
        return r.abort()
    v.store(newv)
    r.inject(6)
    return r.done(0)


def _layout_cbne_memcpy_store(twice):
    body = _inj(2) + ("cmp_cpu",) + _inj(3) + ("cmp_v",) + _inj(4)
    if twice:
        body += ("cmp_cpu_2", "cmp_v_2")
    return _PRE, body + ("copy",) + _inj(5) + ("commit",), _inj(6)


def rseq_load_cbne_memcpy_store__ptr(rseq_mo, percpu_mode, v, expect, dst, src, len, newv, cpu):
    """if (*v != expect) return 1; memcpy(dst, src, len) (the copy attempt);
    *v = newv.  *dst* and *src* are structs (or pointers to them)."""
    if rseq_mo not in (RSEQ_MO_RELAXED, RSEQ_MO_RELEASE):
        return -1
    r = _run(f"load_cbne_memcpy_store_{rseq_mo}", percpu_mode, _layout_cbne_memcpy_store)
    if not r.enter(cpu) or not r.step("cmp_v"):
        return r.abort()
    if v.load() != expect:
        return r.done(1)
    if not r.inject(4):
        return r.abort()
    if not r.cmp_v_twice(cpu, v, expect):
        return r.abort()
    if len:
        d = dst.load() if isinstance(dst, ptr) else dst
        s = src.load() if isinstance(src, ptr) else src
        for field in type(s).__slots__:
            if not r.step("copy"):
                return r.abort()
            setattr(d, field, getattr(s, field))
    if not r.inject(5) or not r.step("commit"):
        return r.abort()
    v.store(newv)
    r.inject(6)
    return r.done(0)


# The names of the selftests before their sync with librseq (rseq-x86-bits.h
# of v6.3: rseq_cmpeqv_storev() and friends, RSEQ_PERCPU_CPU_ID builds).
def rseq_cmpeqv_storev(v, expect, newv, cpu):
    return rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, v, expect, newv, cpu)


def rseq_cmpnev_storeoffp_load(v, expectnot, voffp, load, cpu):
    return rseq_load_cbeq_store_add_load_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, v,
                                                    expectnot, voffp, load, cpu)


def rseq_addv(v, count, cpu):
    return rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, v, count, cpu)


def rseq_offset_deref_addv(p, off, inc, cpu):
    return rseq_load_add_load_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, p, off,
                                                  inc, cpu)


def rseq_cmpeqv_cmpeqv_storev(v, expect, v2, expect2, newv, cpu):
    return rseq_load_cbne_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, v, expect,
                                               v2, expect2, newv, cpu)


def rseq_cmpeqv_trystorev_storev(v, expect, v2, newv2, newv, cpu):
    return rseq_load_cbne_store_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, v, expect, v2,
                                           newv2, newv, cpu)


def rseq_cmpeqv_trymemcpy_storev(v, expect, dst, src, len, newv, cpu):
    return rseq_load_cbne_memcpy_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU_CPU_ID, v, expect, dst,
                                            src, len, newv, cpu)


def rseq_run_block(blk, cpu, percpu_mode=RSEQ_PERCPU_CPU_ID, body_ns=0, commit=None):
    """Run a hand-made block *blk* (an `rseq_asm_block` with instructions
    ``inject1, store_cs`` before start_ip and ``cmp_cpu, body, commit`` in
    it): store its descriptor, compare *cpu*, compute for *body_ns* inside
    the section, then call ``commit()`` as the final store.  Returns 0, or -1
    if it aborted (what a test of the kernel's fixup needs)."""
    u = _self()
    r = _Run(u, blk, _builds.get(u.machine, _DEFAULT_BUILD), percpu_mode)
    if not r.start() or not r.step("cmp_cpu") or _cpu_field(r.area, percpu_mode) != cpu:
        return r.abort()
    if not r.step("body", body_ns) or not r.step("commit"):
        return r.abort()
    if commit is not None:
        commit()
    return r.done(0)


def rseq_clear_rseq_cs():
    _user_call().tls_rseq.rseq_cs = 0


rseq_prepare_unload = rseq_clear_rseq_cs


def RSEQ_READ_ONCE(p):
    u = _self()
    _insn(u, C_IP)
    return p.load()


def RSEQ_WRITE_ONCE(p, value):
    u = _self()
    _insn(u, C_IP)
    p.store(value)


rseq_smp_store_release = RSEQ_WRITE_ONCE


def rseq_smp_acquire__after_ctrl_dep():
    pass


def rseq_barrier():
    pass


RSEQ_AVAILABLE_QUERY_KERNEL = 0


def rseq_available(query=RSEQ_AVAILABLE_QUERY_KERNEL):
    """The rseq system call exists: rseq(NULL, 0, 0, 0) fails with EINVAL, not ENOSYS."""
    u = _self()
    return _syscall(u, "sys_rseq_call", None, 0, 0, 0) == -22
