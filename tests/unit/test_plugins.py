"""Strategy plugins are found through the `keeper.strategies` entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest
from pydantic import BaseModel

from keeper import plugins
from keeper.errors import ConfigError
from strategies.aave_v3 import STRATEGY as AAVE
from strategies.aave_v3 import AaveV3Config
from strategies.morpho_blue import STRATEGY as MORPHO
from strategies.morpho_blue import MorphoBlueConfig


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=plugins.ENTRY_POINT_GROUP)


def test_installed_plugins() -> None:
    entries = plugins.installed()
    assert {"aave_v3", "maker", "morpho_blue", "perp_v2"} <= set(entries)
    assert entries["aave_v3"].value == "strategies.aave_v3:STRATEGY"


def test_load_builtin_plugins() -> None:
    loaded = plugins.load_all()
    assert loaded["aave_v3"] is AAVE and loaded["morpho_blue"] is MORPHO
    assert AAVE.config_model is AaveV3Config and MORPHO.config_model is MorphoBlueConfig
    assert isinstance(AAVE, plugins.StrategyPlugin)


def test_unknown_name_lists_installed() -> None:
    listed = "installed: aave_v3, maker, morpho_blue, perp_v2"
    with pytest.raises(ConfigError, match=rf"unknown strategy 'nope'.*{listed}"):
        plugins.load("nope")


def test_broken_plugin_is_a_config_error() -> None:
    entries = {"ghost": entry("ghost", "no_such_module_here:STRATEGY")}
    with pytest.raises(ConfigError, match=r"strategies\.ghost: plugin .* failed to load"):
        plugins.load("ghost", entries)


class _Config(BaseModel):
    x: int = 0


class _Good:
    name: ClassVar[str] = "good"
    config_model: ClassVar[type[BaseModel]] = _Config


class _Misnamed:
    name = "other"
    config_model = _Config


class _NotAModel:
    name = "bad"
    config_model = dict


def test_check_accepts_protocol_objects() -> None:
    assert plugins.check(_Good(), where="t:G", name="good").config_model is _Config


@pytest.mark.parametrize(
    ("plugin", "name", "problem"),
    [
        (object(), "x", "not a strategy plugin"),
        (_Misnamed(), "mine", "calls itself 'other'"),
        (_NotAModel(), "bad", "not a pydantic model"),
    ],
)
def test_check_rejects(plugin: object, name: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        plugins.check(plugin, where="t:X", name=name)


def test_conflicting_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [entry("dup", "a:X"), entry("dup", "a:X"), entry("dup", "b:Y")]
    monkeypatch.setattr(plugins, "entry_points", lambda group: fake)
    with pytest.raises(ConfigError, match="installed twice"):
        plugins.installed()
