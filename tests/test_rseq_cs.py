"""Stories about rseq critical sections and the kernel's fixup (emulator.kernel.rseq).

A section is a hand-made asm block (emulator.uapi.rseq.rseq_asm_block): the
store of its descriptor, the cpu compare, a body that computes for a while
inside the section, the commit.  What comes while the body runs (a
preemption, a migration, a signal, a membarrier IPI) aborts it; nothing
coming lets it commit.  The eras differ in what they check: v6.3..v6.18
validate the descriptor and the signature and refuse the deprecated flags
(SIGSEGV); v6.19+ (v7.0) checks nothing unless rseq debugging is on.
"""

import os

import pytest

from emulator import Machine
from emulator.uapi.libc import (
    busy_wait, fork, pthread_create, pthread_join, pthread_setaffinity_np, sched_getcpu,
    sched_setaffinity, usleep, waitpid,
)
from emulator.uapi.membarrier import (
    MEMBARRIER_CMD_FLAG_CPU, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, sys_membarrier,
)
from emulator.uapi.rseq import (
    RSEQ_SIG, rseq_asm_block, rseq_cpu_start, rseq_get_abi, rseq_run_block,
)
from emulator.uapi.signal import SIGSEGV, SIGUSR1, pthread_kill, sigaction, struct_sigaction

PRE, BODY = ("inject1", "store_cs"), ("cmp_cpu", "body", "commit")
LONG = 20_000_000           # 20 ms inside the section: longer than a slice, many ticks


def block(**kw):
    return rseq_asm_block("test", PRE, BODY, **kw)


def in_section_on_cpu0(body_ns, while_inside, machine, blk=None):
    """A thread pinned to CPU 0 runs *blk* with *body_ns* inside; main does
    ``while_inside(thread)`` once it is inside.  Returns (the block's return,
    what the thread saw)."""
    blk = blk or block()
    seen = {}

    def worker(_):
        sched_setaffinity(0, {0})
        seen["inside"] = True
        seen["ret"] = rseq_run_block(blk, rseq_cpu_start(), body_ns=body_ns,
                                     commit=lambda: seen.setdefault("committed", True))
        seen["cpu_after"] = sched_getcpu()
        seen["rseq_cs_after"] = rseq_get_abi().rseq_cs
        return 0

    def main():
        sched_setaffinity(0, {1})
        t = pthread_create(worker)
        usleep(100)
        while_inside(t)
        pthread_join(t)
        return 0

    status = machine.run(main)
    return status, seen


# -- what aborts a section ----------------------------------------------------------------

def test_a_section_with_nothing_coming_commits(machine_factory):
    """Inside for 5 us with nothing happening on its CPU: the commit runs and 0 comes back."""
    status, seen = in_section_on_cpu0(5_000, lambda t: None, machine_factory(2))
    assert status == 0
    assert seen["ret"] == 0 and seen["committed"]


def test_a_preemption_inside_a_section_aborts_it(machine_factory):
    """A second thread on CPU 0 preempts the first inside its 20 ms section:
    on its way back to user space the kernel moves it to abort_ip, and the
    commit never runs."""
    def competitor(t):
        def spin(_):
            sched_setaffinity(0, {0})
            busy_wait(5_000_000)
            return 0
        pthread_join(pthread_create(spin))

    status, seen = in_section_on_cpu0(LONG, competitor, machine_factory(2))
    assert status == 0
    assert seen["ret"] == -1 and "committed" not in seen


def test_a_migration_inside_a_section_aborts_it(machine_factory):
    """Moved to CPU 1 by another thread's sched_setaffinity() while inside: abort."""
    status, seen = in_section_on_cpu0(LONG, lambda t: pthread_setaffinity_np(t, {1}),
                                      machine_factory(2))
    assert status == 0
    assert seen["ret"] == -1 and "committed" not in seen
    assert seen["cpu_after"] == 1


def test_a_signal_inside_a_section_aborts_it_and_runs_the_handler(machine_factory):
    """pthread_kill() while the thread is inside: its handler runs, then it
    resumes at abort_ip, not inside the section."""
    handled = []

    def kill_it(t):
        sigaction(SIGUSR1, struct_sigaction(lambda signo: handled.append(signo)))
        assert pthread_kill(t, SIGUSR1) == 0

    status, seen = in_section_on_cpu0(LONG, kill_it, machine_factory(2))
    assert status == 0
    assert handled == [SIGUSR1]
    assert seen["ret"] == -1 and "committed" not in seen


def test_a_membarrier_rseq_ipi_inside_a_section_aborts_it(machine_factory):
    """MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ aimed at CPU 0 restarts the section there."""
    def barrier(t):
        sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, 0)

    def register_then(t):
        sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0)
        barrier(t)

    status, seen = in_section_on_cpu0(LONG, register_then, machine_factory(2))
    assert status == 0
    assert seen["ret"] == -1 and "committed" not in seen


def test_the_kernel_clears_rseq_cs_lazily_once_outside(machine_factory):
    """After a commit rseq_cs still points at the descriptor; the next return
    to user space from outside the section clears it."""
    seen = {}

    def main():
        blk = block()
        assert rseq_run_block(blk, rseq_cpu_start()) == 0
        seen["after_commit"] = rseq_get_abi().rseq_cs
        sched_setaffinity(0, {1})           # a migration: TIF_NOTIFY_RESUME
        seen["after_return"] = rseq_get_abi().rseq_cs
        seen["descriptor"] = blk.cs.addr
        return 0

    assert machine_factory(2).run(main) == 0
    assert seen["after_commit"] == seen["descriptor"] != 0
    assert seen["after_return"] == 0


# -- what the eras check ------------------------------------------------------------------

def preempted_in(blk, variant, debug=False):
    """The wait status of a process whose one thread is preempted inside *blk*."""
    machine = Machine(2, variants=[variant], seed=1)
    machine.kernel.rseq_debug = debug
    seen = {}

    def child():
        sched_setaffinity(0, {0})
        seen["ret"] = rseq_run_block(blk, rseq_cpu_start(), body_ns=LONG)
        return 0

    def competitor():
        sched_setaffinity(0, {0})
        busy_wait(5_000_000)
        return 0

    def main():
        pid = fork(child)
        usleep(100)
        other = fork(competitor)
        _, status = waitpid(pid)
        waitpid(other)
        seen["status"] = status
        return 0

    assert machine.run(main) == 0
    return seen


def test_a_wrong_signature_kills_with_sigsegv_in_v6_3():
    """The word before abort_ip is not the registered RSEQ_SIG: "Possible
    attack attempt", and the thread dies of SIGSEGV at its next fixup."""
    seen = preempted_in(block(sig=RSEQ_SIG ^ 1), "v6.3")
    assert os.WIFSIGNALED(seen["status"]) and os.WTERMSIG(seen["status"]) == SIGSEGV
    assert "ret" not in seen


def test_v7_0_does_not_read_the_signature_unless_rseq_debugging_is_on():
    """The v6.19 rework dropped the "voodoo security": the section just
    aborts; with the debug static key the check comes back, and kills."""
    plain = preempted_in(block(sig=RSEQ_SIG ^ 1), "v7.0")
    assert plain["ret"] == -1 and plain["status"] == 0
    debug = preempted_in(block(sig=RSEQ_SIG ^ 1), "v7.0", debug=True)
    assert os.WIFSIGNALED(debug["status"]) and os.WTERMSIG(debug["status"]) == SIGSEGV


@pytest.mark.parametrize("flag", [1, 2, 4])
def test_a_deprecated_no_restart_flag_kills_in_v6_3_and_is_ignored_in_v7_0(flag):
    """RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT/SIGNAL/MIGRATE: v6.3's
    rseq_warn_flags() refuses any flag ("Deprecated flags") with SIGSEGV;
    v7.0 without debugging never reads them, and the section aborts."""
    v6_3 = preempted_in(block(flags=flag), "v6.3")
    assert os.WIFSIGNALED(v6_3["status"]) and os.WTERMSIG(v6_3["status"]) == SIGSEGV
    v7_0 = preempted_in(block(flags=flag), "v7.0")
    assert v7_0["ret"] == -1 and v7_0["status"] == 0


def test_an_rseq_cs_pointing_at_nothing_kills_with_sigsegv(machine_factory):
    """rseq_cs holding an address where no descriptor is: the fixup's
    copy_from_user() faults, and the thread gets SIGSEGV on its way back."""
    seen = {}

    def child():
        rseq_get_abi().rseq_cs = 0x7000_0000        # mapped nowhere
        sched_setaffinity(0, {0})                   # migrations: returns to user
        sched_setaffinity(0, {1})                   # with rseq work to do
        seen["survived"] = True
        return 0

    def main():
        _, status = waitpid(fork(child))
        seen["status"] = status
        return 0

    assert machine_factory(2).run(main) == 0
    assert "survived" not in seen
    assert os.WIFSIGNALED(seen["status"]) and os.WTERMSIG(seen["status"]) == SIGSEGV


def test_each_era_has_the_rseq_of_its_kernel_and_a_patch_that_of_its_base(tmp_path):
    """Every registered mm_cid era names the kernel whose rseq it runs
    (RSEQ_KERNEL_OF); a patch file takes its base's: a patch to v6.14 checks
    the signature (SIGSEGV), a patch to seed-003 (on the v6.19 rework) does not."""
    from emulator.kernel.rseq import RSEQ_KERNEL_OF
    from emulator.variants import registered
    in_tree = {name for name, cls in registered("mm_cid").items()
               if cls.__module__.startswith("emulator.variants.")}  # not other tests' patches
    assert "v7.0" in in_tree and in_tree <= set(RSEQ_KERNEL_OF)
    for base in ("v6.14", "seed-003"):
        patch = tmp_path / f"on_{base.replace('.', '_').replace('-', '_')}.py"
        patch.write_text("from emulator.variants import get_variant\n\n"
                         f"class OnBase(get_variant({base!r})):\n"
                         f"    name = 'on-{base}'\n")
        seen = preempted_in(block(sig=RSEQ_SIG ^ 1), str(patch))
        killed = os.WIFSIGNALED(seen["status"]) and os.WTERMSIG(seen["status"]) == SIGSEGV
        assert killed == (base == "v6.14"), (base, seen)
