"""MEV-Share-style hints for the devnet builder: what a private transaction or bundle
reveals, and the server-sent-event stream (GET /events) that carries it.

An event is MEV-Share's: `{"hash", "logs", "txs": [{"to", "functionSelector",
"callData"}], "mevGasPrice", "gasUsed"}`, each field present only if the sender's hints
allow it (`hash` always: a backrun names its target by it). Hint names as MEV-Share's:
`calldata`, `contract_address`, `function_selector`, `logs`, `default_logs` (here: all
logs too), `hash`, `tx_hash` (each transaction's hash in a bundle event). `mevGasPrice`
and `gasUsed` come from simulating the private transaction on the current chain when it
arrives. The stream starts with a `:ping` comment, so a client knows it is subscribed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from keeper.devnet.builder.bundles import Bundle
from keeper.devnet.builder.chain import Applied

LOG_HINTS = frozenset({"logs", "default_logs", "special_logs"})
QUEUE_LIMIT = 1024


def hint_event(bundle: Bundle, applied: Applied) -> dict[str, Any]:
    """The event announcing `bundle` (a private transaction is a bundle of one), as far as
    its hints allow; `applied` is its simulation."""
    hints = bundle.hints
    event: dict[str, Any] = {"hash": bundle.hash, "logs": None, "txs": None}
    txs = []
    for item in bundle.txs:
        shown: dict[str, Any] = {}
        if "contract_address" in hints and item.tx.to is not None:
            shown["to"] = item.tx.to.lower()
        if "function_selector" in hints and len(item.tx.data) >= 4:
            shown["functionSelector"] = "0x" + item.tx.data[:4].hex()
        if "calldata" in hints:
            shown["callData"] = "0x" + item.tx.data.hex()
        if "tx_hash" in hints:
            shown["hash"] = item.tx.hash
        txs.append(shown)
    if any(txs):
        event["txs"] = txs
    if hints & LOG_HINTS:
        event["logs"] = [
            {"address": log["address"], "topics": log["topics"], "data": log["data"]}
            for receipt in applied.receipts for log in receipt["logs"]
        ]
    if applied.gas_used:
        event["gasUsed"] = hex(applied.gas_used)
        event["mevGasPrice"] = hex(applied.payment // applied.gas_used)
    return event


class HintStream:
    """Fan-out of hint events to every connected SSE client."""

    def __init__(self) -> None:
        self._clients: set[asyncio.Queue[dict[str, Any] | None]] = set()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._clients):
            if queue.qsize() < QUEUE_LIMIT:  # a stuck client loses events, never the builder
                queue.put_nowait(event)

    def close(self) -> None:
        for queue in list(self._clients):
            queue.put_nowait(None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /events: `data: <event json>` lines until the client or the builder leaves."""
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._clients.add(queue)
        try:
            await response.write(b":ping\n\n")
            while (event := await queue.get()) is not None:
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
        except ConnectionResetError:
            pass
        finally:
            self._clients.discard(queue)
        return response
