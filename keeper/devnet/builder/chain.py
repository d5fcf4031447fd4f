"""The devnet builder's view of its anvil: JSON-RPC over one aiohttp session, simulation
of transactions in the next block (eth_simulateV1: nothing mined, nothing to revert), and
mining.

Anvil runs with `--no-mining --order fifo`: nothing is mined until the builder calls
`evm_mine`, and a mined block holds the pool's transactions in the order they were sent
(nonces per sender still respected), so the builder decides the order by the order it
sends. Simulation uses eth_simulateV1 rather than snapshots and mined trial blocks: on the
default devnet a mined block costs ~23 ms (its state root), a simulation ~1.3 ms, and a
simulated block has the real block's number, timestamp, base fee and coinbase.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
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
    """What a simulation did: `ok` if every transaction executed and none reverted that may
    not; `payment` is the coinbase's balance gain (tips and transfers); `receipts` hold
    each transaction's status, gasUsed, logs and effectiveGasPrice, as a receipt does."""

    ok: bool
    reason: str = ""
    receipts: list[dict[str, Any]] = field(default_factory=list)
    payment: int = 0
    gas_used: int = 0


class AnvilClient:
    """JSON-RPC to the anvil behind the builder."""

    def __init__(self, url: str, coinbase: str) -> None:
        self.url = url
        self.coinbase = coinbase
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._nonce_block = ""  # the parent block the cached account nonces are read at
        self._nonces: dict[str, int] = {}

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

    async def nonce(self, address: str) -> int:
        return int(await self.call("eth_getTransactionCount", address, "latest"), 16)

    async def mine(self, base_fee: int, timestamp: int) -> dict[str, Any]:
        """Mine anvil's pool as one block at `timestamp` with `base_fee`; the block."""
        await self.call("anvil_setNextBlockBaseFeePerGas", hex(base_fee))
        await self.call("evm_mine", timestamp)
        return await self.latest()

    async def simulate(
        self, txs: Sequence[BundleTx], *, after: Sequence[BundleTx] = (), parent: dict[str, Any],
        base_fee: int, timestamp: int,
    ) -> Applied:
        """`txs` executed in the next block (number parent + 1, `timestamp`, `base_fee`,
        coinbase ours) right behind `after` (bundles already taken), with eth_simulateV1 and
        validation (nonces, balances, fee caps as in a block): nothing is mined.

        The coinbase's balance is read by a probe call before and after `txs` (code set by
        a state override; it pays no tip, so it moves no coinbase balance). Fails if the
        simulation refuses a transaction (nonce used or out of order, no funds: the whole
        request errors) or one reverts without `can_revert`.
        """
        # Checked here: anvil's simulation takes a nonce ahead of the account's as given.
        refused = await self._refused([*after, *txs], parent, base_fee)
        if refused:
            return Applied(False, refused)
        calls = [*map(_as_call, after), _PROBE, *map(_as_call, txs), _PROBE]
        request = {
            "blockStateCalls": [{
                "blockOverrides": {"number": hex(int(parent["number"], 16) + 1),
                                   "time": hex(timestamp), "baseFeePerGas": hex(base_fee),
                                   "feeRecipient": self.coinbase},
                "stateOverrides": {PROBE: {"code": PROBE_CODE},
                                   PROBE_CALLER: {"balance": hex(10**30)}},
                "calls": [{**c, **({"maxFeePerGas": hex(base_fee)} if c is _PROBE else {})}
                          for c in calls],
            }],
            "validation": True,
        }
        try:
            block = (await self.call("eth_simulateV1", request, parent["hash"]))[0]
        except AnvilRpcError as exc:
            return Applied(False, str(exc).removeprefix("eth_simulateV1: "))
        results = block["calls"]
        ours = results[len(after) + 1:-1]
        applied = Applied(True)
        applied.payment = (int(results[-1]["returnData"], 16)
                           - int(results[len(after)]["returnData"], 16))
        for item, result in zip(txs, ours, strict=True):
            tip = item.tx.tip(base_fee)
            applied.receipts.append({
                "transactionHash": item.tx.hash, "from": item.tx.sender, "to": item.tx.to,
                "status": result["status"], "gasUsed": result["gasUsed"],
                "logs": result.get("logs") or [], "effectiveGasPrice": hex(base_fee + tip),
            })
            applied.gas_used += int(result["gasUsed"], 16)
            if result["status"] != "0x1" and not item.can_revert and applied.ok:
                applied.ok, applied.reason = False, f"{item.tx.hash} reverted"
        return applied


    async def _refused(
        self, txs: Sequence[BundleTx], parent: dict[str, Any], base_fee: int
    ) -> str:
        """Why a block could not hold `txs` in this order (nonce or fee cap), or ""."""
        if self._nonce_block != parent["hash"]:
            self._nonce_block, self._nonces = parent["hash"], {}
        expected: dict[str, int] = {}
        for item in txs:
            tx = item.tx
            if tx.sender not in expected:
                if tx.sender not in self._nonces:
                    self._nonces[tx.sender] = int(await self.call(
                        "eth_getTransactionCount", tx.sender, parent["number"]), 16)
                expected[tx.sender] = self._nonces[tx.sender]
            if tx.nonce != expected[tx.sender]:
                word = "already used" if tx.nonce < expected[tx.sender] else "out of order"
                return f"{tx.hash} nonce {tx.nonce} {word} (account at {expected[tx.sender]})"
            expected[tx.sender] += 1
            if tx.max_fee < base_fee:
                return f"{tx.hash} fee cap below the base fee {base_fee}"
        return ""


# The coinbase-balance probe: BALANCE(COINBASE) returned as one word.
PROBE = "0x00000000000000000000000000000000000b1d01"
PROBE_CODE = "0x413160005260206000f3"
PROBE_CALLER = "0x00000000000000000000000000000000000b1d02"
_PROBE: dict[str, Any] = {"from": PROBE_CALLER, "to": PROBE, "gas": hex(50_000),
                          "maxPriorityFeePerGas": "0x0"}


def _as_call(item: BundleTx) -> dict[str, Any]:
    """A signed transaction as an eth_simulateV1 call (its fields; the signature's sender)."""
    tx = item.tx
    call: dict[str, Any] = {"from": tx.sender, "value": hex(tx.value), "gas": hex(tx.gas),
                            "nonce": hex(tx.nonce), "input": "0x" + tx.data.hex()}
    if tx.to is not None:
        call["to"] = tx.to
    if tx.legacy_fees:
        call["gasPrice"] = hex(tx.max_fee)
    else:
        call["maxFeePerGas"] = hex(tx.max_fee)
        call["maxPriorityFeePerGas"] = hex(tx.max_priority_fee)
    return call
