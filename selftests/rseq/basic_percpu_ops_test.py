"""Mirror of tools/testing/selftests/rseq/basic_percpu_ops_test.c.

A sharded counter under a per-CPU spinlock taken with
rseq_load_cbne_store__ptr(), then a per-CPU linked list that many threads pop
from and push to (rseq_load_cbeq_store_add_load_store__ptr(),
rseq_load_cbne_store__ptr()); every count and every node must be accounted
for at the end.  Built twice, as the Makefile builds it: indexed by cpu_id
(this file) and by mm_cid (basic_percpu_ops_mm_cid_test.py,
-DBUILDOPT_RSEQ_PERCPU_MM_CID).

Reduced from the C constants (200 threads, 5000 lock rounds, 100000 list
rounds): ``NUM_THREADS``, ``REPS`` and ``LIST_ROUNDS`` below; ``run()`` takes
others.  An assert() that fails prints the C message and abort()s (SIGABRT,
exit status 134), as the C program does.
"""

from emulator.selftest import Result
from emulator.uapi.libc import (
    CPU_SETSIZE, pthread_create, pthread_join, sched_getaffinity, sched_yield,
)
from emulator.uapi.rseq import (
    RSEQ_MO_RELAXED, RSEQ_READ_ONCE, RSEQ_WRITE_ONCE, RSEQ_PERCPU_CPU_ID, RSEQ_PERCPU_MM_CID, ptr, rseq_cpu_start,
    rseq_current_cpu_raw, rseq_current_mm_cid, rseq_load_cbeq_store_add_load_store__ptr,
    rseq_load_cbne_store__ptr, rseq_mm_cid_available, rseq_register_current_thread,
    rseq_smp_acquire__after_ctrl_dep, rseq_smp_store_release, rseq_unregister_current_thread,
)
from emulator.uapi.signal import abort
from selftests.rseq import xfail_known_findings

NUM_THREADS = 16        # C: 200
REPS = 200              # C: 5000
LIST_ROUNDS = 100       # C: 100000


class percpu_lock_entry:
    __slots__ = ("v",)

    def __init__(self):
        self.v = 0


class test_data_entry:
    __slots__ = ("count",)

    def __init__(self):
        self.count = 0


class spinlock_test_data:
    def __init__(self):
        self.lock = [percpu_lock_entry() for _ in range(CPU_SETSIZE)]
        self.c = [test_data_entry() for _ in range(CPU_SETSIZE)]
        self.reps = 0


class percpu_list_node:
    __slots__ = ("data", "next")


class percpu_list_entry:
    __slots__ = ("head",)

    def __init__(self):
        self.head = None


class percpu_list:
    def __init__(self):
        self.c = [percpu_list_entry() for _ in range(CPU_SETSIZE)]


def make_main(out, mm_cid=False, num_threads=NUM_THREADS, reps=REPS, list_rounds=LIST_ROUNDS):
    """The C program; *out* collects what it prints."""
    if mm_cid:
        RSEQ_PERCPU = RSEQ_PERCPU_MM_CID

        def get_current_cpu_id():
            return rseq_current_mm_cid()

        def rseq_validate_cpu_id():
            return rseq_mm_cid_available()

        def rseq_use_cpu_index():
            return False        # Use mm_cid
    else:
        RSEQ_PERCPU = RSEQ_PERCPU_CPU_ID

        def get_current_cpu_id():
            return rseq_cpu_start()

        def rseq_validate_cpu_id():
            return rseq_current_cpu_raw() >= 0

        def rseq_use_cpu_index():
            return True         # Use cpu_id as index.

    def c_assert(cond, text, line):
        if not cond:
            out.append(f"basic_percpu_ops_test: basic_percpu_ops_test.c:{line}: "
                       f"Assertion `{text}' failed.")
            abort()

    def rseq_this_cpu_lock(lock):
        """A simple percpu spinlock.  Returns the cpu lock was acquired on."""
        while True:
            cpu = get_current_cpu_id()
            ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU,
                                            ptr(lock[cpu], "v"), 0, 1, cpu)
            if not ret:
                break
            # Retry if comparison fails or rseq aborts.
        # Acquire semantic when taking lock after control dependency.
        rseq_smp_acquire__after_ctrl_dep()
        return cpu

    def rseq_percpu_unlock(lock, cpu):
        c_assert(lock[cpu].v == 1, "lock->c[cpu].v == 1", 96)
        # Release lock, with release semantic.
        rseq_smp_store_release(ptr(lock[cpu], "v"), 0)

    def test_percpu_spinlock_thread(data):
        if rseq_register_current_thread():
            out.append("Error: rseq_register_current_thread(...) failed")
            abort()
        for _ in range(data.reps):
            cpu = rseq_this_cpu_lock(data.lock)
            count = ptr(data.c[cpu], "count")       # data->c[cpu].count++: load, store
            RSEQ_WRITE_ONCE(count, RSEQ_READ_ONCE(count) + 1)
            rseq_percpu_unlock(data.lock, cpu)
        if rseq_unregister_current_thread():
            out.append("Error: rseq_unregister_current_thread(...) failed")
            abort()
        return None

    def test_percpu_spinlock():
        data = spinlock_test_data()
        data.reps = reps
        test_threads = [pthread_create(test_percpu_spinlock_thread, data)
                        for _ in range(num_threads)]
        for t in test_threads:
            pthread_join(t)
        total = sum(data.c[i].count for i in range(CPU_SETSIZE))
        c_assert(total == data.reps * num_threads, "sum == (uint64_t)data.reps * num_threads",
                 141)

    def this_cpu_list_push(lst, node):
        while True:
            cpu = get_current_cpu_id()
            # Load list->c[cpu].head with single-copy atomicity.
            expect = lst.c[cpu].head
            node.next = expect
            ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU,
                                            ptr(lst.c[cpu], "head"), expect, node, cpu)
            if not ret:
                break
            # Retry if comparison fails or rseq aborts.
        return cpu

    def this_cpu_list_pop(lst):
        """Unlike a traditional lock-less linked list; the availability of a
        rseq primitive allows us to implement pop without concerns over
        ABA-type races."""
        while True:
            cpu = get_current_cpu_id()
            load = [None]
            ret = rseq_load_cbeq_store_add_load_store__ptr(
                RSEQ_MO_RELAXED, RSEQ_PERCPU, ptr(lst.c[cpu], "head"), None,
                "next", ptr(load, 0), cpu)
            if not ret:
                return load[0]
            if ret > 0:
                return None
            # Retry if rseq aborts.

    def __percpu_list_pop(lst, cpu):
        """Not safe against concurrent accesses."""
        node = lst.c[cpu].head
        if node is None:
            return None
        lst.c[cpu].head = node.next
        return node

    def test_percpu_list_thread(lst):
        if rseq_register_current_thread():
            out.append("Error: rseq_register_current_thread(...) failed")
            abort()
        for _ in range(list_rounds):
            node = this_cpu_list_pop(lst)
            sched_yield()       # encourage shuffling
            if node is not None:
                this_cpu_list_push(lst, node)
        if rseq_unregister_current_thread():
            out.append("Error: rseq_unregister_current_thread(...) failed")
            abort()
        return None

    def test_percpu_list():
        """Simultaneous modification to a per-cpu linked list from many threads."""
        lst = percpu_list()
        expected_sum = 0
        # Generate list entries for every usable cpu.
        allowed_cpus = sched_getaffinity(0)
        for i in range(CPU_SETSIZE):
            if rseq_use_cpu_index() and i not in allowed_cpus:
                continue
            for j in range(1, 101):
                expected_sum += j
                node = percpu_list_node()
                node.data = j
                node.next = lst.c[i].head
                lst.c[i].head = node
        test_threads = [pthread_create(test_percpu_list_thread, lst) for _ in range(num_threads)]
        for t in test_threads:
            pthread_join(t)
        total = 0
        for i in range(CPU_SETSIZE):
            if rseq_use_cpu_index() and i not in allowed_cpus:
                continue
            while (node := __percpu_list_pop(lst, i)) is not None:
                total += node.data
        # All entries should now be accounted for (unless some external actor
        # is interfering with our allowed affinity while this test is running).
        c_assert(total == expected_sum, "sum == expected_sum", 321)

    def basic_percpu_ops_test():
        if rseq_register_current_thread():
            out.append("Error: rseq_register_current_thread(...) failed")
            return -1
        if not rseq_validate_cpu_id():
            out.append("Error: cpu id getter unavailable")
            return -1
        out.append("spinlock")
        test_percpu_spinlock()
        out.append("percpu_list")
        test_percpu_list()
        if rseq_unregister_current_thread():
            out.append("Error: rseq_unregister_current_thread(...) failed")
            return -1
        return 0

    return basic_percpu_ops_test


def run(machine, mm_cid=False, **sizes):
    out = []
    status = machine.run(make_main(out, mm_cid, **sizes))
    if status != 0:
        return Result("fail", status, "; ".join(out) or f"exit status {status}")
    indexing = "mm_cid" if mm_cid else "cpu_id"
    return Result("pass", status, f"spinlock and percpu_list by {indexing}: every count and node "
                                  f"accounted for")


def test_basic_percpu_ops(selftest_machine):
    selftest_machine.check(xfail_known_findings(run))
