"""kernel/sched/wait.c, completion.c and kernel/futex/: sleeping and waking.

Only task context may sleep: sleeping in interrupt context or with a
spinlock held is reported as the kernel reports it ("BUG: sleeping function
called from invalid context").
"""

from .task import TASK_INTERRUPTIBLE, TASK_KILLABLE, TASK_NORMAL, TASK_RUNNING, TASK_UNINTERRUPTIBLE
from .wait_queue import wait_queue_head_t

EINTR = 4
EAGAIN = 11


class completion:
    __slots__ = ("done", "wait")

    def __init__(self, name="completion"):
        self.done = 0
        self.wait = wait_queue_head_t(name)


class Wait:
    """Mixin: wait queues, completions, futexes."""

    def prepare_to_wait(self, wq, state):
        t = self.cur
        if t not in wq.waiters:
            wq.waiters.append(t)
        t.state = state
        t.wait_reason = wq

    def finish_wait(self, wq):
        t = self.cur
        t.state = TASK_RUNNING
        t.wait_reason = None
        if t in wq.waiters:
            wq.waiters.remove(t)

    def wake_up(self, wq, nr=0):
        """Wake up to *nr* waiters (0: all)."""
        woken = 0
        for t in list(wq.waiters):
            if self.try_to_wake_up(t, TASK_NORMAL):
                woken += 1
                if nr and woken >= nr:
                    break
        return woken

    def wait_event(self, wq, condition, state=TASK_UNINTERRUPTIBLE):
        """Sleep on *wq* until ``condition()``; returns -EINTR if a fatal
        signal ends an interruptible or killable sleep."""
        t = self.cur
        while True:
            self.prepare_to_wait(wq, state)
            if condition():
                break
            if t.sigkill and state & (TASK_INTERRUPTIBLE | 0x100):
                self.finish_wait(wq)
                return -EINTR
            self.schedule()
        self.finish_wait(wq)
        return 0

    def init_completion(self, name="completion"):
        return completion(name)

    def complete(self, x):
        x.done += 1
        self.wake_up(x.wait, 1)

    def complete_all(self, x):
        x.done = 1 << 30
        self.wake_up(x.wait)

    def wait_for_completion(self, x, state=TASK_UNINTERRUPTIBLE):
        ret = self.wait_event(x.wait, lambda: x.done > 0, state)
        if ret == 0 and x.done < 1 << 30:
            x.done -= 1
        return ret

    def wait_for_completion_killable(self, x):
        return self.wait_for_completion(x, TASK_KILLABLE)

    # -- futex ------------------------------------------------------------------------------

    def futex_queue(self, key):
        wq = self.futexes.get(key)
        if wq is None:
            wq = self.futexes[key] = wait_queue_head_t(f"futex {key!r}")
        return wq

    def futex_wait(self, key, still_blocked):
        """FUTEX_WAIT: sleep while ``still_blocked()`` (the value check); -EAGAIN if
        it no longer holds, -EINTR on a fatal signal, 0 when woken."""
        if not still_blocked():
            return -EAGAIN
        t = self.cur
        wq = self.futex_queue(key)
        t.futex_woken = False
        while True:
            self.prepare_to_wait(wq, TASK_INTERRUPTIBLE)
            if t.futex_woken:
                break
            if t.sigkill:
                self.finish_wait(wq)
                return -EINTR
            self.schedule()
        self.finish_wait(wq)
        return 0

    def futex_wake(self, key, nr):
        wq = self.futexes.get(key)
        if wq is None:
            return 0
        woken = 0
        for t in list(wq.waiters):
            if nr and woken >= nr:
                break
            # The kernel walks the hash bucket under its lock, which a waiter
            # leaving (unqueue_me()) takes too; the model's wake-ups are
            # scheduling points, where a waiter killed meanwhile has left.
            try:
                wq.waiters.remove(t)
            except ValueError:
                continue
            t.futex_woken = True
            self.try_to_wake_up(t, TASK_NORMAL)
            woken += 1
            if self.ttwu_remote_ns and t.cpu != self.cpu and not self.in_irq:
                self.cpu_run(self.ttwu_remote_ns, False)
        if not wq.waiters and self.futexes.get(key) is wq:
            del self.futexes[key]
        return woken
