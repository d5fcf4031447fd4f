"""Batching: which ranked liquidations share one transaction through the flash executor.

One transaction per liquidation pays the fixed cost every time: 21,000 gas, the flash
loan, the sale of the surplus into the quote token, and a nonce that queues behind the
others. The executor contract takes several liquidations of one debt token in one
`execute`: one loan of their summed repays, one profit swap, one nonce (measured on the
devnet: 5 liquidations in one transaction 1,050,735 gas against 1,951,198 in five).

A batch is all or nothing: if one of its liquidations fails (taken by a competitor first,
a pool moved past its min-out), the whole transaction reverts. So batches are formed
only where the saving is certain and the ranking's valuation stays exact:

- only liquidations the flash executor funds (`batchable`), of the same debt token;
- at most `max_size` per transaction (1 turns batching off);
- the lender must be able to lend the batch's total (`fits`);
- a liquidation joins a batch ahead of its rank only if no transaction it would jump
  over touches one of its pools (`touches`): the ranking valued every liquidation on the
  pools as the ones ranked before it leave them, and that must stay true once sent.

Sending order stays the rank order of each transaction's best liquidation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from keeper.types import Opportunity

Send = tuple[Opportunity, ...]
"""One transaction: its liquidations in rank order (the first one leads it)."""


def group_sends(
    ranked: Sequence[Opportunity],
    *,
    batchable: Callable[[Opportunity], bool],
    touches: Callable[[Opportunity], frozenset[str]],
    fits: Callable[[Sequence[Opportunity]], bool],
    max_size: int,
) -> list[Send]:
    """Ranked opportunities (best first) grouped into transactions, in sending order."""
    sends: list[list[Opportunity]] = []
    open_batch: dict[str, int] = {}  # debt token -> index of the newest batch it may join
    for opp in ranked:
        index = open_batch.get(opp.debt) if max_size > 1 and batchable(opp) else None
        if index is not None and _may_join(sends, index, opp, touches, fits, max_size):
            sends[index].append(opp)
            continue
        sends.append([opp])
        if batchable(opp):
            open_batch[opp.debt] = len(sends) - 1
    return [tuple(send) for send in sends]


def _may_join(  # noqa: PLR0917 (group_sends' own arguments, passed on)
    sends: list[list[Opportunity]],
    index: int,
    opp: Opportunity,
    touches: Callable[[Opportunity], frozenset[str]],
    fits: Callable[[Sequence[Opportunity]], bool],
    max_size: int,
) -> bool:
    batch = sends[index]
    if len(batch) >= max_size:
        return False
    pools = touches(opp)
    # Everything sent after this batch's lead and ranked before `opp` would now follow it.
    for later in sends[index + 1:]:
        if any(pools & touches(other) for other in later):
            return False
    return fits([*batch, opp])


def split_by_weight(total: int, weights: Sequence[int]) -> list[int]:
    """`total` shared in proportion to `weights` (negative ones count as 0), summing exactly
    to `total`; the rounding remainder goes to the first share."""
    clipped = [max(w, 0) for w in weights]
    whole = sum(clipped)
    if not weights:
        return []
    if whole == 0:
        return [total] + [0] * (len(weights) - 1)
    shares = [total * w // whole for w in clipped]
    shares[0] += total - sum(shares)
    return shares
