"""Layering: the engine (keeper/) never imports strategies/; every module has a docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEEPER = sorted((ROOT / "keeper").rglob("*.py"))
ALL_MODULES = sorted([*KEEPER, *(ROOT / "strategies").rglob("*.py")])


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            names.update(str(a.value) for a in node.args if isinstance(a, ast.Constant))
    return {str(name) for name in names}


@pytest.mark.parametrize("path", KEEPER, ids=_ids(KEEPER))
def test_keeper_never_imports_strategies(path: Path) -> None:
    modules = imported_modules(ast.parse(path.read_text(), str(path)))
    offending = sorted(m for m in modules if m == "strategies" or m.startswith("strategies."))
    assert not offending, f"{path.relative_to(ROOT)} imports {offending}"


@pytest.mark.parametrize("path", ALL_MODULES, ids=_ids(ALL_MODULES))
def test_module_has_docstring(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(), str(path)))
    assert docstring and docstring.strip(), f"{path.relative_to(ROOT)} has no module docstring"


def test_the_check_finds_imports() -> None:
    tree = ast.parse("import strategies.aave_v3\nfrom strategies import x\nimport os")
    assert imported_modules(tree) == {"strategies.aave_v3", "strategies", "os"}


def test_there_are_modules_to_check() -> None:
    assert len(KEEPER) > 5 and (ROOT / "strategies" / "__init__.py") in ALL_MODULES
