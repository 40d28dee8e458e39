"""The mm lifecycle with CPU hotplug, kernel threads adopting mms and slow
IPIs, rule by rule, over every lazy_tlb variant
(emulator.explore.stateful_lazy_tlb).  A variant's recorded findings (the
shootdown variants' hotplug exit race) end an example as known; anything
else fails, shrunk.  ``STATEFUL_LAZY_TLB_EXAMPLES`` examples per search."""

import os

import pytest

from emulator.explore.campaign import Campaign
from emulator.explore.stateful import lifecycle_machine, stateful_search

SUBSYSTEM = "lazy_tlb"
EXAMPLES = int(os.environ.get("STATEFUL_LAZY_TLB_EXAMPLES", "25"))
PATCH_EXAMPLES = int(os.environ.get("STATEFUL_PATCH_EXAMPLES", "500"))


def test_rule_by_rule_lazy_mms_are_never_used_after_their_free(emu_search):
    variant, shard = emu_search
    examples = PATCH_EXAMPLES if getattr(variant, "source", None) else EXAMPLES
    stateful_search(lifecycle_machine(variant), examples, shard)()


@pytest.mark.parametrize("strategy", ["systematic:per_case=4", "random", "pct", "preempt"])
def test_every_strategy_explores_the_lazy_rules(emu_variant, strategy):
    """The exploration strategies run over the lazy-TLB rule sequences as
    over the others (python -m emulator explore --variant V --strategy S):
    each schedule of an example is checked by the same invariants; a variant
    ends only in its recorded findings."""
    campaign = Campaign(emu_variant, strategy, "stateful", cpus=[2, 3], seed=1)
    campaign.run(runs=12, progress=False)
    assert campaign.runs >= 12 and not campaign.failures, campaign.summary()


def _use(ns, then=0):
    return ["kthread_use", {"ns": ns, "then": then, "who": 0}]


@pytest.mark.parametrize("boot, steps", [
    ({"nr_cpus": 3, "seed": 208, "strategy": "preempt:p=0.05,max_ns=2000000"},
     [_use(1)] * 12 + [_use(1, 5849), _use(1, 1)]),
    ({"affinity": [0], "nr_cpus": 3, "nr_possible": 4, "preempt_p": 0.25, "seed": 2039,
      "strategy": "preempt:p=0.05,max_ns=2000000"},
     [_use(1513451), _use(1), _use(1), _use(11199), _use(1), _use(1), _use(1282613),
      _use(108361)] + [_use(1)] * 6 + [_use(1, 915199)] + [_use(1)] * 9
     + [_use(1, 606124), _use(1, 1)]),
], ids=["paused", "preempted"])
def test_the_checks_made_once_quiet_wait_for_a_path_a_strategy_stopped(boot, steps):
    """Regression stories (false P8s of the model's own, found by this file's
    preempt campaign): a puppet hands its mm to kworkers over and over
    (kthread_use_mm(), then kthread_unuse_mm()) and exits.  As it exits, a
    kworker that the strategy stopped inside kthread_use_mm(), between
    ``tsk->mm = mm`` and ``mmdrop_lazy_tlb(active_mm)`` (paused there, or
    preempted there and waiting for its CPU), still holds the lazy reference
    it is about to drop and is no lazy user any more.  The checks made once
    quiet judged the machine at that instant ("mm#1 holds 3 lazy
    reference(s) for 1 lazy user(s)"); now the run first lets such a path
    finish (Machine._settle())."""
    from emulator.explore.stateful import replay_steps
    from emulator.variants import get_variant
    assert replay_steps(get_variant("refcount"), boot, steps) is None
