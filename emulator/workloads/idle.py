"""idle: no load, seed 000's "No load" row (its script ran bpftrace on a
system left to itself).

The machine runs only its own kernel threads (ticks, kworkers, the delayed
works variants queue) and one sleeping process, the run's main, which keeps
the run alive for its duration.

Departure: the real row counts the system's daemons (12 processes woken in
seed 000's 30 s); the model has no daemons, so only the kernel's own work
and that one process's mm are seen.
"""

from . import Workload


class Idle(Workload):
    name = "idle"
    usage = "idle"
