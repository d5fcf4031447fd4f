"""The daemon survives dropped HTTP connections during a crash, and loses nothing to them.

`keeper run`'s daemon (`run_daemon`, in this process) follows the session devnet: heads and
feed logs over the WebSocket, every HTTP request through `DroppingProxy`
(tests/integration/dropping_proxy.py), which closes kept-alive connections idle for 0.3 s (a
server's keep-alive timeout: aiohttp then meets `ServerDisconnectedError` when it reuses
one) and drops the connections of chosen requests. A crash (WETH -30 %, WBTC -20 % in one
block) makes accounts liquidatable while the proxy drops the first requests after it: an
`eth_sendRawTransaction` that never reaches the node, one that does but whose answer is
lost, two receipt polls of the mining watch, and two more of anything.

Asserted: the daemon keeps running; every liquidation ends confirmed, lost to the market or
refused by the journal (none ends in an error or a revert); each intent has at most one
confirmed transaction and the journal's confirmed transactions are exactly the
liquidator's liquidations on chain; nothing of ours is left in the pool (no nonce gap);
what is still ranked profitable at the end was confirmed already; no breaker tripped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import keeper.run as run_module
from keeper import secrets
from keeper.config import load_config
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.monitor import Monitor
from keeper.wiring import Keeper
from tests.conftest import Devnet
from tests.integration.dropping_proxy import DroppingProxy
from tests.integration.helpers import (
    aave_pool,
    clear_keeper_env,
    crash_in_one_block,
    deployer,
    liquidator,
    tokens,
)
from tests.integration.test_engine_crash import _liquidations, _morpho_liquidations, _tx

TIMEOUT = 30.0
BAD = ("error", "reverted")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    clear_keeper_env(monkeypatch)
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", DEVNET_LIQUIDATOR_KEY)
    yield
    secrets.clear_secrets()


def _config(devnet: Devnet, tmp_path: Path, http_url: str) -> Path:
    """The race's daemon config (benchmarks/race/keepers.py) with its HTTP through `http_url`."""
    info = devnet.info
    feeds = "".join(
        f'[[execution.feeds]]\naddress = "{info.feeds[s]}"\ndeviation_bps = {r.deviation_bps}\n'
        f"heartbeat_seconds = {r.heartbeat}\n\n" for s, r in info.feed_rules.items())
    path = tmp_path / "keeper.toml"
    path.write_text(
        f'[chain]\nchain_id = {info.chain_id}\nhttp_urls = ["{http_url}"]\n'
        f'ws_url = "{info.ws_url}"\nblock_time_seconds = 1\n\n'
        f'[execution]\nmode = "live"\nquote_token = "{info.tokens["WETH"].address}"\n'
        f'min_profit_quote = "0"\nmax_fee_per_gas_gwei = "5000"\n'
        f'journal = "{tmp_path / "journal.sqlite"}"\n\n{feeds}'
        '[monitoring]\nenabled = false\n\n[breakers]\nmax_gas_per_hour_eth = "1000"\n\n'
        f'[dex]\nuniswap_v2_factory = "{info.uniswap_v2.factory}"\n\n'
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n\n'
        f'[strategies.morpho_blue]\nmorpho = "{info.morpho_blue.morpho}"\n')
    return path


def _confirmed(path: Path) -> list[tuple[str, str]]:
    """(intent key, tx hash) of every confirmed transaction in the daemon's journal."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(str(k), str(h).lower()) for k, h in db.execute(
            "SELECT intent_key, tx_hash FROM transactions WHERE status = 'confirmed'")]
    finally:
        db.close()


async def _until(condition: Callable[[], bool], what: str, daemon: asyncio.Task[Any],
                 deadline: float) -> None:
    while not condition():
        if daemon.done():
            daemon.result()  # raises what ended it
            pytest.fail(f"the daemon stopped while waiting for {what}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_dropped_connections_during_a_crash_lose_nothing(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = liquidator(devnet)
    for spender in (aave_pool(devnet).address, devnet.info.morpho_blue.morpho):
        for token in tokens(devnet).values():  # approved ahead, as a running keeper would be
            deployer(devnet).send(token.functions.approve(spender, 2**256 - 1), sender=owner)
    built: list[Keeper] = []
    monitors: list[Monitor] = []
    from_config, build_monitor = run_module.keeper_from_config, run_module.build_monitor

    async def keeper_from_config(*args: Any, **kwargs: Any) -> Any:
        keeper, fork = await from_config(*args, **kwargs)
        built.append(keeper)
        return keeper, fork

    def monitor_of(*args: Any, **kwargs: Any) -> Monitor:
        monitors.append(build_monitor(*args, **kwargs))
        return monitors[-1]

    # `keeper run` as it is, with its keeper and monitor seen from here.
    monkeypatch.setattr(run_module, "keeper_from_config", keeper_from_config)
    monkeypatch.setattr(run_module, "build_monitor", monitor_of)
    journal = tmp_path / "journal.sqlite"

    async def scenario() -> None:
        proxy = DroppingProxy(devnet.anvil.host, devnet.anvil.port)
        config = load_config(_config(devnet, tmp_path, await proxy.start()))
        stop = asyncio.Event()
        daemon = asyncio.create_task(run_module.run_daemon(config, stop))
        started = time.monotonic()
        try:
            def prepared() -> bool:
                levels = built[0].prepared if built else None
                return levels is not None and levels.stats.prepared >= 1

            await _until(prepared, "the first preparation", daemon, started + 60)
            keeper = built[0]
            # From now on (a request that fails at start stops `keeper run`, exit 75 for its
            # supervisor): connections idle for 0.3 s are closed, as a server's keep-alive.
            proxy.idle_close = 0.3
            proxy.drop_next(1, ["eth_sendRawTransaction"])  # never reaches the node
            proxy.lose_next(1, ["eth_sendRawTransaction"])  # reaches it; the answer is lost
            proxy.drop_next(2, ["eth_getTransactionReceipt"])
            proxy.drop_next(2)
            price_block = await asyncio.to_thread(crash_in_one_block, devnet)
            crashed = time.monotonic()
            deadline = crashed + TIMEOUT
            await _until(lambda: proxy.armed == 0, "the drops", daemon, deadline)
            # Quiet: the head processed, nothing in flight, two heads in a row sent nothing.
            quiet = 0
            while quiet < 2:
                before = keeper.outcomes.recorded
                head = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
                await _until(lambda: keeper.engine.stats.processed >= head  # noqa: B023
                             and keeper.inflight == 0, "the daemon to settle", daemon, deadline)
                new = keeper.outcomes.since(before)
                quiet = quiet + 1 if all(o.status == "duplicate" for o in new) else 0
                await asyncio.to_thread(devnet.rpc, "evm_mine")
            assert not daemon.done()
            settled = time.monotonic() - crashed
            end = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
            outcomes = keeper.outcomes.recent
            assert outcomes and not [o for o in outcomes if o.status in BAD], [
                (o.key, o.status, o.reason) for o in outcomes if o.status in BAD]
            confirmed = _confirmed(journal)
            keys = [k for k, _ in confirmed]
            assert len(keys) == len(set(keys)), "an intent confirmed twice"
            events = [*await asyncio.to_thread(_liquidations, devnet, price_block, end),
                      *await asyncio.to_thread(_morpho_liquidations, devnet, price_block, end)]
            assert sorted(h for _, h in confirmed) == sorted(_tx(e).lower() for e in events)
            pending, latest = (int(str(devnet.rpc("eth_getTransactionCount", owner, tag)), 16)
                               for tag in ("pending", "latest"))
            assert pending == latest, f"{pending - latest} of our transactions stuck"
            # Once the node answers again, what the crash opened is liquidated: what the last
            # ranking still finds profitable was confirmed already (a key refused as taken).
            last = keeper.engine.stats.last_opportunities
            assert {o.key for o in last} <= set(keys), [o.key for o in last]
            assert monitors[0].breakers.tripped() == []
            print(f"\ndropped {proxy.dropped}, {proxy.idle_closed} idle connections closed; "
                  f"{len(confirmed)} liquidations confirmed, settled {settled:.1f} s after "
                  f"the crash; statuses {sorted({o.status for o in outcomes})}")
        finally:
            stop.set()
            await asyncio.wait_for(daemon, TIMEOUT)
            await proxy.close()

    asyncio.run(scenario())
