"""The daemon behind a first endpoint that spoils answers, at start-up and during a crash.

Both endpoints of `chain.http_urls` reach the session devnet's anvil; the first goes through
a `SpoilingProxy` (tests/spoiling.py) that spoils chosen answers: a batch with an item
missing, an item with neither result nor error, a wrong id, a body that is not JSON, an
empty body, a batch answered with an object. The daemon is started the public way
(`keeper.run.run_daemon` with a `KeeperConfig` read from a keeper.toml), with Aave V3 and
Morpho Blue. The same crash (WETH -30 % and WBTC -20 % in one block) is run twice from the
same chain state: once straight to anvil, once with the spoiling proxy first.

Every spoiled answer benches the endpoint with a doubling backoff, so only the first spoil
of a phase meets it in use; the next ones meet its probes (or a request that was already
on its way when it was benched). At start-up the open's batch loses an item, then two
probes get neither result nor error and a wrong id; once the endpoint is back in use, the
crash comes, and the first liquidation sent through it gets a body that is not JSON (the
node did take the transaction), then the next answers get an empty body and a batch
answered with an object.

The liquidator is first given far more of every token than the crash's liquidations repay:
with its usual $5M each it can fund a few of them, and which few then depends on what is in
flight when (a send that fails over takes longer), so the two runs could not be compared.

Asserted: every kind was spoiled, in its phase; the keeper failed over each time (once per
benching: a spoiled answer to a request sent before the endpoint was benched counts with
that benching), kept running, and took the endpoint back into use after each phase; the
send whose answer was spoiled (sent alone) had reached the node, and the keeper, told so
by the second endpoint, followed it as sent; the spoiled run liquidated every position the
clean run did; in each run every intent was confirmed, the journal holds exactly the
liquidator's liquidations on chain as confirmed, and nothing was logged as an error.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from web3 import Web3

from keeper import secrets
from keeper.config import load_config
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.morpho import morpho_abi
from keeper.run import run_daemon
from tests.conftest import Devnet, Miner
from tests.integration.helpers import aave_pool, crash_in_one_block, deployer, liquidator, tokens
from tests.integration.helpers import units as base_units
from tests.spoiling import SpoilingProxy

AT_START = ("missing", "neither", "wrong-id")
DURING_CRASH = ("not-json", "empty", "not-list")  # the first on a send
IN_FLIGHT = ("planned", "signed", "sent")
TIMEOUT = 180.0
Unit = tuple[str, str]  # (protocol, borrower)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only the liquidator's key from the environment; no secrets left to later tests."""
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_") and name.upper() not in {
            "KEEPER_HOME", "KEEPER_CACHE_DIR", "KEEPER_ANVIL_BIN",
        }:
            monkeypatch.delenv(name)
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", DEVNET_LIQUIDATOR_KEY)
    secrets.clear_secrets()
    yield
    secrets.clear_secrets()


def keeper_toml(devnet: Devnet, folder: Path, urls: list[str]) -> Path:
    """A live keeper.toml for the devnet over `urls` (in failover order), both strategies,
    HTTP polling (no WebSocket: every head read goes through the endpoints), no gas cap."""
    info = devnet.info
    folder.mkdir()
    path = folder / "keeper.toml"
    listed = ", ".join(f'"{u}"' for u in urls)
    path.write_text(
        f"[chain]\nchain_id = {info.chain_id}\nhttp_urls = [{listed}]\n"
        "block_time_seconds = 1\n\n"
        f'[execution]\nmode = "live"\nquote_token = "{info.tokens["WETH"].address}"\n'
        'min_profit_quote = "0"\njournal = "journal.sqlite"\nmax_fee_per_gas_gwei = "3000"\n\n'
        f'[dex]\nuniswap_v2_factory = "{info.uniswap_v2.factory}"\n\n'
        "[monitoring]\nport = 0\n\n"
        # The crash spends more gas in a minute than the default hourly cap allows.
        '[breakers]\nmax_gas_per_hour_eth = "0"\n\n'
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n\n'
        f'[strategies.morpho_blue]\nmorpho = "{info.morpho_blue.morpho}"\n'
    )
    return path


def liquidated(devnet: Devnet, start: int, end: int) -> tuple[set[Unit], set[str]]:
    """The positions the liquidator liquidated in [start, end], and those transactions."""
    me = liquidator(devnet).lower()
    aave = aave_pool(devnet).events.LiquidationCall().get_logs(from_block=start, to_block=end)
    morpho = devnet.w3.eth.contract(
        address=Web3.to_checksum_address(devnet.info.morpho_blue.morpho), abi=morpho_abi(),
    ).events.Liquidate().get_logs(from_block=start, to_block=end)
    units = {("aave_v3", str(e["args"]["user"]).lower()) for e in aave
             if str(e["args"]["liquidator"]).lower() == me}
    units |= {("morpho_blue", str(e["args"]["borrower"]).lower()) for e in morpho
              if str(e["args"]["caller"]).lower() == me}
    hashes = {"0x" + bytes(e["transactionHash"]).hex().removeprefix("0x")
              for e in [*aave, *morpho]
              if me in (str(e["args"].get("liquidator", "")).lower(),
                        str(e["args"].get("caller", "")).lower())}
    return units, hashes


def journal_rows(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Every intent's status by key, and every journaled transaction's status by hash."""
    if not path.exists():
        return {}, {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        intents = {str(k): str(s) for k, s in db.execute("SELECT key, status FROM intents")}
        txs = {str(h).lower(): str(s)
               for h, s in db.execute("SELECT tx_hash, status FROM transactions")}
    except sqlite3.OperationalError:  # the schema is not written yet
        return {}, {}
    finally:
        db.close()
    return intents, txs


def head_processed(metrics_url: str) -> int:
    with urllib.request.urlopen(metrics_url, timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("keeper_head_block "):
                return int(float(line.split()[1]))
    return -1


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@dataclass
class Run:
    """What one daemon run did from the crash block P on."""

    price_block: int
    units: set[Unit]  # positions the liquidator liquidated since P
    hashes: set[str]  # those liquidation transactions
    intents: dict[str, str]  # the journal's intents: key -> status
    txs: dict[str, str]  # the journal's transactions: hash -> status
    logs: list[MutableMapping[str, Any]]  # the daemon's log events
    crash_logs: int  # how many of them came before the crash


async def run_crash(
    devnet: Devnet, folder: Path, urls: list[str],
    before_crash: Callable[[list[MutableMapping[str, Any]]], Awaitable[None]] | None = None,
    done: Callable[[list[MutableMapping[str, Any]]], bool] = lambda logs: True,
) -> Run:
    """Start the daemon over `urls`, post the crash once it is running (and `before_crash`
    returned), mine until it is quiet and `done(logs)`, stop it; what it did."""
    config = load_config(keeper_toml(devnet, folder, urls))
    journal = folder / "journal.sqlite"
    started = time.monotonic()
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        daemon = asyncio.create_task(run_daemon(config, stop))
        try:
            async def running() -> bool:
                assert not daemon.done(), daemon.result()
                return any(e["event"] == "keeper running" for e in logs)

            await until(running, "the daemon to start")
            metrics = next(e["monitoring"] for e in logs if e["event"] == "keeper running")
            metrics += "/metrics"

            mine = Miner(devnet, every=1.0)

            async def synced() -> bool:  # it steps to new heads only: mine some
                assert not daemon.done(), daemon.result()
                head = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
                if await asyncio.to_thread(head_processed, metrics) >= head > 0:
                    return True
                await asyncio.to_thread(mine)
                return False

            await until(synced, "the daemon to process a new head")
            if before_crash is not None:
                await before_crash(logs)
            crash_logs = len(logs)
            price_block = await asyncio.to_thread(crash_in_one_block, devnet)
            crashed = time.monotonic()
            # Quiet: three heads in a row processed with the journal unchanged and nothing
            # in flight (the first liquidations come within a few heads of P).
            quiet, last = 0, None
            deadline = time.monotonic() + TIMEOUT
            while quiet < 3 or not done(logs):
                if time.monotonic() > deadline:
                    rpc = [(e["event"], e.get("url"), e.get("reason"), e.get("retry_in"))
                           for e in logs if "rpc" in e["event"]]
                    pytest.fail(f"not quiet: {Counter((last or {}).values())}, "
                                f"done: {done(logs)}, {rpc}")
                head = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)

                async def processed(head: int = head) -> bool:
                    assert not daemon.done(), daemon.result()
                    return await asyncio.to_thread(head_processed, metrics) >= head

                await until(processed, f"the daemon to process block {head}")
                intents, _ = journal_rows(journal)
                settled = intents and not any(s in IN_FLIGHT for s in intents.values())
                quiet = quiet + 1 if settled and intents == last else 0
                last = intents
                await asyncio.to_thread(devnet.rpc, "evm_mine")
        finally:
            stop.set()
            result = await asyncio.wait_for(daemon, TIMEOUT)
    assert result.abandoned == 0
    print(f"\n{folder.name}: running and synced in {crashed - started:.1f}s, quiet "
          f"{time.monotonic() - crashed:.1f}s after the crash")
    end = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
    units, hashes = await asyncio.to_thread(liquidated, devnet, price_block, end)
    intents, txs = journal_rows(journal)
    return Run(price_block, units, hashes, intents, txs, list(logs), crash_logs)


def fund_every_liquidation(devnet: Devnet) -> None:
    """Far more of every token for the liquidator than the crash's liquidations repay (its
    $5M each funds a few of them), so which positions it liquidates does not hang on what
    is in flight when (the devnet fixture takes it back after the test)."""
    admin = deployer(devnet)
    for symbol, token in tokens(devnet).items():
        admin.send(token.functions.mint(liquidator(devnet), base_units(symbol, 10**12)))


def attempted(run: Run) -> set[Unit]:
    """The positions the run went after (its journal's intents: chain:strategy:account:...)."""
    return {(key.split(":")[1], key.split(":")[2]) for key in run.intents}


def reset(devnet: Devnet, snapshot: object) -> None:
    """Back to `snapshot`, as the devnet fixture leaves the chain between tests."""
    devnet.rpc("anvil_dropAllTransactions")
    assert devnet.rpc("evm_revert", snapshot) is True
    latest = devnet.rpc("eth_getBlockByNumber", "latest", False)
    assert isinstance(latest, dict)
    devnet.rpc("anvil_setNextBlockBaseFeePerGas", latest["baseFeePerGas"])


def failovers(logs: list[MutableMapping[str, Any]], where: str) -> list[MutableMapping[str, Any]]:
    """The events that took the endpoint at `where` out of use for a malformed answer (at
    open, or later: benched)."""
    return [e for e in logs if where in str(e.get("url", "")) and e["event"] in (
        "rpc endpoint failing; failing over", "rpc endpoint benched",
        "rpc endpoint answered badly at start; will retry it",
    ) and "sent a" in str(e.get("reason"))]


def back_in_use(logs: list[MutableMapping[str, Any]], where: str) -> int:
    """How many times the endpoint at `where` came back into use."""
    return sum(1 for e in logs
               if e["event"] == "rpc endpoint healthy again" and where in str(e.get("url", "")))


async def test_spoiled_answers_fail_over_and_every_liquidation_is_still_taken(
    devnet: Devnet, tmp_path: Path
) -> None:
    fund_every_liquidation(devnet)
    snapshot = devnet.rpc("evm_snapshot")
    try:
        clean = await run_crash(devnet, tmp_path / "clean", [devnet.info.rpc_url])
    finally:
        await asyncio.to_thread(reset, devnet, snapshot)
    assert clean.units, "the crash liquidates nothing: the comparison would prove nothing"

    proxy = SpoilingProxy(devnet.info.rpc_url)
    await proxy.start()
    where = proxy.url.removeprefix("http://")
    proxy.spoil(*AT_START)
    at_start: dict[str, int] = {}

    async def spoil_the_crash(logs: list[MutableMapping[str, Any]]) -> None:
        async def back() -> bool:  # every start-up kind spoiled, and the endpoint in use
            return not proxy.pending and back_in_use(logs, where) > 0

        await until(back, "the spoiled endpoint back in use after start-up")
        at_start.update(proxy.spoiled)
        proxy.spoil(DURING_CRASH[0], only={"eth_sendRawTransaction"}, alone=True)
        proxy.spoil(*DURING_CRASH[1:])

    def done(logs: list[MutableMapping[str, Any]]) -> bool:  # all spoiled, and it is back
        return not proxy.pending and back_in_use(logs, where) >= 2

    try:
        spoiled = await run_crash(devnet, tmp_path / "spoiled", [proxy.url, devnet.info.rpc_url],
                                  spoil_the_crash, done)
    finally:
        await proxy.aclose()

    assert at_start == dict.fromkeys(AT_START, 1), at_start
    assert proxy.spoiled == dict.fromkeys(AT_START + DURING_CRASH, 1), proxy.spoiled
    early = failovers(spoiled.logs[: spoiled.crash_logs], where)
    late = failovers(spoiled.logs[spoiled.crash_logs :], where)
    shown = [(e["event"], e.get("reason"), e.get("retry_in")) for e in spoiled.logs
             if "rpc endpoint" in e["event"]]
    assert early[0]["event"] == "rpc endpoint answered badly at start; will retry it", shown
    assert "missing from the batch answer" in early[0]["reason"], shown
    # One benching per spoiled answer, each twice as long as the one before; during the
    # crash a spoiled answer to a request sent before the endpoint was benched finds it
    # benched already (concurrent failures count once).
    assert [e["retry_in"] for e in early if "retry_in" in e] == [0.5, 1.0, 2.0], shown
    delays = [e["retry_in"] for e in late]
    assert delays in ([4.0, 8.0], [4.0, 8.0, 16.0]), shown
    assert late[0]["event"] == "rpc endpoint failing; failing over", shown  # it was in use
    assert late[0]["reason"].startswith("eth_sendRawTransaction: "), shown
    assert any(e["event"] == "a send refused after a failed attempt had got through"
               for e in spoiled.logs[spoiled.crash_logs :])

    # With capital for every liquidation, the spoiled run liquidated every position the clean
    # run did, each intent it journaled was confirmed, and the journal agrees with the chain.
    assert spoiled.units == clean.units, spoiled.units ^ clean.units
    for run in (clean, spoiled):
        confirmed = {h for h, s in run.txs.items() if s == "confirmed"}
        assert confirmed == run.hashes, (confirmed ^ run.hashes)
        assert attempted(run) == run.units, attempted(run) ^ run.units
        assert all(s == "confirmed" for s in run.intents.values()), {
            k: s for k, s in run.intents.items() if s != "confirmed"}
        errors = [e for e in run.logs if e.get("log_level") in ("error", "critical")]
        assert not errors, errors
    print(
        f"\nspoiled answers: {dict(proxy.spoiled)} of {proxy.forwarded} forwarded; "
        f"{len(early)} failovers at start-up, {len(late)} during the crash; "
        f"{len(spoiled.units)} positions liquidated in both runs, with "
        f"{len(clean.hashes)} (clean) and {len(spoiled.hashes)} (spoiled) transactions"
    )
