"""`keeper devnet --builder` as a user runs it: the devnet's contracts behind the builder,
blocks on the interval, a price move through the builder's public pool, clean stops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from web3 import Web3

from keeper.cli import main
from tests.conftest import Devnet, wait_for
from tests.integration.builder_client import Client
from tests.integration.helpers import child_pids, process_alive

KEEPER = Path(sys.executable).parent / "keeper"


def test_devnet_with_builder(devnet_session: Devnet, tmp_path: Path) -> None:
    out = tmp_path / "devnet.json"
    process = subprocess.Popen(
        [str(KEEPER), "devnet", "--builder", "--builder-interval", "0.2", "--port", "0",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(out.exists, timeout=60, what="devnet.json")
        info = json.loads(out.read_text())
        w3 = Web3(Web3.HTTPProvider(info["rpc_url"]))
        # Reads pass through the builder to the devnet's anvil: the contracts are there.
        assert w3.eth.chain_id == 31337
        assert len(w3.eth.get_code(Web3.to_checksum_address(info["aave_v3"]["pool"]))) > 0
        anvils = child_pids(process.pid)
        assert len(anvils) == 1
        start = w3.eth.block_number
        wait_for(lambda: w3.eth.block_number >= start + 2, timeout=10, what="builder blocks")
        result = CliRunner().invoke(main, ["devnet", "price", "WETH", "1500",
                                           "--devnet-file", str(out)])
        assert result.exit_code == 0, result.output
        assert "WETH/USD = 1500" in result.output
        reports = Client(info["rpc_url"])("builder_blocks")
        assert all(not r["mismatch"] for r in reports)
        assert any(r["publicTransactions"] for r in reports)  # the price update
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        deadline = time.monotonic() + 10
        while process_alive(anvils[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(anvils[0])
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_builder_refuses_block_time() -> None:
    result = CliRunner().invoke(main, ["devnet", "--builder", "--block-time", "1"])
    assert result.exit_code != 0
    assert "--builder mines its own blocks" in result.output
