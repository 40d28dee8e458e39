"""Fork storms as stories: tens of thousands of forks, the children waited
for or left as zombies until their parent exits, at 1, 2, 3 and 8 CPUs.

A child's mm goes when it exits (its last mmput() there, the last lazy
mmdrop() at a later switch); its task_struct stays until it is reaped, by
its parent's wait() or, once the parent has exited, by init.  Every mm is
freed exactly once, and KASAN fails the run on any use after free.

``EMU_FORK_STORM=N pytest tests/test_fork_storm.py`` runs the storms with N
forks (default 20 000, a few seconds each; 100 000 is the long run, half a
minute each).  Zombies count against threads-max, which the storms raise.
"""

import contextvars
import os
import threading

import pytest

from emulator.kernel.task import EXIT_ZOMBIE
from emulator.machine import Machine
from emulator.uapi import libc
from emulator.workload import Program, fork, repeat, run, sleep, wait

from test_mm import mm_events  # noqa: E402

FORKS = int(os.environ.get("EMU_FORK_STORM", 20_000))
US = 1_000
MS = 1_000_000


def fork_loop(forks, reaped, between=20 * US, then=()):
    """A parent forking *forks* children that exit at once, computing
    *between* ns after each fork and, if *reaped*, waiting for the child."""
    child = Program(comm="child")
    body = (fork(child), run(between)) + ((wait(),) if reaped else ())
    return Program(repeat(forks, *body), *then, comm="parent")


def assert_each_mm_freed_once(m, mms, forks):
    """Every child's mm (and the parent's) allocated once and freed once,
    but for those an idle CPU still borrows (lazy TLB), one per CPU at most."""
    allocated = [mm_id for ev, mm_id, *_ in mms if ev == "mm_alloc"]
    freed = [mm_id for ev, mm_id, *_ in mms if ev == "mm_free"]
    assert len(allocated) == len(set(allocated)) == forks + 1
    assert len(freed) == len(set(freed))
    borrowed = set(allocated) - set(freed)
    assert set(m.kernel.live_mms) == borrowed and len(borrowed) <= m.nr_cpus
    assert m.kernel.mms_freed == len(freed)


def children_statuses(m):
    return {pid: status for pid, status in m.kernel.process_status.items() if pid != m.main_pid}


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombies"])
@pytest.mark.parametrize("nr_cpus", [1, 2, 3, 8])
def test_a_fork_storm_frees_every_mm_once_and_reaps_every_child(nr_cpus, reaped):
    """FORKS children, waited for one by one or left to init when their parent
    exits: each child's mm is freed once, each child reaped with status 0."""
    m = Machine(nr_cpus=nr_cpus, seed=1, max_threads=max(1 << 16, 2 * FORKS))
    mms = mm_events(m)
    assert m.run(fork_loop(FORKS, reaped)) == 0
    assert_each_mm_freed_once(m, mms, FORKS)
    statuses = children_statuses(m)
    assert len(statuses) == FORKS and set(statuses.values()) == {0}
    k = m.kernel
    assert k.nr_user_tasks == 0 and not [t for t in k.tasks.values() if t.user is not None]
    # Each dead task's kernel stack went at its last switch, as put_task_stack():
    # what is left is the idle tasks' and the kernel threads'.
    assert len(m.engine.stacks) <= len(k.tasks) + nr_cpus


def test_unwaited_children_are_zombies_holding_their_task_not_their_mm():
    """While the parent lives, its exited children are zombies: still its
    children, in the task list, without an mm; when it exits they go to init,
    which reaps them."""
    forks = 1_000
    m = Machine(nr_cpus=2, seed=1)
    k = m.kernel
    mms = mm_events(m)
    m.start(fork_loop(forks, reaped=False, then=(sleep(1_000 * MS),)))

    def zombies():
        return [t for t in k.tasks.values() if t.exit_state == EXIT_ZOMBIE]
    while len(zombies()) < forks and m.advance(1 * MS):
        pass
    parent = k.tasks[m.main_pid]
    assert len(zombies()) == forks and len(parent.signal.children) == forks
    assert all(t.mm is None and t.signal.exit_status == 0 for t in zombies())
    assert not children_statuses(m)                      # nobody reaped them yet
    borrowed = set(k.live_mms) - {parent.mm.id}
    assert len(borrowed) <= m.nr_cpus                     # lazy TLB references only
    assert m.finish() == 0
    assert not zombies() and len(children_statuses(m)) == forks
    assert_each_mm_freed_once(m, mms, forks)


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombies"])
def test_zombies_count_against_threads_max(reaped):
    """A zombie keeps its task: with threads-max at 64, a parent that never
    waits gets EAGAIN from fork() before its 100th child; one that waits for
    each gets all 100."""
    m = Machine(nr_cpus=2, seed=1, max_threads=64)
    assert m.run(fork_loop(100, reaped)) == 0
    assert (len(children_statuses(m)) == 100) == reaped
    assert m.kernel.nr_threads <= 64


def test_a_python_parent_that_never_waits_leaves_its_children_to_init():
    """A body forks children that return at once and never waits for them:
    after it returns, init reaps them all."""
    forks = 500
    m = Machine(nr_cpus=3, seed=1)
    mms = mm_events(m)

    def child():
        return 0

    def main():
        for _ in range(forks):
            libc.fork(child)
        return 0
    assert m.run(main) == 0
    assert len(children_statuses(m)) == forks
    assert_each_mm_freed_once(m, mms, forks)


def test_a_body_whose_task_is_gone_leaves_its_host_thread_to_the_next_body():
    """Children forked and waited for one at a time run on the host thread
    the one before left (a thread's start and join cost more than a fork),
    each in a context of its own, and no thread outlives the run."""
    m = Machine(nr_cpus=2, seed=1)
    threads, seen = set(), []
    var = contextvars.ContextVar("var", default=None)

    def child():
        threads.add(threading.get_ident())
        seen.append(var.get())
        var.set("set by an earlier child")
        return 0

    def main():
        for _ in range(50):
            libc.waitpid(libc.fork(child))
        return 0
    assert m.run(main) == 0
    assert len(threads) <= 2 and seen == [None] * 50
    assert not m.live_host_threads()


def recursion_headroom():
    """How many more nested Python calls the current stack allows."""
    def deeper(n):
        try:
            return deeper(n + 1)
        except RecursionError:
            return n
    return deeper(0)


def test_children_forked_faster_than_they_run_do_not_nest_their_kernel_stacks():
    """On one CPU, children forked every 2 us queue up for the parent's whole
    slice; then each exits into the next, never run, whose kernel stack
    begins.  Each begins at its own base (as ret_from_fork() at the top of a
    fresh stack), not on top of the dead one's: the 200th __mmdrop() has the
    stack the first had.  (Begun on the dead one's, a greenlet inherits its
    depth: about 100 in, __mmdrop()'s KASAN poisoning raised RecursionError.)"""
    m = Machine(nr_cpus=1, seed=1)
    headroom = []
    m.kernel.tp.subscribe("mm_free", lambda record: headroom.append(recursion_headroom()))
    assert m.run(fork_loop(2_000, reaped=False, between=2 * US)) == 0
    assert len(headroom) >= 1_900
    assert max(headroom) - min(headroom) < 50
