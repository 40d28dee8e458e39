"""cyclictest[:INTERVAL_US]: ``cyclictest -m -S -p 95 -i INTERVAL`` (rt-tests
v2.1), the wake-up latency of a real-time thread on every CPU, printed as
``rtla timerlat hist`` prints it (the predecessor series measured with
``rtla timerlat top -q -P f:95``).

One process with a SCHED_FIFO priority 95 thread pinned to each CPU (each
isolated CPU on a machine that has some, as rtla's ``-c`` named them),
looping ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next)``,
``next += interval`` (default 1000 us, cyclictest's), recording how late
it was: the ``Thr`` column is the time from the timer's expiry to the
thread's return to user space (cyclictest's ``now - next``), the ``IRQ``
column the time from the expiry to the timer's interrupt (timerlat's IRQ
latency: late only while the CPU had interrupts off).

Departures: cyclictest has no IRQ figure (timerlat's kernel side has;
cyclictest only the thread's); rtla timerlat's threads are kernel threads
woken from the timer's handler, cyclictest's (and these) user threads
returning from a system call; samples of a thread that returns while the
run is abandoned are not taken; no mlockall() (no page faults to avoid).
"""

from ..observe.histogram import Histogram
from ..workload import SCHED_FIFO, Program, clock_nanosleep, repeat, setaffinity, sleep, thread
from . import FOREVER, NS_PER_US, Workload


class Cyclictest(Workload):
    name = "cyclictest"
    usage = "cyclictest[:INTERVAL_US] (default 1000)"

    def __init__(self, arg=None):
        self.interval = self.int_arg(arg, 1000, least=1) * NS_PER_US
        self.hist = Histogram("timerlat")

    def probe(self, cpu, irq_ns, thread_ns):
        self.hist.add(cpu, "IRQ", irq_ns)
        self.hist.add(cpu, "Thr", thread_ns)

    def programs(self, ctx):
        threads = [thread(Program(setaffinity({cpu}),
                                  repeat(FOREVER, clock_nanosleep(self.interval, self.probe)),
                                  comm="cyclictest", policy=SCHED_FIFO, priority=95))
                   for cpu in ctx.cpus]
        return [Program(*threads, sleep(FOREVER), comm="cyclictest")]

    def results(self, ctx):
        return {"latency": self.hist}
