"""hackbench[:G[,fds=20][,mode=process|thread][,loops=L]]: ``hackbench -g G
-f 20 --pipe [--process | --threads] [-l L]`` (rt-tests' hackbench.c; kernel
test robot runs both its hackbench-pipe-process and -threads modes).

G groups, each of ``fds`` receivers and ``fds`` senders, one pipe per
receiver: every sender writes a 100-byte message to each receiver's pipe in
turn, every receiver reads 100 bytes at a time from its pipe.  In process
mode (``--process``, the default) each sender and receiver is a process the
main process forks, and main reaps them with wait(); in thread mode
(``--threads``) each is a thread of the main process, which joins them, so
one mm holds ``2 * G * fds + 1`` threads.  As hackbench's ``ready()``, each
worker first writes a byte to the ready pipe and waits for the go; main
reads one byte per worker, then gives the go to all at once.

With ``loops=L`` each sender passes L messages to each receiver and each
receiver reads ``fds * L`` (hackbench's ``-l``, ``num_packets = num_fds *
loops``), then they exit; once main has reaped or joined every one it
starts the next round, as a harness runs hackbench back to back, so the
task or thread count goes up to ``2 * G * fds`` and back down to none every
round.  Without ``loops`` the groups run for the whole duration (a loop
count no run reaches).  The figure is the throughput, ``hackbench
messages/s`` (reads of a message per virtual second).

Departures: the go is a condition broadcast (a futex wake of every waiter)
where hackbench writes a byte to a pipe every worker poll()s (a wake-up of
every waiter on the pipe's queue: the same wake-all); no socketpair mode; a
message moves a byte count, not data (emulator/kernel/pipe.py).  The pipes
are made once, not every round: a round leaves each one empty, as a new
pipe would be.
"""

from ..errors import UsageError
from ..workload import (
    Program, fork, pipe, pthread_cond_broadcast, pthread_cond_t, pthread_cond_wait, pthread_join,
    read, repeat, sleep, thread, wait, write,
)
from . import FOREVER, NS_PER_S, Workload

DATASIZE = 100


class Hackbench(Workload):
    name = "hackbench"
    usage = ("hackbench[:G[,fds=20][,mode=process|thread][,loops=L]] (G: groups, default 1; "
             "fds: senders and receivers per group; loops: messages per sender and receiver, "
             "a round at a time, default endless)")

    def __init__(self, arg=None):
        opts = self.options(arg, positional=("groups",), known=("fds", "mode", "loops"))
        self.groups = self.int_arg(opts.get("groups"), 1, least=1, key="groups")
        self.fds = self.int_arg(opts.get("fds"), 20, least=1, most=1000, key="fds")
        self.loops = self.int_arg(opts.get("loops"), None, least=1, key="loops")
        self.mode = opts.get("mode", "process")
        if self.mode not in ("process", "thread"):
            raise UsageError(f"workload hackbench:{arg}: mode is process or thread ({self.usage})")
        self.pipes = []

    def programs(self, ctx):
        create = thread if self.mode == "thread" else fork
        loops = self.loops or FOREVER
        ready_pipe, go = pipe("hackbench.ready"), pthread_cond_t("hackbench.go")
        ready = (write(ready_pipe, 1), pthread_cond_wait(go))
        workers = []
        for g in range(self.groups):
            pipes = [pipe(f"hackbench.{g}.{r}") for r in range(self.fds)]
            self.pipes += pipes
            receiver = [Program(*ready, repeat(self.fds * loops, read(p, DATASIZE)),
                                comm="hackbench") for p in pipes]
            sender = Program(*ready, repeat(loops, *[write(p, DATASIZE) for p in pipes]),
                             comm="hackbench")
            workers += [create(r) for r in receiver] + [create(sender)] * self.fds
        start = (*workers, repeat(len(workers), read(ready_pipe, 1)), pthread_cond_broadcast(go))
        if self.loops is None:
            return [Program(*start, sleep(FOREVER), comm="hackbench")]
        reap = [pthread_join()] if self.mode == "thread" else [wait()] * len(workers)
        return [Program(repeat(FOREVER, *start, *reap), comm="hackbench")]

    def results(self, ctx):
        messages = sum(p.inode.reads for p in self.pipes if p.inode is not None)
        return {"counters": {"hackbench messages/s": messages * NS_PER_S / ctx.duration_ns}}
