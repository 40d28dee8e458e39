"""Mirror of param_test_benchmark: param_test.c built with -DBENCHMARK, the
injection points and verbose output compiled out (selftests/rseq/param_test.py
has the program).  The Makefile lists it in TEST_GEN_PROGS, so the kselftest
runner runs it without arguments: the spinlock test, reduced as ``run()``
reduces it (-T s -r REPS -t NR_THREADS, C: 5000 reps, 200 threads)."""

import pytest

from selftests.rseq import param_test, xfail_known_findings

BUILD = {"mm_cid": False, "compare_twice": False, "benchmark": True}


def run(machine, argv=None):
    return param_test.run(machine, argv, BUILD)


@pytest.mark.emu_cpus(2, 8)
def test_param_test_benchmark(selftest_machine):
    selftest_machine.check(xfail_known_findings(run))
