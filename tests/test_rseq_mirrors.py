"""What the rseq selftest mirrors show a user when the kernel hands two running
threads one concurrency id: the way the C tests show it, not only through the
invariant.

fixtures/patches/cid_bit_not_set.py is a patch to v6.3 whose __mm_cid_get()
forgets to set the bit it found: threads scheduled in on different CPUs run
with the same cid.  With the invariants off (a user's kernel has no P1), the
mm_cid build of param_test loses increments on the per-cid counters its
threads share, its assert(sum == ...) fails and it dies of SIGABRT, as the C
program would; the cpu_id build of the same test, on the same kernel, passes.
"""

import os

import pytest

from emulator import Machine
from emulator.checks.invariants import InvariantViolation
from selftests.rseq import param_test, syscall_errors_test

PATCH = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "patches",
                     "cid_bit_not_set.py")
INCREMENT = ["-T", "i", "-r", "2000", "-t", "8"]       # 8 threads on 4 CPUs, 2000 each
SIGABRT_STATUS = 128 + 6


def run_param_test(variant, argv, mm_cid, compare_twice=False, invariants=False, seed=1):
    machine = Machine(4, variants=[variant], seed=seed, invariants=invariants)
    return param_test.run(machine, argv, {"mm_cid": mm_cid, "compare_twice": compare_twice})


def test_a_shared_cid_makes_param_test_mm_cid_lose_counts():
    """-T i indexed by mm_cid on the patch: the sum comes out short, assert()
    aborts the program (SIGABRT)."""
    result = run_param_test(PATCH, INCREMENT, mm_cid=True)
    assert result.outcome == "fail"
    assert result.status == SIGABRT_STATUS
    assert "Assertion `sum == (uint64_t)opt_reps * num_threads' failed" in result.detail


def test_the_cpu_id_build_passes_on_the_same_kernel():
    """The bug is in the concurrency ids: indexing by cpu_id is not hurt."""
    assert run_param_test(PATCH, INCREMENT, mm_cid=False).outcome == "pass"


@pytest.mark.parametrize("variant", ["v6.3", "v6.4", "v7.0"])
def test_param_test_mm_cid_passes_where_cids_are_unique(variant):
    """The same run on kernels whose running threads never share a cid."""
    assert run_param_test(variant, INCREMENT, mm_cid=True, invariants=True).outcome == "pass"


def test_compare_twice_catches_the_shared_slot_with_rseq_bug():
    """param_test_mm_cid_compare_twice re-reads the lock word inside the
    section; with another CPU in the same slot the second look differs and
    rseq_bug() aborts ("expected value comparison failed")."""
    result = run_param_test(PATCH, ["-T", "s", "-r", "2000", "-t", "8", "-4", "50"],
                            mm_cid=True, compare_twice=True)
    assert result.status == SIGABRT_STATUS
    assert "[error] expected value comparison failed" in result.detail or \
        "[error] cpu_id comparison failed" in result.detail


def test_with_the_invariants_on_p11_names_the_bug_first():
    """What the emulator itself reports on the same run: P11, the first thread
    running with a cid its mm's bitmap does not hold (before a second thread
    is given the same one, which P1 would see)."""
    with pytest.raises(InvariantViolation, match="P11 held: .* runs with mm_cid 0"):
        run_param_test(PATCH, INCREMENT, mm_cid=True, invariants=True)


def test_syscall_errors_test_sees_einval_for_an_unaligned_area():
    """sys_rseq() checks the alignment before the address: (char *)abi + 1 is
    EINVAL, (void *)-4096 is EFAULT (the mirror checks both)."""
    result = syscall_errors_test.run(Machine(2, variants=["v6.3"], seed=1))
    assert result.outcome == "pass"
    assert "unaligned rseq_abi fails with errno set to EINVAL (ret = -1, errno = EINVAL)" in \
        result.detail
    assert "invalid address fails with errno set to EFAULT (ret = -1, errno = EFAULT)" in \
        result.detail
