"""keeper.routes: a debt asset without any pool against the quote token is one config line."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import structlog.testing

from keeper.dex.uniswap_v2 import Pair, PairBook
from keeper.dex.uniswap_v3 import V3Book
from keeper.dex.v3_pool import V3Pool
from keeper.dex.venue import Venues
from keeper.errors import ConfigError
from keeper.routes import UnroutedCollateral, check_routes, unrouted
from keeper.strategy import Strategy
from keeper.types import Candidate

QUOTE, USDC, DAI, WBTC, LONELY = ("0x" + c * 20 for c in ("0e", "01", "02", "03", "04"))


class Lender:
    """Only what the check reads of a strategy: its name and its debt assets."""

    def __init__(self, name: str, debts: Sequence[str]) -> None:
        self.name = name
        self.debts = debts

    def debt_assets(self) -> Sequence[str]:
        return self.debts


def strategies(*items: Lender) -> list[Strategy]:
    return list(items)  # type: ignore[arg-type]  # the check reads name and debt_assets only


PAIRS = PairBook([Pair("0x" + "a1" * 20, USDC, QUOTE, 10**12, 10**21),
                  Pair("0x" + "a2" * 20, WBTC, USDC, 10**8, 10**12)])
V3 = V3Book([V3Pool("0x" + "b1" * 20, DAI, QUOTE, 500, 10, 2**96, 0, 10**18)])


def test_a_pool_on_any_venue_is_a_route_no_v2_pair_needed() -> None:
    venues = Venues([PAIRS, V3], via=QUOTE)
    check_routes(strategies(Lender("a", [USDC, DAI, QUOTE])), venues, QUOTE)
    # DAI's only pool is on V3: the V2 pairs alone have no route for it.
    assert unrouted(strategies(Lender("a", [USDC, DAI])), PAIRS, QUOTE) == [("a", DAI)]


def test_no_route_at_all_is_one_line_naming_the_asset_and_the_strategy() -> None:
    venues = Venues([PAIRS, V3], via=QUOTE)
    # WBTC reaches the quote token only through USDC: a debt asset needs its own pool.
    with pytest.raises(ConfigError) as raised:
        check_routes(strategies(Lender("morpho_blue", [USDC, WBTC, LONELY])), venues, QUOTE)
    message = str(raised.value)
    assert "\n" not in message
    assert f"{WBTC} (morpho_blue)" in message and f"{LONELY} (morpho_blue)" in message
    assert USDC not in message


def test_a_strategy_that_cannot_tell_its_debt_assets_is_not_checked() -> None:
    class Silent:
        name = "silent"

    check_routes([Silent()], PAIRS, QUOTE)  # type: ignore[list-item]


def test_a_collateral_without_any_route_is_one_warning_per_pair() -> None:
    """WBTC sells into USDC on its pair, USDC into DAI through the quote token (two hops);
    WBTC has no way to DAI (no pool against the quote token) and LONELY no pool at all:
    their candidates are skipped by ranking, each pair logged once, in one line."""
    venues = Venues([PAIRS, V3], via=QUOTE)

    def candidate(collateral: str, debt: str) -> Candidate:
        return Candidate(strategy="morpho_blue", account="0x" + "cc" * 20, key="k",
                         collateral=collateral, debt=debt, max_repay=1,
                         seize=lambda repay: repay, gas_limit=1, health_factor=9 * 10**17,
                         spender="0x" + "dd" * 20)

    unrouted = UnroutedCollateral()
    with structlog.testing.capture_logs() as logged:  # whatever renders the log elsewhere
        found = unrouted.note([candidate(WBTC, USDC), candidate(USDC, DAI),
                               candidate(WBTC, DAI), candidate(LONELY, USDC),
                               candidate(LONELY, USDC)], venues)
        assert unrouted.note([candidate(LONELY, USDC)], venues) == []  # once
    assert found == [(WBTC, DAI), (LONELY, USDC)]
    warned = [(e["collateral"], e["debt"], e["strategy"]) for e in logged
              if e["log_level"] == "warning" and "no route" in e["event"]]
    assert warned == [(WBTC, DAI, "morpho_blue"), (LONELY, USDC, "morpho_blue")]
