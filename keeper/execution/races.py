"""Lost races: which transaction took a position before our liquidation of it was mined.

A liquidation that reverts because someone else liquidated the position first (or the
borrower repaid, or the position is otherwise no longer liquidatable) is the normal
cost of competing, not a fault: it must not trip the revert breaker. The evidence is
on chain and protocol-free: a log, emitted before our transaction (after the block we
ranked it at, or earlier in the block ours was mined in) by a transaction that is not
ours, whose indexed topics name the account. Every lending protocol indexes the
borrower in its liquidation, repay and withdraw events (Aave's `LiquidationCall`,
Morpho's `Liquidate`), so one batch of three `eth_getLogs` (the account as topic 1, 2
or 3) over those few blocks finds the winner without knowing the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keeper.chain.http import HttpRpc

# Blocks searched before ours, back to the ranked one: with one block per transaction
# (a first-come-first-served sequencer) hundreds pass between a ranking and its send.
MAX_BLOCKS = 4_096


def _topic(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


def _position(entry: dict[str, Any]) -> tuple[int, int, int]:
    return (int(entry["blockNumber"], 16), int(entry["transactionIndex"], 16),
            int(entry["logIndex"], 16))


async def lost_to(
    chain: HttpRpc, accounts: Sequence[str], me: str, *, ranked_at: int,
    receipt: dict[str, Any],
) -> str | None:
    """The first transaction not sent by `me` that touched one of `accounts` after the
    block the liquidation was ranked at and before our transaction in `receipt`; None if
    none did (then the revert has another cause, and counts as one: our own earlier
    liquidation of the account is no race)."""
    mined_at = int(receipt["blockNumber"], 16)
    our_index = int(receipt["transactionIndex"], 16)
    start = max(ranked_at + 1, mined_at - MAX_BLOCKS)
    if not accounts or start > mined_at:
        return None
    topics = [_topic(a) for a in accounts]
    queries = [
        ("eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(mined_at),
                          "topics": [None] * slot + [topics]}])
        for slot in (1, 2, 3)
    ]
    answers = await chain.batch(queries)
    before = sorted(
        (entry for answer in answers for entry in (answer or [])
         if not entry.get("removed", False) and _position(entry)[:2] < (mined_at, our_index)),
        key=_position)
    hashes = list(dict.fromkeys(str(e["transactionHash"]).lower() for e in before))
    if not hashes:
        return None
    senders = await chain.batch([("eth_getTransactionByHash", [h]) for h in hashes])
    for tx_hash, tx in zip(hashes, senders, strict=True):
        if tx is not None and str(tx.get("from", "")).lower() != me.lower():
            return tx_hash
    return None
