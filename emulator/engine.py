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

import ctypes
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


# An event is ``[key, seq, time, fn, arg]``: the key packs time and a tiebreak
# drawn from the chooser into one int, the insertion sequence breaks the rare
# remaining tie.
_TIME_SHIFT = 24


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
        self.before_first_host = None   # called once, before the first host thread
        self.stacks = []
        self.hosts = []
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
        queue = self._queue
        pop = heapq.heappop
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
        if self.interrupted is not None:
            _interrupt.take()
            raise Interrupted(self.interrupted)

    def interrupt(self, signum):
        """Stop the loop at its next safe point, between two events, where
        run() raises `Interrupted`; called from a signal handler, so it only
        sets two attributes."""
        self.interrupted = signum
        self.stopped = True

    # -- kernel stacks ----------------------------------------------------------

    def new_stack(self, fn):
        """A kernel stack (greenlet) whose first switch calls ``fn(*args)``.
        Its parent is the loop, so an exception in it surfaces in ``run``."""
        stack = greenlet(fn, parent=self.loop)
        self.stacks.append(stack)
        return stack

    def reap_stacks(self):
        """Unwind every kernel stack still suspended; called from the loop's
        greenlet once a run is over (ended, failed or abandoned).

        Greenlets take no part in garbage collection: a suspended one keeps
        its frames, and through them its whole machine, alive for good, and
        one the collector does kill later unwinds (finally blocks and all)
        in whatever run is going on then.  Here each gets GreenletExit where
        it waits, now; one that switches away while unwinding gets it again.
        What its unwinding raises instead is dropped: the run is over."""
        stacks, self.stacks = self.stacks, []
        for stack in stacks:
            for _ in range(100):
                if not stack:               # dead, or never started
                    break
                try:
                    stack.throw(GreenletExit)
                except Exception:           # noqa: BLE001 - see above
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
        self.hosts = [c for c in self.hosts if c.thread.is_alive()]
        return stuck


TERMINATE = object()
_tls = threading.local()


def current_host():
    """The host context of the calling thread, or None outside emulated bodies."""
    return getattr(_tls, "ctx", None)


class HostContext:
    """A real host thread running one emulated body, one baton hand-off at a time.

    Engine side: ``resume(reply)`` gives the baton to the body, which continues
    with *reply* as the result of the call it made, and returns the body's next
    request once it hands the baton back.  Body side: ``call(request)`` hands
    the baton back with *request* and waits for the reply.
    """

    __slots__ = ("engine", "name", "body", "owner", "thread", "_go", "request",
                 "reply", "started", "finished", "terminated", "runaway")

    def __init__(self, engine, name, body, owner):
        self.engine = engine
        self.name = name
        self.body = body
        self.owner = owner          # the emulated task, for the body's API calls
        self._go = threading.Lock()
        self._go.acquire()
        self.thread = threading.Thread(target=self._bootstrap, name=name, daemon=True)
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
        """End the host thread: unwind its body with `Terminated`.  True if it ended."""
        if not self.started:
            self.terminated = True
            return True
        if not self.finished and not self.terminated:
            self.terminated = True
            self.reply = TERMINATE
            if not self.runaway:
                self._go.release()
        if not self.runaway:
            self.thread.join(timeout)
        if self.thread.is_alive():
            # The body is spinning in Python without calling the API: raise in it.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.thread.ident), ctypes.py_object(Terminated))
            self.thread.join(timeout)
        return not self.thread.is_alive()

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
