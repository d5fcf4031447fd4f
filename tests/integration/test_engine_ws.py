"""The engine's WebSocket intake on the devnet: feed logs start the work, drops are survived.

The socket runs through a TCP proxy the test can cut, so a real drop (the node's side
still up) is made without touching anvil. While the socket is down and refused, prices
move over several blocks; after the reconnect the engine must have applied every one of
those blocks (backfilled by number) and its book must agree with the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

from web3 import Web3

from keeper.chain.ws import WsSubscriptions
from keeper.demo import build_keeper
from keeper.devnet.tokens import to_feed_answer
from keeper.execution.journal import Journal
from keeper.wiring import Keeper
from strategies.aave_v3 import AaveV3Strategy
from tests.conftest import Devnet
from tests.integration.helpers import SPECS, feeds

TIMEOUT = 30.0


class CuttableProxy:
    """Forwards TCP to `target`; `cut()` drops every connection and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.open = True
        self.accepted = 0
        self._pipes: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._pipes |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pipes -= {writer, up_writer}

    def cut(self) -> None:
        self.open = False
        for pipe in list(self._pipes):
            pipe.close()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _until(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _post_weth(devnet: Devnet, usd: Decimal) -> int:
    feed = feeds(devnet)["WETH"]
    owner = Web3.to_checksum_address(devnet.info.accounts.deployer)
    tx = feed.functions.updateAnswer(to_feed_answer(usd)).transact({"from": owner})
    return int(devnet.w3.eth.wait_for_transaction_receipt(tx)["blockNumber"])


def _weth_price(engine: Keeper, devnet: Devnet) -> int:
    strategy = next(s for s in engine.engine.strategies if isinstance(s, AaveV3Strategy))
    weth = devnet.info.tokens["WETH"].address.lower()
    return next(r.price for r in strategy.book.market.reserves if r.asset == weth)


async def test_feed_log_drives_the_engine_and_dropped_sockets_are_backfilled(
    devnet: Devnet, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    parsed = urlparse(devnet.info.ws_url)
    proxy = CuttableProxy(parsed.hostname or "127.0.0.1", parsed.port or 80)
    ws = WsSubscriptions(await proxy.start(), backoff=(0.05, 0.2))
    # With the socket up, nothing but the socket may drive it.
    engine = await build_keeper(devnet.info, journal, send=False, ws=ws, poll_interval=3600.0)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    weth = SPECS["WETH"].usd_price
    try:
        await _until(lambda: ws.connected, "the socket to subscribe")
        block = await asyncio.to_thread(_post_weth, devnet, weth * Decimal("0.99"))
        await _until(lambda: engine.engine.stats.processed >= block, "the price block")
        assert engine.follower.stats.urgent_logs >= 1
        assert _weth_price(engine, devnet) == to_feed_answer(weth * Decimal("0.99"))

        # Three drops in a row, with prices moving while each lasts.
        for round_, factors in enumerate((("0.98", "0.97", "0.96"), ("0.95", "0.94"),
                                          ("0.93",))):
            proxy.cut()
            await _until(lambda: not ws.connected, "the socket to drop")
            missed = [await asyncio.to_thread(_post_weth, devnet, weth * Decimal(f))
                      for f in factors]
            blocks_before = engine.engine.stats.blocks
            proxy.restore()
            last = missed[-1]
            await _until(lambda: engine.engine.stats.processed >= last, "the backfill")  # noqa: B023
            assert ws.connects >= round_ + 2
            assert engine.engine.stats.blocks - blocks_before >= len(missed)
            assert _weth_price(engine, devnet) == to_feed_answer(weth * Decimal(factors[-1]))
        # After the last reconnect the socket drives it again: a new price by push alone.
        block = await asyncio.to_thread(_post_weth, devnet, weth * Decimal("0.92"))
        await _until(lambda: engine.engine.stats.processed >= block, "a pushed block")
        assert _weth_price(engine, devnet) == to_feed_answer(weth * Decimal("0.92"))
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        await proxy.close()
        await engine.aclose()
        journal.close()
