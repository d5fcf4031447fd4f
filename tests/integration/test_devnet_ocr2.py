"""The devnet oracle network on a plain anvil: OCR2 median aggregators behind Chainlink's proxy.

A signed report moves the proxy's answer to the report's median and logs NewTransmission and
AnswerUpdated; reports with too few, foreign, repeated or tampered signatures, from a stranger,
or replayed, revert; the pending `transmit` (automine off) decodes to the median the block
then stores; the proxy follows an aggregator switch; deviation and heartbeat decide when a
feed transmits; an SVR feed updates its secondary first and its primary after the cut-off.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest
from eth_typing import HexStr
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from keeper.anvil import Anvil, rpc_call
from keeper.devnet.builder import running_builder
from keeper.devnet.deployer import Deployer, mined_receipt
from keeper.devnet.oracles.contracts import DeployedFeed, deploy_feed, switch_aggregator
from keeper.devnet.oracles.keys import FAULTY, OracleKeys, devnet_oracles
from keeper.devnet.oracles.network import (
    FeedPolicy,
    OcrFeed,
    OracleNetwork,
    SvrFeed,
    observe,
    private_sender,
)
from keeper.devnet.oracles.profile import DEFAULT_ORACLE_FEEDS, deploy_oracle_network
from keeper.devnet.oracles.report import SignedReport, build_report, sign_report
from keeper.devnet.tokens import to_feed_answer
from keeper.errors import DevnetError
from keeper.oracles.transmit import decode_transmit, encode_report, transmit_median

PRICE = 3_012_34567890  # 3012.34567890 USD, 8 decimals
ORACLES = devnet_oracles()


@dataclass
class Chain:
    anvil: Anvil
    w3: Web3
    deployer: Deployer
    feed: DeployedFeed

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc_call(self.anvil.rpc_url, method, params, timeout=30.0)

    def network(self) -> OracleNetwork:
        return OracleNetwork(self.anvil.rpc_url, ORACLES, self.anvil.chain_id)

    def ocr_feed(self, policy: FeedPolicy | None = None) -> OcrFeed:
        return OcrFeed(
            self.feed.aggregator.address, self.feed.config_digest, policy or FeedPolicy()
        )


@pytest.fixture(scope="module")
def chain_module() -> Iterator[Chain]:
    with Anvil() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        deployer = Deployer(w3, w3.eth.accounts[0])
        feed = deploy_feed(deployer, ORACLES, 8, "ETH / USD")
        yield Chain(anvil, w3, deployer, feed)


@pytest.fixture
def chain(chain_module: Chain) -> Iterator[Chain]:
    snapshot = chain_module.rpc("evm_snapshot")
    try:
        yield chain_module
    finally:
        chain_module.rpc("evm_setAutomine", True)
        chain_module.rpc("evm_revert", snapshot)


def settle(chain: Chain) -> None:
    """Wait until anvil has mined every pooled transaction: under automine it may answer
    eth_sendRawTransaction a moment before the block exists."""
    deadline = time.monotonic() + 30
    while int(chain.rpc("txpool_status")["pending"], 16):
        assert time.monotonic() < deadline, "anvil did not mine the pool"
        time.sleep(0.005)


def _report(chain: Chain, price: int, epoch: int, signers: list[OracleKeys]) -> SignedReport:
    report = build_report(observe(price, ORACLES, 1_700_000_000))
    return sign_report(report, chain.feed.config_digest, epoch, 1, signers=signers)


def _revert_reason(chain: Chain, report: SignedReport, sender: str) -> str:
    call = {"from": sender, "to": chain.feed.aggregator.address, "data": report.calldata()}
    with pytest.raises(ContractLogicError) as failure:
        chain.w3.eth.call(call)  # type: ignore[arg-type]
    return str(failure.value)


def test_transmit_moves_the_proxy_to_the_median(chain: Chain) -> None:
    network = chain.network()
    tx_hash = network.update(chain.ocr_feed(), PRICE, 1_700_000_000.0)
    assert tx_hash is not None
    receipt = mined_receipt(chain.w3, HexStr(tx_hash))
    assert receipt["status"] == 1
    round_id, answer, _started, updated, answered_in = (
        chain.feed.proxy.functions.latestRoundData().call()
    )
    observations = sorted(o.value for o in observe(PRICE, ORACLES, 0))
    assert answer == observations[len(observations) // 2] == PRICE
    assert round_id == answered_in == (1 << 64) | 1  # phase 1, aggregator round 1
    assert updated == chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    aggregator = chain.feed.aggregator
    updates = aggregator.events.AnswerUpdated().process_receipt(receipt, errors=DISCARD)
    assert [(u.args.current, u.args.roundId) for u in updates] == [(PRICE, 1)]
    (transmission,) = aggregator.events.NewTransmission().process_receipt(receipt, errors=DISCARD)
    assert transmission.args.answer == PRICE
    assert list(transmission.args.observations) == observations
    assert transmission.args.configDigest == chain.feed.config_digest
    assert transmission.args.epochAndRound == (1 << 8) | 1
    assert chain.feed.proxy.functions.latestAnswer().call() == PRICE


def test_reports_without_a_quorum_of_valid_signatures_revert(chain: Chain) -> None:
    transmitter = ORACLES[0].transmitter
    assert "wrong number of signatures" in _revert_reason(
        chain, _report(chain, PRICE, 1, ORACLES[:FAULTY]), transmitter
    )
    stranger = OracleKeys(index=0, signer_key=keccak(text="not an oracle"), transmitter_key=b"")
    assert "address not authorized to sign" in _revert_reason(
        chain, _report(chain, PRICE, 1, [ORACLES[0], stranger]), transmitter
    )
    assert "non-unique signature" in _revert_reason(
        chain, _report(chain, PRICE, 1, [ORACLES[1], ORACLES[1]]), transmitter
    )
    signed = _report(chain, PRICE, 1, ORACLES[: FAULTY + 1])
    tampered = replace(signed, report=build_report(observe(PRICE * 2, ORACLES, 1_700_000_000)))
    assert "address not authorized to sign" in _revert_reason(chain, tampered, transmitter)
    assert "unauthorized transmitter" in _revert_reason(chain, signed, chain.w3.eth.accounts[0])
    chain.w3.eth.call(
        {"from": transmitter, "to": chain.feed.aggregator.address, "data": signed.calldata()}
    )


def test_the_median_is_taken_on_chain_from_enough_sorted_observations(chain: Chain) -> None:
    """A validly signed report must still be a sound median report: sorted observations
    (the contract takes observations[n / 2]), more than f of them, the stated length."""
    signers = ORACLES[: FAULTY + 1]
    transmitter = ORACLES[0].transmitter

    def signed(report: bytes) -> SignedReport:
        return sign_report(report, chain.feed.config_digest, 1, 1, signers=signers)

    unsorted = encode_report(1, bytes([0, 1, 2, 3]), [PRICE, PRICE - 1, PRICE, PRICE + 1])
    assert "observations not sorted" in _revert_reason(chain, signed(unsorted), transmitter)
    lone = encode_report(1, bytes([0]), [PRICE])  # f = 1: one value could be the faulty one
    assert "too few values to trust median" in _revert_reason(chain, signed(lone), transmitter)
    padded = encode_report(1, bytes([0, 1]), [PRICE, PRICE]) + bytes(32)
    assert "report length mismatch" in _revert_reason(chain, signed(padded), transmitter)
    # three observations: the median is the middle one, wherever the reference price is
    odd = encode_report(1, bytes([2, 0, 1]), [PRICE - 5, PRICE + 3, PRICE + 9])
    call = {
        "from": transmitter,
        "to": chain.feed.aggregator.address,
        "data": signed(odd).calldata(),
    }
    chain.rpc("anvil_impersonateAccount", transmitter)  # its key signs; anvil may send as it
    tx_hash = chain.w3.eth.send_transaction(call)  # type: ignore[arg-type]
    assert mined_receipt(chain.w3, tx_hash)["status"] == 1
    assert chain.feed.proxy.functions.latestAnswer().call() == PRICE + 3


def test_a_replayed_or_older_report_is_invalid(chain: Chain) -> None:
    network = chain.network()
    feed = chain.ocr_feed()
    network.send_public(feed, PRICE, 1_700_000_000.0)
    settle(chain)
    report_invalid = "0x" + keccak(text="ReportInvalid()")[:4].hex()
    for epoch in (feed.epoch, feed.epoch - 1):  # the same (epoch, round), then an older one
        replay = _report(chain, PRICE // 2, epoch, ORACLES[: FAULTY + 1])
        assert report_invalid in _revert_reason(chain, replay, ORACLES[0].transmitter)
    newer = _report(chain, PRICE // 2, feed.epoch + 1, ORACLES[: FAULTY + 1])
    call = {"from": ORACLES[0].transmitter, "to": feed.aggregator, "data": newer.calldata()}
    chain.w3.eth.call(call)  # type: ignore[arg-type]


def test_pending_transmit_decodes_to_the_median_the_block_stores(chain: Chain) -> None:
    chain.rpc("evm_setAutomine", False)
    price = 2_999_00000001
    tx_hash = chain.network().send_public(chain.ocr_feed(), price, 1_700_000_000.0)
    pending = chain.rpc("eth_getTransactionByHash", tx_hash)
    assert pending["blockNumber"] is None  # still in the pool
    decoded = decode_transmit(pending["input"])
    assert transmit_median(pending["input"]) == decoded.median == price
    assert decoded.config_digest == chain.feed.config_digest
    assert (decoded.epoch, decoded.round) == (1, 1)
    assert chain.feed.proxy.functions.latestAnswer().call() == 0  # nothing mined yet
    chain.rpc("evm_mine")
    assert mined_receipt(chain.w3, HexStr(tx_hash))["status"] == 1
    assert chain.feed.proxy.functions.latestAnswer().call() == decoded.median


def test_the_proxy_follows_an_aggregator_switch(chain: Chain) -> None:
    network = chain.network()
    network.send_public(chain.ocr_feed(), PRICE, 1_700_000_000.0)
    settle(chain)
    fresh = deploy_feed(chain.deployer, ORACLES, 8, "ETH / USD")
    successor = OcrFeed(fresh.aggregator.address, fresh.config_digest)
    assert fresh.config_digest != chain.feed.config_digest  # the digest names the contract
    network.send_public(successor, PRICE + 7, 1_700_000_100.0)
    settle(chain)
    assert chain.feed.proxy.functions.latestAnswer().call() == PRICE
    switch_aggregator(chain.deployer, chain.feed.proxy, fresh.aggregator.address)
    assert chain.feed.proxy.functions.aggregator().call() == fresh.aggregator.address
    round_id, answer, *_ = chain.feed.proxy.functions.latestRoundData().call()
    assert (round_id >> 64, round_id & (2**64 - 1), answer) == (2, 1, PRICE + 7)
    # the old phase's rounds stay readable through the proxy
    assert chain.feed.proxy.functions.getRoundData((1 << 64) | 1).call()[1] == PRICE


def test_deviation_and_heartbeat_decide_when_a_feed_transmits(chain: Chain) -> None:
    network = chain.network()
    feed = chain.ocr_feed(FeedPolicy(deviation_bps=50, heartbeat=3600.0))
    start, base = 1_700_000_000.0, 3_000_00000000  # a round price: 0.5 % is exact
    assert network.update(feed, base, start) is not None  # first answer: always
    assert network.update(feed, base * 10_049 // 10_000, start + 10) is None  # 0.49 %
    moved = base * 10_050 // 10_000
    assert network.update(feed, moved, start + 20) is not None  # 0.50 %
    assert network.update(feed, moved + 1, start + 20 + 3599) is None
    assert network.update(feed, moved + 1, start + 20 + 3600) is not None  # heartbeat
    settle(chain)
    assert chain.feed.aggregator.functions.latestRound().call() == 3
    assert chain.feed.proxy.functions.latestAnswer().call() == moved + 1


def test_svr_feed_updates_the_secondary_first_and_the_primary_after_the_cutoff(
    chain: Chain,
) -> None:
    network = chain.network()
    secondary = deploy_feed(chain.deployer, ORACLES, 8, "ETH / USD (SVR)")
    # The builder's private endpoint is another component; here the private copy goes
    # straight to anvil's pool, which is what the builder does with it once it wins.
    private = chain.network().rpc
    svr = SvrFeed(
        network,
        primary=chain.ocr_feed(),
        secondary=OcrFeed(secondary.aggregator.address, secondary.config_digest),
        send_private=lambda raw: str(private("eth_sendRawTransaction", raw)),
        cutoff=2.0,
    )
    start = 1_700_000_000.0
    update = svr.update(PRICE, start)
    assert update is not None and update.public_hash is None
    settle(chain)
    assert secondary.proxy.functions.latestAnswer().call() == PRICE
    assert chain.feed.proxy.functions.latestAnswer().call() == 0
    assert svr.tick(start + 1.9) == []
    (sent,) = svr.tick(start + 2.0)
    assert sent is update and update.public_hash is not None
    settle(chain)
    public = chain.rpc("eth_getTransactionByHash", update.public_hash)
    assert transmit_median(public["input"]) == PRICE
    assert chain.feed.proxy.functions.latestAnswer().call() == PRICE
    assert svr.update(PRICE + 1, start + 3) is None  # within the deviation threshold


def test_profile_deploys_every_token_feed_and_serves_a_price_source(chain: Chain) -> None:
    private = chain.network().rpc
    devnet = deploy_oracle_network(
        chain.deployer,
        chain.anvil.rpc_url,
        send_private=lambda raw: str(private("eth_sendRawTransaction", raw)),
        cutoff=0.0,
    )
    settle(chain)
    described = devnet.describe()
    assert set(described["feeds"]) == {s.symbol for s in DEFAULT_ORACLE_FEEDS}
    assert described["oracles"]["signers"] == [o.signer for o in ORACLES]

    def answer(proxy: str) -> int:
        address = Web3.to_checksum_address(proxy)
        contract = chain.w3.eth.contract(address=address, abi=chain.feed.proxy.abi)
        return int(contract.functions.latestAnswer().call())

    for spec in DEFAULT_ORACLE_FEEDS:  # first prices, on both SVR aggregators
        entry = described["feeds"][spec.symbol]
        assert answer(entry["proxy"]) == to_feed_answer(spec.usd_price)
        assert ("secondary_proxy" in entry) is spec.svr
        read = devnet.proxy_read_by_protocol(spec.symbol)
        assert read == entry.get("secondary_proxy", entry["proxy"])
    crashed = {"WETH": Decimal("1500"), "WBTC": Decimal("30000"), "USDC": Decimal("0.99")}
    asyncio.run(devnet.serve(lambda: crashed, interval=0.0, rounds=1))
    settle(chain)
    weth = described["feeds"]["WETH"]
    assert (
        answer(weth["secondary_proxy"]) == answer(weth["proxy"]) == to_feed_answer(crashed["WETH"])
    )
    assert answer(described["feeds"]["USDC"]["proxy"]) == to_feed_answer(crashed["USDC"])
    wbtc_address = Web3.to_checksum_address(described["feeds"]["WBTC"]["aggregator"])
    wbtc = chain.w3.eth.contract(address=wbtc_address, abi=chain.feed.aggregator.abi)
    assert wbtc.functions.latestRound().call() == 1  # no deviation, no heartbeat: not sent


def test_profile_refuses_an_svr_feed_without_a_private_path(chain: Chain) -> None:
    with pytest.raises(DevnetError, match="private sender"):
        deploy_oracle_network(chain.deployer, chain.anvil.rpc_url)


def test_svr_update_through_the_builder_is_hinted_with_its_calldata_and_mined_first() -> None:
    """The private copy goes to the devnet builder's eth_sendPrivateTransaction (signed
    header), is announced on its hint stream with calldata that decodes to the price, and
    lands in the next block on the secondary only; the public copy reaches the primary
    through the builder's public pool after the cut-off."""
    with running_builder(interval=0) as (anvil, builder):
        anvil.rpc("evm_setAutomine", True)  # set-up blocks; the builder mines the rest
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        deployer = Deployer(w3, w3.eth.accounts[0])
        primary = deploy_feed(deployer, ORACLES, 8, "ETH / USD")
        secondary = deploy_feed(deployer, ORACLES, 8, "ETH / USD (SVR)")
        anvil.rpc("evm_setAutomine", False)
        url = builder.urls[0]
        network = OracleNetwork(url, ORACLES, anvil.chain_id)
        svr = SvrFeed(
            network,
            primary=OcrFeed(primary.aggregator.address, primary.config_digest),
            secondary=OcrFeed(secondary.aggregator.address, secondary.config_digest),
            send_private=private_sender(url),
            cutoff=2.0,
        )
        stream = urllib.request.urlopen(builder.events_url, timeout=10)
        assert stream.readline().startswith(b":ping")
        update = svr.update(PRICE, 1_700_000_000.0)
        assert update is not None
        hint = _next_event(stream)
        stream.close()
        assert hint["hash"] == update.private_hash
        (shown,) = hint["txs"]
        assert shown["to"] == secondary.aggregator.address.lower()
        assert transmit_median(shown["callData"]) == PRICE
        assert rpc_call(url, "builder_buildBlock")["mismatch"] == ""
        receipt = rpc_call(url, "eth_getTransactionReceipt", [update.private_hash])
        assert receipt is not None and int(receipt["status"], 16) == 1
        assert secondary.proxy.functions.latestAnswer().call() == PRICE
        assert primary.proxy.functions.latestAnswer().call() == 0
        (sent,) = svr.tick(1_700_000_002.0)
        assert sent.public_hash is not None
        assert rpc_call(url, "builder_buildBlock")["mismatch"] == ""
        public = rpc_call(url, "eth_getTransactionReceipt", [sent.public_hash])
        assert public is not None and int(public["status"], 16) == 1
        assert int(public["blockNumber"], 16) == int(receipt["blockNumber"], 16) + 1
        assert primary.proxy.functions.latestAnswer().call() == PRICE


def _next_event(stream: Any) -> dict[str, Any]:
    while True:
        line = stream.readline()
        assert line, "the hint stream ended"
        if line.startswith(b"data: "):
            event = json.loads(line[len(b"data: ") :])
            assert isinstance(event, dict)
            return event
