"""The architecture's rules, checked on the code itself (issue 17's "Done when").

- No import cycle between the project's modules, lazy or not: every ``import`` in every
  module counts, at the top, inside functions, under ``try`` and under ``if TYPE_CHECKING``.
  Type-only imports count on purpose: they do not run, but a cycle through one still means
  two modules know each other, which is what the rule is about (the cure is the same: move
  the shared name down a layer, or use a Protocol). ``importlib.import_module("a.b")`` with
  a literal name counts too.
- The core package ``ml`` imports no Django: no module under ``ml/`` names Django or one of
  the project's Django apps (statically), and importing every one of them in a fresh
  interpreter leaves ``django`` out of ``sys.modules`` (dynamically).
- Sizes: no module of the project (the packages, ``tests/``, ``bench/``, ``docker/`` and the
  top-level scripts) over 450 lines, no function over 60 (complexity is ruff's C901, in lint).

Each failure lists every offender, so one run gives the whole list.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
# The project's importable packages: a cycle is looked for between their modules. registry/
# and training/ (issue 17) count as soon as they exist; tests/ and bench/ import the
# packages but nothing imports them, so they can close no cycle and stay out.
PACKAGES = ("petsite", "classifier", "api", "ml", "registry", "training", "webhooks")
CORE = "ml"
# Everything the size rule covers: the packages, the tests and benchmarks, and scripts.
SIZED = (*PACKAGES, "tests", "bench", "docker")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
SKIPPED_DIRS = {"__pycache__", "vendor", "node_modules"}


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` (both module names)."""

    source: str
    target: str
    where: str  # file:line, the file relative to the project's root

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.where})"


def python_files(root: Path, folders: tuple[str, ...]) -> Iterator[Path]:
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            if not SKIPPED_DIRS.intersection(path.relative_to(root).parts):
                yield path


def module_name(root: Path, path: Path) -> str:
    """``ml/__init__.py`` -> ``ml``; ``ml/management/commands/train.py`` -> ``ml.management.commands.train``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of the packages that exist under ``root`` (a package's __init__ is one)."""
    present = tuple(name for name in packages if (root / name / "__init__.py").is_file())
    return {module_name(root, path): path for path in python_files(root, present)}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest project module that ``name`` (``a.b.c``, maybe an attribute) names."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _from_base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from X import ...``, relative ones resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imported_names(module: str, path: Path, node: ast.AST) -> list[str]:
    """The dotted names one node imports: ``from pkg import name`` gives ``pkg.name`` (the
    submodule when there is one; _resolve falls back to ``pkg`` otherwise)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _from_base(module, path, node)
        return [base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names]
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if called in ("import_module", "__import__"):  # importlib.import_module("a.b"), lazy but an import
            return [node.args[0].value]
    return []


def imports(modules: dict[str, Path], root: Path = ROOT) -> list[Import]:
    """Every edge between project modules, from anywhere in each module's syntax tree (one
    per statement and imported module)."""
    edges: dict[Import, None] = {}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported_names(module, path, node):
                target = _resolve(name, modules)
                if target is not None and target != module:
                    edges[Import(module, target, f"{path.relative_to(root)}:{node.lineno}")] = None
    return sorted(edges, key=lambda edge: (edge.source, edge.target, edge.where))


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe_cycles(edges: list[Import]) -> str:
    lines = []
    for component in cycles(edges):
        members = set(component)
        lines.append(f"cycle between {len(component)} modules: {', '.join(component)}")
        lines += [f"    {edge}" for edge in edges if edge.source in members and edge.target in members]
    return "\n".join(lines)


# --- the checker checks what it claims, on a made-up project -----------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


def test_the_walk_finds_lazy_relative_type_only_and_submodule_imports(tmp_path):
    _write(tmp_path, {
        "app/__init__.py": "",
        "app/a.py": "def later():\n    from . import b\n",  # lazy, relative, a submodule by name
        "app/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.sub.c import Thing\n",
        "app/sub/__init__.py": "from ..a import later\n",  # a name, not a module: the module a
        "app/sub/c.py": "import importlib\nimportlib.import_module('app.a')\nimport os, app.sub\n",
        "other/__init__.py": "import app.b\n",
    })
    edges = imports(project_modules(tmp_path, ("app", "other", "missing")), tmp_path)
    assert {(edge.source, edge.target) for edge in edges} == {
        ("app.a", "app.b"), ("app.b", "app.sub.c"), ("app.sub", "app.a"), ("app.sub.c", "app.a"),
        ("app.sub.c", "app.sub"), ("other", "app.b"),
    }
    assert cycles(edges) == [["app.a", "app.b", "app.sub", "app.sub.c"]]
    assert "app.b -> app.sub.c (app/b.py:3)" in describe_cycles(edges)


def test_the_walk_finds_no_cycle_in_layers(tmp_path):
    _write(tmp_path, {"app/__init__.py": "from . import low\n", "app/low.py": "import json\n",
                      "app/high.py": "from app import low\nfrom app.low import x\n"})
    edges = imports(project_modules(tmp_path, ("app",)), tmp_path)
    assert len(edges) == 3
    assert cycles(edges) == []


# --- the rules ---------------------------------------------------------------------------------

def test_no_import_cycle_between_the_projects_modules():
    modules = project_modules(ROOT)
    assert {"petsite", "classifier", "api", "ml"} <= {name.split(".")[0] for name in modules}
    edges = imports(modules)
    assert len(edges) > 100  # the walk sees the project's imports, not an empty graph
    report = describe_cycles(edges)
    assert not report, "Import cycles (each edge: importer -> imported (file:line)):\n" + report


def django_names() -> set[str]:
    """Top-level names the core may not import: Django, every installed app (third-party or
    the project's own) and the project package, the core itself excepted."""
    names = {"django", "petsite"} | {app.split(".")[0] for app in settings.INSTALLED_APPS}
    return (names | {name for name in PACKAGES if name != CORE}) - {CORE}


def core_modules() -> dict[str, Path]:
    """Every module under ml/: all of it is the core once its Django parts live in registry/."""
    return project_modules(ROOT, (CORE,))


def test_the_core_names_no_django_in_any_import():
    forbidden = django_names()
    modules = core_modules()
    assert len(modules) > 10
    offenders: dict[str, str] = {}  # one line per statement: its first forbidden name
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported_names(module, path, node):
                if name.split(".")[0] in forbidden:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    offenders.setdefault(where, f"{where} {module} imports {name}")
    assert not offenders, (
        f"{len(offenders)} Django import(s) in the core package {CORE}/:\n" + "\n".join(offenders.values())
    )


# Imports each module named on the command line, in order, and prints (as JSON) the
# modules after whose import Django or a project Django app first appeared in
# sys.modules (mode "loaded"), or, with those refused by an import hook, every
# module that cannot be imported without them (mode "blocked").
_IMPORT_ALL = """
import importlib, importlib.abc, json, sys, traceback
mode, forbidden, names = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3:]
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in forbidden:
            raise ImportError(f"{name} refused: the core must import without it")
if mode == "blocked":
    sys.meta_path.insert(0, Refuse())
loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
found = {}
for name in names:
    before = set(loaded())
    try:
        importlib.import_module(name)
    except BaseException as error:
        found[name] = f"import failed: {type(error).__name__}: {error}"
        continue
    new = sorted(set(loaded()) - before)
    if new:
        found[name] = "brought in " + ", ".join(new[:5])
print(json.dumps({"found": found, "django_loaded": "django" in sys.modules}))
"""


def _import_all(mode: str, names: list[str]) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, mode, ",".join(sorted(django_names())), *names],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(600)
def test_importing_every_core_module_loads_no_django():
    names = sorted(core_modules())
    result = _import_all("loaded", names)
    if not result["django_loaded"] and not result["found"]:
        return
    # Django came in (or a module failed): name every module that needs it, with Django
    # refused, so that the message lists them all and not only the first one imported.
    blocked = _import_all("blocked", names)["found"]
    offenders = "\n".join(f"{name}: {why}" for name, why in sorted({**result["found"], **blocked}.items()))
    pytest.fail(f"Importing the core package {CORE}/ needs Django (or fails):\n{offenders}", pytrace=False)


def sized_files() -> list[Path]:
    tops = sorted(path for path in ROOT.glob("*.py"))
    return tops + list(python_files(ROOT, tuple(name for name in SIZED if (ROOT / name).is_dir())))


def test_no_module_over_450_lines():
    files = sized_files()
    assert any(path.name == "test_architecture.py" for path in files)
    offenders = []
    for path in files:
        count = len(path.read_text().splitlines())
        if count > MAX_MODULE_LINES:
            offenders.append(f"{path.relative_to(ROOT)}: {count} lines")
    assert not offenders, f"{len(offenders)} module(s) over {MAX_MODULE_LINES} lines:\n" + "\n".join(offenders)


def long_functions(path: Path, root: Path = ROOT, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function or method (nested ones too) longer than ``limit`` lines, from its
    ``def`` line to its last line (decorators not counted)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_long_functions_are_found(tmp_path):
    """A method counts from its def line (not its decorator) to its last line."""
    path = tmp_path / "example.py"
    body = "".join(f"        x{i} = {i}\n" for i in range(60))
    path.write_text(f"class A:\n    @decorated\n    def long(self):\n{body}\n\ndef short():\n    pass\n")
    assert long_functions(path, tmp_path) == ["example.py:3 long: 61 lines"]
    assert long_functions(path, tmp_path, limit=61) == []


def test_no_function_over_60_lines():
    offenders = [found for path in sized_files() for found in long_functions(path)]
    assert not offenders, (
        f"{len(offenders)} function(s) over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)
    )
