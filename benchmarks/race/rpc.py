"""A minimal async JSON-RPC client over HTTP for the race's competitor, harness and verdict.

It is deliberately not the keeper's client (keeper/chain/http.py): the competitor is a peer
bot with its own plain client, and the measuring tools must not change when the keeper's
transport does. One persistent aiohttp session; `call` raises `RpcFault` on an error
object; `batch` sends one JSON-RPC array in one HTTP request and returns each item's result
or its `RpcFault`, in request order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import aiohttp


class RpcFault(Exception):
    """A JSON-RPC error object (or a missing answer) for one request."""

    def __init__(self, method: str, error: Any) -> None:
        self.method = method
        self.code = error.get("code") if isinstance(error, dict) else None
        self.message = str(error.get("message", "") if isinstance(error, dict) else error)
        self.data = error.get("data") if isinstance(error, dict) else None
        super().__init__(f"{method}: {self.message}")


class Rpc:
    """JSON-RPC over one persistent HTTP session."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, url: str, timeout: float = 60.0) -> Rpc:
        connector = aiohttp.TCPConnector(limit=8)
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))
        return cls(url, session)

    async def aclose(self) -> None:
        await self._session.close()

    async def _post(self, body: Any) -> Any:
        async with self._session.post(
            self.url, data=json.dumps(body), headers={"Content-Type": "application/json"}
        ) as response:
            response.raise_for_status()
            return json.loads(await response.read())

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        answer = await self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        if "error" in answer:
            raise RpcFault(method, answer["error"])
        return answer.get("result")

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Each call's result, or an `RpcFault` in its place (never raised)."""
        if not calls:
            return []
        first = next(self._ids)
        body = [{"jsonrpc": "2.0", "id": first + i, "method": m, "params": list(p)}
                for i, (m, p) in enumerate(calls)]
        for _ in range(len(calls) - 1):
            next(self._ids)
        answers = await self._post(body)
        by_id = {a.get("id"): a for a in answers} if isinstance(answers, list) else {}
        out: list[Any] = []
        for i, (method, _params) in enumerate(calls):
            answer = by_id.get(first + i)
            if answer is None:
                out.append(RpcFault(method, "no answer in the batch"))
            elif "error" in answer:
                out.append(RpcFault(method, answer["error"]))
            else:
                out.append(answer.get("result"))
        return out

    async def eth_call(self, to: str, data: str, block: str | int = "latest") -> str:
        tag = hex(block) if isinstance(block, int) else block
        return str(await self.call("eth_call", [{"to": to, "data": data}, tag]))
