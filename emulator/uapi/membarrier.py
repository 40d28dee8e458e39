"""emulator.uapi.membarrier: <linux/membarrier.h> and the system call.

``sys_membarrier(cmd, flags, cpu_id)`` is ``syscall(__NR_membarrier, cmd,
flags, cpu_id)``: it returns what the kernel returns (QUERY: the supported
commands; GET_REGISTRATIONS: the registered ones; else 0) and raises OSError
on failure, as the rest of the emulated libc does.  The kernel side is
emulator.kernel.membarrier.
"""

from ..kernel.membarrier import (     # <linux/membarrier.h>
    MEMBARRIER_CMD_FLAG_CPU, MEMBARRIER_CMD_GET_REGISTRATIONS, MEMBARRIER_CMD_GLOBAL,
    MEMBARRIER_CMD_GLOBAL_EXPEDITED, MEMBARRIER_CMD_PRIVATE_EXPEDITED,
    MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE,
    MEMBARRIER_CMD_QUERY, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, MEMBARRIER_CMD_SHARED,
)
from .libc import _check, _int_arg, _self, _syscall

__all__ = [
    "sys_membarrier", "membarrier", "MEMBARRIER_CMD_FLAG_CPU", "MEMBARRIER_CMD_GET_REGISTRATIONS",
    "MEMBARRIER_CMD_GLOBAL", "MEMBARRIER_CMD_GLOBAL_EXPEDITED", "MEMBARRIER_CMD_PRIVATE_EXPEDITED",
    "MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ", "MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE",
    "MEMBARRIER_CMD_QUERY", "MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED",
    "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED", "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ",
    "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE", "MEMBARRIER_CMD_SHARED",
]


def sys_membarrier(cmd, flags, cpu_id):
    u = _self()
    _int_arg(cmd, "cmd")
    _int_arg(flags, "flags")
    _int_arg(cpu_id, "cpu_id")
    return _check(_syscall(u, "sys_membarrier", cmd, flags, cpu_id))


def membarrier(cmd, flags=0, cpu_id=0):
    """glibc has no wrapper; this is the usual one."""
    return sys_membarrier(cmd, flags, cpu_id)
