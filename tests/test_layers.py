"""The package's import graph, read with ``ast``: layers import downwards only, with no circle.

The layers (DESIGN.md, "Layers"; ltlib/__init__.py): core -> data, models, methods -> the loop and evaluation ->
runs -> analysis and reporting -> tools. Step strategies and losses see tensors and a loss: they import nothing
from the data package, the run layer or reporting. No module imports another ltlib module inside a function (the old way of dodging a circle).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parents[1] / "ltlib"

# the layer of each module, by the package it sits in or its dotted name (the longest prefix wins): ltlib's top-level
# packages are its layers (ltlib/__init__.py), except that the loop and evaluation sit below the rest of runs
LAYERS = {
    0: ["ltlib", "ltlib.core"],
    1: ["ltlib.data", "ltlib.models", "ltlib.methods"],
    2: ["ltlib.runs.train", "ltlib.runs.evaluate"],
    3: ["ltlib.runs"],
    4: ["ltlib.analysis", "ltlib.report"],
    5: ["ltlib.tools", "ltlib.devicecheck"],      # the device check is a tool, at the top for a short command
}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = modules()


def _targets(name: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The ltlib modules an import statement in module ``name`` loads."""
    if isinstance(node, ast.Import):
        found = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([node.module] if node.module else []))
        found = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return [t for t in found if t in MODULES]


def imports() -> tuple[dict[str, set[str]], list[str]]:
    """Module-level imports (module -> the ltlib modules it loads, parent packages included) and the
    function-level ones (as 'module:line -> target')."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    inner = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               and not any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
                           for p in _parents(tree, n))}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(name, node):
                if id(node) not in top:
                    inner.append(f"{name}:{node.lineno} -> {target}")
                    continue
                graph[name].add(target)
                # importing a.b.c runs the packages a and a.b first, unless this module sits inside them
                parts = target.split(".")
                for k in range(1, len(parts)):
                    package = ".".join(parts[:k])
                    if not (name == package or name.startswith(package + ".")):
                        graph[name].add(package)
    return graph, inner


def _parents(tree: ast.AST, node: ast.AST) -> list[ast.AST]:
    chain, found = [], []

    def walk(current: ast.AST) -> bool:
        if current is node:
            found.extend(chain)
            return True
        chain.append(current)
        hit = any(walk(child) for child in ast.iter_child_nodes(current))
        chain.pop()
        return hit

    walk(tree)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(name: str) -> int:
    best, found = -1, None
    for number, prefixes in LAYERS.items():
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), number
    if found is None:
        raise AssertionError(f"{name} has no layer: add it to LAYERS in tests/test_layers.py")
    return found


GRAPH, INNER = imports()


def test_the_import_graph_has_no_circle():
    assert cycles(GRAPH) == []


def test_no_ltlib_import_inside_a_function():
    assert INNER == []


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} (layer {layer(m)}) -> {t} (layer {layer(t)})" for m, targets in graph.items() for t in targets
            if layer(t) > layer(m)]


def test_every_module_has_a_layer_and_imports_downwards_only():
    assert upward(GRAPH) == []


# what step strategies and losses may import: tensors and a loss, never data, runs or reports
SEES_TENSORS = ("ltlib.core.errors", "ltlib.core.registry", "ltlib.core.settings", "ltlib.core.targets",
                "ltlib.core.precision", "ltlib.core.replicas", "ltlib.methods")


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def barred(graph: dict[str, set[str]]) -> list[str]:
    """Imports that the layers allow but the seams do not."""
    found = [f"{m} -> {t}" for m, targets in graph.items() if _within(m, "ltlib.methods")
             for t in targets if t not in ("ltlib", "ltlib.core") and not any(_within(t, a) for a in SEES_TENSORS)]
    found += [f"ltlib.runs.evaluate -> {t}" for t in graph["ltlib.runs.evaluate"] if _within(t, "ltlib.methods")]
    found += [f"{m} -> {t}" for m in ("ltlib.runs.train", "ltlib.runs.stage2", "ltlib.runs.setup") for t in graph[m]
              if t in ("ltlib.runs.experiment", "ltlib.runs.jobs", "ltlib.runs.workers")]
    return sorted(found)


def test_steps_and_losses_see_tensors_evaluation_no_optimiser_the_loop_no_cache():
    assert barred(GRAPH) == []


@pytest.mark.parametrize("source, target, check", [
    ("ltlib.runs.stage2", "ltlib.runs.experiment", "circle"),       # stage 2 calling run() for its stage-1 model
    ("ltlib.runs.jobs", "ltlib.analysis.sharpness.report", "upward"),   # the worker importing the analysis
    ("ltlib.data.loader", "ltlib.runs.experiment", "upward"),
    ("ltlib.runs.evaluate", "ltlib.methods.step", "barred"),        # evaluation taking autocast from the optimisers
    ("ltlib.methods.sam", "ltlib.data.mixing", "barred"),           # a step strategy reading the data package
])
def test_the_checks_catch_a_planted_import(source, target, check):
    """The planted slips: each import the refactoring removed, put back, is caught."""
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph[source].add(target)
    if check == "circle":
        assert any({source, target} <= set(c) for c in cycles(graph))
    elif check == "upward":
        assert any(line.startswith(f"{source} ") and f"-> {target} " in line for line in upward(graph))
    else:
        assert f"{source} -> {target}" in barred(graph)
