"""KTAP as kselftest writes it.

Two writers, each after its kernel file:

- ``Ksft``: tools/testing/selftests/kselftest.h, what one kselftest program
  prints (``TAP version 13``, the plan ``1..N``, ``ok N ...``, ``# SKIP``,
  ``# Totals: ...``) and the exit code it ends with (KSFT_PASS 0, KSFT_FAIL
  1, KSFT_XFAIL 2, KSFT_XPASS 3, KSFT_SKIP 4, as kselftest.h and
  kselftest/ktap_helpers.sh define them).
- ``run_many()``: kselftest/runner.sh's run_many()/run_one(), what
  ``make -C tools/testing/selftests TARGETS=DIR run_tests`` prints for a
  directory: the outer ``TAP version 13`` and plan, then per program
  ``# selftests: DIR: NAME``, the program's output with every line prefixed
  by ``# `` (tap_prefix(): kselftest/prefix.pl, or ``sed -e 's/^/# /'``),
  and ``ok N selftests: DIR: NAME``, ``ok N ... # SKIP`` (exit code
  skip_rc 4) or ``not ok N ... # exit=RC``.

Documentation/dev-tools/ktap.rst is the grammar both follow.  This module
is a leaf: it imports nothing of the emulator, so the mirror runner
(explore/mirror.py) and the front ends use it alike.

Departures: a program's output is a list of lines handed over when the
program has ended, not a pipe read as it runs; the runner's timeout
(``settings``: timeout=..., exit 124, ``# TIMEOUT``) is not modelled, since
virtual time does not run out; make's own ``make[1]: Entering directory``
lines are not printed; the runner's exit status is this module's choice
(below), the kernel's ``make run_tests`` exiting 0 whatever its tests did.
"""

KSFT_PASS = 0
KSFT_FAIL = 1
KSFT_XFAIL = 2
KSFT_XPASS = 3
KSFT_SKIP = 4

# kselftest/runner.sh (its timeout_rc, 124, cannot happen here: see above)
skip_rc = 4


class Ksft:
    """struct ksft_count and kselftest.h's printing functions, printing
    with *out* (one call per line).  The ``ksft_exit_*`` functions return
    the exit code the C functions would exit() with."""

    def __init__(self, out=print):
        self.out = out
        self.ksft_pass = self.ksft_fail = self.ksft_xfail = 0
        self.ksft_xpass = self.ksft_xskip = self.ksft_error = 0
        self.ksft_plan = 0

    def ksft_test_num(self):
        return (self.ksft_pass + self.ksft_fail + self.ksft_xfail + self.ksft_xpass
                + self.ksft_xskip + self.ksft_error)

    def ksft_print_header(self):
        self.out("TAP version 13")

    def ksft_set_plan(self, plan):
        self.ksft_plan = plan
        self.out(f"1..{plan}")

    def ksft_print_cnts(self):
        if self.ksft_plan != self.ksft_test_num():
            self.out(f"# Planned tests != run tests ({self.ksft_plan} != {self.ksft_test_num()})")
        self.out(f"# Totals: pass:{self.ksft_pass} fail:{self.ksft_fail} "
                 f"xfail:{self.ksft_xfail} xpass:{self.ksft_xpass} "
                 f"skip:{self.ksft_xskip} error:{self.ksft_error}")

    def ksft_print_msg(self, msg):
        for line in str(msg).splitlines() or [""]:
            self.out(f"# {line}")

    def ksft_test_result_pass(self, msg):
        self.ksft_pass += 1
        self.out(f"ok {self.ksft_test_num()} {_description(msg)}")

    def ksft_test_result_fail(self, msg):
        self.ksft_fail += 1
        self.out(f"not ok {self.ksft_test_num()} {_description(msg)}")

    def ksft_test_result_xfail(self, msg):
        self.ksft_xfail += 1
        self.out(f"ok {self.ksft_test_num()} # XFAIL {_description(msg)}")

    def ksft_test_result_skip(self, msg):
        self.ksft_xskip += 1
        self.out(f"ok {self.ksft_test_num()} # SKIP {_description(msg)}")

    def ksft_test_result_error(self, msg):
        self.ksft_error += 1
        self.out(f"not ok {self.ksft_test_num()} # error {_description(msg)}")

    def ksft_exit_pass(self):
        self.ksft_print_cnts()
        return KSFT_PASS

    def ksft_exit_fail(self):
        self.ksft_print_cnts()
        return KSFT_FAIL

    def ksft_exit_xfail(self):
        self.ksft_print_cnts()
        return KSFT_XFAIL

    def ksft_exit_xpass(self):
        self.ksft_print_cnts()
        return KSFT_XPASS

    def ksft_exit_fail_msg(self, msg):
        self.out(f"Bail out! {_description(msg)}")
        self.ksft_print_cnts()
        return KSFT_FAIL

    def ksft_exit_skip(self, msg):
        # FIXME (kselftest.h): several tests misuse ksft_exit_skip so produce
        # something sensible if some tests have already been run or a plan
        # has been printed.
        # (As in C, the skip is counted before its number is printed, so
        # after a plan of 1 the line reads "ok 2": the mirrors do not use it
        # once a plan is out.)
        if self.ksft_plan or self.ksft_test_num():
            self.ksft_xskip += 1
            self.out(f"ok {1 + self.ksft_test_num()} # SKIP {_description(msg)}")
        else:
            self.out(f"1..0 # SKIP {_description(msg)}")
        if self.ksft_test_num():
            self.ksft_print_cnts()
        return KSFT_SKIP

    def ksft_finished(self):
        """ksft_exit(plan == pass + xfail + skip)."""
        if self.ksft_plan == self.ksft_pass + self.ksft_xfail + self.ksft_xskip:
            return self.ksft_exit_pass()
        return self.ksft_exit_fail()


def _description(msg):
    """One line: ktap.rst's description "can't include #" before the
    directive; the C tests' printf format ends in "\\n", the caller's
    message here has none."""
    return " ".join(str(msg).split())


def run_many(collection, tests, run_one_test, out=print):
    """kselftest/runner.sh's run_many(): run the programs *tests* (names) of
    the directory *collection* with ``run_one_test(name) -> (exit code,
    output lines)`` and print the runner's KTAP.  Returns the number of
    programs that failed (``not ok``)."""
    out("TAP version 13")
    out(f"1..{len(tests)}")
    failed = 0
    for test_num, name in enumerate(tests, 1):
        failed += not run_one(collection, name, test_num, run_one_test, out)
    return failed


def run_one(collection, name, test_num, run_one_test, out=print):
    """kselftest/runner.sh's run_one() for a program that exists and is
    executable; True when its line is ``ok``."""
    TEST_HDR_MSG = f"selftests: {collection}: {name}"
    out(f"# {TEST_HDR_MSG}")
    rc, lines = run_one_test(name)
    for line in lines:                   # tap_prefix
        out(f"# {line}")
    if rc == 0:
        out(f"ok {test_num} {TEST_HDR_MSG}")
        return True
    if rc == skip_rc:
        out(f"ok {test_num} {TEST_HDR_MSG} # SKIP")
        return True
    out(f"not ok {test_num} {TEST_HDR_MSG} # exit={rc}")
    return False
