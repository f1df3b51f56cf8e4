"""The benchmark package's parts: no import circle, the report never reaches the runner (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

import aigi.benchmark

PACKAGE = Path(aigi.benchmark.__file__).parent


def _graph() -> dict[str, set[str]]:
    """module -> the sibling modules it imports (``from .x import``, at any depth of the file)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
        graph[path.stem] = deps & {p.stem for p in PACKAGE.glob("*.py")}
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_no_import_circle_between_the_parts():
    graph = _graph()
    assert {"plan", "report", "results", "run", "store", "protocol"} <= set(graph)
    circles = [m for m in graph if m in _reach(graph, m)]
    assert circles == [], {m: graph[m] for m in circles}


def test_report_does_not_reach_the_runner_and_planning_needs_only_the_protocol():
    graph = _graph()
    assert "run" not in _reach(graph, "report") and "plan" in _reach(graph, "report")
    assert _reach(graph, "plan") == {"protocol"} | _reach(graph, "protocol")
    assert "run" not in _reach(graph, "plan")
