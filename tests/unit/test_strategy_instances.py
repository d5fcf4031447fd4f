"""Several instances of one strategy plugin: `[strategies.<name>]` with `plugin = "..."`.

One Aave strategy runs per market; a second market is a second section naming the
`aave_v3` plugin, and its strategy carries the section's name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper import secrets
from keeper.config import load_config
from keeper.errors import ConfigError
from keeper.run import create_strategies
from keeper.strategy import StrategyContext
from strategies.aave_v3 import AaveV3Config, AaveV3Strategy

CORE = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"  # Aave V3 Ethereum Core
PRIME = "0x4e033931ad43597d96D6bcc25c280717730B58B1"  # Aave V3 Ethereum Prime
BASE = """\
[chain]
chain_id = 1
http_urls = ["http://127.0.0.1:8545"]

[execution]
mode = "dry-run"

[strategies.aave_v3]
addresses_provider = "{core}"
"""
SECOND = """
[strategies.aave_prime]
plugin = "aave_v3"
addresses_provider = "{prime}"
start_block = 5
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_") and name.upper() not in {
            "KEEPER_HOME", "KEEPER_CACHE_DIR", "KEEPER_ANVIL_BIN",
        }:
            monkeypatch.delenv(name)
    secrets.clear_secrets()
    yield
    secrets.clear_secrets()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return path


def test_two_aave_markets_are_two_sections(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, (BASE + SECOND).format(core=CORE, prime=PRIME)))
    sections = config.strategies.sections()
    assert sorted(sections) == ["aave_prime", "aave_v3"]
    core, prime = sections["aave_v3"], sections["aave_prime"]
    assert isinstance(core, AaveV3Config) and isinstance(prime, AaveV3Config)
    assert core.addresses_provider == CORE and prime.addresses_provider == PRIME
    assert prime.start_block == 5 and getattr(prime, "plugin") == "aave_v3"  # noqa: B009


def test_one_strategy_per_market_named_by_its_section(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, (BASE + SECOND).format(core=CORE, prime=PRIME)))
    strategies = create_strategies(config, StrategyContext(chain_id=1, liquidator=CORE))
    assert [s.name for s in strategies] == ["aave_prime", "aave_v3"]
    assert all(isinstance(s, AaveV3Strategy) for s in strategies)
    by_name = {s.name: s for s in strategies if isinstance(s, AaveV3Strategy)}
    assert by_name["aave_prime"].config.addresses_provider == PRIME
    assert by_name["aave_v3"].config.addresses_provider == CORE
    # The class keeps its plugin name; only the instance is renamed.
    assert AaveV3Strategy.name == "aave_v3"


def test_an_instance_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_STRATEGIES__AAVE_PRIME__PLUGIN", "aave_v3")
    monkeypatch.setenv("KEEPER_STRATEGIES__AAVE_PRIME__ADDRESSES_PROVIDER", PRIME)
    config = load_config(_write(tmp_path, BASE.format(core=CORE)))
    prime = config.strategies.sections()["aave_prime"]
    assert isinstance(prime, AaveV3Config) and prime.addresses_provider == PRIME


def test_an_unknown_plugin_is_one_line(tmp_path: Path) -> None:
    text = (BASE + SECOND.replace('"aave_v3"', '"compound"')).format(core=CORE, prime=PRIME)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message and "'compound'" in message and "aave_v3" in message


def test_the_instance_is_validated_by_its_plugin(tmp_path: Path) -> None:
    text = (BASE + SECOND.replace('"aave_v3"', '"morpho_blue"')).format(core=CORE, prime=PRIME)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    # Morpho Blue's section has no addresses_provider (and needs `morpho`).
    assert "strategies.aave_prime" in str(info.value)
