"""fs/pipe.c: pipes, as hackbench's pipe mode uses them.

A pipe is a byte count in a ring of PIPE_DEF_BUFFERS pages: pipe_write()
sleeps on ``wr_wait`` while the ring has no room for a write of at most
PIPE_BUF bytes (written whole), pipe_read() on ``rd_wait`` while it is empty;
each wakes the other side's sleepers when it changes the count
(wake_up_interruptible_sync_poll()).  ``pipe->mutex`` is not modelled: the
model's kernel paths do not interleave between the check and the update.
Where the kernel takes it (__pipe_lock(): on entry, and again after a sleep)
the reader or writer spends the kernel time it owes (its system call's
entry, its switch-in: ``kdebt``, emulator/kernel/costs.py) before it looks
at or changes the pipe, as the kernel's does.  Spent later, as other system
calls' is (when the task blocks or computes next), it would let a write wake
its reader an entry cost early and leave the reader that entry cost between
its prepare_to_wait() and __schedule()'s dequeue: two pipe ping-pong tasks
on two CPUs then each wake the other inside that window, where a wake-up
only sets TASK_RUNNING again (ttwu_runnable()), and neither CPU switches any
more (the model's stall under DEBUG_VM_SHOOT_LAZIES's IPIs, which had
shifted the pairs' phases; tests/test_sched.py).

Departures: no data (a count of bytes), no file descriptors (a program names
the pipe object itself), no close and so no EOF or EPIPE; a write larger than
the ring is refused with EINVAL rather than split.
"""

from .wait import wait_queue_head_t
from .task import TASK_INTERRUPTIBLE

PAGE_SIZE = 4096
PIPE_DEF_BUFFERS = 16
PIPE_BUF = PAGE_SIZE
EINVAL = 22
EINTR = 4


class pipe_inode_info:
    __slots__ = ("name", "bytes", "size", "rd_wait", "wr_wait", "read_bytes", "reads", "writes")

    def __init__(self, name="pipe"):
        self.name = name
        self.bytes = 0                          # in the ring now
        self.size = PIPE_DEF_BUFFERS * PAGE_SIZE
        self.rd_wait = wait_queue_head_t(f"{name}.rd_wait")
        self.wr_wait = wait_queue_head_t(f"{name}.wr_wait")
        self.read_bytes = 0                     # counted for reports, not kernel state
        self.reads = 0
        self.writes = 0

    def __repr__(self):
        return self.name


class Pipe:
    """Mixin: pipe_read() and pipe_write()."""

    def create_pipe(self, name="pipe"):
        """The pipe_inode_info of a new pipe (do_pipe2() without the files)."""
        return pipe_inode_info(name)

    def sys_read(self, pipe, count):
        """read(fd, buf, count) on a pipe: the bytes read, or -errno."""
        return self.pipe_read(pipe, count)

    def sys_write(self, pipe, count):
        return self.pipe_write(pipe, count)

    def _pipe_lock(self, pipe):
        """__pipe_lock(pipe): mutex_lock(&pipe->mutex), not modelled (see the
        module's docstring); the kernel time the task owes is spent here,
        before it looks at *pipe*."""
        if self.cur.kdebt:
            self.cpu_run(0, False)

    def pipe_read(self, pipe, count):
        if count <= 0:
            return 0
        self._pipe_lock(pipe)
        while pipe.bytes == 0:
            ret = self.wait_event(pipe.rd_wait, lambda: pipe.bytes > 0, TASK_INTERRUPTIBLE)
            if ret:
                return ret
            self._pipe_lock(pipe)               # again after the sleep: look again
        was_full = pipe.size - pipe.bytes < PIPE_BUF
        n = min(count, pipe.bytes)
        pipe.bytes -= n
        pipe.read_bytes += n
        pipe.reads += 1
        if was_full:
            self.wake_up(pipe.wr_wait)          # wake_up_interruptible_sync_poll(&pipe->wr_wait)
        return n

    def pipe_write(self, pipe, count):
        if count <= 0:
            return 0
        if count > pipe.size:
            return -EINVAL
        self._pipe_lock(pipe)
        while pipe.size - pipe.bytes < count:
            ret = self.wait_event(pipe.wr_wait, lambda: pipe.size - pipe.bytes >= count,
                                  TASK_INTERRUPTIBLE)
            if ret:
                return ret
            self._pipe_lock(pipe)
        was_empty = pipe.bytes == 0
        pipe.bytes += count
        pipe.writes += 1
        if was_empty:
            self.wake_up(pipe.rd_wait)          # wake_up_interruptible_sync_poll(&pipe->rd_wait)
        return count
