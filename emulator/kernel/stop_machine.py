"""kernel/stop_machine.c: the per-CPU stopper ("migration/N").

The stopper is a kernel thread of the stop class: waking it preempts whatever
runs on its CPU.  It is created on first use.
"""

from .task import PF_NO_SETAFFINITY, TASK_INTERRUPTIBLE
from .wait import completion


class cpu_stopper:
    __slots__ = ("thread", "works")

    def __init__(self):
        self.thread = None
        self.works = []


class StopMachine:
    """Mixin."""

    def cpu_stopper_thread(self, cpu):
        from .sched.core import StopSchedClass
        stopper = self.stoppers.get(cpu)
        if stopper is None:
            # Created, given its class and published before it is woken: a
            # path that comes here while the wake-up runs finds it whole.
            stopper = cpu_stopper()
            t = self.kthread_create_on_cpu(self._stopper_fn, stopper, cpu, f"migration/{cpu}",
                                           wake=False)
            t.flags |= PF_NO_SETAFFINITY
            t.sched_class = StopSchedClass
            t.prio = -1
            stopper.thread = t
            self.rqs[cpu].stop = t
            self.stoppers[cpu] = stopper
            self.wake_up_new_task(t)
        return stopper

    def _stopper_fn(self, stopper):
        while True:
            while stopper.works:
                fn, arg, done = stopper.works.pop(0)
                fn(arg)
                if done is not None:
                    self.complete_all(done)
            self.cur.state = TASK_INTERRUPTIBLE
            if stopper.works:
                self.cur.state = 0
                continue
            self.cur.wait_reason = "cpu_stop_work"
            self.schedule()

    def stop_one_cpu_nowait(self, cpu, fn, arg, done=None):
        stopper = self.cpu_stopper_thread(cpu)
        stopper.works.append((fn, arg, done))
        self.wake_up_process(stopper.thread)

    def stop_one_cpu(self, cpu, fn, arg):
        """Run ``fn(arg)`` on *cpu*'s stopper and wait for it."""
        done = completion("stop_one_cpu")
        self.stop_one_cpu_nowait(cpu, fn, arg, done)
        self.wait_for_completion(done)
        return 0
