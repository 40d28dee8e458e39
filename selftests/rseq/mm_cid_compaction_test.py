"""Mirror of tools/testing/selftests/rseq/mm_cid_compaction_test.c.

The text is v5..v13 of Gabriele Monaco's series (mm_cid.md 1.2): one thread
per allowed CPU, the main thread counting as the first, each pinned to its
CPU; all run 5 short bursts of 0.5 s sleeps; the first thread that reads an
mm_cid >= num_cpus / 2 and wins the trylock becomes the leader, joins the
others, and polls its mm_cid every 0.5 s, up to 10 times, for 0.

Outcomes: the leader sees 0 (exit 0: pass); it never does (exit 1: fail);
nobody is elected and every thread exits (exit 0 in C, a vacuous pass:
reported as a skip, mm_cid.md 1.4); a single CPU (exit 0 in C: a skip).
"""

from emulator.selftest import Result
from emulator.uapi.libc import (
    CPU_SETSIZE, exit, pthread_barrier_t, pthread_create, pthread_equal, pthread_exit,
    pthread_join, pthread_mutex_t, pthread_self, pthread_setaffinity_np, sched_getaffinity,
    usleep,
)
from emulator.uapi.rseq import rseq_current_mm_cid, rseq_mm_cid_available

# What each era does with this test, and why (mm_cid.md 1.5): (outcome, reason,
# strict).  Strict where the era cannot pass; not strict where a pass needs luck.
EXPECTED = {
    "v6.3": ("pass", "a cid is held only while running: the lone leader gets the first zero "
                     "bit, 0, at its next schedule-in", False),
    "seed-001": ("fail", "per-CPU lazy cids persist and nothing reclaims them: the leader "
                         "keeps its CPU's high cid", True),
    "v6.4": ("fail", "per-CPU cids persist; task_mm_cid_work is queued only from a tick that "
                     "finds a thread of the mm current, which a thread sleeping 0.5 s at a time "
                     "almost never is", False),
    "v6.13": ("fail", "even when the scan clears the leader's cid, __mm_cid_try_get() first "
                      "retries the CPU's recent_cid, its old high cid", True),
    "v6.14": ("fail", "02d954c0fdf9 bounds recent_cid by max_nr_cid, but the scan still runs "
                      "only from a tick that finds a thread of the mm current", False),
    "seed-000": ("pass", "the scan is a per-mm delayed work every 100 ms, whether or not a "
                         "thread runs at a tick", False),
    "seed-003": ("pass", "users shrink as threads exit, max_cids follows, and the leader "
                         "converges to cid 0 at its next schedule-in", False),
    "v7.0": ("pass", "users shrink as threads exit, max_cids follows, and the leader "
                     "converges to cid 0 at its next schedule-in", False),
}

RUNNER_PERIOD = 500000          # us
THREAD_RUNS = 5
MM_CID_COMPACT_TIMEOUT = 10
VERBOSE = 0
EXIT_SUCCESS = 0
EXIT_FAILURE = 1


class thread_args:
    __slots__ = ("cpu", "num_cpus", "token", "barrier", "tinfo", "args_head")


class Log:
    """What the C program would print on stderr, and who was elected."""

    def __init__(self):
        self.lines = []
        self.leader = None          # (cpu, mm_cid) of the elected thread
        self.single_cpu = False

    def fprintf(self, text):
        self.lines.append(text.rstrip("\n"))


def printf_verbose(log, text):
    if VERBOSE:
        log.fprintf(text)


def make_main(log):
    def thread_runner(args):
        # Pin self.
        try:
            pthread_setaffinity_np(pthread_self(), {args.cpu})
        except OSError as e:
            log.fprintf(f"Error: failed to set affinity: {e.strerror}")
            exit(134)   # abort()
        args.barrier.wait()
        for _ in range(THREAD_RUNS):
            usleep(RUNNER_PERIOD)
        curr_mm_cid = rseq_current_mm_cid()
        printf_verbose(log, f"cpu{args.cpu} runs on mm_cid {curr_mm_cid}")
        # Try to be the last thread running.
        if curr_mm_cid >= args.num_cpus // 2 and not args.token.trylock():
            log.leader = (args.cpu, curr_mm_cid)
            printf_verbose(log, f"cpu{args.cpu} has mm_cid={curr_mm_cid} and will be the new leader.")
            for i in range(args.num_cpus):
                if pthread_equal(args.tinfo[i], pthread_self()):
                    continue
                try:
                    pthread_join(args.tinfo[i])
                except OSError as e:
                    log.fprintf(f"Error: failed to join thread {i}: {e.strerror}")
                    exit(134)   # abort()
            args.barrier.destroy()
            for i in range(MM_CID_COMPACT_TIMEOUT):
                curr_mm_cid = rseq_current_mm_cid()
                printf_verbose(log, f"cpu{args.cpu} has mm_cid={curr_mm_cid}")
                if curr_mm_cid == 0:
                    exit(EXIT_SUCCESS)
                usleep(RUNNER_PERIOD)
            exit(EXIT_FAILURE)
        printf_verbose(log, f"cpu{args.cpu} thread done.")
        pthread_exit(None)

    def test_mm_cid_compaction():
        affinity = sched_getaffinity(0)
        num_threads = len(affinity)
        tinfo = [None] * num_threads
        args = [thread_args() for _ in range(num_threads)]
        token = pthread_mutex_t()
        if num_threads == 1:
            log.single_cpu = True
            log.fprintf("Cannot test on a single cpu. Skipping mm_cid_compaction test.")
            # only skipping the test, this is not a failure
            return 0
        barrier = pthread_barrier_t(num_threads)
        j = 0
        for i in range(CPU_SETSIZE):
            if i not in affinity:
                continue
            a = args[j]
            a.num_cpus = num_threads
            a.token = token
            a.barrier = barrier
            a.tinfo = tinfo
            a.cpu = i
            a.args_head = args
            if j == 0:
                tinfo[0] = pthread_self()
            else:
                try:
                    tinfo[j] = pthread_create(thread_runner, a)
                except OSError:
                    exit(134)   # abort()
            j += 1
        # The main thread becomes the first thread.
        thread_runner(args[0])

    def mm_cid_compaction_test():
        if not rseq_mm_cid_available():
            log.fprintf("Error: rseq_mm_cid unavailable")
            return -1
        if test_mm_cid_compaction():
            return -1
        return 0

    return mm_cid_compaction_test


def run(machine):
    log = Log()
    status = machine.run(make_main(log))
    detail = "\n".join(log.lines)
    if status != 0:
        return Result("fail", status, detail or f"exit status {status}: the leader never saw mm_cid 0")
    if log.single_cpu:
        return Result("skip", status, "a single CPU: nothing to compact")
    if log.leader is None:
        return Result("skip", status, "no thread saw mm_cid >= num_cpus/2: a vacuous pass "
                                      "(mm_cid.md 1.4)")
    return Result("pass", status, f"leader on CPU {log.leader[0]} (mm_cid {log.leader[1]}) saw 0")


def test_mm_cid_compaction(selftest_machine):
    selftest_machine.check(run)
