"""The config loader: TOML + KEEPER_* environment, per-strategy sections, one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from keeper import secrets
from keeper.config import AccountConfig, KeeperConfig, load_config
from keeper.errors import ConfigError
from strategies.aave_v3 import AaveV3Config
from strategies.morpho_blue import MorphoBlueConfig

ROOT = Path(__file__).resolve().parents[2]
AAVE = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"
MORPHO = "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb"
KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
MINIMAL = """\
[chain]
chain_id = 1
http_urls = ["http://127.0.0.1:8545"]

[execution]
mode = "dry-run"
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No KEEPER_* settings from the developer's shell; no secrets from earlier tests."""
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_") and name.upper() not in {
            "KEEPER_HOME",
            "KEEPER_CACHE_DIR",
            "KEEPER_ANVIL_BIN",
        }:
            monkeypatch.delenv(name)
    secrets.clear_secrets()
    yield
    secrets.clear_secrets()


def write(tmp_path: Path, text: str, name: str = "keeper.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.chain.chain_id == 1
    assert config.execution.mode == "dry-run"
    assert config.execution.min_profit_quote == Decimal("0.002")
    aave = config.strategies.section("aave_v3", AaveV3Config)
    morpho = config.strategies.section("morpho_blue", MorphoBlueConfig)
    assert aave is not None and aave.addresses_provider == AAVE
    assert morpho is not None and morpho.morpho == MORPHO and morpho.markets is None
    assert set(config.strategies.sections()) == {"aave_v3", "morpho_blue"}
    assert not config.account.configured


def test_example_documents_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text()
    models = [
        *KeeperConfig.model_fields["chain"].annotation.model_fields,  # type: ignore[union-attr]
        *AccountConfig.model_fields,
        *KeeperConfig.model_fields["execution"].annotation.model_fields,  # type: ignore[union-attr]
        *AaveV3Config.model_fields,
        *MorphoBlueConfig.model_fields,
    ]
    for key in models:
        env_only = {"private_key": "KEEPER_ACCOUNT__PRIVATE_KEY",
                    "searcher_key": "KEEPER_ACCOUNT__SEARCHER_KEY",
                    "lane_keys": "KEEPER_ACCOUNT__LANE_KEYS"}
        if key in env_only:  # documented as the environment variable only
            assert env_only[key] in text
            continue
        assert f"{key} =" in text, key


def test_minimal_config_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.chain.http_urls[0].url == "http://127.0.0.1:8545"
    assert config.chain.http_urls[0].requests_per_second is None
    assert config.execution.journal == Path("keeper-journal.sqlite")
    assert config.strategies.sections() == {}
    assert config.source == tmp_path / "keeper.toml"


def test_default_path_is_keeper_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    assert load_config().chain.chain_id == 1


def test_endpoints_and_rate_limits(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'http_urls = ["http://127.0.0.1:8545"]',
        'requests_per_second = 7\nhttp_urls = ["http://a", { url = "https://b", '
        'requests_per_second = 2.5 }]\nws_url = "ws://c"',
    )
    chain = load_config(write(tmp_path, text)).chain
    assert [(e.url, e.requests_per_second) for e in chain.http_urls] == [
        ("http://a", 7),
        ("https://b", 2.5),
    ]
    assert chain.ws_url == "ws://c"


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL + f'\n[strategies.aave_v3]\naddresses_provider = "{AAVE}"\n')
    monkeypatch.setenv("KEEPER_CHAIN__CHAIN_ID", "5")
    monkeypatch.setenv("KEEPER_CHAIN__HTTP_URLS", '["http://x:1", "http://y:2"]')
    monkeypatch.setenv("KEEPER_EXECUTION__MIN_PROFIT_QUOTE", "2.5")
    monkeypatch.setenv("KEEPER_STRATEGIES__AAVE_V3__START_BLOCK", "123")
    monkeypatch.setenv("KEEPER_STRATEGIES__MORPHO_BLUE__MORPHO", MORPHO.lower())
    monkeypatch.setenv("KEEPER_HOME", str(tmp_path))  # other KEEPER_ variables are ignored
    config = load_config(path)
    assert config.chain.chain_id == 5
    assert [e.url for e in config.chain.http_urls] == ["http://x:1", "http://y:2"]
    assert config.execution.min_profit_quote == Decimal("2.5")
    aave = config.strategies.section("aave_v3", AaveV3Config)
    assert aave is not None and aave.start_block == 123 and aave.addresses_provider == AAVE
    morpho = config.strategies.section("morpho_blue", MorphoBlueConfig)
    assert morpho is not None and morpho.morpho == MORPHO  # checksummed


def test_private_key_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", "0x" + KEY)
    config = load_config(write(tmp_path, MINIMAL.replace("dry-run", "live")))
    assert isinstance(config.account.private_key, SecretStr)
    assert KEY not in repr(config) and KEY not in str(config.masked())
    account = config.account.load()
    assert account is not None and account.address.startswith("0x")
    assert secrets.redact(f"k={KEY} K=0x{KEY.upper()}") == "k=********** K=**********"


def test_private_key_in_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + f'\n[account]\nprivate_key = "{KEY}"\n')
    message = error_of(path)
    assert "account.private_key" in message and "KEEPER_ACCOUNT__PRIVATE_KEY" in message
    assert "keystore" in message and str(path) in message
    assert KEY not in message


def test_key_and_keystore_together_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    path = write(tmp_path, MINIMAL + '\n[account]\nkeystore = "k.json"\npassword_file = "p"\n')
    message = error_of(path)
    assert "not both" in message and KEY not in message


def test_keystore_needs_password_file(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL + '\n[account]\nkeystore = "k.json"\n'))
    assert "account.password_file" in message


def test_paths_relative_to_file(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + 'journal = "j.sqlite"\n[account]\nkeystore = "keys/k.json"\npassword_file = "/abs/pw"\n'
    )
    config = load_config(write(tmp_path, text))
    assert config.account.keystore == tmp_path / "keys" / "k.json"
    assert config.account.password_file == Path("/abs/pw")
    assert config.execution.journal == tmp_path / "j.sqlite"


def test_live_loads_without_an_account(tmp_path: Path) -> None:
    """Read-only commands (scan, risk, check-config) need no key even with mode = "live";
    `keeper run` asks for one when it starts (keeper.run.keeper_from_config)."""
    config = load_config(write(tmp_path, MINIMAL.replace("dry-run", "live")))
    assert config.execution.mode == "live" and not config.account.configured


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.toml")
    assert "not found" in message and "nope.toml" in message


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL + 'priority_fee_gwei = "1\n'))
    assert "keeper.toml" in message and "invalid TOML" in message and "line 7" in message


def test_unknown_key_named_with_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL + "colour = 'red'\n"))
    assert message.endswith("unknown key execution.colour")
    assert "keeper.toml:7:" in message


def test_unknown_top_level_table(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL + "\n[oops]\nx = 1\n"))
    assert "unknown key oops" in message and "keeper.toml:8:" in message


def test_wrong_type_names_dotted_key(tmp_path: Path) -> None:
    text = MINIMAL + 'max_fee_per_gas_gwei = "lots"\n'
    message = error_of(write(tmp_path, text))
    assert "execution.max_fee_per_gas_gwei" in message and "'lots'" in message
    assert "keeper.toml:7:" in message


def test_wrong_type_from_env_names_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_EXECUTION__MAX_FEE_PER_GAS_GWEI", "lots")
    message = error_of(write(tmp_path, MINIMAL))
    assert "KEEPER_EXECUTION__MAX_FEE_PER_GAS_GWEI" in message
    assert "execution.max_fee_per_gas_gwei" in message


def test_missing_required_key(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL.replace("chain_id = 1\n", "")))
    assert "missing required key chain.chain_id" in message


def test_empty_http_urls(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL.replace('["http://127.0.0.1:8545"]', "[]")))
    assert "chain.http_urls" in message


def test_bad_url_scheme(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL.replace("http://127", "ftp://127")))
    assert "chain.http_urls[0].url" in message and "http://" in message


def test_priority_fee_above_max(tmp_path: Path) -> None:
    text = MINIMAL + "max_fee_per_gas_gwei = 1\npriority_fee_gwei = 2\n"
    assert "priority_fee_gwei" in error_of(write(tmp_path, text))


def test_unknown_strategy_names_installed(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL + "\n[strategies.compound]\nx = 1\n"))
    assert "'compound'" in message and "aave_v3" in message and "morpho_blue" in message


def test_unknown_strategy_key(tmp_path: Path) -> None:
    text = MINIMAL + f'\n[strategies.aave_v3]\naddresses_provider = "{AAVE}"\npool = "0x"\n'
    message = error_of(write(tmp_path, text))
    assert "unknown key strategies.aave_v3.pool" in message and "keeper.toml:10:" in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0x1234", "20-byte hex address"),
        ("2f39d218133AFaB8F2B819B1066c7E434Ad94E9e", "20-byte hex address"),
        ("0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9E", "checksum"),
    ],
)
def test_bad_addresses(tmp_path: Path, value: str, problem: str) -> None:
    text = MINIMAL + f'\n[strategies.aave_v3]\naddresses_provider = "{value}"\n'
    message = error_of(write(tmp_path, text))
    assert "strategies.aave_v3.addresses_provider" in message and problem in message


def test_lower_case_address_is_checksummed(tmp_path: Path) -> None:
    text = MINIMAL + f'\n[strategies.aave_v3]\naddresses_provider = "{AAVE.lower()}"\n'
    aave = load_config(write(tmp_path, text)).strategies.section("aave_v3", AaveV3Config)
    assert aave is not None and aave.addresses_provider == AAVE


def test_morpho_markets(tmp_path: Path) -> None:
    market = "0x" + "Ab" * 32
    text = MINIMAL + f'\n[strategies.morpho_blue]\nmorpho = "{MORPHO}"\nmarkets = ["{market}"]\n'
    morpho = load_config(write(tmp_path, text)).strategies.section("morpho_blue", MorphoBlueConfig)
    assert morpho is not None and morpho.markets == [market.lower()]
    bad = text.replace(market, "0x1234")
    assert "strategies.morpho_blue.markets[0]" in error_of(write(tmp_path, bad))


def test_section_type_is_checked(tmp_path: Path) -> None:
    text = MINIMAL + f'\n[strategies.aave_v3]\naddresses_provider = "{AAVE}"\n'
    config = load_config(write(tmp_path, text))
    with pytest.raises(TypeError):
        config.strategies.section("aave_v3", MorphoBlueConfig)
    assert config.strategies.section("morpho_blue", MorphoBlueConfig) is None


def test_unparsable_env_list_names_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_CHAIN__HTTP_URLS", "http://not-json")
    message = error_of(write(tmp_path, MINIMAL))
    assert "KEEPER_CHAIN__HTTP_URLS" in message and "JSON" in message


def test_long_bad_value_is_redacted_before_truncation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    text = MINIMAL + f'min_profit_quote = "0x{KEY}"\n'
    message = error_of(write(tmp_path, text))
    assert "execution.min_profit_quote" in message and KEY[:12] not in message


def test_top_level_key_not_matched_inside_a_table(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[execution]\nchain = 1\n"))
    assert message.startswith(f"{tmp_path / 'keeper.toml'}: missing required key chain ")
