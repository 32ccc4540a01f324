"""The house rules, read from the source with ``ast``.

* The import rule, read from ``proxy/__init__.py``'s docstring (it is written
  nowhere else): a module imports only from its own package and from the layers
  below it; ``proxy.core`` is sans-IO.
* No module in ``proxy/`` is over 400 lines, no function over 15 branch points.
* Every public module says what it exports (``__all__``); every public module,
  class, function and method has a docstring; every package's docstring names each
  of its modules (a newcomer finds every part from the tree).
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

PROXY = Path(__file__).resolve().parents[1] / "proxy"



def _rule() -> tuple[dict[str, int], set[str]]:
    """The layers (package -> number) and what ``proxy.core`` may never import, as
    ``proxy/__init__.py``'s docstring states them."""
    doc = ast.get_docstring(ast.parse((PROXY / "__init__.py").read_text(encoding="utf-8"))) or ""
    layers = {
        name.strip(): int(m.group(1))
        for m in re.finditer(r"^ {4}(\d)  (.+)$", doc, re.M)
        for name in m.group(2).split(",")
    }
    forbidden = re.search(r"none of: ([\w, ]+)\.", doc)
    assert layers and forbidden, "proxy/__init__.py must state the layers and what core may not import"
    return layers, {w.strip() for w in forbidden.group(1).split(",")}


LAYERS, CORE_FORBIDDEN = _rule()

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


def imported(path: Path, root: Path = PROXY) -> list[str]:
    """Absolute module names ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = list(path.relative_to(root.parent).parts[:-1])  # proxy/core/sse.py -> [proxy, core]
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


def violations(path: Path, root: Path = PROXY) -> list[str]:
    """Every import of ``path`` (a module under ``root``, a copy of ``proxy/``) that
    breaks the rule."""
    if path == root / "__init__.py":
        return []  # the top re-exports the user's API lazily
    own = path.relative_to(root).parts[0].removesuffix(".py")
    bad = []
    for name in imported(path, root):
        parts = name.split(".")
        if own == "core" and parts[0] in CORE_FORBIDDEN:
            bad.append(f"{path.relative_to(root.parent)} imports {name}: proxy/core/ is sans-IO")
        if parts[0] != "proxy" or len(parts) < 2 or parts[1] == "__init__":
            continue
        target = parts[1]
        if target == own or target not in LAYERS:
            continue
        if LAYERS[target] >= LAYERS[own]:
            bad.append(f"{path.relative_to(root.parent)} imports {name}: {own} may not import {target}")
    return bad


def test_every_proxy_package_has_a_layer() -> None:
    assert {package_of(p) for p in modules() if p != PROXY / "__init__.py"} <= set(LAYERS)


def test_no_module_imports_a_higher_layer() -> None:
    bad = [v for p in modules() for v in violations(p)]
    assert bad == []


def test_the_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The check can fail: a core module importing asyncio or the server is caught
    (the probe goes into a copy of the tree, never into proxy/ itself)."""
    root = tmp_path / "proxy"
    shutil.copytree(PROXY, root, ignore=shutil.ignore_patterns("__pycache__", "*.json", "ui"))
    probe = root / "core" / "_layer_probe.py"
    probe.write_text("import asyncio\nfrom ..server import app\nfrom ..calls.model import Call\n")
    assert len(violations(probe, root)) == 3, violations(probe, root)
    assert not (PROXY / "core" / "_layer_probe.py").exists()


def test_the_rule_names_every_layer_once() -> None:
    doc = ast.get_docstring(ast.parse((PROXY / "__init__.py").read_text()))
    assert doc and "import rule" in doc
    assert sorted(LAYERS.values()) == sorted(LAYERS.values()) and max(LAYERS.values()) == 7
    assert {"core", "errors", "storage", "calls", "server", "cli", "telemetry"} <= set(LAYERS)
    assert CORE_FORBIDDEN >= {"asyncio", "aiohttp", "sqlite3"}
    names = "|".join(LAYERS)
    again = re.compile(rf"may import\W[^.]*\b({names})\b, ({names})\b", re.I | re.S)
    others = [p for p in modules() if p != PROXY / "__init__.py" and again.search(ast.get_docstring(ast.parse(p.read_text())) or "")]
    assert others == [], "the rule is written once, in proxy/__init__.py"


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


def test_no_module_is_over_400_lines() -> None:
    long = [f"{p.relative_to(PROXY.parent)}: {n}" for p in modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert long == []


def _public(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """The public definitions of a module: top-level functions and classes, and the
    public methods of public classes (``__init__`` and dunders aside)."""
    out: list[tuple[str, ast.AST]] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            out.append((node.name, node))
            if isinstance(node, ast.ClassDef):
                out += [
                    (f"{node.name}.{m.name}", m)
                    for m in node.body
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_")
                ]
    return out


def test_every_public_definition_has_a_docstring() -> None:
    missing = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not path.name.startswith("_") or path.name == "__init__.py":
            if ast.get_docstring(tree) is None and path.name != "__main__.py":
                missing.append(f"{path.relative_to(PROXY.parent)}")
        if path.name.startswith("_") and path.name != "__init__.py":
            continue
        for name, node in _public(tree):
            if ast.get_docstring(node) is None and not _is_overload_or_property_setter(node):
                missing.append(f"{path.relative_to(PROXY.parent)}:{name}")
    assert missing == []


def _is_overload_or_property_setter(node: ast.AST) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in decorators)


def test_every_package_docstring_names_its_modules() -> None:
    missing = []
    for init in sorted(PROXY.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        for part in sorted(init.parent.iterdir()):
            name = part.stem if part.suffix == ".py" else part.name
            if name.startswith("_") or part.suffix not in (".py", "") or not (part.suffix == ".py" or (part / "__init__.py").exists()):
                continue
            if not any(f"``{form}``" in doc for form in (name, f"{name}/", f"proxy.{name}")):
                missing.append(f"{init.parent.relative_to(PROXY.parent)}: {name}")
    assert missing == []


def wait_for_calls(path: Path, root: Path = PROXY) -> list[str]:
    """Every call of ``asyncio.wait_for`` in ``path`` (``asyncio.wait_for(...)``, or
    ``wait_for`` imported from asyncio), as ``file:line``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "asyncio"
             for a in n.names if a.name == "wait_for"}
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == "wait_for" and isinstance(f.value, ast.Name) and f.value.id == "asyncio") or (
            isinstance(f, ast.Name) and f.id in local
        ):
            out.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return out


def test_no_module_calls_asyncio_wait_for() -> None:
    """``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11 wait_for can
    swallow a cancel that meets the awaited thing finishing (commit 3cfd19c: a hung
    shutdown), and a task that swallowed its cancel never stops."""
    assert [c for p in modules() for c in wait_for_calls(p)] == []


def test_the_wait_for_rule_can_fail(tmp_path: Path) -> None:
    probe = tmp_path / "proxy" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("import asyncio\nfrom asyncio import wait_for as wf\n\nasyncio.wait_for(x, 1)\nwf(x, 1)\nloop.wait_for(x)\n")
    assert wait_for_calls(probe, probe.parent) == ["proxy/probe.py:4", "proxy/probe.py:5"]
