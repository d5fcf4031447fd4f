"""Wallet or flash, per liquidation (keeper/execution/funding.py, `Dispatcher.size`): a
flashable candidate pulled from the wallet goes wallet-paid when the balance left covers
its whole max_repay, the candidates worth most first, never promising the wallet twice;
in bundle mode none while nonce lane 0 holds a bundle, and only where the allowance
is in place."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

from keeper.dex.uniswap_v2 import Pair, PairBook
from keeper.execution.dispatch import Dispatcher, LivePositions
from keeper.execution.executor import Executor
from keeper.execution.funding import WalletTerms, split_funding, wallet_terms
from keeper.execution.intents import IntentBuilder
from keeper.types import BlockRef, Candidate

WETH, USDC, DAI, WBTC = ("0x" + c * 20 for c in ("ee", "cc", "dd", "bb"))
E18 = 10**18
SPENDER = "0x" + "5e" * 20
# 1 WETH = 2,000 USDC = 2,000 DAI (USDC has 6 decimals): a unit of DAI is worth 10^-12 of
# a unit of USDC.
BOOK = PairBook([
    Pair("0x" + "01" * 20, WETH, USDC, 1_000 * E18, 2_000_000 * 10**6),
    Pair("0x" + "02" * 20, WETH, DAI, 1_000 * E18, 2_000_000 * E18),
    Pair("0x" + "03" * 20, WBTC, USDC, 10 * 10**8, 300_000 * 10**6),
])


def cand(name: str, debt: str, max_repay: int, *, from_wallet: bool = True) -> Candidate:
    return Candidate(
        strategy="s", account="0x" + name.encode().hex().rjust(40, "0"), collateral=WBTC,
        debt=debt, max_repay=max_repay, health_factor=9 * 10**17, key=f"s:{name}",
        seize=lambda r: r, gas_limit=300_000, spender=SPENDER,
        from_wallet=from_wallet)


def terms(slots: int | None = None, *, refused: str = "") -> WalletTerms:
    """`slots`, and every allowance in place but `refused`'s (a token)."""
    return WalletTerms(slots, lambda token, spender: token != refused)


def keys(cs: Sequence[Candidate]) -> list[str]:
    return [c.key for c in cs]


def test_covered_goes_wallet_paid_else_flash_best_first() -> None:
    """100 USDC free: the 80-USDC liquidation (worth most) takes 80; the 50 no longer fits
    (flash); the 15 still does. A DAI one worth more than all of them is tried first, and its
    token has no balance: flash."""
    big, mid, small = cand("big", USDC, 80 * 10**6), cand("mid", USDC, 50 * 10**6), \
        cand("small", USDC, 15 * 10**6)
    dai = cand("dai", DAI, 500 * E18)
    wallet, flashed = split_funding([small, mid, dai, big], [], {USDC: 100 * 10**6, DAI: 0},
                                    BOOK, WETH, terms=terms())
    assert keys(wallet) == ["s:big", "s:small"]
    assert keys(flashed) == ["s:mid", "s:dai"]  # in their given order


def test_the_best_is_by_value_in_the_quote_token_not_by_units() -> None:
    """400 DAI (18 decimals) is worth more than 300 USDC (6 decimals), though fewer units
    would say otherwise: with one slot, the DAI one goes wallet-paid."""
    usdc, dai = cand("usdc", USDC, 300 * 10**6), cand("dai", DAI, 400 * E18)
    free = {USDC: 10**12, DAI: 10**24}
    wallet, flashed = split_funding([usdc, dai], [], free, BOOK, WETH, terms=terms(1))
    assert keys(wallet) == ["s:dai"] and keys(flashed) == ["s:usdc"]
    assert split_funding([usdc, dai], [], free, BOOK, WETH, terms=terms(0)) == ([], [usdc, dai])
    # Without DAI's allowance in place (its first send would wait for an approval): USDC.
    wallet, _ = split_funding([usdc, dai], [], free, BOOK, WETH, terms=terms(1, refused=DAI))
    assert keys(wallet) == ["s:usdc"]


def test_what_only_the_wallet_can_pay_is_served_first() -> None:
    """A direct (not flashable) liquidation of 70 USDC draws first: of 100 free, 30 are left,
    not enough for a flashable 40; one not drawn from the wallet (a Perp action) takes
    nothing, and a flashable one not drawn from the wallet is never wallet-paid."""
    direct = [cand("direct", USDC, 70 * 10**6), cand("perp", USDC, 10**15, from_wallet=False)]
    flashable = [cand("f40", USDC, 40 * 10**6), cand("f30", USDC, 30 * 10**6),
                 cand("nw", USDC, 1, from_wallet=False)]
    wallet, flashed = split_funding(flashable, direct, {USDC: 100 * 10**6}, BOOK, WETH,
                                    terms=terms())
    assert keys(wallet) == ["s:f30"] and keys(flashed) == ["s:f40", "s:nw"]


def test_bundle_mode_pays_from_the_wallet_while_lane_0_is_free_or_chained() -> None:
    lane0_open = [True]  # free, or holding only its chain of plain bundles (joined)
    chain = SimpleNamespace(open=lambda: lane0_open[0])
    allowances = Allowed({(USDC, SPENDER)})
    executor = SimpleNamespace(bundles=SimpleNamespace(chain=chain), allowances=allowances)
    public = wallet_terms(SimpleNamespace(allowances=allowances))
    assert public.slots is None  # Capital.reserve decides
    assert public.approved(USDC, SPENDER) and not public.approved(DAI, SPENDER)
    assert wallet_terms(executor).slots is None  # one bundle from lane 0 carries them all
    lane0_open[0] = False  # behind a backrun, or a flash liquidation on it
    assert wallet_terms(executor).slots == 0


class Allowed:
    """`Allowances.since`: the pairs known in place."""

    def __init__(self, pairs: set[tuple[str, str]]) -> None:
        self.pairs = pairs

    def since(self, token: str, spender: str) -> int | None:
        return 0 if (token, spender) in self.pairs else None


class Funds:
    """The executor's side of `size`: balances, allowances (recorded), no native balance."""

    native_balance = None
    chain = None

    def __init__(self, free: dict[str, int]) -> None:
        self.free = free
        self.allowances = Allowed({(USDC, SPENDER), (DAI, SPENDER)})
        self.asked: list[str] = []
        self.looked: list[tuple[str, str]] = []

    async def available(self, tokens: Sequence[str], block: int | None = None) -> dict[str, int]:
        self.asked += tokens
        return {t: self.free.get(t, 0) for t in tokens}

    async def look_allowances(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.looked += pairs


class Lenders:
    async def refresh(self, chain: Any, debts: Sequence[str]) -> None:
        return None


class Builder:
    """The intent builder's side of `size`: every USDC candidate flashable, flash sizing
    marks the fee (what tells ranking and `intent` a candidate is flashed)."""

    flash = Lenders()
    exits = BOOK
    quote_token = WETH

    def flashable(self, c: Candidate) -> bool:
        return c.debt == USDC

    def flash_sized(self, cs: Sequence[Candidate]) -> list[Candidate]:
        return [dataclasses.replace(c, fee=lambda repay: 0) for c in cs]


async def test_size_sends_a_covered_flashable_candidate_from_the_wallet() -> None:
    """Through `Dispatcher.size`: the covered one comes back unflashed (no fee: the
    strategy's own call, paid from the wallet), the other flashed; the balance and the
    allowance of the flashable ones' debt token are read with the rest."""
    funds = Funds({USDC: 60 * 10**6, DAI: 5 * E18})
    d = Dispatcher(cast(Executor, funds), cast(IntentBuilder, Builder()), LivePositions())
    covered, too_big = cand("covered", USDC, 50 * 10**6), cand("big", USDC, 90 * 10**6)
    direct = cand("direct", DAI, 9 * E18)
    head = BlockRef(7, "0x07", "0x06", 0)
    sized = {c.key: c for c in await d.size([covered, too_big, direct], head)}
    assert sized["s:covered"].fee is None and sized["s:covered"].max_repay == 50 * 10**6
    assert sized["s:big"].fee is not None and sized["s:big"].max_repay == 90 * 10**6
    assert sized["s:direct"].fee is None and sized["s:direct"].max_repay == 5 * E18
    assert sorted(funds.asked) == sorted([USDC, DAI])
    assert (USDC, SPENDER) in funds.looked
