"""The mm lifecycle with CPU hotplug, kernel threads adopting mms and slow
IPIs, rule by rule, over every lazy_tlb variant
(emulator.explore.stateful_lazy_tlb).  A variant's recorded findings (the
shootdown variants' hotplug exit race) end an example as known; anything
else fails, shrunk.  ``STATEFUL_LAZY_TLB_EXAMPLES`` examples per search."""

import os

from emulator.explore.stateful import stateful_search
from emulator.explore.stateful_lazy_tlb import lazy_tlb_machine

SUBSYSTEM = "lazy_tlb"
EXAMPLES = int(os.environ.get("STATEFUL_LAZY_TLB_EXAMPLES", "25"))
PATCH_EXAMPLES = int(os.environ.get("STATEFUL_PATCH_EXAMPLES", "500"))


def test_rule_by_rule_lazy_mms_are_never_used_after_their_free(emu_search):
    variant, shard = emu_search
    examples = PATCH_EXAMPLES if getattr(variant, "source", None) else EXAMPLES
    stateful_search(lazy_tlb_machine(variant), examples, shard)()
