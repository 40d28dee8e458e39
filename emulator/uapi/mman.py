"""emulator.uapi.mman: <sys/mman.h>'s mmap() and munmap(), with C names and
argument order, and memset() (<string.h>) as the way an emulated body writes
to memory: each page not yet present faults in one page from the page
allocator (emulator/kernel/mmap.py says what is modelled).

    from emulator.uapi import mman
    buf = mman.mmap(None, 64 * 4096, mman.PROT_READ | mman.PROT_WRITE,
                    mman.MAP_PRIVATE | mman.MAP_ANONYMOUS, -1, 0)
    mman.memset(buf, 0, 64 * 4096)      # 64 page faults
    mman.munmap(buf, 64 * 4096)         # 64 pages back to the allocator

A failing call raises OSError with the errno, as libc's module does; a
memset() outside every mapping raises OSError(EFAULT) where C would get
SIGSEGV.
"""

from ..errors import UsageError
from ..kernel.mmap import MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE
from .libc import _check, _int_arg, _syscall, _user_call

__all__ = ["mmap", "munmap", "memset", "PROT_READ", "PROT_WRITE", "MAP_PRIVATE",
           "MAP_ANONYMOUS", "MAP_FAILED", "PAGE_SIZE"]


def mmap(addr, length, prot, flags, fd, offset):
    u = _user_call()
    if addr is not None:
        _int_arg(addr, "addr")
    for value, what in ((length, "length"), (prot, "prot"), (flags, "flags"), (fd, "fd"),
                        (offset, "offset")):
        _int_arg(value, what)
    return _check(_syscall(u, "sys_mmap", addr, length, prot, flags, fd, offset))


def munmap(addr, length):
    u = _user_call()
    _int_arg(addr, "addr")
    _int_arg(length, "length")
    return _check(_syscall(u, "sys_munmap", addr, length))


def memset(s, c, n):
    """Write *n* bytes at *s*: the page faults of the pages not yet present."""
    u = _user_call()
    _int_arg(s, "s")
    _int_arg(n, "n")
    if not isinstance(c, int):
        raise UsageError(f"memset: c must be an int, not {c!r}")
    _check(_syscall(u, "sys_touch", s, n))
    return s
