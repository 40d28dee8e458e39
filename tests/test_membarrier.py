"""Stories about membarrier() (emulator.kernel.membarrier).

Private expedited commands need the mm registered first (EPERM otherwise);
their IPIs go to the CPUs running threads of the caller's mm, and the _RSEQ
flavour restarts the critical sections there (tests/test_rseq_cs.py).
"""

import errno

from emulator.uapi.libc import (
    busy_wait, execve, fork, pthread_create, pthread_join, sched_setaffinity, usleep, waitpid,
)
from emulator.uapi.membarrier import (
    MEMBARRIER_CMD_FLAG_CPU, MEMBARRIER_CMD_GET_REGISTRATIONS, MEMBARRIER_CMD_GLOBAL,
    MEMBARRIER_CMD_GLOBAL_EXPEDITED,
    MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
    MEMBARRIER_CMD_QUERY, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
    sys_membarrier,
)


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    return 0


def test_query_lists_the_commands(machine_factory):
    seen = {}

    def main():
        seen["mask"] = sys_membarrier(MEMBARRIER_CMD_QUERY, 0, 0)
        return 0

    assert machine_factory(2).run(main) == 0
    for cmd in (MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
                MEMBARRIER_CMD_GLOBAL_EXPEDITED, MEMBARRIER_CMD_GET_REGISTRATIONS):
        assert seen["mask"] & cmd


def test_private_commands_need_a_registration_and_flags_are_checked(machine_factory):
    seen = {}

    def main():
        seen["unregistered"] = errno_of(sys_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)
        seen["unregistered rseq"] = errno_of(sys_membarrier,
                                             MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0)
        seen["cpu flag on a plain command"] = errno_of(
            sys_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, MEMBARRIER_CMD_FLAG_CPU, 0)
        seen["unknown command"] = errno_of(sys_membarrier, 1 << 20, 0, 0)
        sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0)
        seen["registered"] = errno_of(sys_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)
        seen["rseq still unregistered"] = errno_of(
            sys_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0)
        seen["registrations"] = sys_membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {
        "unregistered": errno.EPERM, "unregistered rseq": errno.EPERM,
        "cpu flag on a plain command": errno.EINVAL, "unknown command": errno.EINVAL,
        "registered": 0, "rseq still unregistered": errno.EPERM,
        "registrations": MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
    }


def test_a_fork_keeps_the_registration_and_an_exec_drops_it(machine_factory):
    results = {}

    def probe():
        return errno_of(sys_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0)

    def after_exec():
        return probe()

    def main():
        sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0)
        _, forked = waitpid(fork(probe))
        _, execed = waitpid(fork(lambda: execve(after_exec)))
        results["fork"], results["exec"] = forked >> 8, execed >> 8
        return 0

    assert machine_factory(2).run(main) == 0
    assert results == {"fork": 0, "exec": errno.EPERM}


def ipis_of(machine):
    """Count the IPIs membarrier sends, by the CPU they run on."""
    k = machine.kernel
    hits = []
    for name in ("ipi_mb", "ipi_rseq"):
        original = getattr(k, name)

        def counting(info, original=original):
            hits.append(k.cpu)
            original(info)
        setattr(k, name, counting)
    return hits


def test_private_expedited_interrupts_the_cpus_running_the_mm_and_no_others(machine_factory):
    """Threads of the mm busy on CPUs 1 and 2, another process busy on CPU 3:
    the barrier from CPU 0 interrupts CPUs 1 and 2."""
    machine = machine_factory(4)
    hits = ipis_of(machine)

    def spin(cpu):
        sched_setaffinity(0, {cpu})
        busy_wait(3_000_000)
        return 0

    def main():
        sched_setaffinity(0, {0})
        sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0)
        other = fork(lambda: spin(3))
        threads = [pthread_create(spin, cpu) for cpu in (1, 2)]
        usleep(1000)
        sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)
        for t in threads:
            pthread_join(t)
        waitpid(other)
        return 0

    assert machine.run(main) == 0
    assert sorted(hits) == [1, 2]


def test_global_expedited_interrupts_only_registered_processes(machine_factory):
    """Two processes busy on CPUs 1 and 2; only the one on CPU 2 registered
    for GLOBAL_EXPEDITED gets the IPI."""
    machine = machine_factory(3)
    hits = ipis_of(machine)

    def spin(cpu, register):
        def child():
            sched_setaffinity(0, {cpu})
            if register:
                sys_membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0)
            busy_wait(3_000_000)
            return 0
        return child

    def main():
        sched_setaffinity(0, {0})
        pids = [fork(spin(1, False)), fork(spin(2, True))]
        usleep(1000)
        sys_membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0)
        for pid in pids:
            waitpid(pid)
        return 0

    assert machine.run(main) == 0
    assert hits == [2]


def test_registering_rseq_registers_the_plain_private_command_as_the_kernel_answers(
        machine_factory):
    """membarrier_register_private_expedited() sets MEMBARRIER_STATE_PRIVATE_EXPEDITED
    with the _RSEQ bits, so GET_REGISTRATIONS names both registrations, while the
    plain private command, whose _READY bit is unset, is still EPERM."""
    seen = {}

    def main():
        sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0)
        seen["registrations"] = sys_membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0)
        seen["plain"] = errno_of(sys_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen == {"registrations": MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
                    | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
                    "plain": errno.EPERM}


def test_the_global_command_is_refused_with_nohz_full_cpus(machine_factory):
    """MEMBARRIER_CMD_GLOBAL is not compatible with nohz_full: QUERY leaves it
    out and the command is EINVAL; without nohz_full it is there and works."""
    seen = {}

    def main():
        seen["query"] = sys_membarrier(MEMBARRIER_CMD_QUERY, 0, 0) & MEMBARRIER_CMD_GLOBAL
        seen["global"] = errno_of(sys_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0)
        return 0

    assert machine_factory(4, nohz_full="1-3").run(main) == 0
    assert seen == {"query": 0, "global": errno.EINVAL}
    assert machine_factory(4).run(main) == 0
    assert seen == {"query": MEMBARRIER_CMD_GLOBAL, "global": 0}
