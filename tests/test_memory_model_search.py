"""The default suite's share of weak-memory searching: the stateful search of
tests/test_stateful.py (Hypothesis draws rule sequences, the schedule and,
through the seeded chooser, every decision of the memory model) once per
mm_cid variant under ``tso`` and once under ``weak``, at
MEMORY_SEARCH_EXAMPLES examples each (emulator/pytest_plugin.py).  Nothing
here names a scenario: the same rules as under sc, only the machines' model
differs.  A longer campaign is opt-in:

    EMU_MEMORY_EXAMPLES=500 pytest -n auto tests/test_memory_model_search.py
    pytest -n auto tests/test_memory_model_search.py --emu-memory-examples=500

(``python -m emulator explore --memory-model weak`` runs one for a time.)
A recorded finding of the variant ends an example as known, as under sc.
"""

from emulator.explore.stateful import lifecycle_machine, stateful_search
from emulator.machine import set_default_memory_model

SUBSYSTEM = "mm_cid"

# The searches' Hypothesis seed: not the sc search's (tests/test_stateful.py
# uses the shard, 0), so the share draws other rule sequences too.
SEED = 7


def test_rule_by_rule_under_tso_and_weak_the_variant_keeps_the_invariants(emu_memory_search):
    variant, model, examples = emu_memory_search
    previous = set_default_memory_model(model)
    try:
        stateful_search(lifecycle_machine(variant), examples, SEED)()
    finally:
        set_default_memory_model(previous)
