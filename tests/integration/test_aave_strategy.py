"""The Aave V3 strategy on the devnet: sync, candidates after a price drop, exact seize.

Synced at the head, the strategy tracks every seeded Aave borrower and offers nothing (all
healthy). After WETH falls 25 %, applying that block's logs makes candidates appear for
exactly the accounts whose Pool.getUserAccountData HF is below 1; sending one candidate's
built call for `max_repay` pays the liquidator exactly `seize(max_repay)` of collateral and
pulls exactly `actual_repay(max_repay)` of debt.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar

from eth_abi.abi import decode
from eth_typing import HexStr
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

from keeper.chain.http import HttpRpc
from keeper.devnet.deployer import Deployer
from keeper.devnet.tokens import post_price
from keeper.strategy import StrategyContext, StrategyFactory, missing_members
from keeper.types import BlockRef, Candidate
from strategies.aave_v3 import STRATEGY, AaveV3Config, AaveV3Strategy
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import MAX_UINT, SPECS, WAD, contract, liquidator, tokens

USERS = {p.address.lower() for p in seeded_borrowers("aave_v3")}
ACCOUNT_DATA = "0x" + function_signature_to_4byte_selector("getUserAccountData(address)").hex()
ERC20_ABI: list[dict[str, Any]] = [
    {"name": "balanceOf", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "a", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
]


async def _block(rpc: HttpRpc, number: int) -> BlockRef:
    head = await rpc.call("eth_getBlockByNumber", [hex(number), False])
    return BlockRef(number, head["hash"], head["parentHash"], int(head["timestamp"], 16))


async def _chain_health(rpc: HttpRpc, pool: str, users: list[str], block: int) -> dict[str, int]:
    answers = await rpc.batch([
        ("eth_call", [{"to": pool, "data": ACCOUNT_DATA + "00" * 12 + u[2:]}, hex(block)])
        for u in users
    ])
    return {
        u: decode(["uint256"] * 6, bytes.fromhex(a.removeprefix("0x")))[5]
        for u, a in zip(users, answers, strict=True)
    }


def _strategy(devnet: Devnet) -> AaveV3Strategy:
    config = AaveV3Config(addresses_provider=devnet.info.aave_v3.addresses_provider)
    return STRATEGY.create(config, StrategyContext(devnet.info.chain_id, liquidator(devnet)))


async def test_sync_candidates_and_exact_seize(devnet: Devnet) -> None:
    w3 = devnet.w3
    keeper = liquidator(devnet)
    strategy = _strategy(devnet)
    assert missing_members(strategy) == []
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        start = await _block(rpc, w3.eth.block_number)
        await strategy.sync(rpc, start)
        assert strategy.synced == start
        positions = strategy.positions(start)
        borrowers = {p.account for p in positions if p.debt_value > 0}
        assert borrowers == USERS and len(borrowers) == len(USERS)
        assert not list(strategy.candidates(start))  # the seeded population is healthy
        pool = devnet.info.aave_v3.pool.lower()
        assert {f.urgent for f in strategy.subscriptions()} == {True, False}

        # WETH falls 25 %: the feed's log is the only change of that block.
        price = SPECS["WETH"].usd_price * Decimal("0.75")
        post_price(w3, devnet.info.feeds["WETH"], price, devnet.info.accounts.deployer)
        drop = await _block(rpc, w3.eth.block_number)
        events = [
            e for f in strategy.subscriptions()
            for e in await rpc.get_logs(f, drop.number, drop.number)
        ]
        assert events
        strategy.apply(events, drop)
        strategy.apply(events, start)  # at or below the synced block: ignored
        found = list(strategy.candidates(drop))
        health = await _chain_health(rpc, pool, strategy.accounts, drop.number)
        weak = {u for u, hf in health.items() if hf < WAD}
        assert weak, "a 25 % WETH drop made no account liquidatable"
        assert {c.account for c in found} == weak
        for c in found:
            assert c.health_factor == health[c.account] and c.spender == pool
            assert c.key.startswith(f"{devnet.info.chain_id}:aave_v3:{c.account}:")
            assert c.max_repay > 0 and c.seize(c.max_repay) > 0
            assert c.seize(c.max_repay + 10**30) == c.seize(c.max_repay)  # clamped
        assert len({c.key for c in found}) == len(found)

        # Liquidate as the liquidator, each in the next block at a pinned time: first a
        # candidate the collateral does not cap, then (after applying the first one's logs)
        # one of another account where the user's collateral balance caps the seizure.
        sender = Deployer(w3, keeper)
        for token in tokens(devnet).values():
            sender.send(token.functions.approve(pool_address(devnet), MAX_UINT))
        applied = w3.eth.block_number
        await _apply_through(rpc, strategy, drop.number + 1, applied)
        first = await _liquidate(devnet, rpc, strategy, capped=False, skip=set())
        await _apply_through(rpc, strategy, applied + 1, w3.eth.block_number)
        assert not strategy.needs_read
        now = await _block(rpc, w3.eth.block_number)
        health = await _chain_health(rpc, pool, strategy.accounts, now.number)
        assert {p.account: p.health_factor for p in strategy.positions(now)} == health
        await _liquidate(devnet, rpc, strategy, capped=True, skip={first})


async def _apply_through(rpc: HttpRpc, strategy: AaveV3Strategy, first: int, last: int) -> None:
    for number in range(first, last + 1):
        block = await _block(rpc, number)
        strategy.apply([
            e for f in strategy.subscriptions() for e in await rpc.get_logs(f, number, number)
        ], block)


async def _liquidate(
    devnet: Devnet, rpc: HttpRpc, strategy: AaveV3Strategy, *, capped: bool, skip: set[str]
) -> str:
    """Send one candidate's call for max_repay; the balance deltas must equal the mirrors."""
    w3, keeper = devnet.w3, liquidator(devnet)
    head = await _block(rpc, w3.eth.block_number)
    when = head.timestamp + 12
    pending = BlockRef(head.number + 1, "0x", head.hash, when)
    candidate = _pick(strategy.candidates(pending), capped=capped, skip=skip)
    repay = candidate.max_repay
    call = strategy.build(candidate, repay)
    collateral = contract(devnet, ERC20_ABI, candidate.collateral)
    debt = contract(devnet, ERC20_ABI, candidate.debt)
    before = (collateral.functions.balanceOf(keeper).call(),
              debt.functions.balanceOf(keeper).call())
    devnet.rpc("evm_setNextBlockTimestamp", when)
    tx = w3.eth.send_transaction({
        "from": keeper, "to": Web3.to_checksum_address(call.to), "data": HexStr(call.data),
        "gas": candidate.gas_limit,
    })
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt["status"] == 1
    assert w3.eth.get_block(receipt["blockNumber"])["timestamp"] == when
    received = collateral.functions.balanceOf(keeper).call() - before[0]
    paid = before[1] - debt.functions.balanceOf(keeper).call()
    assert received == candidate.seize(repay)
    assert paid == candidate.actual_repay(repay)
    assert (paid < repay) is capped
    assert receipt["gasUsed"] < candidate.gas_limit
    return candidate.account


def pool_address(devnet: Devnet) -> str:
    return Web3.to_checksum_address(devnet.info.aave_v3.pool)


def _pick(candidates: Iterable[Candidate], *, capped: bool, skip: set[str]) -> Candidate:
    """A candidate with distinct collateral and debt (separate balance deltas), capped or not."""
    found = [
        c for c in candidates if c.collateral != c.debt and c.account not in skip
        and (c.actual_repay(c.max_repay) < c.max_repay) is capped
    ]
    assert found
    return max(found, key=lambda c: c.max_repay)


class _NotAStrategy:
    name: ClassVar[str] = "nope"

    def subscriptions(self) -> list[object]:
        return []


def test_missing_members_reports_a_non_conforming_object() -> None:
    assert missing_members(_NotAStrategy()) == ["sync", "apply", "candidates", "build"]
    assert missing_members(object()) == [
        "name", "subscriptions", "sync", "apply", "candidates", "build"
    ]


def test_the_plugin_is_a_strategy_factory() -> None:
    factory: StrategyFactory = STRATEGY
    assert isinstance(STRATEGY, StrategyFactory) and factory.name == "aave_v3"
    config = AaveV3Config(addresses_provider="0x" + "11" * 20)
    created = STRATEGY.create(config, StrategyContext(31337, "0x" + "22" * 20))
    assert isinstance(created, AaveV3Strategy) and missing_members(created) == []
