"""The daemon's console as an operator reads it (issue 19): `keeper run --log-format console`
on the devnet through a WETH drop. Every line fits 160 characters, amounts are in token
units, a status line comes every block asked for, the stop summary covers this run in
WETH, and `keeper journal` shows the journal in the WETH the daemon noted.

The renderer's and limiter's details are unit tests (tests/unit/test_daemon_console.py);
this is the whole path, once (about 10 s)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from keeper import secrets
from keeper.cli import main
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.log import MAX_LINE
from tests.conftest import Devnet, Miner, wait_for
from tests.integration.helpers import KEEP_ENV, clear_keeper_env, confirmed_intents
from tests.integration.test_scan_run import KEEPER, devnet_toml, drop_weth

RAW = re.compile(r"\d{13,}")  # a wei amount on the console: what it must never show


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    clear_keeper_env(monkeypatch)
    yield
    secrets.clear_secrets()


def test_the_console_through_a_price_drop(devnet: Devnet, tmp_path: Path) -> None:
    path = devnet_toml(devnet, tmp_path, mode="live", ws=True, morpho=True)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env |= {k: v for k, v in os.environ.items() if k.upper() in KEEP_ENV}
    env |= {"KEEPER_ACCOUNT__PRIVATE_KEY": DEVNET_LIQUIDATOR_KEY,
            "KEEPER_MONITORING__STATUS_EVERY_BLOCKS": "1"}
    process = subprocess.Popen(
        [str(KEEPER), "--config", str(path), "--log-format", "console", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None and process.stdout is not None
    lines: list[str] = []
    stderr = process.stderr
    threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")), daemon=True).start()
    journal = tmp_path / "journal.sqlite"
    try:
        wait_for(lambda: any(" synced " in line for line in lines), timeout=60, what="sync")
        drop_weth(devnet)
        mine = Miner(devnet)

        def confirmed_and_told() -> bool:
            assert process.poll() is None, lines[-5:]
            if confirmed_intents(journal) and any(
                    " status " in line and "confirmed=0 " not in line for line in lines):
                return True
            mine()  # a new head makes the daemon evaluate, and brings the status line
            return False

        wait_for(confirmed_and_told, timeout=60, what="a confirmation and a status line")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, lines[-5:]
    console = [line.rstrip("\n") for line in lines]
    too_long = [line for line in console + stdout.splitlines() if len(line) > MAX_LINE]
    assert not too_long, too_long
    assert not [line for line in console if RAW.search(line)], "raw integers on the console"
    confirmed = [line for line in console if "liquidation confirmed" in line]
    assert confirmed and all(re.search(r"realized_profit='-?[0-9.,]+ WETH'", line)
                             for line in confirmed), confirmed
    status = [line for line in console if " status head=" in line]
    assert re.search(r"tracked=[1-9]\d* at_risk=\d+ in_flight=\d+ confirmed=[1-9]", status[-1])
    summary = stdout.splitlines()
    assert summary[0].startswith("keeper: stopped; this run (") and " WETH net of gas" in summary[0]
    assert summary[1].startswith("  gas paid ") and " ETH" in summary[1]
    table = CliRunner().invoke(main, ["journal", "--journal", str(journal), "--status",
                                      "confirmed"])
    assert table.exit_code == 0, table.output
    assert "(WETH amounts, bids in gwei)" in table.output
    assert re.search(r"confirmed; realized [0-9.,]+ WETH", " ".join(table.output.split()))
