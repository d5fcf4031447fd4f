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

When nobody touched the position, it may still have stopped being liquidatable: the
price moved back (a recovering crash), or interest changed its health. `outlived` tells
that apart from a fault of ours: the same call, from us, at the block we ranked it at.
If it would have succeeded there, the position changed under us (a race lost to the
market); if it fails there too, our decision was wrong and the revert counts.

`why_reverted` tells a reverted liquidation's outcome that way. The revert is journaled
before it asks, so a node that does not answer only delays the answer: it asks again twice,
then keeps the revert as it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

from keeper.chain.http import HttpRpc, RpcError
from keeper.errors import RetryableError
from keeper.execution.receipts import Logger
from keeper.types import Outcome, TxIntent

# Blocks searched before ours, back to the ranked one: with one block per transaction
# (a first-come-first-served sequencer) hundreds pass between a ranking and its send.
MAX_BLOCKS = 4_096


def _topic(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


def _position(entry: dict[str, Any]) -> tuple[int, int, int]:
    return (int(entry["blockNumber"], 16), int(entry["transactionIndex"], 16),
            int(entry["logIndex"], 16))


async def touched(
    chain: HttpRpc, accounts: Sequence[str], *, ranked_at: int, receipt: dict[str, Any],
) -> list[tuple[str, str]]:
    """(transaction hash, sender) of every transaction that logged one of `accounts` after
    the ranked block and before our transaction in `receipt`, in chain order. The first
    one not sent by us is the race's winner; one of ours is no race (our own earlier
    liquidation of the account: the revert counts)."""
    mined_at = int(receipt["blockNumber"], 16)
    our_index = int(receipt["transactionIndex"], 16)
    start = max(ranked_at + 1, mined_at - MAX_BLOCKS)
    if not accounts or start > mined_at:
        return []
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
        return []
    senders = await chain.batch([("eth_getTransactionByHash", [h]) for h in hashes])
    return [(h, str(tx.get("from", "")).lower()) for h, tx in zip(hashes, senders, strict=True)
            if tx is not None]


def winner(touches: Sequence[tuple[str, str]], me: str) -> str | None:
    """The first of `touches` (`touched`'s answer) not sent by `me`: the race's winner."""
    return next((tx_hash for tx_hash, sender in touches if sender != me.lower()), None)


async def outlived(
    chain: HttpRpc, *, sender: str, to: str, data: str, ranked_at: int,
    gas_limit: int | None = None,
) -> bool:
    """Would the call have succeeded at the block it was ranked at (so it reverted only
    because the position changed afterwards)? One `eth_call`, with the gas limit it was sent
    with (a send that ran out of gas would run out there too: our fault, not the market's);
    False when it reverts there too, or the node cannot answer for that block."""
    call: dict[str, str] = {"from": sender, "to": to, "data": data}
    if gas_limit:
        call["gas"] = hex(gas_limit)
    try:
        await chain.call("eth_call", [call, hex(ranked_at)])
    except RpcError:
        return False
    return True


async def why_reverted(
    chain: HttpRpc, address: str, intent: TxIntent, outcome: Outcome, *,
    receipt: dict[str, Any], bound: Logger,
) -> Outcome:
    """`_explained`, asked again after a node error (see the module docstring)."""
    for pause in (0.2, 1.0):
        try:
            return await _explained(chain, address, intent, outcome, receipt=receipt,
                                    bound=bound)
        except RetryableError as exc:
            bound.info("cannot tell why it reverted yet; asking again", reason=str(exc))
            await asyncio.sleep(pause)
    try:
        return await _explained(chain, address, intent, outcome, receipt=receipt, bound=bound)
    except RetryableError as exc:
        bound.warning("cannot tell why it reverted; counted as a revert", reason=str(exc))
        return outcome


async def _explained(
    chain: HttpRpc, address: str, intent: TxIntent, outcome: Outcome, *,
    receipt: dict[str, Any], bound: Logger,
) -> Outcome:
    """A reverted liquidation as a lost race when someone else took the position first, or
    the market moved it out of reach; else the revert as it is (it counts)."""
    opp = intent.opportunity
    # A competitor (or the borrower) took the position first: a lost race, not a fault.
    accounts = [o.account for o in intent.opportunities]
    others = await touched(chain, accounts, ranked_at=opp.block, receipt=receipt)
    won_by = winner(others, address)
    if won_by is None:
        # Nobody else touched it: lost to the market only if we did not either and the
        # call was valid where it was ranked (else the revert is ours and counts).
        # A send that burnt (nearly) all its gas may have run out of it: then ask with the
        # limit it had, so an out-of-gas is ours, not the market's (a Perp liquidation used
        # 2,597,672 of 2,600,000). Any other revert is asked without a limit: it failed on
        # the state, not the gas.
        used = int(str(receipt.get("gasUsed", "0x0")), 16)
        limit = intent.gas_limit if used * 64 >= intent.gas_limit * 63 else None
        if not others and opp.block and await outlived(
                chain, sender=address, to=intent.call.to, data=intent.call.data,
                ranked_at=opp.block, gas_limit=limit):
            bound.info("lost the race to the market: no longer liquidatable when mined",
                       ranked_at=opp.block)
            return dataclasses.replace(
                outcome, status="lost",
                reason=f"no longer liquidatable: valid at block {opp.block}, not when mined")
        return outcome
    bound.info("lost the race", winner=won_by)
    return dataclasses.replace(outcome, status="lost", winner=won_by,
                               reason=f"lost race: {won_by} took the position first")
