"""Imports run one way: the front ends (cli, compare, the pytest plugin) use
the searches (explore), which drive the machine, which runs the kernel model
and its variants on the engine.  A module imported inside a function counts:
a circle hidden in a function is still a circle."""

import ast
import os

import emulator

ROOT = os.path.dirname(emulator.__file__)

# What the kernel side (the model, its variants, checks, tracepoints, uapi
# and the engine) never imports: the layers above it.
ABOVE_THE_KERNEL = {"explore", "machine", "cli", "compare", "pytest_plugin", "workloads",
                    "workload", "selftest", "kselftest", "__main__"}
KERNEL_SIDE = {"kernel", "variants", "checks", "observe", "uapi", "engine"}


def modules():
    found = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = "emulator." + os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                found[name.removesuffix(".__init__")] = path
    return found


def import_graph():
    """module -> the package's modules it imports, anywhere in its text."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = (base + ("." + node.module if node.module else "")) if node.level \
                    else node.module
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    targets.add(sub if sub in mods else module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in mods and t != name}
    return graph


def layer(name):
    return name.split(".")[1] if "." in name else "emulator"


def circles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_its_way_back_to_itself():
    graph = import_graph()
    assert "emulator.explore.stateful" in graph["emulator.explore.campaign"]
    assert circles(graph) == []


def test_a_circle_is_seen_even_inside_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_kernel_side_never_imports_the_layers_above_it():
    wrong = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                   if layer(m) in KERNEL_SIDE and layer(t) in ABOVE_THE_KERNEL)
    assert wrong == []


def test_the_engine_knows_nothing_of_the_kernel():
    graph = import_graph()
    engine_imports = {layer(t) for t in graph["emulator.engine"]}
    assert engine_imports <= {"errors", "interrupt"}
