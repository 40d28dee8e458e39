"""Workloads: what ``python -m emulator compare`` runs on each machine.

A workload is a small Python file with one class deriving from `Workload`,
found by name (the built-in ones, one module each in this package) or by
path, like a variant; ``name:ARG`` passes an argument (``cpu-load:80``) and
``a+b`` runs several at once (``cpu-load:80+cyclictest``).  Its module
docstring says what it copies and where it departs.  A workload builds the
programs the run forks (emulator.workload: synthetic programs, no host
thread) and may measure what its real counterpart measures::

    from emulator.workload import Program, repeat, run, sleep
    from emulator.workloads import Workload

    class Spin(Workload):
        '''N processes that compute 1 ms and sleep 1 ms.'''
        name = "spin"
        usage = "spin[:N]"

        def __init__(self, arg=None):
            self.n = self.int_arg(arg, default=None, least=1)

        def programs(self, ctx):
            n = self.n or ctx.nr_cpus
            return [Program(repeat(FOREVER, run(MS), sleep(MS)), comm="spin")] * n

Every run lasts the duration asked for and is then abandoned, as the seed
authors' scripts killed their loads (``pkill stress-ng``): a program loops
``FOREVER`` and nothing is measured after the duration.
"""

import importlib
import os
import re

from ..errors import UsageError

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
FOREVER = 1 << 40              # a loop count no run reaches

_builtin_modules = ("idle", "cpu_load", "fork", "pthread_max", "hackbench", "cyclictest", "osnoise",
                    "lazy_tlb")


class Context:
    """What a workload sees of the run: the machine, its CPU count, the
    duration (ns), and ``cpus``: the CPUs per-CPU workloads go to (the
    isolated ones if the machine has any, as the seed authors pinned their
    loads and probes to them, else every CPU)."""

    def __init__(self, machine, duration_ns):
        self.machine = machine
        self.kernel = machine.kernel
        self.nr_cpus = machine.nr_cpus
        self.duration_ns = duration_ns
        k = machine.kernel
        isolated = (k.nohz_full_mask | k.isolated_mask) & ((1 << machine.nr_cpus) - 1)
        self.isolated = [cpu for cpu in range(machine.nr_cpus) if isolated >> cpu & 1]
        self.cpus = self.isolated or list(range(machine.nr_cpus))


class Workload:
    """A workload.  Subclasses set ``name`` and ``usage`` and override
    programs(); attach() and results() are for those that measure."""

    name = None
    usage = ""            # how --workload names it with its argument
    source = None         # the file a user's workload was loaded from
    spec = None           # what --workload said (set by load_workloads())

    def __init__(self, arg=None):
        if arg is not None:
            raise UsageError(f"workload {self.name!r} takes no argument (got {arg!r})")

    def programs(self, ctx):
        """The programs the run's main process forks, each a process."""
        return []

    def attach(self, ctx):
        """Subscribe to what it measures, before the run starts."""

    def results(self, ctx):
        """What it measured once the duration is over: a dict with
        ``counters`` (name -> number), and ``latency`` or ``noise`` (an
        emulator.observe.histogram.Histogram) if it records them."""
        return {}

    # -- helpers for parsing the argument --------------------------------------------------

    def int_arg(self, text, default, least=0, most=None, what=None, key=None):
        """*text* as an int in [least, most], or *default* if it is None.
        *key*: the option's name (of those options() parses), which an
        error names with the value."""
        if text is None or text == "":
            return default
        what = what or self.usage or self.name
        arg = f"{self.name}: {key} {text}" if key else f"{self.name}:{text}"
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"workload {arg}: not a number ({what})") from None
        if value < least or (most is not None and value > most):
            bound = f"{least}..{most}" if most is not None else f"at least {least}"
            raise UsageError(f"workload {arg}: must be {bound} ({what})")
        return value

    def options(self, text, positional=(), known=()):
        """*text* (``80,slice=2ms``) as a dict: bare values by the names in
        *positional*, ``key=value`` by key (each in *positional* or *known*)."""
        out = {}
        if not text:
            return out
        for i, part in enumerate(text.split(",")):
            key, eq, value = part.partition("=")
            if not eq:
                if i >= len(positional):
                    raise UsageError(f"workload {self.name}:{text}: too many values ({self.usage})")
                key, value = positional[i], part
            elif key not in positional and key not in known:
                raise UsageError(f"workload {self.name}:{text}: unknown option {key!r} "
                                 f"({self.usage})")
            out[key.strip()] = value.strip()
        return out

    def duration_arg(self, text, default, what):
        if text is None:
            return default
        try:
            return parse_duration(text, what)
        except UsageError as exc:
            raise UsageError(f"workload {self.name}: {exc}") from None


def registered():
    """The built-in workload classes by name: each module's Workload class."""
    out = {}
    for mod in _builtin_modules:
        module = importlib.import_module(f"{__name__}.{mod}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Workload) and obj.name and \
                    obj.__module__ == module.__name__:
                out[obj.name] = obj
    return out


_UNITS = {"ns": 1, "us": NS_PER_US, "ms": NS_PER_MS, "s": NS_PER_S, "m": 60 * NS_PER_S}


def parse_duration(text, what="--duration"):
    """Nanoseconds in ``1s``, ``200ms``, ``500us``, ``1.5s``, ``2m`` (a bare number: seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|ms|s|m)?\s*", str(text))
    if not m:
        raise UsageError(f"{what} {text!r}: not a duration such as 1s, 200ms or 500us")
    ns = round(float(m.group(1)) * _UNITS[m.group(2) or "s"])
    if ns <= 0:
        raise UsageError(f"{what} {text!r}: must be more than 0")
    return ns


def _split_spec(spec):
    """``name[:arg]`` or ``path.py[:arg]`` -> (name or path, arg or None)."""
    m = re.match(r"(.+?\.py)(?::(.*))?$", spec)
    if m:
        return m.group(1), m.group(2)
    name, colon, arg = spec.partition(":")
    return name, (arg if colon else None)


def load_workload_class(name):
    """A workload class from a registry name or a ``.py`` file path."""
    if name.endswith(".py") or os.sep in name:
        return _load_file(name)
    known = registered()
    try:
        return known[name]
    except KeyError:
        raise UsageError(f"unknown workload {name!r}; known: {', '.join(known)} "
                         f"(or a .py file)") from None


def load_workloads(spec):
    """The workloads *spec* names (``cpu-load:80+cyclictest``), each built
    with its argument; a UsageError for anything wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"a workload is a name or a .py file, not {spec!r}")
    out = []
    for part in spec.split("+"):
        part = part.strip()
        if not part:
            raise UsageError(f"workload {spec!r}: an empty part between '+'")
        name, arg = _split_spec(part)
        cls = load_workload_class(name)
        workload = cls(arg)
        workload.spec = part
        out.append(workload)
    return out


def _load_file(path):
    from ..pyfile import leaf_classes
    leaves = leaf_classes(path, Workload, "emulator_workload_", "workload")
    if len(leaves) != 1:
        raise UsageError(f"workload file {path!r} must define exactly one Workload class "
                         f"with a name (found {len(leaves)})")
    cls = leaves[0]
    cls.source = path
    return cls
