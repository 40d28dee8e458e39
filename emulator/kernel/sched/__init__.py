"""kernel/sched/: runqueues, scheduling classes and the core scheduler."""
