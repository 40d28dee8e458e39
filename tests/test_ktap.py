"""KTAP output: `run` prints what a kselftest.h program prints, `kselftest rseq`
what `make -C tools/testing/selftests TARGETS=rseq run_tests` prints, and a
mirror is found by the names a user gives it.

The parser below is written from Documentation/dev-tools/ktap.rst's grammar,
not from emulator/ktap.py: version line, plan "1..N", result lines
"<ok|not ok> <number> [<description>][ # [<directive>] [<diagnostic data>]]"
numbered from 1 by 1, diagnostic lines "# ...", anything else an unknown line.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.cli import main
from selftests import rseq

REPO = Path(__file__).resolve().parent.parent
CID_BUG = str(REPO / "fixtures" / "patches" / "cid_bit_not_set.py")

VERSION = re.compile(r"^(KTAP version 1|TAP version 13|TAP version 14)$")
PLAN = re.compile(r"^1\.\.(\d+)( # .*)?$")
RESULT = re.compile(r"^(ok|not ok) ([1-9][0-9]*)(?: ([^#]*[^# ]))?(?: ?#(?: (.*))?)?$")
DIRECTIVES = {"SKIP", "TODO", "XFAIL", "TIMEOUT", "ERROR"}
TOTALS = re.compile(r"^# Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) "
                    r"error:(\d+)$")


class Doc:
    def __init__(self):
        self.plan = None
        self.results = []       # (ok, number, description, directive, data)
        self.diagnostics = []
        self.totals = None
        self.bail_out = False


def parse_ktap(lines):
    """One KTAP document; AssertionError where it breaks ktap.rst."""
    lines = list(lines)
    assert lines and VERSION.match(lines[0]), f"no version line first: {lines[:1]}"
    assert len(lines) > 1 and PLAN.match(lines[1]), f"no plan after the version: {lines[:2]}"
    doc = Doc()
    doc.plan = int(PLAN.match(lines[1]).group(1))
    for line in lines[2:]:
        m = RESULT.match(line)
        if m:
            data = m.group(4) or ""
            word = data.split(" ", 1)[0]
            directive = word.upper() if word.upper() in DIRECTIVES else None
            doc.results.append((m.group(1) == "ok", int(m.group(2)), m.group(3) or "",
                                directive, data))
            assert doc.results[-1][1] == len(doc.results), \
                f"result numbered {m.group(2)}, expected {len(doc.results)}: {line}"
            continue
        assert not VERSION.match(line) and not PLAN.match(line), f"a second header: {line}"
        if line.startswith("#"):
            doc.diagnostics.append(line[2:] if line.startswith("# ") else line[1:])
            t = TOTALS.match(line)
            if t:
                doc.totals = tuple(map(int, t.groups()))
        elif line.startswith("Bail out!"):
            doc.bail_out = True
    return doc


def totals_of(doc):
    """(pass, fail, xfail, xpass, skip, error) as kselftest counts the results."""
    passed = sum(ok and d is None for ok, _, _, d, _ in doc.results)
    failed = sum(not ok and d is None for ok, _, _, d, _ in doc.results)
    xfail = sum(d == "XFAIL" for _, _, _, d, _ in doc.results)
    skip = sum(d == "SKIP" for _, _, _, d, _ in doc.results)
    error = sum(d == "ERROR" for _, _, _, d, _ in doc.results)
    return passed, failed, xfail, 0, skip, error


def check_program(lines):
    """A kselftest.h program's output: one document whose plan, results and
    Totals line agree."""
    doc = parse_ktap(lines)
    assert len(doc.results) == doc.plan
    assert doc.totals == totals_of(doc), (doc.totals, lines)
    return doc


def run_cli(capsys, *argv):
    status = main(list(argv))
    return status, capsys.readouterr().out.splitlines()


def nested(outer_lines):
    """Each program's block of the runner's output: {name: lines without "# "}."""
    blocks, name = {}, None
    for line in outer_lines[2:]:
        m = re.match(r"^# selftests: rseq: (\S+)$", line)
        if m:
            name = m.group(1)
            blocks[name] = []
        elif line.startswith("# ") and name:
            blocks[name].append(line[2:])
        elif RESULT.match(line):
            name = None
    return blocks


def documents(lines):
    """The KTAP documents in a script's output, split at their version lines."""
    docs, cur = [], None
    for line in lines:
        if VERSION.match(line):
            cur = []
            docs.append(cur)
        if cur is not None:
            cur.append(line)
    return docs


def test_a_mirror_run_prints_ktap_and_exits_ksft_pass(capsys):
    """`run basic` prints a kselftest program's KTAP: version, plan 1, `ok 1`, Totals."""
    status, lines = run_cli(capsys, "run", "basic_test", "--cpus", "2")
    doc = check_program(lines)
    assert status == 0
    assert doc.results[0][:2] == (True, 1)
    assert doc.totals == (1, 0, 0, 0, 0, 0)


def test_a_vacuous_run_is_ok_with_skip_and_exits_ksft_skip(capsys):
    """A skipped mirror is `ok 1 # SKIP ...` and exits 4, KSFT_SKIP."""
    status, lines = run_cli(capsys, "run", "mm_cid_compaction", "--variant", "v6.3",
                            "--cpus", "128")
    doc = check_program(lines)
    assert status == 4
    assert doc.results[0][3] == "SKIP" and doc.totals[4] == 1


def test_a_wrong_sum_is_not_ok_and_exits_ksft_fail(capsys):
    """param_test_mm_cid -T i on the cid bug: `not ok 1`, exit 1, the seed, variant
    and replay command in the diagnostics."""
    status, lines = run_cli(capsys, "run", "param_test_mm_cid", "--variant", CID_BUG,
                            "--cpus", "8", "--", "-T", "i", "-r", "100", "-t", "12")
    doc = check_program(lines)
    assert status == 1
    assert doc.results[0][0] is False and doc.totals[1] == 1
    text = "\n".join(doc.diagnostics)
    assert "seed=1" in text and "cid-bit-not-set" in text
    assert "python -m emulator run param_test_mm_cid --variant" in text and "-T i" in text


def test_kselftest_rseq_is_the_runner_output_over_the_makefile(capsys):
    """`kselftest rseq` prints runner.sh's outer KTAP: the Makefile's programs,
    then its scripts, one `ok N selftests: rseq: NAME` each, every program's
    own KTAP nested under "# "; exit 0."""
    status, lines = run_cli(capsys, "kselftest", "rseq", "--cpus", "2")
    outer = parse_ktap(lines)
    names = rseq.TEST_GEN_PROGS + rseq.TEST_PROGS
    assert "run_param_test.sh" in names
    assert outer.plan == len(outer.results) == len(names)
    assert [(ok, d) for ok, _, d, _, _ in outer.results] == \
        [(True, f"selftests: rseq: {n}") for n in names]
    assert status == 0
    blocks = nested(lines)
    assert list(blocks) == names
    for name in rseq.TEST_GEN_PROGS:
        [doc] = documents(blocks[name])
        assert check_program(doc).totals[0] == 1, name
    script = blocks["run_param_test.sh"]
    assert not documents(script)            # passing programs print nothing, as in C
    assert script[0] == "Default parameters"
    assert "Running mm_cid compare-twice test membarrier" in script
    assert sum(line.startswith("Injecting at <") for line in script) == 9 + 9
    assert all(line.startswith(("Running ", "Injecting at <", "Default parameters",
                                "Loop injection: ", "Yield injection", "Kill injection",
                                "Sleep injection")) for line in script), script


def test_kselftest_rseq_on_the_cid_bug_is_not_ok_and_exits_1(capsys):
    """On a variant whose running threads share a cid, every program (the
    invariants on: P11 names the bug as the first thread runs with an id the
    bitmap does not hold, single-threaded basic_test included) and
    run_param_test.sh, which stops at its first failing program, are
    `not ok ... # exit=1`; the outer plan still matches; exit 1."""
    status, lines = run_cli(capsys, "kselftest", "rseq", "--variant", CID_BUG, "--cpus", "8")
    outer = parse_ktap(lines)
    assert outer.plan == len(outer.results)
    assert status == 1
    verdict = {d.rsplit(": ", 1)[1]: (ok, data) for ok, _, d, _, data in outer.results}
    assert verdict["basic_test"] == (False, "exit=1")
    assert verdict["basic_percpu_ops_mm_cid_test"] == (False, "exit=1")
    assert verdict["run_param_test.sh"] == (False, "exit=1")
    script = nested(lines)["run_param_test.sh"]
    ran = [line for line in script if line.startswith("Running ")]
    report = script[script.index(ran[-1]) + 1:]         # the script stopped at its failure
    assert report and all(not line.startswith("Running ") for line in report)
    assert any(line.startswith("replay: python -m emulator run param_test") and " -- -T " in line
               for line in report), report
    assert not documents(script)


def test_kselftest_refuses_an_unknown_directory(capsys):
    """A directory with no mirrors is one line on stderr and exit 2."""
    assert main(["kselftest", "nosuchdir"]) == 2
    assert "nosuchdir" in capsys.readouterr().err


@pytest.fixture
def users_tree(tmp_path):
    """A user's tree with selftests/mine/my_test.py (no __init__.py), the
    README's example mirror as written."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Writing a selftest mirror"):]
    code = section[section.index("```python\n") + 10:]
    (tmp_path / "selftests" / "mine").mkdir(parents=True)
    (tmp_path / "selftests" / "mine" / "my_test.py").write_text(code[:code.index("```")])
    return tmp_path


@pytest.mark.parametrize("name", ["my_test", "my", "selftests/mine/my_test.py"])
def test_the_readme_mirror_is_found_by_every_name(users_tree, name):
    """The README's mirror saved as selftests/mine/my_test.py runs as
    `python -m emulator run my_test`, `run my` and `run selftests/mine/my_test.py`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "emulator", "run", name], cwd=users_tree,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = check_program(out.stdout.splitlines())
    assert doc.results[0][2].startswith(f"{name} variant=")


def test_a_c_program_name_finds_its_mirror(capsys):
    """param_test (param_test.py) and param_test_mm_cid (param_test_mm_cid_test.py)
    answer to the C programs' names."""
    for name in ("param_test", "param_test_mm_cid", "basic_percpu_ops_test"):
        status, lines = run_cli(capsys, "run", name, "--cpus", "2")
        assert status == 0 and check_program(lines).results[0][2].startswith(name + " ")
