"""Synthetic programs: phases run through the same kernel paths as Python bodies."""

import pytest

from emulator import Machine, UsageError
from emulator.workload import (
    SCHED_FIFO, Program, exec_, exit_, fork, repeat, run, setaffinity, sleep, thread, yield_,
)


def test_program_exit_status():
    """exit_(n) ends the process with status n."""
    assert Machine(nr_cpus=2).run(Program(run(1000), exit_(3))) == 3


def test_run_consumes_cpu_time_and_sleep_waits():
    """run() keeps the CPU busy, sleep() lets virtual time pass off CPU."""
    m = Machine(nr_cpus=1, costs={"timer_slack_ns": 0})
    m.run(Program(run(2_000_000), sleep(3_000_000)))
    assert m.now >= 5_000_000
    main = [t for t in m.kernel.tasks.values() if t.comm == "synthetic"]
    assert not main   # reaped


def test_threads_and_processes_are_created_and_reaped():
    """thread() and fork() create tasks that end, and the machine stops when all have."""
    child = Program(repeat(3, run(10_000), sleep(10_000)))
    m = Machine(nr_cpus=4)
    assert m.run(Program(thread(child), thread(child), fork(child), sleep(1_000_000))) == 0
    assert m.kernel.nr_user_tasks == 0
    assert m.kernel.mms_allocated == 2    # the first exec of main, the fork child


def test_exec_replaces_the_program():
    """exec_() runs the new program with a new mm."""
    m = Machine(nr_cpus=2, trace=True)
    assert m.run(Program(run(1000), exec_(Program(exit_(7), comm="newimage")))) == 7
    assert "sched_process_exec: filename=newimage" in m.trace_text()


def test_yield_lets_the_other_task_run():
    """Two tasks pinned to one CPU alternate when they yield."""
    spinner = Program(setaffinity({0}), repeat(5, run(10_000), yield_()))
    m = Machine(nr_cpus=2, trace=True)
    m.run(Program(thread(spinner), thread(spinner), sleep(5_000_000)))
    switches = [l for l in m.trace_text().splitlines() if "[000]" in l and "sched_switch" in l]
    assert len(switches) >= 10


def test_rt_program_runs_with_its_policy():
    """A SCHED_FIFO program gets an RT priority (prio 99 - priority)."""
    m = Machine(nr_cpus=2)
    prios = []
    m.kernel.tp.subscribe("sched_switch", lambda r: prios.append(r[5].fields["next_prio"]))
    m.run(Program(run(10_000), sleep(1000), policy=SCHED_FIFO, priority=10))
    assert 89 in prios


@pytest.mark.parametrize("phase", [("run", -1), ("sleep", "1ms"), ("dance",), "run"])
def test_bad_phase_is_a_usage_error(phase):
    """A malformed phase is refused when the program is built."""
    with pytest.raises(UsageError):
        Program(phase)
