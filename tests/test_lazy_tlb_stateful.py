"""The mm lifecycle with CPU hotplug, kernel threads adopting mms and slow
IPIs, rule by rule, over every lazy_tlb variant
(emulator.explore.stateful_lazy_tlb).  A variant's recorded findings (the
shootdown variants' hotplug exit race) end an example as known; anything
else fails, shrunk.  ``STATEFUL_LAZY_TLB_EXAMPLES`` examples per search."""

import os

import pytest

from emulator.explore.campaign import Campaign
from emulator.explore.stateful import stateful_search
from emulator.explore.stateful_lazy_tlb import lazy_tlb_machine

SUBSYSTEM = "lazy_tlb"
EXAMPLES = int(os.environ.get("STATEFUL_LAZY_TLB_EXAMPLES", "25"))
PATCH_EXAMPLES = int(os.environ.get("STATEFUL_PATCH_EXAMPLES", "500"))


def test_rule_by_rule_lazy_mms_are_never_used_after_their_free(emu_search):
    variant, shard = emu_search
    examples = PATCH_EXAMPLES if getattr(variant, "source", None) else EXAMPLES
    stateful_search(lazy_tlb_machine(variant), examples, shard)()


@pytest.mark.parametrize("strategy", ["systematic:per_case=4", "random", "pct", "preempt"])
def test_every_strategy_explores_the_lazy_rules(emu_variant, strategy):
    """The exploration strategies run over the lazy-TLB rule sequences as
    over the others (python -m emulator explore --variant V --strategy S):
    each schedule of an example is checked by the same invariants; a variant
    ends only in its recorded findings."""
    campaign = Campaign(emu_variant, strategy, "stateful", cpus=[2, 3], seed=1)
    campaign.run(runs=12, progress=False)
    assert campaign.runs >= 12 and not campaign.failures, campaign.summary()
