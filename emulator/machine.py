"""Machine(config): a many-core machine with a kernel and its selected variants.

    m = Machine(nr_cpus=128, variants=["v6.3"], seed=1)
    status = m.run(main)        # main() runs as the main thread of a new process

``run`` returns the process's exit status once every user task has ended:
``exit(n)`` gives ``n & 0xff``, a fatal signal gives ``128 + signo`` as a shell
reports it.  A run that goes wrong raises an `EmulationFailure` carrying the
minimal trace and the command that replays it; no host thread outlives the run.
"""

import os
import threading

from greenlet import getcurrent, greenlet

from . import interrupt
from .engine import Engine
from .errors import Deadlock, EmulationFailure, HardLockup, Interrupted, KernelBug, UsageError
from .kernel import Kernel
from .kernel.locking import _set_running_kernel, running_kernel
from .kernel.memory_model import MODELS as MEMORY_MODELS, make_memory_model
from .kernel.task import TASK_RUNNING
from .observe.osnoise import Osnoise
from .variants import load_variant, select_variants

# How long a store may stay unseen by some CPU under tso and weak, in virtual
# ns (memory_model.py): the chooser draws delays up to it.  Not a cited
# figure: no source at hand bounds how long a store may stay unpropagated on
# a real CPU (the LKMM sets no bound; hardware drains store buffers and
# invalidate queues in far less, but by no documented limit).  It is a
# modelling bound, chosen so that spin loops end; a change needs a source.
MEMORY_WINDOW_NS = 50_000
# How long the kernel paths a strategy stopped may take to finish after the
# last user task, before the checks made once quiet judge the run
# (Machine._settle()): longer than any pause a strategy makes.
SETTLE_NS = 100_000_000

# The memory model of the machines built without one: what --memory-model of
# a command or of pytest selects for every machine they build.
_default_memory_model = ["sc"]


def default_memory_model():
    return _default_memory_model[0]


def set_default_memory_model(name):
    """Build the machines made without ``memory_model=`` with *name*; returns
    the previous default."""
    if name not in MEMORY_MODELS:
        raise UsageError(f"--memory-model must be one of {', '.join(MEMORY_MODELS)}, not {name!r}")
    previous = _default_memory_model[0]
    _default_memory_model[0] = name
    return previous


def _pin_to_one_host_cpu():
    """Pin the calling thread, and so the host threads it starts, to one host
    CPU; returns the mask to restore, or None.

    Only one host thread runs at a time, so nothing is lost; a hand-off
    between two threads on one CPU is a plain context switch, while waking a
    thread on another, idle CPU can cost milliseconds on a virtual machine
    (benchmarks: 330 k against 11-33 k hand-offs/s here).  pytest-xdist
    workers are spread over the CPUs by worker number."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        mask = os.sched_getaffinity(0)
        cpus = sorted(mask)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        index = int(worker[2:]) if worker[2:].isdigit() else os.getpid()
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})
        return mask
    except OSError:
        return None


def _unpin(mask):
    if mask is not None:
        try:
            os.sched_setaffinity(0, mask)
        except OSError:
            pass


class _KernelStalled(BaseException):
    """Raised in the engine thread by the watchdog (a BaseException, so that
    kernel code cannot swallow it)."""


class _Watchdog:
    """A host thread that ends a run whose engine stops making progress in
    real time while no body holds the baton: a kernel path (kernel model or
    variant code) looping in Python without reaching a scheduling point."""

    def __init__(self, engine, timeout):
        self.engine = engine
        self.timeout = timeout
        self.target = threading.get_ident()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="emulator-watchdog", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _watch(self):
        import ctypes
        engine = self.engine
        period = min(1.0, self.timeout / 4)
        last = None
        idle = 0.0
        while not self.done.wait(period):
            mark = (engine.events, engine.handoffs, engine.now)
            if mark != last or engine.baton_held or engine.outside:
                last, idle = mark, 0.0
                continue
            idle += period
            if idle >= self.timeout:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.target), ctypes.py_object(_KernelStalled))
                return


def first_failure(exc):
    """The failure that started the unwinding *exc* ends: the model's kernel
    code runs its try/finally blocks (its guard()s and scoped_guard()s) while
    a failure propagates, which the kernel never does, and the cleanup may fail
    in turn (a lockdep report from the mutex_unlock() of a path that hit a
    lockup).  The first failure is the finding; None if there is none."""
    first = None
    while exc is not None:
        if isinstance(exc, EmulationFailure):
            first = exc
        exc = exc.__context__
    return first


def cpu_list_mask(cpus, what, nr_cpus):
    """The mask of a CPU list: None, an iterable of CPU numbers, or the
    kernel's cpulist syntax ("1-3,5")."""
    if cpus is None:
        return 0
    if isinstance(cpus, str):
        numbers = []
        try:
            for part in filter(None, cpus.split(",")):
                first, _, last = part.partition("-")
                first, last = int(first), int(last or first)
                if first > last:        # bitmap_parselist(): -EINVAL
                    raise ValueError
                numbers.extend(range(first, last + 1))
        except ValueError:
            raise UsageError(f"{what}={cpus!r}: not a CPU list such as 1-3,5") from None
        cpus = numbers
    mask = 0
    try:
        for cpu in cpus:
            if isinstance(cpu, bool) or not isinstance(cpu, int) or not 0 <= cpu < nr_cpus:
                raise UsageError(f"{what}: CPU {cpu!r} is not an online CPU (0..{nr_cpus - 1})")
            mask |= 1 << cpu
    except TypeError:
        raise UsageError(f"{what} must be a CPU list, not {cpus!r}") from None
    return mask


class Machine:
    def __init__(self, nr_cpus=8, variants=(), seed=0, *, nr_possible=None, nr_nodes=1,
                 hz=1000, glibc_rseq=True, lockup_ns=1_000_000_000, baton_timeout=10.0,
                 trace_tail=512, trace=False, max_threads=1 << 16, costs=None, replay=None,
                 stall_timeout=30.0, invariants=True, strategy=None, trace_functions=False,
                 nohz_full=None, isolcpus=None, memory_model=None):
        if memory_model is None:
            memory_model = _default_memory_model[0]
        if memory_model not in MEMORY_MODELS:
            raise UsageError(f"memory_model must be one of {', '.join(MEMORY_MODELS)}, "
                             f"not {memory_model!r}")
        if isinstance(nr_cpus, bool) or not isinstance(nr_cpus, int) or not 1 <= nr_cpus <= 1024:
            raise UsageError(f"nr_cpus must be an int in 1..1024, not {nr_cpus!r}")
        nr_possible = nr_cpus if nr_possible is None else nr_possible
        if not isinstance(nr_possible, int) or not nr_cpus <= nr_possible <= 1024:
            raise UsageError(f"nr_possible must be an int in nr_cpus..1024, not {nr_possible!r}")
        if not isinstance(nr_nodes, int) or not 1 <= nr_nodes <= nr_possible:
            raise UsageError(f"nr_nodes must be an int in 1..nr_possible, not {nr_nodes!r}")
        if not isinstance(hz, int) or hz not in (100, 250, 300, 1000):
            raise UsageError(f"hz must be one of 100, 250, 300, 1000, not {hz!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UsageError(f"seed must be an int, not {seed!r}")
        if isinstance(variants, (str, type)):
            variants = [variants]
        self.variant_classes = select_variants(variants)     # by subsystem
        # The selected ones (the others are their subsystem's default): what
        # a replay command names.
        self.selected = [cls for cls in self.variant_classes.values()
                         if any(load_variant(v) is cls for v in variants)]
        self.mm_cid_class = self.variant_classes["mm_cid"]
        nohz_full = cpu_list_mask(nohz_full, "nohz_full", nr_cpus)
        isolcpus = cpu_list_mask(isolcpus, "isolcpus", nr_cpus)
        if (nohz_full | isolcpus) == (1 << nr_cpus) - 1:
            raise UsageError("nohz_full and isolcpus leave no housekeeping CPU")
        self.nr_cpus = nr_cpus
        self.seed = seed
        self.stall_timeout = stall_timeout
        self.replay = replay
        if strategy is not None and not hasattr(strategy, "install"):
            raise UsageError(f"strategy must be an exploration strategy (emulator.explore."
                             f"strategy_from_spec() makes one from a spec), not {strategy!r}")
        self.strategy = strategy
        self.engine = Engine(seed, baton_timeout)
        self.kernel = Kernel(self.engine, nr_cpus=nr_cpus, nr_possible=nr_possible,
                             nr_nodes=nr_nodes, hz=hz, variants=self.variant_classes,
                             glibc_rseq=glibc_rseq, lockup_ns=lockup_ns,
                             trace_tail=trace_tail, max_threads=max_threads, costs=costs,
                             invariants=invariants, nohz_full=nohz_full, isolcpus=isolcpus)
        # osnoise's view of the isolated CPUs, if there are any.
        self.osnoise = Osnoise(self.kernel, nohz_full | isolcpus) if nohz_full | isolcpus else None
        # The memory model behind the shared-memory primitives (sc: none, no cost).
        self.memory_model = memory_model
        if memory_model != "sc":
            k = self.kernel
            k.memory_model = make_memory_model(
                memory_model, nr_possible, lambda n: k.chooser.below(n),
                lambda: k.engine.now, MEMORY_WINDOW_NS)
        if strategy is not None:
            strategy.install(self.kernel)
        if trace_functions:
            # The function tracer over the variants the run is about: the
            # selected mm_cid and lazy_tlb ones (mm_cid's if neither is).
            traced = [c.subsystem for c in self.selected
                      if c.subsystem in ("mm_cid", "lazy_tlb")] or ["mm_cid"]
            for subsystem in traced:
                self.kernel.tp.trace_functions(getattr(self.kernel, subsystem))
        if trace:
            self.kernel.tp.record_all()
        self._ran = False
        self._driver = None
        self._abandoned = False
        self.main_pid = None

    # -- running ---------------------------------------------------------------------------

    @property
    def variant(self):
        return self.kernel.mm_cid

    @property
    def now(self):
        return self.engine.now

    def run_kernel(self, fn, cpu=0):
        """Run ``fn(kernel)`` on a kernel thread bound to *cpu*, in kernel
        context (it may sleep, queue work, take locks); returns what it returns
        once it and every user task it started have ended."""
        if self._ran:
            raise UsageError("a Machine runs once; build a new one")
        if not callable(fn) or not 0 <= cpu < self.nr_cpus:
            raise UsageError("run_kernel(fn, cpu): fn callable, cpu online")
        self._ran = True
        k = self.kernel
        box = {}

        def body(_):
            box["value"] = fn(k)

        self._drive(lambda: k.kthread_create_on_cpu(body, None, cpu, "ktest"),
                    lambda t: t.exit_state != 0 and k.nr_user_tasks == 0)
        return box.get("value")

    def _drive(self, start, finished):
        """Start the first task and run events until ``finished(task)``.

        SIGINT and SIGTERM are recorded while it runs (emulator.interrupt) and
        end it between two events: `Interrupted` propagates once the run has
        ended as an abandoned run ends, never as a failure."""
        k = self.kernel
        previous = running_kernel()
        _set_running_kernel(k)
        failure = None
        stuck = []
        watchdog = _Watchdog(self.engine, self.stall_timeout)
        # Pinned when the first host thread is made (a run of synthetic
        # programs or puppets has none, and a search makes thousands of runs).
        pinned = []
        self.engine.before_first_host = lambda: pinned.append(_pin_to_one_host_cpu())
        scope = interrupt.enter(self.engine)
        signum = None
        try:
            first = start()
            task = first if not isinstance(first, int) else k.tasks[first]
            k.stop_condition = lambda: finished(task)
            watchdog.start()
            self.engine.run(self._on_empty)
            if k.invariants is not None and not self._abandoned and self._settle():
                k.invariants.at_quiet()
        except _KernelStalled:
            failure = HardLockup(
                f"watchdog: a kernel path on CPU {k.cpu} ({k.cur!r}) ran for more than "
                f"{self.stall_timeout:g} s of real time without reaching a scheduling point "
                f"(virtual time {self.engine.now} ns)", "CPU states:\n" + k.cpu_states())
        except EmulationFailure as exc:
            failure = first_failure(exc)
        except Exception as exc:       # a bug in the kernel model or in a variant
            import traceback
            tb = exc.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            failure = first_failure(exc) or KernelBug(
                f"Python exception in kernel code at virtual time {self.engine.now} ns on CPU "
                f"{k.cpu} ({k.cur!r}): {type(exc).__name__}: {exc}",
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip(),
                function=tb.tb_frame.f_code.co_name, exception=type(exc).__name__)
        finally:
            watchdog.stop()
            stuck = self.engine.terminate_hosts()
            if failure is not None:
                failure.report = self.failure_report(failure)
            # The kernel stacks the run left suspended (blocked and preempted
            # tasks, idle loops, kworkers) unwind now, with no kernel running:
            # kernel code their unwinding reaches (a guard's finally block)
            # stops at its first primitive, so nothing of the run changes
            # after its end and nothing of it outlives it.
            _set_running_kernel(None)
            self.engine.reap_stacks()
            _set_running_kernel(previous)
            _unpin(pinned[0] if pinned else None)
            # A signal recorded after the loop's last safe point: the run is
            # over, so it acts now (unless a failure goes first to a caller
            # that will act on the signal itself).
            signum = interrupt.leave(scope, self.engine, take=failure is None)
        if signum is not None:
            raise Interrupted(signum) from failure
        if failure is not None:
            raise failure
        if stuck:
            raise EmulationFailure(f"host threads would not end: {[c.name for c in stuck]}")

    def _main_start(self, main):
        """What starts *main* as the main thread of a new process."""
        from .uapi.libc import HostUser
        from .workload import Program, ProgramUser
        if self._ran:
            raise UsageError("a Machine runs once; build a new one")
        if isinstance(main, Program):
            user = ProgramUser(self, None, "main", image=main)
            comm = main.comm
        elif getattr(main, "is_user_image", False):
            user, comm = main.main_user(self), main.comm
        elif callable(main):
            user = HostUser(self, None, "main", image=main)
            comm = getattr(main, "__name__", "main")[:15]
        else:
            raise UsageError(f"main must be a callable or a workload Program, not {main!r}")
        self._ran = True
        k = self.kernel

        def start():
            self.main_pid = k.kernel_clone(17, comm, user)       # SIGCHLD
            return self.main_pid
        return start

    def run(self, main):
        """Run *main* (a callable, or a workload Program) as the main thread of
        a new process; returns the process's exit status."""
        start = self._main_start(main)
        k = self.kernel
        self._drive(start, lambda _: k.nr_user_tasks == 0)
        return self._main_status()

    # -- a run driven step by step (emulator.explore.stateful) ---------------------------------------
    #
    # start() builds the run without running it; each advance(ns) runs its
    # events for ns of virtual time on a greenlet of the calling thread and
    # comes back; finish() runs it to its end and close() abandons it.  Between
    # two calls nothing in the machine moves, so a test can look at the state
    # and give the emulated threads more to do.

    def start(self, main):
        start = self._main_start(main)
        k = self.kernel
        self._caller = getcurrent()
        self._driver = greenlet(lambda: self._drive(start, lambda _: k.nr_user_tasks == 0))
        self.engine.outside = True
        return self

    def advance(self, ns):
        """Run *ns* of virtual time (less if the run ends first); True while
        the run goes on.  A failure raises as from run()."""
        if self._driver is None:
            raise UsageError("advance() needs a run begun by start()")
        if not self.running:
            return False
        entry = self.engine.at(self.engine.now + max(0, ns), self._back_to_caller)
        try:
            self._switch_to_driver()
        finally:
            entry[3] = None
        return self.running

    @property
    def running(self):
        """A run begun by start() that has not ended."""
        return self._driver is not None and not self._driver.dead

    def _back_to_caller(self, _arg):
        self._caller.switch()

    def quiet(self):
        """No event pending: every task of a step-by-step run is blocked."""
        return not any(e[3] is not None for e in self.engine._queue)

    def finish(self):
        """Run to the end (every user task gone); returns the main process's
        exit status."""
        while self.advance(1_000_000_000):
            pass
        return self._main_status()

    def close(self):
        """Abandon a run begun by start(): nothing more runs and no host
        thread is left.  The quiet-state checks are skipped."""
        if self.running:
            self.engine.stopped = True
            self._abandoned = True
            self._switch_to_driver()

    def _switch_to_driver(self):
        """Let the run go on until it comes back (or ends).  Its kernel is
        the running one meanwhile (the locking primitives act on it), whatever
        other run was started step by step in between."""
        previous = running_kernel()
        _set_running_kernel(self.kernel)
        self.engine.outside = False
        try:
            self._driver.switch()
        finally:
            self.engine.outside = True
            _set_running_kernel(previous)

    def _main_status(self):
        k = self.kernel
        status = k.process_status.get(self.main_pid)
        if status is None:
            raise EmulationFailure(f"the main process {self.main_pid} never reported a status")
        if status & 0x7f:
            return 128 + (status & 0x7f)
        return (status >> 8) & 0xff

    def _settle(self):
        """The run's last user task is gone: a kernel path a strategy stopped
        mid-function (paused, or preempted and waiting for its CPU: a kworker
        between ``tsk->mm = mm`` and ``mmdrop_lazy_tlb()`` in kthread_use_mm(),
        say) is let finish, with the events before it, for at most SETTLE_NS
        of virtual time, before the checks made once quiet (P4, P8, P10, PA1)
        judge the machine: they hold between kernel functions, not inside
        one.  Returns whether no path was left stopped (else the run is not
        judged at quiet).  Other work still queued (timers, delayed work)
        stays queued, as before: the run ends with its last user task."""
        k = self.kernel
        resume = k._resume_paused
        queue = self.engine._queue
        k.stop_condition = lambda: False
        return self.engine.settle(
            self.engine.now + SETTLE_NS,
            lambda: bool(k.preempted_paths) or any(e[3] == resume for e in queue))

    def _on_empty(self):
        raise Deadlock(
            f"deadlock: every task is blocked and no timer is pending (virtual time "
            f"{self.kernel.engine.now} ns)", self.user_tasks())

    def user_tasks(self):
        """The live user tasks, each with its state and what it waits on."""
        lines = []
        for t in sorted(self.kernel.tasks.values(), key=lambda t: t.pid):
            if t.user is None or t.exit_state:
                continue
            state = "running" if t.state == TASK_RUNNING else f"state={t.state:#x}"
            lines.append(f"  {t!r} {state} waits on {t.wait_reason!r} (CPU {t.cpu})")
        return "blocked tasks:\n" + ("\n".join(lines) or "  (none)")

    # -- reports -------------------------------------------------------------------------------

    def replay_command(self):
        """The command that replays this run: the front end that built the
        machine says it (``replay=``, a string or a function giving one when a
        failure is reported); otherwise the constructor call."""
        if callable(self.replay):
            return self.replay()
        if self.replay:
            return self.replay
        variants = [cls.source or cls.name for cls in self.selected]
        strategy = f", strategy={self.strategy.spec()!r}" if self.strategy else ""
        if self.memory_model != "sc":
            strategy += f", memory_model={self.memory_model!r}"
        return f"Machine(nr_cpus={self.nr_cpus}, variants={variants!r}, seed={self.seed}{strategy})"

    def failure_report(self, failure=None):
        """Where the run was, the minimal trace of *failure* (the events of
        the CPUs and tasks it names, repeats folded) and the replay command."""
        k = self.kernel
        strategy = f" strategy={self.strategy.spec()}" if self.strategy else ""
        memory = ""
        if self.memory_model != "sc":
            # the stores other CPUs may not have seen yet
            flight = k.memory_model.in_flight()
            strategy += f" memory_model={self.memory_model}"
            memory = "stores in flight:\n" + ("\n".join(f"  {ln}" for ln in flight)
                                               or "  none") + "\n"
        about = "" if failure is None else f"{failure.message}\n{failure.detail}"
        functions = "" if k.tp.function else \
            " (the replay adds the variant's function calls)"
        variants = ",".join(cls.name for cls in self.variant_classes.values())
        return (f"seed={self.seed} variant={variants} cpus={self.nr_cpus}{strategy} "
                f"virtual time={self.engine.now} ns\n"
                f"{memory}minimal trace{functions}:\n{k.tp.minimal_trace(about)}\n"
                f"replay: {self.replay_command()}")

    def trace_text(self):
        return self.kernel.tp.text()

    def stats(self):
        """Counters of the run.  ``mm_cid_*_per_switch`` count what the
        variant's switch_mm_cid() did at each context switch (seed 001's and
        v7.0's claims); ``scan <name>`` gives invocations and duration
        avg/max/sum in us of a variant's scan, as seed 000 tabulates them."""
        k = self.kernel
        c = k.counters
        switches = max(1, k.nr_switches)
        stats = {
            "virtual_ns": self.engine.now,
            "events": self.engine.events,
            "context_switches": k.nr_switches,
            "host_handoffs": self.engine.handoffs,
            "lock_acquisitions": c.lock_acquire,
            "atomic_ops": c.atomic,
            "locks_per_switch": c.lock_acquire / switches,
            "atomics_per_switch": c.atomic / switches,
            "mm_cid_locks_per_switch": k.switch_mm_cid_locks / switches,
            "mm_cid_atomics_per_switch": k.switch_mm_cid_atomics / switches,
            "mm_allocated": k.mms_allocated,
            "mm_freed": k.mms_freed,
        }
        stats["ipis"] = " ".join(f"cpu{rq.cpu}={rq.ipis}" for rq in k.rqs if rq.ipis) or "0"
        stats.update(k.page_alloc_stats.as_stats(k))
        if self.osnoise is not None:
            for cpu, s in sorted(self.osnoise.summary().items()):
                causes = ", ".join(f"{c} {n}" for c, n in sorted(s["causes"].items()))
                stats[f"isolated cpu{cpu} interruptions"] = (
                    f"{s['count']} total={s['total_ns'] / 1000:.1f} us "
                    f"longest={s['max_ns'] / 1000:.1f} us ({causes})")
        stats.update(k.lazy_tlb_stats())         # lazy_tlb_*: kernel/lazy_tlb.py
        for name, durations in sorted(k.scan_stats.items()):
            n = len(durations)
            stats[f"scan {name}"] = (f"invocations={n} duration avg/max/sum="
                                     f"{sum(durations) / n / 1000:.1f}/{max(durations) / 1000:.1f}/"
                                     f"{sum(durations) / 1000:.1f} us")
        return stats

    def live_host_threads(self):
        return [c.thread for c in self.engine.hosts if c.thread.is_alive()]
