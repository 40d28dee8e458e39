"""The memory model behind the shared-memory primitives (tools/memory-model).

``Machine(memory_model=...)`` selects one of three:

``sc``
    Sequential consistency, the default: every primitive of
    emulator.kernel.locking acts on the object at once and a barrier only
    counts.  No object of this module exists then (the primitives test one
    module global), so the default costs nothing.

``tso``
    x86-TSO (Owens, Sarkar, Sewell, TPHOLs 2009): a FIFO store buffer per
    CPU.  WRITE_ONCE() and smp_store_release() go into the buffer; a load
    sees the CPU's own newest buffered store to the location (forwarding),
    else memory.  smp_mb(), every atomic read-modify-write (LOCK-prefixed on
    x86: the value-returning ones, a failed cmpxchg and the bit operations
    alike) and a lock acquisition drain the buffer first.  smp_rmb(),
    smp_wmb(), smp_load_acquire() and smp_store_release() are compiler
    barriers on x86.  When a buffered store reaches memory is a choice: the
    litmus runner enumerates it, the machine draws a delay from the chooser
    (at most ``window_ns``) for each store.

``weak``
    The LKMM's operational model (tools/memory-model/Documentation/
    explanation.txt, "AN OPERATIONAL MODEL") as a step simulator can follow
    it, in the form of Promising-style views: each location keeps the stores
    to it in coherence order (its *history*), each CPU a *view*, per
    location the coherence-latest store it must have seen.  A load returns
    any store of the history not older than the CPU's view (a chooser
    decision: choice 0 is the newest), so stores reach each CPU in their own
    time and a CPU may read stale values until a barrier orders it.  A store
    goes into the coherence order anywhere after what its CPU has seen, so
    two CPUs' stores may be coherence-ordered against their execution order
    (a chooser decision: choice 0 appends).  Ordering comes only from:

    - coherence: a CPU never reads a store older than one it has read or
      written (CoRR, CoWR, CoRW, CoWW);
    - smp_rmb(): later loads see at least what the stores read before it
      carried (their *message views*);
    - smp_wmb(): later stores carry the CPU's earlier stores (not
      A-cumulative, as in the LKMM);
    - smp_store_release() carries everything its CPU has seen or read
      (A-cumulative), smp_load_acquire() makes what it read carried visible
      at once (and rcu_assign_pointer()/rcu_dereference() are release and
      acquire: the address dependency is not tracked, which is stronger);
    - smp_mb() (and smp_mb__before/after_atomic(), smp_mb__after_spinlock(),
      the arch's full barriers, every value-returning atomic that succeeds):
      the CPU's view joins a global view and the global view joins the CPU's,
      so two full barriers are ordered one way or the other (SB, R, IRIW,
      the propagation rule), and later stores carry all the CPU has seen
      (A-cumulative);
    - a lock: the acquisition sees what the last holder's release carried,
      the stores of the critical section carry it too (ISA2 with locks), and
      an unlock followed by a lock on one CPU orders the first section's
      stores before the second's (po-unlock-lock-po).

    Departures, all stronger than the LKMM: no load buffering (a load reads
    only stores already executed: LB and its variants never show); an
    atomic read-modify-write reads the coherence-latest value and is
    appended; control and address dependencies are not tracked (so LB with
    a control dependency is forbidden for the wrong reason, by the missing
    LB); plain C accesses of kernel code (``obj.field`` rather than
    READ_ONCE) see the coherence-latest value and take no part in ordering,
    and a plain store, met at the next access through the model, is from
    then on the only value every CPU can read.  On the machine a store older than ``window_ns`` of virtual time with a
    newer one after it has reached every CPU (so spin loops end): the
    litmus runner has no such bound.

Each model also has the litmus runner's face (emulator.explore.litmus):
``clone()`` and ``key()`` for an exhaustive search over its states, and
``pending()`` / ``propagate()`` for the TSO buffers drained as explicit steps.
"""

from ..errors import UseAfterFree

__all__ = ["MODELS", "SCModel", "TSOModel", "WeakModel", "make_memory_model"]

MODELS = ("sc", "tso", "weak")

NO_STORE = object()          # an rmw function's answer when it does not store (failed cmpxchg)
_EMPTY = {}
_INF = float("inf")


def _join(a, b):
    """The pointwise maximum of two views (dicts never changed in place)."""
    if not b or a is b:
        return a
    if not a:
        return b
    out = None
    for loc, ts in b.items():
        if a.get(loc, -1.0) < ts:
            if out is None:
                out = dict(a)
            out[loc] = ts
    return a if out is None else out


class _Storage:
    """Where values live: the objects' attributes on the machine, a dict in
    the litmus runner (``LitmusStorage``)."""

    @staticmethod
    def get(obj, field):
        return getattr(obj, field)

    @staticmethod
    def set(obj, field, value):
        setattr(obj, field, value)


class SCModel(_Storage):
    """Sequential consistency as a model object: only the litmus runner uses
    it (the machine's sc mode has none)."""

    name = "sc"

    def __init__(self, nr_cpus, below=None, now=None, window_ns=None):
        self.nr_cpus = nr_cpus
        self.below = below

    def load(self, c, obj, field, acquire=False):
        return self.get(obj, field)

    def store(self, c, obj, field, value, release=False):
        self.set(obj, field, value)

    def rmw(self, c, obj, field, fn, ordered=True):
        old = self.get(obj, field)
        new = fn(old)
        if new is not NO_STORE:
            self.set(obj, field, new)
        return old

    def fence(self, c, kind):
        pass

    def lock_acquired(self, c, lock):
        pass

    def lock_releasing(self, c, lock):
        pass

    def switch_mm(self, c):
        """The arch's switch_mm() to another mm: weakly ordered arches (arm64)
        imply no barrier there (fe90f3967bdb)."""

    def pending(self):
        return ()

    def drain_all(self):
        pass

    def in_flight(self):
        return []

    def clone(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def key(self):
        return ()


class TSOModel(SCModel):
    """x86-TSO: a FIFO store buffer per CPU (see the module docstring).

    On the machine an object's attribute holds the newest store executed
    (what plain C accesses of kernel code see); ``memory`` holds the value in
    memory of each location with stores still buffered, ``inflight`` how many
    there are."""

    name = "tso"

    def __init__(self, nr_cpus, below=None, now=None, window_ns=None):
        super().__init__(nr_cpus, below)
        self.buf = [() for _ in range(nr_cpus)]     # (obj, field, value, due) tuples, FIFO
        self.memory = {}
        self.inflight = {}
        self.now = now
        self.window_ns = window_ns
        self.next_due = None

    # -- the buffers --------------------------------------------------------------------

    def pending(self):
        """The CPUs whose buffers hold stores."""
        return [c for c, b in enumerate(self.buf) if b]

    def propagate(self, c):
        """The oldest store of CPU *c*'s buffer reaches memory."""
        (obj, field, value, _), *rest = self.buf[c]
        self.buf[c] = tuple(rest)
        loc = (obj, field)
        self.memory[loc] = value
        n = self.inflight[loc] - 1
        if n:
            self.inflight[loc] = n
        else:
            del self.inflight[loc]
            try:
                self.set(obj, field, self.memory.pop(loc))
            except UseAfterFree:
                # freed since: the store was executed before the free, and
                # what it left in memory no one may read now
                pass

    def drain(self, c):
        while self.buf[c]:
            self.propagate(c)

    def drain_all(self):
        for c in range(self.nr_cpus):
            self.drain(c)

    def _due(self):
        """On the machine: the buffered stores whose delay has passed reach memory."""
        now = self.now()
        if self.next_due is None or self.next_due > now:
            return
        nxt = None
        for c, b in enumerate(self.buf):
            while b and b[0][3] <= now:
                self.propagate(c)
                b = self.buf[c]
            if b and (nxt is None or b[0][3] < nxt):
                nxt = b[0][3]
        self.next_due = nxt

    # -- the primitives -----------------------------------------------------------------

    def load(self, c, obj, field, acquire=False):
        if self.now is not None:
            self._due()
        loc = (obj, field)
        if loc in self.inflight:
            for o, f, value, _ in reversed(self.buf[c]):       # store forwarding
                if o is obj and f == field:
                    return value
            return self.memory[loc]
        return self.get(obj, field)

    def store(self, c, obj, field, value, release=False):
        due = 0
        if self.now is not None:
            self._due()
            # FIFO: never before the store ahead of it in the buffer
            due = self.now() + self.below(self.window_ns + 1)
            if self.buf[c]:
                due = max(due, self.buf[c][-1][3])
            if self.next_due is None or due < self.next_due:
                self.next_due = due
        loc = (obj, field)
        n = self.inflight.get(loc, 0)
        if not n:
            self.memory[loc] = self.get(obj, field)
        self.inflight[loc] = n + 1
        self.buf[c] = self.buf[c] + ((obj, field, value, due),)
        self.set(obj, field, value)

    def rmw(self, c, obj, field, fn, ordered=True):
        """A LOCK-prefixed instruction: drains the buffer, then reads and
        writes memory at once, whether it stores or not."""
        if self.now is not None:
            self._due()
        self.drain(c)
        loc = (obj, field)
        old = self.memory[loc] if loc in self.inflight else self.get(obj, field)
        new = fn(old)
        if new is not NO_STORE:
            if loc in self.inflight:
                self.memory[loc] = new
            self.set(obj, field, new)
        return old

    def fence(self, c, kind):
        if kind == "mb":                 # MFENCE / a LOCK'd instruction
            self.drain(c)

    def lock_acquired(self, c, lock):
        self.drain(c)                    # the lock's LOCK'd RMW

    def switch_mm(self, c):
        self.drain(c)                    # x86: the CR3 write serializes

    def lock_releasing(self, c, lock):
        # x86 releases with a plain store, behind the section's stores in the
        # FIFO.  The machine's lock word is not buffered, so the section's
        # stores drain here instead: the next holder sees them, as it would
        # (a third CPU sees them sooner than on x86: stronger).
        self.drain(c)

    def in_flight(self):
        """The buffered stores, for a failure report."""
        return [f"CPU {c} store buffer: " + ", ".join(
                    f"{_name(o)}.{f}={v!r}" for o, f, v, _ in b)
                for c, b in enumerate(self.buf) if b]

    def clone(self):
        new = super().clone()
        new.buf = list(self.buf)
        new.memory = dict(self.memory)
        new.inflight = dict(self.inflight)
        return new

    def key(self):
        return (tuple(tuple((f, v) for _, f, v, _ in b) for b in self.buf),
                tuple(sorted(self.memory.items(), key=repr)))


class WeakModel(SCModel):
    """The LKMM's operational model with per-location histories and per-CPU
    views (see the module docstring).

    A message (a store in a history) is ``(ts, value, view, rmw, t)``: its
    timestamp (coherence order), the value, the view it carries to a CPU
    that reads it, whether an atomic read-modify-write wrote it (nothing may
    come between it and the store it read) and the virtual time it was
    written.  Views map a location to a timestamp and are never changed in
    place."""

    name = "weak"

    def __init__(self, nr_cpus, below=None, now=None, window_ns=None):
        super().__init__(nr_cpus, below)
        self.hist = {}
        self.cur = [_EMPTY] * nr_cpus      # the view loads and stores must respect
        self.acq = [_EMPTY] * nr_cpus      # what the messages read carried (smp_rmb/acquire)
        self.wview = [_EMPTY] * nr_cpus    # what this CPU's plain stores carry
        self.unl = [_EMPTY] * nr_cpus      # the last unlock's release view (unlock; lock)
        self.own = [_EMPTY] * nr_cpus      # this CPU's own stores (what smp_wmb() orders)
        self.sc = _EMPTY                   # the full barriers' common view
        self.lockview = {}                 # a machine lock -> its last release's view
        self.clock = 0
        self.now = now
        self.window_ns = window_ns
        self.ops = 0
        # On the machine, how loads of each site choose among the stores they
        # may read (``site_mode``); the litmus runner enumerates every choice.
        self.sites = {} if window_ns is not None else None
        self.stale_reads = 0
        # The store sites whose storing path lingers after its stores, and
        # per CPU whether its path should pause at its next scheduling point
        # (emulator.explore.point; only where a strategy is installed).
        self.store_sites = {}
        self.lingering = [False] * nr_cpus if window_ns is not None else None
        self.lingers = 0
        self.postpone_sites = {}
        self.postpones = 0

    # -- which store a load reads, on the machine ------------------------------------------
    #
    # A load that may read several stores takes one of them by the chooser.
    # Drawn uniformly per load, two stale reads that a bug needs together
    # (seed 003's transit and percpu, v6.4's rq->curr and pcpu_cid) come
    # seldom in one window.  So, as swarm testing (Groce et al., ISSTA 2012;
    # Hypothesis's swarm rules, PR #2238) turns features off per run, each
    # run draws once per *site* (the type of the object and the field: every
    # mm's mm_cid.transit is one site) how its loads choose:
    #   SITE_FRESH   the newest store (as sc would),
    #   SITE_STALE   the oldest store the model allows: another CPU's stores
    #                stay unseen as long as nothing orders them (a barrier,
    #                acquire, a lock, coherence) or the window passes,
    #   SITE_RANDOM  uniformly, per load (what every load did before).
    # The outcomes reachable are the model's, only their likelihood changes.

    SITE_FRESH, SITE_STALE, SITE_RANDOM = 0, 1, 2
    SITE_MODES = ("fresh", "stale", "random")

    # A store stays in flight until something orders it or the window passes;
    # other CPUs meet it only if they run meanwhile.  So, per run, each store
    # site is with probability 1/LINGER_ONE_IN a *lingering* site: the path
    # that stored to it pauses at its next scheduling point (for up to
    # LINGER_MAX_NS, PCTStrategy's default pause, within the window), other
    # CPUs' paths running while the store is fresh.  Only under a strategy
    # (the searches install one); the run's outcomes stay the model's.
    LINGER_ONE_IN = 4
    LINGER_MAX_NS = 20_000

    # The machine sweeps (_sweep()) once every SWEEP_MASK + 1 accesses.  A
    # sweep changes no outcome (a run is the same at any period, which
    # tests/test_memory_model.py checks) and keeps the views as small as
    # what is in flight: every 4096 accesses they grew to hundreds of
    # entries, every 256 they keep a few dozen (2026-12-07: with the
    # messages' views trimmed too, weak stress runs of seed-003 at 1-8 CPUs
    # took 6x less CPU).
    SWEEP_MASK = 255

    # The stores a load may find stale are in flight for a short while only
    # (a barrier or the window ends it), and the access on another CPU that
    # makes a stale read harmful must fall in that while: two racing paths
    # seldom meet so by chance.  So, as active testing does (Sen, "Race
    # directed random testing of concurrent programs", PLDI 2008), a path at
    # an access of a *postponing* site (the primitive and the object's type,
    # one in POSTPONE_ONE_IN per run) is, one access in POSTPONE_EACH,
    # stopped there until another CPU reaches an access to the same object
    # (or for at most POSTPONE_MAX_NS where a real path may be preempted,
    # LINGER_MAX_NS elsewhere); then the chooser orders the two accesses.
    # emulator.explore.point does the stopping; the outcomes stay the model's.
    POSTPONE_ONE_IN = 4
    POSTPONE_EACH = 8
    POSTPONE_MAX_NS = 1_000_000

    def postpone_ns(self, kind, obj, preemptible):
        """How long the path at *kind* on *obj* waits for another CPU to
        access *obj*, or None to go on."""
        site = (kind, type(obj).__name__)
        yes = self.postpone_sites.get(site)
        if yes is None:
            yes = self.postpone_sites[site] = self.below(self.POSTPONE_ONE_IN) == 0
        if not yes or self.below(self.POSTPONE_EACH):
            return None
        self.postpones += 1
        return 1 + self.below(self.POSTPONE_MAX_NS if preemptible else self.LINGER_MAX_NS)

    def _stored(self, c, obj, field):
        site = (type(obj).__name__, field)
        linger = self.store_sites.get(site)
        if linger is None:
            linger = self.store_sites[site] = self.below(self.LINGER_ONE_IN) == 0
        if linger:
            self.lingering[c] = True

    def site_mode(self, obj, field):
        site = (type(obj).__name__, field)
        mode = self.sites.get(site)
        if mode is None:
            mode = self.sites[site] = self.below(3)
        return mode

    # -- histories ----------------------------------------------------------------------

    def _history(self, obj, field):
        t = self.now() if self.now is not None else 0
        if self.window_ns is not None:
            self.ops += 1
            if self.ops & self.SWEEP_MASK == 0:
                # before this access looks its history up: a sweep after it
                # could forget the history this access then stores to
                self._sweep(t)
        loc = (obj, field)
        h = self.hist.get(loc)
        value = self.get(obj, field)
        if h is None:
            self.clock += 1
            h = self.hist[loc] = [(self.clock, value, _EMPTY, False, t)]
        else:
            last = h[-1][1]
            if last is not value and last != value:
                # A plain C store of kernel code since, when is not known (a
                # lock may have ordered it before this access): every CPU
                # sees it, and only it (stronger, never a false stale read).
                self.clock += 1
                h[:] = [(self.clock, value, _EMPTY, False, t)]
            elif self.window_ns is not None:
                # stores with a successor older than the window have reached every CPU
                while len(h) > 1 and t - h[1][4] > self.window_ns:
                    del h[0]
        return loc, h

    def _sweep(self, t):
        """Forget the histories with nothing left in flight, and in every
        view (the CPUs', the locks', the messages') the entries that can no
        longer order a read (machine only).

        An entry (loc, ts) orders a read only if loc has a store newer than
        ts: a load or store of loc picks among the stores from the newest
        the view has seen, the oldest when it has seen none or only the
        oldest.  A store ts never falls below the oldest of its history, which
        only moves forward (the window, a plain store), and a forgotten
        history starts again above every ts ever drawn; so an entry for a
        forgotten location, or one not above its history's oldest store, is
        dead for good, and a view without it reads and stores as the view
        with it.  Without this the views carried every location touched
        since the last sweep, and the message views of release stores never
        lost any: joining them was two thirds of a weak run's time."""
        w = self.window_ns
        hist = self.hist
        dead = [loc for loc, h in hist.items()
                if len(h) == 1 or t - h[-1][4] > w]
        for loc in dead:
            del hist[loc]
        floor = {loc: h[0][0] for loc, h in hist.items()}
        never = _INF

        def trim(v):
            if not v:
                return v
            out = {l: ts for l, ts in v.items() if ts > floor.get(l, never)}
            return out if len(out) < len(v) else v
        for h in hist.values():
            for i, m in enumerate(h):
                if m[2]:
                    v = trim(m[2])
                    if v is not m[2]:
                        h[i] = (m[0], m[1], v, m[3], m[4])
        self.cur = [trim(v) for v in self.cur]
        self.acq = [trim(v) for v in self.acq]
        self.wview = [trim(v) for v in self.wview]
        self.unl = [trim(v) for v in self.unl]
        self.own = [trim(v) for v in self.own]
        self.sc = trim(self.sc)
        self.lockview = {lock: v for lock, v in
                         ((lock, trim(v)) for lock, v in self.lockview.items()) if v}

    def _read(self, c, loc, m):
        """CPU *c* has read message *m* of *loc*."""
        ts = m[0]
        cur = self.cur[c]
        if cur.get(loc, -1.0) < ts:
            cur = dict(cur)
            cur[loc] = ts
            self.cur[c] = cur
        self.acq[c] = _join(self.acq[c], m[2])
        acq = self.acq[c]
        if acq.get(loc, -1.0) < ts:
            acq = dict(acq)
            acq[loc] = ts
            self.acq[c] = acq

    def _append(self, c, obj, field, loc, h, value, view, rmw, t):
        self.clock += 1
        ts = self.clock
        h.append((ts, value, view, rmw, t))
        self.set(obj, field, value)
        self._wrote(c, loc, ts)
        return ts

    def _wrote(self, c, loc, ts):
        cur = dict(self.cur[c])
        cur[loc] = ts
        self.cur[c] = cur
        own = dict(self.own[c])
        own[loc] = ts
        self.own[c] = own

    # -- the primitives -----------------------------------------------------------------

    def load(self, c, obj, field, acquire=False):
        loc, h = self._history(obj, field)
        n = len(h)
        if n > 1:
            seen = self.cur[c].get(loc, -1.0)
            i = n - 1
            while i > 0 and h[i][0] > seen:
                i -= 1
            choices = n - i
            if choices == 1:
                m = h[-1]
            elif self.sites is None:
                m = h[n - 1 - self.below(choices)]
            else:
                mode = self.site_mode(obj, field)
                m = h[-1] if mode == 0 else h[i] if mode == 1 else \
                    h[n - 1 - self.below(choices)]
                if m is not h[-1]:
                    self.stale_reads += 1
        else:
            m = h[0]
        self._read(c, loc, m)
        if acquire:
            self.cur[c] = _join(self.cur[c], self.acq[c])
        return m[1]

    def store(self, c, obj, field, value, release=False):
        loc, h = self._history(obj, field)
        if self.lingering is not None:
            self._stored(c, obj, field)
        if release:
            view = _join(self.cur[c], self.acq[c])
        else:
            view = self.wview[c]
        t = h[-1][4] if self.now is None else self.now()
        n = len(h)
        # the gaps after what this CPU has seen, none just before an RMW's store
        seen = self.cur[c].get(loc, -1.0)
        j = n - 1
        while j > 0 and h[j][0] > seen:
            j -= 1
        gaps = [g for g in range(j, n - 1) if not h[g + 1][3]]
        k = self.below(len(gaps) + 1) if gaps else 0
        if k == 0:
            self._append(c, obj, field, loc, h, value, view, False, t)
            return
        g = gaps[-k]
        ts = (h[g][0] + h[g + 1][0]) / 2
        h.insert(g + 1, (ts, value, view, False, h[g + 1][4]))
        self._wrote(c, loc, ts)

    def rmw(self, c, obj, field, fn, ordered=True):
        loc, h = self._history(obj, field)
        m = h[-1]
        self._read(c, loc, m)
        old = m[1]
        new = fn(old)
        if new is NO_STORE:                  # a failed cmpxchg: unordered
            return old
        t = m[4] if self.now is None else self.now()
        if ordered:
            self.fence(c, "mb")
            self._append(c, obj, field, loc, h, new, _join(self.cur[c], self.acq[c]), True, t)
            self.fence(c, "mb")
        else:
            self._append(c, obj, field, loc, h, new, self.wview[c], True, t)
        return old

    def fence(self, c, kind):
        if kind == "mb":
            cur = _join(_join(self.cur[c], self.acq[c]), self.sc)
            self.cur[c] = self.sc = cur
            self.wview[c] = _join(self.wview[c], cur)
        elif kind == "rmb":
            self.cur[c] = _join(self.cur[c], self.acq[c])
        elif kind == "wmb":
            # the CPU's own earlier stores only: smp_wmb() is not A-cumulative
            self.wview[c] = _join(self.wview[c], self.own[c])

    def lock_acquired(self, c, lock, view=None):
        """After taking *lock* (acquire): what its last release carried."""
        if view is None:
            view = self.lockview.get(lock, _EMPTY)
        self.cur[c] = _join(_join(self.cur[c], view), self.unl[c])
        self.wview[c] = _join(_join(self.wview[c], view), self.unl[c])

    def lock_releasing(self, c, lock):
        """Before releasing *lock* (release): returns the view it carries."""
        view = _join(self.cur[c], self.acq[c])
        self.unl[c] = view
        self.lockview[lock] = view
        return view

    def in_flight(self):
        """The locations some CPU may still read a stale value of."""
        out = []
        t = self.now() if self.now is not None else 0
        for (obj, field), h in self.hist.items():
            if self.window_ns is not None:      # what every CPU has by now is not in flight
                i = 0
                while i + 1 < len(h) and t - h[i + 1][4] > self.window_ns:
                    i += 1
                h = h[i:]
            if len(h) > 1:
                out.append(f"{_name(obj)}.{field}: " + " -> ".join(
                    f"{m[1]!r}@{m[4]}" for m in h))
        if self.sites:
            stale = sorted(f"{t}.{f}" for (t, f), mode in self.sites.items()
                           if mode == self.SITE_STALE)
            linger = sorted(f"{t}.{f}" for (t, f), yes in self.store_sites.items() if yes)
            postpone = sorted(f"{k} on {t}" for (k, t), yes in self.postpone_sites.items() if yes)
            out.append(f"(this run's loads read the oldest store allowed at: "
                       f"{', '.join(stale) or 'no site'}; {self.stale_reads} stale reads; "
                       f"paths lingered after storing to: {', '.join(linger) or 'no site'}, "
                       f"{self.lingers} pauses; paths waited for another CPU's access at: "
                       f"{', '.join(postpone) or 'no site'}, {self.postpones} waits)")
        return out

    def clone(self):
        new = super().clone()
        new.hist = {loc: list(h) for loc, h in self.hist.items()}
        new.cur = list(self.cur)
        new.acq = list(self.acq)
        new.wview = list(self.wview)
        new.unl = list(self.unl)
        new.own = list(self.own)
        new.lockview = dict(self.lockview)
        return new

    def key(self):
        """The state up to renaming of timestamps: each as its rank in its history."""
        rank = {}
        hs = []
        for loc in sorted(self.hist, key=repr):
            h = self.hist[loc]
            for i, m in enumerate(h):
                rank[(loc, m[0])] = i
            hs.append((loc[1], tuple((m[1], m[3]) for m in h)))

        def v(view):
            return tuple(sorted((loc[1], rank.get((loc, ts), ts)) for loc, ts in view.items()))

        msgviews = tuple(v(m[2]) for loc in sorted(self.hist, key=repr) for m in self.hist[loc])
        own = tuple(v(x) for x in self.own)
        return (tuple(hs), msgviews, tuple(v(x) for x in self.cur), tuple(v(x) for x in self.acq),
                tuple(v(x) for x in self.wview), tuple(v(x) for x in self.unl), v(self.sc),
                own, tuple(sorted((repr(l), v(x)) for l, x in self.lockview.items())))


def _name(obj):
    try:
        name = getattr(obj, "name", None)
        cpu = getattr(obj, "cpu", None)
    except UseAfterFree:
        return f"freed {type(obj).__name__.lower()}"
    if isinstance(name, str):
        return name
    return type(obj).__name__.lower() + (f"[{cpu}]" if isinstance(cpu, int) else "")


def make_memory_model(name, nr_cpus, below, now=None, window_ns=None):
    """The model object for *name* (None for sc on the machine: no cost)."""
    cls = {"sc": SCModel, "tso": TSOModel, "weak": WeakModel}[name]
    return cls(nr_cpus, below, now, window_ns)
