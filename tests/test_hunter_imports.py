"""
Tests for how the modules of L{meetrd.hunter} import each other, and for
the name rules and timestamp bounds being defined in one place only.

The import graph is read from the sources with L{ast}, counting every
import, including one inside a function: an import put off into a function
hides a circle from the interpreter but not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import meetrd

PACKAGE = Path(meetrd.__file__).parent
HUNTER = PACKAGE / "hunter"


def _imported(tree: ast.AST, package: str) -> set[str]:
    """
    The dotted names of every module C{tree} imports, anywhere in it; for
    C{from a import b}, both C{a} and C{a.b} (C{b} may be a module).
    """
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) + 1
                                           - node.level]
                parent = ".".join(base + ([node.module] if node.module
                                          else []))
            else:
                parent = node.module or ""
            found.add(parent)
            found.update(f"{parent}.{alias.name}" for alias in node.names)
    return found


def hunterGraph() -> dict[str, set[str]]:
    """
    Which modules of C{meetrd.hunter} each module of it imports.
    """
    modules = {f"meetrd.hunter.{path.stem}": path
               for path in HUNTER.glob("*.py") if path.stem != "__init__"}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = _imported(tree, "meetrd.hunter") & set(modules) - {name}
    return graph


def findCycle(graph: dict[str, set[str]]) -> list[str] | None:
    """
    One circle of C{graph} as the list of its modules (the first repeated
    at the end), or C{None} when there is none.
    """
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        onPath = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            for nxt in stack[-1]:
                if nxt in onPath:
                    return path[path.index(nxt):] + [nxt]
                if nxt not in done:
                    path.append(nxt)
                    onPath.add(nxt)
                    stack.append(iter(sorted(graph[nxt])))
                    break
            else:
                stack.pop()
                done.add(path[-1])
                onPath.discard(path.pop())
    return None


def test_findCycle() -> None:
    """
    L{findCycle} finds a circle of three and none in a tree.
    """
    assert findCycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [
        "a", "b", "c", "a"]
    assert findCycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_importedCountsImportsInFunctions() -> None:
    """
    An import inside a function counts, and C{from package import module}
    names the module.
    """
    tree = ast.parse("def f():\n    from meetrd.hunter import jsonpage\n")
    assert "meetrd.hunter.jsonpage" in _imported(tree, "meetrd.hunter")
    tree = ast.parse("from .prompage import readText\n")
    assert "meetrd.hunter.prompage" in _imported(tree, "meetrd.hunter")


def test_noImportCycleInHunter() -> None:
    """
    No module of L{meetrd.hunter} imports, through others, itself.
    """
    assert findCycle(hunterGraph()) is None


def test_readersDoNotImportDispatcher() -> None:
    """
    The readers of each syntax build on L{meetrd.hunter.pagebuild}, not on
    L{meetrd.hunter.pages}, which imports them.
    """
    graph = hunterGraph()
    assert "meetrd.hunter.jsonpage" in graph["meetrd.hunter.pages"]
    assert "meetrd.hunter.prompage" in graph["meetrd.hunter.pages"]
    for reader in ("meetrd.hunter.jsonpage", "meetrd.hunter.prompage"):
        assert "meetrd.hunter.pagebuild" in graph[reader]
        assert "meetrd.hunter.pages" not in graph[reader]
    assert not graph["meetrd.hunter.pagebuild"] & {
        "meetrd.hunter.pages", "meetrd.hunter.jsonpage",
        "meetrd.hunter.prompage"}


def _literals(value: object) -> list[str]:
    """
    The modules of L{meetrd} whose source holds the literal C{value}.
    """
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.UnaryOp) and isinstance(
                    node.op, ast.USub) and isinstance(
                    node.operand, ast.Constant):
                literal = -node.operand.value if isinstance(
                    node.operand.value, (int, float)) else None
            elif isinstance(node, ast.Constant):
                literal = node.value
            else:
                continue
            if type(literal) is type(value) and literal == value:
                found.append(str(path.relative_to(PACKAGE)))
    return found


def test_rulesAndBoundsDefinedOnce() -> None:
    """
    The metric and tag key patterns, the control character pattern and the
    timestamp bounds are written in one module of L{meetrd} each.
    """
    from meetrd import names, timestamps
    for value in (names.METRIC_PATTERN.pattern,
                  names.TAG_KEY_PATTERN.pattern,
                  names.CONTROL_CHARACTER.pattern):
        assert _literals(value) == ["names.py"], value
    for value in (timestamps.MIN_TS_MS, timestamps.MAX_TS_MS):
        assert _literals(value) == ["timestamps.py"], value


def test_sharedRulesAndBounds() -> None:
    """
    The pages of the hunter and L{meetrd.validation} use the same rules.
    """
    from meetrd import names, timestamps, validation
    from meetrd.hunter import jsonpage, pagebuild, prompage
    assert validation.METRIC_PATTERN is names.METRIC_PATTERN
    assert validation.TAG_KEY_PATTERN is names.TAG_KEY_PATTERN
    assert pagebuild.METRIC_PATTERN is names.METRIC_PATTERN
    assert pagebuild.TAG_KEY_PATTERN is names.TAG_KEY_PATTERN
    for module in (jsonpage, prompage):
        assert module.MIN_TS_MS == timestamps.MIN_TS_MS
        assert module.MAX_TS_MS == timestamps.MAX_TS_MS
