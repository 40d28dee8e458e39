"""Exploration: strategies pause kernel paths at scheduling points, and find races."""

import pytest

from emulator import Machine, UsageError
from emulator.errors import EmulationFailure
from emulator.explore import PCTStrategy, RandomStrategy, ScriptStrategy, strategy_from_spec
from emulator.kernel.cpumask import cpumask_first_zero
from emulator.kernel.locking import READ_ONCE, WRITE_ONCE
from emulator.variants import get_variant
from emulator.workload import Program, repeat, run, sleep, thread


class UnlockedAllocator(get_variant("v6.3")):
    """v6.3 without cid_lock: find the first zero bit, then set it, in two steps."""
    name = "test-unlocked-allocator"

    def mm_cid_get(self, mm):
        cpumask = mm.cidmask
        cid = cpumask_first_zero(READ_ONCE(cpumask, "bits"))
        if cid >= self.k.nr_cpu_ids:
            return -1
        WRITE_ONCE(cpumask, "bits", cpumask.bits | (1 << cid))
        return cid


def churn(nr_cpus):
    worker = Program(repeat(30, run(20_000), sleep(15_000)))
    return Program(*[thread(worker) for _ in range(2 * nr_cpus)], sleep(3_000_000))


def outcomes(strategy, seeds=range(1, 16), variant=UnlockedAllocator):
    failures = []
    for seed in seeds:
        try:
            Machine(nr_cpus=8, variants=[variant], seed=seed,
                    strategy=strategy and strategy_from_spec(strategy)).run(churn(8))
        except EmulationFailure as exc:
            failures.append((seed, str(exc)))
    return failures


def test_the_default_order_never_splits_a_kernel_path():
    """Without a strategy the racy allocator's find-then-set never interleaves: no failure."""
    assert outcomes(None) == []


def test_random_exploration_finds_the_lost_update():
    """Random pauses between the find and the set let two CPUs take one cid."""
    failures = outcomes("random:p=0.05,max_ns=3000")
    assert failures, "random exploration found nothing in 15 seeds"
    assert any("P1 uniqueness" in text or "P4 no orphan" in text or "mm_cid -1" in text
               for _, text in failures)


def test_an_explored_failure_replays_from_its_seed_and_strategy():
    """The report names the strategy; the same seed and strategy fail the same way."""
    seed, text = outcomes("random:p=0.05,max_ns=3000")[0]
    assert "strategy=random:p=0.05,max_ns=3000" in text
    again = outcomes("random:p=0.05,max_ns=3000", seeds=[seed])
    assert again and again[0][1].splitlines()[0] == text.splitlines()[0]


@pytest.mark.parametrize("variant", ["v6.3", "v6.4", "seed-001", "v7.0"])
def test_exploring_a_faithful_variant_finds_nothing(variant):
    """Pausing at scheduling points breaks no invariant of a faithful era on this workload."""
    assert outcomes("random:p=0.05,max_ns=3000", seeds=range(1, 6), variant=variant) == []


def test_pct_pauses_at_exactly_depth_minus_one_points():
    """PCT with depth 3 pauses at 2 change points among the first horizon points."""
    m = Machine(nr_cpus=4, seed=3, strategy=PCTStrategy(depth=3, horizon=200))
    m.run(churn(4))
    assert m.strategy.pauses == 2 and len(m.strategy.change_points) == 2
    assert m.strategy.points > 200


def test_strategy_specs_parse_and_bad_ones_are_usage_errors():
    """'random:p=0.1' builds a strategy; unknown names and parameters get one clear line."""
    s = strategy_from_spec("random:p=0.1,max_ns=100")
    assert isinstance(s, RandomStrategy) and s.p == 0.1 and s.spec() == "random:p=0.1,max_ns=100"
    for bad, message in [("chaos", "unknown strategy"), ("random:p=x", "not key=number"),
                         ("random:q=1", "random"), ("random:p=2", "0 < p <= 1")]:
        with pytest.raises(UsageError, match=message):
            strategy_from_spec(bad)


def test_a_script_pauses_exactly_where_it_says():
    """script:p5=700,p9=1 pauses at the 5th and 9th points; its spec round-trips."""
    s = strategy_from_spec("script:p9=1,p5=700")
    assert isinstance(s, ScriptStrategy) and s.spec() == "script:p5=700,p9=1"
    m = Machine(nr_cpus=4, seed=3, strategy=s)
    m.run(churn(4))
    assert m.strategy.pauses == 2 and m.strategy.points > 9
    for bad, message in [("script:x=1", "pN=ns"), ("script:p3=0", ">= 1")]:
        with pytest.raises(UsageError, match=message):
            strategy_from_spec(bad)


def test_a_script_pause_splits_the_racy_allocator():
    """One pause, placed by hand between find and set, is all the lost update needs."""
    marks = []
    counting = ScriptStrategy()

    class Marked(UnlockedAllocator):
        name = "test-marked"

        def mm_cid_get(self, mm):
            marks.append(counting.points)
            return super().mm_cid_get(mm)
    Machine(nr_cpus=8, variants=[Marked], seed=1, strategy=counting).run(churn(8))
    # Points after entry: the READ_ONCE of the find, then the WRITE_ONCE of the set,
    # where a pause opens the window between them.
    failures = []
    for first in marks[20:60]:
        try:
            Machine(nr_cpus=8, variants=[UnlockedAllocator], seed=1,
                    strategy=ScriptStrategy({first + 2: 20_000})).run(churn(8))
        except EmulationFailure as exc:
            failures.append(str(exc))
    assert failures, "no single pause between find and set lost an update"
    assert "strategy=script:p" in failures[0]
    assert any(s in failures[0] for s in ("P1 uniqueness", "P4 no orphan", "mm_cid -1"))


# Runs the exploration sweep failed on before the model's own races were fixed:
# (variant, workload, CPUs, seed, strategy, the fix).  Each must now pass.
SWEEP_REGRESSIONS = [
    ("v6.4", "exit_while_threads_run", 4, 5, "random",
     "load balancing pulled a task still switching out: re-check under the source rq lock"),
    ("v6.13", "migrations_and_affinity", 8, 4, "random",
     "kernel preemption while spinning with interrupts off nested __schedule()"),
    ("v6.13", "migrations_and_affinity", 4, 1, "pct:depth=3,horizon=3000",
     "the stopper was published before it existed"),
    ("v6.14", "migrations_and_affinity", 8, 3, "random",
     "ttwu_runnable() looked at on_rq before taking the rq lock: a lost wake-up"),
    ("seed-001", "processes_fork_exec_exit", 4, 4, "random",
     "the wake-list IPI ran in another CPU's context: a lost reschedule"),
    ("v6.3", "synthetic_churn", 8, 5, "random",
     "two wakers of one task without p->pi_lock: a task run twice"),
    ("v6.3", "synthetic_churn", 8, 4, "random",
     "P1 counted a task in do_exit() that had just given its cid back"),
]


@pytest.mark.parametrize("variant, workload, nr_cpus, seed, strategy, fix", SWEEP_REGRESSIONS,
                         ids=[f"{v}-{w}-{n}cpu-seed{s}" for v, w, n, s, _, _ in SWEEP_REGRESSIONS])
def test_explored_runs_that_found_model_races_now_pass(variant, workload, nr_cpus, seed, strategy, fix):
    """Each run exploration once failed on passes since the model's race was fixed."""
    import sys, os
    sys.path.insert(0, os.path.dirname(__file__))
    from test_conformance import WORKLOADS
    make, _ = WORKLOADS[workload]
    m = Machine(nr_cpus=nr_cpus, variants=[variant], seed=seed,
                strategy=strategy and strategy_from_spec(strategy))
    assert m.run(make(nr_cpus)) == 0, fix


def test_the_preempt_strategy_pauses_only_where_a_path_is_preemptible():
    """No spinlock, interrupts and preemption on: a real path may be stopped
    there for milliseconds; everywhere else the strategy goes on."""
    from emulator.explore import PreemptStrategy
    seen = []

    class Watching(PreemptStrategy):
        def pause_ns(self, kind, preemptible=False):
            ns = super().pause_ns(kind, preemptible)
            if ns is not None:
                k = self.kernel
                seen.append((bool(k.cur.held_locks), k.rqs[k.cpu].irqs_disabled))
            return ns
    s = Watching(p=0.5, max_ns=50_000)
    m = Machine(nr_cpus=4, seed=3, strategy=s)
    s.kernel = m.kernel
    m.run(churn(4))
    assert s.pauses > 0 and s.preemptible_points < s.points
    assert set(seen) == {(False, 0)}        # no spinlock held, interrupts on


def test_a_script_names_preemptible_points_with_q():
    s = strategy_from_spec("script:q3=400000,p9=1")
    assert (s.script, s.preempts) == ({9: 1}, {3: 400_000})
    assert s.spec() == "script:p9=1,q3=400000"
    m = Machine(nr_cpus=4, seed=3, strategy=s)
    m.run(churn(4))
    assert m.strategy.pauses == 2


def test_turning_interrupts_back_on_is_a_preemptible_point():
    """rq_unlock_irqrestore() and its kind end in local_irq_restore(), where
    a pending interrupt is taken: a strategy is asked there."""
    kinds = []

    class Listening(ScriptStrategy):
        def pause_ns(self, kind, preemptible=False):
            kinds.append((kind, preemptible))
            return super().pause_ns(kind, preemptible)
    Machine(nr_cpus=4, seed=3, strategy=Listening()).run(churn(4))
    assert ("irq_enable", True) in kinds


def test_on_a_preempt_kernel_the_queued_tasks_run_first_at_a_preemptible_point():
    """rN: at the N-th preemptible point the path goes behind the tasks queued
    on its CPU: the next switch on that CPU is its own, preempted (R+)."""
    events = []

    class Marking(ScriptStrategy):
        def pause_ns(self, kind, preemptible=False):
            ns = super().pause_ns(kind, preemptible)
            if ns is not None:
                events.append(("point", self.kernel.cur.pid, self.resched))
            return ns
    class Counting(ScriptStrategy):
        queued_at = None

        def pause_ns(self, kind, preemptible=False):
            ns = super().pause_ns(kind, preemptible)
            if preemptible and self.queued_at is None and self.kernel.rqs[0].nr_running > 1:
                self.queued_at = self.preemptible_points
            return ns
    first = Counting()
    m = Machine(nr_cpus=1, seed=3, strategy=first)
    first.kernel = m.kernel
    m.run(churn(1))
    n = first.queued_at             # the first preemptible point with a task queued behind
    s = Marking(**{f"r{n}": 400_000})
    assert s.spec() == f"script:r{n}=400000"
    m = Machine(nr_cpus=1, seed=3, strategy=s)
    s.kernel = m.kernel
    m.kernel.tp.subscribe("sched_switch", lambda r: events.append(("switch", str(r))))
    m.run(churn(1))
    at = events.index(next(e for e in events if e[0] == "point"))
    _, pid, resched = events[at]
    assert resched and s.pauses == 1
    assert f"prev_pid={pid} " in events[at + 1][1] and "prev_state=R+" in events[at + 1][1]


def test_the_scheduler_and_preempt_disable_sections_are_not_preemptible():
    """preempt_count is held by preempt_disable() and from __schedule() to the
    end of the switch (the points of finish_task_switch() included): no point
    there is offered as preemptible, so a PREEMPT kernel never preempts there."""
    from emulator.kernel.locking import preempt_disable, preempt_enable
    offered = []

    class Listening(ScriptStrategy):
        def pause_ns(self, kind, preemptible=False):
            k = self.kernel
            offered.append((kind, preemptible, k.cur.preempt_count))
            return super().pause_ns(kind, preemptible)

    def body(k):
        preempt_disable()
        READ_ONCE(k, "cpu")
        preempt_enable()
        READ_ONCE(k, "cpu")
    s = Listening()
    m = Machine(nr_cpus=2, seed=3, strategy=s)
    s.kernel = m.kernel
    m.run_kernel(body)
    reads = [(preemptible, count) for kind, preemptible, count in offered if kind == "READ_ONCE"]
    assert reads == [(False, 1), (True, 0)]
    assert not any(preemptible for kind, preemptible, count in offered if count)
    assert all(rq.idle.preempt_count == 0 for rq in m.kernel.rqs)


def test_preempt_enable_takes_the_preemption_it_held_off():
    """A reschedule asked for inside preempt_disable() waits for
    preempt_enable(), and happens there, before the path goes on."""
    from emulator.kernel.locking import preempt_disable, preempt_enable
    from emulator.kernel.workqueue import work_struct
    seen = []

    def body(k):
        preempt_disable()
        k.queue_work_on(0, k.system_wq, work_struct(lambda w: seen.append("work")))
        k.cur.need_resched = True
        READ_ONCE(k, "cpu")
        seen.append("disabled")
        preempt_enable()
        seen.append("enabled")
    Machine(nr_cpus=1, seed=1).run_kernel(body)
    assert seen == ["disabled", "work", "enabled"]
