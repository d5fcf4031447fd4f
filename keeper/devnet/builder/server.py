"""The devnet builder's JSON-RPC front: two endpoints, each with its own bundle pool, in
front of one anvil.

Methods (a POST to either endpoint):
- `eth_sendRawTransaction`: the public pool (shared by both endpoints);
  `eth_sendTransaction` from an unlocked dev account is signed by anvil
  (`eth_signTransaction`) and joins it too (anvil's own pool must stay empty: it would
  be mined into every block unplanned);
- `eth_sendBundle`, `eth_callBundle`, `mev_sendBundle`, `eth_cancelBundle`,
  `eth_sendPrivateTransaction` / `mev_sendPrivateTransaction`,
  `eth_cancelPrivateTransaction`: need a valid
  `X-Flashbots-Signature`; otherwise JSON-RPC error -32600;
- `builder_buildBlock` (build one block now; the interval timer may also be off),
  `builder_blocks` (the reports of the last blocks, newest last) and `builder_arrivals`
  (when each pool entry, hint and bundle arrived: keeper/devnet/builder/arrivals.py):
  devnet introspection;
- anything else is forwarded to anvil (reads), except what the builder's public pool
  answers (anvil never sees it): `eth_getTransactionCount(..., "pending")` counts it,
  `eth_getTransactionByHash` finds a pooled transaction, `txpool_content` lists the pool
  (geth's shape; private transactions never appear).
Simulations mine nothing (eth_simulateV1), so reads and submissions never wait for a
block being built; one lock keeps two builds (the timer and builder_buildBlock) apart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

from aiohttp import web

from keeper.devnet.builder.arrivals import Arrivals
from keeper.devnet.builder.block import BlockReport, build_block
from keeper.devnet.builder.bundles import (
    Bundle,
    BundleError,
    BundlePool,
    BundleTx,
    merged,
    parse_eth_bundle,
    parse_mev_bundle,
    parse_private_tx,
)
from keeper.devnet.builder.chain import AnvilClient, AnvilRpcError, next_base_fee
from keeper.devnet.builder.hints import HintStream, hint_event
from keeper.devnet.builder.txs import (
    SIGNATURE_HEADER,
    RawTx,
    SignatureError,
    decode_raw,
    verify_signature,
)

SIGNED = frozenset({"eth_sendBundle", "eth_callBundle", "mev_sendBundle", "eth_cancelBundle",
                    "eth_sendPrivateTransaction", "mev_sendPrivateTransaction",
                    "eth_cancelPrivateTransaction"})
# Forwarded calls that move the head (a test mining or reverting by hand through the builder).
MINING = frozenset({"evm_mine", "anvil_mine", "evm_revert", "anvil_reset", "anvil_loadState"})
REPORTS_KEPT = 64
INVALID_REQUEST, INVALID_PARAMS, SERVER_ERROR = -32600, -32602, -32000


class RpcFailure(Exception):
    """An error answer: (code, message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Builder:
    """The builder's state: public pool, two bundle pools, private transactions, hints."""

    def __init__(self, chain: AnvilClient, endpoints: int = 2) -> None:
        self.chain = chain
        self.pools = [BundlePool(i) for i in range(endpoints)]
        self.public: dict[str, RawTx] = {}
        self.private: dict[str, Bundle] = {}  # hash -> private tx or hinted bundle
        self.hints = HintStream()
        self.reports: deque[BlockReport] = deque(maxlen=REPORTS_KEPT)
        self.arrivals = Arrivals()
        self._arrived = 0.0  # when the request being answered arrived (set before call())
        self.lock = asyncio.Lock()
        self.next_block = 0  # the block being built next (refresh() and every build set it)

    async def refresh(self) -> None:
        """Read the chain's head again (at start, and after a forwarded call that mines)."""
        self.next_block = int((await self.chain.latest())["number"], 16) + 1

    async def build(self) -> BlockReport:
        """Build and mine the next block from both pools and the public pool."""
        async with self.lock:
            parent = await self.chain.latest()
            when = _now(parent)
            candidates = merged(self.pools, int(parent["number"], 16) + 1, when)
            report = await build_block(self.chain, candidates, list(self.public.values()),
                                       timestamp=when)
            await self._forget(set(report.transactions), report.number + 1)
            self.next_block = report.number + 1
            self.reports.append(report)
            return report

    async def _forget(self, mined: set[str], next_block: int) -> None:
        """Drop what was mined or can no longer be (a public nonce already used)."""
        for pool in self.pools:
            pool.prune(next_block, mined)
        self.private = {h: b for h, b in self.private.items()
                        if b.last_block >= next_block and not any(
                            t.tx.hash in mined for t in b.txs)}
        nonces = {s: await self.chain.nonce(s) for s in {t.sender for t in self.public.values()}}
        # .get: a sender whose first transaction arrived while the nonces were read
        self.public = {h: t for h, t in self.public.items()
                       if h not in mined and t.nonce >= nonces.get(t.sender, 0)}

    async def call(self, endpoint: int, method: str, params: list[Any], signer: str) -> Any:
        arrived = self._arrived or time.time()
        if method == "eth_sendTransaction":  # an unlocked dev account: anvil signs it
            if not params or not isinstance(params[0], dict):
                raise RpcFailure(INVALID_PARAMS, "eth_sendTransaction takes one object")
            request = dict(params[0])
            request.setdefault("nonce", await self._pending(str(request.get("from", ""))))
            raw = await self.chain.call("eth_signTransaction", request)
            method, params = "eth_sendRawTransaction", [raw]
        if method == "eth_sendRawTransaction":
            tx = _decoded(params)
            if tx.nonce < await self.chain.nonce(tx.sender):
                raise RpcFailure(SERVER_ERROR, "nonce too low")
            self.public[tx.hash] = tx
            self.arrivals.entered_pool(tx.hash, arrived)
            return tx.hash
        if method == "eth_sendBundle":
            bundle = parse_eth_bundle(params, signer)
            self.pools[endpoint].add(bundle)
            self.arrivals.bundle(endpoint, bundle, [], arrived)
            return {"bundleHash": bundle.hash}
        if method == "eth_cancelBundle":
            uuid = str((params[0] if params and isinstance(params[0], dict) else {})
                       .get("replacementUuid", ""))
            return self.pools[endpoint].cancel(signer, uuid)
        if method == "eth_cancelPrivateTransaction":  # [{txHash}]: out of every pool
            tx_hash = str((params[0] if params and isinstance(params[0], dict) else {})
                          .get("txHash", "")).lower()
            found = self.private.pop(tx_hash, None) is not None
            for pool in self.pools:
                found = pool.bundles.pop(tx_hash, None) is not None or found
            return found
        if method == "eth_callBundle":
            return await self._call_bundle(parse_eth_bundle(params, signer))
        if method in ("mev_sendBundle", "eth_sendPrivateTransaction",
                      "mev_sendPrivateTransaction"):
            return await self._send_private(endpoint, method, params, signer, arrived)
        if method == "txpool_content":  # geth's shape: sender -> nonce -> transaction
            pending: dict[str, dict[str, Any]] = {}
            for tx in self.public.values():
                pending.setdefault(tx.sender, {})[str(tx.nonce)] = tx.as_rpc()
            return {"pending": pending, "queued": {}}
        if method == "eth_getTransactionByHash" and params and \
                str(params[0]).lower() in self.public:
            return self.public[str(params[0]).lower()].as_rpc()
        if method == "builder_buildBlock":
            return (await self.build()).as_json()
        if method == "builder_blocks":
            return [r.as_json() for r in self.reports]
        if method == "builder_arrivals":
            return self.arrivals.as_json()
        raise KeyError(method)

    async def _send_private(
        self, endpoint: int, method: str, params: list[Any], signer: str, arrived: float
    ) -> Any:
        # No lock: a bundle or private transaction reaches its pool at once, even while a
        # block is being built (it then waits for the next); simulation mines nothing.
        if method == "mev_sendBundle":
            bundle = parse_mev_bundle(params, signer, self._known)
        else:
            bundle = parse_private_tx(params, signer, self.next_block)
        if bundle.hints:  # simulated first: the hint carries its logs and gas
            parent = await self.chain.latest()
            applied = await self.chain.simulate(
                bundle.txs, parent=parent, base_fee=_base_fee(parent), timestamp=_now(parent))
            self.private[bundle.hash] = bundle
            self.hints.publish(hint_event(bundle, applied))
            self.arrivals.hint(bundle.hash, time.time())
        self.pools[endpoint].add(bundle)
        if method == "mev_sendBundle":
            body = (params[0] if params and isinstance(params[0], dict) else {}).get("body")
            refs = [str(i["hash"]).lower() for i in body or ()
                    if isinstance(i, dict) and "hash" in i]
            self.arrivals.bundle(endpoint, bundle, refs, arrived)
            return {"bundleHash": bundle.hash}
        return bundle.hash

    def _known(self, hash_: str) -> list[BundleTx] | None:
        found = self.private.get(hash_)
        if found is not None:
            return list(found.txs)
        public = self.public.get(hash_)  # a pending public transaction can be backrun too
        return [BundleTx(public)] if public is not None else None

    async def _call_bundle(self, bundle: Bundle) -> dict[str, Any]:
        """eth_callBundle: the bundle simulated alone in the block after the latest."""
        parent = await self.chain.latest()
        applied = await self.chain.simulate(
            bundle.txs, parent=parent, base_fee=_base_fee(parent), timestamp=_now(parent))
        if not applied.receipts:
            raise RpcFailure(SERVER_ERROR, applied.reason or "bundle not mined")
        results = [{"txHash": r["transactionHash"], "fromAddress": r["from"],
                    "toAddress": r["to"], "gasUsed": int(r["gasUsed"], 16),
                    **({} if r["status"] == "0x1" else {"error": "execution reverted"})}
                   for r in applied.receipts]
        base_fee = _base_fee(parent)
        gas_fees = sum(int(r["gasUsed"], 16) * (int(r["effectiveGasPrice"], 16) - base_fee)
                       for r in applied.receipts)
        return {"bundleHash": bundle.hash, "coinbaseDiff": str(applied.payment),
                "gasFees": str(gas_fees), "ethSentToCoinbase": str(applied.payment - gas_fees),
                "totalGasUsed": applied.gas_used, "results": results,
                "stateBlockNumber": int(parent["number"], 16),
                "bundleGasPrice": str(applied.payment // max(1, applied.gas_used)),
                "ok": applied.ok, "reason": applied.reason}

    async def handle(self, request: web.Request, endpoint: int) -> web.Response:
        body = await request.read()
        arrived = time.time()
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            return _answer({"jsonrpc": "2.0", "id": None,
                            "error": {"code": -32700, "message": "parse error"}})
        if isinstance(payload, list):
            answers = [await self._one(item, body, request, endpoint, arrived)
                       for item in payload]
            return _answer(answers)
        return _answer(await self._one(payload, body, request, endpoint, arrived))

    async def _one(
        self, item: Any, body: bytes, request: web.Request, endpoint: int, arrived: float
    ) -> dict[str, Any]:
        rid = item.get("id") if isinstance(item, dict) else None
        method = item.get("method", "") if isinstance(item, dict) else ""
        params = item.get("params") or [] if isinstance(item, dict) else []
        try:
            signer = ""
            if method in SIGNED:
                signer = verify_signature(request.headers.get(SIGNATURE_HEADER), body)
            if method == "eth_getTransactionCount" and len(params) > 1 and \
                    params[1] == "pending":
                return {"jsonrpc": "2.0", "id": rid, "result": await self._pending(params[0])}
            try:
                self._arrived = arrived
                result = await self.call(endpoint, method, params, signer)
            except KeyError:
                forwarded = json.loads(await self.chain.forward(json.dumps(item).encode()))
                if method in MINING:
                    await self.refresh()
                assert isinstance(forwarded, dict)
                return forwarded
            return {"jsonrpc": "2.0", "id": rid, "result": result}
        except SignatureError as exc:
            error = {"code": INVALID_REQUEST, "message": str(exc)}
        except (BundleError, ValueError) as exc:
            error = {"code": INVALID_PARAMS, "message": str(exc)}
        except RpcFailure as exc:
            error = {"code": exc.code, "message": str(exc)}
        except AnvilRpcError as exc:
            error = {"code": SERVER_ERROR, "message": str(exc)}
        return {"jsonrpc": "2.0", "id": rid, "error": error}

    async def _pending(self, address: str) -> str:
        count = await self.chain.nonce(address)
        mine = sorted(t.nonce for t in self.public.values() if t.sender.lower() == address.lower())
        for nonce in mine:  # consecutive pool nonces from the chain's count
            if nonce == count:
                count += 1
        return hex(count)

    def app(self, endpoint: int) -> web.Application:
        """The aiohttp application of one endpoint (POST / for JSON-RPC, GET /events)."""
        app = web.Application(client_max_size=16 * 1024 * 1024)

        async def rpc(request: web.Request) -> web.Response:
            return await self.handle(request, endpoint)

        app.router.add_post("/", rpc)
        app.router.add_get("/events", self.hints.handle)
        return app


def _decoded(params: list[Any]) -> RawTx:
    if not params or not isinstance(params[0], str):
        raise RpcFailure(INVALID_PARAMS, "eth_sendRawTransaction takes one hex string")
    return decode_raw(params[0])


def _base_fee(parent: dict[str, Any]) -> int:
    return next_base_fee(parent)


def _now(parent: dict[str, Any]) -> int:
    return max(int(parent["timestamp"], 16) + 1, int(time.time()))


def _answer(payload: Any) -> web.Response:
    return web.json_response(payload)
