"""Wallet or flash, per liquidation: which flashable candidates the sending account pays
from its own debt-token balance (`Dispatcher.size` asks before ranking).

A liquidation the flash executor could fund may also be paid with tokens the account
holds, as a competitor holding the same balances does. Paid from the wallet it swaps
nothing when mined (the seized collateral stays with the account): no flash fee, no swap
gas in the transaction, and no exit that moves the pools later liquidations are valued on
(`ranking.swaps_of`); ranked at flash terms, a crash's liquidations of one collateral were
mostly found unprofitable once the exits before them were counted, and the competitor took
them from its wallet. So a flashable candidate whose strategy pulls from the wallet
(`Candidate.from_wallet`) goes wallet-paid when the balance still unpromised covers its
whole `max_repay`, else through the flash executor (which may lend more than the wallet
holds).

Never promised twice: candidates that only the wallet can pay (not flashable) are served
first, each up to the balance as before; what they may draw is taken off, and the rest is
handed out greedily, the candidates worth most first (`max_repay` at the DEX's mid price in
the quote token: the bonus grows with the repay). `slots` caps how many go wallet-paid: in
bundle mode a liquidation paid from the account's tokens needs nonce lane 0
(keeper/execution/lanes.py), which holds one unresolved bundle at a time; a dispatch's
wallet-paid liquidations all go in one bundle from it, which later dispatches' join
(keeper/execution/bundles_chain.py), so none only while it holds a bundle behind an oracle
transaction or a flash liquidation. And only
where the allowance is known to be in place: a first send of a (token, spender) pair
approves and waits for that approval to be mined, which flash needs none of.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from keeper.dex.venue import Venue
from keeper.types import Candidate


@dataclass(frozen=True)
class WalletTerms:
    """What the sender allows now: `slots`, how many liquidations paid from the wallet one
    dispatch can send (None: no cap); `approved(token, spender)`, the allowance is in place
    (a first send would approve and wait for that approval to be mined: behind a backrun,
    the whole dispatch waited a block, and a rival took every position it held)."""

    slots: int | None
    approved: Callable[[str, str], bool]


def wallet_terms(executor: Any) -> WalletTerms:
    """The executor's terms: no cap on the public path (`Capital.reserve` decides), nor in
    bundle mode while nonce lane 0 is free or holds only its chain of plain bundles (they
    join it: keeper/execution/bundles_chain.py); none while it holds anything else.
    Approved: the pairs `Allowances` knows to be in place."""
    bundles = getattr(executor, "bundles", None)
    slots = None if bundles is None or bundles.chain.open() else 0
    allowances = getattr(executor, "allowances", None)  # None: a stand-in that approves none
    return WalletTerms(slots, lambda token, spender: allowances is not None
                       and allowances.since(token, spender) is not None)


def split_funding(
    flashable: Sequence[Candidate], direct: Sequence[Candidate], free: Mapping[str, int],
    prices: Venue, quote_token: str, *, terms: WalletTerms,
) -> tuple[list[Candidate], list[Candidate]]:
    """(wallet-paid, flashed): `flashable` split as the module docstring says. `free`: the
    balance of each debt token not committed to sends in flight; `direct`: the candidates
    only the wallet can pay (their draw comes first); `prices`: the DEX book whose mid
    price values a debt token in `quote_token` (unknown: ranked last); `terms`: the slots,
    and only pairs whose allowance is in place."""
    left = dict(free)
    for c in direct:
        if c.from_wallet and c.debt in left:
            left[c.debt] -= min(c.max_repay, max(left[c.debt], 0))

    def worth(c: Candidate) -> tuple[Fraction, str]:
        unit = prices.mid_price(c.debt, quote_token)
        return (c.max_repay * unit if unit is not None else Fraction(0), c.key)

    wallet: list[Candidate] = []
    chosen: set[str] = set()
    slots = terms.slots
    for c in sorted((c for c in flashable if c.from_wallet and c.max_repay > 0
                     and terms.approved(c.debt, c.spender)), key=worth, reverse=True):
        if slots is not None and len(wallet) >= slots:
            break
        if left.get(c.debt, 0) >= c.max_repay:
            left[c.debt] -= c.max_repay
            wallet.append(c)
            chosen.add(c.key)
    return wallet, [c for c in flashable if c.key not in chosen]
