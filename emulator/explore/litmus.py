"""The kernel's litmus tests (tools/memory-model/litmus-tests/) as the
conformance suite of the memory models (emulator.kernel.memory_model).

A reader for herd7's C litmus format as the kernel's tests write it: the
``C name`` line, the ``(* Result: ... *)`` comment, the initial state
(``{ int x; int *p=y; spinlock_t s; }``), the threads ``P0(int *x, ...) {
... }`` and the ``exists`` clause (``locations [...]`` and trailing comments
are skipped).  A thread is compiled to a few instructions: loads
(READ_ONCE, smp_load_acquire, rcu_dereference, ``*p`` read plainly,
spin_is_locked), stores (WRITE_ONCE, smp_store_release,
rcu_assign_pointer, ``*p = e``), fences (smp_mb, smp_rmb, smp_wmb,
smp_mb__before_atomic, smp_mb__after_atomic, smp_mb__after_spinlock),
spin_lock/spin_unlock, xchg/cmpxchg and the atomic_* of the tests,
register assignments and ``if``.

Every outcome a model can produce is enumerated: a depth-first search over
the model's states (each thread a CPU of the model, whose next instruction
may run at any state; each chooser decision of the model, which store a load
reads or where a store goes in the coherence order, taken every way; for
``tso`` each buffered store reaching memory as a step of its own), with the
states already met cut.  The tests are tiny, so the search is exhaustive.

The verdict is herd7's ``Observation``: ``Never`` when no outcome satisfies
``exists``, ``Always`` when all do, ``Sometimes`` otherwise; it is compared
with the test's ``Result:`` line as tools/memory-model/scripts/judgelitmus.sh
compares them (``Maybe`` always passes).  A mode may be stronger than the
LKMM, never weaker: an outcome a ``Never`` test forbids is a failure in any
mode, a ``Sometimes`` a mode cannot produce is a miss, listed with the reason.

The enumeration runs a litmus thread on the memory model's object directly,
one instruction a step.  ``run_on_machine()`` runs the same test as kernel
threads of a Machine, through the primitives of emulator.kernel.locking, as
klitmus7 runs a test on hardware: sampled, and every outcome it meets must be
one the enumeration produces.
"""

import os
import re

from ..errors import UsageError
from ..kernel.memory_model import MODELS, NO_STORE, SCModel, TSOModel, WeakModel

__all__ = ["LITMUS_DIR", "LitmusError", "LitmusTest", "default_litmus_files", "format_machine_table",
           "format_table", "judge", "litmus_table", "load_litmus", "machine_supports",
           "parse_litmus", "run_litmus", "run_on_machine", "verdict"]

LITMUS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "litmus")

# Why a mode cannot produce what a Sometimes test allows: the mode's own
# strength, or the model's departure from the LKMM the test needs.
MODE_REASONS = {
    "sc": "sequential consistency reorders nothing",
    "tso": "x86-TSO reorders only a store with a later load (store buffering); "
           "locks and atomics are full barriers",
}
WEAK_DEPARTURES = (
    # (what the test needs, how to see it in the test, the reason)
    ("load buffering", lambda t: t.name.startswith("LB+"),
     "no load buffering in the model: a load reads only stores already executed"),
)


class LitmusError(UsageError):
    pass


class LitmusTest:
    """One parsed test: its name, expected result, initial state, threads and
    the ``exists`` condition."""

    def __init__(self, name, result, init, threads, cond, cond_text, path=None, datarace=False):
        self.name = name
        self.result = result            # "Never", "Sometimes", "Always", "Maybe" or None
        self.init = init                # location -> initial value (int or location name)
        self.threads = threads          # list of instruction lists
        self.cond = cond                # callable(outcome dict) -> bool
        self.cond_text = cond_text
        self.path = path
        self.datarace = datarace
        self.locks = set()


# -- the reader ------------------------------------------------------------------------

_RESULT = re.compile(r"^[( ]\* Result: (\S+)", re.M)


def parse_litmus(text, path=None):
    """A LitmusTest from the text of a C litmus test."""
    where = path or "<litmus>"
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    m = re.match(r"C\s+(\S+)", first)
    if not m:
        raise LitmusError(f"{where}: not a C litmus test (first line {first!r})")
    name = m.group(1)
    rm = _RESULT.search(text)
    result = rm.group(1) if rm else None
    datarace = bool(rm and "DATARACE" in text[rm.start():text.find("\n", rm.start())])
    body = text[text.index(first) + len(first):]
    body = re.sub(r"\(\*\s.*?\*\)", " ", body, flags=re.S)
    body = re.sub(r"//[^\n]*", " ", body)
    # the initial state: the first {...}
    i = body.index("{")
    j = body.index("}", i)
    init, locks = _parse_init(body[i + 1:j], where)
    rest = body[j + 1:]
    threads = []
    pos = 0
    for tm in re.finditer(r"P(\d+)\s*\(([^)]*)\)\s*\{", rest):
        if tm.start() < pos:
            continue
        n = int(tm.group(1))
        if n != len(threads):
            raise LitmusError(f"{where}: thread P{n} out of order")
        params = tm.group(2)
        for p in params.split(","):
            if "spinlock_t" in p:
                locks.add(p.replace("spinlock_t", "").replace("*", "").strip())
        start = tm.end()
        depth, k = 1, start
        while depth:
            if k >= len(rest):
                raise LitmusError(f"{where}: P{n}: unbalanced braces")
            depth += {"{": 1, "}": -1}.get(rest[k], 0)
            k += 1
        threads.append(_compile_thread(rest[start:k - 1], where, n, locks))
        pos = k
    if not threads:
        raise LitmusError(f"{where}: no thread P0")
    em = re.search(r"exists\s*(.*)$", rest[pos:], re.S)
    if not em:
        raise LitmusError(f"{where}: no exists clause")
    cond_text = " ".join(em.group(1).split())
    cond = _compile_cond(cond_text, where)
    for loc in _cond_locations(cond_text):
        init.setdefault(loc, 0)
    t = LitmusTest(name, result, init, threads, cond, cond_text, path, datarace)
    t.locks = set(locks)
    for loc in locks:
        init[loc] = 0
    for thread in threads:
        for ins in thread:
            for loc in ins[-1]:
                init.setdefault(loc, 0)
    return t


def _parse_init(text, where):
    init, locks = {}, set()
    for decl in text.split(";"):
        decl = re.sub(r"ATOMIC_INIT\(\s*(-?\w+)\s*\)", r"\1", decl.strip())
        if not decl:
            continue
        m = re.match(r"(?:(\w+)\s+)?(\**)\s*(?:(\d+):)?(\w+)\s*(?:=\s*(\w+))?$", decl)
        if not m:
            raise LitmusError(f"{where}: initial state: cannot read {decl!r}")
        typ, _, tid, var, value = m.groups()
        if typ == "spinlock_t":
            locks.add(var)
            continue
        if tid is not None:
            continue                     # a register's initial value: registers start at 0
        init[var] = _value(value) if value is not None else 0
    return init, locks


def _value(tok):
    try:
        return int(tok, 0)
    except ValueError:
        return tok                       # a location's name: a pointer to it


# The instructions: (op, ..., locations named) -- the last field lists the
# global locations the instruction names, for the initial state.
_FENCES = {
    "smp_mb": "mb", "smp_rmb": "rmb", "smp_wmb": "wmb",
    "smp_mb__before_atomic": "mb", "smp_mb__after_atomic": "mb",
    "smp_mb__after_spinlock": "mb", "smp_mb__after_unlock_lock": "mb",
    "synchronize_rcu": "mb",
}
_NOPS = {"rcu_read_lock", "rcu_read_unlock", "barrier"}
_LOADS = {"READ_ONCE": False, "smp_load_acquire": True, "rcu_dereference": True,
          "atomic_read": False, "atomic_read_acquire": True}
_STORES = {"WRITE_ONCE": False, "smp_store_release": True, "rcu_assign_pointer": True,
           "atomic_set": False, "atomic_set_release": True}


def _split_statements(body, where):
    """Statements of a thread body, with ``if (c) stmt`` / ``if (c) { ... }``
    as ("if", cond, [statements])."""
    out = []
    s = body.strip()
    while s:
        if s.startswith("if"):
            m = re.match(r"if\s*\(", s)
            k, depth = m.end(), 1
            while depth:
                depth += {"(": 1, ")": -1}.get(s[k], 0)
                k += 1
            cond = s[m.end():k - 1]
            s = s[k:].lstrip()
            if s.startswith("{"):
                depth, e = 1, 1
                while depth:
                    depth += {"{": 1, "}": -1}.get(s[e], 0)
                    e += 1
                inner, s = s[1:e - 1], s[e:].lstrip()
            else:
                e = s.index(";")
                inner, s = s[:e + 1], s[e + 1:].lstrip()
            out.append(("if", cond.strip(), _split_statements(inner, where)))
            continue
        e = s.find(";")
        if e < 0:
            raise LitmusError(f"{where}: missing ';' in {s[:40]!r}")
        out.append(s[:e].strip())
        s = s[e + 1:].lstrip()
    return out


def _compile_thread(body, where, n, locks):
    code = []
    regs = set()

    def loc_of(arg):
        arg = arg.strip()
        if arg.startswith("&"):
            arg = arg[1:].strip()
        elif arg.startswith("*"):
            arg = arg[1:].strip()
        if not re.fullmatch(r"\w+", arg):
            raise LitmusError(f"{where}: P{n}: cannot address {arg!r}")
        return arg

    def where_(arg):
        """A location operand: a register holding a pointer, or a location."""
        name = loc_of(arg)
        return ("reg", name) if name in regs else ("loc", name)

    def expr(e):
        """An expression over registers, compiled to Python; the plain reads
        it makes (``*z2 == 1``) go first, each into a register of its own."""
        e = e.strip()

        def hoist(m):
            tmp = f"__t{len(code)}"
            regs.add(tmp)
            w = where_(m.group(1))
            code.append(("load", tmp, w, False, _named(w)))
            return tmp

        e = re.sub(r"(?<![\w)])\*\s*(\w+)", hoist, e)
        py = e.replace("&&", " and ").replace("||", " or ")
        py = re.sub(r"!(?!=)", " not ", py)
        names = set(re.findall(r"\b[A-Za-z_]\w*\b", py)) - {"and", "or", "not"}
        for nm in names:
            if nm not in regs:
                raise LitmusError(f"{where}: P{n}: {e!r} uses {nm!r}, not a register")
        return (compile(py, where, "eval"), e)

    def call(stmt):
        m = re.fullmatch(r"(\w+)\s*\((.*)\)", stmt, re.S)
        if not m:
            return None, None
        args = [a.strip() for a in _split_args(m.group(2))] if m.group(2).strip() else []
        return m.group(1), args

    def rhs(dst, e):
        """``dst = e`` where *e* may read memory."""
        fn, args = call(e)
        if fn in _LOADS:
            w = where_(args[0])
            code.append(("load", dst, w, _LOADS[fn], _named(w)))
        elif fn == "spin_is_locked":
            code.append(("load", dst, ("loc", loc_of(args[0])), False, (loc_of(args[0]),)))
        elif fn in ("xchg", "xchg_relaxed", "xchg_acquire", "xchg_release",
                    "atomic_xchg"):
            w = where_(args[0])
            code.append(("rmw", dst, w, ("xchg", expr(args[1])), not fn.endswith(
                ("_relaxed", "_acquire", "_release")), _named(w)))
        elif fn in ("cmpxchg", "cmpxchg_relaxed", "cmpxchg_acquire", "cmpxchg_release",
                    "atomic_cmpxchg"):
            w = where_(args[0])
            code.append(("rmw", dst, w, ("cmpxchg", expr(args[1]), expr(args[2])),
                         not fn.endswith(("_relaxed", "_acquire", "_release")), _named(w)))
        elif fn in ("atomic_inc_return", "atomic_dec_return", "atomic_add_return",
                    "atomic_fetch_add", "atomic_inc_return_relaxed"):
            w = where_(args[-1])
            delta = {"atomic_inc_return": "1", "atomic_dec_return": "-1",
                     "atomic_inc_return_relaxed": "1"}.get(fn, args[0] if len(args) > 1 else "1")
            kind = "fetch_add" if fn == "atomic_fetch_add" else "add_return"
            code.append(("rmw", dst, w, (kind, expr(delta)), not fn.endswith("_relaxed"),
                         _named(w)))
        elif fn is not None and fn not in ("int",):
            raise LitmusError(f"{where}: P{n}: unknown primitive {fn}()")
        elif e.startswith("*"):
            w = where_(e)
            code.append(("load", dst, w, False, _named(w)))     # a plain read
        else:
            code.append(("set", dst, expr(e), ()))

    def stmt(s):
        if isinstance(s, str) and s.startswith("(void)"):
            s = s[len("(void)"):].strip()
        if isinstance(s, tuple):
            _, cond, inner = s
            test_e = expr(cond)
            at = len(code)
            code.append(None)
            for x in inner:
                stmt(x)
            code[at] = ("jz", test_e, len(code), ())
            return
        m = re.fullmatch(r"(?:int|long|unsigned|u\w+)\s*(\**)\s*(\w+)\s*(?:=\s*(.+))?", s, re.S)
        if m:
            regs.add(m.group(2))
            if m.group(3) is not None:
                rhs(m.group(2), m.group(3))
            return
        m = re.fullmatch(r"(\*?\s*\w+)\s*=\s*(.+)", s, re.S)
        if m:
            lhs, e = m.group(1).replace(" ", ""), m.group(2)
            if lhs.startswith("*"):
                tmp = f"__t{len(code)}"
                regs.add(tmp)
                rhs(tmp, e)
                w = where_(lhs)
                code.append(("store", w, expr(tmp), False, _named(w)))   # a plain write
            else:
                if lhs not in regs:
                    raise LitmusError(f"{where}: P{n}: {lhs!r} is not a register")
                rhs(lhs, e)
            return
        fn, args = call(s)
        if fn in _STORES:
            w = where_(args[0])
            val = args[1]
            if re.fullmatch(r"[A-Za-z_]\w*", val) and val not in regs:
                val_e = (compile(repr(val), where, "eval"), val)      # a pointer to a location
            else:
                val_e = expr(val)
            code.append(("store", w, val_e, _STORES[fn], _named(w)))
        elif fn in _FENCES:
            code.append(("fence", _FENCES[fn], ()))
        elif fn in _NOPS:
            pass
        elif fn in ("spin_lock", "spin_unlock"):
            lk = loc_of(args[0])
            locks.add(lk)
            code.append(("lock" if fn == "spin_lock" else "unlock", lk, (lk,)))
        elif fn == "atomic_add_unless":        # fully ordered when it adds
            w = where_(args[0])
            tmp = f"__t{len(code)}"
            regs.add(tmp)
            code.append(("rmw", tmp, w, ("add_unless", expr(args[1]), expr(args[2])), True,
                         _named(w)))
        elif fn in ("atomic_inc", "atomic_dec", "atomic_add", "atomic_sub"):
            w = where_(args[-1])
            delta = {"atomic_inc": "1", "atomic_dec": "-1"}.get(fn) or \
                (args[0] if fn == "atomic_add" else f"-({args[0]})")
            tmp = f"__t{len(code)}"
            regs.add(tmp)
            code.append(("rmw", tmp, w, ("fetch_add", expr(delta)), False, _named(w)))
        elif fn is not None:
            rhs(f"__t{len(code)}", s) if fn in _LOADS else None
            if fn not in _LOADS:
                raise LitmusError(f"{where}: P{n}: unknown primitive {fn}()")
        else:
            raise LitmusError(f"{where}: P{n}: cannot read {s!r}")

    for s in _split_statements(body, where):
        stmt(s)
    return code


def _named(w):
    return (w[1],) if w[0] == "loc" else ()


def _split_args(s):
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        cur += ch
    out.append(cur)
    return out


_ATOM = re.compile(r"(?:(\d+):)?(\w+)\s*(!=|=)\s*(-?\w+)")


def _compile_cond(text, where):
    """The exists clause as a function of the outcome ({"0:r0": 1, "x": 2})."""
    py = text
    if py.startswith("exists"):
        py = py[6:]
    atoms = []

    def atom(m):
        tid, name, op, value = m.groups()
        key = f"{tid}:{name}" if tid is not None else name
        atoms.append(key)
        v = _value(value)
        return f"(o.get({key!r}) {'==' if op == '=' else '!='} {v!r})"

    py = _ATOM.sub(atom, py)
    py = py.replace("/\\", " and ").replace("\\/", " or ").replace("~", " not ")
    py = py.replace("true", "True").replace("false", "False")
    try:
        code = compile(py, where, "eval")
    except SyntaxError:
        raise LitmusError(f"{where}: cannot read the exists clause {text!r}") from None
    return lambda o: eval(code, {}, {"o": o})


def _cond_locations(text):
    return [name for tid, name, _, _ in _ATOM.findall(text) if not tid]


# -- the search ----------------------------------------------------------------------

class _Forced:
    """A chooser that answers a fixed prefix, then 0, and records how many
    answers each question had."""

    __slots__ = ("forced", "arity")

    def __init__(self, forced):
        self.forced = forced
        self.arity = []

    def below(self, n):
        i = len(self.arity)
        self.arity.append(n)
        return self.forced[i] if i < len(self.forced) else 0


def _next_choices(forced, arity):
    """The next choice sequence after the one that asked *arity*, or None."""
    seq = list(forced) + [0] * (len(arity) - len(forced))
    for p in range(len(arity) - 1, -1, -1):
        if seq[p] + 1 < arity[p]:
            return seq[:p] + [seq[p] + 1]
    return None


class _LitmusMemory:
    """The litmus run's memory: a dict (the model's storage)."""

    def get(self, obj, field):
        return self.mem[field]

    def set(self, obj, field, value):
        self.mem[field] = value


def _model_class(mode):
    base = {"sc": SCModel, "tso": TSOModel, "weak": WeakModel}[mode]
    cls = _MODEL_CLASSES.get(mode)
    if cls is None:
        cls = _MODEL_CLASSES[mode] = type(f"Litmus{base.__name__}", (_LitmusMemory, base), {})
    return cls


_MODEL_CLASSES = {}


def _new_model(mode, test):
    model = _model_class(mode)(len(test.threads))
    model.mem = dict(test.init)
    return model


def _clone(model):
    new = model.clone()
    new.mem = dict(model.mem)
    return new


def _local(test, tid, pc, regs):
    """Run thread *tid*'s register-only instructions from *pc*."""
    code = test.threads[tid]
    while pc < len(code):
        ins = code[pc]
        if ins[0] == "set":
            regs[ins[1]] = eval(ins[2][0], {}, dict(regs))
            pc += 1
        elif ins[0] == "jz":
            pc = pc + 1 if eval(ins[1][0], {}, dict(regs)) else ins[2]
        else:
            break
    return pc


def _loc(w, regs):
    return w[1] if w[0] == "loc" else regs[w[1]]


def _enabled(test, model, threads):
    """The steps that may run: a thread's next instruction ("t", i), a
    buffered store reaching memory ("p", cpu)."""
    out = []
    for i, (pc, regs) in enumerate(threads):
        code = test.threads[i]
        if pc >= len(code):
            continue
        ins = code[pc]
        if ins[0] == "lock" and _lock_word(model, i, ins[1]) != 0:
            continue                     # spinning: not a step until it is free
        out.append(("t", i))
    out.extend(("p", c) for c in model.pending())
    return out


def _lock_word(model, c, lock):
    """The lock word as the lock's atomic RMW would find it (TSO: after
    draining this CPU's buffer; weak: the coherence-latest store)."""
    probe = _clone(model)
    probe.below = lambda n: 0
    return probe.rmw(c, None, lock, lambda old: NO_STORE, ordered=False)


def _step(test, model, threads, step):
    kind, i = step
    if kind == "p":
        model.propagate(i)
        return threads
    pc, regs = threads[i]
    regs = dict(regs)
    ins = test.threads[i][pc]
    op = ins[0]
    if op == "load":
        regs[ins[1]] = model.load(i, None, _loc(ins[2], regs), acquire=ins[3])
    elif op == "store":
        model.store(i, None, _loc(ins[1], regs), eval(ins[2][0], {}, dict(regs)), release=ins[3])
    elif op == "fence":
        model.fence(i, ins[1])
    elif op == "lock":
        model.rmw(i, None, ins[1], lambda old: 1, ordered=False)
        if isinstance(model, WeakModel):
            h = model.hist[(None, ins[1])]
            model.lock_acquired(i, ins[1], view=h[-2][2])     # the unlock it read
    elif op == "unlock":
        if isinstance(model, WeakModel):
            view = model.lock_releasing(i, ins[1])
            model.store(i, None, ins[1], 0, release=True)
            assert view is not None
        else:
            model.store(i, None, ins[1], 0, release=True)
    elif op == "rmw":
        dst, w, f, ordered = ins[1], ins[2], ins[3], ins[4]
        env = dict(regs)
        if f[0] == "xchg":
            new = eval(f[1][0], {}, env)
            fn = lambda old: new
        elif f[0] == "cmpxchg":
            exp, new = eval(f[1][0], {}, env), eval(f[2][0], {}, env)
            fn = lambda old: new if old == exp else NO_STORE
        elif f[0] == "add_unless":
            delta, unless = eval(f[1][0], {}, env), eval(f[2][0], {}, env)
            fn = lambda old: old + delta if old != unless else NO_STORE
        else:
            delta = eval(f[1][0], {}, env)
            fn = lambda old: old + delta
        old = model.rmw(i, None, _loc(w, regs), fn, ordered=ordered)
        regs[dst] = old + delta if f[0] == "add_return" else old
    pc = _local(test, i, pc + 1, regs)
    threads = list(threads)
    threads[i] = (pc, tuple(sorted(regs.items())))
    return tuple(threads)


def run_litmus(test, mode, limit=2_000_000):
    """Every outcome *mode* can produce for *test*: a set of tuples of
    ``(name, value)`` (registers as "0:r0", final memory by location)."""
    if mode not in MODELS:
        raise UsageError(f"memory model must be one of {', '.join(MODELS)}, not {mode!r}")
    model = _new_model(mode, test)
    threads = []
    for i in range(len(test.threads)):
        regs = {}
        pc = _local(test, i, 0, regs)
        threads.append((pc, tuple(sorted(regs.items()))))
    start = (model, tuple(threads))
    seen = set()
    outcomes = set()
    stack = [start]
    states = 0
    while stack:
        model, threads = stack.pop()
        key = (threads, model.key(), tuple(sorted(model.mem.items())))
        if key in seen:
            continue
        seen.add(key)
        states += 1
        if states > limit:
            raise LitmusError(f"{test.name}: more than {limit} states in mode {mode}")
        steps = _enabled(test, model, threads)
        if not steps:
            if all(pc >= len(test.threads[i]) for i, (pc, _) in enumerate(threads)):
                outcomes.add(_outcome(test, model, threads))
            continue
        for step in steps:
            forced = []
            while forced is not None:
                m2 = _clone(model)
                ch = _Forced(forced)
                m2.below = ch.below
                stack.append((m2, _step(test, m2, threads, step)))
                forced = _next_choices(forced, ch.arity)
    return outcomes


def _outcome(test, model, threads):
    final = _clone(model)
    final.drain_all()
    out = {}
    for i, (_, regs) in enumerate(threads):
        for r, v in regs:
            if not r.startswith("__t"):
                out[f"{i}:{r}"] = v
    for loc in test.init:
        if loc not in test.locks:
            out[loc] = final.mem[loc]
    return tuple(sorted(out.items()))


# -- the same tests as kernel paths on a Machine -------------------------------------

_MACHINE_RMW = {"xchg", "cmpxchg"}


class NotOnMachine(Exception):
    """The test uses an operation the machine's primitives do not offer on a plain field."""


def machine_supports(test):
    """Whether every instruction of *test* has a primitive of emulator.kernel.locking."""
    return all(ins[0] != "rmw" or (ins[3][0] in _MACHINE_RMW and ins[4])
               for thread in test.threads for ins in thread)


def run_on_machine(test, mode, runs=50, seed=0, strategy="random:p=0.3,max_ns=3000"):
    """Run *test* *runs* times on a Machine in *mode*, as klitmus7 runs a test
    on hardware: thread Pn a kernel thread bound to CPU n, its instructions the
    primitives of emulator.kernel.locking (READ_ONCE, smp_store_release,
    smp_mb, raw_spin_lock, cmpxchg, ...), the threads released together, the
    strategy pausing them at the scheduling points.  A Counter of outcomes
    (sampled, not enumerated: what a run never met may still be possible)."""
    from collections import Counter
    if not machine_supports(test):
        raise NotOnMachine(f"{test.name}: an atomic the machine has no plain-field primitive for")
    found = Counter()
    for i in range(runs):
        found[_machine_run(test, mode, seed + i, strategy)] += 1
    return found


def _machine_run(test, mode, seed, strategy):
    from ..kernel import locking as L
    from ..machine import Machine
    from .strategies import strategy_from_spec

    class Memory:
        name = "litmus"
    mem = Memory()
    for loc, value in test.init.items():
        if loc not in test.locks:
            setattr(mem, loc, value)
    locks = {name: L.raw_spinlock_t(name) for name in test.locks}
    n = len(test.threads)
    started, done, regs_of = [], [], {}

    def thread(i):
        started.append(i)
        while len(started) < n:                 # released together (the harness's own flag)
            L.cpu_relax()
        code = test.threads[i]
        regs = {}
        pc = _local(test, i, 0, regs)
        while pc < len(code):
            ins = code[pc]
            op = ins[0]
            if op == "load":
                loc = _loc(ins[2], regs)
                if loc in locks:
                    regs[ins[1]] = int(L.READ_ONCE(locks[loc], "owner") is not None)
                elif ins[3]:
                    regs[ins[1]] = L.smp_load_acquire(mem, loc)
                else:
                    regs[ins[1]] = L.READ_ONCE(mem, loc)
            elif op == "store":
                value = eval(ins[2][0], {}, dict(regs))
                (L.smp_store_release if ins[3] else L.WRITE_ONCE)(mem, _loc(ins[1], regs), value)
            elif op == "fence":
                {"mb": L.smp_mb, "rmb": L.smp_rmb, "wmb": L.smp_wmb}[ins[1]]()
            elif op == "lock":
                L.raw_spin_lock(locks[ins[1]])
            elif op == "unlock":
                L.raw_spin_unlock(locks[ins[1]])
            elif op == "rmw":
                f, env, loc = ins[3], dict(regs), _loc(ins[2], regs)
                if f[0] == "xchg":
                    regs[ins[1]] = L.xchg(mem, loc, eval(f[1][0], {}, env))
                else:
                    regs[ins[1]] = L.cmpxchg(mem, loc, eval(f[1][0], {}, env),
                                             eval(f[2][0], {}, env))
            pc = _local(test, i, pc + 1, regs)
        regs_of[i] = regs
        done.append(i)

    def main(k):
        for i in range(1, n):
            k.kthread_create_on_cpu(lambda arg: thread(arg), i, i, f"P{i}")
        thread(0)
        while len(done) < n:
            L.cpu_relax()
        model = k.memory_model
        if model is not None:
            model.drain_all()                   # tso: the buffers reach memory at the end
    m = Machine(nr_cpus=max(2, n), seed=seed, memory_model=mode,
                strategy=strategy_from_spec(strategy) if strategy else None)
    m.run_kernel(main)
    out = {f"{i}:{r}": v for i, regs in regs_of.items() for r, v in regs.items()
           if not r.startswith("__t")}
    for loc in test.init:
        if loc not in test.locks:
            out[loc] = getattr(mem, loc)
    return tuple(sorted(out.items()))


def judge(test, outcomes):
    """herd7's Observation for *outcomes* (Never, Sometimes or Always) and
    the counts of outcomes that satisfy ``exists`` and that do not."""
    pos = sum(1 for o in outcomes if test.cond(dict(o)))
    neg = len(outcomes) - pos
    observed = "Never" if pos == 0 else "Always" if neg == 0 else "Sometimes"
    return observed, pos, neg


def verdict(test, mode, observed):
    """judgelitmus.sh's comparison for *mode*: "ok" (as expected), "miss"
    (stronger than the LKMM: a Sometimes the mode cannot produce, with the
    reason) or "FAIL" (the mode produced an outcome the test forbids).
    ``Maybe`` always passes; the DATARACE flag is not judged (no test here
    carries it)."""
    expected = test.result
    if expected in (None, "Maybe") or observed == expected:
        return "ok", ""
    if expected == "Sometimes":
        return "miss", why_not(test, mode)
    return "FAIL", f"expected {expected}, {mode} gives {observed}"


def why_not(test, mode):
    if mode in MODE_REASONS:
        return MODE_REASONS[mode]
    for _, applies, reason in WEAK_DEPARTURES:
        if applies(test):
            return reason
    return "not explained: a departure of the weak model to look into"


def default_litmus_files(subdir="memory-model"):
    """The in-tree tests: tools/memory-model/litmus-tests/ (``memory-model``),
    or Documentation/litmus-tests/atomic/ (``atomic``)."""
    d = os.path.join(LITMUS_DIR, subdir)
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".litmus"))


def load_litmus(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise LitmusError(f"{path}: {exc.strerror}") from None
    return parse_litmus(text, path)


def litmus_table(paths, modes=MODELS):
    """Rows (test, expected, {mode: (observed, pos, neg, verdict, reason)})."""
    rows = []
    for path in paths:
        test = load_litmus(path)
        per = {}
        for mode in modes:
            outcomes = run_litmus(test, mode)
            observed, pos, neg = judge(test, outcomes)
            v, why = verdict(test, mode, observed)
            per[mode] = (observed, pos, neg, v, why, outcomes)
        rows.append((test, per))
    return rows


def format_table(rows, modes=MODELS):
    """A markdown table, then the misses with their reasons."""
    out = ["| test | expected | " + " | ".join(modes) + " |",
           "|---|---|" + "---|" * len(modes)]
    misses = []
    for test, per in rows:
        cells = []
        for mode in modes:
            observed, pos, neg, v, why, _ = per[mode]
            mark = {"ok": "", "miss": " (miss)", "FAIL": " **FAIL**"}[v]
            cells.append(f"{observed}{mark}")
            if v != "ok":
                misses.append(f"{test.name} [{mode}]: {v}: {why}")
        out.append(f"| {test.name} | {test.result or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(out), misses


def format_machine_table(rows, modes, runs):
    """The tests run *runs* times on a Machine in each mode: how many runs met
    the ``exists`` clause; and the runs that met an outcome the exhaustive
    search of the model says it cannot produce (the primitives and the model
    disagree) or that a Never test forbids."""
    out = [f"on the machine, runs meeting exists / {runs}:",
           "| test | expected | " + " | ".join(modes) + " |",
           "|---|---|" + "---|" * len(modes)]
    bad = []
    for test, per in rows:
        if not machine_supports(test):
            out.append(f"| {test.name} | {test.result or '-'} | " +
                       " | ".join("-" for _ in modes) + " |")
            continue
        cells = []
        for mode in modes:
            found = run_on_machine(test, mode, runs)
            pos = sum(c for o, c in found.items() if test.cond(dict(o)))
            cells.append(str(pos))
            extra = set(found) - per[mode][5]
            if extra:
                bad.append(f"{test.name} [{mode}]: the machine met {sorted(extra)[0]}, which "
                           f"the model's search does not produce")
            if pos and test.result == "Never":
                bad.append(f"{test.name} [{mode}]: the machine met the outcome it forbids")
        out.append(f"| {test.name} | {test.result or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(out), bad
