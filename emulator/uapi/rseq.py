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
    RSEQ_FEATURE_SIZE, RSEQ_FLAG_UNREGISTER, RSEQ_SIG,
)
from .libc import _check, _self, _syscall, _user_call, sched_getcpu

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
    return _user_call().tls_rseq.cpu_id


def rseq_cpu_start():
    return _user_call().tls_rseq.cpu_id_start


def rseq_current_cpu():
    cpu = rseq_current_cpu_raw()
    if cpu < 0:
        cpu = sched_getcpu()
    return cpu


def rseq_current_mm_cid():
    return _user_call().tls_rseq.mm_cid


def rseq_mm_cid_available():
    return _rseq_size(_user_call()) >= _MM_CID_END


def rseq_node_id_available():
    return _rseq_size(_user_call()) >= _NODE_ID_END


def rseq_current_node_id():
    return _user_call().tls_rseq.node_id


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
