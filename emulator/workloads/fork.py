"""fork[:N]: ``stress-ng --fork N`` (stress-fork.c, default ``--fork-max 1``),
seed 000's "stress-ng --fork" row.

N worker processes (default one per CPU, as the script's ``$(nproc)``),
forked from a stress-ng parent, each looping: fork() a child, waitpid() it.
Every other child exits at once (``if (n & 1) _exit``: "50% of forks are
very short lived"); the others make a few system calls first (setpgid() and
getpgid(), 2 us of computation here) and call exit.  Each worker is a
process of its own, so every child copies and drops an mm.

Departures: the children's system calls are a computation of the same
length; no --fork-vm madvise(); the exit of a child is ``_exit()`` where
stress-ng's shim calls the raw ``__NR_exit`` (one thread: the same).
"""

from ..workload import Program, exit_, fork, repeat, run, sleep, wait
from . import FOREVER, NS_PER_US, Workload


class Fork(Workload):
    name = "fork"
    usage = "fork[:N] (N: workers, default one per CPU)"

    def __init__(self, arg=None):
        self.n = self.int_arg(arg, None, least=1)

    def programs(self, ctx):
        short = Program(exit_(0), comm="stress-ng-fork")
        longer = Program(run(2 * NS_PER_US), exit_(0), comm="stress-ng-fork")
        worker = Program(repeat(FOREVER, fork(short), wait(), fork(longer), wait()),
                         comm="stress-ng-fork")
        n = self.n or ctx.nr_cpus
        return [Program(*[fork(worker) for _ in range(n)], sleep(FOREVER), comm="stress-ng")]
