"""An Aave market whose pool is neither v3.0 (POOL_REVISION 1) nor v3.6 (10) is refused at
start-up: `keeper scan` and `keeper run` stop with one line naming the pool and its revision,
exit 2, no traceback, no dry-run fork left running (strategies/aave_v3/rules.py;
docs/strategies.md says why 2-9 are not mirrored). The pool is a stand-in set with
anvil_setCode that answers every call with the revision, behind a stand-in addresses
provider that answers every call with the pool.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from keeper import secrets
from keeper.cli import main
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from tests.conftest import Devnet
from tests.integration.helpers import clear_keeper_env, process_alive
from tests.integration.test_scan_run import devnet_toml

FAKE_PROVIDER = "0x00000000000000000000000000000000a0a0a001"
FAKE_POOL = "0x00000000000000000000000000000000a0a0a002"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    clear_keeper_env(monkeypatch)
    yield
    secrets.clear_secrets()


def _answers_every_call_with(word: int) -> str:
    """Runtime code returning the 32-byte `word` to any call: PUSH32 word, PUSH0, MSTORE,
    PUSH1 32, PUSH0, RETURN."""
    return "0x7f" + word.to_bytes(32, "big").hex() + "5f5260205ff3"


@pytest.mark.parametrize("revision", [4, 7, 9])
def test_a_pool_of_an_unmirrored_revision_is_refused_at_start_up(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, revision: int
) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", DEVNET_LIQUIDATOR_KEY)  # run needs one
    devnet.rpc("anvil_setCode", FAKE_PROVIDER, _answers_every_call_with(int(FAKE_POOL, 16)))
    devnet.rpc("anvil_setCode", FAKE_POOL, _answers_every_call_with(revision))
    path = devnet_toml(devnet, tmp_path)
    path.write_text(path.read_text().replace(
        devnet.info.aave_v3.addresses_provider, FAKE_PROVIDER))
    for command in ("scan", "run"):
        result = CliRunner().invoke(main, ["--config", str(path), command])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        # `run` logs its start (JSON lines) before the strategy syncs; then the one line
        errors = [line for line in result.output.splitlines() if not line.startswith("{")]
        assert errors == [
            f"keeper: error: strategies.aave_v3: pool {FAKE_POOL} has POOL_REVISION {revision}, "
            "whose liquidation rules are not mirrored; supported are revision 1 (v3.0, "
            "@aave/core-v3 1.19.3) and 10 (v3.6, aave-v3-origin 3.6.0)"], result.output
        forks = [json.loads(line)["pid"] for line in result.output.splitlines()
                 if '"dry-run fork started"' in line]
        assert not [pid for pid in forks if process_alive(pid)]  # run's fork is stopped
