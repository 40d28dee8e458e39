"""Mirror of tools/testing/selftests/rseq/run_param_test.sh.

The script as the kernel has it (with the mm_cid builds, the membarrier test
and NR_THREADS): for each block of options, do_tests() runs every test type
with the four builds (param_test, param_test_compare_twice,
param_test_mm_cid, param_test_mm_cid_compare_twice), echoing what it runs,
and the script exits 1 at the first build that fails.  Each ``./param_test
...`` is a run of the mirror on a fresh machine (a new process on the same
kernel), with the machine's variant, CPUs and seed.

Sizes are param_test.py's (REPS, NR_LOOPS and NR_THREADS reduced).  By
default each block is present but do_tests() runs one test type of it (the
first block, "Default parameters", runs all eight), each blocking-injection
block one of its injection points: 26 test types, 104 program runs.
``full=True`` (``python -m emulator kselftest rseq --full``, or
EMU_PARAM_TEST=full) runs the whole script: 296 test types, 1184 runs.
"""

import os

from selftests.rseq.param_test import NR_INJECT, NR_LOOPS, REPS, TEST_LIST, TEST_NAME, threads

BUILDS = [("test", "param_test"), ("compare-twice test", "param_test_compare_twice"),
          ("mm_cid test", "param_test_mm_cid"),
          ("mm_cid compare-twice test", "param_test_mm_cid_compare_twice")]


class ScriptExit(Exception):
    def __init__(self, status):
        self.status = status


def run_param_test_sh(exec_program, nr_cpus, echo, full=None):
    """Run the script: ``exec_program(name, argv) -> exit status`` runs one
    program, ``echo(line)`` prints; the script's exit status."""
    if full is None:
        full = os.environ.get("EMU_PARAM_TEST") == "full"
    NR_THREADS = threads(nr_cpus)
    block = [0]                         # which do_tests() call this is

    def do_tests(*args, pick=None):
        if full or block[0] == 0:
            chosen = range(len(TEST_LIST))
        else:
            chosen = [pick if pick is not None else block[0] % len(TEST_LIST)]
        block[0] += 1
        for i in chosen:
            for label, program in BUILDS:
                echo(f"Running {label} {TEST_NAME[i]}")
                argv = TEST_LIST[i] + ["-r", str(REPS), "-t", str(NR_THREADS), *args]
                if exec_program(program, argv) != 0:
                    raise ScriptExit(1)         # || exit 1

    def inject_blocking(*args, which=0):
        for n in (7, 8, 9):
            if full or n == 7 + which % 3:
                echo(f"Injecting at <{n}>")
                do_tests(f"-{n}", "-1", *args)
            elif not full:
                block[0] += 1

    try:
        echo("Default parameters")
        do_tests()

        echo(f"Loop injection: {NR_LOOPS} loops")
        for n in range(1, NR_INJECT + 1):
            echo(f"Injecting at <{n}>")
            do_tests(f"-{n}", str(NR_LOOPS))

        which = 0
        for kind, opt in (("Yield", ["-y"]), ("Kill", ["-k"]), ("Sleep (1ms,", ["-s", "1"])):
            for modulo, pct in ((4, 25), (2, 50), (1, 100)):
                title = f"Sleep injection (1ms, {pct}%)" if kind.startswith("Sleep") \
                    else f"{kind} injection ({pct}%)"
                echo(title)
                inject_blocking("-m", str(modulo), *opt, which=which)
                which += 1
    except ScriptExit as exc:
        return exc.status
    return 0
