"""The engine: virtual clock, event queue, the one seeded chooser, and contexts.

It knows nothing of CPUs, tasks or mm_cid.  Three kinds of context run on it,
exactly one at a time:

- the *loop* itself, which pops events in ``(time, tiebreak, seq)`` order and
  calls their handlers (interrupt context, in kernel terms);
- *kernel stacks*: one greenlet per emulated task, on the engine's host thread.
  A kernel path that blocks switches to another stack or back to the loop; a
  kernel path is therefore never assumed to run to completion in one step, and
  the exploration strategies can suspend one at a scheduling point;
- *host contexts*: one real host thread per emulated body.  A host context runs
  only while it holds the baton; it gives the baton back when its body calls
  into the kernel.  Control passes by one lock per thread, never a shared
  condition (peer-tools.md 3.3: a shared Condition costs 40x at 128 threads).

Virtual time advances only when the loop pops a later event: nothing waits on
the wall clock, except the watchdog that bounds how long a body may hold the
baton without calling the API.

The loop's safe point is between two events: no kernel path, host hand-off or
callback is half done there.  Ctrl-C and SIGTERM (emulator.interrupt) only
stop the loop, which raises `Interrupted` at that point.
"""

import contextvars
import ctypes
import gc
import heapq
import random
import threading
from heapq import heappush

from greenlet import GreenletExit, getcurrent, greenlet

from . import interrupt as _interrupt
from .errors import BatonTimeout, Interrupted, Terminated

__all__ = ["Chooser", "Engine", "HostContext", "TERMINATE"]


class Chooser:
    """Every nondeterministic choice of a run goes through here.

    Same seed, same configuration, same variant => the same choices, and so the
    same trace byte for byte.  Exploration strategies replace this object.
    """

    def __init__(self, seed):
        self.seed = seed
        self._random = random.Random(seed)
        self.getrandbits = self._random.getrandbits

    def below(self, n):
        """A number in ``[0, n)``."""
        return self._random.randrange(n) if n > 1 else 0

    def pick(self, seq):
        """One element of the non-empty sequence *seq*."""
        return seq[self.below(len(seq))]

    def pick_bit(self, mask, nbits):
        """A set bit of the non-zero int *mask*: the first at or above a random
        start in ``[0, nbits)``, wrapping around.  O(words), not O(bits)."""
        start = self._random.randrange(nbits) if nbits > 1 else 0
        high = mask >> start
        if high:
            return start + (high & -high).bit_length() - 1
        return (mask & -mask).bit_length() - 1


# The collector's youngest generation while runs go on: a fork makes some
# forty container objects (task_struct, mm, locks, wait queues, a kernel
# stack's frames), most of them dead within a few forks.  At CPython's
# default threshold (700) they outlive a young collection or two first and
# the old generations' collections, which rescan every live object, took
# 15-25 % of a fork storm's time.  Collections are invisible to the model:
# no run changes.
_YOUNG_THRESHOLD = 10_000
_gc_runs = [0, None]             # runs going on, the threshold before the first


def _gc_enter():
    if _gc_runs[0] == 0:
        before = gc.get_threshold()
        _gc_runs[1] = before
        gc.set_threshold(max(before[0], _YOUNG_THRESHOLD), *before[1:])
    _gc_runs[0] += 1


def _gc_leave():
    _gc_runs[0] -= 1
    if _gc_runs[0] == 0:
        gc.set_threshold(*_gc_runs[1])


# An event is ``[key, seq, time, fn, arg]``: the key packs time and a tiebreak
# drawn from the chooser into one int, the insertion sequence breaks the rare
# remaining tie.
_TIME_SHIFT = 24


class _StackFreed(BaseException):
    """Thrown into a dead task's kernel stack by free_stack(): it unwinds
    to the stack's base, which parks the greenlet for the next task."""


class Engine:
    """Virtual clock in ns and a heap of events.

    Same-time events are ordered by a tiebreak drawn from the chooser, then by
    insertion order, so a seed picks one order and another seed may pick
    another.  A cancelled event keeps its slot with ``fn = None``.
    """

    def __init__(self, seed=0, baton_timeout=10.0):
        self.now = 0
        self.chooser = Chooser(seed)
        self._queue = []
        self._seq = 0
        # Same-time order: a permutation of the insertion sequence keyed by a
        # number the chooser draws once (an odd multiplier and a mask), so
        # that no event pays a call to the random generator.
        self._mul = self.chooser.getrandbits(62) | 1
        self._xor = self.chooser.getrandbits(24)
        self.events = 0
        self.handoffs = 0
        self.baton_timeout = baton_timeout
        # The engine thread waits on this lock while a host context runs.
        self.baton = threading.Lock()
        self.baton.acquire()
        self.loop = None
        self.starter = None             # begins new kernel stacks (start_stack())
        self.before_first_host = None   # called once, before the first host thread
        self.stacks = {}                # live kernel stacks (an ordered set)
        self.free_stacks = []           # task stacks parked for the next task
        self.hosts = []
        self.idle_hosts = []            # host threads waiting for a body (_HostThread)
        self.stopped = False
        self.interrupted = None       # the signal that stopped the loop (interrupt())
        self.baton_held = False       # a host body runs; its own timeout watches it
        self.outside = False          # a step-by-step run is back with its caller

    # -- events ---------------------------------------------------------------

    def at(self, when, fn, arg=None):
        """Schedule ``fn(arg)`` at virtual time *when*; returns a cancellable entry."""
        seq = self._seq = self._seq + 1
        entry = [(when << _TIME_SHIFT) | ((((seq * self._mul) >> 20) ^ self._xor) & 0xffffff),
                 seq, when, fn, arg]
        heappush(self._queue, entry)
        return entry

    def after(self, delay, fn, arg=None):
        """Schedule ``fn(arg)`` *delay* ns from now."""
        return self.at(self.now + delay, fn, arg)

    @staticmethod
    def cancel(entry):
        """Cancel a pending event (a no-op if it already ran)."""
        if entry is not None:
            entry[3] = None

    def pending(self):
        """Live events as ``(time, fn, arg)``, in the order they would run."""
        return [tuple(e[2:]) for e in sorted(self._queue) if e[3] is not None]

    def run(self, on_empty):
        """Run events until ``stopped`` is set.  When the queue runs dry
        first, ``on_empty()`` must raise (a deadlock) or schedule something.
        Raises `Interrupted` if interrupt() stopped it."""
        self.loop = getcurrent()
        if self.starter is None:
            self.starter = greenlet(self._start_stacks, parent=self.loop)
            self.starter.switch()
        queue = self._queue
        pop = heapq.heappop
        _gc_enter()
        try:
            while not self.stopped:
                if not queue:
                    on_empty()
                    continue
                entry = pop(queue)
                fn = entry[3]
                if fn is None:
                    continue
                self.now = entry[2]
                self.events += 1
                fn(entry[4])
        finally:
            _gc_leave()
        if self.interrupted is not None:
            _interrupt.take()
            raise Interrupted(self.interrupted)

    def settle(self, until, busy):
        """After run() stopped: run the events still queued while ``busy()``
        holds, up to virtual time *until*; returns whether it stopped holding.
        Raises `Interrupted` as run() does."""
        queue = self._queue
        pop = heapq.heappop
        self.stopped = False
        _gc_enter()
        try:
            while not self.stopped:
                if not busy():
                    return True
                if not queue:
                    return False
                entry = pop(queue)
                if entry[3] is None:
                    continue
                if entry[2] > until:
                    heapq.heappush(queue, entry)
                    break
                self.now = entry[2]
                self.events += 1
                entry[3](entry[4])
        finally:
            _gc_leave()
            if self.interrupted is not None:
                _interrupt.take()
                raise Interrupted(self.interrupted)
        return False

    def interrupt(self, signum):
        """Stop the loop at its next safe point, between two events, where
        run() raises `Interrupted`; called from a signal handler, so it only
        sets two attributes."""
        self.interrupted = signum
        self.stopped = True

    # -- kernel stacks ----------------------------------------------------------

    def new_stack(self, fn):
        """A kernel stack (greenlet) whose first switch, from the loop,
        calls ``fn(*args)`` (an idle task's).  Its parent is the loop, so an
        exception in it surfaces in ``run``."""
        stack = greenlet(fn, parent=self.loop)
        self.stacks[stack] = None
        return stack

    def task_stack(self):
        """A kernel stack for a new task, begun with start_stack(): one a
        dead task left (free_stack()), or a new one."""
        free = self.free_stacks
        stack = free.pop() if free else greenlet(self._stack_base, parent=self.loop)
        self.stacks[stack] = None
        return stack

    def start_stack(self, stack, fn, arg):
        """Switch from the current kernel stack to *stack* (task_stack()),
        which runs ``fn(arg)`` from its base; returns what the current stack
        is later switched back to with, as ``stack.switch()`` would.

        A greenlet begins on top of the C stack, and with the Python
        recursion depth, of the greenlet that first switches to it.  A new
        task's kernel stack begins on its own, in the kernel (copy_thread()
        sets up ret_from_fork at the top of a fresh stack): begun from the
        task switching to it, a dead task's successor would sit on the dead
        one, and a run of new tasks each switched to by the one before it as
        it exits (children forked faster than they run) would nest without
        bound, to a RecursionError in the first deep call (__mmdrop()'s
        KASAN poisoning, about 100 forks in).  The starter begins each new
        greenlet at the loop's depth instead, and a stack given back by a
        dead task is already there, at its base."""
        if stack:                               # parked at its base
            return stack.switch((fn, arg))
        return self.starter.switch((stack, (fn, arg)))

    def _start_stacks(self):
        """The starter's body: park at the loop's depth, then begin each
        greenlet start_stack() hands over from here."""
        stack, work = self.loop.switch()
        while True:
            stack, work = stack.switch(work)

    def _stack_base(self, work):
        """The base of a task's kernel stack: run ``fn(arg)``; when
        free_stack() unwinds it, park for the next task (a greenlet's start
        and end cost 15 us, a task's whole fork and exit 100-200 us)."""
        me = getcurrent()
        while True:
            fn, arg = work
            try:
                return fn(arg)
            except _StackFreed:
                pass
            back, me.parent = me.parent, self.loop
            self.free_stacks.append(me)
            work = back.switch()

    def free_stack(self, stack):
        """Unwind the suspended kernel *stack* of a task that never runs
        again, now, from the current kernel stack: a dead task's stack goes
        at its last switch (put_task_stack()), as in the kernel, not at the
        end of the run (a fork storm would keep every child's, about 10 KB
        of saved C stack each), and the greenlet serves the next new task.
        What the unwinding raises is dropped (the task is gone), and with
        it the greenlet."""
        del self.stacks[stack]
        stack.parent = getcurrent()             # its unwinding ends back here
        try:
            stack.throw(_StackFreed)
        except _StackFreed:
            pass                                # not a task's stack: it ended
        except Exception:                       # noqa: BLE001 - see above
            pass

    def reap_stacks(self):
        """Unwind every kernel stack still suspended; called from the loop's
        greenlet once a run is over (ended, failed or abandoned).

        Greenlets take no part in garbage collection: a suspended one keeps
        its frames, and through them its whole machine, alive for good, and
        one the collector does kill later unwinds (finally blocks and all)
        in whatever run is going on then.  Here each gets GreenletExit where
        it waits, now; one that switches away while unwinding gets it again.
        What its unwinding raises instead is dropped: the run is over."""
        stacks, self.stacks = list(self.stacks) + self.free_stacks, {}
        self.free_stacks = []
        if self.starter is not None:
            stacks.append(self.starter)
            self.starter = None
        for stack in stacks:
            self._unwind(stack)

    @staticmethod
    def _unwind(stack):
        for _ in range(100):
            if not stack:                   # dead, or never started
                break
            try:
                stack.throw(GreenletExit)
            except Exception:               # noqa: BLE001 - see reap_stacks()
                pass

    # -- host contexts ----------------------------------------------------------

    def new_host(self, name, body, owner):
        if self.before_first_host is not None:
            first, self.before_first_host = self.before_first_host, None
            first()
        ctx = HostContext(self, name, body, owner)
        self.hosts.append(ctx)
        return ctx

    def terminate_hosts(self):
        """Unwind every host thread still alive; return those that would not end."""
        stuck = []
        for ctx in self.hosts:
            if not ctx.terminate():
                stuck.append(ctx)
        idle, self.idle_hosts = self.idle_hosts, []
        for worker in idle:
            worker.quit()
        self.hosts = [c for c in self.hosts if c.thread.is_alive()]
        return stuck


TERMINATE = object()
_tls = threading.local()


def current_host():
    """The host context of the calling thread, or None outside emulated bodies."""
    return getattr(_tls, "ctx", None)


class _HostThread:
    """A host thread that runs a run's bodies one after another: once a
    body's task is gone (HostContext.terminate()), the thread waits for the
    next body (starting and joining a thread costs about 60 us, the fork,
    exit and wait of a body about 300 us).  Each body begins in a new
    contextvars context, as on a new thread; what it left in a
    threading.local() the next body on the thread sees (bodies keep their
    per-thread state in their emulated thread's, as libc's TLS does)."""

    __slots__ = ("thread", "go", "ctx")

    def __init__(self, name):
        self.go = threading.Lock()      # the baton's way to the body, or the next body
        self.go.acquire()
        self.ctx = None
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def _serve(self):
        while True:
            ctx = self.ctx
            if ctx is None:
                return
            contextvars.Context().run(ctx._bootstrap)
            _tls.ctx = None
            if ctx.runaway:
                return                  # stopped by an asynchronous exception: not reused
            ctx.done.release()
            self.go.acquire()

    def quit(self, timeout=2.0):
        """End the thread, which waits for a body (or was never started)."""
        self.ctx = None
        if self.thread.ident is not None:
            self.go.release()
            self.thread.join(timeout)


class HostContext:
    """A real host thread running one emulated body, one baton hand-off at a time.

    Engine side: ``resume(reply)`` gives the baton to the body, which continues
    with *reply* as the result of the call it made, and returns the body's next
    request once it hands the baton back.  Body side: ``call(request)`` hands
    the baton back with *request* and waits for the reply.  The thread is
    one the run's ended bodies left (`_HostThread`), or a new one.
    """

    __slots__ = ("engine", "name", "body", "owner", "worker", "thread", "_go", "done",
                 "request", "reply", "started", "finished", "terminated", "runaway")

    def __init__(self, engine, name, body, owner):
        self.engine = engine
        self.name = name
        self.body = body
        self.owner = owner          # the emulated task, for the body's API calls
        idle = engine.idle_hosts
        worker = self.worker = idle.pop() if idle else _HostThread(name)
        worker.ctx = self
        self.thread = worker.thread
        self._go = worker.go
        self.done = threading.Lock()    # released once the body has ended
        self.done.acquire()
        self.request = None
        self.reply = None
        self.started = False
        self.finished = False
        self.terminated = False
        self.runaway = False          # kept the baton past the timeout

    # engine side

    def resume(self, reply):
        engine = self.engine
        self.reply = reply
        engine.handoffs += 1
        engine.baton_held = True
        if not self.started:
            self.started = True
            if self.thread.is_alive():
                self.thread.name = self.name
                self._go.release()
            else:
                self.thread.start()
        else:
            self._go.release()
        got = engine.baton.acquire(timeout=engine.baton_timeout)
        engine.baton_held = False
        if not got:
            self.runaway = True
            raise BatonTimeout(
                f"{self.name} held the baton for more than {engine.baton_timeout:g} s of "
                f"real time without calling the emulator API (virtual time {engine.now} ns)")
        return self.request

    def terminate(self, timeout=2.0):
        """End the body: unwind it with `Terminated`.  True if it ended; its
        thread then waits for the run's next body."""
        worker = self.worker
        if worker is None:
            return True                 # ended already
        if not self.started:
            self.terminated = True
            self.worker = None
            worker.ctx = None
            self.engine.idle_hosts.append(worker)
            return True
        if not self.finished and not self.terminated:
            self.terminated = True
            self.reply = TERMINATE
            if not self.runaway:
                self._go.release()
        if not self.runaway and self.done.acquire(timeout=timeout):
            self.worker = None
            self.engine.idle_hosts.append(worker)
            return True
        # The body is spinning in Python without calling the API: raise in it.
        self.runaway = True             # its thread ends with it
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(self.thread.ident), ctypes.py_object(Terminated))
        self.thread.join(timeout)
        if self.thread.is_alive():
            return False
        self.worker = None
        return True

    # body side

    def call(self, request):
        if self.terminated:
            raise Terminated()
        self.request = request
        self.engine.baton.release()
        self._go.acquire()
        reply = self.reply
        if reply is TERMINATE:
            raise Terminated()
        return reply

    def _bootstrap(self):
        _tls.ctx = self
        try:
            result = self.body()
            request = ("return", result)
        except Terminated:
            self.finished = True
            return
        except BaseException as exc:  # noqa: BLE001 - reported as the task's crash
            request = ("crash", exc)
        if self.terminated:
            self.finished = True
            return
        self.request = request
        self.finished = True
        self.engine.baton.release()
