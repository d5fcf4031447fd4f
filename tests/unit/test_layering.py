"""Layering: who may import whom, and every module has a docstring.

- the engine (keeper/) never imports strategies/;
- execution (keeper/execution/) knows no protocol and no devnet: it imports nothing
  from strategies/ nor keeper.devnet (strategies encode their own flash legs; the
  executor is built and deployed by keeper.deploy_executor; anvil is keeper.anvil);
- strategies never import keeper.execution (they hand over calls and flash legs,
  execution signs and sends).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEEPER = sorted((ROOT / "keeper").rglob("*.py"))
EXECUTION = sorted((ROOT / "keeper" / "execution").rglob("*.py"))
STRATEGIES = sorted((ROOT / "strategies").rglob("*.py"))
ALL_MODULES = sorted([*KEEPER, *STRATEGIES])


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def _package(path: Path) -> list[str]:
    """The package a module file is in, as name parts (for its relative imports)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1]


def imported_modules(tree: ast.AST, package: list[str] | None = None) -> set[str]:
    """Every module `tree` imports, also inside functions and through import_module.

    `from a import b` names both `a` and `a.b` (b may be a submodule); relative
    imports are resolved against `package` (the importing module's package).
    """
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = (package or [])[: len(package or []) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module:
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            names.update(str(a.value) for a in node.args if isinstance(a, ast.Constant))
    return {str(name) for name in names}


def forbidden(modules: set[str], *prefixes: str) -> list[str]:
    """The imported modules that are, or are inside, one of the packages `prefixes`."""
    return sorted(m for m in modules for p in prefixes if m == p or m.startswith(p + "."))


def _imports(path: Path) -> set[str]:
    return imported_modules(ast.parse(path.read_text(), str(path)), _package(path))


@pytest.mark.parametrize("path", KEEPER, ids=_ids(KEEPER))
def test_keeper_never_imports_strategies(path: Path) -> None:
    offending = forbidden(_imports(path), "strategies")
    assert not offending, f"{path.relative_to(ROOT)} imports {offending}"


@pytest.mark.parametrize("path", EXECUTION, ids=_ids(EXECUTION))
def test_execution_imports_no_protocol_and_no_devnet(path: Path) -> None:
    offending = forbidden(_imports(path), "strategies", "keeper.devnet")
    assert not offending, f"{path.relative_to(ROOT)} imports {offending}"


@pytest.mark.parametrize("path", STRATEGIES, ids=_ids(STRATEGIES))
def test_strategies_never_import_execution(path: Path) -> None:
    offending = forbidden(_imports(path), "keeper.execution")
    assert not offending, f"{path.relative_to(ROOT)} imports {offending}"


@pytest.mark.parametrize("path", ALL_MODULES, ids=_ids(ALL_MODULES))
def test_module_has_docstring(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(), str(path)))
    assert docstring and docstring.strip(), f"{path.relative_to(ROOT)} has no module docstring"


def test_the_check_finds_imports() -> None:
    tree = ast.parse("import strategies.aave_v3\nfrom strategies import x\nimport os")
    assert imported_modules(tree) == {"strategies.aave_v3", "strategies", "strategies.x", "os"}


@pytest.mark.parametrize(
    ("source", "prefixes", "expected"),
    [
        ("from keeper.devnet.anvil import Anvil", ("keeper.devnet",),
         ["keeper.devnet.anvil", "keeper.devnet.anvil.Anvil"]),
        ("from keeper import devnet", ("keeper.devnet",), ["keeper.devnet"]),
        ("from keeper.execution import flash", ("keeper.execution",),
         ["keeper.execution", "keeper.execution.flash"]),
        ("def f():\n    import strategies.morpho_blue.math", ("strategies",),
         ["strategies.morpho_blue.math"]),
        ("importlib.import_module('keeper.devnet.cli')", ("keeper.devnet",),
         ["keeper.devnet.cli"]),
        ("from ..devnet import deploy", ("keeper.devnet",),
         ["keeper.devnet", "keeper.devnet.deploy"]),
        # Near misses are not violations.
        ("import keeper.devnetwork\nfrom keeper.types import FlashLeg", ("keeper.devnet",), []),
        ("from keeper.execution_notes import x", ("keeper.execution",), []),
    ],
)
def test_the_check_finds_violations(
    source: str, prefixes: tuple[str, ...], expected: list[str]
) -> None:
    # As if in keeper/execution/flash.py (package keeper.execution).
    tree = ast.parse(source)
    assert forbidden(imported_modules(tree, ["keeper", "execution"]), *prefixes) == expected


def test_there_are_modules_to_check() -> None:
    assert len(KEEPER) > 5 and (ROOT / "strategies" / "__init__.py") in ALL_MODULES
    assert ROOT / "keeper" / "execution" / "flash.py" in EXECUTION
    assert ROOT / "strategies" / "morpho_blue" / "strategy.py" in STRATEGIES
