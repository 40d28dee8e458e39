"""Mirror of param_test_mm_cid_benchmark: param_test.c built with
-DBUILDOPT_RSEQ_PERCPU_MM_CID -DBENCHMARK (see param_test_benchmark_test.py)."""

import pytest

from selftests.rseq import param_test, xfail_known_findings

BUILD = {"mm_cid": True, "compare_twice": False, "benchmark": True}


def run(machine, argv=None):
    return param_test.run(machine, argv, BUILD)


@pytest.mark.emu_cpus(2, 8)
def test_param_test_mm_cid_benchmark(selftest_machine):
    selftest_machine.check(xfail_known_findings(run))
