"""System calls: the kernel's side of every uapi function that enters the kernel.

Each returns what the kernel returns: a value, or -errno.  They run on the
calling task's kernel stack and may sleep.
"""

from .fork import CLONE_PTHREAD, CLONE_VFORK, CLONE_VM, SIGCHLD

EINVAL = 22
ESRCH = 3
EPERM = 1


class Sys:
    """Mixin."""

    def find_task_by_vpid(self, pid):
        if pid == 0:
            return self.cur
        t = self.tasks.get(pid)
        if t is None or t.exit_state or t.flags & 0x00200000:   # PF_KTHREAD: not ours
            return None
        return t

    def sys_exit(self, code):
        self.do_exit((code & 0xff) << 8)

    def sys_exit_group(self, code):
        self.do_group_exit((code & 0xff) << 8)

    def sys_nanosleep(self, ns):
        return self.hrtimer_nanosleep(ns)

    def sys_clock_nanosleep(self, expires):
        """clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &expires, NULL)."""
        return self.hrtimer_nanosleep_until(expires)

    def sys_sched_yield(self):
        return self.do_sched_yield()

    def sys_sched_setaffinity(self, pid, mask):
        p = self.find_task_by_vpid(pid)
        if p is None:
            return -ESRCH
        # __sched_setaffinity(): new_mask &= cpuset_cpus_allowed(), every
        # possible CPU for the top cpuset.
        return self.set_cpus_allowed_ptr(p, mask & self.possible_mask)

    def sys_sched_setscheduler(self, pid, policy, priority):
        p = self.find_task_by_vpid(pid)
        if p is None:
            return -ESRCH
        return self.sched_setscheduler(p, policy, priority)

    def sys_clone_thread(self, user):
        return self.kernel_clone(CLONE_PTHREAD, None, user)

    def sys_fork(self, user):
        return self.kernel_clone(SIGCHLD, None, user)

    def sys_vfork(self, user):
        return self.kernel_clone(CLONE_VFORK | CLONE_VM | SIGCHLD, None, user)

    def sys_execve(self, image, comm):
        return self.do_execve(image, comm)

    def sys_wait4(self, pid):
        return self.kernel_wait4(pid)

    def sys_futex_wait(self, key, still_blocked):
        return self.futex_wait(key, still_blocked)

    def sys_futex_wake(self, key, nr):
        return self.futex_wake(key, nr)

    def sys_rseq_call(self, rseq, rseq_len, flags, sig):
        return self.sys_rseq(rseq, rseq_len, flags, sig)

    # sys_mmap(), sys_munmap() and the page faults of a user write
    # (sys_touch()) are in mmap.py.
