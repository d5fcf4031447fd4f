"""`keeper scan` and `keeper run` against the devnet, and the config keys they need.

`scan --json` lists every seeded Aave borrower with the health factor the pool itself
reports (Pool.getUserAccountData); after WETH falls, the ranked opportunities appear with
net = gross - slippage - gas. `run` (live, the devnet liquidator's dev key from the
environment) liquidates after the drop, stops on SIGTERM with exit 0 and a journal summary,
and never prints the key. The config checks at the end need no chain.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from eth_abi.abi import decode
from eth_utils.abi import function_signature_to_4byte_selector

from keeper import secrets
from keeper.cli import main
from keeper.config import load_config
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.observe import morpho_positions
from keeper.devnet.tokens import post_price, to_feed_answer
from keeper.errors import ConfigError
from tests.conftest import Devnet, Miner, seeded_borrowers, wait_for
from tests.integration.helpers import (
    KEEP_ENV,
    MAX_UINT,
    SPECS,
    clear_keeper_env,
    confirmed_intents,
    feeds,
    liquidator,
    tokens,
)

KEEPER = Path(sys.executable).parent / "keeper"
MORPHO_USERS = {p.address.lower() for p in seeded_borrowers("morpho_blue")}
USERS = {p.address.lower() for p in seeded_borrowers("aave_v3")}
ACCOUNT_DATA = "0x" + function_signature_to_4byte_selector("getUserAccountData(address)").hex()
WETH_DROP = Decimal("0.75")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No KEEPER_* settings from the developer's shell; no secrets from earlier tests."""
    clear_keeper_env(monkeypatch)
    yield
    secrets.clear_secrets()


def devnet_toml(devnet: Devnet, tmp_path: Path, *, mode: str = "dry-run", ws: bool = False,
                morpho: bool = False, **drop: bool) -> Path:
    """A keeper.toml for the devnet; `drop` leaves keys out (quote_token=True, factory=True);
    `ws` adds the WebSocket URL (the daemon then takes heads and feed logs from it)."""
    info = devnet.info
    quote = "" if drop.get("quote_token") else f'quote_token = "{info.tokens["WETH"].address}"\n'
    factory = (
        "" if drop.get("factory") else f'uniswap_v2_factory = "{info.uniswap_v2.factory}"\n'
    )
    path = tmp_path / "keeper.toml"
    path.write_text(
        f'[chain]\nchain_id = {info.chain_id}\nhttp_urls = ["{info.rpc_url}"]\n'
        + (f'ws_url = "{info.ws_url}"\n' if ws else "") + "\n"
        f'[execution]\nmode = "{mode}"\n{quote}min_profit_quote = "0"\n'
        f'journal = "journal.sqlite"\nmax_fee_per_gas_gwei = "3000"\n\n'
        f"[dex]\n{factory}\n"
        "[monitoring]\nport = 0\n\n"
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n'
        + (f'\n[strategies.morpho_blue]\nmorpho = "{info.morpho_blue.morpho}"\n' if morpho else "")
    )
    return path


def scan_json(path: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["--config", str(path), "scan", "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def chain_health(devnet: Devnet, users: list[str], block: int) -> dict[str, int]:
    pool = devnet.info.aave_v3.pool
    out = {}
    for user in users:
        answer = devnet.rpc(
            "eth_call", {"to": pool, "data": ACCOUNT_DATA + "00" * 12 + user[2:]}, hex(block)
        )
        assert isinstance(answer, str)
        out[user] = decode(["uint256"] * 6, bytes.fromhex(answer.removeprefix("0x")))[5]
    return out


def drop_weth(devnet: Devnet) -> None:
    price = SPECS["WETH"].usd_price * WETH_DROP
    post_price(devnet.w3, devnet.info.feeds["WETH"], price, devnet.info.accounts.deployer)


def test_scan_lists_positions_and_opportunities(devnet: Devnet, tmp_path: Path) -> None:
    path = devnet_toml(devnet, tmp_path)
    before = scan_json(path)
    assert set(before) == {"block", "positions", "opportunities"}
    positions = before["positions"]
    assert {p["strategy"] for p in positions} == {"aave_v3"}
    borrowers = {p["account"] for p in positions if int(p["debt_value"]) > 0}
    assert borrowers == USERS
    health = chain_health(devnet, [p["account"] for p in positions], before["block"])
    assert {p["account"]: int(p["health_factor"]) for p in positions} == health
    assert all(isinstance(p["health_factor"], str) for p in positions)
    assert before["opportunities"] == []  # the seeded population is healthy

    drop_weth(devnet)
    after = scan_json(path)
    assert after["block"] > before["block"]
    opportunities = after["opportunities"]
    assert opportunities
    health = chain_health(devnet, sorted(USERS), after["block"])
    unhealthy = {u for u, hf in health.items() if hf < 10**18}
    for opp in opportunities:
        assert opp["account"] in unhealthy
        assert int(opp["health_factor"]) == health[opp["account"]]
        gross, slippage, gas, net = (int(opp[k]) for k in ("gross", "slippage", "gas", "net"))
        assert net == gross - slippage - gas
        assert net >= 0 and gas > 0 and int(opp["repay"]) > 0

    table = CliRunner().invoke(main, ["--config", str(path), "scan"])
    assert table.exit_code == 0, table.output
    assert "net profit" in table.stdout and "health factor" in table.stdout


def test_scan_shows_both_protocols_in_one_ranking(devnet: Devnet, tmp_path: Path) -> None:
    """With Aave V3 and Morpho Blue configured, `scan --json` lists both books, and after a
    drop the one ranking holds Morpho opportunities exactly for borrowers the chain calls
    liquidatable, next to the Aave ones, the best first."""
    path = devnet_toml(devnet, tmp_path, morpho=True)
    before = scan_json(path)
    assert {p["strategy"] for p in before["positions"]} == {"aave_v3", "morpho_blue"}
    morpho_rows = [p for p in before["positions"] if p["strategy"] == "morpho_blue"]
    assert {p["account"] for p in morpho_rows if int(p["debt_value"]) > 0} == MORPHO_USERS
    drop_weth(devnet)
    after = scan_json(path)
    ranked = after["opportunities"]
    assert {o["strategy"] for o in ranked} == {"aave_v3", "morpho_blue"}
    # In sending order: the best first; each later one valued after the swaps before it.
    nets = [int(o["net"]) for o in ranked]
    assert nets[0] == max(nets) and min(nets) >= 0
    chain = {p.address.lower() for p in morpho_positions(devnet.w3, devnet.info,
                                                          sorted(MORPHO_USERS))
             if p.liquidatable}
    assert {o["account"] for o in ranked if o["strategy"] == "morpho_blue"} <= chain


def _daemon(path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env |= {k: v for k, v in os.environ.items() if k.upper() in KEEP_ENV}
    env["KEEPER_ACCOUNT__PRIVATE_KEY"] = DEVNET_LIQUIDATOR_KEY
    return subprocess.Popen(
        [str(KEEPER), "--config", str(path), "--log-format", "json", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _journal_statuses(journal: Path) -> list[str]:
    if not journal.exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return [str(s) for (s,) in db.execute("SELECT status FROM intents")]
    except sqlite3.OperationalError:  # the schema is not written yet
        return []
    finally:
        db.close()


def test_second_sigterm_abandons_in_flight_and_says_so(devnet: Devnet, tmp_path: Path) -> None:
    """With mining paused the daemon's liquidation stays pending: the first SIGTERM waits
    for it, the second abandons the wait; the summary says how many were abandoned and the
    journal keeps them as sent."""
    path = devnet_toml(devnet, tmp_path, mode="live", ws=True)
    process = _daemon(path)
    stderr, stdout_pipe = process.stderr, process.stdout
    assert stderr is not None and stdout_pipe is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")),
                              daemon=True)
    reader.start()
    journal = tmp_path / "journal.sqlite"
    pool = devnet.info.aave_v3.pool
    for token in tokens(devnet).values():  # approved already: the daemon mines nothing itself
        tx = token.functions.approve(pool, MAX_UINT).transact({"from": liquidator(devnet)})
        devnet.w3.eth.wait_for_transaction_receipt(tx)
    wait_for(lambda: any("websocket subscribed" in line for line in lines), timeout=60,
             what="the daemon to subscribe")
    devnet.rpc("evm_setAutomine", False)
    try:
        feed = feeds(devnet)["WETH"].functions.updateAnswer(
            to_feed_answer(SPECS["WETH"].usd_price * WETH_DROP))
        feed.transact({"from": devnet.info.accounts.deployer})
        devnet.rpc("evm_mine")  # the price block; nothing is mined after it

        def sent() -> bool:
            assert process.poll() is None, lines[-5:]
            return "sent" in _journal_statuses(journal)

        wait_for(sent, timeout=60, what="a liquidation sent and pending")
        process.send_signal(signal.SIGTERM)
        # Signals of one kind do not queue: send the second once the first was handled.
        wait_for(lambda: any("signal again" in line for line in lines), timeout=30,
                 what="the first SIGTERM to be handled")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stdout = stdout_pipe.read()
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        # The abandoned sends are still in anvil's pool, which evm_revert keeps: drop them, or
        # they would be mined in the next test's first block.
        devnet.rpc("anvil_dropAllTransactions")
        devnet.rpc("evm_setAutomine", True)
    assert process.returncode == 0, lines[-5:]
    assert "keeper: stopped" in stdout and "abandoned in flight " in stdout, stdout
    # Counted when the second signal came, not after cancelling (which empties the set).
    assert re.search(r"abandoned in flight [1-9]", stdout), stdout
    assert not any("Traceback" in line for line in lines)
    assert "sent" in _journal_statuses(journal)


def _follow_stderr(process: subprocess.Popen[str]) -> list[str]:
    """The daemon's stderr lines, filled as they come (a reader thread)."""
    stderr = process.stderr
    assert stderr is not None
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")), daemon=True).start()
    return lines


def _monitoring_url(lines: list[str]) -> str:
    for line in lines:
        if '"keeper running"' in line:
            url = json.loads(line).get("monitoring")
            assert isinstance(url, str)
            return url
    return ""


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def test_run_liquidates_serves_metrics_and_stops_on_sigterm(
    devnet: Devnet, tmp_path: Path
) -> None:
    """The daemon liquidates; /health answers and /metrics counts the confirmed outcome
    (and never shows the key); SIGTERM stops it with the journal's summary."""
    path = devnet_toml(devnet, tmp_path, mode="live", ws=True)
    process = _daemon(path)
    lines = _follow_stderr(process)
    try:
        wait_for(lambda: bool(_monitoring_url(lines)), timeout=60, what="the monitoring server")
        base = _monitoring_url(lines)
        status, body = _get(base + "/health")
        assert status == 200 and json.loads(body)["status"] in ("healthy", "degraded"), body
        drop_weth(devnet)
        journal = tmp_path / "journal.sqlite"
        mine = Miner(devnet)

        def liquidated() -> bool:
            assert process.poll() is None, lines[-5:]
            if confirmed_intents(journal):
                return True
            mine()  # a new head makes the daemon evaluate (after its sync)
            return False

        wait_for(liquidated, timeout=60, what="a confirmed liquidation in the journal")

        def counted() -> bool:
            return 'status="confirmed"' in _get(base + "/metrics")[1]

        wait_for(counted, timeout=30, what="the confirmed outcome in /metrics")
        metrics = _get(base + "/metrics")[1]
        assert "keeper_head_block" in metrics and "keeper_rpc_requests_total" in metrics
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stdout = process.stdout.read() if process.stdout is not None else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, lines[-5:]
    assert "keeper: stopped" in stdout and "confirmed" in stdout
    key = DEVNET_LIQUIDATOR_KEY.removeprefix("0x").lower()
    assert key not in stdout.lower() and key not in "".join(lines).lower()
    assert key not in metrics.lower()


def test_a_tripped_breaker_holds_sends_back_and_health_says_why(
    devnet: Devnet, tmp_path: Path
) -> None:
    """A balance floor above the account's ETH trips the balance breaker at the first
    ranking: liquidatable positions are watched but nothing is sent, /health is degraded
    naming the breaker, and keeper_breaker_tripped reads 1."""
    path = devnet_toml(devnet, tmp_path, mode="live", ws=True)
    path.write_text(path.read_text() + '\n[breakers]\nmin_balance_eth = "100000000"\n')
    process = _daemon(path)
    lines = _follow_stderr(process)
    try:
        wait_for(lambda: bool(_monitoring_url(lines)), timeout=60, what="the monitoring server")
        base = _monitoring_url(lines)
        drop_weth(devnet)
        mine = Miner(devnet)

        def tripped() -> bool:
            assert process.poll() is None, lines[-5:]
            _status, body = _get(base + "/health")
            if "balance" in body and json.loads(body)["status"] == "degraded":
                return True
            mine()
            return False

        wait_for(tripped, timeout=60, what="the balance breaker to trip")
        metrics = _get(base + "/metrics")[1]
        assert 'keeper_breaker_tripped{breaker="min_balance"} 1.0' in metrics, metrics[-2000:]
        assert "keeper_opportunities_held_total{" in metrics
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, lines[-5:]
    assert _journal_statuses(tmp_path / "journal.sqlite") == []  # nothing was even claimed


# ------------------------------------------------------------------ no chain needed


@pytest.mark.parametrize(
    "case",
    [
        ("run", {"quote_token": True}, "execution.quote_token"),
        ("scan", {"quote_token": True}, "execution.quote_token"),
        ("scan", {"factory": True}, "dex.uniswap_v2_factory"),
    ],
)
def test_missing_engine_key_is_one_line(
    devnet_session: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, dict[str, bool], str],
) -> None:
    command, drop, key = case
    path = devnet_toml(devnet_session, tmp_path, mode="live" if command == "run" else "dry-run",
                       **drop)
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", DEVNET_LIQUIDATOR_KEY)
    result = CliRunner().invoke(main, ["--config", str(path), command])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("keeper: error:") and f"missing required key {key}" in lines[0]
    assert str(path) in lines[0]
    # The config alone is valid: check-config does not need the engine keys.
    with pytest.raises(ConfigError, match=key):
        load_config(path).require_engine_keys(command)


def test_engine_keys_validate(tmp_path: Path) -> None:
    path = tmp_path / "keeper.toml"
    base = '[chain]\nchain_id = 1\nhttp_urls = ["http://127.0.0.1:1"]\n'
    path.write_text(base + '[execution]\nquote_token = "0x1234"\n')
    with pytest.raises(ConfigError, match=r"keeper.toml:5: execution.quote_token: must be a 20"):
        load_config(path)
    factory = '[dex]\nuniswap_v2_factory = "0x5c69bee701ef814a2b6a3edd4b1652cb9cc5aa6f"\n'
    path.write_text(base + factory + 'router = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key dex.router"):
        load_config(path)
    path.write_text(base + '[execution]\nmin_profit_quote = "-1"\n')
    with pytest.raises(ConfigError, match=r"execution.min_profit_quote"):
        load_config(path)
    path.write_text(base + '[execution]\nmin_profit_quote = "0.002"\n' + factory)
    config = load_config(path)
    assert config.execution.min_profit_quote == Decimal("0.002")
    assert config.dex.uniswap_v2_factory == "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"
    assert config.execution.quote_token is None
