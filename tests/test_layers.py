"""The house rules, read from the source with ``ast``.

* The import rule written in ``proxy/__init__.py``: a module imports only from its
  own package and from the layers below it; ``proxy.core`` is sans-IO.
* No function in ``proxy/`` has more than 15 branch points.
* Every public module says what it exports (``__all__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROXY = Path(__file__).resolve().parents[1] / "proxy"

# The layers, lowest first, as proxy/__init__.py states them. A package imports
# only from its own package and from lower layers.
LAYERS: dict[str, int] = {
    "core": 0,
    "errors": 0,
    "config": 1,
    "prompts": 1,
    "logs": 1,
    "metrics": 1,
    "profiles": 2,
    "storage": 2,
    "outbound": 2,
    "calls": 3,
    "endfn": 4,
    "server": 5,
    "demo": 6,
    "cli": 7,
}
# What the sans-IO core may never import, besides the higher layers.
CORE_FORBIDDEN = {"asyncio", "aiohttp", "sqlite3", "psycopg", "socket", "threading", "yaml"}

BRANCHES = (
    ast.If, ast.For, ast.While, ast.Try, ast.ExceptHandler, ast.With, ast.BoolOp, ast.IfExp,
    ast.AsyncFor, ast.AsyncWith, ast.match_case,
)


def modules() -> list[Path]:
    return sorted(p for p in PROXY.rglob("*.py"))


def package_of(path: Path) -> str:
    """``proxy/core/sse.py`` -> ``core``; ``proxy/errors.py`` -> ``errors``."""
    rel = path.relative_to(PROXY)
    return rel.parts[0].removesuffix(".py")


def imported(path: Path) -> list[str]:
    """Absolute module names ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = list(path.relative_to(PROXY.parent).parts[:-1])  # proxy/core/sse.py -> [proxy, core]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out += [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            else:
                out.append(node.module or "")
    return out


def violations(path: Path) -> list[str]:
    """Every import of ``path`` that breaks the rule."""
    if path == PROXY / "__init__.py":
        return []  # the top re-exports the user's API lazily
    own = package_of(path)
    bad = []
    for name in imported(path):
        parts = name.split(".")
        if own == "core" and parts[0] in CORE_FORBIDDEN:
            bad.append(f"{path.relative_to(PROXY.parent)} imports {name}: proxy/core/ is sans-IO")
        if parts[0] != "proxy" or len(parts) < 2 or parts[1] == "__init__":
            continue
        target = parts[1]
        if target == own or target not in LAYERS:
            continue
        if LAYERS[target] >= LAYERS[own]:
            bad.append(f"{path.relative_to(PROXY.parent)} imports {name}: {own} may not import {target}")
    return bad


def test_every_proxy_package_has_a_layer() -> None:
    assert {package_of(p) for p in modules() if p != PROXY / "__init__.py"} <= set(LAYERS)


def test_no_module_imports_a_higher_layer() -> None:
    bad = [v for p in modules() for v in violations(p)]
    assert bad == []


def test_the_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The check can fail: a core module importing asyncio or the server is caught."""
    core = PROXY / "core"
    probe = core / "_layer_probe.py"
    probe.write_text("import asyncio\nfrom ..server import app\nfrom ..calls.model import Call\n")
    try:
        found = violations(probe)
    finally:
        probe.unlink()
    assert len(found) == 3, found


def test_the_rule_is_written_in_proxy_init() -> None:
    doc = ast.get_docstring(ast.parse((PROXY / "__init__.py").read_text()))
    assert doc and "import rule" in doc
    for name in LAYERS:
        assert name in doc, name


def branch_points(fn: ast.AST) -> int:
    return sum(isinstance(n, BRANCHES) for n in ast.walk(fn))


def test_no_function_has_more_than_15_branch_points() -> None:
    big = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and branch_points(node) > 15:
                big.append(f"{path.relative_to(PROXY.parent)}:{node.name} has {branch_points(node)}")
    assert big == []


@pytest.mark.parametrize("path", [p for p in modules() if not p.name.startswith("_") or p.name == "__init__.py"], ids=str)
def test_public_modules_declare_all(path: Path) -> None:
    if path.name == "__main__.py":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign)) for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    assert "__all__" in names
