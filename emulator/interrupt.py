"""Ctrl-C (SIGINT) and SIGTERM: recorded when they come, acted on at a safe point.

Python runs a signal's handler in the main thread between two bytecodes,
wherever that thread is: in kernel code halfway through a change, in a host
body's hand-off, in a weakref or garbage-collector callback, where the
KeyboardInterrupt of the default handler is printed as "Exception ignored in
..." and dropped.  While a *scope* is open, the handler here records the
signal instead:

- a run (``Machine._drive``) opens one for as long as it runs, a run driven
  step by step included; its engine is told, and ends the run between two
  events by raising `Interrupted` (``Engine.run``); the run then ends as an
  abandoned run ends (stacks unwound, host threads joined, pinning restored);
- a command of ``python -m emulator`` opens one for its whole length
  (``command=True``) and acts at its checkpoints: between the runs of a
  campaign, and at its end (exit status 130);
- the pytest plugin opens one for the session: outside a run the signal is
  raised at once as `Interrupted` (a KeyboardInterrupt), unless the main
  thread is in a callback that would swallow it or in an import that it would
  leave half done (then the next run, the end of collection or of the test
  acts on it).

A second signal before the last scope closes ends the process at once
(``os._exit(130)``); one within half a second of the first is the same one
(an xdist controller passes a signal on to its workers, which a Ctrl-C
reaches directly too).  A signal ignored when the first scope opens (SIG_IGN: a
background job of a shell script) stays ignored.  Only the main thread can
handle signals; a run in another thread is still told of one it records.
"""

import gc
import os
import signal
import threading
import time
import weakref
import _weakrefset

from .errors import Interrupted

__all__ = ["EXIT_STATUS", "SIGNALS", "enter", "leave", "checkpoint", "forward_to", "received"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_STATUS = 130           # what a shell reports for Ctrl-C; also used for SIGTERM
# A signal this soon after the first is the same interrupt: Ctrl-C reaches an
# xdist worker from the terminal and from its controller passing it on.
REPEAT_S = 0.5


class _State:
    def __init__(self):
        self.depth = 0          # open scopes of the main thread
        self.commands = 0       # of which commands (act only at their checkpoints)
        self.saved = {}         # signal -> the handler the first scope replaced
        self.received = None    # the first signal since the first scope opened
        self.received_at = 0.0
        self.pending = None     # a signal nothing has acted on yet
        self.engines = []       # weak references to the engines of the runs under way
        self.forwards = []      # called with each signal (forward_to())


_state = _State()

# A KeyboardInterrupt raised in these is printed as "Exception ignored" and lost.
_CALLBACK_FILES = {os.path.normcase(m.__file__) for m in (weakref, _weakrefset)} | \
    {os.path.normcase(__file__)}


def _in_callback(frame):
    """True if *frame* or a caller of it is a garbage-collector or weakref
    callback, a finalizer, or this module's own bookkeeping, where a
    KeyboardInterrupt would be lost; or an import, where it would leave the
    module half initialised for the rest of the process (pytest's terminal
    summary then fails to import Hypothesis, interrupted while a test file
    imported it: exit status 1, not 2)."""
    codes = set()
    for cb in gc.callbacks:
        code = getattr(getattr(cb, "__func__", cb), "__code__", None)
        if code is not None:
            codes.add(code)
    while frame is not None:
        code = frame.f_code
        if code in codes or code.co_name == "__del__" or \
                os.path.normcase(code.co_filename) in _CALLBACK_FILES or \
                code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _handler(signum, frame):
    s = _state
    now = time.monotonic()
    if s.received is not None and now - s.received_at < REPEAT_S:
        return                          # the same interrupt, by another way
    for forward in list(s.forwards):
        try:
            forward(signum)
        except Exception:               # noqa: BLE001 - a process already gone
            pass
    if s.received is not None:
        os._exit(EXIT_STATUS)           # the second one: at once
    s.received, s.received_at, s.pending = signum, now, signum
    engines = [e for e in (ref() for ref in s.engines) if e is not None]
    for engine in engines:
        engine.interrupt(signum)
    if engines or s.commands or _in_callback(frame):
        return
    s.pending = None
    raise Interrupted(signum)


def _on_main_thread():
    return threading.current_thread() is threading.main_thread()


def enter(engine=None, command=False):
    """Open a scope (nested scopes count); *engine* is a run's, told of a
    signal the moment it is recorded.  Returns the token for leave()."""
    s = _state
    token = _on_main_thread()
    if token:
        if s.depth == 0:
            for signum in SIGNALS:
                previous = signal.getsignal(signum)
                if previous is signal.SIG_IGN or previous is None:     # ignored, or not Python's
                    continue
                s.saved[signum] = previous
                signal.signal(signum, _handler)
        s.depth += 1
        s.commands += bool(command)
    if engine is not None:
        s.engines.append(weakref.ref(engine))   # a run never ended must not keep its machine
        if s.pending is not None:
            engine.interrupt(s.pending)
    return token


def leave(token, engine=None, command=False, take=True):
    """Close the scope enter() opened; returns the signal recorded that nothing
    has acted on yet, which the caller now acts on (None if there is none, or
    if *take* is false and an outer scope remains to act on it)."""
    s = _state
    if engine is not None:
        s.engines = [ref for ref in s.engines if ref() is not engine and ref() is not None]
    if not token:
        return None
    s.commands -= bool(command)
    s.depth -= 1
    signum = None
    if take or s.depth == 0:
        signum, s.pending = s.pending, None
    if s.depth == 0:
        saved, s.saved = s.saved, {}
        for sig, previous in saved.items():
            signal.signal(sig, previous)
        s.received = s.pending = None
        s.forwards = []
    return signum


def forward_to(fn):
    """Call ``fn(signum)`` with each signal recorded until the last scope
    closes (an xdist controller passes it on to its workers)."""
    _state.forwards.append(fn)


def received():
    """The signal received since the first scope opened, or None."""
    return _state.received


def checkpoint():
    """Act on a signal recorded and not acted on: raise `Interrupted`."""
    signum, _state.pending = _state.pending, None
    if signum is not None:
        raise Interrupted(signum)


def take():
    """The signal an engine acts on now (nothing else acts on it again)."""
    signum, _state.pending = _state.pending, None
    return signum
