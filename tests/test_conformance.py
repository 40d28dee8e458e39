"""The conformance suite: every variant, invariant-checked workloads on the
machine shapes a patch meets in the field: 1, 3, 4 and 8 CPUs (128 for the
churn), 3 online CPUs of 4 possible, and a first process restricted to 3 of 8
CPUs as ``taskset -c 1-3`` restricts it.

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
from emulator.explore.generated import Shape
from emulator.uapi.libc import (
    busy_wait, execve, exit, fork, pthread_create, pthread_join, pthread_setaffinity_np,
    sched_getcpu, sched_setaffinity, sched_yield, usleep, vfork, waitpid,
)
from emulator.uapi.rseq import rseq_current_mm_cid
from emulator.workload import (
    Program, exec_, fork as pfork, repeat, run, setaffinity, sleep, thread, yield_,
)


def _machine(variant, nr_cpus, seed, strategy=None, shape=None):
    shape = shape or Shape(nr_cpus)
    return shape.machine(variants=[variant], seed=seed, strategy=strategy)


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


# The machine shapes, by test id: one CPU, an odd count, possible CPUs beyond
# the online ones, a restricted first process.
SHAPES = {
    "1cpu": Shape(1),
    "3cpu": Shape(3),
    "4cpu": Shape(4),
    "8cpu": Shape(8),
    "3of4cpu": Shape(3, nr_possible=4),
    "8cpu-taskset1-3": Shape(8, affinity=[1, 2, 3]),
    "128cpu": Shape(128),
}
SMALL = ("1cpu", "3cpu", "4cpu", "8cpu", "3of4cpu", "8cpu-taskset1-3")

WORKLOADS = {
    "threads_come_and_go": (threads_come_and_go, SMALL),
    "migrations_and_affinity": (migrations_and_affinity, SMALL),
    "processes_fork_exec_exit": (processes_fork_exec_exit, SMALL),
    "exit_while_threads_run": (exit_while_threads_run, SMALL),
    "synthetic_churn": (synthetic_churn, SMALL + ("128cpu",)),
}

CASES = [(name, shape) for name, (_, shapes) in WORKLOADS.items() for shape in shapes]

# Where a variant is known to fail a workload, and why: (error, reason, strict).
# Only the named error counts as the expected failure; anything else still fails
# the test.  Not strict where whether the run reaches the bug depends on the seed
# (where the last mm reference goes, whether per-CPU mode comes first).
# The reasons are the variants' recorded findings (the variants' known_findings).
@pytest.mark.parametrize("workload, shape", CASES, ids=[f"{w}-{s}" for w, s in CASES])
def test_workload_keeps_the_invariants(request, emu_variant, workload, shape, emu_seed):
    """The workload ends with status 0 and P1-P6 held throughout.  A failure
    that is a recorded finding of the variant or of the era it derives from
    (the variants' known_findings), its cause seen in this run, is an
    xfail with the finding's reason."""
    make, _ = WORKLOADS[workload]
    shape = SHAPES[shape]
    machine = _machine(emu_variant, shape.nr_cpus, emu_seed,
                       request.config.getoption("emu_strategy"), shape)
    try:
        status = machine.run(make(shape.nr_cpus))
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


# -- the machine shapes themselves -----------------------------------------------------------

def test_tasks_start_allowed_on_every_possible_cpu(emu_seed):
    """Model fix, met adding the possible > online shape: init (and so every
    task it starts) had only the online CPUs; the kernel gives it every
    possible CPU (housekeeping_cpumask() at sched_init_smp(), and the top
    cpuset keeps offline CPUs, 3fb906e7fabb), so a v6.19+ mm counts them in
    its allowed CPUs: on 2 online CPUs of 8 possible, three users stay in
    per-task mode (max_cids 3), where the model went per-CPU at 3 > 2.
    sched_getaffinity() shows the online ones; sched_setaffinity() keeps
    only possible CPUs."""
    from emulator.uapi.libc import sched_getaffinity
    from emulator.variants import get_variant
    from emulator.variants.mm_cid_v7_0 import MM_CID_ONCPU
    forks, seen = [], {}

    class Recording(get_variant("v7.0")):
        name = "v7.0-recording-forks"

        def sched_mm_cid_fork(self, t):
            super().sched_mm_cid_fork(t)
            mc = t.mm.mm_cid
            forks.append((mc.nr_cpus_allowed, mc.users, mc.max_cids, mc.mode & MM_CID_ONCPU))

    def main():
        threads = [pthread_create(lambda _: usleep(2000)) for _ in range(2)]
        seen["before"] = sched_getaffinity(0)
        for t in threads:
            pthread_join(t)
        sched_setaffinity(0, {1, 9, 600})
        seen["after"] = sched_getaffinity(0)
        return 0
    m = Shape(2, nr_possible=8).machine(variants=[Recording], seed=emu_seed)
    assert m.run(main) == 0
    assert forks[-1] == (8, 3, 3, 0)
    assert seen == {"before": {0, 1}, "after": {1}}


def test_taskset_builds_the_first_mm_with_the_restricted_cpus(emu_seed):
    """A first process restricted as ``taskset -c 1-3`` restricts it runs on
    those CPUs, and its mm's allowed CPUs (v7.0) are those 3 of 8."""
    from emulator.uapi.libc import sched_getaffinity
    seen = {}

    def main():
        seen["cpus"] = sched_getaffinity(0)
        seen["cpu"] = sched_getcpu()
        return 0
    m = Shape(8, affinity=[1, 2, 3]).machine(variants=["v7.0"], seed=emu_seed)
    assert m.run(main) == 0
    assert seen["cpus"] == {1, 2, 3} and seen["cpu"] in {1, 2, 3}
    assert repr(Shape(8, affinity={3, 1})) == "Shape(nr_cpus=8, affinity=[1, 3])"


def test_seed_003_on_one_cpu_ends_in_its_recorded_finding():
    """One CPU, two threads: V3 locks up (pcpu_thrs 0, 14b2b17cca54), a
    recorded finding of seed-003 whose cause the variant notes; a patch of
    v7.0 that takes the floor away again locks up the same way and is not
    excused by it."""
    from emulator.errors import HardLockup
    from emulator.variants import get_variant
    from emulator.variants.mm_cid_seed_003 import SEED_003_ZERO_PCPU_THRS, ZERO_PCPU_THRS

    class NoFloor(get_variant("v7.0")):
        name = "v7.0-no-floor"

        def mm_cid_calc_pcpu_thrs(self, mc):
            opt_cids = min(mc.nr_cpus_allowed, mc.users)
            return min(opt_cids - opt_cids // 4, self.num_possible_cpus // 2)

    for variant, reason in ((get_variant("seed-003"), SEED_003_ZERO_PCPU_THRS), (NoFloor, None)):
        m = Machine(nr_cpus=1, variants=[variant], seed=1)
        with pytest.raises(HardLockup, match=r"spinning on cpu_relax\(\)") as info:
            m.run(threads_come_and_go(1))
        assert known_finding(variant, info.value, m.kernel.causes) == reason
        assert (ZERO_PCPU_THRS in m.kernel.causes) == (reason is not None)
    # Two possible CPUs, one online: the threshold is 1 and V3 runs on.
    assert Shape(1, nr_possible=2).machine(variants=["seed-003"], seed=1) \
        .run(threads_come_and_go(1)) == 0
