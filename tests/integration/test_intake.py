"""The intake before the block, on the devnet whose Aave market the oracle network prices
(`keeper devnet --builder --oracles`): the hint stream announces the SVR feed's private
update with the answer the block then stores; the pool poller and the pending-transaction
subscription decode a public `transmit` while it is still pending.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from keeper.anvil import Anvil, rpc_call
from keeper.cli import main
from keeper.config import load_config
from keeper.devnet.builder import BuilderThread, restart_for_builder
from keeper.devnet.info import DevnetInfo
from keeper.devnet.oracles.market import attach, post_round, start_oracle_devnet
from keeper.devnet.tokens import to_feed_answer
from keeper.intake.answers import PendingAnswer
from keeper.intake.sources import AnswerSource, HintStream, PendingSubscription, PoolPoller
from tests.conftest import wait_for

KEEPER = Path(sys.executable).parent / "keeper"
LATEST_ANSWER = "0x50d25bcd"
AAVE_GET_ASSET_PRICE = "0xb3596f07"


@dataclass
class OracleBuilder:
    anvil: Anvil
    builder: BuilderThread
    info: DevnetInfo

    @property
    def url(self) -> str:
        return self.builder.urls[0]

    def build(self) -> None:
        rpc_call(self.url, "builder_buildBlock", (), timeout=30)


@pytest.fixture(scope="module")
def oracle_builder() -> Iterator[OracleBuilder]:
    anvil, info, _cached = start_oracle_devnet()
    anvil = restart_for_builder(anvil)
    try:
        thread = BuilderThread(anvil.rpc_url, interval=0).start()
        try:
            url = thread.urls[0]
            yield OracleBuilder(anvil, thread, info.model_copy(
                update={"rpc_url": url, "ws_url": anvil.ws_url}))
        finally:
            thread.stop()
    finally:
        anvil.stop()


async def _hear(sources: Sequence[AnswerSource], ready: Callable[[], bool],
                post: Callable[[], object], heard: list[PendingAnswer], want: int) -> None:
    """Run `sources`; once `ready`, `post` (in a thread); until `want` answers are heard."""
    stop = asyncio.Event()
    running = [asyncio.ensure_future(s.run(stop)) for s in sources]
    try:
        deadline = time.monotonic() + 20
        while not ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(post)
        while len(heard) < want and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 10)


def test_the_market_reads_the_oracle_network(oracle_builder: OracleBuilder) -> None:
    """The v3.0 market's AaveOracle answers WETH from the SVR feed's secondary proxy."""
    network = oracle_builder.info.oracle_network
    assert network is not None and network.markets == ["aave_v3"]
    weth = network.feeds["WETH"]
    assert weth.secondary_aggregator is not None
    assert weth.read_by_market == weth.secondary_aggregator
    devnet = attach(oracle_builder.info, oracle_builder.url)
    post_round(devnet, "WETH", Decimal("1234.5"))
    oracle_builder.build()
    token = oracle_builder.info.tokens["WETH"].address[2:].lower().rjust(64, "0")
    price = rpc_call(oracle_builder.url, "eth_call", (
        {"to": oracle_builder.info.aave_v3.oracle, "data": AAVE_GET_ASSET_PRICE + token},
        "latest"))
    assert int(str(price), 16) == to_feed_answer(Decimal("1234.5"))


def test_hint_stream_decodes_the_svr_update(oracle_builder: OracleBuilder) -> None:
    network = oracle_builder.info.oracle_network
    assert network is not None
    feed = network.feeds["WETH"].read_by_market
    heard: list[PendingAnswer] = []
    stream = HintStream(oracle_builder.builder.events_url, [feed], heard.append)
    devnet = attach(oracle_builder.info, oracle_builder.url)
    sent: list[str] = []
    asyncio.run(_hear([stream], lambda: stream.connected,
                      lambda: sent.append(post_round(devnet, "WETH", Decimal("1777.77"))),
                      heard, 1))
    assert len(heard) == 1
    answer = heard[0]
    assert (answer.feed, answer.tx_hash, answer.origin) == (feed.lower(), sent[0], "hint")
    assert answer.answer == to_feed_answer(Decimal("1777.77"))
    oracle_builder.build()  # the block stores what the hint said
    stored = rpc_call(oracle_builder.url, "eth_call", ({"to": feed, "data": LATEST_ANSWER},
                                                        "latest"))
    assert int(str(stored), 16) == answer.answer


def test_pool_poller_decodes_a_pending_transmit(oracle_builder: OracleBuilder) -> None:
    network = oracle_builder.info.oracle_network
    assert network is not None
    feed = network.feeds["WBTC"].aggregator
    heard: list[PendingAnswer] = []
    poller = PoolPoller(oracle_builder.url, [feed], heard.append, interval=0.005)
    devnet = attach(oracle_builder.info, oracle_builder.url)
    sent: list[str] = []
    asyncio.run(_hear([poller], lambda: poller.polls > 0,
                      lambda: sent.append(post_round(devnet, "WBTC", Decimal("25555"))),
                      heard, 1))
    assert [(a.feed, a.tx_hash, a.origin) for a in heard] == [(feed.lower(), sent[0], "pool")]
    assert heard[0].answer == to_feed_answer(Decimal("25555"))
    pending = rpc_call(oracle_builder.url, "eth_getTransactionReceipt", (sent[0],))
    assert pending is None  # heard before it was mined
    oracle_builder.build()
    stored = rpc_call(oracle_builder.url, "eth_call", ({"to": feed, "data": LATEST_ANSWER},
                                                        "latest"))
    assert int(str(stored), 16) == heard[0].answer


def test_pending_subscription_with_full_transactions(oracle_builder: OracleBuilder) -> None:
    """`eth_subscribe newPendingTransactions true` on a node that has the pool (anvil,
    reached directly: its own pool, mining off). The last test on the module's devnet: the
    transaction stays in anvil's pool, which the builder never plans for."""
    network = oracle_builder.info.oracle_network
    assert network is not None
    feed = network.feeds["DAI"].aggregator
    heard: list[PendingAnswer] = []
    subscription = PendingSubscription(oracle_builder.anvil.ws_url, [feed], heard.append)
    devnet = attach(oracle_builder.info, oracle_builder.anvil.rpc_url)
    sent: list[str] = []
    asyncio.run(_hear([subscription], lambda: subscription.socket.connected,
                      lambda: sent.append(post_round(devnet, "DAI", Decimal("0.97"))),
                      heard, 1))
    assert [(a.feed, a.tx_hash, a.origin) for a in heard] == [(feed.lower(), sent[0], "pool")]
    assert heard[0].answer == to_feed_answer(Decimal("0.97"))


def test_devnet_cli_oracles_and_price(tmp_path: Path) -> None:
    """`keeper devnet --builder --oracles` as a user runs it, and `keeper devnet price`
    moving the SVR feed: privately first, publicly after the cut-off, both mined."""
    out = tmp_path / "devnet.json"
    process = subprocess.Popen(
        [str(KEEPER), "devnet", "--builder", "--oracles", "--builder-interval", "0.2",
         "--port", "0", "--out", str(out), "--write-config", str(tmp_path / "keeper.toml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(out.exists, timeout=90, what="devnet.json")
        info = DevnetInfo.read(out)
        assert info.oracle_network is not None
        # Its config answers the network's updates with backruns (docs/auction.md).
        wait_for((tmp_path / "keeper.toml").exists, timeout=10, what="keeper.toml")
        config = load_config(tmp_path / "keeper.toml")
        assert config.execution.submitter == "bundle"
        assert config.intake.enabled and config.intake.hint_urls == [info.rpc_url + "/events"]
        prepared = {f.address.lower() for f in config.execution.feeds}
        assert info.oracle_network.feeds["WETH"].read_by_market.lower() in prepared
        result = CliRunner().invoke(main, ["devnet", "price", "WETH", "1500",
                                           "--devnet-file", str(out)])
        assert result.exit_code == 0, result.output
        assert "WETH/USD = 1500: ocr2 in block" in result.output
        assert "ocr2 public in block" in result.output
        weth = info.oracle_network.feeds["WETH"]
        for aggregator in (weth.aggregator, weth.read_by_market):
            stored = rpc_call(info.rpc_url, "eth_call", (
                {"to": aggregator, "data": LATEST_ANSWER}, "latest"))
            assert int(str(stored), 16) == to_feed_answer(Decimal(1500))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_oracles_need_the_builder() -> None:
    result = CliRunner().invoke(main, ["devnet", "--oracles"])
    assert result.exit_code != 0
    assert "--oracles needs --builder" in result.output
