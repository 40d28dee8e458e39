"""Exploration: strategies, the scheduling point, searches, findings,
campaigns and replay keys.

Imports run one way: the front ends (cli, pytest_plugin) import from here,
and this package imports the machine, never the reverse.  Inside it:
strategies and point (the decision at a scheduling point), keys and findings
(what a run is and what it found), then mirror, generated, stateful and
systematic (the searches), then campaign and replay.
"""

from .strategies import (
    PCTStrategy, PreemptStrategy, RandomStrategy, ScriptStrategy, Strategy, strategy_from_spec,
)

__all__ = ["Strategy", "RandomStrategy", "PCTStrategy", "PreemptStrategy", "ScriptStrategy",
           "strategy_from_spec"]
