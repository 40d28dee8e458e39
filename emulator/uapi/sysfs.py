"""The sysfs files emulated programs write: CPU hotplug.

``write_cpu_online(cpu, online)`` is ``echo 0 > /sys/devices/system/cpu/cpuN/online``
(or 1): the write takes the CPU down (or brings it up) and returns when it is
done (kernel/cpu.py, cpu_device_down()/cpu_device_up()).  A CPU already in
that state is not an error (the kernel's device_offline()/device_online()
return 1 for it, and the write succeeds).  Errors raise OSError: EBUSY for
the last online CPU, ENODEV for a CPU that is not possible (no cpuN
directory).  ``read_cpu_online(cpu)`` reads the file (1 or 0).
"""

from .libc import _check, _int_arg, _syscall, _user_call


def write_cpu_online(cpu, online):
    _int_arg(cpu, "a CPU number")
    u = _user_call()
    return _check(_syscall(u, "sys_cpu_online_write", cpu, 1 if online else 0))


def read_cpu_online(cpu):
    _int_arg(cpu, "a CPU number")
    u = _user_call()
    if not 0 <= cpu < u.k.nr_cpu_ids:
        raise OSError(19, "No such device")
    return u.k.online_mask >> cpu & 1


__all__ = ["write_cpu_online", "read_cpu_online"]
