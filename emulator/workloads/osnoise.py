"""osnoise: ``rtla osnoise hist`` (kernel/trace/trace_osnoise.c): a busy
thread on every CPU (every isolated CPU on a machine that has some) and
every interruption of it, its cause and its length, as seed 002's claim
(isolated CPUs left alone) is measured.

The interruptions are emulator/observe/osnoise.py's: interrupts handled
while the thread runs (the tick, IPIs, timers, irq_work) and other threads
run while it was preempted (kworkers, the migration thread).  Figures:
``osnoise interruptions``, ``osnoise noise us`` (their total) and
``osnoise max single us``, and a histogram of their lengths printed as
``rtla osnoise hist`` prints it.

Departures: rtla's osnoise threads are kernel threads that sample in
windows (``-p``/``-r``, default 1 s runtime per 1 s period); these are user
threads computing for the whole run, measured continuously.  No NMI or
softirq noise exists in the model; the duration of an interrupt is its
handler's virtual time.
"""

from ..observe.histogram import Histogram
from ..observe.osnoise import Osnoise
from ..workload import Program, repeat, run, setaffinity, sleep, thread
from . import FOREVER, NS_PER_S, Workload


class OsnoiseWorkload(Workload):
    name = "osnoise"
    usage = "osnoise"

    def attach(self, ctx):
        self.cpus = ctx.cpus
        mask = sum(1 << cpu for cpu in ctx.cpus)
        machine = ctx.machine
        if machine.osnoise is not None and machine.osnoise.cpus == mask:
            self.tracer = machine.osnoise
        else:
            self.tracer = Osnoise(ctx.kernel, mask)
        self.since = len(self.tracer.noise)

    def programs(self, ctx):
        threads = [thread(Program(setaffinity({cpu}), repeat(FOREVER, run(NS_PER_S)),
                                  comm="osnoise"))
                   for cpu in ctx.cpus]
        return [Program(*threads, sleep(FOREVER), comm="osnoise")]

    def results(self, ctx):
        hist = Histogram("osnoise")
        total = longest = count = 0
        for cpu, _kind, _cause, _start, ns in self.tracer.noise[self.since:]:
            hist.add(cpu, "CPU", ns)
            count += 1
            total += ns
            longest = max(longest, ns)
        for cpu in self.cpus:                     # a CPU without noise still has its column
            hist.columns.setdefault((cpu, "CPU"), [[0] * hist.entries, 0, 0, 0, 0, 0])
        return {"noise": hist,
                "counters": {"osnoise interruptions": count, "osnoise noise us": total / 1000,
                             "osnoise max single us": longest / 1000}}
