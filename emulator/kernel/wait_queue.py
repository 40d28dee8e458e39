"""include/linux/wait.h: struct wait_queue_head, the queue a task sleeps on.

A leaf (it imports nothing), so that what embeds a wait queue (signal_struct
in task.py, struct mutex in locking.py) needs no import of kernel/wait.py,
which imports them: sleeping and waking are kernel/wait.py's.
"""


class wait_queue_head_t:
    __slots__ = ("name", "waiters")

    def __init__(self, name="wq"):
        self.name = name
        self.waiters = []

    def __repr__(self):
        return self.name
