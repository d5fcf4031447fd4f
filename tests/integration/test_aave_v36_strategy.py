"""The Aave strategy on the devnet's v3.6 market, through its public contract.

- sync tells the rule set from the pool (POOL_REVISION 10) and marks the silent WSTETH
  adapter as polled; `refresh` follows its price (no log at all) and a Chainlink proxy's
  switch to a new aggregator within the block;
- after a crash, the candidates (through the float screen) are exactly those of the exact
  scan of every account, so the screen has no false negative with such reserves; every
  candidate offers only sizes the pool accepts;
- a v3.6 account read through the lens and through the per-call path gives the same book.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError

from keeper.chain.http import HttpRpc
from keeper.devnet.aave_origin import start_grace_period
from keeper.devnet.aave_origin_artifacts import (
    configurator_artifact,
    eac_aggregator_proxy,
    origin_artifacts,
    pool_artifact,
)
from keeper.devnet.deployer import Deployer
from keeper.devnet.tokens import post_price, price_feed, to_feed_answer
from keeper.strategy import StrategyContext
from keeper.types import BlockRef, Candidate
from strategies.aave_v3 import STRATEGY, AaveV3Config, AaveV3Strategy, liquidation_v36
from strategies.aave_v3 import market as aave_market
from strategies.aave_v3.rules import RuleSet
from tests.conftest import Devnet
from tests.integration.helpers import SPECS, contract, liquidator
from tests.integration.test_aave_v36_parity import _adapter, _users, _v36


async def _block(client: HttpRpc, number: int) -> BlockRef:
    head = await client.call("eth_getBlockByNumber", [hex(number), False])
    return BlockRef(number, head["hash"], head["parentHash"], int(head["timestamp"], 16))


def _strategy(devnet: Devnet) -> AaveV3Strategy:
    config = AaveV3Config(addresses_provider=_v36(devnet).addresses_provider)
    return STRATEGY.create(config, StrategyContext(devnet.info.chain_id, liquidator(devnet)))


async def _advance(client: HttpRpc, strategy: AaveV3Strategy, first: int, last: int) -> BlockRef:
    """What the engine does per block: apply the subscribed logs, then refresh."""
    block = await _block(client, first)
    for number in range(first, last + 1):
        block = await _block(client, number)
        strategy.apply([e for f in strategy.subscriptions()
                        for e in await client.get_logs(f, number, number)], block)
        await strategy.refresh(client, block)
    return block


def _exact(strategy: AaveV3Strategy, block: BlockRef) -> set[tuple[str, str, str]]:
    """Every liquidatable pair with an accepted size, from every account (no screen)."""
    market = strategy.book.market
    return {(c.account, c.collateral, c.debt) for user in strategy.book.users
            for c in liquidation_v36.candidates(
                market, strategy.book.account(user), block.timestamp, strategy, 450_000)}


async def test_v36_strategy_follows_silent_prices_and_proxy_switches(devnet: Devnet) -> None:
    info, w3 = _v36(devnet), devnet.w3
    deployer = Web3.to_checksum_address(devnet.info.accounts.deployer)
    async with HttpRpc(devnet.info.rpc_url) as client:
        head = await _block(client, w3.eth.block_number)
        strategy = _strategy(devnet)
        await strategy.sync(client, head)
        market = strategy.book.market
        assert market.rules is RuleSet.V3_6 and market.revision == 10
        wsteth = market.reserve(info.tokens["WSTETH"].address)
        weth = market.reserve(info.tokens["WETH"].address)
        assert wsteth.polled and not weth.polled
        oracle = market.oracle

        async def oracle_price(asset: str, number: int) -> int:
            answer = await client.eth_call(
                oracle, "0xb3596f07" + "00" * 12 + asset.removeprefix("0x"), number)
            return int(answer, 16)

        # The ratio falls 10 % with no log at all: the next block's refresh has it.
        Deployer(w3, deployer).send(_adapter(devnet).functions.setRatio(108 * 10**16, 0))
        block = await _advance(client, strategy, head.number + 1, w3.eth.block_number)
        assert strategy.book.market.reserve(wsteth.asset).price == await oracle_price(
            wsteth.asset, block.number)
        # The WETH proxy switches to a new aggregator (its price 1,500): followed at once.
        feed = Deployer(w3, deployer).deploy(price_feed(), 8, "WETH / USD 2",
                                             to_feed_answer(Decimal(1500)))
        proxy = contract(devnet, eac_aggregator_proxy(), info.eac_proxies["WETH"])
        Deployer(w3, deployer).send(proxy.functions.proposeAggregator(feed.address))
        Deployer(w3, deployer).send(proxy.functions.confirmAggregator(feed.address))
        start = block.number + 1
        block = await _advance(client, strategy, start, w3.eth.block_number)
        moved = strategy.book.market.reserve(weth.asset)
        assert moved.price == to_feed_answer(Decimal(1500))
        assert moved.price_feed == feed.address.lower() and moved.polled
        # A later answer of the new aggregator is followed too (its log or the poll).
        post_price(w3, feed.address, Decimal(1400), deployer)
        block = await _advance(client, strategy, block.number + 1, w3.eth.block_number)
        assert strategy.book.market.reserve(weth.asset).price == to_feed_answer(Decimal(1400))
        assert strategy.book.market.reserve(weth.asset).price == await oracle_price(
            weth.asset, block.number)
        # The crash this made: the screen's candidates are the exact scan's.
        found: list[Candidate] = list(strategy.candidates(block))
        assert {(c.account, c.collateral, c.debt) for c in found} == _exact(strategy, block)
        assert found, "a WETH at 1,400 liquidates no v3.6 account"
        for c in found:
            assert c.repay_ranges and all(1 <= lo <= hi <= c.max_repay
                                          for lo, hi in c.repay_ranges)
            assert c.account != liquidator(devnet).lower()


async def test_v36_crash_candidates_have_no_false_negative(devnet: Devnet) -> None:
    w3 = devnet.w3
    async with HttpRpc(devnet.info.rpc_url) as client:
        strategy = _strategy(devnet)
        head = await _block(client, w3.eth.block_number)
        await strategy.sync(client, head)
        deployer = devnet.info.accounts.deployer
        seen = 0
        for drop in ("0.95", "0.85", "0.75", "0.65"):
            post_price(w3, devnet.info.feeds["WETH"], SPECS["WETH"].usd_price * Decimal(drop),
                       deployer)
            post_price(w3, devnet.info.feeds["WBTC"], SPECS["WBTC"].usd_price * Decimal(drop),
                       deployer)
            block = await _advance(client, strategy, head.number + 1, w3.eth.block_number)
            head = block
            found = {(c.account, c.collateral, c.debt) for c in strategy.candidates(block)}
            assert found == _exact(strategy, block), drop
            seen = max(seen, len(found))
        assert seen >= 10


async def test_v36_lens_and_per_call_reads_give_the_same_accounts(devnet: Devnet) -> None:
    info = _v36(devnet)
    users = _users(devnet)
    async with HttpRpc(devnet.info.rpc_url) as client:
        block = devnet.w3.eth.block_number
        market = await aave_market.discover(client, info.addresses_provider, block)
        assert {r.stable_debt_token for r in market.reserves} == {info.mock_stable_debt.lower()}
        through_lens = await aave_market.read_accounts(client, market, users, block)
        per_call = await aave_market.read_accounts_per_call(client, market, users, block)
        assert through_lens == per_call
        assert any(a.emode_category == 2 for a in per_call.values())


def _selector(name: str) -> str:
    return keccak(text=f"{name}()").hex()[:8]


async def test_v36_grace_period_and_sentinel_hold_candidates_back(devnet: Devnet) -> None:
    """A reserve in its grace period, then the sequencer down: the strategy offers no pair
    the pool would refuse, and the pool refuses those pairs with the reasons predicted."""
    info, w3 = _v36(devnet), devnet.w3
    deployer = Deployer(w3, Web3.to_checksum_address(devnet.info.accounts.deployer))
    keeper = liquidator(devnet)
    pool = contract(devnet, pool_artifact(), info.pool)
    wbtc = info.tokens["WBTC"].address.lower()
    configurator = contract(devnet, configurator_artifact(), info.pool_configurator)
    start_grace_period(deployer, configurator, wbtc, 3600)
    post_price(w3, devnet.info.feeds["WETH"], SPECS["WETH"].usd_price * Decimal("0.75"),
               devnet.info.accounts.deployer)
    post_price(w3, devnet.info.feeds["WBTC"], SPECS["WBTC"].usd_price * Decimal("0.75"),
               devnet.info.accounts.deployer)

    def refused(c: liquidation_v36.Pair) -> str:
        call = pool.functions.liquidationCall(
            Web3.to_checksum_address(c.collateral.asset), Web3.to_checksum_address(c.debt.asset),
            Web3.to_checksum_address(c.account.user), 2**256 - 1, False)
        try:
            call.call({"from": keeper})
        except ContractLogicError as exc:
            return str(exc.data)
        return ""

    async with HttpRpc(devnet.info.rpc_url) as client:
        strategy = _strategy(devnet)
        head = await _block(client, w3.eth.block_number)
        await strategy.sync(client, head)
        found = list(strategy.candidates(head))
        assert found and not any(wbtc in (c.collateral, c.debt) for c in found)
        market = strategy.book.market
        held = [p for u in strategy.book.users
                for p in liquidation_v36.pairs(replace(market, reserves=tuple(
                    replace(r, grace_until=0) for r in market.reserves)),
                    strategy.book.account(u), head.timestamp, keeper)
                if wbtc in (p.collateral.asset, p.debt.asset)]
        assert held, "no WBTC pair to hold back"
        for pair in held[:5]:
            assert _selector("LiquidationGraceSentinelCheckFailed") in refused(pair)
        # The sequencer goes down: only HF < 0.95 may still be liquidated.
        sequencer = contract(devnet, origin_artifacts()["SequencerOracle"].abi,
                             info.sequencer_oracle)
        deployer.send(sequencer.functions.setAnswer(True, head.timestamp))
        block = await _advance(client, strategy, head.number + 1, w3.eth.block_number)
        assert not strategy.book.market.sentinel_allows
        after = list(strategy.candidates(block))
        assert all(c.health_factor < 95 * 10**16 for c in after)
        kept_back = [c for c in found if c.health_factor >= 95 * 10**16]
        assert kept_back, "no liquidatable account between HF 0.95 and 1"
        for c in kept_back[:5]:
            (pair,) = [p for p in liquidation_v36.pairs(
                replace(strategy.book.market, sentinel_allows=True),
                strategy.book.account(c.account), block.timestamp, keeper)
                if (p.collateral.asset, p.debt.asset) == (c.collateral, c.debt)]
            assert _selector("PriceOracleSentinelCheckFailed") in refused(pair)
