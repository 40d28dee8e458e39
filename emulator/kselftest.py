"""``python -m emulator kselftest DIR``: a directory of mirrors run as
``make -C tools/testing/selftests TARGETS=DIR run_tests`` runs it.

The directory's ``__init__.py`` holds its Makefile's lists (TEST_GEN_PROGS,
TEST_CUSTOM_PROGS, TEST_PROGS) and, for each TEST_PROGS script, its mirror
(``TEST_SCRIPTS()``).  lib.mk's run_tests hands them in that order to
kselftest/runner.sh's run_many() (emulator.ktap.run_many): each program is
a mirror run on a fresh machine of the chosen variant, CPUs and seed,
printing its own KTAP as a kselftest.h program (emulator.explore.mirror);
a script echoes as the shell script does and runs its programs the same way,
but shows of each only what the C program would print: nothing when it
passes, the failure's report when it fails (so its block holds no nested
KTAP, as the kernel's does not).

Exit status: 0 when every program's line is ``ok`` (a skip included), 1
when one is ``not ok``.  (``make run_tests`` itself exits 0 whatever its
tests did; CI reads the ``ok``/``not ok`` lines, which are the same.)
"""

import importlib
from pathlib import Path

from .errors import UsageError
from .explore.mirror import run_selftest
from .ktap import run_many, skip_rc
from .selftest import selftest_path

__all__ = ["kselftest", "collection"]


def collection(name):
    """The selftests package ``selftests.NAME`` with its Makefile's lists."""
    if not name.isidentifier():
        raise UsageError(f"kselftest {name!r}: a directory name under selftests/, e.g. rseq")
    try:
        pkg = importlib.import_module(f"selftests.{name}")
    except ModuleNotFoundError:
        pkg = None
    if pkg is None or not hasattr(pkg, "TEST_GEN_PROGS"):
        raise UsageError(f"kselftest {name!r}: no selftests/{name}/__init__.py with the "
                         f"Makefile's TEST_GEN_PROGS (known: rseq)")
    return pkg


def program_mirror(pkg, name):
    """What names the mirror of the program *name* in the directory of
    *pkg*: the program's name when that finds this file, else its path."""
    root = Path(pkg.__file__).parent
    for candidate in (root / f"{name}.py", root / f"{name}_test.py"):
        if candidate.is_file():
            try:
                if selftest_path(name) == candidate.resolve():
                    return name
            except UsageError:          # the name is ambiguous: another mirror has it
                pass
            return str(candidate)
    raise UsageError(f"selftests/{pkg.__name__.split('.')[-1]}: program {name!r} has no mirror")


def kselftest(name, variant, cpus, seed, full=None, out=print):
    """Run the directory *name*; the exit status."""
    pkg = collection(name)
    tests = list(pkg.TEST_GEN_PROGS) + list(getattr(pkg, "TEST_CUSTOM_PROGS", [])) + \
        list(getattr(pkg, "TEST_PROGS", []))
    scripts = pkg.TEST_SCRIPTS() if hasattr(pkg, "TEST_SCRIPTS") else {}
    for p in getattr(pkg, "TEST_PROGS", []):
        if p not in scripts:
            raise UsageError(f"selftests/{name}: script {p!r} has no mirror")
    programs = {p: program_mirror(pkg, p) for p in tests if p not in scripts}
    for p in getattr(pkg, "TEST_GEN_PROGS_EXTENDED", []):
        programs[p] = program_mirror(pkg, p)

    def exec_program(program, argv, lines):
        """``./program argv...``: the program's KTAP into *lines*, its exit status."""
        return run_selftest(programs[program], variant, cpus, seed, out=lines.append,
                            argv=argv or None)

    def script_program(program, argv, lines):
        """A program a script runs: what the C program would print, nothing
        when it passes (param_test is silent without -v), the failure's
        report (seed, variant, replay command) when it fails; its exit status."""
        own = []
        rc = exec_program(program, argv, own)
        if rc not in (0, skip_rc):
            lines.extend(line[2:] for line in own
                         if line.startswith("# ") and not line.startswith("# Totals: "))
        return rc

    def run_one_test(test):
        lines = []
        if test in scripts:
            rc = scripts[test](lambda program, argv: script_program(program, argv, lines),
                               cpus, lines.append, full)
        else:
            rc = exec_program(test, [], lines)
        return rc, lines

    failed = run_many(name, tests, run_one_test, out)
    return 1 if failed else 0
