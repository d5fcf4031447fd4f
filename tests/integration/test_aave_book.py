"""DECISIVE: the position book kept from logs alone equals a fresh read of the chain.

The book is seeded with `discover` + `read_accounts` at block A; a scenario then runs on the
real contracts (supply by new users, variable and stable borrows, partial and full repays,
partial and full withdrawals, collateral off/on, e-mode, an aToken transfer, time jumps, a
price drop and two liquidations, with and without receiveAToken). Every log of the pool, the
reserves' tokens and the price feeds from A+1 to B is applied block by block, and then every
account's state must equal `read_accounts` at B field by field, and every health factor must
equal Pool.getUserAccountData at B.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from eth_abi.abi import decode
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

from keeper.chain.http import HttpRpc
from keeper.devnet.artifacts import aave
from keeper.devnet.tokens import post_price
from keeper.types import BlockRef, LogFilter
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import market as aave_market
from strategies.aave_v3.book import PositionBook
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import (
    MAX_UINT,
    SPECS,
    WAD,
    contract,
    deployer,
    fresh_accounts,
    liquidator,
    tokens,
    units,
)

PLANS = seeded_borrowers("aave_v3")
USERS = [p.address.lower() for p in PLANS]
ACCOUNT_DATA = "0x" + function_signature_to_4byte_selector("getUserAccountData(address)").hex()
DAY = 86_400


def _jump(devnet: Devnet, seconds: int) -> None:
    devnet.rpc("evm_increaseTime", seconds)
    devnet.rpc("evm_mine")


async def test_book_from_logs_equals_a_fresh_read(devnet: Devnet) -> None:
    w3 = devnet.w3
    info = devnet.info.aave_v3
    erc20 = tokens(devnet)
    usdc, dai, weth = erc20["USDC"], erc20["DAI"], erc20["WETH"]
    pool = contract(devnet, aave("protocol/pool/Pool.sol/Pool.json"), info.pool)
    send = deployer(devnet).send
    keeper = liquidator(devnet)
    async with HttpRpc(devnet.info.rpc_url) as rpc:
        block_a = w3.eth.block_number
        market_a = await aave_market.discover(rpc, info.addresses_provider, block_a)
        book = PositionBook(
            market_a, (await aave_market.read_accounts(rpc, market_a, USERS, block_a)).values()
        )
        a_weth = w3.eth.contract(
            address=Web3.to_checksum_address(market_a.reserve(weth.address).a_token),
            abi=aave("protocol/tokenization/AToken.sol/AToken.json").abi,
        )

        # --- the scenario, on the real contracts -------------------------------------------
        alice, bob, carol = fresh_accounts(devnet, 3)
        for user, token, amount in ((alice, weth, units("WETH", 10)),
                                    (bob, usdc, units("USDC", 20_000)),
                                    (carol, dai, units("DAI", 5_000))):
            send(token.functions.transfer(user, amount), sender=keeper)
        for user in (alice, bob, carol, keeper):
            for token in (usdc, dai, weth):
                send(token.functions.approve(pool.address, MAX_UINT), sender=user)
        # New users supply; alice borrows variable USDC; bob enters e-mode and borrows DAI.
        send(pool.functions.supply(weth.address, units("WETH", 10), alice, 0), sender=alice)
        send(pool.functions.supply(usdc.address, units("USDC", 20_000), bob, 0), sender=bob)
        send(pool.functions.setUserEMode(1), sender=bob)
        send(pool.functions.borrow(usdc.address, units("USDC", 8_000), 2, 0, alice), sender=alice)
        send(pool.functions.borrow(dai.address, units("DAI", 10_000), 2, 0, bob), sender=bob)
        # A stable borrow (stable borrowing enabled on DAI first).
        configurator = contract(
            devnet, aave("protocol/pool/PoolConfigurator.sol/PoolConfigurator.json"),
            info.pool_configurator,
        )
        send(configurator.functions.setReserveStableRateBorrowing(dai.address, True))
        send(pool.functions.borrow(dai.address, units("DAI", 1_000), 1, 0, alice), sender=alice)
        _jump(devnet, 30 * DAY)
        # Partial repays after interest accrued (balanceIncrease != 0).
        send(pool.functions.repay(usdc.address, units("USDC", 3_000), 2, alice), sender=alice)
        send(pool.functions.repay(dai.address, units("DAI", 400), 1, alice), sender=alice)
        _jump(devnet, 7 * DAY)
        # Full repays: the repayer pays all with MAX (the keeper tops alice up with interest).
        send(usdc.functions.transfer(alice, units("USDC", 1_000)), sender=keeper)
        send(dai.functions.transfer(alice, units("DAI", 1_000)), sender=keeper)
        send(pool.functions.repay(usdc.address, MAX_UINT, 2, alice), sender=alice)
        send(pool.functions.repay(dai.address, MAX_UINT, 1, alice), sender=alice)
        # Withdraw part; collateral off and on; an aToken transfer to a new user (carol).
        send(pool.functions.withdraw(weth.address, units("WETH", 2), alice), sender=alice)
        send(pool.functions.setUserUseReserveAsCollateral(weth.address, False), sender=alice)
        _jump(devnet, DAY)
        send(pool.functions.setUserUseReserveAsCollateral(weth.address, True), sender=alice)
        send(a_weth.functions.transfer(carol, units("WETH", 1)), sender=alice)
        send(pool.functions.supply(dai.address, units("DAI", 5_000), carol, 0), sender=carol)
        _jump(devnet, 3 * DAY)
        # Withdraw everything (MAX): the collateral bit is cleared by the pool.
        send(pool.functions.withdraw(weth.address, MAX_UINT, alice), sender=alice)
        send(pool.functions.withdraw(weth.address, MAX_UINT, carol), sender=carol)
        _jump(devnet, 2 * DAY)

        # WETH falls 12%: liquidate two weth-usdc borrowers, without and with receiveAToken.
        price = SPECS["WETH"].usd_price * Decimal("0.88")
        post_price(w3, devnet.info.feeds["WETH"], price, devnet.info.accounts.deployer)
        weak = [
            p.address for p in PLANS if p.kind == "weth-usdc"
            and pool.functions.getUserAccountData(p.address).call()[5] < WAD
        ]
        assert len(weak) >= 2, "the price drop made fewer than two accounts liquidatable"
        for victim, receive in zip(weak[:2], (False, True), strict=True):
            send(pool.functions.liquidationCall(weth.address, usdc.address, victim, MAX_UINT,
                                                receive), sender=keeper)
        _jump(devnet, DAY)
        send(pool.functions.supply(usdc.address, units("USDC", 1), bob, 0), sender=keeper)
        block_b = w3.eth.block_number

        # --- the book, from logs only ---------------------------------------------------------
        logs = await rpc.get_logs(LogFilter(book.addresses), block_a + 1, block_b)
        kinds = {e.topic0 for e in logs}
        for number in range(block_a + 1, block_b + 1):
            head = await rpc.call("eth_getBlockByNumber", [hex(number), False])
            ref = BlockRef(number, head["hash"], head["parentHash"], int(head["timestamp"], 16))
            book.apply([e for e in logs if e.block_number == number], ref)
        assert not book.needs_read
        touched = book.drain_touched()
        assert {alice.lower(), bob.lower(), carol.lower(), keeper.lower()} <= touched
        assert {w.lower() for w in weak[:2]} <= touched

        # --- compared with a fresh read at B --------------------------------------------------
        market_b = await aave_market.discover(rpc, info.addresses_provider, block_b)
        # Configuration changes (setReserveStableRateBorrowing) are not mirrored: all else is.
        assert [replace(r, config=m.config) for r, m in zip(
            book.market.reserves, market_b.reserves, strict=True)] == list(market_b.reserves)
        users = book.users
        assert set(USERS) | {alice.lower(), bob.lower(), carol.lower()} <= set(users)
        fresh = await aave_market.read_accounts(rpc, market_b, users, block_b)
        for who in users:
            assert book.account(who) == fresh[who], who
        timestamp = int((await rpc.call("eth_getBlockByNumber", [hex(block_b), False]))
                        ["timestamp"], 16)
        answers = await rpc.batch([
            ("eth_call", [{"to": info.pool, "data": ACCOUNT_DATA + "00" * 12 + u[2:]},
                          hex(block_b)])
            for u in users
        ])
        for who, answer in zip(users, answers, strict=True):
            chain = decode(["uint256"] * 6, bytes.fromhex(answer.removeprefix("0x")))
            assert book.health(who, timestamp) == chain[5], who
        # The scenario really exercised what it claims.
        a, b, c = (fresh[u.lower()] for u in (alice, bob, carol))
        assert b.emode_category == 1 and a.config.data == 0 and c.config.data != 0
        assert {
            ev.TOPIC_STABLE_MINT, ev.TOPIC_STABLE_BURN, ev.TOPIC_BALANCE_TRANSFER, ev.TOPIC_MINT,
            ev.TOPIC_BURN, ev.TOPIC_LIQUIDATION_CALL, ev.TOPIC_USER_EMODE_SET, ev.TOPIC_REPAY,
            ev.TOPIC_COLLATERAL_DISABLED, ev.TOPIC_COLLATERAL_ENABLED, ev.TOPIC_ANSWER_UPDATED,
            ev.TOPIC_RESERVE_DATA_UPDATED,
        } <= kinds
