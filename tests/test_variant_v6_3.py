"""v6.3 (af7f588d8f73): a cid lives only while its task is on a CPU, and the
compaction test's election needs half the threads on CPU at the same moment."""

from emulator import Machine
from selftests.rseq.mm_cid_compaction_test import run as compaction


def test_on_128_cpus_the_election_rests_on_how_long_an_exiting_thread_holds_its_cid():
    """With the default costs about 17 threads are on CPU at once (the wake-up
    chain spaces them 700 ns apart, each holds its cid ~12 us until
    exit_signals()): nobody reads a cid >= 64, a vacuous pass reported as a
    skip.  When the way to exit_signals() takes 50 us, 64 threads overlap and
    the leader sees 0."""
    default = compaction(Machine(nr_cpus=128, variants=["v6.3"], seed=1))
    assert default.outcome == "skip" and "vacuous" in default.detail
    slow_exit = compaction(Machine(nr_cpus=128, variants=["v6.3"], seed=1,
                                   costs={"exit_ns": 50_000}))
    assert slow_exit.outcome == "pass" and "(mm_cid 64) saw 0" in slow_exit.detail
