"""Shared-memory primitives: locks, atomics, READ_ONCE/WRITE_ONCE, barriers.

Every primitive here is a *scheduling point*: it calls the kernel's
``sched_point_hook`` (none by default: each path runs to its next block),
which an exploring strategy installs to switch to another CPU's kernel path
(emulator.explore.point).  Kernel
code and variants must reach shared state only through these, and never assume
a path runs to completion in one step.

Memory model (emulator/kernel/memory_model.py): with ``Machine(memory_model=
"tso" | "weak")`` the accesses and barriers here go through the model's
per-CPU view (store buffers, stale reads); in the default ``sc`` they act on
the object at once, at the cost of one test of ``_memory``.

The primitives also count what they do (``Counters``): lock acquisitions and
atomic operations, so that a variant's cost per context switch is measured.

A lock records its owner (a task, or a CPU in interrupt context) so that
lockdep-style assertions (``lockdep_assert_held``) and the deadlock and lockup
reports can name who holds what.
"""

from ..errors import KernelBug
from .memory_model import NO_STORE as _NO_STORE
from .wait_queue import wait_queue_head_t

_machine = None   # the kernel whose code is running (one per engine thread)
_memory = None    # its memory model: None for sc (memory_model.py)


def _set_running_kernel(kernel):
    global _machine, _memory
    _machine = kernel
    _memory = getattr(kernel, "memory_model", None)


def running_kernel():
    return _machine


class Counters:
    """What the primitives did; read per context switch by the stats report."""

    __slots__ = ("lock_acquire", "atomic", "barrier")

    def __init__(self):
        self.lock_acquire = 0
        self.atomic = 0
        self.barrier = 0


# Each primitive below calls the kernel's sched_point_hook itself, when one is
# installed (a run without an exploration strategy makes millions of points):
# the hook's caller is the primitive and the primitive's caller the kernel
# function, which is how emulator.explore.systematic names a point's site.


# -- plain accesses ----------------------------------------------------------------

def READ_ONCE(obj, field):
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("READ_ONCE", obj)
    if _memory is not None:
        return _memory.load(_machine.cpu, obj, field)
    return getattr(obj, field)


def WRITE_ONCE(obj, field, value):
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("WRITE_ONCE", obj)
    if _memory is not None:
        return _memory.store(_machine.cpu, obj, field, value)
    setattr(obj, field, value)


def smp_load_acquire(obj, field):
    """READ_ONCE() that orders every later access after it (pairs with
    smp_store_release())."""
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("smp_load_acquire", obj)
    if _memory is not None:
        return _memory.load(_machine.cpu, obj, field, acquire=True)
    return getattr(obj, field)


def smp_store_release(obj, field, value):
    """WRITE_ONCE() ordered after every earlier access (pairs with
    smp_load_acquire())."""
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("smp_store_release", obj)
    if _memory is not None:
        return _memory.store(_machine.cpu, obj, field, value, release=True)
    setattr(obj, field, value)


def _barrier(kind):
    k = _machine
    k.counters.barrier += 1
    if _memory is not None:
        _memory.fence(k.cpu, kind)


def smp_mb():
    """Full memory barrier.  Sequentially consistent (sc), a barrier only
    counts and offers a scheduling point; under tso and weak it orders this
    CPU's accesses as memory_model.py says."""
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("smp_mb", None)
    _barrier("mb")


def smp_rmb():
    """Read barrier: later loads see what the loads before it saw carried."""
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("smp_rmb", None)
    _barrier("rmb")


def smp_wmb():
    """Write barrier: this CPU's earlier stores reach every CPU before its later ones."""
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("smp_wmb", None)
    _barrier("wmb")


# Full barriers by another name (include/asm-generic/barrier.h, include/linux/spinlock.h).
smp_mb__before_atomic = smp_mb
smp_mb__after_atomic = smp_mb
smp_mb__after_spinlock = smp_mb


def cpu_relax():
    """The pause in a retry loop: virtual time passes on this CPU, and a CPU
    that keeps spinning past the lockup threshold is a hard lockup."""
    k = _machine
    t = k.cur
    now = k.engine.now
    if t.relax_since is None:
        t.relax_since = now
    k.cpu_relax("cpu_relax() loop", now - t.relax_since)


# -- atomics -------------------------------------------------------------------------

def cmpxchg(obj, field, old, new):
    """Atomically replace *old* by *new*; returns the value found."""
    k = _machine
    k.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("cmpxchg", obj)
    if _memory is not None:       # fully ordered when it succeeds, unordered when it fails
        return _memory.rmw(k.cpu, obj, field, lambda cur: new if cur == old else _NO_STORE)
    cur = getattr(obj, field)
    if cur == old:
        setattr(obj, field, new)
    return cur


def try_cmpxchg(obj, field, old, new):
    """try_cmpxchg(&obj->field, &old, new): returns ``(succeeded, value found)``;
    the kernel writes the value found back into *old*, Python returns it."""
    cur = cmpxchg(obj, field, old, new)
    return cur == old, cur


def xchg(obj, field, new):
    k = _machine
    k.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("xchg", obj)
    if _memory is not None:
        return _memory.rmw(k.cpu, obj, field, lambda cur: new)
    cur = getattr(obj, field)
    setattr(obj, field, new)
    return cur


class atomic_t:
    __slots__ = ("counter",)

    def __init__(self, value=0):
        self.counter = value

    def __repr__(self):
        return f"atomic_t({self.counter})"


def atomic_read(v):
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("atomic_read", v)
    if _memory is not None:
        return _memory.load(_machine.cpu, v, "counter")
    return v.counter


def atomic_set(v, i):
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("atomic_set", v)
    if _memory is not None:
        return _memory.store(_machine.cpu, v, "counter", i)
    v.counter = i


# Documentation/atomic_t.txt: the atomics that return no value are unordered
# (RMW, relaxed); those that return one are fully ordered.

def atomic_inc(v):
    _machine.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("atomic_inc", v)
    if _memory is not None:
        _memory.rmw(_machine.cpu, v, "counter", _inc, ordered=False)
        return
    v.counter += 1


def atomic_dec(v):
    _machine.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("atomic_dec", v)
    if _memory is not None:
        _memory.rmw(_machine.cpu, v, "counter", _dec, ordered=False)
        return
    v.counter -= 1


def atomic_dec_and_test(v):
    _machine.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("atomic_dec_and_test", v)
    if _memory is not None:
        return _memory.rmw(_machine.cpu, v, "counter", _dec) == 1
    v.counter -= 1
    return v.counter == 0


def atomic_inc_return(v):
    _machine.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("atomic_inc_return", v)
    if _memory is not None:
        return _memory.rmw(_machine.cpu, v, "counter", _inc) + 1
    v.counter += 1
    return v.counter


def _inc(x):
    return x + 1


def _dec(x):
    return x - 1


# -- bit operations on a Cpumask ------------------------------------------------------

def __cpumask_set_cpu(cpu, mask):
    """Non-atomic: the caller serializes (lock held).  Not a scheduling point,
    but an access a systematic search records (``access_hook``): a racy patch
    that skips the lock races with it."""
    hook = _machine.access_hook
    if hook is not None:
        hook("__set_bit", mask)
    mask.bits |= 1 << cpu


def __cpumask_clear_cpu(cpu, mask):
    hook = _machine.access_hook
    if hook is not None:
        hook("__clear_bit", mask)
    mask.bits &= ~(1 << cpu)


def cpumask_set_cpu(cpu, mask):
    _machine.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("set_bit", mask)
    if _memory is not None:       # set_bit(): atomic, unordered
        _memory.rmw(_machine.cpu, mask, "bits", lambda b: b | 1 << cpu, ordered=False)
        return
    mask.bits |= 1 << cpu


def cpumask_clear_cpu(cpu, mask):
    _machine.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("clear_bit", mask)
    if _memory is not None:       # clear_bit(): atomic, unordered
        _memory.rmw(_machine.cpu, mask, "bits", lambda b: b & ~(1 << cpu), ordered=False)
        return
    mask.bits &= ~(1 << cpu)


def cpumask_test_and_set_cpu(cpu, mask):
    _machine.counters.atomic += 1
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("test_and_set_bit", mask)
    if _memory is not None:       # test_and_set_bit(): fully ordered
        return (_memory.rmw(_machine.cpu, mask, "bits", lambda b: b | 1 << cpu) >> cpu) & 1
    old = (mask.bits >> cpu) & 1
    mask.bits |= 1 << cpu
    return old


# Python would mangle a leading double underscore inside classes: export the
# kernel's non-atomic helpers under single-underscore names too (DESIGN.md).
_cpumask_set_cpu = __cpumask_set_cpu
_cpumask_clear_cpu = __cpumask_clear_cpu


# -- preemption (include/linux/preempt.h) --------------------------------------------

def preempt_disable():
    """No preemption of this path until preempt_enable(): it stays on its CPU
    and no other task runs there.  Not a scheduling point of its own."""
    _machine.cur.preempt_count += 1


def preempt_enable_no_resched():
    _machine.cur.preempt_count -= 1


def preempt_enable():
    """As preempt_enable_no_resched(), then, on a PREEMPT kernel, the
    preemption that was held off (need_resched) happens here."""
    k = _machine
    t = k.cur
    t.preempt_count -= 1
    if t.need_resched and not k.in_irq and k.preemptible(t):
        k.preempt_schedule()


# -- spinlocks ---------------------------------------------------------------------

class raw_spinlock_t:
    """A spinning lock.  ``owner`` is the task holding it (or ``"irq/N"``),
    ``cpu`` its CPU and ``since`` the virtual time it took it (for reports).
    ``max_hold``: the longest time it was held, in ns, for a lock whose
    holds a metric wants (lock_hold_tracked()); -1 for the others."""

    __slots__ = ("name", "owner", "cpu", "since", "max_hold")

    def __init__(self, name="lock"):
        self.name = name
        self.owner = None
        self.cpu = -1
        self.since = None
        self.max_hold = -1

    def __repr__(self):
        return f"<{self.name} held by {self.owner!r}>" if self.owner else f"<{self.name}>"


spinlock_t = raw_spinlock_t


def raw_spin_lock(lock):
    k = _machine
    k.counters.lock_acquire += 1
    if k.sched_point_hook is not None:
        k.sched_point_hook("spin_lock", lock)
    lockdep = k.lockdep
    if lockdep is not None:
        # k.held_locks and k.irqs_disabled() written out (two calls a lock);
        # mark_usage() does nothing in task context with interrupts off.
        if k.in_irq:
            held = k.rqs[k.cpu].irq_held
            if held:
                lockdep.acquire(held, lock)
            lockdep.mark_usage(lock, True, False)
        else:
            cur = k.cur
            held = cur.held_locks
            if cur.held_mutexes:
                held = held + cur.held_mutexes
            if held:
                lockdep.acquire(held, lock)
            rq = k.rqs[k.cpu]
            if not (rq.irqs_disabled > 0 or rq.lock.owner is cur):
                lockdep.mark_usage(lock, False, True)
    if lock.owner is not None:
        k.spin_on_lock(lock)
    lock.cpu = k.cpu
    lock.since = k.engine.now
    if k.in_irq:
        lock.owner = f"irq/{k.cpu}"
        k.rqs[k.cpu].irq_held.append(lock)
    else:
        lock.owner = cur = k.cur
        cur.held_locks.append(lock)
    if _memory is not None:       # ACQUIRE
        _memory.lock_acquired(k.cpu, lock)


def raw_spin_unlock(lock):
    k = _machine
    if lock.owner is None:
        raise KernelBug(f"BUG: unlocking {lock.name}, which is not locked")
    if _memory is not None:       # RELEASE
        _memory.lock_releasing(k.cpu, lock)
    if lock.max_hold >= 0:
        held = k.engine.now - lock.since
        if held > lock.max_hold:
            lock.max_hold = held
    lock.owner = None
    lock.cpu = -1
    if k.in_irq:
        k.rqs[k.cpu].irq_held.remove(lock)
    else:
        k.cur.held_locks.remove(lock)
    if k.sched_point_hook is not None:
        k.sched_point_hook("spin_unlock", lock)


def raw_spin_trylock(lock):
    k = _machine
    hook = _machine.sched_point_hook
    if hook is not None:
        hook("spin_trylock", lock)
    if lock.owner is not None:
        return False
    k.counters.lock_acquire += 1
    lock.owner = k.lock_holder()
    lock.cpu = k.cpu
    lock.since = k.engine.now
    k.held_locks.append(lock)
    if _memory is not None:
        _memory.lock_acquired(k.cpu, lock)
    return True


spin_lock = raw_spin_lock
spin_unlock = raw_spin_unlock
spin_trylock = raw_spin_trylock


def lock_hold_tracked(lock):
    """Record *lock*'s longest hold (``max_hold``) from now on."""
    lock.max_hold = max(lock.max_hold, 0)
    return lock


def spin_lock_irqsave(lock):
    """Interrupts off on this CPU, then the lock; returns the flags."""
    flags = _machine.local_irq_save()
    raw_spin_lock(lock)
    return flags


def spin_unlock_irqrestore(lock, flags):
    raw_spin_unlock(lock)
    _machine.local_irq_restore(flags)


def spin_trylock_irqsave(lock):
    """(taken, flags): interrupts stay off only if the lock was taken."""
    flags = _machine.local_irq_save()
    if raw_spin_trylock(lock):
        return True, flags
    _machine.local_irq_restore(flags)
    return False, None


def lockdep_assert_held(lock):
    if lock.owner is None:
        raise KernelBug(f"WARNING: lockdep_assert_held({lock.name}) failed: not held")


def spinlock_holder(lock, now):
    """Who holds *lock*, on which CPU and since when, as a lockup report
    says it (*now*: the virtual time of the report)."""
    since = "" if lock.since is None else \
        f" since {lock.since / 1e9:.9f} ({(now - lock.since) / 1000:.1f} us)"
    return f"{lock.name} held by {lock.owner!r} on CPU {lock.cpu}{since}"


# -- sleeping locks ----------------------------------------------------------------

class mutex:
    """struct mutex: a sleeping lock, only for task context."""

    __slots__ = ("name", "owner", "wait")

    def __init__(self, name="mutex"):
        self.name = name
        self.owner = None
        self.wait = wait_queue_head_t(name)

    def __repr__(self):
        return f"<{self.name} held by {self.owner!r}>" if self.owner else f"<{self.name}>"


def mutex_lock(lock):
    """Take *lock*, sleeping (TASK_UNINTERRUPTIBLE) while someone else holds it."""
    k = _machine
    k.counters.lock_acquire += 1
    if k.sched_point_hook is not None:
        k.sched_point_hook("mutex_lock", lock)
    if k.in_irq or k.cur.held_locks:
        k.might_sleep()
    cur = k.cur
    if k.lockdep is not None and (cur.held_locks or cur.held_mutexes):
        k.lockdep.acquire(cur.held_locks + cur.held_mutexes, lock)
    if lock.owner is cur:
        raise KernelBug(f"BUG: recursive mutex_lock({lock.name}) by {cur!r}")
    if lock.owner is not None:
        mutex_optimistic_spin(k, cur, lock)
    if lock.owner is not None:
        cur.wait_reason = lock
        k.wait_event(lock.wait, lambda: lock.owner is None)
    lock.owner = cur
    cur.held_mutexes.append(lock)
    if _memory is not None:
        _memory.lock_acquired(k.cpu, lock)


def owner_on_cpu(owner):
    """``READ_ONCE(owner->on_cpu) && !vcpu_is_preempted(task_cpu(owner))``
    (include/linux/sched.h).  The model's vCPUs never tell the guest they
    were preempted: vcpu_is_preempted() is false, as on bare metal."""
    return owner.on_cpu


def mutex_optimistic_spin(k, cur, lock):
    """kernel/locking/mutex.c, CONFIG_MUTEX_SPIN_ON_OWNER (default y on SMP):
    before it sleeps, a contended mutex_lock() spins with preemption off
    while the owner runs on a CPU: "We try to spin for acquisition when we
    find that the lock owner is currently running on a (different) CPU and
    while we don't need to reschedule.  The rationale is that if the lock
    owner is running, it is likely to release the lock soon."  It stops
    when the lock is released (the caller takes it), when the owner stops
    running (mutex_spin_on_owner()), or when this CPU needs to reschedule;
    then the caller sleeps.

    Departures: the spinners do not queue on the osq (each looks at the
    owner itself; the kernel lets one spin on the owner, the others on
    their osq node: the same CPUs are busy); a woken waiter does not spin
    again as the first waiter does, and there is no hand-off to it (a
    spinner may take the lock first, as before the hand-off, 9d659ae14b54).
    """
    if cur.need_resched:                          # mutex_can_spin_on_owner()
        return
    cur.preempt_count += 1                        # preempt_disable()
    try:
        spun = 0
        while True:
            owner = lock.owner
            if owner is None or not owner_on_cpu(owner) or cur.need_resched:
                return
            spun = k.cpu_relax(f"mutex {lock.name} (optimistic spin)", spun, lock)
    finally:
        cur.preempt_count -= 1                    # no preemption here: the slow path sleeps


def mutex_trylock(lock):
    """Take *lock* if it is free; returns whether it was taken."""
    k = _machine
    if k.sched_point_hook is not None:
        k.sched_point_hook("mutex_lock", lock)
    if lock.owner is not None:
        return False
    k.counters.lock_acquire += 1
    lock.owner = k.cur
    k.cur.held_mutexes.append(lock)
    if _memory is not None:
        _memory.lock_acquired(k.cpu, lock)
    return True


def mutex_unlock(lock):
    k = _machine
    if lock.owner is not k.cur:
        raise KernelBug(f"BUG: mutex_unlock({lock.name}) by {k.cur!r}, owner {lock.owner!r}")
    if _memory is not None:
        _memory.lock_releasing(k.cpu, lock)
    lock.owner = None
    k.cur.held_mutexes.remove(lock)
    if lock.wait.waiters:
        k.wake_up(lock.wait, 1)
    if k.sched_point_hook is not None:
        k.sched_point_hook("mutex_unlock", lock)
