"""`SpoilingProxy`: an HTTP JSON-RPC proxy that spoils some of the answers it passes on.

It forwards every request body to its upstream endpoint unchanged, and hands the answer
back either as it came or spoiled in one of these ways (`KINDS`):

- "missing":  a batch answer with one item left out (the last);
- "neither":  an item (or the single answer) with neither result nor error;
- "wrong-id": an item (or the single answer) whose id is one nobody asked for;
- "not-json": a body that is not JSON (an HTML error page, with HTTP 200);
- "empty":    an empty body (HTTP 200);
- "not-list": a batch answered with one object instead of a list.

What is spoiled: the kinds queued with `spoil` (in `pending`), strictly in order, each on
the next answer it fits (the ones behind it wait): "missing" and "not-list" fit only
batches, and a kind queued with `only` fits only a request (or a batch holding one) of those
methods (with `alone`, only such a request sent by itself, not in a batch). Then, while
`every` is set, every `every`-th answer, cycling through `cycle`.
`spoiled` counts what was done, `forwarded` every request. The request always reaches the
upstream (a spoiled send did reach the node).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import aiohttp
from aiohttp import web

KINDS = ("missing", "neither", "wrong-id", "not-json", "empty", "not-list")
BATCH_ONLY = frozenset({"missing", "not-list"})
NOT_JSON = b"<html><body>502 Bad Gateway</body></html>"


class SpoilingProxy:
    """A loopback proxy to `upstream` that spoils answers as it is told (module docstring)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.pending: list[tuple[str, Collection[str] | None, bool]] = []  # (kind, only, alone)
        self.every: int | None = None
        self.cycle: Sequence[str] = KINDS
        self.spoiled: Counter[str] = Counter()
        self.forwarded = 0
        self.url = ""
        self._turn = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self.url

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def spoil(self, *kinds: str, only: Collection[str] | None = None,
              alone: bool = False) -> None:
        """Spoil the next answers these kinds fit, one after the other; with `only`, answers
        to those methods only (`alone`: to a request of one, not in a batch)."""
        assert all(k in KINDS for k in kinds), kinds
        assert not alone or only is not None, "alone needs the methods it applies to"
        self.pending.extend((k, only, alone) for k in kinds)

    def _choose(self, batch: bool, methods: Collection[str] = ()) -> str | None:
        if self.pending:
            kind, only, alone = self.pending[0]
            if ((batch or kind not in BATCH_ONLY) and not (alone and batch)
                    and (only is None or set(only) & set(methods))):
                return self.pending.pop(0)[0]
            return None
        if self.every is None:
            return None
        self._turn += 1
        if self._turn % self.every:
            return None
        fitting = [k for k in self.cycle if batch or k not in BATCH_ONLY]
        return fitting[(self._turn // self.every) % len(fitting)] if fitting else None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert self._session is not None
        self.forwarded += 1
        async with self._session.post(self.upstream, data=body,
                                      headers={"Content-Type": "application/json"}) as up:
            status, answer = up.status, await up.read()
        payload = json.loads(body)
        items = payload if isinstance(payload, list) else [payload]
        methods = {str(i.get("method")) for i in items if isinstance(i, dict)}
        kind = self._choose(isinstance(payload, list), methods) if status == 200 else None
        if kind is None:
            return web.Response(body=answer, status=status, content_type="application/json")
        self.spoiled[kind] += 1
        if kind == "not-json":
            return web.Response(body=NOT_JSON, content_type="text/html")
        if kind == "empty":
            return web.Response(body=b"", content_type="application/json")
        spoiled = _spoil(kind, json.loads(answer))
        return web.Response(text=json.dumps(spoiled), content_type="application/json")


def _spoil(kind: str, answer: Any) -> Any:
    if isinstance(answer, list):
        items = [dict(item) for item in answer]
        if kind == "missing":
            return items[:-1]
        if kind == "not-list":
            return {"jsonrpc": "2.0", "id": None, "result": items}
        items[-1] = _spoil(kind, items[-1])
        return items
    item = dict(answer)
    if kind == "neither":
        item.pop("result", None)
        item.pop("error", None)
    elif kind == "wrong-id":
        ident = item.get("id")
        item["id"] = 10**9 + (ident if isinstance(ident, int) else 0)
    return item
