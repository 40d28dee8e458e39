"""The scheduling point: what a kernel path does at a shared-memory primitive
while a strategy explores.

Every primitive of emulator.kernel.locking calls ``kernel.sched_point_hook``
(None by default: each path runs to its next block).  A strategy installs
:func:`sched_point_hook` there; at each point it asks the strategy whether
the running path goes on, pauses for some virtual ns (other CPUs' paths and
events run meanwhile: Kernel.pause_kernel_path) or, at a preemptible point,
is preempted by the tasks queued on its CPU (Kernel.preempt_kernel_path, a
PREEMPT kernel's preemption).  The kernel knows nothing of strategies; the
mechanism of stopping a path is the kernel's, the decision is made here.

Only paths in task context pause: interrupt context and the boot path run
through (interrupt handlers run to completion on the event loop).
"""

from greenlet import getcurrent

__all__ = ["sched_point_hook"]

# The points that access memory through the model, where a path may wait for
# another CPU's access to the same object (memory_model.WeakModel.postpone_ns);
# not lock operations, whose order the pauses explore.
_ACCESSES = frozenset([
    "READ_ONCE", "WRITE_ONCE", "smp_load_acquire", "smp_store_release", "cmpxchg", "xchg",
    "atomic_read", "atomic_set", "atomic_inc", "atomic_dec", "atomic_dec_and_test",
    "atomic_inc_return", "set_bit", "clear_bit", "test_and_set_bit",
])


def sched_point_hook(k, strategy):
    """The hook for kernel *k*, deciding with *strategy*."""
    rqs = k.rqs
    chooser = k.chooser
    pause_ns = strategy.pause_ns
    observe = strategy.observe          # None, or a recorder of every point
    # weak: the CPUs whose path stored to a lingering site (memory_model.py)
    memory = getattr(k, "memory_model", None)
    lingering = getattr(memory, "lingering", None)
    # weak: paths that wait at an access for another CPU's access to the object
    postpone = getattr(memory, "postpone_ns", None) if lingering is not None else None
    waiting = k.paused_until

    if observe is not None:
        # The non-atomic helpers (__cpumask_set_cpu() ...) are accesses, not points.
        k.access_hook = lambda kind, obj: observe(k, kind, obj)

    def sched_point(kind, obj):
        t = k.cur
        if waiting and id(obj) in waiting and waiting[id(obj)][2] != k.cpu:
            # Another CPU's path waits for an access to obj: this is one.
            # Which of the two goes first is the chooser's.
            k.wake_paused_path(obj)
            if chooser.below(2) and not (k.in_irq or t.stack is None or getcurrent() is not t.stack):
                k.pause_kernel_path(1)
        if observe is not None:
            observe(k, kind, obj)
        if lingering is not None and lingering[k.cpu]:
            lingering[k.cpu] = False       # this CPU's next point, if its path may pause
            if not (k.in_irq or t.stack is None or getcurrent() is not t.stack):
                memory.lingers += 1
                k.pause_kernel_path(1 + chooser.below(memory.LINGER_MAX_NS))
                return
        if k.in_irq or t.stack is None or getcurrent() is not t.stack:
            return
        preemptible = k.preemptible(t)
        if postpone is not None and kind in _ACCESSES and id(obj) not in waiting:
            ns = postpone(kind, obj, preemptible)
            if ns is not None:
                k.pause_kernel_path(ns, until=obj)
                return
        # Where a real kernel may stop this path for as long as interrupts and
        # the tasks preempting it take: where delays of milliseconds happen.
        delay = pause_ns(kind, preemptible)
        if delay is not None:
            if preemptible and strategy.resched and k.preempt_kernel_path():
                return
            k.pause_kernel_path(delay)
        elif preemptible and strategy.resched_p and rqs[k.cpu].nr_running > 1 and \
                chooser.getrandbits(16) < strategy.resched_p * 65536:
            # A PREEMPT kernel: other tasks wait for this CPU, the path may be
            # preempted wherever it is preemptible.
            k.preempt_kernel_path()
    return sched_point
