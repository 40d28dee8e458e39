"""lazy-tlb[:P[,C]]: what the lazy-TLB schemes of seed 004 were measured
with, in one run: will-it-scale's ``context_switch1_threads`` for the cost of
a lazy switch, and processes dying on several CPUs for the cost of teardown.

- P pairs of threads (default one pair per two CPUs), all threads of one
  process, as context_switch1 in threads mode, each thread pinned to its
  CPU, computing 20 us and sleeping 30 us in turn, so each CPU alternates
  between a thread of the shared mm and idle (a lazy switch each way: the
  round trip whose mm_count atomics the shootdown series removed: POWER8,
  192 cores, about 1 M context switches/s refcounted vs 118 M with
  shootdown);
- C churn workers (default one per eight CPUs, at least one), each forking
  a process whose second thread runs 50 us and exits on whichever CPU the
  scheduler gives it, then exits itself after 100 us: every process dies
  with its mm used on two CPUs (an IPI at teardown under shootdown, an mm
  pinned by an idle CPU under refcount, a deferred free under the
  generation scheme).

Departures: context_switch1 passes a token through two pipes between the
two threads of a pair; here each thread wakes from a timer instead (written
when pipes of synthetic programs stalled under the DEBUG_VM_SHOOT_LAZIES
IPIs, a model bug since fixed: emulator/kernel/pipe.py, tests/test_sched.py;
kept so that its figures stay comparable), so the pair's threads do not
wake each other; both are pinned, to two CPUs, so that every switch is a lazy one;
no kernel thread adopts an mm here (kthread_use_mm() is in the tests and
the stateful search).
"""

from ..errors import UsageError
from ..workload import Program, fork, pthread_join, repeat, run, setaffinity, sleep, thread, wait
from . import FOREVER, NS_PER_US, Workload


class LazyTlb(Workload):
    name = "lazy-tlb"
    usage = "lazy-tlb[:P[,C]] (P: pairs of threads, default CPUs/2; C: churn workers, CPUs/8)"

    def __init__(self, arg=None):
        opts = self.options(arg, positional=("pairs", "churn"), known=())
        self.pairs = self.int_arg(opts.get("pairs"), None, least=0, key="pairs")
        self.churn = self.int_arg(opts.get("churn"), None, least=0, key="churn")
        if self.pairs == 0 and self.churn == 0:
            raise UsageError(f"workload lazy-tlb:{arg}: no pairs and no churn workers: nothing "
                             f"to run ({self.usage})")

    def programs(self, ctx):
        n = ctx.nr_cpus
        pairs = n // 2 if self.pairs is None else self.pairs
        churn = max(1, n // 8) if self.churn is None else self.churn
        threads = []
        for i in range(2 * pairs):
            threads.append(thread(Program(setaffinity({i % n}),
                                          repeat(FOREVER, run(20 * NS_PER_US),
                                                 sleep(30 * NS_PER_US)),
                                          comm="context_switch1")))
        programs = []
        if threads:
            programs.append(Program(*threads, sleep(FOREVER), comm="context_switch1"))
        victim = Program(thread(Program(run(50 * NS_PER_US), comm="lazy-churn")),
                         run(100 * NS_PER_US), pthread_join(), comm="lazy-churn")
        worker = Program(repeat(FOREVER, fork(victim), wait(), sleep(200 * NS_PER_US)),
                         comm="lazy-churn")
        programs += [worker] * churn
        return programs
