"""Mirror of tools/testing/selftests/rseq/basic_test.c (test_cpu_pointer).

Pin the main thread to each allowed CPU in turn; after each
sched_setaffinity() the thread runs on that CPU and the kernel has written
the rseq area on its way back to user space.
"""

import os

from emulator.selftest import Result
from emulator.uapi.libc import CPU_SETSIZE, sched_getaffinity, sched_getcpu, sched_setaffinity
from emulator.uapi.rseq import (
    rseq_cpu_start, rseq_current_cpu, rseq_current_cpu_raw, rseq_current_node_id,
    rseq_errno, rseq_fallback_current_node, rseq_register_current_thread,
    rseq_unregister_current_thread,
)


def test_cpu_pointer():
    affinity = sched_getaffinity(0)
    test_affinity = set()
    for i in range(CPU_SETSIZE):
        if i in affinity:
            test_affinity.add(i)
            sched_setaffinity(0, test_affinity)
            assert sched_getcpu() == i
            assert rseq_current_cpu() == i
            assert rseq_current_cpu_raw() == i
            assert rseq_cpu_start() == i
            node = rseq_fallback_current_node()
            assert rseq_current_node_id() == node
            test_affinity.discard(i)
    sched_setaffinity(0, affinity)


test_cpu_pointer.__test__ = False       # the C test's function, not a pytest test


def make_main(log):
    def basic_test():
        if rseq_register_current_thread():
            e = rseq_errno()
            log.append(f"Error: rseq_register_current_thread(...) failed({e}): {os.strerror(e)}")
            return -1
        test_cpu_pointer()
        if rseq_unregister_current_thread():
            e = rseq_errno()
            log.append(f"Error: rseq_unregister_current_thread(...) failed({e}): {os.strerror(e)}")
            return -1
        return 0
    return basic_test


def run(machine):
    log = []
    status = machine.run(make_main(log))
    if status != 0:
        return Result("fail", status, "\n".join(log) or f"exit status {status}")
    return Result("pass", status, f"cpu_id, cpu_id_start and node_id right on {machine.nr_cpus} CPUs")


def test_basic(selftest_machine):
    selftest_machine.check(run)
