"""pthread-max:M[,N]: ``stress-ng --pthread N --pthread-max M``
(stress-pthread.c), seed 000's "stress-ng --pthread-max 4" row.

N worker processes (default one per CPU, as the script's ``$(nproc)``),
forked from a stress-ng parent, each looping: create M threads, spin
(sched_yield()) until all have started, broadcast the condition they wait
on (clearing ``keep_thread_running_flag``), join them.  Each thread waits
on the condition (FUTEX_WAIT) and exits.  So each worker is one mm whose
threads come and go M at a time, with new thread ids every iteration.

Departures: stress-ng's threads first call get/set_robust_list and
tgkill/tkill with bad arguments, increment ``pthread_count`` under a
spinlock and wait with ``pthread_cond_timedwait(10 ms)`` and sched_yield()
in a loop; here a thread waits once, untimed (the broadcast comes once all
have started, so a 10 ms timeout would rarely expire); the parent sends no
SIGUSR1 (``pthread_sigqueue``); the thread exit skips setns() and
sigwaitinfo().  stress-ng lowers M when M * N exceeds the thread limit;
the model does not.
"""

from ..workload import (
    Program, fork, pthread_cond_broadcast, pthread_cond_t, pthread_cond_wait, pthread_join,
    repeat, sleep, spin_until_started, thread,
)
from . import FOREVER, Workload


class PthreadMax(Workload):
    name = "pthread-max"
    usage = "pthread-max:M[,N] (M: threads per worker, 1..30000; N: workers, default one per CPU)"

    def __init__(self, arg=None):
        opts = self.options(arg, positional=("max", "workers"))
        self.max = self.int_arg(opts.get("max"), 1024, least=1, most=30000, key="max")
        self.n = self.int_arg(opts.get("workers"), None, least=1, key="workers")

    def worker(self):
        cond = pthread_cond_t("keep_thread_running")
        child = Program(pthread_cond_wait(cond), comm="stress-ng-pthre")
        return Program(repeat(FOREVER, *[thread(child) for _ in range(self.max)],
                              spin_until_started(), pthread_cond_broadcast(cond),
                              pthread_join()),
                       comm="stress-ng-pthre")

    def programs(self, ctx):
        n = self.n or ctx.nr_cpus
        return [Program(*[fork(self.worker()) for _ in range(n)], sleep(FOREVER),
                        comm="stress-ng")]
