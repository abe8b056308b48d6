"""The package's floors: a module imports only from its own floor or the floors below it, and
no two modules import each other through a circle. A failure names the import that runs up.

Imports made inside a function (to keep a heavy or optional dependency out of a process that
never uses it) count like the others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import recsys_faust

PACKAGE = Path(recsys_faust.__file__).resolve().parent

#: lowest first; a module's floor is that of the longest prefix listed
FLOORS: list[tuple[str, ...]] = [
    ("settings", "version"),
    ("metrics", "events", "loop_watch"),
    ("kafka",),
    ("profiles", "popularity", "transitions", "catalogue", "online.attribution", "online.stats", "drift.features",
     "drift.detector"),
    ("ranking.items", "ranking.strategies", "ranking.maths", "erasure"),
    ("ranking.model",),
    ("ranking.runtime",),
    ("ranking.policy",),
    ("serving", "sink", "training", "drift.monitor", "online.monitor", "streaming"),
    ("ingest", "app"),
    ("web",),
    ("worker",),
    ("client", "ops", "devstack"),
    ("cli", "settings_doc", "__main__", "__init__"),
]


def _floor_of(module: str) -> int:
    best, floor = -1, None
    for i, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), i
    assert floor is not None, f"recsys_faust.{module} is on no floor: add it to FLOORS"
    return floor


def _imports() -> dict[str, set[str]]:
    """module (relative to the package) -> the package modules it imports."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        is_init = parts[-1] == "__init__"
        if is_init:
            parts = parts[:-1]
        module = ".".join(parts) or "__init__"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts if is_init else parts[:-1]
                    base = base[:len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                    names = [a.name for a in node.names]
                elif node.module and node.module.startswith("recsys_faust"):
                    target, names = node.module.removeprefix("recsys_faust").lstrip("."), [a.name for a in node.names]
                else:
                    continue
                for name in names:  # ``from . import metrics`` imports the module ``metrics``
                    sub = f"{target}.{name}" if target else name
                    has_sub = (PACKAGE / Path(*sub.split("."))).with_suffix(".py").exists() or \
                        (PACKAGE / Path(*sub.split("."))).is_dir()
                    targets.add(sub if has_sub else (target or "__init__"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("recsys_faust."):
                        targets.add(alias.name.removeprefix("recsys_faust."))
        out[module] = targets - {module}
    return out


def test_no_import_runs_up_a_floor():
    ups = []
    for module, targets in sorted(_imports().items()):
        for target in sorted(targets):
            if _floor_of(target) > _floor_of(module):
                ups.append(f"recsys_faust.{module} imports recsys_faust.{target} (floor {_floor_of(target)} > "
                           f"{_floor_of(module)})")
    assert not ups, "\n".join(ups)


def test_no_import_circles():
    graph = {m: {t for t in ts if t in _imports_cache()} for m, ts in _imports_cache().items()}
    # packages import their modules; count a package's __init__ as the package itself
    seen: dict[str, int] = {}
    stack: list[str] = []
    circles: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node)
    assert not circles, "\n".join(circles)


_CACHE: dict[str, set[str]] = {}


def _imports_cache() -> dict[str, set[str]]:
    if not _CACHE:
        _CACHE.update(_imports())
    return _CACHE


def test_the_largest_function_and_class_stay_small():
    """No function over 80 lines, no class over 250: past that a unit has more than one job."""
    too_big = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines = node.end_lineno - node.lineno + 1
                limit = 250 if isinstance(node, ast.ClassDef) else 80
                if lines > limit:
                    too_big.append(f"{path.relative_to(PACKAGE)}: {node.name} is {lines} lines (limit {limit})")
    assert not too_big, "\n".join(too_big)


def test_only_the_cli_imports_the_dev_stack():
    """The dev stack (a broker, PostgreSQL and workers started for a developer) is a feature of the
    ``dev`` extra: no worker, ops or client code depends on it."""
    users = sorted(m for m, ts in _imports_cache().items()
                   if not m.startswith("devstack") and m.split(".")[0] != "cli" and any(t.startswith("devstack") for t in ts))
    assert users == []
