"""Mirror of param_test_compare_twice: param_test.c built with -DRSEQ_COMPARE_TWICE
(selftests/rseq/param_test.py has the program and run_param_test.sh's matrix)."""

import pytest

from selftests.rseq import param_test

BUILD = {"mm_cid": False, "compare_twice": True}


def run(machine, argv=None):
    return param_test.run(machine, argv, BUILD)


@pytest.mark.emu_cpus(2, 8)
@pytest.mark.parametrize("case", range(param_test.nr_cases(BUILD)))
def test_param_test_compare_twice(selftest_machine, case):
    selftest_machine.check(param_test.case_runner(case, BUILD))
