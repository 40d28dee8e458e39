"""hackbench[:G[,fds=20]]: ``hackbench -g G -f 20 --pipe --process`` (rt-tests'
hackbench.c, the mode kernel test robot's hackbench-pipe-process runs).

G groups, each of ``fds`` receivers and ``fds`` senders (each a process),
one pipe per receiver: every sender writes a 100-byte message to each
receiver's pipe in turn, every receiver reads 100 bytes at a time from its
pipe.  hackbench times a fixed number of loops; here the groups run for the
duration and the figure is the throughput, ``hackbench messages/s`` (reads
of a message per virtual second).

Departures: no start barrier (hackbench's ready/wakeup pipes, so every
sender starts when it first runs), no socketpair mode, no thread mode;
a message moves a byte count, not data (emulator/kernel/pipe.py).
"""

from ..workload import Program, fork, pipe, read, repeat, sleep, write
from . import FOREVER, NS_PER_S, Workload

DATASIZE = 100


class Hackbench(Workload):
    name = "hackbench"
    usage = "hackbench[:G[,fds=20]] (G: groups, default 1; fds: senders and receivers per group)"

    def __init__(self, arg=None):
        opts = self.options(arg, positional=("groups",), known=("fds",))
        self.groups = self.int_arg(opts.get("groups"), 1, least=1)
        self.fds = self.int_arg(opts.get("fds"), 20, least=1, most=1000)
        self.pipes = []

    def programs(self, ctx):
        forks = []
        for g in range(self.groups):
            pipes = [pipe(f"hackbench.{g}.{r}") for r in range(self.fds)]
            self.pipes += pipes
            receivers = [Program(repeat(FOREVER, read(p, DATASIZE)), comm="hackbench")
                         for p in pipes]
            sender = Program(repeat(FOREVER, *[write(p, DATASIZE) for p in pipes]),
                             comm="hackbench")
            forks += [fork(r) for r in receivers] + [fork(sender) for _ in range(self.fds)]
        return [Program(*forks, sleep(FOREVER), comm="hackbench")]

    def results(self, ctx):
        messages = sum(p.inode.reads for p in self.pipes if p.inode is not None)
        return {"counters": {"hackbench messages/s": messages * NS_PER_S / ctx.duration_ns}}
