"""lockdep's lock-order graph and interrupt usage: a cycle among lock classes is
an error even when no deadlock happened in the run that recorded it.

Every acquisition of a spinlock or mutex adds an edge from each class the
acquiring context already holds to the class being taken.  An edge that closes
a cycle is reported as lockdep reports it, "possible circular locking
dependency", with where the opposite chain was first seen.

A lock's class is its name with the instance numbers taken out
(``rq3->__lock`` -> ``rq->__lock``, ``mm#5->cid_lock`` -> ``mm->cid_lock``,
``main[6]->pi_lock`` -> ``task->pi_lock``).  Nesting two locks of one class
(two runqueues in load balancing) is not checked: the kernel annotates those
with nesting subclasses, which the model does not have.

Interrupt safety, for spinlocks and hard interrupts (the model has no softirq
context): a class taken in interrupt context is *irq-safe* (IN-HARDIRQ-W), one
taken with interrupts on is *irq-unsafe* (HARDIRQ-ON-W).  A class that is both
is lockdep's "inconsistent lock state" (an interrupt on the CPU holding it
with interrupts on deadlocks on it); an irq-safe class from which the order
graph reaches an irq-unsafe one is "HARDIRQ-safe -> HARDIRQ-unsafe lock order
detected" (the interrupt can wait on the safe lock while its holder waits on
the unsafe one, held by a CPU the interrupt stopped).  Both are reported the
first time the graph and the usage allow them, whatever the run's timing.
"""

import re

from ..errors import EmulationFailure

_INSTANCE = (                 # (what a name must contain to match, the pattern, its class)
    ("rq", re.compile(r"\brq\d+"), "rq"),
    ("mm#", re.compile(r"\bmm#\d+"), "mm"),
    ("pcp", re.compile(r"\bpcp\d+"), "pcp"),
    ("zone", re.compile(r"\bzone\d+"), "zone"),
    ("[", re.compile(r"[\w/:.-]+\[\d+\]"), "task"),
)


class LockOrderViolation(EmulationFailure):
    kind = "lock order"


def lock_class(name):
    for literal, pattern, replacement in _INSTANCE:
        if literal in name:               # (a new mm's locks are new names: each fork's)
            name = pattern.sub(replacement, name)
    return name


class InconsistentLockState(EmulationFailure):
    kind = "lock usage"


# The model's scheduler core takes runqueue locks without turning interrupts
# off first: holding one counts as interrupts off (Kernel.irqs_disabled()), as
# rq_lock_irqsave() would make it.  Their usage with interrupts on is not checked.
IRQS_OFF_BY_CONVENTION = {"rq->__lock"}

IN_HARDIRQ = "IN-HARDIRQ-W"
HARDIRQ_ON = "HARDIRQ-ON-W"


class Lockdep:
    def __init__(self, kernel):
        self.k = kernel
        self.after = {}          # class -> {class taken while holding it: where first seen}
        self.classes = {}        # lock name -> class, so the regexes run once per name
        self.usage = {}          # (class, IN_HARDIRQ or HARDIRQ_ON) -> where first seen
        self.any_irq_safe = False

    def mark_usage(self, lock, in_irq, irqs_on):
        """A spinlock is being taken in interrupt context, or in task context
        with interrupts on: note the usage the first time, and check it."""
        if not (in_irq or irqs_on):
            return
        cls = self._class(lock.name)
        if cls in IRQS_OFF_BY_CONVENTION and not in_irq:
            return
        bit, other = (IN_HARDIRQ, HARDIRQ_ON) if in_irq else (HARDIRQ_ON, IN_HARDIRQ)
        if (cls, bit) in self.usage:
            return
        self.usage[cls, bit] = self._where()
        self.any_irq_safe |= in_irq
        k = self.k
        if (cls, other) in self.usage:
            raise InconsistentLockState(
                f"WARNING: inconsistent lock state: inconsistent {{{other}}} -> {{{bit}}} "
                f"usage: {k.cur!r} on CPU {k.cpu} takes {cls} "
                f"{'in interrupt context' if in_irq else 'with interrupts on'}",
                f"  {{{other}}} first seen {self.usage[cls, other]}\n"
                f"  {{{bit}}} first seen {self.usage[cls, bit]}")
        self._check_irq_safety(cls, cls)

    def _check_irq_safety(self, old, new):
        """No irq-safe class reaching *old* (itself included) may reach an
        irq-unsafe class from *new* (itself included): called when a usage of
        a class is first seen (old = new = the class) and when an edge
        old -> new is first seen."""
        usage = self.usage
        before = {}
        for a, edges in self.after.items():
            for b in edges:
                before.setdefault(b, []).append(a)
        safes = [(old, [])] + self._reachable(old, before)
        unsafes = [(new, [])] + self._reachable(new, self.after)
        for safe, up in safes:
            if (safe, IN_HARDIRQ) not in usage:
                continue
            for unsafe, down in unsafes:
                if (unsafe, HARDIRQ_ON) in usage:
                    chain = [(b, a) for a, b in reversed(up)]
                    if old != new:
                        chain.append((old, new))
                    self._safe_to_unsafe(safe, unsafe, chain + down)

    def _safe_to_unsafe(self, safe, unsafe, chain):
        k = self.k
        raise InconsistentLockState(
            f"WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected: {safe} is taken "
            f"in interrupt context, {unsafe} with interrupts on, and {unsafe} is taken "
            f"while holding {safe} (noticed by {k.cur!r} on CPU {k.cpu})",
            f"  {safe} {{{IN_HARDIRQ}}} first seen {self.usage[safe, IN_HARDIRQ]}\n"
            f"  {unsafe} {{{HARDIRQ_ON}}} first seen {self.usage[unsafe, HARDIRQ_ON]}\n"
            "  the dependency chain:\n" + "\n".join(
                f"    {a} -> {b}, first seen {self.after[a][b]}" for a, b in chain))

    @staticmethod
    def _reachable(src, graph):
        """(class, chain of edges from *src*) for every class *graph* reaches."""
        out = []
        stack = [(src, [])]
        seen = {src}
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    step = path + [(node, nxt)]
                    out.append((nxt, step))
                    stack.append((nxt, step))
        return out

    def acquire(self, held, lock):
        """*lock* is being taken by a context holding *held*."""
        classes = self.classes                  # self._class(), its hits without the call
        new = classes.get(lock.name)
        if new is None:
            new = self._class(lock.name)
        after = self.after
        for h in held:
            old = classes.get(h.name)
            if old is None:
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
            if self.any_irq_safe:
                self._check_irq_safety(old, new)

    def _class(self, name):
        cls = self.classes.get(name)
        if cls is None:
            if len(self.classes) >= 1 << 16:
                self.classes.clear()    # a name per task and per mm: a fork storm's are many
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
