"""Getting started and start-up checks on the devnet (issue 19).

`keeper devnet --write-config keeper.toml` writes a config that works as written: it passes
the online `check-config` and `keeper scan` watches both markets of the devnet (Aave V3 and
Morpho Blue). A configured address that is not a contract, or is the wrong contract, is one
`keeper: error:` line naming its config key, exit 2, before anything else is read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keeper import secrets
from keeper.cli import main
from keeper.devnet.cli import devnet_config
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.log import reset_logging
from tests.conftest import Devnet, seeded_borrowers, wait_for
from tests.integration.helpers import clear_keeper_env

KEEPER = Path(sys.executable).parent / "keeper"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    clear_keeper_env(monkeypatch)
    yield
    reset_logging()
    secrets.clear_secrets()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keeper: error: "), lines
    return lines[0]


def test_write_config_runs_as_written(devnet_session: Devnet, tmp_path: Path) -> None:
    """The command as a new user types it; the config it writes is checked and scanned."""
    out, config = tmp_path / "devnet.json", tmp_path / "keeper.toml"
    process = subprocess.Popen(
        [str(KEEPER), "devnet", "--port", "0", "--out", str(out), "--write-config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(config.exists, timeout=90, what="keeper.toml")  # written after devnet.json
        text = config.read_text()
        for key in ("[strategies.aave_v3]", "[strategies.morpho_blue]", "uniswap_v2_factory",
                    'kind = "uniswap_v3"', "quote_token", 'mode = "live"'):
            assert key in text
        checked = invoke("check-config", "--config", str(config))
        assert checked.exit_code == 0, checked.output
        assert "contracts verified" in checked.stdout
        scanned = invoke("scan", "--json", "--config", str(config))
        assert scanned.exit_code == 0, scanned.output
        positions = json.loads(scanned.stdout)["positions"]
        watched = {p["strategy"] for p in positions}
        assert watched == {"aave_v3", "morpho_blue", *devnet_session.info.aave_markets()}
        morpho = {p["account"].lower() for p in positions if p["strategy"] == "morpho_blue"}
        assert morpho >= {b.address.lower() for b in seeded_borrowers("morpho_blue")}
        # mode = "live" and no key in the environment: the read-only commands still run.
        risk = invoke("risk", "--json", "--config", str(config))
        assert risk.exit_code == 0, risk.output
    finally:
        process.terminate()
        _stdout, stderr = process.communicate(timeout=30)
    assert f"KEEPER_ACCOUNT__PRIVATE_KEY={DEVNET_LIQUIDATOR_KEY}" in stderr
    assert f"keeper run --config {config}" in stderr
    assert f"keeper devnet price --devnet-file {out} WETH 1500" in stderr  # not ./devnet.json


def test_write_config_to_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(invoke("devnet", "--port", "0", "--out", str(tmp_path / "d.json"),
                                 "--write-config", str(tmp_path / "nope" / "keeper.toml")))
    assert "--write-config" in line and "nope" in line


def _config(devnet: Devnet, tmp_path: Path, **replace: str) -> Path:
    text = devnet_config(devnet.info, journal=str(tmp_path / "journal.sqlite"))
    for old, new in replace.items():
        text = text.replace(getattr_path(devnet, old), new)
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return path


def getattr_path(devnet: Devnet, name: str) -> str:
    info = devnet.info
    return {"addresses_provider": info.aave_v3.addresses_provider,
            "quote_token": info.tokens["WETH"].address,
            "morpho": info.morpho_blue.morpho}[name]


def test_not_a_contract_is_named_by_its_key(devnet: Devnet, tmp_path: Path) -> None:
    path = _config(devnet, tmp_path, addresses_provider=devnet.info.accounts.liquidator)
    for command in (["check-config"], ["scan"]):
        line = one_error_line(invoke(*command, "--config", str(path)))
        assert "strategies.aave_v3.addresses_provider" in line and "no contract code" in line
        assert "InsufficientDataBytes" not in line


def test_wrong_contract_is_named_by_its_key(devnet: Devnet, tmp_path: Path) -> None:
    path = _config(devnet, tmp_path, addresses_provider=devnet.info.morpho_blue.morpho)
    line = one_error_line(invoke("scan", "--config", str(path)))
    assert ("strategies.aave_v3.addresses_provider" in line
            and "not an Aave V3 PoolAddressesProvider" in line and "getPool()" in line)
    path = _config(devnet, tmp_path, quote_token=devnet.info.uniswap_v2.factory)
    line = one_error_line(invoke("check-config", "--config", str(path)))
    assert "execution.quote_token" in line and "not an ERC-20 token" in line
    path = _config(devnet, tmp_path, morpho=devnet.info.aave_v3.pool)
    line = one_error_line(invoke("check-config", "--config", str(path)))
    assert "strategies.morpho_blue.morpho" in line and "Morpho Blue" in line
