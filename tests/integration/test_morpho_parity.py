"""PARITY: the Morpho Blue book, accrued locally, equals the chain bit for bit.

The strategy syncs once, then follows the devnet block by block. At each checkpoint, every
market's `accrueInterest` is sent in ONE block after a time jump (an hour to a year); the
market struct the chain stores after it must equal the strategy's local accrual (IrmMock's
rate, wTaylorCompounded, the fee shares) to that block's timestamp, every position must
equal the book's, and for EVERY position (the 90 seeded borrowers and this test's own) the
verdict of Morpho._isHealthy must match whether `liquidate` succeeds at that block. Price
drops make some positions unhealthy; a fee, repays, withdrawals, a partial liquidation and
one that exhausts the collateral (bad debt) go through the real contracts in between.
"""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from typing import Any

from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from keeper.chain.http import HttpRpc
from keeper.devnet.morpho import market_params, morpho_abi
from keeper.strategy import StrategyContext
from keeper.types import BlockRef, Event
from strategies.morpho_blue import STRATEGY, MorphoBlueConfig, MorphoBlueStrategy, math
from strategies.morpho_blue import market as mm
from strategies.morpho_blue.math import MarketState, PositionState
from strategies.morpho_blue.strategy import morpho_data
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import (
    MAX_UINT,
    SPECS,
    WAD,
    contract,
    deployer,
    fresh_accounts,
    liquidator,
    set_price,
    tokens,
)

PLANS = seeded_borrowers("morpho_blue")
HOUR, DAY = 3600, 86_400

# ------------------------------------------------------------------------------ helpers
# (shared with test_morpho_strategy.py)


def morpho(devnet: Devnet) -> Contract:
    return contract(devnet, morpho_abi(), devnet.info.morpho_blue.morpho)


def make_strategy(devnet: Devnet, **config: Any) -> MorphoBlueStrategy:
    section = MorphoBlueConfig(morpho=devnet.info.morpho_blue.morpho, **config)
    return STRATEGY.create(section, StrategyContext(devnet.info.chain_id, liquidator(devnet)))


async def block_ref(rpc: HttpRpc, number: int | str) -> BlockRef:
    tag = hex(number) if isinstance(number, int) else number
    head = await rpc.call("eth_getBlockByNumber", [tag, False])
    return BlockRef(int(head["number"], 16), head["hash"], head["parentHash"],
                    int(head["timestamp"], 16))


async def follow(rpc: HttpRpc, s: MorphoBlueStrategy) -> BlockRef:
    """Apply every block after the strategy's last one up to the head; returns the head."""
    last = s.book.block
    assert last is not None
    head = await block_ref(rpc, "latest")
    if head.number <= last.number:
        return head
    events: list[Event] = []
    for f in s.subscriptions():
        events += await rpc.get_logs(f, last.number + 1, head.number)
    numbers = range(last.number + 1, head.number + 1)
    raws = await rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    for raw in raws:
        ref = BlockRef(int(raw["number"], 16), raw["hash"], raw["parentHash"],
                       int(raw["timestamp"], 16))
        s.apply([e for e in events if e.block_number == ref.number], ref)
    return head


def raw_batch(url: str, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """A JSON-RPC batch whose answers keep their `error` (HttpRpc.batch fails on one revert)."""
    body = json.dumps([
        {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
    ]).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        replies: list[dict[str, Any]] = json.loads(answer.read())
    return sorted(replies, key=lambda r: int(r["id"]))


def liquidation_succeeds(
    devnet: Devnet, s: MorphoBlueStrategy, pairs: list[tuple[str, str]], block: int
) -> dict[tuple[str, str], bool]:
    """Whether `liquidate(params, borrower, 0, 1 share, "")` from the approved, funded
    liquidator succeeds at `block` (eth_call), for each (market id, borrower)."""
    calls: list[tuple[str, list[Any]]] = [
        ("eth_call", [{"from": liquidator(devnet), "to": s.morpho,
                       "data": mm.liquidate_data(s.book.params[i], u, 0, 1)}, hex(block)])
        for i, u in pairs
    ]
    out = {}
    for pair, reply in zip(pairs, raw_batch(devnet.info.rpc_url, calls), strict=True):
        if "error" in reply:  # the only acceptable reason to fail
            assert "position is healthy" in json.dumps(reply["error"]), reply["error"]
        out[pair] = "error" not in reply
    return out


async def chain_state(
    rpc: HttpRpc, s: MorphoBlueStrategy, pairs: list[tuple[str, str]], block: int
) -> tuple[dict[str, MarketState], dict[tuple[str, str], PositionState], dict[str, int]]:
    """market(id), position(id, user) and each oracle's price() at `block`, in one batch."""
    ids = list(s.book.params)
    calls = [("eth_call", [{"to": s.morpho, "data": mm.MARKET.data(bytes.fromhex(i[2:]))},
                           hex(block)]) for i in ids]
    calls += [("eth_call", [{"to": s.morpho, "data": mm.POSITION.data(bytes.fromhex(i[2:]), u)},
                            hex(block)]) for i, u in pairs]
    calls += [("eth_call", [{"to": s.book.params[i].oracle, "data": mm.PRICE.data()},
                            hex(block)]) for i in ids]
    answers = await rpc.batch(calls)
    markets = {i: MarketState(*mm.MARKET.decode(a)) for i, a in zip(ids, answers, strict=False)}
    positions = {
        p: PositionState(*mm.POSITION.decode(a))
        for p, a in zip(pairs, answers[len(ids):], strict=False)
    }
    prices = {i: mm.PRICE.decode(a)[0]
              for i, a in zip(ids, answers[len(ids) + len(pairs):], strict=True)}
    return markets, positions, prices


def borrow_pairs(s: MorphoBlueStrategy) -> list[tuple[str, str]]:
    return sorted((i, u) for i, book in s.book.positions.items()
                  for u, p in book.items() if p.borrow_shares > 0)


async def checkpoint(
    devnet: Devnet, rpc: HttpRpc, s: MorphoBlueStrategy, jump: int, *, keep: bool
) -> dict[tuple[str, str], bool]:
    """Accrue every market on chain in one block `jump` seconds later and compare; returns
    each position's local verdict (True: liquidatable). Reverted unless `keep` (then the
    strategy applies the AccrueInterest logs and its stored markets must equal the chain's)."""
    w3 = devnet.w3
    head = await follow(rpc, s)
    contract_ = morpho(devnet)
    sender = deployer(devnet).sender
    snapshot = None if keep else devnet.rpc("evm_snapshot")
    devnet.rpc("evm_setAutomine", False)
    try:
        hashes = [
            w3.eth.send_transaction({
                "from": sender, "to": contract_.address, "gas": 300_000,
                "data": HexStr(contract_.encode_abi(
                    "accrueInterest", args=[_params(s, i)])),
            })
            for i in s.book.params
        ]
        devnet.rpc("evm_increaseTime", jump)
        devnet.rpc("evm_mine")
    finally:
        devnet.rpc("evm_setAutomine", True)
    assert all(w3.eth.get_transaction_receipt(h)["status"] == 1 for h in hashes)
    block = await block_ref(rpc, "latest")
    assert block.number == head.number + 1 and block.timestamp >= head.timestamp + jump
    pairs = borrow_pairs(s)
    markets, positions, prices = await chain_state(rpc, s, pairs, block.number)
    verdicts: dict[tuple[str, str], bool] = {}
    for i in s.book.params:
        assert s.price(i, block) == prices[i], "mirrored FeedOracle.price != price()"
        assert s.accrued(i, block) == markets[i], f"market {i} after {jump}s"
    for i, u in pairs:
        local, accrued = s.book.position(i, u), markets[i]
        assert local == positions[(i, u)], f"{u} in {i}"
        borrowed = math.borrowed_assets(local, accrued)
        assert borrowed == math.to_assets_up(positions[(i, u)].borrow_shares,
                                             accrued.total_borrow_assets,
                                             accrued.total_borrow_shares)
        verdicts[(i, u)] = not math.is_healthy(local, accrued, prices[i],
                                               s.book.params[i].lltv)
    assert liquidation_succeeds(devnet, s, pairs, block.number) == verdicts
    candidates = {(morpho_data(c).market_id, c.account) for c in s.candidates(block)}
    assert candidates == {p for p, bad in verdicts.items() if bad}
    if keep:
        await follow(rpc, s)
        assert s.book.markets == markets
    else:
        assert devnet.rpc("evm_revert", snapshot) is True
    return verdicts


def _params(s: MorphoBlueStrategy, market_id: str) -> tuple[Any, ...]:
    p = s.book.params[market_id]
    return (*(Web3.to_checksum_address(a) for a in mm.params_tuple(p)[:4]), p.lltv)


# ------------------------------------------------------------------------------ tests


def test_the_population_has_both_markets() -> None:
    assert {p.kind for p in PLANS} == {"weth-usdc", "wbtc-usdc"}
    assert len(PLANS) == 90


async def test_parity_over_time_jumps_price_drops_and_liquidations(devnet: Devnet) -> None:
    w3 = devnet.w3
    send = deployer(devnet).send
    contract_ = morpho(devnet)
    erc20 = tokens(devnet)
    usdc, weth, wbtc = erc20["USDC"], erc20["WETH"], erc20["WBTC"]
    keeper = liquidator(devnet)
    send(usdc.functions.approve(contract_.address, MAX_UINT), sender=keeper)
    markets = {m.collateral_token.lower(): m for m in devnet.info.morpho_blue.markets}
    weth_market = markets[weth.address.lower()]
    wbtc_market = markets[wbtc.address.lower()]
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        s = make_strategy(devnet)
        start = await block_ref(rpc, "latest")
        sent = rpc.requests_sent
        await s.sync(rpc, start)
        assert rpc.requests_sent - sent <= 12  # logs + a few batches, not one per account
        seeded = {(m.id, p.address.lower()) for p in PLANS
                  for m in devnet.info.morpho_blue.markets
                  if m.collateral_token.lower() == erc20[p.kind.split("-")[0].upper()]
                  .address.lower()}
        assert seeded == set(borrow_pairs(s))
        assert not s.stale_markets(start)

        # This test's own borrowers (logs applied by `follow`): near the limit, tiny, WBTC.
        near, tiny, btc = fresh_accounts(devnet, 3)
        _open(devnet, contract_, weth, weth_market, who=near, amount=10**18,
              borrow=1719 * 10**6)
        _open(devnet, contract_, weth, weth_market, who=tiny, amount=10**12, borrow=1_000)
        _open(devnet, contract_, wbtc, wbtc_market, who=btc, amount=10**8,
              borrow=20_000 * 10**6)
        # A 10 % fee on WETH/USDC: accruals mint fee shares from now on.
        send(contract_.functions.setFee(market_params(weth_market), WAD // 10))
        # A repay and a collateral withdrawal by seeded borrowers, a supply withdrawal.
        first, second = PLANS[0], PLANS[1]
        for plan in (first, second):
            devnet.rpc("anvil_impersonateAccount", plan.address)
        p0 = _market_of(devnet, first.kind)
        send(usdc.functions.approve(contract_.address, MAX_UINT), sender=first.address)
        send(contract_.functions.repay(market_params(p0), 10**6, 0, first.address, b""),
             sender=first.address)
        p1 = _market_of(devnet, second.kind)
        held = contract_.functions.position(p1.id, second.address).call()[2]
        send(contract_.functions.withdrawCollateral(
            market_params(p1), held // 100, second.address, second.address),
            sender=second.address)
        dep = deployer(devnet).sender
        send(contract_.functions.withdraw(market_params(wbtc_market), 10**6, 0, dep, dep))

        compared = 0
        verdicts = await checkpoint(devnet, rpc, s, HOUR, keep=False)
        compared += len(verdicts)
        assert len(verdicts) == 93 and not any(verdicts.values())
        verdicts = await checkpoint(devnet, rpc, s, 30 * DAY, keep=True)
        compared += len(verdicts)
        fee_shares = s.book.markets[weth_market.id].total_supply_shares
        assert fee_shares > contract_.functions.position(weth_market.id, dep).call()[0]

        # WETH -6 %, WBTC -4 %: the closest positions become liquidatable.
        set_price(devnet, "WETH", SPECS["WETH"].usd_price * Decimal("0.94"))
        set_price(devnet, "WBTC", SPECS["WBTC"].usd_price * Decimal("0.96"))
        verdicts = await checkpoint(devnet, rpc, s, HOUR, keep=True)
        compared += len(verdicts)
        weak = sorted(p for p, bad in verdicts.items() if bad)
        assert weak and len(weak) < len(verdicts)

        # A partial liquidation (10 % of the collateral of the weakest position).
        i1, u1 = weak[0]
        part = s.book.position(i1, u1).collateral // 10
        send(contract_.functions.liquidate(_params(s, i1), checksum(u1), part, 0, b""),
             sender=keeper)
        verdicts = await checkpoint(devnet, rpc, s, DAY, keep=True)
        compared += len(verdicts)

        # A year later (reverted), then WETH at -20 %: some positions are under water.
        verdicts = await checkpoint(devnet, rpc, s, 365 * DAY, keep=False)
        compared += len(verdicts)
        assert sum(verdicts.values()) > len(weak)
        set_price(devnet, "WETH", SPECS["WETH"].usd_price * Decimal("0.80"))
        verdicts = await checkpoint(devnet, rpc, s, 7 * DAY, keep=True)
        compared += len(verdicts)
        # The strategy's call for max_repay of an under-water position takes all the
        # collateral; Morpho realizes the rest of the debt as bad debt.
        head = await follow(rpc, s)
        under = next(c for c in s.candidates(head) if morpho_data(c).seizes_all_collateral)
        call = s.build(under, under.max_repay)
        tx = w3.eth.send_transaction({"from": keeper, "to": checksum(call.to),
                                      "data": HexStr(call.data), "gas": under.gas_limit})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1
        (event,) = contract_.events.Liquidate().process_receipt(receipt, errors=DISCARD)
        assert event["args"]["badDebtShares"] > 0 and event["args"]["badDebtAssets"] > 0
        i2, u2 = morpho_data(under).market_id, under.account
        await follow(rpc, s)
        assert s.book.position(i2, u2) == PositionState(0, 0, 0)
        verdicts = await checkpoint(devnet, rpc, s, HOUR, keep=True)
        compared += len(verdicts)
        assert (i2, u2) not in verdicts
        assert compared >= 7 * 90
        # The positions `keeper scan` shows agree with the verdicts.
        head = await follow(rpc, s)
        rows = {(r.market, r.account): r for r in s.positions(head)}
        assert all(rows[p].health_factor < WAD for p, bad in verdicts.items() if bad)


def _market_of(devnet: Devnet, kind: str) -> Any:
    symbol = kind.split("-", maxsplit=1)[0].upper()
    address = devnet.info.tokens[symbol].address.lower()
    return next(m for m in devnet.info.morpho_blue.markets
                if m.collateral_token.lower() == address)


def _open(
    devnet: Devnet, contract_: Contract, collateral: Contract, market: Any, *,
    who: ChecksumAddress, amount: int, borrow: int,
) -> None:
    send = deployer(devnet).send
    params = market_params(market)
    send(collateral.functions.mint(who, amount))
    send(collateral.functions.approve(contract_.address, amount), sender=who)
    send(contract_.functions.supplyCollateral(params, amount, who, b""), sender=who)
    send(contract_.functions.borrow(params, borrow, 0, who, who), sender=who)


def checksum(address: str) -> ChecksumAddress:
    return Web3.to_checksum_address(address)
