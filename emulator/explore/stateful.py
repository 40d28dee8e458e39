"""A live machine driven rule by rule: Hypothesis stateful tests of a variant.

``lifecycle_machine(variant)`` is a RuleBasedStateMachine (use its
``TestCase``) over one Machine that runs step by step (``Machine.start`` and
``advance``).  Its emulated threads are *puppets*: user tasks that block in a
read() of their input until the test gives them something to do, then do it
through the same system calls and return-to-user paths as any task.  The rules:

    spawn(who, n)          who creates n threads (pthread_create)
    fork(who) / vfork(who) who creates a process; a vfork parent waits for its
                           child's exec or exit
    exec(who, ok)          execve() of a new program, or of a missing file
    exit_thread(who)       pthread_exit(); the last thread ends its process
    exit_group(who)        exit(): the whole process ends
    set_affinity(who, ..)  who widens or shrinks its own allowed CPUs
    migrate(who, whom, ..) who moves another task with sched_setaffinity()
    work(who, kind, ..)    who computes, sleeps or yields, some times over
    async_io(who, ns)      who pins its mm for deferred work: mmgrab() now,
                           mmdrop() from a kworker ns later (io_uring and AIO
                           do this), so the last reference may go anywhere
    wake(who, cpu)         input arrives for who from an interrupt on cpu
    advance(ns)            virtual time passes: ticks, timers, delayed work,
                           deferred mode changes
    preempt(after, ns, resched)
                           the after-th preemptible point from now (no spinlock,
                           interrupts and preemption on) stops its kernel path
                           for ns: where a real path can be preempted; with
                           resched the tasks queued on its CPU run first instead

Each example also draws (boot) preempt_p: as in a PREEMPT kernel, a kernel path
at a preemptible point while other tasks wait for its CPU is preempted (they
run first) with that probability.  Over half the examples boot the largest machine;
the others a shape of emulator.explore.generated.machine_shapes() (1 to 8 CPUs,
sometimes more possible CPUs than online ones, sometimes a first process
restricted as ``taskset -c`` restricts it).

Input reaches a parked thread from an interrupt (a device interrupt waking a
reader), on the CPU the rule draws.  P1-P3, P5-P7 and P11 are checked while the
machine runs, P4 at every step where the machine is quiet, and every rule's
choices come from Hypothesis, so a failure shrinks to few steps and few pauses.
Rules pick threads by an index into the live ones, so a shrunk example stays
meaningful.

Departures: a puppet's input is not a modelled file; the read() that parks it
is a plain interruptible wait on a wait queue.  ``async_io`` stands for any
subsystem that holds mm_count across deferred work; it does not model
io_uring itself.
"""

from collections import deque

from hypothesis import seed as hypothesis_seed, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, get_state_machine_test, initialize, invariant, precondition, rule,
)

from ..checks.invariants import P4_no_orphan_cid_bits
from ..errors import Deadlock, EmulationFailure, UsageError
from ..kernel.cpumask import mask_of
from ..kernel.irq_work import irq_work
from ..kernel.task import TASK_INTERRUPTIBLE
from ..kernel.wait import wait_queue_head_t
from ..kernel.workqueue import delayed_work
from ..uapi.libc import exec_main_image, inherit_tls
from .findings import known_finding
from .generated import (
    CPUS, Shape, batches, machine_shapes, reporting_example, search_settings,
    without_local_constants,
)
from .keys import make_key, replay_command
from .stateful_lazy_tlb import lazy_tlb_rules
from .stateful_rules import THEN, CpuHotplugRules, recorded
from .strategies import ScriptStrategy, strategy_from_spec

__all__ = ["Puppet", "PuppetImage", "lifecycle_machine", "replay_steps", "CPUS"]

MISSING_FILE = "/no/such/file"


class PuppetImage:
    """The program a puppet execs (and the first one of a run): it reads its
    input and does what it says."""

    is_user_image = True
    comm = "puppet"

    def __init__(self, name="P0"):
        self.name = name

    def main_user(self, machine):
        return Puppet(machine, self.name, "main", image=self)


class Puppet:
    """The user side of a task whose every step the test decides."""

    is_host = False

    def __init__(self, machine, name, role, parent=None, vfork=False, image=None):
        self.machine = machine
        self.k = machine.kernel
        self.name = name
        self.role = role
        self.parent = parent
        self.vfork = vfork
        self.image = image
        self.commands = deque()
        self.input = wait_queue_head_t(f"{name} input")
        self.input_irq = irq_work(self._input_interrupt)
        self.task = None
        self.pthread = None
        self.tls_rseq = None
        self.libc_rseq_registered = False

    def __repr__(self):
        return self.name

    # -- the kernel's side of a user context --------------------------------------------

    def start(self, k, t):
        if self.image is not None:
            exec_main_image(self, k)
            return
        if self.parent is not None:
            inherit_tls(self, t)
            return
        self.tls_rseq = k.rseq_alloc_area(t.mm)
        k.glibc_thread_start(t)

    def exit(self):
        pass

    @staticmethod
    def can_exec(image):
        return isinstance(image, PuppetImage)

    def exec_start(self, image):
        self.role, self.parent, self.vfork = "main", None, False
        self.tls_rseq = self.k.rseq_alloc_area(self.task.mm)
        self.k.glibc_thread_start(self.task)

    def resume(self, reply):
        """The next request: the oldest command, or a read() of the input."""
        if self.commands:
            return self.commands.popleft()
        return ("call", self.read_input, ())

    # -- input ---------------------------------------------------------------------------------

    def read_input(self):
        """read() of the thread's input: sleep until there is some (or a fatal
        signal comes)."""
        k = self.k
        t = k.cur
        while True:
            k.prepare_to_wait(self.input, TASK_INTERRUPTIBLE)
            if self.commands or t.sigkill:
                break
            k.schedule()
        k.finish_wait(self.input)
        return 0

    def _input_interrupt(self, work):
        self.k.wake_up(self.input)

    def give(self, request, from_cpu=None):
        """Queue *request*; a parked thread is woken by an interrupt on
        *from_cpu* (its own CPU by default)."""
        self.commands.append(request)
        self.wake(from_cpu)

    def wake(self, from_cpu=None):
        t = self.task
        if t is not None and t in self.input.waiters:
            cpu = t.cpu if from_cpu is None else from_cpu
            self.k.irq_work_queue_on(self.input_irq, cpu)

    @property
    def alive(self):
        t = self.task
        return t is not None and not t.exit_state and not t.in_do_exit and not t.sigkill

    @property
    def parked(self):
        t = self.task
        return t is not None and t in self.input.waiters


class _AsyncWork(delayed_work):
    """Deferred work holding an mm_count reference (mmgrab() at submission)."""

    def __init__(self, k, mm):
        super().__init__(self._done, "async_mm_work")
        self.k = k
        self.mm = mm

    def _done(self, work):
        self.k.mmdrop(self.mm)


def lifecycle_machine(variant, cpus=CPUS, lockup_ns=None, coverage=None, strategy=None):
    """A RuleBasedStateMachine class driving one machine with *variant*.
    With *coverage* (an emulator.explore.coverage.Coverage) each example's
    concurrent kernel function pairs and variant states are added to it and
    reported with Hypothesis's target() at its end (guidance).  With
    *strategy* (a spec: random, pct, preempt) every example's kernel paths
    pause as that strategy decides, from the machine's seeded chooser,
    instead of the drawn PREEMPT script (whose ``preempt`` rule is then off)."""

    class MmLifecycle(RuleBasedStateMachine):
        # replay_steps() sets these for a replayed example.
        machine_kwargs = {}
        on_machine = None
        strategy_spec = strategy     # a strategy for every example (else the script)

        def __init__(self):
            super().__init__()
            self.m = None
            self.names = 1
            self.boot_args = None
            self.steps = []             # [rule name, kwargs] as run: the replay key's
            self.known = None           # the recorded finding the example ended in
            self.watched = None         # what the example reached (with coverage)

        # -- set-up and tear-down ---------------------------------------------------------

        # Over half the examples on the largest machine: the most CPUs to hold
        # cids, the most parallelism; the others draw a shape (machine_shapes():
        # possible CPUs beyond the online ones, a taskset first process).
        @initialize(shape=st.one_of(st.just(Shape(max(cpus))), machine_shapes(cpus)),
                    seed=st.integers(0, 1 << 16),
                    preempt_p=st.sampled_from([0, 0.05, 0.25, 1]))
        def boot(self, shape=None, seed=0, preempt_p=0, strategy=None, **fields):
            """Boot a machine of *shape* (a replay passes its fields instead).
            *strategy* (a spec) replaces the PREEMPT kernel's script: a
            random, pct or preempt strategy drawing from the machine's
            chooser, or a systematic schedule (a script)."""
            shape = shape or Shape(**fields)
            kwargs = dict(self.machine_kwargs)
            # A strategy object the caller gives (a systematic search's
            # recording script), else the spec of the example or the class.
            given = kwargs.pop("strategy", None)
            spec = strategy or self.strategy_spec
            if given is None and spec:
                given = strategy_from_spec(spec)
            if lockup_ns is not None:
                kwargs["lockup_ns"] = lockup_ns
            kwargs.setdefault("replay", self.replay_text)
            kwargs.setdefault("trace_functions", reporting_example())
            self.boot_args = {**shape.fields(), "seed": seed}
            if preempt_p:
                self.boot_args["preempt_p"] = preempt_p
            # A PREEMPT kernel: where other tasks wait for its CPU, a kernel
            # path is preempted at a preemptible point with this probability.
            if given is None:
                self.strategy = ScriptStrategy(preempt_p=preempt_p)
            else:
                if preempt_p:
                    given.resched_p = preempt_p
                self.boot_args["strategy"] = given.spec()
                self.strategy = given
            self.m = shape.machine(variants=[variant], seed=seed, strategy=self.strategy,
                                   **kwargs)
            if self.on_machine is not None:
                self.on_machine(self.m)
            if coverage is not None:
                self.watched = coverage.watch(self.m)
            self.nr_cpus = shape.nr_cpus
            self.nr_possible = shape.nr_possible or shape.nr_cpus
            first = PuppetImage("P0")
            self.m.start(first)
            self._step(100_000)

        def teardown(self):
            # A failed run is over already (its driver is dead).
            try:
                if self.running():
                    try:
                        self._end_run()
                    except EmulationFailure as exc:
                        raise self._reported(exc)
                    finally:
                        self.m.close()
            finally:
                if self.watched is not None:
                    coverage.reached(self.watched)
                    self.watched = None

        def replay_key(self):
            return make_key("stateful", variant, boot=self.boot_args, steps=self.steps,
                            lockup_ns=lockup_ns)

        def replay_text(self):
            return replay_command(self.replay_key()) or _REPLAY

        def _reported(self, exc):
            """*exc*, raised outside the machine's run, with the run's report."""
            if not exc.report:
                exc.report = self.m.failure_report(exc)
            return exc

        def _end_run(self):
            """Stop feeding input, end every process, run to the end (P4 is
            checked there); a run that cannot end is a deadlock."""
            for p in self._all_puppets():
                p.commands.clear()
            for _ in range(200):
                told = False
                for p in self._all_puppets():
                    if p.alive and not p.commands:
                        p.give(("call", self.m.kernel.sys_exit_group, (0,)))
                        told = True
                if not told and self.m.quiet():
                    self.m._on_empty()
                if not self._step(10_000_000):
                    return
            raise Deadlock("the run did not end within 2 s of virtual time after every "
                           "process was told to exit")

        # -- helpers ------------------------------------------------------------------------

        def _step(self, ns):
            """Run *ns*; a recorded finding of the variant ends the example
            (the run is over, every rule after it does nothing)."""
            try:
                return self.m.advance(ns)
            except EmulationFailure as exc:
                self.known = known_finding(variant, exc, self.m.kernel.causes)
                if self.known is None:
                    raise
                return False

        def _then(self, ns):
            """What a rule gave takes *ns* to begin: the rule's own share of time."""
            if ns and self.running():
                self._step(ns)

        def running(self):
            return self.m is not None and self.m.running

        def _all_puppets(self):
            # One Puppet per task: an exec keeps the task's, a new task gets its own.
            return [t.user for t in self.m.kernel.tasks.values() if isinstance(t.user, Puppet)]

        def live(self):
            return [p for p in self._all_puppets() if p.alive]

        def pick(self, who):
            live = self.live()
            return live[who % len(live)]

        def has_live(self):
            return self.running() and bool(self.live())

        def has_others(self):
            """Exits leave one thread alive: the run's end is the teardown's."""
            return self.running() and len(self.live()) > 1

        def new_puppet(self, role, parent=None, vfork=False):
            name = f"P{self.names}"
            self.names += 1
            return Puppet(self.m, name, role, parent=parent, vfork=vfork)

        # -- rules ---------------------------------------------------------------------------

        @precondition(has_live)
        @rule(who=st.integers(0, 63), n=st.integers(1, 12), then=THEN)
        @recorded
        def spawn(self, who, n, then):
            p = self.pick(who)
            k = self.m.kernel
            for _ in range(n):
                p.give(("call", k.sys_clone_thread, (self.new_puppet("thread"),)))
            self._then(then)

        @precondition(has_live)
        @rule(who=st.integers(0, 63), vfork=st.booleans(), then=THEN)
        @recorded
        def fork(self, who, vfork, then):
            p = self.pick(who)
            k = self.m.kernel
            child = self.new_puppet("main", parent=p, vfork=vfork)
            p.give(("call", k.sys_vfork if vfork else k.sys_fork, (child,)))
            self._then(then)

        @precondition(has_live)
        @rule(who=st.integers(0, 63), ok=st.booleans(), then=THEN)
        @recorded
        def exec(self, who, ok, then):
            p = self.pick(who)
            image = PuppetImage(p.name) if ok else MISSING_FILE
            p.give(("call", self.m.kernel.sys_execve, (image, "puppet" if ok else MISSING_FILE)))
            self._then(then)

        @precondition(has_others)
        @rule(who=st.integers(0, 63), then=THEN)
        @recorded
        def exit_thread(self, who, then):
            self.pick(who).give(("call", self.m.kernel.sys_exit, (0,)))
            self._then(then)

        @precondition(has_others)
        @rule(who=st.integers(0, 63), code=st.integers(0, 3), then=THEN)
        @recorded
        def exit_group(self, who, code, then):
            self.pick(who).give(("call", self.m.kernel.sys_exit_group, (code,)))
            self._then(then)

        @precondition(has_live)
        @rule(who=st.integers(0, 63), cpus=st.sets(st.integers(0, 7), min_size=1), then=THEN)
        @recorded
        def set_affinity(self, who, cpus, then):
            # Over the possible CPUs: a set of offline ones only is EINVAL.
            mask = mask_of(cpu % self.nr_possible for cpu in cpus)
            self.pick(who).give(("call", self.m.kernel.sys_sched_setaffinity, (0, mask)))
            self._then(then)

        @precondition(has_live)
        @rule(who=st.integers(0, 63), whom=st.integers(0, 63), cpu=st.integers(0, 7),
              back=st.booleans(), then=THEN)
        @recorded
        def migrate(self, who, whom, cpu, back, then):
            """*who* moves *whom* to one CPU (and, with *back*, lets it go
            anywhere again right after)."""
            p, target = self.pick(who), self.pick(whom)
            k = self.m.kernel
            pid = target.task.pid
            p.give(("call", k.sys_sched_setaffinity, (pid, 1 << (cpu % self.nr_cpus))))
            if back:
                p.give(("call", k.sys_sched_setaffinity, (pid, (1 << self.nr_possible) - 1)))
            self._then(then)

        @precondition(has_live)
        @rule(who=st.integers(0, 63), kind=st.sampled_from(["run", "sleep", "yield"]),
              ns=st.one_of(st.integers(1, 300_000), st.sampled_from([20_000_000, 120_000_000])),
              times=st.integers(1, 50), then=THEN)
        @recorded
        def work(self, who, kind, ns, times, then):
            p = self.pick(who)
            k = self.m.kernel
            request = {"run": ("busy", ns), "sleep": ("call", k.sys_nanosleep, (ns,)),
                       "yield": ("call", k.sys_sched_yield, ())}[kind]
            p.commands.extend([request] * (times - 1))
            p.give(request)
            self._then(then)

        @precondition(has_live)
        @rule(who=st.integers(0, 63), ns=st.integers(1, 200_000_000), then=THEN)
        @recorded
        def async_io(self, who, ns, then):
            p = self.pick(who)
            p.give(("call", _submit_async, (self.m.kernel, ns)))
            self._then(then)

        @precondition(has_live)
        @rule(who=st.integers(0, 63), cpu=st.integers(0, 7), then=THEN)
        @recorded
        def wake(self, who, cpu, then):
            """Input for *who* (nothing to do but look) from an interrupt on *cpu*."""
            p = self.pick(who)
            p.give(("call", self.m.kernel.sys_sched_yield, ()), cpu % self.nr_cpus)
            self._then(then)

        @rule(ns=st.one_of(st.integers(1, 3_000_000),
                           st.sampled_from([20_000_000, 120_000_000])))
        @recorded
        def advance(self, ns):
            if self.running():
                self._step(ns)

        @precondition(lambda self: self.running() and hasattr(self.strategy, "arm"))
        @rule(after=st.integers(1, 64),
              ns=st.one_of(st.integers(1, 30_000), st.integers(1, 3_000_000)),
              resched=st.booleans())
        @recorded
        def preempt(self, after, ns, resched=False):
            self.strategy.arm(after, ns, resched)

        # -- invariants between steps --------------------------------------------------------

        @invariant()
        def no_orphan_cid_bits_when_quiet(self):
            if self.running() and self.m.quiet() and self.m.kernel.invariants is not None:
                try:
                    P4_no_orphan_cid_bits(self.m.kernel)
                except EmulationFailure as exc:
                    # A recorded finding ends the example here too, as in _step().
                    self.known = known_finding(variant, exc, self.m.kernel.causes)
                    if self.known is None:
                        raise self._reported(exc)
                    self.m.close()

    # A subsystem's variant gets the rules that exercise it as well.
    machine = MmLifecycle
    subsystem = getattr(variant, "subsystem", None)
    if subsystem == "page_alloc":
        machine = _page_alloc_rules(MmLifecycle, cpus)
    elif subsystem == "lazy_tlb":
        machine = lazy_tlb_rules(MmLifecycle)
    machine.__name__ = machine.__qualname__ = \
        f"{machine.__name__}_{getattr(variant, 'name', variant)}".replace("-", "_").replace(".", "_")
    return machine


def _page_alloc_rules(MmLifecycle, cpus):
    """The lifecycle machine with the page allocator's rules, for a
    page_alloc variant (its tasks' forks, execs and exits already allocate
    and free page-table pages):

        touch(who, pages)        who maps and writes *pages* new pages
        unmap(who, which)        who unmaps one of its mappings
        io(who, cpu, ...)        who starts an I/O whose buffer (blocks of an
                                 order) is freed by its completion interrupt
                                 on *cpu*, *ns* later
        drain(who, zone)         who drains every CPU's pcp lists (direct
                                 reclaim's drain_all_pages(NULL); with
                                 *zone*, compaction's drain_all_pages(zone))
        offline(who)             who offlines memory of its node's zone:
                                 zone_pcp_disable(), then zone_pcp_enable()
        cpu_online(who, cpu, ..) who takes a CPU down or brings it up (sysfs)

    and boots with the last CPU isolated (nohz_full and isolcpus) half the time.
    """

    class PageAllocLifecycle(CpuHotplugRules, MmLifecycle):

        @initialize(shape=st.one_of(st.just(Shape(max(cpus))), machine_shapes(cpus)),
                    seed=st.integers(0, 1 << 16),
                    preempt_p=st.sampled_from([0, 0.05, 0.25, 1]),
                    isolated=st.booleans())
        def boot(self, shape=None, seed=0, preempt_p=0, strategy=None, isolated=False, **fields):
            """As the lifecycle's boot; *isolated*: the last CPU is nohz_full
            and isolcpus (with two CPUs or more)."""
            shape = shape or Shape(**fields)
            if isolated and shape.nr_cpus > 1:
                last = [shape.nr_cpus - 1]
                self.machine_kwargs = {**self.machine_kwargs, "nohz_full": last,
                                       "isolcpus": last}
            MmLifecycle.boot(self, shape, seed, preempt_p, strategy)
            if isolated and shape.nr_cpus > 1:
                self.boot_args["isolated"] = True

        @precondition(MmLifecycle.has_live)
        @rule(who=st.integers(0, 63), pages=st.integers(1, 400), then=THEN)
        @recorded
        def touch(self, who, pages, then):
            self.pick(who).give(("call", _touch, (self.m.kernel, pages)))
            self._then(then)

        @precondition(MmLifecycle.has_live)
        @rule(who=st.integers(0, 63), which=st.integers(0, 7), then=THEN)
        @recorded
        def unmap(self, who, which, then):
            self.pick(who).give(("call", _unmap, (self.m.kernel, which)))
            self._then(then)

        @precondition(MmLifecycle.has_live)
        @rule(who=st.integers(0, 63), cpu=st.integers(0, 7), blocks=st.integers(1, 40),
              order=st.integers(0, 4), ns=st.integers(1, 3_000_000), then=THEN)
        @recorded
        def io(self, who, cpu, blocks, order, ns, then):
            self.pick(who).give(("call", _io, (self.m.kernel, cpu % self.nr_cpus, blocks, order,
                                               ns)))
            self._then(then)

        @precondition(MmLifecycle.has_live)
        @rule(who=st.integers(0, 63), zone=st.booleans(), then=THEN)
        @recorded
        def drain(self, who, zone, then):
            self.pick(who).give(("call", _drain, (self.m.kernel, zone)))
            self._then(then)

        @precondition(MmLifecycle.has_live)
        @rule(who=st.integers(0, 63), then=THEN)
        @recorded
        def offline(self, who, then):
            self.pick(who).give(("call", _offline, (self.m.kernel,)))
            self._then(then)

    return PageAllocLifecycle


def stateful_search(machine, examples, seed, batch=None, **more_settings):
    """The search over *machine* (a lifecycle_machine() class, or a class
    deriving from one): *examples* examples of up to 40 steps drawn from
    Hypothesis seed *seed*, as a callable that runs it and raises the shrunk
    failure; with *batch*, successive searches of *batch* examples each
    (generated.batches()).  The test suite, campaigns and the benchmark all
    search this way."""
    if batch and examples > batch:
        return batches(lambda n, s: stateful_search(machine, n, s, **more_settings),
                       examples, batch, seed)
    s = search_settings(examples, stateful_step_count=40, **more_settings)
    search = hypothesis_seed(seed)(get_state_machine_test(machine, settings=s))
    return without_local_constants()(search)


def replay_steps(variant, boot, steps, lockup_ns=None, on_machine=None, **machine_kwargs):
    """Run a stateful example again from its replay key's parts, without
    Hypothesis: boot, each step with the invariants after it, the teardown.
    Returns None, or the reason of the recorded finding the example ended in;
    a failure raises with its report."""
    cls = lifecycle_machine(variant, lockup_ns=lockup_ns)
    rules = {name for c in cls.__mro__ for name, value in vars(c).items()
             if hasattr(value, "hypothesis_stateful_rule")}
    sm = cls()
    sm.machine_kwargs = machine_kwargs
    sm.on_machine = on_machine
    try:
        sm.boot(**boot)
        for name, kwargs in steps:
            if name not in rules:
                raise UsageError(f"replay key names no rule {name!r}")
            # Under another schedule (a systematic search replays an example
            # under each) a step's precondition may not hold: it is skipped,
            # as Hypothesis would not have drawn it.  Under the example's own
            # schedule every one holds, so a replay is exact.
            preconditions = getattr(getattr(cls, name), "hypothesis_stateful_rule").preconditions
            if not all(precondition(sm) for precondition in preconditions):
                continue
            getattr(sm, name)(**kwargs)
            sm.no_orphan_cid_bits_when_quiet()
    finally:
        if sm.m is not None:
            sm.teardown()
    return sm.known


_REPLAY = "the falsifying steps Hypothesis printed above, on the same variant"


def _touch(k, pages):
    """mmap() of *pages* anonymous pages and a write to each."""
    from ..kernel.mmap import MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PROT_READ, PROT_WRITE
    addr = k.sys_mmap(None, pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    return addr if addr < 0 else k.sys_touch(addr, pages * PAGE_SIZE)


def _unmap(k, which):
    vmas = k.cur.mm.vmas
    if not vmas:
        return 0
    vma = vmas[which % len(vmas)]
    return k.sys_munmap(vma.vm_start, vma.vm_end - vma.vm_start)


def _io(k, cpu, blocks, order, ns):
    """A driver's buffer of *blocks* blocks of 2^order pages, freed by the
    request's completion interrupt on *cpu*."""
    from ..kernel.page_alloc import GFP_KERNEL
    got = []
    for _ in range(blocks):
        pfn = k.alloc_pages(GFP_KERNEL, order)
        if pfn is None:
            break
        got.append((pfn, order))
    if got:
        k.blk_submit(got, cpu, ns)
    return 0


def _drain(k, zone):
    k.page_alloc.drain_all_pages(k.local_zone() if zone else None)
    return 0


def _offline(k):
    k.offline_pages(k.local_zone())
    return 0


def _submit_async(k, ns):
    """A system call that hands work to a kworker, pinning the caller's mm
    (mmgrab()) until the work drops it (mmdrop()) ns later."""
    mm = k.cur.mm
    k.mmgrab(mm)
    k.queue_delayed_work(k.system_wq, _AsyncWork(k, mm), max(1, ns // k.tick_nsec))
    return 0
