"""The devnet builder's view of its anvil: JSON-RPC over one aiohttp session, and one
simulation step (send transactions, mine them as one block, read what they did).

Anvil runs with `--no-mining --order fifo`: nothing is mined until the builder calls
`evm_mine`, and a mined block holds the pool's transactions in the order they were sent
(nonces per sender still respected), so the builder decides the order by the order it
sends. Every step sets the next block's base fee first: `evm_revert` does not restore
anvil's fee history, and a simulation must pay the same base fee as the block it stands for.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from keeper.devnet.builder.bundles import BundleTx

ELASTICITY = 2
BASE_FEE_CHANGE_DENOMINATOR = 8


class AnvilRpcError(RuntimeError):
    """Anvil answered a JSON-RPC error."""


def next_base_fee(parent: dict[str, Any]) -> int:
    """The base fee of the child of `parent` (EIP-1559, as go-ethereum's CalcBaseFee)."""
    base = int(parent["baseFeePerGas"], 16)
    used, limit = int(parent["gasUsed"], 16), int(parent["gasLimit"], 16)
    target = limit // ELASTICITY
    if target in (used, 0):
        return base
    if used > target:
        return base + max(1, base * (used - target) // target // BASE_FEE_CHANGE_DENOMINATOR)
    return max(0, base - base * (target - used) // target // BASE_FEE_CHANGE_DENOMINATOR)


@dataclass
class Applied:
    """What one simulation step did: `ok` if every transaction was mined, in order, and none
    reverted that may not; `payment` is the coinbase's balance gain (tips and transfers)."""

    ok: bool
    reason: str = ""
    mined: list[str] = field(default_factory=list)  # hashes mined, in block order
    receipts: list[dict[str, Any]] = field(default_factory=list)
    payment: int = 0
    gas_used: int = 0
    block: int = 0


class AnvilClient:
    """JSON-RPC to the anvil behind the builder."""

    def __init__(self, url: str, coinbase: str) -> None:
        self.url = url
        self.coinbase = coinbase
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, body: bytes) -> bytes:
        """Pass a request body to anvil unchanged; its answer, unchanged."""
        assert self._session is not None
        async with self._session.post(
            self.url, data=body, headers={"Content-Type": "application/json"}
        ) as response:
            return await response.read()

    async def call(self, method: str, *params: Any) -> Any:
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                   "params": list(params)}
        reply = json.loads(await self.forward(json.dumps(payload).encode()))
        if "error" in reply:
            raise AnvilRpcError(f"{method}: {reply['error'].get('message')}")
        return reply["result"]

    async def latest(self) -> dict[str, Any]:
        block = await self.call("eth_getBlockByNumber", "latest", False)
        assert isinstance(block, dict)
        return block

    async def balance(self, address: str) -> int:
        return int(await self.call("eth_getBalance", address, "latest"), 16)

    async def nonce(self, address: str) -> int:
        return int(await self.call("eth_getTransactionCount", address, "latest"), 16)

    async def snapshot(self) -> str:
        return str(await self.call("evm_snapshot"))

    async def revert(self, snapshot: str) -> None:
        if await self.call("evm_revert", snapshot) is not True:
            raise AnvilRpcError(f"evm_revert {snapshot} refused")

    async def mine(self, base_fee: int, timestamp: int) -> dict[str, Any]:
        """Mine the pool as one block at `timestamp` with `base_fee`; the block."""
        await self.call("anvil_setNextBlockBaseFeePerGas", hex(base_fee))
        await self.call("evm_mine", timestamp)
        return await self.latest()

    async def apply(
        self, txs: list[BundleTx], *, base_fee: int, timestamp: int, partial: bool = False
    ) -> Applied:
        """Send `txs` in order and mine them as one block on top of the current chain.

        All or nothing unless `partial` (the public pool): a transaction anvil refuses (nonce
        already used, no funds), one left unmined (a nonce gap) or one that reverts without
        `can_revert` makes the step fail; the caller reverts to its snapshot. Anvil's pool
        is emptied after the step either way.
        """
        sent: list[BundleTx] = []
        reason = ""
        for item in txs:
            try:
                await self.call("eth_sendRawTransaction", item.tx.raw_hex)
                sent.append(item)
            except AnvilRpcError as exc:
                reason = f"{item.tx.hash} refused: {exc}"
                if not partial:
                    break
        if reason and not partial:
            await self.call("anvil_dropAllTransactions")
            return Applied(False, reason)
        before = await self.balance(self.coinbase)
        block = await self.mine(base_fee, timestamp)
        await self.call("anvil_dropAllTransactions")
        mined = [str(h) for h in block["transactions"]]
        applied = Applied(True, reason, mined, block=int(block["number"], 16))
        applied.payment = await self.balance(self.coinbase) - before
        expected = [t.tx.hash for t in sent if not partial or t.tx.hash in mined]
        if mined != expected:
            applied.ok = False
            applied.reason = f"mined {len(mined)} of {len(sent)} sent (nonce gap or fee cap)"
            return applied
        for item in sent:
            if item.tx.hash not in mined:
                continue
            receipt = await self.call("eth_getTransactionReceipt", item.tx.hash)
            applied.receipts.append(receipt)
            applied.gas_used += int(receipt["gasUsed"], 16)
            if receipt["status"] != "0x1" and not item.can_revert:
                applied.ok = False
                applied.reason = f"{item.tx.hash} reverted"
        return applied
