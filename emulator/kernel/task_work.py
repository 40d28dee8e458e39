"""kernel/task_work.c: callbacks run by a task on its way back to user space."""

TWA_NONE = 0
TWA_RESUME = 1

ESRCH = 3


class callback_head:
    __slots__ = ("func", "next")

    def __init__(self, func=None):
        self.func = func
        self.next = None


class TaskWork:
    """Mixin."""

    def task_work_add(self, task, work, notify=TWA_RESUME):
        """Queue *work* (a callback_head) on *task*; -ESRCH once the task has
        passed exit_task_work()."""
        if task.task_works_exited:
            return -ESRCH
        work.next = None                  # linked: no longer points to itself
        task.task_works.append(work)
        if notify == TWA_RESUME:
            self.set_notify_resume(task)
        return 0

    def set_notify_resume(self, task):
        """include/linux/resume_user_mode.h: flag TIF_NOTIFY_RESUME; a task
        running in user mode on another CPU is kicked into the kernel."""
        if not task.notify_resume:
            task.notify_resume = True
            self.kick_process(task)

    def task_work_pending(self, task):
        return bool(task.task_works)

    def task_work_run(self):
        t = self.cur
        while t.task_works:
            works, t.task_works = t.task_works, []
            for work in works:
                work.func(work)

    def exit_task_work(self, task):
        self.task_work_run()
        task.task_works_exited = True
