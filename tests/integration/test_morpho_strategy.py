"""The Morpho Blue strategy on the devnet: sync, candidates after a price drop, exact seize.

Synced at the head, the strategy tracks every seeded Morpho borrower and offers nothing (all
healthy). After WETH falls, applying that block's logs (the feed's AnswerUpdated only) makes
candidates appear for exactly the positions whose `liquidate` the chain accepts at that
block; sending a candidate's built call pays the liquidator exactly `seize(repay)` of
collateral and pulls exactly `actual_repay(repay)` <= repay of the loan token.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from eth_typing import HexStr
from eth_utils.crypto import keccak
from web3 import Web3
from web3.logs import DISCARD

from keeper.chain.http import HttpRpc
from keeper.devnet.morpho import morpho_abi
from keeper.strategy import StrategyContext, StrategyFactory, missing_members
from keeper.types import BlockRef, Candidate
from strategies.morpho_blue import STRATEGY, MorphoBlueConfig, MorphoBlueStrategy
from strategies.morpho_blue import events as ev
from strategies.morpho_blue.market import OracleModel
from strategies.morpho_blue.strategy import GAS_LIMIT, morpho_data
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import (
    MAX_UINT,
    SPECS,
    WAD,
    deployer,
    liquidator,
    set_price,
    tokens,
)
from tests.integration.test_morpho_parity import (
    block_ref,
    follow,
    liquidation_succeeds,
    make_strategy,
    morpho,
)

USERS = {p.address.lower() for p in seeded_borrowers("morpho_blue")}


def _signature(item: dict[str, Any]) -> str:
    def kind(p: dict[str, Any]) -> str:
        if p["type"] == "tuple":
            return "(" + ",".join(kind(c) for c in p["components"]) + ")"
        return str(p["type"])

    return f"{item['name']}({','.join(kind(i) for i in item['inputs'])})"


def test_topics_match_the_compiled_eventslib_abi() -> None:
    abi = {item["name"]: item for item in morpho_abi() if item["type"] == "event"}
    for name, expected in {
        "CreateMarket": ev.TOPIC_CREATE_MARKET, "SetFee": ev.TOPIC_SET_FEE,
        "Supply": ev.TOPIC_SUPPLY, "Withdraw": ev.TOPIC_WITHDRAW, "Borrow": ev.TOPIC_BORROW,
        "Repay": ev.TOPIC_REPAY, "SupplyCollateral": ev.TOPIC_SUPPLY_COLLATERAL,
        "WithdrawCollateral": ev.TOPIC_WITHDRAW_COLLATERAL, "Liquidate": ev.TOPIC_LIQUIDATE,
        "AccrueInterest": ev.TOPIC_ACCRUE_INTEREST,
    }.items():
        assert "0x" + keccak(text=_signature(abi[name])).hex() == expected, name


async def test_sync_candidates_and_exact_seize(devnet: Devnet) -> None:
    keeper = liquidator(devnet)
    contract_ = morpho(devnet)
    usdc = tokens(devnet)["USDC"]
    s = make_strategy(devnet)
    assert missing_members(s) == []
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        start = await block_ref(rpc, "latest")
        await s.sync(rpc, start)
        assert s.synced == start
        borrowers = {p.account for p in s.positions(start) if p.debt_value > 0}
        assert borrowers == USERS
        assert not list(s.candidates(start))
        assert {f.urgent for f in s.subscriptions()} == {True, False}
        feeds = {a for f in s.subscriptions() if f.urgent for a in f.addresses}
        assert feeds == {devnet.info.feeds[k].lower() for k in ("WETH", "WBTC", "USDC")}

        # The liquidator approves Morpho; then WETH falls 7 %.
        deployer(devnet).send(usdc.functions.approve(contract_.address, MAX_UINT), sender=keeper)
        await follow(rpc, s)
        set_price(devnet, "WETH", SPECS["WETH"].usd_price * Decimal("0.93"))
        drop = await block_ref(rpc, "latest")
        events = [e for f in s.subscriptions() for e in await rpc.get_logs(f, drop.number,
                                                                          drop.number)]
        assert events and all(e.topic0 == ev.TOPIC_ANSWER_UPDATED for e in events)
        s.apply(events, drop)
        s.apply(events, start)  # at or below the synced block: ignored
        found = list(s.candidates(drop))
        pairs = sorted((i, u) for i, b in s.book.positions.items() for u, p in b.items()
                       if p.borrow_shares)
        chain = liquidation_succeeds(devnet, s, pairs, drop.number)
        weak = {p for p, ok in chain.items() if ok}
        assert weak and {(morpho_data(c).market_id, c.account) for c in found} == weak
        for c in found:
            assert c.health_factor < WAD and c.spender == s.morpho
            assert c.collateral == devnet.info.tokens["WETH"].address.lower()
            assert c.debt == usdc.address.lower() and c.debt_symbol == "USDC"
            assert c.key.startswith(f"{devnet.info.chain_id}:morpho_blue:{c.account}:")
            assert c.max_repay > 0 and c.seize(c.max_repay) == morpho_data(c).max_seize
            assert c.seize(c.max_repay * 10) == c.seize(c.max_repay)  # capped
            assert c.actual_repay(c.max_repay) <= c.max_repay
        assert len({c.key for c in found}) == len(found)
        # Interest does not change a key; a price move does.
        later = BlockRef(drop.number + 1, "0x", drop.hash, drop.timestamp + 3600)
        assert {c.key for c in s.candidates(later)} >= {c.key for c in found}

        # Liquidate a third of the biggest, then all of another, each in the next block.
        ordered = sorted(found, key=lambda c: c.max_repay)
        first = ordered[-1]
        gas = await _liquidate(devnet, rpc, s, first.account, lambda c: c.max_repay // 3)
        assert first.key not in {c.key for c in s.candidates(await follow(rpc, s))}
        gas2 = await _liquidate(devnet, rpc, s, ordered[0].account, lambda c: c.max_repay)
        assert max(gas, gas2) < GAS_LIMIT
        head = await follow(rpc, s)
        remaining = {(morpho_data(c).market_id, c.account) for c in s.candidates(head)}
        pairs = sorted((i, u) for i, b in s.book.positions.items() for u, p in b.items()
                       if p.borrow_shares)
        chain = liquidation_succeeds(devnet, s, pairs, head.number)
        assert remaining == {p for p, ok in chain.items() if ok}


async def _liquidate(
    devnet: Devnet, rpc: HttpRpc, s: MorphoBlueStrategy, account: str, size: Any
) -> int:
    """Send the candidate's built call for `size(candidate)` at a pinned time; check the
    balance deltas equal the mirrors; returns the gas used."""
    w3, keeper = devnet.w3, liquidator(devnet)
    head = await follow(rpc, s)
    when = head.timestamp + 12
    pending = BlockRef(head.number + 1, "0x", head.hash, when)
    candidate: Candidate = next(c for c in s.candidates(pending) if c.account == account)
    repay = size(candidate)
    call = s.build(candidate, repay)
    erc20 = {t.address.lower(): t for t in tokens(devnet).values()}
    collateral, debt = erc20[candidate.collateral], erc20[candidate.debt]
    before = (collateral.functions.balanceOf(keeper).call(),
              debt.functions.balanceOf(keeper).call())
    tx: dict[str, Any] = {"from": keeper, "to": Web3.to_checksum_address(call.to),
                          "data": HexStr(call.data)}
    # Simulated in the pending block at the pinned time, as execution simulates before sending.
    devnet.rpc("evm_setNextBlockTimestamp", when)
    estimate = int(str(devnet.rpc("eth_estimateGas", tx, "pending")), 16)
    assert estimate < candidate.gas_limit
    sent = w3.eth.send_transaction({**tx, "gas": candidate.gas_limit})  # type: ignore[typeddict-item]
    receipt = w3.eth.wait_for_transaction_receipt(sent)
    assert receipt["status"] == 1
    assert w3.eth.get_block(receipt["blockNumber"])["timestamp"] == when
    received = collateral.functions.balanceOf(keeper).call() - before[0]
    paid = before[1] - debt.functions.balanceOf(keeper).call()
    assert received == candidate.seize(repay) > 0
    assert paid == candidate.actual_repay(repay) <= repay
    (event,) = morpho(devnet).events.Liquidate().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["seizedAssets"] == received and event["args"]["repaidAssets"] == paid
    return int(receipt["gasUsed"])


async def test_unmirrored_markets_wait_for_one_batched_refresh(devnet: Devnet) -> None:
    """With the oracle and IRM treated as unknown, a market offers candidates only after
    `refresh` read its price and rate at that block, in one request."""
    s = make_strategy(devnet)
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        await s.sync(rpc, await block_ref(rpc, "latest"))
        set_price(devnet, "WETH", SPECS["WETH"].usd_price * Decimal("0.93"))
        head = await follow(rpc, s)
        mirrored = {c.key for c in s.candidates(head)}
        assert mirrored
        book = s.book
        book.oracles = {o: OracleModel(o, None) for o in book.oracles}
        book.irms = {a: replace(m, kind="read") if m.kind != "none" else m
                     for a, m in book.irms.items()}
        later = BlockRef(head.number, head.hash, head.parent_hash, head.timestamp)
        assert set(s.stale_markets(later)) == set(book.params)
        assert not list(s.candidates(later))
        sent = rpc.requests_sent
        await s.refresh(rpc, later)
        assert rpc.requests_sent - sent == 1
        assert not s.stale_markets(later)
        assert {c.key for c in s.candidates(later)} == mirrored
        # One block later the reads are stale again.
        assert not list(s.candidates(replace(later, number=later.number + 1)))


def test_the_plugin_is_a_strategy_factory() -> None:
    factory: StrategyFactory = STRATEGY
    assert isinstance(STRATEGY, StrategyFactory) and factory.name == "morpho_blue"
    config = MorphoBlueConfig(morpho="0x" + "11" * 20, markets=["0x" + "AB" * 32])
    created = STRATEGY.create(config, StrategyContext(31337, "0x" + "22" * 20))
    assert isinstance(created, MorphoBlueStrategy) and missing_members(created) == []
    assert created.allow == {"0x" + "ab" * 32}
