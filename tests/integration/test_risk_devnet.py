"""`keeper risk` on the devnet's seeded book: the curve starts at the positions already
liquidatable, grows with the drop, and one point equals what the Pool reports once the
price has really moved."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from web3 import Web3

from keeper.demo import devnet_strategies
from keeper.liquidation_curve import DEFAULT_DROPS, CurvePoint
from keeper.risk import RiskView, devnet_curve
from keeper.types import BlockRef
from strategies.aave_v3 import risk as aave_risk
from strategies.aave_v3.strategy import AaveV3Strategy
from tests.conftest import Devnet
from tests.integration.helpers import SPECS, set_price

WAD = 10**18
GET_USER_ACCOUNT_DATA = [{
    "name": "getUserAccountData", "type": "function", "stateMutability": "view",
    "inputs": [{"name": "user", "type": "address"}],
    "outputs": [{"name": n, "type": "uint256"} for n in (
        "totalCollateralBase", "totalDebtBase", "availableBorrowsBase",
        "currentLiquidationThreshold", "ltv", "healthFactor")],
}]


def _curve(devnet: Devnet) -> tuple[RiskView, list[Any]]:
    strategies = devnet_strategies(devnet.info, devnet.info.accounts.liquidator)
    return asyncio.run(devnet_curve(devnet.info.rpc_url, strategies)), strategies


def _series(view: RiskView, protocol: str, symbol: str) -> list[CurvePoint]:
    token = devnet_token(view, symbol)
    points = [p for p in view.points if p.protocol == protocol and p.asset == token]
    return sorted(points, key=lambda p: p.drop_pct)


def devnet_token(view: RiskView, symbol: str) -> str:
    return next(t for t, s in view.symbols.items() if s == symbol)


def test_curve_starts_at_the_unhealthy_and_grows_with_the_drop(devnet: Devnet) -> None:
    view, strategies = _curve(devnet)
    head = BlockRef(view.block, "", "", devnet.w3.eth.get_block("latest")["timestamp"])
    for strategy in strategies:
        unhealthy = sum(p.health_factor < WAD for p in strategy.positions(head))
        points = [p for p in view.points if p.protocol == strategy.name and p.drop_pct == 0]
        assert points and all(p.liquidatable == unhealthy for p in points), strategy.name
    # WBTC is only ever collateral on the devnet: every figure grows as it falls.
    for protocol in ("aave_v3", "morpho_blue"):
        series = _series(view, protocol, "WBTC")
        assert [p.drop_pct for p in series] == list(DEFAULT_DROPS)
        counts, bad = [p.liquidatable for p in series], [p.bad_debt for p in series]
        assert counts == sorted(counts) and bad == sorted(bad) and counts[-1] > counts[0]


def test_each_aave_market_is_its_own_protocol(devnet: Devnet) -> None:
    """Two Aave markets (one strategy instance each) are two curves, named after their
    market: with one name, the v3.6 market's points hid the v3.0 market's."""
    markets = tuple(devnet.info.aave_markets())
    assert len(markets) == 2
    strategies = devnet_strategies(devnet.info, devnet.info.accounts.liquidator,
                                   aave_markets=markets, morpho=False)
    view = asyncio.run(devnet_curve(devnet.info.rpc_url, strategies))
    positions = {p.protocol: p.positions for p in view.points if p.drop_pct == 0}
    assert set(positions) == set(markets)
    for strategy in strategies:
        assert isinstance(strategy, AaveV3Strategy)
        head = BlockRef(view.block, "", "", devnet.w3.eth.get_block("latest")["timestamp"])
        with_debt = sum(p.debt_value > 0 for p in strategy.positions(head))
        assert positions[strategy.name] == with_debt > 0, strategy.name


def test_a_point_equals_the_pool_after_the_price_really_moves(devnet: Devnet) -> None:
    strategies = devnet_strategies(devnet.info, devnet.info.accounts.liquidator)
    view = asyncio.run(devnet_curve(devnet.info.rpc_url, strategies, (0,)))
    aave = next(s for s in strategies if isinstance(s, AaveV3Strategy))
    weth = devnet_token(view, "WETH")
    # The book was synced before the move; the price goes 20 % down on chain.
    set_price(devnet, "WETH", SPECS["WETH"].usd_price * Decimal("0.8"))
    block = devnet.w3.eth.get_block("latest")
    accounts = [aave.book.account(user) for user in aave.book.users]
    predicted = aave_risk.curve_point(aave.book.market, accounts, block["timestamp"], weth, 20)
    pool = devnet.w3.eth.contract(address=Web3.to_checksum_address(devnet.info.aave_v3.pool),
                                  abi=GET_USER_ACCOUNT_DATA)
    with_debt = liquidatable = collateral = bad_debt = 0
    for user in aave.book.users:
        total_collateral, total_debt, *_, health = pool.functions.getUserAccountData(
            Web3.to_checksum_address(user)).call(block_identifier=block["number"])
        if total_debt == 0:
            continue
        with_debt += 1
        if health < WAD:
            liquidatable += 1
            collateral += total_collateral
        bad_debt += max(0, total_debt - total_collateral)
    assert predicted.liquidatable > 0
    assert (predicted.positions, predicted.liquidatable, predicted.liquidatable_collateral,
            predicted.bad_debt) == (with_debt, liquidatable, collateral, bad_debt)
