"""pytest plugin: ``--variant``, ``--cpus``, ``--emu-seed``, ``--emu-replay``,
``--emu-explore`` and the fixtures.

Selftest mirrors ask for ``selftest_machine``; the plugin runs them once per
selected variant and CPU count (every registered mm_cid variant and 1, 2, 3,
8 and 128 CPUs unless the options say otherwise; a variant of another
subsystem runs them with mm_cid at its default, and a test module naming a
``SUBSYSTEM`` runs over that subsystem's variants only).  A failure shows the minimal
trace and the command that replays it, both as ``python -m emulator replay``
and as pytest.  ``--emu-replay=KEY`` runs only the run a replay key names;
``--emu-explore=TIME`` runs only exploration campaigns, one per variant and
xdist worker.  After every test the plugin checks, with psutil, that no host thread
the test started is still alive.

Ctrl-C and SIGTERM (emulator.interrupt, for the whole session): a run under
way ends between two events as an abandoned run, and the session stops as
pytest stops on KeyboardInterrupt (its summary, exit status 2), with or
without xdist workers; an interrupt is never a test's failure.  A second
signal exits at once (status 130).
"""

import os
import shlex
import threading
import time

import psutil
import pytest

from . import interrupt
from .errors import EmulationFailure, UsageError
from .explore.strategies import strategy_from_spec
from .machine import Machine
from .variants import load_variant, registered

DEFAULT_CPUS = (1, 2, 3, 8, 128)      # one CPU, two, an odd count, more

# A patch file given with --variant is what the run is about: the stateful
# search over it is spread over this many test items (which xdist spreads over
# its workers), each a search of its own seed.  A registered variant gets one.
PATCH_SEARCH_SHARDS = 8


# The default suite's share of weak-memory searching: one stateful search per
# selected variant in each of these models (sc is every other test's), of
# MEMORY_SEARCH_EXAMPLES examples; --emu-memory-examples=N or
# EMU_MEMORY_EXAMPLES=N makes them a longer campaign.  With --memory-model M
# every machine of the session is M already: the share then runs in M only.
MEMORY_SEARCH_MODELS = ("tso", "weak")
MEMORY_SEARCH_EXAMPLES = 40


def memory_search_examples(config):
    n = config.getoption("emu_memory_examples")
    if n is None:
        text = os.environ.get("EMU_MEMORY_EXAMPLES", str(MEMORY_SEARCH_EXAMPLES))
        if not text.strip().isdigit():
            raise pytest.UsageError(f"EMU_MEMORY_EXAMPLES={text!r}: a number of examples >= 1")
        n = int(text)
    if n < 1:
        raise pytest.UsageError(f"--emu-memory-examples {n}: must be >= 1")
    return n


def pytest_addoption(parser):
    group = parser.getgroup("emulator")
    group.addoption("--variant", action="append", default=[], metavar="NAME|PATH",
                    help="variant to test (registered name or patch file); repeatable")
    group.addoption("--cpus", action="append", type=int, default=[], metavar="N",
                    help="CPU count for the selftest mirrors; repeatable (default 1, 2, 3, 8, 128)")
    group.addoption("--emu-seed", type=int, default=1, metavar="S",
                    help="seed of the emulated runs (default 1)")
    group.addoption("--emu-replay", default=None, metavar="KEY",
                    help="run only the failing run a replay key names (emu1-...)")
    group.addoption("--emu-explore", default=None, metavar="TIME",
                    help="run only an exploration campaign of TIME (60s, 5m, 1h) per selected "
                         "variant, spread over the xdist workers (see python -m emulator explore)")
    group.addoption("--emu-workload", default=None, metavar="W",
                    help="the campaign's workload (stateful, generated, stress, or a selftest "
                         "mirror)")
    group.addoption("--memory-model", default=None, metavar="M",
                    help="sc (default), tso or weak: the memory model of every machine the "
                         "tests build (emulator/kernel/memory_model.py)")
    group.addoption("--emu-memory-examples", type=int, default=None, metavar="N",
                    help="examples of each tso and weak search of the default suite "
                         f"(default {MEMORY_SEARCH_EXAMPLES}, env EMU_MEMORY_EXAMPLES): the "
                         "opt-in longer weak-memory campaign (tests/test_memory_model_search.py)")
    group.addoption("--emu-strategy", default=None, metavar="S",
                    help="exploration strategy for the selftest mirrors and machine_factory "
                         "machines (random, pct, name:key=value,...)")


def _variants(config):
    specs = config.getoption("variant")
    try:
        if specs:
            return [load_variant(s) for s in specs]
        return list(registered().values())
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def _module_variants(config, module):
    """The selected variants a test module runs over: those of its
    ``SUBSYSTEM`` if it names one (a page_alloc suite) or several (a tuple);
    else (a suite of the
    whole machine: mirrors, generated programs, stateful lifecycles) every
    selected variant, each with the other subsystems at their default, and
    by default every mm_cid variant."""
    subsystems = getattr(module, "SUBSYSTEM", None)
    if subsystems is None and not config.getoption("variant"):
        subsystems = "mm_cid"
    if isinstance(subsystems, str):
        subsystems = (subsystems,)
    return [v for v in config._emu_variants if subsystems is None or v.subsystem in subsystems]


def pytest_configure(config):
    config._emu_variants = _variants(config)
    cpus = config.getoption("cpus") or list(DEFAULT_CPUS)
    for n in cpus:
        if not 1 <= n <= 1024:
            raise pytest.UsageError(f"--cpus {n}: must be in 1..1024")
    config._emu_cpus = cpus
    memory_search_examples(config)          # a bad count fails here, not per test
    model = config.getoption("memory_model")
    if model is not None:
        from .machine import set_default_memory_model
        try:
            set_default_memory_model(model)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
    spec = config.getoption("emu_strategy")
    if spec:
        try:
            if spec != "hypothesis" or config.getoption("emu_explore") is None:
                strategy_from_spec(spec)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.addinivalue_line("markers", "emu_cpus(*counts): CPU counts for this selftest")
    key = config.getoption("emu_replay")
    budget = config.getoption("emu_explore")
    try:
        if key is not None:
            from .explore.keys import parse_key
            parse_key(key)
        if budget is not None:
            from .explore.campaign import parse_duration
            config._emu_explore = parse_duration(budget)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_sessionstart(session):
    session.config._emu_interrupt = interrupt.enter()
    if session.config.pluginmanager.getplugin("dsession") is not None:
        # An xdist controller: a SIGTERM sent to it alone reaches its workers
        # as Ctrl-C reaches them all, rather than after execnet's 5 s grace.
        interrupt.forward_to(_signal_workers)


def _signal_workers(signum):
    for worker in psutil.Process().children():
        try:
            worker.send_signal(signum)
        except psutil.Error:
            pass


def pytest_unconfigure(config):
    if config.getoption("memory_model") is not None:
        from .machine import set_default_memory_model
        set_default_memory_model("sc")
    scope = getattr(config, "_emu_interrupt", None)
    if scope is not None:
        del config._emu_interrupt
        interrupt.leave(scope)


def pytest_collection_finish(session):
    interrupt.checkpoint()          # one recorded while a test file was being imported


def pytest_runtest_setup(item):
    interrupt.checkpoint()          # one recorded while the last test failed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """An interrupt stops the session, even where Hypothesis grouped it with
    the failures it found (a BaseExceptionGroup is not a KeyboardInterrupt to
    pytest, which would report the group as the test's failure); one recorded
    where it could not be raised at once is raised when the test ends."""
    try:
        result = yield
    except BaseExceptionGroup as group:
        stop = group.subgroup(KeyboardInterrupt)
        if stop is None:
            raise
        while isinstance(stop, BaseExceptionGroup):
            stop = stop.exceptions[0]
        raise stop from group
    interrupt.checkpoint()
    return result


def pytest_report_header(config):
    if config.getoption("emu_explore") is not None:
        return ["emulator: each campaign appends its failures, as it finds them, to "
                "emulator-findings-VARIANT-SHARD.jsonl"]
    return None


def pytest_ignore_collect(collection_path, config):
    """With ``--emu-replay`` or ``--emu-explore`` nothing is collected but the
    replay or the campaign."""
    if config.getoption("emu_replay") is not None or config.getoption("emu_explore") is not None:
        return True
    return None


def pytest_collection_modifyitems(session, config, items):
    key = config.getoption("emu_replay")
    if key is not None:
        items[:] = [ReplayItem.from_parent(session, name="emu_replay", key=key)]
    elif config.getoption("emu_explore") is not None:
        # One campaign per variant and worker, each with its own seed: -n auto
        # spreads them, and xdist's remote hosts add workers.
        shards = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        items[:] = [CampaignItem.from_parent(session, name=f"explore[{v.name}-{shard}]",
                                             variant=v, shard=shard)
                    for v in config._emu_variants for shard in range(shards)]


class CampaignItem(pytest.Item):
    """One shard of an exploration campaign (``--emu-explore``)."""

    def __init__(self, *, variant, shard, **kwargs):
        super().__init__(**kwargs)
        self.variant = variant
        self.shard = shard

    def runtest(self):
        from .explore.campaign import Campaign
        config = self.config
        strategy = config.getoption("emu_strategy") or "hypothesis"
        campaign = Campaign(self.variant, strategy, config.getoption("emu_workload"),
                            config.getoption("cpus") or None, seed=self.shard)
        campaign.record_findings(str(config.invocation_params.dir /
                                     campaign.default_findings_path()))
        campaign.run(seconds=config._emu_explore, progress=False)
        self.user_properties.append(("summary", campaign.summary()))
        if campaign.failures:
            raise ReplayFailed(campaign.reports() + "\n\n" + campaign.summary())

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, (ReplayFailed, UsageError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return "emulator explore", None, self.name


class ReplayFailed(Exception):
    pass


class ReplayItem(pytest.Item):
    """The run a ``--emu-replay`` key names, as one test."""

    def __init__(self, *, key, **kwargs):
        super().__init__(**kwargs)
        self.key = key

    def runtest(self):
        from .explore.replay import replay
        lines = []
        status = replay(self.key, out=lines.append)
        text = "\n".join(lines)
        if status == 4:
            pytest.skip(text)
        if status != 0:
            raise ReplayFailed(text)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ReplayFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return "emulator replay", None, self.name


def pytest_generate_tests(metafunc):
    if "emu_variant" in metafunc.fixturenames:
        variants = _module_variants(metafunc.config, metafunc.module)
        metafunc.parametrize("emu_variant", variants, ids=[v.name for v in variants])
    if "emu_search" in metafunc.fixturenames:
        variants = _module_variants(metafunc.config, metafunc.module)
        params = [(v, shard) for v in variants
                  for shard in range(PATCH_SEARCH_SHARDS if getattr(v, "source", None) else 1)]
        metafunc.parametrize("emu_search", params,
                             ids=[f"{v.name}-{shard}" if getattr(v, "source", None) else v.name
                                  for v, shard in params])
    if "emu_memory_search" in metafunc.fixturenames:
        forced = metafunc.config.getoption("memory_model")
        models = (forced,) if forced else MEMORY_SEARCH_MODELS
        variants = _module_variants(metafunc.config, metafunc.module)
        params = [(v, m) for v in variants for m in models]
        metafunc.parametrize("emu_memory_search", params, indirect=True,
                             ids=[f"{v.name}-{m}" for v, m in params])
    if "selftest_machine" in metafunc.fixturenames:
        config = metafunc.config
        marker = metafunc.definition.get_closest_marker("emu_cpus")
        cpus = list(marker.args) if marker and not config.getoption("cpus") else config._emu_cpus
        params = [(v, n) for v in _module_variants(config, metafunc.module) for n in cpus]
        metafunc.parametrize("selftest_machine", params, indirect=True,
                             ids=[f"{v.name}-{n}cpu" for v, n in params])


class SelftestFailed(AssertionError):
    """A mirror reported "fail" (not an emulator finding such as an invariant
    violation, which stays a plain failure even where the era is expected to fail)."""


class SelftestRun:
    """Builds the machine for one (variant, cpus) case and judges the mirror's Result."""

    def __init__(self, request, variant, nr_cpus, seed):
        self.request = request
        self.variant = variant
        self.nr_cpus = nr_cpus
        self.seed = seed
        self.machine = None

    def replay_commands(self):
        from .explore.mirror import selftest_replay
        module = self.request.module.__name__.rsplit(".", 1)[-1]
        name = module[:-len("_test")] if module.endswith("_test") else module
        strategy = self.request.config.getoption("emu_strategy")
        return (f"{selftest_replay(name, self.variant, self.nr_cpus, self.seed, strategy)}\n"
                f"        {rerun_command(self.request.node)}")

    def check(self, run, **machine_kwargs):
        strategy = self.request.config.getoption("emu_strategy")
        if strategy:
            machine_kwargs.setdefault("strategy", strategy_from_spec(strategy))
        self.machine = Machine(nr_cpus=self.nr_cpus, variants=[self.variant], seed=self.seed,
                               replay=self.replay_commands(), **machine_kwargs)
        try:
            result = run(self.machine)
        except EmulationFailure as exc:
            pytest.fail(f"{exc.kind}: {exc}", pytrace=False)
        if result.outcome == "skip":
            pytest.skip(result.detail)
        if result.outcome == "fail":
            raise SelftestFailed(f"selftest failed (exit status {result.status}): {result.detail}\n"
                                 f"{self.machine.failure_report()}")
        return result


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that failed with an emulated failure gets the pytest replay line."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None and \
            isinstance(call.excinfo.value, EmulationFailure):
        report.sections.append(("emulator replay", rerun_command(item)))


def rerun_command(item):
    """The pytest command that runs test *item* again as this run did, from
    the directory this run started in: the test id alone names neither a patch
    file nor a CPU count."""
    config = item.config
    where = os.path.relpath(item.path, config.invocation_params.dir)
    if where.startswith(os.pardir):
        where = str(item.path)
    test = where + item.nodeid[item.nodeid.index("::"):] if "::" in item.nodeid else where
    args = ["pytest", test, f"--emu-seed={config.getoption('emu_seed')}"]
    args += [f"--variant={spec}" for spec in config.getoption("variant")]
    args += [f"--cpus={n}" for n in config.getoption("cpus")]
    strategy = config.getoption("emu_strategy")
    if strategy:
        args.append(f"--emu-strategy={strategy}")
    if config.getoption("memory_model"):
        args.append(f"--memory-model={config.getoption('memory_model')}")
    return shlex.join(args)


@pytest.fixture
def selftest_machine(request):
    """A mirror's run on one (variant, CPU count).  Where the mirror module's
    ``EXPECTED`` says an era fails, and why, the test is an xfail (strict where
    the era cannot pass); only the mirror's own failure counts as expected."""
    variant, nr_cpus = request.param
    expected = getattr(request.module, "EXPECTED", {}).get(variant.name)
    if expected is not None and expected[0] == "fail":
        _, reason, strict = expected
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=strict,
                                                  raises=SelftestFailed))
    return SelftestRun(request, variant, nr_cpus, request.config.getoption("emu_seed"))


@pytest.fixture
def emu_memory_search(request):
    """(variant, memory model, examples): a share of the searches in tso and weak."""
    variant, model = request.param
    return variant, model, memory_search_examples(request.config)


@pytest.fixture
def emu_variant(request):
    """Each selected variant (every registered mm_cid variant by default)."""
    return request.param


@pytest.fixture
def emu_seed(request):
    return request.config.getoption("emu_seed")


@pytest.fixture
def machine_factory(request):
    """``machine_factory(nr_cpus=8, **kwargs)``: a Machine with the session's seed
    and (first) selected variant unless the test passes its own."""
    seed = request.config.getoption("emu_seed")
    variants = [v for v in request.config._emu_variants[:1]]

    strategy = request.config.getoption("emu_strategy")

    def make(nr_cpus=8, **kwargs):
        kwargs.setdefault("seed", seed)
        kwargs.setdefault("variants", variants)
        if strategy:
            kwargs.setdefault("strategy", strategy_from_spec(strategy))
        return Machine(nr_cpus=nr_cpus, **kwargs)
    return make


@pytest.fixture(autouse=True)
def no_host_thread_outlives_a_run():
    """Every host thread a test started must be gone when it ends."""
    proc = psutil.Process()
    before = {t.id for t in proc.threads()}
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = {t.id for t in proc.threads()} - before
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if leaked:
        names = [t.name for t in threading.enumerate() if t.native_id in leaked]
        pytest.fail(f"host threads outlived the test: {sorted(names) or sorted(leaked)}",
                    pytrace=False)
