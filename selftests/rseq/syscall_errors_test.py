"""Mirror of tools/testing/selftests/rseq/syscall_errors_test.c (Michael Jeanson, 2024).

Check the value of errno on some expected failures of the rseq syscall.  The
C test runs under run_syscall_errors_test.sh, which sets
GLIBC_TUNABLES=glibc.pthread.rseq=0 so that the thread starts unregistered:
``run()`` does the same (``glibc_rseq`` off).  The invalid address is
``(void *) -4096UL``, the unaligned one ``(char *) global_rseq + 1``: raw
addresses, which the model's sys_rseq() takes as ints.
"""

import errno

from emulator.selftest import Result
from emulator.uapi.rseq import RSEQ_FLAG_UNREGISTER, RSEQ_SIG, rseq_available, rseq_get_abi
from emulator.uapi.rseq import sys_rseq as _sys_rseq
from selftests.rseq import xfail_known_findings

RSEQ_ABI_FLAG_UNREGISTER = RSEQ_FLAG_UNREGISTER


def make_main(stderr):
    def sys_rseq(rseq_abi, rseq_len, flags, sig):
        """syscall(__NR_rseq, ...): (ret, errno) as C sees them."""
        try:
            return _sys_rseq(rseq_abi, rseq_len, flags, sig), 0
        except OSError as exc:
            return -1, exc.errno

    def strerrorname_np(e):
        return errno.errorcode.get(e, "0") if e else "0"

    def syscall_errors_test():
        global_rseq = rseq_get_abi()

        if not rseq_available():
            stderr.append("rseq syscall unavailable")
            return -1

        # The current thread is NOT registered.

        # EINVAL
        ret, errno_copy = sys_rseq(global_rseq, 32, -1, RSEQ_SIG)
        stderr.append(f"Registration with invalid flag fails with errno set to EINVAL "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret == 0 or errno_copy != errno.EINVAL:
            return -1

        ret, errno_copy = sys_rseq(global_rseq.addr + 1, 32, 0, RSEQ_SIG)
        stderr.append(f"Registration with unaligned rseq_abi fails with errno set to EINVAL "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret == 0 or errno_copy != errno.EINVAL:
            return -1

        ret, errno_copy = sys_rseq(global_rseq, 31, 0, RSEQ_SIG)
        stderr.append(f"Registration with invalid size fails with errno set to EINVAL "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret == 0 or errno_copy != errno.EINVAL:
            return -1

        # EFAULT (64-bit, not s390: the C test's #if)
        ret, errno_copy = sys_rseq(-4096 % (1 << 64), 32, 0, RSEQ_SIG)
        stderr.append(f"Registration with invalid address fails with errno set to EFAULT "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret == 0 or errno_copy != errno.EFAULT:
            return -1

        ret, errno_copy = sys_rseq(global_rseq, 32, 0, RSEQ_SIG)
        stderr.append(f"Registration succeeds for the current thread "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret != 0 and errno_copy != 0:
            return -1

        # The current thread is registered.

        # EBUSY
        ret, errno_copy = sys_rseq(global_rseq, 32, 0, RSEQ_SIG)
        stderr.append(f"Double registration fails with errno set to EBUSY "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret == 0 or errno_copy != errno.EBUSY:
            return -1

        # EPERM
        ret, errno_copy = sys_rseq(global_rseq, 32, RSEQ_ABI_FLAG_UNREGISTER, RSEQ_SIG + 1)
        stderr.append(f"Unregistration with wrong RSEQ_SIG fails with errno to EPERM "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret == 0 or errno_copy != errno.EPERM:
            return -1

        ret, errno_copy = sys_rseq(global_rseq, 32, RSEQ_ABI_FLAG_UNREGISTER, RSEQ_SIG)
        stderr.append(f"Unregistration succeeds for the current thread "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret != 0:
            return -1

        ret, errno_copy = sys_rseq(global_rseq, 32, RSEQ_ABI_FLAG_UNREGISTER, RSEQ_SIG)
        stderr.append(f"Double unregistration fails with errno set to EINVAL "
                      f"(ret = {ret}, errno = {strerrorname_np(errno_copy)})")
        if ret == 0 or errno_copy != errno.EINVAL:
            return -1
        return 0

    return syscall_errors_test


def run(machine):
    machine.kernel.glibc_rseq = False       # GLIBC_TUNABLES=...:glibc.pthread.rseq=0
    stderr = []
    status = machine.run(make_main(stderr))
    return Result("pass" if status == 0 else "fail", status, "; ".join(stderr))


def test_syscall_errors(selftest_machine):
    selftest_machine.check(xfail_known_findings(run))
