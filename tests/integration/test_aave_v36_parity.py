"""PARITY on the devnet's v3.6 market (aave-v3-origin 3.6.0, POOL_REVISION 10).

- The local Pool.getUserAccountData (market.account_data -> math_v36) equals the chain's,
  bit for bit, for every seeded v3.6 account (the named shapes and the random population)
  at the head, after time jumps, price moves (the proxy's feed, the silent ratio adapter)
  and along randomized action sequences (seed printed), where the event-sourced book
  (v3.5-rounded Mint/Burn inverted) must also equal a fresh read of every account. At each
  of their checkpoints (and after a last crash), every candidate's predicted liquidationCall
  outcome equals an eth_call of it at the size ranking picks and the ends and middle of
  each offered range (tests/integration/aave_outcomes.py), and every account with HF < 1
  that gets no candidate has each of its pairs refused by the pool.
- For every liquidatable account and pair, the predicted liquidationCall outcome (debt
  repaid, collateral seized, protocol fee, deficit) equals the mined transaction's logs at
  the ends and middle of every repay range the candidate offers (the sizes ranking may
  propose; `liquidation_v36.offered`), and a size just past an interior range reverts with
  MustNotLeaveDust, as predicted.
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from eth_abi.abi import decode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from keeper.chain.http import HttpRpc
from keeper.devnet.aave_origin_artifacts import pool_artifact
from keeper.devnet.aave_origin_seed import population_plans
from keeper.devnet.info import AaveV36Info
from keeper.devnet.tokens import mintable_erc20, post_price
from keeper.dex.uniswap_v2 import PairBook
from keeper.strategy import StrategyContext
from keeper.types import BlockRef, Candidate, LogFilter
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import liquidation_v36, math_v36, prices
from strategies.aave_v3 import market as aave_market
from strategies.aave_v3.book import PositionBook
from strategies.aave_v3.market import Market
from strategies.aave_v3.math_lib import AaveMathError
from strategies.aave_v3.math_v36 import LiquidationRevert
from strategies.aave_v3.rules import RuleSet
from tests.conftest import Devnet
from tests.integration.aave_outcomes import Outcome, Predict, check_outcomes, send_as, traced_call
from tests.integration.helpers import MAX_UINT, SPECS, WAD, contract, liquidator

ACCOUNT_DATA = "0x" + function_signature_to_4byte_selector("getUserAccountData(address)").hex()
HOUR, DAY = 3600, 86_400
TOPIC_DEFICIT = "0x" + keccak(text="DeficitCreated(address,address,uint256)").hex()
TOPIC_TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
MUST_NOT_LEAVE_DUST = "0x" + keccak(text="MustNotLeaveDust()").hex()[:8]
PANIC = "0x4e487b71"  # Panic(uint256)


def _v36(devnet: Devnet) -> AaveV36Info:
    info = devnet.info.aave_v3_6
    assert info is not None, "the devnet has no v3.6 market"
    return info


def _users(devnet: Devnet) -> list[str]:
    named = list(_v36(devnet).borrowers.values())
    return named + [p.address for p in population_plans() if p.address not in named]


async def _timestamp(client: HttpRpc, block: int) -> int:
    head = await client.call("eth_getBlockByNumber", [hex(block), False])
    return int(head["timestamp"], 16)


async def check_parity(client: HttpRpc, devnet: Devnet, block: int) -> dict[str, Any]:
    """Every seeded v3.6 account at `block`, local == chain; returns the local data by user."""
    users = _users(devnet)
    now = await _timestamp(client, block)
    market = await aave_market.discover(client, _v36(devnet).addresses_provider, block)
    assert market.rules is RuleSet.V3_6
    accounts = await aave_market.read_accounts(client, market, users, block)
    answers = await client.batch([
        ("eth_call", [{"to": market.pool, "data": ACCOUNT_DATA + "00" * 12
                       + u.lower().removeprefix("0x")}, hex(block)]) for u in users])
    out = {}
    for user, answer in zip(users, answers, strict=True):
        chain = decode(["uint256"] * 6, bytes.fromhex(answer.removeprefix("0x")))
        local = aave_market.account_data(market, accounts[user], now)
        mine = (local.total_collateral_base, local.total_debt_base,
                math_v36.calculate_available_borrows(
                    local.total_collateral_base, local.total_debt_base, local.avg_ltv),
                local.avg_liquidation_threshold, local.avg_ltv, local.health_factor)
        assert mine == tuple(chain), f"{user} at block {block}: local {mine} != chain {chain}"
        out[user] = local
    return out


def mine(devnet: Devnet, seconds: int) -> int:
    devnet.rpc("evm_increaseTime", seconds)
    devnet.rpc("evm_mine")
    return devnet.w3.eth.block_number


def _pool(devnet: Devnet) -> Contract:
    return contract(devnet, pool_artifact(), _v36(devnet).pool)


def _token(devnet: Devnet, symbol: str) -> Contract:
    return contract(devnet, mintable_erc20(), _v36(devnet).tokens[symbol].address)


def _adapter(devnet: Devnet) -> Contract:
    from keeper.devnet.tokens import devnet_contracts  # noqa: PLC0415

    return contract(devnet, devnet_contracts()["RatioCappedAdapter"],
                    _v36(devnet).ratio_adapters["WSTETH"])


async def test_v36_discovery_and_parity_over_time_and_prices(devnet: Devnet) -> None:
    info = _v36(devnet)
    async with HttpRpc(devnet.info.rpc_url) as client:
        block = devnet.w3.eth.block_number
        market = await aave_market.discover(client, info.addresses_provider, block)
        assert market.revision == 10
        assert int(market.sentinel, 16) != 0 and market.sentinel_allows
        wsteth = market.reserve(info.tokens["WSTETH"].address)
        weth = market.reserve(info.tokens["WETH"].address)
        assert wsteth.config.liquidation_threshold == 0  # LT 0 outside e-mode
        assert market.emode_categories[2].collateral_bitmap >> wsteth.id & 1
        assert weth.price_feed != weth.price_source  # behind the EACAggregatorProxy
        classified = await prices.classify(client, market, 0, block)
        polled = {r.asset for r in classified.reserves if r.polled}
        assert wsteth.asset in polled and weth.asset not in polled  # the adapter is silent
        first = await check_parity(client, devnet, block)
        assert any(d.health_factor < 2**256 - 1 for d in first.values())
        for seconds in (HOUR, 30 * DAY, 365 * DAY):
            await check_parity(client, devnet, mine(devnet, seconds))
        deployer = devnet.info.accounts.deployer
        post_price(devnet.w3, devnet.info.feeds["WETH"], SPECS["WETH"].usd_price
                   * Decimal("0.83"), deployer)
        await check_parity(client, devnet, devnet.w3.eth.block_number)
        # The adapter's ratio falls 7 % without any log; parity holds on the new price.
        send_as(devnet, _adapter(devnet).functions.setRatio(111 * 10**16, 0), deployer)
        await check_parity(client, devnet, mine(devnet, 60))


async def _book_equals_chain(client: HttpRpc, book: PositionBook, market: Market,
                             users: Sequence[str], block: int) -> None:
    fresh = await aave_market.read_accounts(client, market, users, block)
    for user in users:
        mine_ = book.account(user)
        assert mine_.config == fresh[user].config, user
        assert mine_.emode_category == fresh[user].emode_category, user
        for asset, balance in fresh[user].balances.items():
            held = mine_.balances[asset]
            assert (held.scaled_atoken_balance, held.scaled_variable_debt) == (
                balance.scaled_atoken_balance, balance.scaled_variable_debt), (user, asset)


async def _apply_new_blocks(client: HttpRpc, book: PositionBook, addresses: Sequence[str],
                            applied: int) -> None:
    """Feed the book every block after `applied` up to the head, one block at a time."""
    head = int(await client.call("eth_blockNumber", []), 16)
    for number in range(applied + 1, head + 1):
        logs = await client.get_logs(LogFilter(tuple(addresses)), number, number)
        book.apply(logs, BlockRef(number, "", "", await _timestamp(client, number)))


async def _liquidate_one(devnet: Devnet, client: HttpRpc, book: PositionBook,
                         rng: random.Random) -> bool:
    """Liquidate one liquidatable account of the book at a random size the candidate
    accepts (the keeper's tokens, minted and approved at the start); False when none is."""
    keeper = liquidator(devnet)
    head = devnet.w3.eth.block_number
    market = await prices.refresh(client, book, head)  # the silent adapter's price now
    now = await _timestamp(client, head) + 1
    found = [o for u in book.users
             for o in liquidation_v36.offered(market, book.account(u), now, keeper)]
    if not found:
        return False
    pair, ranges = rng.choice(found)
    lo, hi = rng.choice(ranges)
    size = rng.randint(lo, hi)
    # the liquidator holds and has approved every token (the test's start): nothing is mined
    # between the head read above and this block, whose time `now` must follow the head's
    devnet.rpc("evm_setNextBlockTimestamp", now)
    return send_as(devnet, _pool(devnet).functions.liquidationCall(
        Web3.to_checksum_address(pair.collateral.asset),
        Web3.to_checksum_address(pair.debt.asset),
        Web3.to_checksum_address(pair.account.user), size, False), keeper)


@dataclass
class _Owner:
    """What liquidation_v36.candidates needs of the strategy: its name, context, symbols."""

    context: StrategyContext
    name: str = "aave_v3_6"
    _symbols: dict[str, str] = field(default_factory=dict)


def _offers(market: Market, account: aave_market.Account, now: int,
            owner: _Owner) -> list[tuple[Candidate, Predict]]:
    """The account's candidates at `now` (as the strategy makes them), each with its pair's
    outcome mirror; the deficit counts the other debts burned when no collateral is left."""
    pairs = {(p.collateral.asset, p.debt.asset): p
             for p in liquidation_v36.pairs(market, account, now, owner.context.liquidator)}
    out: list[tuple[Candidate, Predict]] = []
    for c in liquidation_v36.candidates(market, account, now, owner, 450_000):
        pair = pairs[c.collateral, c.debt]

        def predict(size: int, pair: liquidation_v36.Pair = pair) -> Outcome:
            o = pair.outcome(size)
            more = sum(liquidation_v36.other_deficits(
                market, account, pair.debt.asset, now).values()) if o.no_collateral_left else 0
            return o.debt_repaid, o.collateral_seized, o.protocol_fee, o.deficit + more

        out.append((c, predict))
    return out


async def _check_liquidations(client: HttpRpc, devnet: Devnet, book: PositionBook,
                              where: str) -> Counter[str]:
    """At the head: every candidate's predicted liquidationCall outcome equals the pool's
    answer to an eth_call of it at the sizes ranking proposes (aave_outcomes.py); every
    account with HF < 1 that gets no candidate (a grace period, no collateral left, only
    sizes that leave dust...) refuses a liquidation of each of its pairs, whole or half."""
    keeper = liquidator(devnet)
    block = devnet.w3.eth.block_number
    market = await prices.refresh(client, book, block)  # the silent adapter's price now
    # The block's own time: WSTETH's adapter moves with the timestamp, and its price is the
    # one polled at this block (the keeper values candidates at the head's time and price).
    now = await _timestamp(client, block)
    owner = _Owner(StrategyContext(devnet.info.chain_id, keeper))
    offers = [o for u in book.users for o in _offers(market, book.account(u), now, owner)]
    answers = await client.batch([
        ("eth_call", [{"to": market.pool, "data": ACCOUNT_DATA + "00" * 12 + u[2:]},
                      hex(block), {}, {"time": hex(now)}]) for u in book.users])
    weak = {u for u, a in zip(book.users, answers, strict=True)
            if (row := decode(["uint256"] * 6, bytes.fromhex(str(a)[2:])))[1] > 0 and row[5] < WAD}
    offered = {c.account for c, _ in offers}
    assert offered <= weak, f"{where}: candidates of healthy accounts {offered - weak}"
    counts: Counter[str] = Counter()
    for user in sorted(weak - offered):  # none offered: the pool must refuse every pair
        account = book.account(user)
        for c in market.reserves:
            if not account.balances[c.asset].scaled_atoken_balance:
                continue
            for d in market.reserves:
                debt = account.balances[d.asset].scaled_variable_debt
                for size in (MAX_UINT, debt // 2) if debt and c is not d else ():
                    _, reverted = await traced_call(
                        client, pool=market.pool, sender=keeper, size=size, block=block,
                        now=now, pair=(c.asset, d.asset, user))
                    assert reverted is not None, f"{where}: {user} {c.asset}/{d.asset} {size}"
                    counts["refused"] += 1
    dex = await PairBook.load(client, devnet.info.uniswap_v2.factory, block)
    counts += await check_outcomes(
        client, pool=market.pool, sender=keeper, offers=offers,
        a_tokens={r.asset: r.a_token for r in market.reserves}, block=block, now=now, dex=dex,
        quote=devnet.info.tokens["WETH"].address.lower(), where=where)
    counts["accounts"] += len(weak)
    return counts


async def test_v36_randomized_actions_keep_parity_and_the_book_exact(devnet: Devnet) -> None:
    seed = int(os.environ.get("KEEPER_V36_SEED", random.randrange(2**32)))
    print(f"v3.6 randomized actions: seed {seed} (KEEPER_V36_SEED={seed} replays it)")
    rng = random.Random(seed)
    info, pool = _v36(devnet), _pool(devnet)
    users = _users(devnet)
    symbols = ["WETH", "WBTC", "USDC", "DAI"]
    async with HttpRpc(devnet.info.rpc_url) as client:
        start = devnet.w3.eth.block_number
        market = await aave_market.discover(client, info.addresses_provider, start)
        market = await prices.classify(client, market, 0, start)  # WSTETH's price is polled
        accounts = await aave_market.read_accounts(client, market, users, start)
        book = PositionBook(market, accounts.values())
        addresses = book.addresses  # the pool, the tokens and the price feeds
        applied = start
        done = 0
        kinds: Counter[str] = Counter()
        checks: Counter[str] = Counter()
        keeper = liquidator(devnet)
        for symbol in info.tokens:  # the liquidator pays for any size the checks try
            send_as(devnet, _token(devnet, symbol).functions.mint(keeper, 10**30), keeper)
            send_as(devnet, _token(devnet, symbol).functions.approve(pool.address, MAX_UINT),
                  keeper)
        for step in range(48):
            user = rng.choice(users)
            symbol = rng.choice(symbols)
            token = _token(devnet, symbol)
            unit = 10 ** info.tokens[symbol].decimals
            usd = SPECS[symbol].usd_price
            amount = int(Decimal(rng.choice([50, 400, 3000])) / usd * unit) or 1
            action = rng.choice(["supply", "borrow", "repay", "withdraw", "emode", "time",
                                 "price", "liquidate"])
            if action == "liquidate":
                went = await _liquidate_one(devnet, client, book, rng)
                done += went
                kinds[action] += went
            elif action == "supply":
                send_as(devnet, token.functions.mint(user, amount), user)
                send_as(devnet, token.functions.approve(pool.address, MAX_UINT), user)
                done += send_as(devnet, pool.functions.supply(token.address, amount, user, 0), user)
            elif action == "borrow":
                done += send_as(devnet, pool.functions.borrow(token.address, amount, 2, 0, user),
                              user)
            elif action == "repay":
                send_as(devnet, token.functions.mint(user, amount), user)
                send_as(devnet, token.functions.approve(pool.address, MAX_UINT), user)
                size = MAX_UINT if rng.random() < 0.3 else amount
                done += send_as(devnet, pool.functions.repay(token.address, size, 2, user), user)
            elif action == "withdraw":
                size = MAX_UINT if rng.random() < 0.3 else amount
                done += send_as(devnet, pool.functions.withdraw(token.address, size, user), user)
            elif action == "emode":
                done += send_as(devnet, pool.functions.setUserEMode(rng.choice([0, 1, 2])), user)
            elif action == "time":
                mine(devnet, rng.choice([60, HOUR, 7 * DAY]))
            else:
                feed = devnet.info.feeds[rng.choice(["WETH", "WBTC"])]
                move = Decimal(rng.choice(["0.72", "0.8", "0.9", "1.04"]))
                name = "WETH" if feed == devnet.info.feeds["WETH"] else "WBTC"
                post_price(devnet.w3, feed, SPECS[name].usd_price * move,
                           devnet.info.accounts.deployer)
                # Apply the price block first, then liquidate what it opened (if anything).
                await _apply_new_blocks(client, book, addresses, applied)
                applied = devnet.w3.eth.block_number
                went = await _liquidate_one(devnet, client, book, rng)
                done += went
                kinds["liquidate"] += went
            head = devnet.w3.eth.block_number
            await _apply_new_blocks(client, book, addresses, applied)
            applied = head
            if step % 6 == 5:
                await check_parity(client, devnet, head)
                fresh_market = await aave_market.discover(client, info.addresses_provider, head)
                await _book_equals_chain(client, book, fresh_market, users, head)
                checks += await _check_liquidations(client, devnet, book, f"seed {seed} {step}")
        # A last checkpoint after a crash, so every run checks liquidations.
        post_price(devnet.w3, devnet.info.feeds["WETH"], SPECS["WETH"].usd_price
                   * Decimal("0.75"), devnet.info.accounts.deployer)
        await _apply_new_blocks(client, book, addresses, applied)
        await check_parity(client, devnet, devnet.w3.eth.block_number)
        checks += await _check_liquidations(client, devnet, book, f"seed {seed} crash")
        print(f"seed {seed}: {done} actions went through; liquidations: {kinds['liquidate']}; "
              f"checks {dict(checks)}")
        assert done >= 8, f"seed {seed}: only {done} actions went through"
        assert not book.needs_read
        assert checks["sizes"] >= 10 and checks["ranked"] >= 1, f"seed {seed}: {dict(checks)}"


def _mined(devnet: Devnet, call: Any, sender: str, number: int, now: int) -> Any:
    """Send `call` and its receipt, checked to be mined at block `number` and time `now`
    (a unique gas limit keeps the hash unique: the same call is sent again after reverts)."""
    tx = {"from": sender, "to": call.address, "data": call._encode_transaction_data(),
          "gas": hex(8_000_000 - next(_SENT))}
    tx_hash = devnet.rpc("eth_sendTransaction", tx)
    receipt = devnet.w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    assert receipt["blockNumber"] == number
    mined = devnet.w3.eth.get_block(number)
    assert mined["timestamp"] == now
    assert len(mined["transactions"]) == 1, "another transaction was mined with it"
    if receipt["status"] != 1:
        try:
            call.call({"from": sender}, number - 1)
            why = "passes at the parent block"
        except ContractLogicError as exc:
            why = str(exc.data)
        raise AssertionError(f"liquidationCall reverted ({why}): {tx_hash}")
    return receipt


_SENT = itertools.count(1)


def _outcome_from_logs(receipt: Any, user: str, collateral_atoken: str) -> tuple[int, ...]:
    """(debt repaid, collateral seized, protocol fee, deficits by debt asset summed)."""
    repaid = seized = fee = deficit = 0
    for log in receipt["logs"]:
        topic = "0x" + bytes(log["topics"][0]).hex()
        if topic == ev.TOPIC_LIQUIDATION_CALL:
            repaid, seized = decode(["uint256", "uint256", "address", "bool"],
                                    bytes(log["data"]))[:2]
        elif topic == TOPIC_DEFICIT:
            deficit += decode(["uint256"], bytes(log["data"]))[0]
        elif (topic == TOPIC_TRANSFER and log["address"].lower() == collateral_atoken
              and "0x" + bytes(log["topics"][1]).hex()[-40:] == user.lower()
              and int(bytes(log["topics"][2]).hex(), 16) != 0):
            fee = decode(["uint256"], bytes(log["data"]))[0]
    return repaid, seized, fee, deficit


async def test_v36_predicted_liquidations_equal_the_pool(devnet: Devnet) -> None:
    info, pool, w3 = _v36(devnet), _pool(devnet), devnet.w3
    keeper = liquidator(devnet)
    for symbol in ("WETH", "WBTC", "USDC", "DAI"):
        token = _token(devnet, symbol)
        send_as(devnet, token.functions.mint(keeper, 10**30), keeper)
        send_as(devnet, token.functions.approve(pool.address, MAX_UINT), keeper)
    # A crash: WETH -25 %, WBTC -20 %, and the WSTETH ratio -15 % (silent).
    deployer = devnet.info.accounts.deployer
    post_price(w3, devnet.info.feeds["WETH"], SPECS["WETH"].usd_price * Decimal("0.75"),
               deployer)
    post_price(w3, devnet.info.feeds["WBTC"], SPECS["WBTC"].usd_price * Decimal("0.80"),
               deployer)
    send_as(devnet, _adapter(devnet).functions.setRatio(102 * 10**16, 0), deployer)
    mine(devnet, 5 * HOUR)  # past the WBTC grace period of the deploy
    checked = reverted = deficits = small = 0
    async with HttpRpc(devnet.info.rpc_url) as client:
        block = w3.eth.block_number
        await check_parity(client, devnet, block)
        market = await aave_market.discover(client, info.addresses_provider, block)
        users = _users(devnet)
        accounts = await aave_market.read_accounts(client, market, users, block)
        now = await _timestamp(client, block) + 1
        for user in users:
            for pair, ranges in liquidation_v36.offered(market, accounts[user], now, keeper):
                sizes = sorted({s for lo, hi in ranges for s in (lo, (lo + hi) // 2, hi)})
                past = [hi + 1 for lo, hi in ranges if hi + 1 <= pair.max_repay
                        and not any(a <= hi + 1 <= b for a, b in ranges)]
                # the sizes ranking may propose: the ends and middle of every offered range
                # (the terminal one good until LANDING_HORIZON later), and just past each
                for size in [*sizes, *past]:
                    try:
                        predicted: tuple[int, ...] | None = tuple(pair.outcome(size)[:4])
                    except LiquidationRevert as exc:
                        assert exc.reason == "MustNotLeaveDust"
                        predicted, expected = None, MUST_NOT_LEAVE_DUST
                    except AaveMathError:  # checked arithmetic: Panic(0x11)
                        predicted, expected = None, PANIC
                    snapshot = devnet.rpc("evm_snapshot")
                    devnet.rpc("evm_setNextBlockTimestamp", now)
                    call = pool.functions.liquidationCall(
                        Web3.to_checksum_address(pair.collateral.asset),
                        Web3.to_checksum_address(pair.debt.asset),
                        Web3.to_checksum_address(user), size, False)
                    if predicted is None:  # an eth_call in a block mined at `now`
                        devnet.rpc("evm_mine")
                        with pytest.raises(ContractLogicError) as failed:
                            call.call({"from": keeper}, "latest")
                        assert expected[2:] in str(failed.value.data), failed.value
                        reverted += 1
                    else:
                        receipt = _mined(devnet, call, keeper, block + 1, now)
                        got = _outcome_from_logs(receipt, user, pair.collateral.a_token)
                        deficit = predicted[3] + (sum(liquidation_v36.other_deficits(
                            market, accounts[user], pair.debt.asset, now).values())
                            if pair.outcome(size).no_collateral_left else 0)
                        if got != (*predicted[:3], deficit):  # say whether the state moved
                            parent = (await aave_market.read_accounts(
                                client, market, [user], block))[user]
                            raise AssertionError(
                                f"{user} size {size}: chain {got} != predicted {predicted}; "
                                f"scaled collateral read {pair.scaled_collateral}, at block "
                                f"{block} now "
                                f"{parent.balances[pair.collateral.asset].scaled_atoken_balance}")
                        checked += 1
                        deficits += deficit > 0
                        small += pair.data.total_debt_base < 2_000 * 10**8
                    # anvil may put a reverted block's transaction back in its pool: drop it,
                    # or the next send (its nonce after it) is mined on top of it
                    devnet.rpc("anvil_dropAllTransactions")
                    assert devnet.rpc("evm_revert", snapshot) is True
                    devnet.rpc("anvil_dropAllTransactions")
    print(f"v3.6 liquidations: {checked} predicted outcomes equal the pool's, "
          f"{reverted} dust reverts as predicted, {deficits} with a deficit, {small} under $2k")
    assert checked >= 10 and reverted >= 1 and small >= 1
