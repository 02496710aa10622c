"""Architecture rules: ocr_core is usable on its own and never imports kfp or kubernetes, nor the
layers built on it (components/, pipelines/), at any depth."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib, pkgutil, sys
import ocr_core
names = [m.name for m in pkgutil.walk_packages(ocr_core.__path__, "ocr_core.")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("kfp", "kubernetes", "components", "pipelines"))
print(len(names), ",".join(bad))
"""


def test_importing_every_ocr_core_module_pulls_in_no_kfp_or_kubernetes() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    count, bad = out.stdout.strip().splitlines()[-1].split(" ", 1) if " " in out.stdout.strip() else (out.stdout.strip(), "")
    assert int(count) > 60  # really walked the package
    assert bad == "", f"ocr_core imported {bad}"


def test_no_source_file_imports_kfp_or_kubernetes() -> None:
    offenders = []
    for path in (ROOT / "ocr_core").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            s = line.strip()
            if s.startswith(("import kfp", "from kfp", "import kubernetes", "from kubernetes")):
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert not offenders, offenders


# --- ocr_core is the ground floor: no import of the DAG layers, function-local or by name -------
ABOVE_OCR_CORE = ("pipelines", "components", "kfp", "kubernetes")
_DYNAMIC_IMPORTS = ("import_module", "__import__", "find_spec")  # their first argument names a module
_MODULE_PATH = re.compile(rf"^(?:{'|'.join(ABOVE_OCR_CORE)})(?:\.[A-Za-z_]\w*)+$")


def imported_modules(tree: ast.AST) -> set[tuple[int, str]]:
    """``(line, module)`` for every import statement anywhere in ``tree`` (inside functions and
    branches too), every string literal given to ``importlib.import_module``, ``__import__`` or
    ``importlib.util.find_spec``, and every string that is a whole dotted module path of a layer
    above ocr_core (``"components.launcher.cli"`` in a table of modules to import later).
    Relative imports (``from . import x``) stay inside the package."""
    return set(_imports(tree))


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if name in _DYNAMIC_IMPORTS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_PATH.match(node.value):
            yield node.lineno, node.value


def test_the_import_walker_sees_function_local_and_dynamic_imports() -> None:
    src = ("import os\nfrom ocr_core.config import load_config\nfrom . import sibling\n"
           "def f():\n    if True:\n        from pipelines.local_run import x\n"
           "    importlib.import_module('components.launcher.cli')\n    __import__('kfp')\n"
           "    importlib.util.find_spec('kubernetes.client')\n    import_module(name)\n"
           "VERBS = {'launch': ('components.launcher.cli', 'help')}\nDOC = 'see components/steps/data.py'\n")
    found = sorted(imported_modules(ast.parse(src)))
    assert found == [(1, "os"), (2, "ocr_core.config"), (6, "pipelines.local_run"), (7, "components.launcher.cli"),
                     (8, "kfp"), (9, "kubernetes.client"), (11, "components.launcher.cli")]


def test_ocr_core_never_imports_components_pipelines_kfp_or_kubernetes_at_any_depth() -> None:
    files = sorted((ROOT / "ocr_core").rglob("*.py"))
    assert len(files) > 60  # really walked the package
    offenders = [f"{path.relative_to(ROOT)}:{line}: {module}"
                 for path in files
                 for line, module in sorted(imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))))
                 if module.split(".")[0] in ABOVE_OCR_CORE]
    assert not offenders, "ocr_core must not depend on the layers above it:\n" + "\n".join(offenders)


# --- inside ocr_core: packages form a DAG, files stay readable --------------------------------------
def _unit(module: str) -> str:
    """``ocr_core.engine.run`` -> ``engine``; ``ocr_core.build`` -> ``build`` (a top-level module)."""
    return module.split(".")[1]


def package_graph() -> dict[str, dict[str, list[str]]]:
    """``{package: {imported package: ["file:line", ...]}}`` over every import in ocr_core (any depth)."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted((ROOT / "ocr_core").rglob("*.py")):
        src = path.relative_to(ROOT / "ocr_core").parts[0].removesuffix(".py")
        if src == "__init__":  # the package's own __init__ (version only) is not a layer
            continue
        graph.setdefault(src, {})
        for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if module.startswith("ocr_core.") and _unit(module) != src:
                graph[src].setdefault(_unit(module), []).append(f"{path.relative_to(ROOT)}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """One cycle ``[a, b, ..., a]`` of the graph, or ``[]`` (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for start in graph:
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph.get(start, {})))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, {}))))
    return []


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {}}) == []
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {}, "a": {"b": []}, "b": {"b2": [], "a": []}, "b2": {}}) == ["a", "b", "a"]


def test_no_import_cycle_between_ocr_core_packages() -> None:
    graph = package_graph()
    assert {"config", "data", "engine", "export", "inference", "weights", "build"} <= set(graph)
    cycle = find_cycle(graph)
    where = [f"{a} -> {b}: {', '.join(graph[a][b][:3])}" for a, b in zip(cycle, cycle[1:])]
    assert not cycle, "import cycle between ocr_core packages:\n" + "\n".join(where)


def test_docs_list_the_package_order_the_code_follows() -> None:
    """docs/DEVELOPING.md lists ocr_core's packages lowest first; each imports only those before it."""
    text = (ROOT / "docs" / "DEVELOPING.md").read_text(encoding="utf-8")
    block = text.split("<!-- package-order -->")[1]
    order = re.findall(r"^\d+\. `([a-z_]+)`", block, flags=re.M)
    graph = package_graph()
    assert sorted(order) == sorted(graph), "DEVELOPING.md's package list differs from ocr_core's packages"
    rank = {name: i for i, name in enumerate(order)}
    wrong = [f"{a} imports {b} ({graph[a][b][0]})" for a in graph for b in graph[a] if rank[b] >= rank[a]]
    assert not wrong, "a package imports one listed after it in DEVELOPING.md:\n" + "\n".join(wrong)


MAX_LINES = 400


def test_every_library_file_is_at_most_400_lines() -> None:
    files = [p for layer in ("ocr_core", "components", "pipelines") for p in (ROOT / layer).rglob("*.py")]
    assert len(files) > 100
    long = sorted(f"{p.relative_to(ROOT)}: {n} lines" for p in files
                  if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES)
    assert not long, f"split these files (at most {MAX_LINES} lines each):\n" + "\n".join(long)


# --- inside a package: module cycles only where listed, with the reason --------------------------
# Each is a deliberate late-bound dispatch (the import that closes the loop runs inside a function):
KNOWN_MODULE_CYCLES = {
    # the package's build_model/registry imports the architectures, which build from the registries
    frozenset({"ocr_core.modeling", "ocr_core.modeling.architectures", "ocr_core.modeling.architectures.base_model",
               "ocr_core.modeling.architectures.distillation_model"}),
    # get_store() picks the S3 back end for s3:// URIs; that back end implements client's Store protocol
    frozenset({"ocr_core.storage.client", "ocr_core.storage.s3"}),
    # load_checkpoint() hands .pdparams / OpenOCR .pth files to their importers, which use its helpers
    frozenset({"ocr_core.weights.checkpoint", "ocr_core.weights.paddle_import", "ocr_core.weights.openocr_import"}),
}


def _runtime_imports(tree: ast.AST, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The ocr_core modules ``name`` imports at run time (any depth; ``if TYPE_CHECKING:`` bodies and
    relative imports resolved; ``from pkg import mod`` is an import of ``pkg.mod``)."""
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for stmt in node.body for n in ast.walk(stmt)}
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found |= {sub} if sub in modules else ({base} if base in modules else set())
    return found - {name}


def module_cycles() -> list[set[str]]:
    """Strongly connected components (size > 1) of ocr_core's module import graph (Tarjan)."""
    files = {}
    for path in sorted((ROOT / "ocr_core").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    names = set(files)
    graph = {m: _runtime_imports(ast.parse(p.read_text(encoding="utf-8")), m, pkg, names) for m, (p, pkg) in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    comps: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_module_import_cycles_are_only_the_listed_ones() -> None:
    found = {frozenset(c) for c in module_cycles()}
    new = [sorted(c) for c in found - KNOWN_MODULE_CYCLES]
    assert not new, "a new import cycle between ocr_core modules (break it, or list it with its reason):\n" + \
        "\n".join(" <-> ".join(c) for c in new)
    gone = [sorted(c) for c in KNOWN_MODULE_CYCLES - found]
    assert not gone, f"these listed cycles are gone: drop them from KNOWN_MODULE_CYCLES: {gone}"


def test_the_module_cycle_finder_sees_lazy_imports_but_not_type_checking_ones() -> None:
    src_a = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\ndef f():\n    from . import c\n"
    names = {"pkg", "pkg.a", "pkg.b", "pkg.c"}
    assert _runtime_imports(ast.parse(src_a), "pkg.a", False, names) == {"pkg.c"}
    assert _runtime_imports(ast.parse("import pkg.b\nfrom pkg import a\n"), "pkg.c", False, names) == {"pkg.b", "pkg.a"}
