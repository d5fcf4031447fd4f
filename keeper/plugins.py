"""Discovery of strategy plugins through the entry-point group `keeper.strategies`.

A plugin is any object with a `name` and a pydantic `config_model` that
validates its `[strategies.<name>]` section. The engine never imports
`strategies/`; it finds plugins here. Entry points are listed cheaply and a
plugin module is imported only when its section is configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from keeper.errors import ConfigError

ENTRY_POINT_GROUP = "keeper.strategies"


@runtime_checkable
class StrategyPlugin(Protocol):
    """What the config loader needs from a strategy plugin (the engine adds more later)."""

    @property
    def name(self) -> str: ...

    @property
    def config_model(self) -> type[BaseModel]: ...


def installed() -> dict[str, EntryPoint]:
    """Installed plugin entry points by name (duplicate listings of one target are merged)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        known = found.get(entry.name)
        if known is not None and known.value != entry.value:
            raise ConfigError(
                f"strategy plugin {entry.name!r} is installed twice: "
                f"{known.value} and {entry.value}"
            )
        found[entry.name] = entry
    return dict(sorted(found.items()))


def load(name: str, entries: Mapping[str, EntryPoint] | None = None) -> StrategyPlugin:
    """Import and check one plugin; unknown names are an error naming the installed ones."""
    entries = installed() if entries is None else entries
    entry = entries.get(name)
    if entry is None:
        names = ", ".join(entries) or "none"
        raise ConfigError(f"unknown strategy {name!r} in [strategies]; installed: {names}")
    try:
        plugin = entry.load()
    except Exception as exc:
        raise ConfigError(
            f"strategies.{name}: plugin {entry.value} failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    return check(plugin, where=entry.value, name=name)


def load_all() -> dict[str, StrategyPlugin]:
    """Every installed plugin, imported."""
    entries = installed()
    return {name: load(name, entries) for name in entries}


def check(plugin: object, *, where: str, name: str) -> StrategyPlugin:
    """`plugin` if it satisfies `StrategyPlugin` under the entry-point name `name`."""
    if not isinstance(plugin, StrategyPlugin):
        raise ConfigError(
            f"strategies.{name}: {where} is not a strategy plugin (name, config_model)"
        )
    model = plugin.config_model
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigError(f"strategies.{name}: {where}.config_model is not a pydantic model")
    if plugin.name != name:
        raise ConfigError(
            f"strategies.{name}: {where} calls itself {plugin.name!r}, "
            f"but its entry point is named {name!r}"
        )
    return plugin
