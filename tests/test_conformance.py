"""The conformance suite: every variant, invariant-checked workloads, 4, 8 and 128 CPUs.

Each workload must end with exit status 0 while P1-P4 hold the whole time
(P1 and P2 at every switch and every rseq update, P3 at every rseq update, P4
once the machine is quiet), with no hard lockup (P5) and no use-after-free
(P6).  They run over every registered variant, or the ones given with
``--variant``.
"""

import pytest

from emulator import Machine
from emulator.errors import EmulationFailure
from emulator.explore.findings import known_finding
from emulator.uapi.libc import (
    busy_wait, execve, exit, fork, pthread_create, pthread_join, pthread_setaffinity_np,
    sched_getcpu, sched_setaffinity, sched_yield, usleep, vfork, waitpid,
)
from emulator.uapi.rseq import rseq_current_mm_cid
from emulator.workload import (
    Program, exec_, fork as pfork, repeat, run, setaffinity, sleep, thread, yield_,
)


def _machine(variant, nr_cpus, seed, strategy=None):
    return Machine(nr_cpus=nr_cpus, variants=[variant], seed=seed, strategy=strategy)


def threads_come_and_go(nr_cpus):
    """Waves of threads that sleep, compute, yield and exit, while the count changes."""
    def worker(i):
        for step in range(3):
            if (i + step) % 3 == 0:
                usleep(200 + 37 * i)
            elif (i + step) % 3 == 1:
                busy_wait(50_000 + 1000 * i)
            else:
                sched_yield()
        return rseq_current_mm_cid()

    def main():
        for wave in (nr_cpus, max(1, nr_cpus // 2), nr_cpus + 2, 1):
            threads = [pthread_create(worker, i) for i in range(wave)]
            for t in threads:
                pthread_join(t)
            usleep(150_000)              # let a 100 ms scan or a deferred change happen
        return 0
    return main


def migrations_and_affinity(nr_cpus):
    """Threads hop between CPUs, shrink and widen their affinity, and get moved by others."""
    cpus = list(range(nr_cpus))

    def hopper(i):
        for step in range(4):
            target = cpus[(i * 7 + step * 3) % nr_cpus]
            sched_setaffinity(0, {target})
            busy_wait(20_000)
            usleep(100)
        sched_setaffinity(0, set(cpus[: max(1, nr_cpus // 2)]))
        usleep(1000)
        sched_setaffinity(0, set(cpus))
        busy_wait(10_000)
        return sched_getcpu()

    def main():
        threads = [pthread_create(hopper, i) for i in range(min(nr_cpus + 1, 12))]
        for step, t in enumerate(threads):
            try:
                pthread_setaffinity_np(t, {cpus[(step * 5) % nr_cpus]})
            except OSError:
                pass                     # the thread has already ended
        for t in threads:
            pthread_join(t)
        return 0
    return main


def processes_fork_exec_exit(nr_cpus):
    """Processes fork, create threads, exec (succeeding and failing), vfork and exit."""
    def new_image():
        t = pthread_create(lambda _: usleep(300))
        busy_wait(30_000)
        pthread_join(t)
        return 0

    def child(n):
        def body():
            threads = [pthread_create(lambda _: busy_wait(40_000)) for _ in range(n)]
            try:
                execve("/no/such/binary")
            except OSError:
                pass                     # a failing exec keeps the old mm
            for t in threads:
                pthread_join(t)
            if n % 2:
                execve(new_image)
            return 0
        return body

    def main():
        pids = [fork(child(n)) for n in range(1, 5)]
        pid = vfork(lambda: execve(new_image))
        pids.append(pid)
        statuses = [waitpid(p)[1] for p in pids]
        return 0 if all(s == 0 for s in statuses) else 1
    return main


def exit_while_threads_run(nr_cpus):
    """exit() from one thread while the others compute, sleep or wait."""
    def main():
        def spinner(_):
            busy_wait(10_000_000)

        def sleeper(_):
            usleep(1_000_000)
        for _ in range(max(2, nr_cpus // 2)):
            pthread_create(spinner)
            pthread_create(sleeper)
        usleep(2000)
        exit(0)
    return main


def synthetic_churn(nr_cpus):
    """Synthetic tasks at scale: threads and processes that run, sleep, yield, move, exec,
    exit, while steady threads keep half the CPUs busy for 150 ms (ticks, scans,
    deferred work all get their turn)."""
    steady = Program(repeat(600, run(100_000), sleep(150_000)), comm="steady")
    leaf = Program(repeat(4, run(30_000), sleep(20_000)), yield_(), comm="leaf")
    mover = Program(repeat(3, setaffinity({0}), run(10_000), setaffinity({nr_cpus - 1}),
                           sleep(5_000)), comm="mover")
    image = Program(thread(leaf), run(20_000), sleep(50_000), comm="image")
    proc = Program(thread(leaf), thread(mover), run(15_000), exec_(image), comm="proc")
    return Program(*[thread(steady) for _ in range(max(1, nr_cpus // 2))],
                   *[thread(leaf) for _ in range(nr_cpus)], thread(mover),
                   *[pfork(proc) for _ in range(max(2, nr_cpus // 8))],
                   sleep(100_000_000), run(10_000), sleep(60_000_000), comm="churn")


WORKLOADS = {
    "threads_come_and_go": (threads_come_and_go, (4, 8)),
    "migrations_and_affinity": (migrations_and_affinity, (4, 8)),
    "processes_fork_exec_exit": (processes_fork_exec_exit, (4, 8)),
    "exit_while_threads_run": (exit_while_threads_run, (4, 8)),
    "synthetic_churn": (synthetic_churn, (4, 8, 128)),
}

CASES = [(name, n) for name, (_, sizes) in WORKLOADS.items() for n in sizes]

# Where a variant is known to fail a workload, and why: (error, reason, strict).
# Only the named error counts as the expected failure; anything else still fails
# the test.  Not strict where whether the run reaches the bug depends on the seed
# (where the last mm reference goes, whether per-CPU mode comes first).
# The reasons are the variants' recorded findings (the variants' known_findings).
@pytest.mark.parametrize("workload, nr_cpus", CASES, ids=[f"{w}-{n}cpu" for w, n in CASES])
def test_workload_keeps_the_invariants(request, emu_variant, workload, nr_cpus, emu_seed):
    """The workload ends with status 0 and P1-P6 held throughout.  A failure
    that is a recorded finding of the variant or of the era it derives from
    (the variants' known_findings), its cause seen in this run, is an
    xfail with the finding's reason."""
    make, _ = WORKLOADS[workload]
    machine = _machine(emu_variant, nr_cpus, emu_seed, request.config.getoption("emu_strategy"))
    try:
        status = machine.run(make(nr_cpus))
    except EmulationFailure as exc:
        reason = known_finding(emu_variant, exc, machine.kernel.causes)
        if reason is None:
            raise
        pytest.xfail(reason)
    assert status == 0


def test_threads_of_one_mm_see_distinct_cids_while_running_together(emu_variant, emu_seed):
    """Threads computing at the same time on different CPUs read different mm_cids."""
    seen = {}

    def worker(i):
        sched_setaffinity(0, {i})
        busy_wait(5_000_000)             # all four compute together
        seen[i] = rseq_current_mm_cid()

    def main():
        threads = [pthread_create(worker, i) for i in range(1, 4)]
        sched_setaffinity(0, {0})
        busy_wait(5_000_000)
        seen[0] = rseq_current_mm_cid()
        for t in threads:
            pthread_join(t)
        return 0
    assert _machine(emu_variant, 4, emu_seed).run(main) == 0
    assert len(set(seen.values())) == 4, seen
