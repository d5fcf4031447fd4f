"""PARITY on the devnet's v3.0 market along randomized action sequences (seed printed).

Random supplies, borrows (variable or stable), repays, withdrawals, e-mode switches, time
jumps, price moves and liquidations of the seeded v3.0 accounts, the strategy following
every block through its logs. At each checkpoint:

- the local Pool.getUserAccountData of every seeded account equals the chain's, bit for
  bit (test_aave_parity.check_parity), and so do the health factors of the strategy's
  event-sourced book;
- the accounts the strategy offers candidates for at the next block are exactly those the
  pool calls liquidatable then;
- for each candidate, the predicted outcome of liquidationCall (debt repaid, collateral
  seized, protocol fee, deficit: none on v3.0) equals the pool's answer to an eth_call of
  it, at the size ranking picks and at the ends and middle of [1, max_repay]
  (tests/integration/aave_outcomes.py).

`KEEPER_AAVE_SEED=<seed>` replays a run. The v3.6 market's counterpart is
test_aave_v36_parity.py's randomized test.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from decimal import Decimal
from typing import Any

from eth_abi.abi import decode
from web3 import Web3

from keeper.chain.http import HttpRpc
from keeper.devnet.tokens import post_price
from keeper.dex.uniswap_v2 import PairBook
from keeper.strategy import StrategyContext
from keeper.types import BlockRef, Candidate
from strategies.aave_v3 import STRATEGY, AaveV3Config, AaveV3Strategy, liquidation_v30
from strategies.aave_v3 import market as aave_market
from strategies.aave_v3.rules import RuleSet
from tests.conftest import Devnet
from tests.integration.aave_outcomes import Outcome, Predict, check_outcomes, send_as
from tests.integration.helpers import MAX_UINT, SPECS, WAD, aave_pool, liquidator, tokens
from tests.integration.test_aave_parity import ACCOUNT_DATA, USERS, check_parity

HOUR, DAY = 3600, 86_400
STEPS = 30
CHECK_EVERY = 6
ACTIONS = ("supply", "borrow", "repay", "withdraw", "emode", "time", "price", "liquidate")


async def _block(client: HttpRpc, number: int) -> BlockRef:
    head = await client.call("eth_getBlockByNumber", [hex(number), False])
    return BlockRef(number, head["hash"], head["parentHash"], int(head["timestamp"], 16))


async def _follow(client: HttpRpc, strategy: AaveV3Strategy, applied: int) -> int:
    """What the engine does per block, for every block after `applied`: apply the subscribed
    logs, refresh; a strategy that asks for a resync is synced again at the head."""
    head = int(await client.call("eth_blockNumber", []), 16)
    for number in range(applied + 1, head + 1):
        block = await _block(client, number)
        strategy.apply([e for f in strategy.subscriptions()
                        for e in await client.get_logs(f, number, number)], block)
        await strategy.refresh(client, block)
    if strategy.needs_resync:
        await strategy.sync(client, await _block(client, head))
    return head


def _held(strategy: AaveV3Strategy, user: str, action: str, erc20: dict[str, Any]) -> list[str]:
    """The symbols `user` owes (repay) or has supplied (withdraw), by the book."""
    balances = strategy.book.account(user.lower()).balances
    out = []
    for symbol, token in erc20.items():
        held = balances.get(str(token.address).lower())
        if held is not None and (
                (action == "repay" and (held.scaled_variable_debt or held.stable_principal))
                or (action == "withdraw" and held.scaled_atoken_balance)):
            out.append(symbol)
    return out


def _offers(strategy: AaveV3Strategy, at: BlockRef) -> list[tuple[Candidate, Predict]]:
    """The strategy's candidates at `at`, each with its pair's outcome mirror."""
    market = strategy.book.market
    out: list[tuple[Candidate, Predict]] = []
    for c in strategy.candidates(at):
        account = strategy.book.account(c.account)
        hf = aave_market.account_data(market, account, at.timestamp).health_factor
        pair = next(p for p in liquidation_v30.pairs(market, account, hf, at.timestamp)
                    if (p.collateral.asset, p.debt.asset) == (c.collateral, c.debt))

        def predict(size: int, pair: liquidation_v30.Pair = pair) -> Outcome:
            o = pair.outcome(size)
            return o.debt_repaid, o.collateral_seized, o.protocol_fee, o.deficit

        out.append((c, predict))
    return out


async def _liquidatable_at(client: HttpRpc, pool: str, block: int, now: int) -> set[str]:
    """The seeded accounts the pool would liquidate on `block`'s state at time `now`: HF < 1
    with some collateral left (a liquidation that took it all leaves the debt on v3.0)."""
    users = [u.lower() for u in USERS]
    answers = await client.batch([
        ("eth_call", [{"to": pool, "data": ACCOUNT_DATA + "00" * 12 + u[2:]}, hex(block), {},
                      {"time": hex(now)}]) for u in users])
    out = set()
    for user, answer in zip(users, answers, strict=True):
        data = decode(["uint256"] * 6, bytes.fromhex(str(answer).removeprefix("0x")))
        if data[0] > 0 and data[1] > 0 and data[5] < WAD:
            out.add(user)
    return out


async def _checkpoint(client: HttpRpc, devnet: Devnet, strategy: AaveV3Strategy,
                      where: str) -> Counter[str]:
    head = await _block(client, devnet.w3.eth.block_number)
    factors = await check_parity(client, devnet, head.number)
    book = {p.account: p.health_factor for p in strategy.positions(head)}
    assert [book[u.lower()] for u in USERS] == factors, f"{where}: the book's HF != the pool's"
    now = head.timestamp + 12
    pending = BlockRef(head.number + 1, "0x", head.hash, now)
    offers = _offers(strategy, pending)
    pool = devnet.info.aave_v3.pool.lower()
    weak = await _liquidatable_at(client, pool, head.number, now)
    assert {c.account for c, _ in offers} == weak, where
    market = strategy.book.market
    dex = await PairBook.load(client, devnet.info.uniswap_v2.factory, head.number)
    counts = await check_outcomes(
        client, pool=pool, sender=liquidator(devnet), offers=offers,
        a_tokens={r.asset: r.a_token for r in market.reserves}, block=head.number, now=now,
        dex=dex, quote=devnet.info.tokens["WETH"].address.lower(), where=where)
    counts["accounts"] += len(weak)
    return counts


async def _liquidate_one(devnet: Devnet, client: HttpRpc, strategy: AaveV3Strategy,
                         rng: random.Random) -> bool:
    """Liquidate one candidate of the strategy's at a random size up to its max_repay."""
    head = await _block(client, devnet.w3.eth.block_number)
    now = head.timestamp + 1
    found = list(strategy.candidates(BlockRef(head.number + 1, "0x", head.hash, now)))
    if not found:
        return False
    c = rng.choice(found)
    size = rng.choice([c.max_repay, rng.randint(1, c.max_repay)])
    devnet.rpc("evm_setNextBlockTimestamp", now)
    return send_as(devnet, aave_pool(devnet).functions.liquidationCall(
        Web3.to_checksum_address(c.collateral), Web3.to_checksum_address(c.debt),
        Web3.to_checksum_address(c.account), size, False), liquidator(devnet))


async def test_v30_randomized_actions_keep_parity_and_predict_liquidations(
    devnet: Devnet,
) -> None:
    seed = int(os.environ.get("KEEPER_AAVE_SEED", random.randrange(2**32)))
    print(f"v3.0 randomized actions: seed {seed} (KEEPER_AAVE_SEED={seed} replays it)")
    rng = random.Random(seed)
    pool, erc20, keeper = aave_pool(devnet), tokens(devnet), liquidator(devnet)
    for token in erc20.values():  # the liquidator pays for any size the checks try
        send_as(devnet, token.functions.mint(keeper, 10**30), keeper)
        send_as(devnet, token.functions.approve(pool.address, MAX_UINT), keeper)
    strategy = STRATEGY.create(
        AaveV3Config(addresses_provider=devnet.info.aave_v3.addresses_provider),
        StrategyContext(devnet.info.chain_id, keeper))
    kinds: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    async with HttpRpc(devnet.info.rpc_url) as client:
        start = await _block(client, devnet.w3.eth.block_number)
        await strategy.sync(client, start)
        assert strategy.book.market.rules is RuleSet.V3_0
        applied = start.number
        for step in range(STEPS):
            user = rng.choice(USERS)
            symbol = rng.choice(list(erc20))
            held = _held(strategy, user, action := rng.choice(ACTIONS), erc20)
            if held:  # repay a debt it has, withdraw what it supplied
                symbol = rng.choice(held)
            token = erc20[symbol]
            unit = 10 ** devnet.info.tokens[symbol].decimals
            amount = int(Decimal(rng.choice([50, 400, 3000])) / SPECS[symbol].usd_price * unit)
            went = False
            if action == "supply":
                send_as(devnet, token.functions.mint(user, amount), user)
                send_as(devnet, token.functions.approve(pool.address, MAX_UINT), user)
                went = send_as(devnet, pool.functions.supply(token.address, amount, user, 0), user)
            elif action == "borrow":  # variable or stable (where the reserve allows it)
                went = send_as(devnet, pool.functions.borrow(
                    token.address, amount, rng.choice([1, 2]), 0, user), user)
            elif action == "repay":
                send_as(devnet, token.functions.mint(user, amount), user)
                send_as(devnet, token.functions.approve(pool.address, MAX_UINT), user)
                size = MAX_UINT if rng.random() < 0.3 else amount
                went = send_as(devnet, pool.functions.repay(
                    token.address, size, rng.choice([1, 2]), user), user)
            elif action == "withdraw":
                size = MAX_UINT if rng.random() < 0.3 else amount
                went = send_as(devnet, pool.functions.withdraw(token.address, size, user), user)
            elif action == "emode":
                went = send_as(devnet, pool.functions.setUserEMode(rng.choice([0, 1])), user)
            elif action == "time":
                devnet.rpc("evm_increaseTime", rng.choice([60, HOUR, 7 * DAY]))
                devnet.rpc("evm_mine")
                went = True
            elif action == "price":
                name = rng.choice(["WETH", "WBTC"])
                move = Decimal(rng.choice(["0.72", "0.8", "0.9", "1.04"]))
                post_price(devnet.w3, devnet.info.feeds[name], SPECS[name].usd_price * move,
                           devnet.info.accounts.deployer)
                went = True
            else:
                applied = await _follow(client, strategy, applied)
                went = await _liquidate_one(devnet, client, strategy, rng)
            kinds[action] += went
            applied = await _follow(client, strategy, applied)
            if step % CHECK_EVERY == CHECK_EVERY - 1:
                counts += await _checkpoint(client, devnet, strategy, f"seed {seed} step {step}")
        # A last checkpoint after a crash, so every run checks liquidations.
        post_price(devnet.w3, devnet.info.feeds["WETH"], SPECS["WETH"].usd_price
                   * Decimal("0.75"), devnet.info.accounts.deployer)
        await _follow(client, strategy, applied)
        counts += await _checkpoint(client, devnet, strategy, f"seed {seed} after the crash")
    print(f"seed {seed}: actions that went through {dict(kinds)}; checks {dict(counts)}")
    assert sum(kinds.values()) >= 8, f"seed {seed}: only {dict(kinds)} went through"
    assert counts["sizes"] >= 10 and counts["ranked"] >= 1, f"seed {seed}: {dict(counts)}"
