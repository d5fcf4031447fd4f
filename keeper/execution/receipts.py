"""What a receipt of ours says: how the send ended, what it earned, and where it was mined.

`Settlement` judges a mined receipt: success needs status 1 *and* a log of the
called contract (a call that silently did nothing is a revert); it journals
the result and values it in quote wei, from the Transfer logs of the receipt
itself (so concurrent sends cannot blur it). `RecentReceipts` remembers the
block each of ours was mined in until it is `FINALITY_DEPTH` deep, so a reorg
that orphans it is noticed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from keeper.chain.http import HttpRpc
from keeper.execution.journal import Journal
from keeper.types import Outcome

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
FINALITY_DEPTH = 64  # receipts this many blocks deep are final: no longer checked for reorgs

# (collateral token, debt token, collateral received, debt paid, gas paid in wei) -> quote wei
Appraiser = Callable[[str, str, int, int, int], int]
Logger = structlog.typing.FilteringBoundLogger


def transfers(receipt: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    """(token, from, to, amount) of every ERC-20 Transfer log, addresses lower-case."""
    out = []
    for entry in receipt["logs"]:
        topics = [t.lower() for t in entry["topics"]]
        if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
            continue
        out.append((entry["address"].lower(), "0x" + topics[1][-40:], "0x" + topics[2][-40:],
                    int(entry["data"], 16)))
    return out


def gas_paid(receipt: dict[str, Any]) -> int:
    """Native wei the transaction paid for gas."""
    return int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)


class RecentReceipts:
    """Blocks our transactions were mined in (number, hash), until they are final."""

    def __init__(self) -> None:
        self._mined: dict[str, tuple[int, str]] = {}  # tx hash -> (block, block hash)

    def __len__(self) -> int:
        return len(self._mined)

    def add(self, tx_hash: str, receipt: dict[str, Any]) -> None:
        """Remember where it was mined (and forget what is final below it: bounded even
        when nobody asks `orphaned`)."""
        block = int(receipt["blockNumber"], 16)
        self._mined[tx_hash] = (block, str(receipt["blockHash"]).lower())
        self.final(block)

    def final(self, head: int) -> list[str]:
        """Forget the receipts `FINALITY_DEPTH` below `head`; returns their hashes."""
        done = [h for h, (block, _) in self._mined.items() if block <= head - FINALITY_DEPTH]
        for tx_hash in done:
            del self._mined[tx_hash]
        return done

    async def orphaned(self, chain: HttpRpc) -> list[str]:
        """Those whose block is no longer on the chain (one batch of headers, none when
        nothing is remembered); they are forgotten."""
        if not self._mined:
            return []
        numbers = sorted({block for block, _ in self._mined.values()})
        answers = await chain.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        canonical = {n: str(raw["hash"]).lower() for n, raw in zip(numbers, answers, strict=True)
                     if raw is not None}  # None: a node behind us; ask again next block
        gone = [tx_hash for tx_hash, (block, block_hash) in self._mined.items()
                if block in canonical and canonical[block] != block_hash]
        for tx_hash in gone:
            del self._mined[tx_hash]
        return gone


class Settlement:
    """Turns a mined receipt of one account into a journaled, valued `Outcome`."""

    def __init__(
        self, address: str, journal: Journal, appraise: Appraiser, recent: RecentReceipts
    ) -> None:
        self.address = address
        self.journal = journal
        self.appraise = appraise
        self._recent = recent

    def settle(
        self, key: str, tx_hash: str, receipt: dict[str, Any], *, collateral: str, debt: str,
        quote: str | None, bound: Logger, call_to: str | None = None,
    ) -> Outcome:
        """Judge a receipt (success needs a log of the called contract), journal it, value it.

        `quote`: the profit arrives in that token (a flash executor); else it is valued
        from the collateral received and the debt paid.
        """
        block = int(receipt["blockNumber"], 16)
        gas_used = int(receipt["gasUsed"], 16)
        paid_gas = gas_paid(receipt)
        self._recent.add(tx_hash, receipt)
        target = (call_to or str(receipt.get("to") or "")).lower()
        emitted = any(entry["address"].lower() == target for entry in receipt["logs"])
        if int(receipt["status"], 16) == 1 and emitted:
            if quote is not None:
                realized = self._received(receipt, quote) - paid_gas
            else:
                received, paid = self._token_flows(receipt, collateral, debt)
                realized = self.appraise(collateral, debt, received, paid, paid_gas)
            self.journal.mark_confirmed(key, tx_hash, block, gas_used, realized)
            bound.info("liquidation confirmed", block=block, realized_profit=realized)
            return Outcome(key, "confirmed", tx_hash, block, gas_used, realized,
                           gas_paid=paid_gas)
        self.journal.mark_reverted(key, tx_hash, block, gas_used, -paid_gas)
        bound.warning("liquidation reverted", block=block)
        return Outcome(key, "reverted", tx_hash, block, gas_used, -paid_gas, gas_paid=paid_gas)

    def cancelled(self, key: str, tx_hash: str, receipt: dict[str, Any], bound: Logger) -> Outcome:
        """Our no-op took the nonce: the liquidation is lost, and the gas it cost recorded."""
        gas_used = int(receipt["gasUsed"], 16)
        paid_gas = gas_paid(receipt)
        self.journal.mark_reverted(key, tx_hash, int(receipt["blockNumber"], 16), gas_used,
                                   -paid_gas)
        self._recent.add(tx_hash, receipt)
        bound.info("cancelled: the opportunity was gone", tx=tx_hash)
        # Its realized profit is what it cost, as the journal records it (like a revert's).
        return Outcome(key, "lost", tx_hash, int(receipt["blockNumber"], 16), gas_used,
                       -paid_gas, reason="cancelled: no longer there", gas_paid=paid_gas)

    def lost(self, key: str, hashes: list[str], nonce: int, bound: Logger) -> Outcome:
        """None of its versions was mined: the nonce went to another transaction."""
        for tx_hash in hashes:
            self.journal.mark_dropped(key, tx_hash)
        bound.warning("its nonce went to another transaction", nonce=nonce)
        return Outcome(key, "lost", reason="nonce consumed by another transaction")

    def _token_flows(self, receipt: dict[str, Any], collateral: str, debt: str) -> tuple[int, int]:
        """(collateral received, debt paid) by this account, from the receipt's Transfer logs."""
        received = paid = 0
        for token, source, target, amount in transfers(receipt):
            if token == collateral and target == self.address:
                received += amount
            if token == debt and source == self.address:
                paid += amount
        return received, paid

    def _received(self, receipt: dict[str, Any], token: str) -> int:
        """What this account received of `token` in the receipt's Transfer logs."""
        return sum(amount for t, _source, target, amount in transfers(receipt)
                   if t == token and target == self.address)
