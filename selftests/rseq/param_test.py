"""Mirror of tools/testing/selftests/rseq/param_test.c, its builds and run_param_test.sh.

The C program's tests (-T): (s)pinlock, (l)ist, (b)uffer, (m)emcpy buffer,
(i)ncrement, membarrie(r); its options: -1..-9 delay injection loops (-7,
-8, -9 with -1 enable -m; of the C injection points only 9, before each
asm block, is used by today's x86 rseq-bits, so -7 and -8 are accepted and
do nothing, as in C), -m N yield/sleep/kill every N, -y yield, -k kill
(raise(SIGUSR1), whose handler counts it), -s S sleep S ms (poll()), -t N
threads, -r N repetitions, -d no rseq registration, -D M disable it every M
threads, -M push with release (memory barrier) semantics, -v verbose.  Its
builds are the mirror modules: param_test (cpu_id), param_test_compare_twice
(-DRSEQ_COMPARE_TWICE), param_test_mm_cid (-DBUILDOPT_RSEQ_PERCPU_MM_CID)
and param_test_mm_cid_compare_twice.  A failed assert() (a sum that does not
add up) prints the C message and abort()s, so the program dies with SIGABRT
(exit status 134), as the C program does; so does rseq_bug() in a
compare-twice build.

`RUN_PARAM_TEST` is run_param_test.sh's matrix (every test type, with and
without -M, then the -1..-9 loop injections, then yield, kill and sleep
injection at 7, 8 and 9 every 4, 2 and 1 iterations), reduced: REPS 1000 ->
``REPS``, NR_THREADS 6 * NR_CPUS -> ``threads(nr_cpus)``, NR_LOOPS 10000 ->
``NR_LOOPS``.  The default pytest run takes every test type and every
injection kind once (`DEFAULT_CASES`); ``EMU_PARAM_TEST=full`` runs the whole
reduced matrix.  Departures: C's rand() % CPU_SETSIZE in the membarrier
manager is the machine's chooser.
"""

import os

import pytest

from emulator.selftest import Result
from emulator.uapi.libc import (
    CPU_SETSIZE, gettid, pthread_create, pthread_join, sched_getaffinity, sched_yield, usleep,
)
from emulator.uapi.membarrier import (
    MEMBARRIER_CMD_FLAG_CPU, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
    MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, sys_membarrier,
)
from emulator.uapi.rseq import (
    RSEQ_MO_RELAXED, RSEQ_MO_RELEASE, RSEQ_PERCPU_CPU_ID, RSEQ_PERCPU_MM_CID, RSEQ_READ_ONCE,
    RSEQ_WRITE_ONCE, ptr, rseq_cpu_start, rseq_current_cpu_raw, rseq_current_mm_cid,
    rseq_load_add_load_load_add_store__ptr, rseq_load_add_store__ptr,
    rseq_load_cbeq_store_add_load_store__ptr, rseq_load_cbne_load_cbne_store__ptr,
    rseq_load_cbne_memcpy_store__ptr, rseq_load_cbne_store__ptr,
    rseq_load_cbne_store_store__ptr, rseq_mm_cid_available, rseq_program,
    rseq_register_current_thread, rseq_smp_acquire__after_ctrl_dep, rseq_smp_store_release,
    rseq_unregister_current_thread,
)
from emulator.uapi.signal import SIGUSR1, abort, raise_, sigaction, struct_sigaction
from selftests.rseq import xfail_known_findings

ENXIO = 6
NR_INJECT = 9
BUFFER_ITEM_PER_CPU = 100
MEMCPY_BUFFER_ITEM_PER_CPU = 100

REPS = 100              # run_param_test.sh: 1000
NR_LOOPS = 200          # run_param_test.sh: 10000


def threads(nr_cpus):
    """run_param_test.sh's NR_THREADS is 6 * NR_CPUS; reduced."""
    return min(6 * nr_cpus, 12)


# run_param_test.sh
TEST_LIST = [["-T", "s"], ["-T", "l"], ["-T", "b"], ["-T", "b", "-M"], ["-T", "m"],
             ["-T", "m", "-M"], ["-T", "i"], ["-T", "r"]]
TEST_NAME = ["spinlock", "list", "buffer", "buffer with barrier", "memcpy",
             "memcpy with barrier", "increment", "membarrier"]


def run_param_test(nr_cpus, loops=NR_LOOPS, reps=REPS):
    """run_param_test.sh's invocations, as (name, argv) pairs."""
    base = ["-r", str(reps), "-t", str(threads(nr_cpus))]
    cases = []

    def do_tests(label, extra):
        for test, name in zip(TEST_LIST, TEST_NAME):
            cases.append((f"{label}: {name}", test + base + extra))

    do_tests("Default parameters", [])
    for n in range(1, NR_INJECT + 1):
        do_tests(f"Injecting at <{n}>", [f"-{n}", str(loops)])
    for kind, opt in (("Yield", ["-y"]), ("Kill", ["-k"]), ("Sleep (1ms)", ["-s", "1"])):
        for modulo, pct in ((4, 25), (2, 50), (1, 100)):
            for n in (7, 8, 9):
                do_tests(f"{kind} injection ({pct}%) at <{n}>", [f"-{n}", "-1", "-m", str(modulo)]
                         + opt)
    return cases


def DEFAULT_CASES(nr_cpus, loops=NR_LOOPS, reps=REPS):
    """Every test type and every kind of injection once: what the default
    test run takes from the matrix."""
    base = ["-r", str(reps), "-t", str(threads(nr_cpus))]
    pick = [
        ("spinlock", ["-T", "s"]),
        ("list, injecting at <1>", ["-T", "l", "-1", str(loops)]),
        ("buffer, injecting at <3>", ["-T", "b", "-3", str(loops)]),
        ("buffer with barrier, injecting at <5>", ["-T", "b", "-M", "-5", str(loops)]),
        ("memcpy, injecting at <4>", ["-T", "m", "-4", str(loops)]),
        ("memcpy with barrier, injecting at <6>", ["-T", "m", "-M", "-6", str(loops)]),
        ("increment, injecting at <2>", ["-T", "i", "-2", str(loops)]),
        ("membarrier", ["-T", "r"]),
        ("spinlock, yield injection (50%) at <9>", ["-T", "s", "-9", "-1", "-m", "2", "-y"]),
        ("list, kill injection (100%) at <9>", ["-T", "l", "-9", "-1", "-m", "1", "-k"]),
        ("increment, sleep injection (1ms, 25%) at <9>", ["-T", "i", "-9", "-1", "-m", "4", "-s",
                                                           "1"]),
        ("buffer, injecting at <7> and <8>", ["-T", "b", "-7", "-1", "-8", "-1", "-m", "1", "-y"]),
    ]
    return [(name, argv + base) for name, argv in pick]


# -- the data (param_test.c's structs) ---------------------------------------------------------

class percpu_lock_entry:
    __slots__ = ("v",)

    def __init__(self):
        self.v = 0


class test_data_entry:
    __slots__ = ("count",)

    def __init__(self):
        self.count = 0


class percpu_list_node:
    __slots__ = ("data", "next")

    def __init__(self, data=0, next=None):
        self.data = data
        self.next = next


class percpu_list_entry:
    __slots__ = ("head",)

    def __init__(self):
        self.head = None


class percpu_list:
    def __init__(self):
        self.c = [percpu_list_entry() for _ in range(CPU_SETSIZE)]


class percpu_buffer_node:
    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


class percpu_buffer_entry:
    __slots__ = ("offset", "buflen", "array")

    def __init__(self):
        self.offset = 0
        self.buflen = 0
        self.array = None


class percpu_memcpy_buffer_node:
    __slots__ = ("data1", "data2")

    def __init__(self, data1=0, data2=0):
        self.data1 = data1
        self.data2 = data2


class test_membarrier_thread_args:
    __slots__ = ("stop", "percpu_list_ptr")

    def __init__(self):
        self.stop = 0
        self.percpu_list_ptr = None


def make_main(argv, out, mm_cid=False, compare_twice=False, chooser=None, benchmark=False):
    """param_test's main() for *argv*; *out* collects what it prints.
    *benchmark* is the -DBENCHMARK build (param_test_benchmark): the
    injection points and printf_verbose() are compiled out, the options that
    set them still parsed."""
    loop_cnt = [0] * (NR_INJECT + 1)
    opt = {"modulo": 0, "verbose": 0, "yield": 0, "signal": 0, "sleep": 0, "disable_rseq": 0,
           "threads": 200, "disable_mod": 0, "test": "s", "mb": 0, "reps": 5000}
    tls = {}                # per thread: yield_mod_cnt, nr_abort, signals_delivered

    def thread_state():
        tid = gettid()
        st = tls.get(tid)
        if st is None:
            st = tls[tid] = {"yield_mod_cnt": 0, "nr_abort": 0, "signals_delivered": 0}
        return st

    def printf_verbose(line):
        if opt["verbose"] and not benchmark:    # #ifdef BENCHMARK: compiled out
            out.append(line)

    def RSEQ_INJECT_C(n):
        loc_nr_loops = loop_cnt[n]
        # (loc_nr_loops rseq_barrier()s: C code that takes no time here)
        if loc_nr_loops == -1 and opt["modulo"]:
            st = thread_state()
            if st["yield_mod_cnt"] == opt["modulo"] - 1:
                if opt["sleep"] > 0:
                    usleep(opt["sleep"] * 1000)        # poll(NULL, 0, opt_sleep)
                if opt["yield"]:
                    sched_yield()
                if opt["signal"]:
                    raise_(SIGUSR1)
                st["yield_mod_cnt"] = 0
            else:
                st["yield_mod_cnt"] += 1

    def RSEQ_INJECT_FAILED():
        thread_state()["nr_abort"] += 1

    if mm_cid:
        RSEQ_PERCPU = RSEQ_PERCPU_MM_CID

        def get_current_cpu_id():
            return rseq_current_mm_cid()

        def rseq_validate_cpu_id():
            return rseq_mm_cid_available()

        def rseq_use_cpu_index():
            return False        # Use mm_cid

        def rseq_membarrier_expedited(cpu):
            # Membarrier does not currently support targeting a mm_cid, so
            # issue the barrier on all cpus.
            return sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0)
    else:
        RSEQ_PERCPU = RSEQ_PERCPU_CPU_ID

        def get_current_cpu_id():
            return rseq_cpu_start()

        def rseq_validate_cpu_id():
            return rseq_current_cpu_raw() >= 0

        def rseq_use_cpu_index():
            return True         # Use cpu_id as index.

        def rseq_membarrier_expedited(cpu):
            return sys_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
                                  MEMBARRIER_CMD_FLAG_CPU, cpu)

    def c_assert(cond, text):
        if not cond:
            out.append(f"param_test: param_test.c: Assertion `{text}' failed.")
            abort()

    def inc(p):
        """``p++`` in C: a load and a store."""
        RSEQ_WRITE_ONCE(p, RSEQ_READ_ONCE(p) + 1)

    def register(reg=True):
        if not opt["disable_rseq"] and reg and rseq_register_current_thread():
            abort()

    def unregister(reg=True):
        if not opt["disable_rseq"] and reg and rseq_unregister_current_thread():
            abort()

    def run_threads(fn, args):
        ts = [pthread_create(fn, a) for a in args]
        for t in ts:
            pthread_join(t)

    def thread_regs():
        return [opt["disable_mod"] <= 0 or i % opt["disable_mod"] != 0
                for i in range(opt["threads"])]

    def report():
        st = thread_state()
        printf_verbose(f"tid {gettid()}: number of rseq abort: {st['nr_abort']}, "
                       f"signals delivered: {st['signals_delivered']}")

    # -- spinlock ------------------------------------------------------------------------

    def rseq_this_cpu_lock(lock):
        while True:
            cpu = get_current_cpu_id()
            ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU,
                                            ptr(lock[cpu], "v"), 0, 1, cpu)
            if not ret:
                break
            # Retry if comparison fails or rseq aborts.
        rseq_smp_acquire__after_ctrl_dep()
        return cpu

    def rseq_percpu_unlock(lock, cpu):
        c_assert(lock[cpu].v == 1, "lock->c[cpu].v == 1")
        rseq_smp_store_release(ptr(lock[cpu], "v"), 0)

    def test_percpu_spinlock():
        lock = [percpu_lock_entry() for _ in range(CPU_SETSIZE)]
        c = [test_data_entry() for _ in range(CPU_SETSIZE)]

        def thread(reg):
            register(reg)
            for _ in range(opt["reps"]):
                cpu = rseq_this_cpu_lock(lock)
                inc(ptr(c[cpu], "count"))
                rseq_percpu_unlock(lock, cpu)
            report()
            unregister(reg)

        run_threads(thread, thread_regs())
        total = sum(e.count for e in c)
        c_assert(total == opt["reps"] * opt["threads"], "sum == (uint64_t)opt_reps * num_threads")

    # -- increment -------------------------------------------------------------------------

    def test_percpu_inc():
        c = [test_data_entry() for _ in range(CPU_SETSIZE)]

        def thread(reg):
            register(reg)
            for _ in range(opt["reps"]):
                while True:
                    cpu = get_current_cpu_id()
                    ret = rseq_load_add_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU,
                                                   ptr(c[cpu], "count"), 1, cpu)
                    if not ret:
                        break
            report()
            unregister(reg)

        run_threads(thread, thread_regs())
        total = sum(e.count for e in c)
        c_assert(total == opt["reps"] * opt["threads"], "sum == (uint64_t)opt_reps * num_threads")

    # -- list ------------------------------------------------------------------------------

    def this_cpu_list_push(lst, node):
        while True:
            cpu = get_current_cpu_id()
            expect = RSEQ_READ_ONCE(ptr(lst.c[cpu], "head"))
            node.next = expect
            ret = rseq_load_cbne_store__ptr(RSEQ_MO_RELAXED, RSEQ_PERCPU,
                                            ptr(lst.c[cpu], "head"), expect, node, cpu)
            if not ret:
                break

    def this_cpu_list_pop(lst):
        while True:
            cpu = get_current_cpu_id()
            load = [None]
            ret = rseq_load_cbeq_store_add_load_store__ptr(
                RSEQ_MO_RELAXED, RSEQ_PERCPU, ptr(lst.c[cpu], "head"), None, "next",
                ptr(load, 0), cpu)
            if not ret:
                return load[0]
            if ret > 0:
                return None

    def test_percpu_list():
        lst = percpu_list()
        expected_sum = 0
        allowed_cpus = sched_getaffinity(0)
        for i in range(CPU_SETSIZE):
            if rseq_use_cpu_index() and i not in allowed_cpus:
                continue
            for j in range(1, 101):
                expected_sum += j
                lst.c[i].head = percpu_list_node(j, lst.c[i].head)

        def thread(_):
            register()
            for _ in range(opt["reps"]):
                node = this_cpu_list_pop(lst)
                if opt["yield"]:
                    sched_yield()       # encourage shuffling
                if node is not None:
                    this_cpu_list_push(lst, node)
            report()
            unregister()

        run_threads(thread, [None] * opt["threads"])
        total = 0
        for i in range(CPU_SETSIZE):
            if rseq_use_cpu_index() and i not in allowed_cpus:
                continue
            node = lst.c[i].head
            while node is not None:
                total += node.data
                node = node.next
        c_assert(total == expected_sum, "sum == expected_sum")

    # -- buffer ----------------------------------------------------------------------------

    def this_cpu_buffer_push(buf, node):
        while True:
            cpu = get_current_cpu_id()
            offset = RSEQ_READ_ONCE(ptr(buf[cpu], "offset"))
            if offset == buf[cpu].buflen:
                return False
            targetptr_spec = ptr(buf[cpu].array, offset)
            targetptr_final = ptr(buf[cpu], "offset")
            ret = rseq_load_cbne_store_store__ptr(
                RSEQ_MO_RELEASE if opt["mb"] else RSEQ_MO_RELAXED, RSEQ_PERCPU,
                targetptr_final, offset, targetptr_spec, node, offset + 1, cpu)
            if not ret:
                return True

    def this_cpu_buffer_pop(buf):
        while True:
            cpu = get_current_cpu_id()
            offset = RSEQ_READ_ONCE(ptr(buf[cpu], "offset"))
            if offset == 0:
                return None
            head = RSEQ_READ_ONCE(ptr(buf[cpu].array, offset - 1))
            ret = rseq_load_cbne_load_cbne_store__ptr(
                RSEQ_MO_RELAXED, RSEQ_PERCPU, ptr(buf[cpu], "offset"), offset,
                ptr(buf[cpu].array, offset - 1), head, offset - 1, cpu)
            if not ret:
                return head

    def make_buffers(item):
        allowed_cpus = sched_getaffinity(0)
        buf = [percpu_buffer_entry() for _ in range(CPU_SETSIZE)]
        expected_sum = 0
        for i in range(CPU_SETSIZE):
            if rseq_use_cpu_index() and i not in allowed_cpus:
                continue
            # Worse-case is every item in same CPU (CPU_SETSIZE * ITEMS slots;
            # a list that grows stands for the malloc()ed array).
            b = buf[i]
            b.array = []
            b.buflen = CPU_SETSIZE * BUFFER_ITEM_PER_CPU
            for j in range(1, BUFFER_ITEM_PER_CPU + 1):
                node, value = item(j)
                expected_sum += value
                b.array.append(node)
                b.offset += 1
            b.array.extend([None] * (opt["threads"] * BUFFER_ITEM_PER_CPU))
        return buf, allowed_cpus, expected_sum

    def test_percpu_buffer():
        buf, allowed_cpus, expected_sum = make_buffers(lambda j: (percpu_buffer_node(j), j))

        def thread(_):
            register()
            for _ in range(opt["reps"]):
                node = this_cpu_buffer_pop(buf)
                if opt["yield"]:
                    sched_yield()
                if node is not None and not this_cpu_buffer_push(buf, node):
                    abort()         # Should increase buffer size.
            report()
            unregister()

        run_threads(thread, [None] * opt["threads"])
        total = 0
        for i in range(CPU_SETSIZE):
            if rseq_use_cpu_index() and i not in allowed_cpus:
                continue
            b = buf[i]
            while b.offset:
                total += b.array[b.offset - 1].data
                b.offset -= 1
        c_assert(total == expected_sum, "sum == expected_sum")

    # -- memcpy buffer -----------------------------------------------------------------------

    def this_cpu_memcpy_buffer_push(buf, item):
        while True:
            cpu = get_current_cpu_id()
            offset = RSEQ_READ_ONCE(ptr(buf[cpu], "offset"))
            if offset == buf[cpu].buflen:
                return False
            if buf[cpu].array[offset] is None:
                buf[cpu].array[offset] = percpu_memcpy_buffer_node()
            ret = rseq_load_cbne_memcpy_store__ptr(
                RSEQ_MO_RELEASE if opt["mb"] else RSEQ_MO_RELAXED, RSEQ_PERCPU,
                ptr(buf[cpu], "offset"), offset, ptr(buf[cpu].array, offset), item, 16,
                offset + 1, cpu)
            if not ret:
                return True

    def this_cpu_memcpy_buffer_pop(buf, item):
        while True:
            cpu = get_current_cpu_id()
            offset = RSEQ_READ_ONCE(ptr(buf[cpu], "offset"))
            if offset == 0:
                return False
            ret = rseq_load_cbne_memcpy_store__ptr(
                RSEQ_MO_RELAXED, RSEQ_PERCPU, ptr(buf[cpu], "offset"), offset, item,
                ptr(buf[cpu].array, offset - 1), 16, offset - 1, cpu)
            if not ret:
                return True

    def test_percpu_memcpy_buffer():
        buf, allowed_cpus, expected_sum = make_buffers(
            lambda j: (percpu_memcpy_buffer_node(j, j + 1), 2 * j + 1))

        def thread(_):
            register()
            for _ in range(opt["reps"]):
                item = percpu_memcpy_buffer_node()
                result = this_cpu_memcpy_buffer_pop(buf, item)
                if opt["yield"]:
                    sched_yield()
                if result and not this_cpu_memcpy_buffer_push(buf, item):
                    abort()         # Should increase buffer size.
            report()
            unregister()

        run_threads(thread, [None] * opt["threads"])
        total = 0
        for i in range(CPU_SETSIZE):
            if rseq_use_cpu_index() and i not in allowed_cpus:
                continue
            b = buf[i]
            while b.offset:
                item = b.array[b.offset - 1]
                total += item.data1 + item.data2
                b.offset -= 1
        c_assert(total == expected_sum, "sum == expected_sum")

    # -- membarrier --------------------------------------------------------------------------

    def test_signal_interrupt_handler(signo):
        thread_state()["signals_delivered"] += 1

    def set_signal_handler():
        sigaction(SIGUSR1, struct_sigaction(test_signal_interrupt_handler, (), 0))
        printf_verbose("Signal handler set for SIGUSR1")
        return 0

    def test_membarrier_init_percpu_list():
        lst = percpu_list()
        for i in range(CPU_SETSIZE):
            lst.c[i].head = percpu_list_node(0, None)
        return lst

    def test_membarrier_worker_thread(args):
        if rseq_register_current_thread():
            abort()
        # Wait for initialization.
        while RSEQ_READ_ONCE(ptr(args, "percpu_list_ptr")) is None:
            sched_yield()
        for _ in range(opt["reps"]):
            while True:
                cpu = get_current_cpu_id()
                ret = rseq_load_add_load_load_add_store__ptr(
                    RSEQ_MO_RELAXED, RSEQ_PERCPU, ptr(args, "percpu_list_ptr"), cpu, 1, cpu)
                if not ret:
                    break
        if rseq_unregister_current_thread():
            abort()

    def membarrier(cpu):
        try:
            rseq_membarrier_expedited(cpu)
        except OSError as exc:
            if exc.errno != ENXIO:      # missing CPU
                out.append(f"sys_membarrier: {os.strerror(exc.errno)}")
                abort()

    def test_membarrier_manager_thread(args):
        if rseq_register_current_thread():
            abort()
        list_a = test_membarrier_init_percpu_list()
        list_b = test_membarrier_init_percpu_list()
        RSEQ_WRITE_ONCE(ptr(args, "percpu_list_ptr"), list_a)
        expect_a = expect_b = 0
        cpu_a = cpu_b = 0
        while not RSEQ_READ_ONCE(ptr(args, "stop")):
            # list_a is "active".
            cpu_a = chooser.below(CPU_SETSIZE)
            # As list_b is "inactive", we should never see changes to list_b.
            if expect_b != RSEQ_READ_ONCE(ptr(list_b.c[cpu_b].head, "data")):
                out.append("Membarrier test failed")
                abort()
            # Make list_b "active".
            RSEQ_WRITE_ONCE(ptr(args, "percpu_list_ptr"), list_b)
            membarrier(cpu_a)
            # Cpu A should now only modify list_b, so the values in list_a
            # should be stable.
            expect_a = RSEQ_READ_ONCE(ptr(list_a.c[cpu_a].head, "data"))
            cpu_b = chooser.below(CPU_SETSIZE)
            # As list_a is "inactive", we should never see changes to list_a.
            if expect_a != RSEQ_READ_ONCE(ptr(list_a.c[cpu_a].head, "data")):
                out.append("Membarrier test failed")
                abort()
            # Make list_a "active".
            RSEQ_WRITE_ONCE(ptr(args, "percpu_list_ptr"), list_a)
            membarrier(cpu_b)
            # Remember a value from list_b.
            expect_b = RSEQ_READ_ONCE(ptr(list_b.c[cpu_b].head, "data"))
        if rseq_unregister_current_thread():
            abort()

    def test_membarrier():
        try:
            sys_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0)
        except OSError as exc:
            out.append(f"sys_membarrier: {os.strerror(exc.errno)}")
            abort()
        thread_args = test_membarrier_thread_args()
        manager = pthread_create(test_membarrier_manager_thread, thread_args)
        workers = [pthread_create(test_membarrier_worker_thread, thread_args)
                   for _ in range(opt["threads"])]
        for t in workers:
            pthread_join(t)
        RSEQ_WRITE_ONCE(ptr(thread_args, "stop"), 1)
        pthread_join(manager)

    # -- main ------------------------------------------------------------------------------------

    def show_usage():
        out.append("Usage : param_test <OPTIONS> (see param_test.c)")

    def param_test():
        i = 0
        while i < len(argv):
            a = argv[i]
            if not a.startswith("-") or len(a) < 2:
                i += 1
                continue
            c = a[1]
            if c in "123456789":
                if i + 1 >= len(argv):
                    show_usage()
                    return -1
                loop_cnt[int(c)] = int(argv[i + 1])
                i += 1
            elif c in "mstrD":
                if i + 1 >= len(argv):
                    show_usage()
                    return -1
                value = int(argv[i + 1])
                if value < 0:
                    show_usage()
                    return -1
                opt[{"m": "modulo", "s": "sleep", "t": "threads", "r": "reps",
                     "D": "disable_mod"}[c]] = value
                i += 1
            elif c == "y":
                opt["yield"] = 1
            elif c == "k":
                opt["signal"] = 1
            elif c == "d":
                opt["disable_rseq"] = 1
            elif c == "h":
                show_usage()
                return 0
            elif c == "T":
                if i + 1 >= len(argv) or argv[i + 1][:1] not in ("s", "l", "i", "b", "m", "r"):
                    show_usage()
                    return -1
                opt["test"] = argv[i + 1][0]
                i += 1
            elif c == "v":
                opt["verbose"] = 1
            elif c == "M":
                opt["mb"] = 1
            else:
                show_usage()
                return -1
            i += 1

        rseq_program(compare_twice=compare_twice,
                     loop_cnt=[0] * (NR_INJECT + 1) if benchmark else loop_cnt,
                     inject_c=None if benchmark else RSEQ_INJECT_C,
                     inject_failed=None if benchmark else RSEQ_INJECT_FAILED,
                     stderr=out.append)
        if set_signal_handler():
            return -1
        if not opt["disable_rseq"] and rseq_register_current_thread():
            return -1
        if not opt["disable_rseq"] and not rseq_validate_cpu_id():
            out.append("Error: cpu id getter unavailable")
            return -1
        {"s": test_percpu_spinlock, "l": test_percpu_list, "b": test_percpu_buffer,
         "m": test_percpu_memcpy_buffer, "i": test_percpu_inc, "r": test_membarrier}[opt["test"]]()
        if not opt["disable_rseq"] and rseq_unregister_current_thread():
            abort()
        return 0

    return param_test


BUILD = {"mm_cid": False, "compare_twice": False}


def run(machine, argv=None, build=None):
    """Run param_test (the *build*'s binary) with *argv*; by default
    run_param_test.sh's first invocation, reduced: -T s -r REPS -t NR_THREADS."""
    build = dict(build or BUILD)
    if argv is None:
        argv = ["-T", "s", "-r", str(REPS), "-t", str(threads(machine.nr_cpus))]
    out = []
    status = machine.run(make_main(list(argv), out, chooser=machine.kernel.chooser, **build))
    line = f"param_test {' '.join(argv)}"
    if status != 0:
        return Result("fail", status, f"{line}: exit status {status}: {'; '.join(out[-3:])}")
    return Result("pass", status, line)


def case_runner(index, build):
    """``run`` for the *index*th default case (the whole reduced matrix with
    EMU_PARAM_TEST=full), sized for the machine's CPUs; a recorded finding of
    the variant is an xfail."""
    def run_case(machine):
        n = machine.nr_cpus
        cases = run_param_test(n) if os.environ.get("EMU_PARAM_TEST") == "full" \
            else DEFAULT_CASES(n)
        if index >= len(cases):
            return Result("skip", 0, "no such case")
        name, argv = cases[index]
        result = run(machine, argv, build)
        result.detail = f"{name}: {result.detail}"
        return result
    return xfail_known_findings(run_case)


def nr_cases(build=None):
    """The cases a build's pytest test takes: the default ones for param_test
    itself, the first OTHER_BUILD_CASES (spinlock, list, buffer, memcpy) for
    the other builds; the whole reduced matrix with EMU_PARAM_TEST=full."""
    if os.environ.get("EMU_PARAM_TEST") == "full":
        return len(run_param_test(1))
    return len(DEFAULT_CASES(1)) if build in (None, BUILD) else OTHER_BUILD_CASES


OTHER_BUILD_CASES = 4


@pytest.mark.emu_cpus(1, 2, 3, 8)
@pytest.mark.parametrize("case", range(nr_cases()))
def test_param_test(selftest_machine, case):
    selftest_machine.check(case_runner(case, BUILD))
