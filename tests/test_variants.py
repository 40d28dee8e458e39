"""Variants: the registry, loading a patch file, overrides at every call site."""

import pytest

from emulator import Machine, UsageError
from emulator.variants import get_variant, load_variant, registered
from emulator.variants.base import SchedMmCid
from emulator.uapi.libc import pthread_create, pthread_join, usleep


def test_registry_finds_v6_3_by_name():
    """v6.3 is registered, copies af7f588d8f73, and is an mm_cid variant."""
    cls = get_variant("v6.3")
    assert issubclass(cls, SchedMmCid)
    assert "af7f588d8f73" in cls.copies
    assert registered()["v6.3"] is cls


def test_unknown_name_is_a_usage_error():
    """An unknown name is refused with the list of known ones."""
    with pytest.raises(UsageError, match="unknown variant 'v9.9'; known: .*v6.3"):
        get_variant("v9.9")


def _counting_patch(tmp_path, body="return super().switch_mm_cid(rq, prev, next)"):
    patch = tmp_path / "counting.py"
    patch.write_text(
        "from emulator.variants import get_variant\n\n"
        "class Counting(get_variant('v6.3')):\n"
        "    name = 'counting'\n"
        "    calls = 0\n"
        "    def switch_mm_cid(self, rq, prev, next):\n"
        "        type(self).calls += 1\n"
        f"        {body}\n")
    return patch


def test_patch_file_loads_as_a_subclass(tmp_path):
    """A file deriving from a registered variant loads as that subclass, under its name."""
    cls = load_variant(str(_counting_patch(tmp_path)))
    assert cls.name == "counting"
    assert issubclass(cls, get_variant("v6.3"))
    assert cls.source.endswith("counting.py")


def test_override_takes_effect_at_every_call_site(tmp_path):
    """The kernel calls the patch's switch_mm_cid at every context switch."""
    def main():
        threads = [pthread_create(lambda _: usleep(100)) for _ in range(4)]
        for t in threads:
            pthread_join(t)
    m = Machine(nr_cpus=4, variants=[str(_counting_patch(tmp_path))])
    m.run(main)
    assert m.mm_cid_class.calls == m.kernel.nr_switches > 0


def _constant_cid_patch(tmp_path):
    patch = tmp_path / "constant.py"
    patch.write_text(
        "from emulator.variants import get_variant\n\n"
        "class Constant(get_variant('v6.3')):\n"
        "    name = 'constant-cid'\n"
        "    def task_mm_cid(self, t):\n"
        "        return 42\n")
    return patch


def test_override_changes_behaviour_users_see(tmp_path):
    """What a patch's task_mm_cid() returns is what user space reads."""
    from emulator.uapi.rseq import rseq_current_mm_cid
    seen = []

    def main():
        usleep(10)
        seen.append(rseq_current_mm_cid())
    Machine(nr_cpus=2, variants=[str(_constant_cid_patch(tmp_path))], invariants=False).run(main)
    assert seen == [42]


def test_invariants_catch_a_patch_exposing_an_out_of_bound_cid(tmp_path):
    """The same patch under the invariants: P2 stops the run, naming the bound."""
    from emulator.checks.invariants import InvariantViolation

    def main():
        usleep(10)
    with pytest.raises(InvariantViolation, match=r"P2 bound: .* sees mm_cid 42, outside \[0, 2\)"):
        Machine(nr_cpus=2, variants=[str(_constant_cid_patch(tmp_path))]).run(main)


@pytest.mark.parametrize("text, message", [
    ("x = 1\n", "must define exactly one variant class"),
    ("raise RuntimeError('oops')\n", "failed to load: RuntimeError: oops"),
    ("from emulator.variants import get_variant\nget_variant('nope')\n", "unknown variant 'nope'"),
])
def test_bad_patch_file_is_a_usage_error(tmp_path, text, message):
    """A patch file that defines no variant, or fails to import, gets one clear line."""
    patch = tmp_path / "bad.py"
    patch.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_variant(str(patch))


def test_one_mm_cid_variant_per_machine():
    """Two variants of one subsystem on one machine are refused."""
    class Other(get_variant("v6.3")):
        name = "other-test"
    with pytest.raises(UsageError, match="one mm_cid variant per machine"):
        Machine(nr_cpus=2, variants=["v6.3", Other])
