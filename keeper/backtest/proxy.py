"""JSON-RPC proxies on 127.0.0.1 that the replay puts between a client and a node.

- `RecordingProxy` (between a recording fork and the archive): anvil fetches every account
  and storage slot it touches from its fork URL at the fork block, and `anvil_dumpState`
  would not give those back (a fork dumps only what it changed); the proxy writes each
  answer down, and the tape keeps them as the state at A-1.
- `HistoryTap` (between the keeper's engine and the fork): the engine's cold start reads
  history before A-1 (logs since the protocols' deployment, old headers), which a fork
  forwards to its archive but an offline anvil does not have. Recording, the tap writes
  those answers down; replaying a tape, it answers them from the tape.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from keeper.chain.http import HttpRpc, RpcError
from keeper.errors import RetryableError


class JsonRpcProxy:
    """Forwards JSON-RPC calls (single or batched) to `upstream`; subclasses look at the
    answers (`observe`) or give their own (`answer`)."""

    def __init__(self, upstream: HttpRpc) -> None:
        self.upstream = upstream
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.upstream.aclose()

    async def _handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        try:
            if isinstance(payload, list):
                answer: Any = await asyncio.gather(*(self._one(item) for item in payload))
            else:
                answer = await self._one(payload)
        except RetryableError as exc:  # upstream down or garbled (its errors are answers)
            return web.Response(status=502, text=str(exc))
        return web.Response(text=json.dumps(answer), content_type="application/json")

    async def _one(self, request: dict[str, Any]) -> dict[str, Any]:
        method, params = request["method"], request.get("params") or []
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        own = self.answer(method, params)
        if own is not None:
            reply.update(own)
            return reply
        try:
            reply["result"] = result = await self.upstream.call(method, params)
        except RpcError as exc:
            reply["error"] = {"code": exc.code or -32000, "message": exc.message}
            return reply
        self.observe(method, params, result)
        return reply

    def answer(self, method: str, params: list[Any]) -> dict[str, Any] | None:
        """{"result": …} or {"error": …} to answer without asking upstream; None to forward."""
        return None

    def observe(self, method: str, params: list[Any], result: Any) -> None:
        """Called with every answer upstream gave."""


_STATE_READS = {"eth_getBalance", "eth_getTransactionCount", "eth_getCode", "eth_getStorageAt",
                "eth_getAccount", "eth_getAccountInfo"}


class RecordingProxy(JsonRpcProxy):
    """Writes down every account and storage read a fork makes (at its fork block)."""

    def __init__(self, upstream: HttpRpc) -> None:
        super().__init__(upstream)
        self.accounts: dict[str, dict[str, Any]] = {}

    def observe(self, method: str, params: list[Any], result: Any) -> None:
        if method in _STATE_READS and result is not None:
            self._note(method, params, result)
    def _account(self, address: str) -> dict[str, Any]:
        return self.accounts.setdefault(address.lower(), {"storage": {}})

    def _note(self, method: str, params: list[Any], result: Any) -> None:
        account = self._account(str(params[0]))
        if method == "eth_getBalance":
            account["balance"] = result
        elif method == "eth_getTransactionCount":
            account["nonce"] = int(result, 16)
        elif method == "eth_getCode":
            account["code"] = result
        elif method in ("eth_getAccount", "eth_getAccountInfo"):
            account["balance"] = result["balance"]
            account["nonce"] = int(str(result["nonce"]), 0)
            if "code" in result:  # eth_getAccountInfo (anvil's own) carries the code too
                account["code"] = result["code"]
        else:
            account["storage"][hex(int(str(params[1]), 16))] = result

    async def state(self, block: int) -> dict[str, dict[str, Any]]:
        """Every account read, completed (balance, nonce, code) with its values at `block`."""
        tag = hex(block)
        missing = [(address, field, method) for address, account in self.accounts.items()
                   for field, method in (("balance", "eth_getBalance"),
                                         ("nonce", "eth_getTransactionCount"),
                                         ("code", "eth_getCode"))
                   if field not in account]
        answers = await self.upstream.batch([(m, [a, tag]) for a, _f, m in missing])
        for (address, field, _m), answer in zip(missing, answers, strict=True):
            self.accounts[address][field] = int(answer, 16) if field == "nonce" else answer
        return self.accounts


class HistoryTap(JsonRpcProxy):
    """Between the engine and the fork: records (`answers` None) or serves (`answers` from a
    tape) the engine's reads of history up to block `parent` (A-1)."""

    def __init__(self, upstream: HttpRpc, parent: int,
                 answers: dict[str, Any] | None = None) -> None:
        super().__init__(upstream)
        self.parent = parent
        self.recording = answers is None
        self.answers: dict[str, Any] = {} if answers is None else answers

    def _historical(self, method: str, params: list[Any]) -> bool:
        if method == "eth_getLogs" and params and isinstance(params[0], dict):
            last = params[0].get("toBlock")
            return isinstance(last, str) and last.startswith("0x") and int(last, 16) <= self.parent
        if method == "eth_getBlockByNumber" and params and isinstance(params[0], str):
            return params[0].startswith("0x") and int(params[0], 16) < self.parent
        return False

    @staticmethod
    def key(method: str, params: list[Any]) -> str:
        return json.dumps([method, params], sort_keys=True)

    def answer(self, method: str, params: list[Any]) -> dict[str, Any] | None:
        if self.recording or not self._historical(method, params):
            return None
        key = self.key(method, params)
        if key not in self.answers:
            return {"error": {"code": -32000, "message": f"the tape lacks {method} {params}"}}
        return {"result": self.answers[key]}

    def observe(self, method: str, params: list[Any], result: Any) -> None:
        if self.recording and self._historical(method, params):
            self.answers[self.key(method, params)] = result
