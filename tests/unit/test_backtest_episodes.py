"""Opportunities as episodes (keeper/backtest/episodes.py): when each opens and closes, its
latency, its value, and why a missed one was missed."""

from __future__ import annotations

import pytest

from keeper.backtest.episodes import (
    BELOW_MIN_PROFIT,
    CROWDED_OUT,
    NO_CAPITAL,
    NOT_SENT,
    UNPROFITABLE,
    Attempt,
    Episodes,
    Sighting,
    Taken,
)

WAD = 10**18
POS = ("aave_v3", "0xaa")
SYMBOLS = {"0xc": "WETH", "0xd": "USDC"}


def _seen(value: float | None = None, *, short: bool = False, ranked: bool = False) -> Sighting:
    return Sighting("0xc", "0xd", None if value is None else int(value * WAD), short, ranked)


def _build(episodes: Episodes, taken: dict[tuple[str, str], list[Taken]] | None = None,
           attempts: dict[tuple[str, str], list[Attempt]] | None = None,
           ) -> list:  # type: ignore[type-arg]
    return episodes.build(taken or {}, attempts or {}, quote_unit=WAD,
                          min_profit_wei=WAD // 100, symbol=SYMBOLS)


def test_a_liquidation_closes_an_episode_and_latency_counts_from_its_first_block() -> None:
    episodes = Episodes()
    episodes.sample(10, {POS: _seen(1.0)})
    episodes.sample(11, {POS: _seen(1.2)})
    episodes.sample(12, {POS: _seen(0.5)})  # still liquidatable after the first piece
    episodes.sample(13, {})
    taken = {POS: [Taken(12, 11, WAD, "0xc", "0xd")]}
    first, second = _build(episodes, taken)
    assert (first.first_block, first.taken_by, first.latency_blocks, first.liquidations) == (
        10, "keeper", 2, 1)
    assert first.profit_quote == pytest.approx(1.0) and first.value_wei == WAD
    assert (first.collateral, first.debt) == ("WETH", "USDC")
    # The rest of the position from block 12 on: never taken, valued at its best block.
    assert (second.first_block, second.taken_by, second.valued_at) == (12, None, 12)
    assert second.profit_quote == pytest.approx(0.5) and second.missed_because == CROWDED_OUT


def test_latency_is_never_negative_when_the_samples_missed_the_position() -> None:
    # Liquidated within one step, before any sample held it: dated by its ranked block.
    episodes = Episodes()
    episodes.sample(20, {})
    episodes.sample(22, {})
    (only,) = _build(episodes, {POS: [Taken(22, 21, WAD, "0xc", "0xd")]})
    assert (only.first_block, only.latency_blocks, only.taken_by) == (21, 1, "keeper")


def test_a_position_that_recovers_and_falls_back_is_one_opportunity() -> None:
    episodes = Episodes()
    episodes.sample(1, {POS: _seen(2.0, short=True)})
    episodes.sample(2, {})
    episodes.sample(3, {POS: _seen(3.0, short=True)})
    (only,) = _build(episodes)
    assert (only.first_block, only.last_block) == (1, 3)
    # Valued when a liquidator with capital would have taken it: the first block it was
    # worth the minimum profit, not the best one later.
    assert only.valued_at == 1 and only.profit_quote == pytest.approx(2.0)
    assert only.missed_because == NO_CAPITAL


def test_a_missed_one_is_valued_when_it_first_pays_the_minimum() -> None:
    episodes = Episodes()
    episodes.sample(1, {POS: _seen(-0.2)})
    episodes.sample(2, {POS: _seen(0.001)})
    episodes.sample(3, {POS: _seen(0.5, short=True)})
    episodes.sample(4, {POS: _seen(0.9, short=True)})
    (only,) = _build(episodes)
    assert (only.first_block, only.valued_at, only.missed_because) == (1, 3, NO_CAPITAL)
    assert only.profit_quote == pytest.approx(0.5)
    # Never worth the minimum: at its best block.
    low = Episodes()
    low.sample(1, {POS: _seen(-0.2)})
    low.sample(2, {POS: _seen(0.001)})
    (never,) = _build(low)
    assert (never.valued_at, never.missed_because) == (2, BELOW_MIN_PROFIT)


@pytest.mark.parametrize(("sighting", "attempt", "reason"), [
    (_seen(1.0), Attempt(5, "reverted", "execution reverted"), "reverted"),
    (_seen(1.0, ranked=True), None, NOT_SENT),
    (_seen(1.0, short=True), None, NO_CAPITAL),
    (_seen(1.0), None, CROWDED_OUT),
    (_seen(0.001), None, BELOW_MIN_PROFIT),
    (_seen(-0.5), None, UNPROFITABLE),
    (_seen(None), None, UNPROFITABLE),
])
def test_why_a_missed_opportunity_was_missed(
    sighting: Sighting, attempt: Attempt | None, reason: str
) -> None:
    episodes = Episodes()
    episodes.sample(5, {POS: sighting})
    (only,) = _build(episodes, attempts={POS: [attempt]} if attempt else None)
    assert only.taken_by is None and only.missed_because == reason and only.missed_detail
    assert only.profit_quote >= 0  # a loss is worth nothing, not less


def test_samples_go_forward() -> None:
    episodes = Episodes()
    episodes.sample(5, {})
    with pytest.raises(ValueError, match="after"):
        episodes.sample(5, {})
