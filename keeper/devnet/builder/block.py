"""One block of the devnet builder: simulate, order by payment, include, mine.

In the next block's context (its number, timestamp, base fee and coinbase; eth_simulateV1
on the parent, nothing mined) the builder
1. simulates every candidate bundle alone and measures what it pays the builder (the
   coinbase's balance gain: priority fees plus direct transfers to block.coinbase); a
   bundle that fails alone (a transaction reverts without canRevert / revertingTxHashes,
   a nonce already used or out of order, no funds) is dropped;
2. takes the bundles by payment, highest first, and simulates each behind those already
   taken; one that shares a transaction with them, or fails behind them, is dropped whole
   (atomicity: all of a bundle's transactions or none). A backrun bundle
   `[target, backrun]` thus lands with the backrun right behind its target;
3. appends the public pool by effective tip, highest first (nonce order per sender);
4. sends exactly that list to anvil's pool, in order, and mines it as one block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from keeper.devnet.builder.bundles import Bundle, BundleTx
from keeper.devnet.builder.chain import AnvilClient, AnvilRpcError, next_base_fee
from keeper.devnet.builder.txs import RawTx


@dataclass
class Candidate:
    """A bundle's fate in one block."""

    hash: str
    kind: str
    endpoints: list[int]
    payment: int = 0
    status: str = "pending"  # included | dropped
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"bundleHash": self.hash, "kind": self.kind, "endpoints": self.endpoints,
                "payment": hex(self.payment), "status": self.status, "reason": self.reason}


@dataclass
class BlockReport:
    """What went into one block and why the rest did not."""

    number: int
    timestamp: int
    base_fee: int
    transactions: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    public: list[str] = field(default_factory=list)
    mismatch: str = ""  # set if anvil mined something else than the plan (never expected)
    seconds: float = 0.0  # simulation and mining, wall time

    def as_json(self) -> dict[str, Any]:
        return {"number": hex(self.number), "timestamp": hex(self.timestamp),
                "baseFeePerGas": hex(self.base_fee), "transactions": self.transactions,
                "bundles": [c.as_json() for c in self.candidates],
                "publicTransactions": self.public, "mismatch": self.mismatch,
                "buildSeconds": round(self.seconds, 4)}


def public_order(pool: list[RawTx], base_fee: int, taken: list[BundleTx]) -> list[RawTx]:
    """The public pool by effective tip, highest first, each sender's transactions in nonce
    order (a sender's next transaction competes once the one before it is placed); none
    that is in a taken bundle or has the nonce of one (anvil would take it as a
    replacement of the bundle's transaction)."""
    used = {(t.tx.sender, t.tx.nonce) for t in taken}
    queues: dict[str, list[RawTx]] = {}
    for tx in sorted(pool, key=lambda t: t.nonce):
        if (tx.sender, tx.nonce) not in used:
            queues.setdefault(tx.sender, []).append(tx)
    out: list[RawTx] = []
    while queues:
        sender = max(queues, key=lambda s: (queues[s][0].tip(base_fee), s))
        out.append(queues[sender].pop(0))
        if not queues[sender]:
            del queues[sender]
    return out


async def build_block(
    chain: AnvilClient, bundles: list[Bundle], public: list[RawTx], *, timestamp: int | None = None
) -> BlockReport:
    """Build and mine the next block from `bundles` (already merged and valid for it) and
    the public pool; the report of what it holds."""
    started = time.monotonic()
    # Anvil's own pool should be empty (the builder keeps every pool); whatever reached it
    # some other way (a direct call to anvil) would be mined into the block unplanned.
    await chain.call("anvil_dropAllTransactions")
    parent = await chain.latest()
    base_fee = next_base_fee(parent)
    when = max(int(parent["timestamp"], 16) + 1, timestamp or int(time.time()))
    report = BlockReport(int(parent["number"], 16) + 1, when, base_fee)
    at: dict[str, Any] = {"parent": parent, "base_fee": base_fee, "timestamp": when}

    candidates = {b.hash: Candidate(b.hash, b.kind, sorted(b.endpoints)) for b in bundles}
    report.candidates = list(candidates.values())
    alone: list[Bundle] = []
    gas: dict[str, int] = {}
    for bundle in bundles:
        applied = await chain.simulate(bundle.txs, **at)
        candidate = candidates[bundle.hash]
        candidate.payment, gas[bundle.hash] = applied.payment, applied.gas_used
        if applied.ok:
            alone.append(bundle)
        else:
            candidate.status, candidate.reason = "dropped", applied.reason
    # Highest payment first; ties go to the earlier hash so a rerun builds the same block.
    alone.sort(key=lambda b: (-candidates[b.hash].payment, b.hash))

    plan: list[BundleTx] = []
    taken: set[str] = set()
    room = int(parent["gasLimit"], 16)  # the block's gas left for the next bundle
    for bundle in alone:
        candidate = candidates[bundle.hash]
        shared = [t.tx.hash for t in bundle.txs if t.tx.hash in taken]
        if shared:
            candidate.status, candidate.reason = "dropped", f"conflict: {shared[0]} taken"
            continue
        behind = await chain.simulate(bundle.txs, after=plan, **at) if plan else None
        if behind is not None and not behind.ok:
            candidate.status = "dropped"
            candidate.reason = f"fails after better bundles: {behind.reason}"
            continue
        if behind is not None:  # what it pays and uses behind the bundles before it
            candidate.payment, gas[bundle.hash] = behind.payment, behind.gas_used
        if gas[bundle.hash] > room:
            candidate.status, candidate.reason = "dropped", "block full"
            continue
        room -= gas[bundle.hash]
        candidate.status = "included"
        plan.extend(bundle.txs)
        taken.update(t.tx.hash for t in bundle.txs)

    # The bundles, then the public pool by tip; anvil refuses a public transaction whose
    # nonce a bundle used, and leaves one behind a nonce gap in its pool (dropped below).
    for item in plan:
        try:
            await chain.call("eth_sendRawTransaction", item.tx.raw_hex)
        except AnvilRpcError as exc:  # simulated fine a moment ago: reported, never expected
            report.mismatch = f"{item.tx.hash} refused at the final block: {exc}"
    sent_public = []
    for tx in public_order(public, base_fee, plan):
        try:
            await chain.call("eth_sendRawTransaction", tx.raw_hex)
            sent_public.append(tx.hash)
        except AnvilRpcError:
            continue
    block = await chain.mine(base_fee, when)
    await chain.call("anvil_dropAllTransactions")
    report.transactions = [str(h) for h in block["transactions"]]
    report.public = report.transactions[len(plan):]
    planned = [t.tx.hash for t in plan]
    if report.transactions[:len(plan)] != planned and not report.mismatch:
        report.mismatch = f"planned {planned}, anvil mined {report.transactions}"
    elif [h for h in sent_public if h in report.public] != report.public:
        report.mismatch = f"public {report.public} not among or not in the order sent"
    report.seconds = time.monotonic() - started
    return report
