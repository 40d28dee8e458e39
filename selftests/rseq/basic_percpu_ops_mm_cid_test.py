"""Mirror of basic_percpu_ops_mm_cid_test: basic_percpu_ops_test.c built with
-DBUILDOPT_RSEQ_PERCPU_MM_CID, its per-CPU data indexed by the concurrency
id (rseq_current_mm_cid(), RSEQ_PERCPU_MM_CID) instead of the CPU number."""

from selftests.rseq import basic_percpu_ops_test, xfail_known_findings


def run(machine, **sizes):
    return basic_percpu_ops_test.run(machine, mm_cid=True, **sizes)


def test_basic_percpu_ops_mm_cid(selftest_machine):
    selftest_machine.check(xfail_known_findings(run))
