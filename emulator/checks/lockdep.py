"""lockdep's lock-order graph: a cycle among lock classes is an error even when
no deadlock happened in the run that recorded it.

Every acquisition of a spinlock or mutex adds an edge from each class the
acquiring context already holds to the class being taken.  An edge that closes
a cycle is reported as lockdep reports it, "possible circular locking
dependency", with where the opposite chain was first seen.

A lock's class is its name with the instance numbers taken out
(``rq3->__lock`` -> ``rq->__lock``, ``mm#5->cid_lock`` -> ``mm->cid_lock``,
``main[6]->pi_lock`` -> ``task->pi_lock``).  Nesting two locks of one class
(two runqueues in load balancing) is not checked: the kernel annotates those
with nesting subclasses, which the model does not have.  Interrupt-safety
(a lock taken in interrupt context and with interrupts on elsewhere) is not
checked yet.
"""

import re

from ..errors import EmulationFailure

_INSTANCE = (
    (re.compile(r"\brq\d+"), "rq"),
    (re.compile(r"\bmm#\d+"), "mm"),
    (re.compile(r"[\w/:.-]+\[\d+\]"), "task"),
)


class LockOrderViolation(EmulationFailure):
    kind = "lock order"


def lock_class(name):
    for pattern, replacement in _INSTANCE:
        name = pattern.sub(replacement, name)
    return name


class Lockdep:
    def __init__(self, kernel):
        self.k = kernel
        self.after = {}          # class -> {class taken while holding it: where first seen}
        self.classes = {}        # lock name -> class, so the regexes run once per name

    def acquire(self, held, lock):
        """*lock* is being taken by a context holding *held*."""
        new = self._class(lock.name)
        after = self.after
        for h in held:
            old = self._class(h.name)
            if old == new:
                continue
            edges = after.get(old)
            if edges is None:
                edges = after[old] = {}
            elif new in edges:
                continue
            chain = self._path(new, old)
            if chain is not None:
                k = self.k
                raise LockOrderViolation(
                    f"WARNING: possible circular locking dependency detected: {k.cur!r} on "
                    f"CPU {k.cpu} is trying to acquire {new} while holding {old}",
                    "the existing dependency chain is:\n" + "\n".join(
                        f"  {a} -> {b}, first seen {self.after[a][b]}" for a, b in chain))
            edges[new] = self._where()

    def _class(self, name):
        cls = self.classes.get(name)
        if cls is None:
            cls = self.classes[name] = lock_class(name)
        return cls

    def _path(self, src, dst):
        """A chain of recorded edges from *src* to *dst*, or None."""
        stack = [(src, [])]
        seen = {src}
        while stack:
            node, path = stack.pop()
            for nxt in self.after.get(node, ()):
                step = path + [(node, nxt)]
                if nxt == dst:
                    return step
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, step))
        return None

    def _where(self):
        from .kasan import call_site
        k = self.k
        return f"in {call_site(3)} by {k.cur!r} on CPU {k.cpu} at {k.engine.now} ns"
