"""The package's import graph, lazy imports included, has no circles where the guide named them:
traces/ never imports memory/ (memory builds on traces), models/ never imports kernelize/
(kernelize compiles models), and the packages in ACYCLIC have no circle inside them."""
import ast
import os

import pytest

from tests.conftest import ROOT

PKG = os.path.join(ROOT, "kernelpilot")


def _module(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-9] if rel.endswith(".__init__") else rel


def _imports(path):
    """Every kernelpilot module a file imports, at top level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("kernelpilot"):
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("kernelpilot"))
    return out


def _graph(under):
    files = []
    for d, _, names in os.walk(os.path.join(PKG, under)):
        files += [os.path.join(d, n) for n in names if n.endswith(".py")]
    mods = {_module(f): f for f in files}
    return {m: {i for i in _imports(f) if i in mods and i != m} for m, f in mods.items()}


def _cycle(graph):
    state = {}

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path + [m, n]
            if n not in state:
                c = visit(n, path + [m])
                if c:
                    return c
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            c = visit(m, [])
            if c:
                return c
    return None


def _never_imports(lower, upper):
    for d, _, names in os.walk(os.path.join(PKG, lower)):
        for n in names:
            if n.endswith(".py"):
                p = os.path.join(d, n)
                bad = {i for i in _imports(p) if i.startswith(f"kernelpilot.{upper}")}
                assert not bad, f"{os.path.relpath(p, ROOT)} imports {sorted(bad)}"


def test_traces_never_import_memory():
    _never_imports("traces", "memory")


def test_models_never_import_kernelize():
    _never_imports("models", "kernelize")


ACYCLIC = ("models", "kernelize", "traces", "probes", "sched", "aipath", "agent", "report", "bench",
           "memory", "fleet")


@pytest.mark.parametrize("pkg", ACYCLIC)
def test_package_is_acyclic(pkg):
    top = f"kernelpilot.{pkg}"
    g = {m: {i for i in deps if i != top} for m, deps in _graph(pkg).items() if m != top}
    c = _cycle(g)
    assert c is None, " -> ".join(c or [])


# packages whose own modules still import each other in a circle (ARCHITECTURE lists them): none
# since security's detector table moved to security/registry.py
CIRCLES_INSIDE = ()


def test_whole_package_is_acyclic_across_packages():
    """Module by module over all of kernelpilot: no circle, except inside CIRCLES_INSIDE."""
    mods = {}
    for d, _, names in os.walk(PKG):
        mods.update({_module(os.path.join(d, n)): os.path.join(d, n) for n in names if n.endswith(".py")})

    def pkg(m):
        return m.split(".")[1] if m.count(".") else ""

    g = {}
    for m, f in mods.items():
        g[m] = {i for i in _imports(f) if i in mods and i != m and not m.startswith(i + ".")
                and not (pkg(i) == pkg(m) and pkg(m) in CIRCLES_INSIDE)}
    c = _cycle(g)
    assert c is None, " -> ".join(c or [])
