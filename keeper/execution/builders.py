"""The block-builder client: private bundles to a configured list of builders or relays.

Methods (the public bundle API that Flashbots' relay, MEV-Share and the common builders
speak, and the devnet builder too):

- `eth_sendBundle` [{txs, blockNumber, revertingTxHashes?, replacementUuid?}]: signed
  transactions included together, in order, in block `blockNumber` only, or not at all;
- `eth_callBundle` [{txs, blockNumber, stateBlockNumber}]: the same bundle simulated;
- `mev_sendBundle` [{version, inclusion: {block, maxBlock}, body}]: MEV-Share's bundle, whose
  body may name a transaction the builder holds privately (`{hash}`), so that
  `[{hash: T}, {tx: B, canRevert: false}]` backruns T with B (`backrun_body`).

Every request carries Flashbots' `X-Flashbots-Signature: <address>:<signature>`, an
EIP-191 personal-sign of the hex string of keccak256(body) by the searcher's identity key.
That key only identifies the searcher to builders (its reputation); it holds no funds and
signs no transaction, but it is a secret like the signing key: registered for redaction and
never logged.

Each call fans out to every builder at once (`asyncio.gather`); one builder's failure
(timeout, refused connection, HTTP error, JSON-RPC error) is its own `BuilderReply` with
`ok=False`, never an exception, and never holds up the others. No host is built in: the
endpoints are configuration (`[[execution.builders]]`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import coincurve
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

SIGNATURE_HEADER = "X-Flashbots-Signature"
DEFAULT_TIMEOUT = 2.0  # seconds: a bundle for the next block is worthless after ~12 s


@dataclass(frozen=True)
class BuilderEndpoint:
    """One builder or relay: a name for the logs, and its JSON-RPC URL."""

    name: str
    url: str


@dataclass(frozen=True)
class BuilderReply:
    """One builder's answer to one request."""

    builder: str
    ok: bool
    result: Any = None
    error: str = ""
    seconds: float = 0.0


def signature_header(body: bytes, identity: LocalAccount) -> str:
    """The X-Flashbots-Signature value of `body`: address, then the personal-sign of the
    hex digest keccak256(body) ("0x" + 64 lowercase hex digits), as the relays check it.

    Signed with coincurve directly (EIP-191 `personal_sign`: keccak of the prefixed text,
    a recoverable signature, v = 27 + recovery id), the bytes `identity.sign_message`
    gives: it took ~0.6 ms a header on the 2 shared cores, this ~0.1 ms, and every bundle
    behind a hint waits for its header."""
    digest = ("0x" + keccak(body).hex()).encode()
    message = keccak(b"\x19Ethereum Signed Message:\n" + str(len(digest)).encode() + digest)
    signed = _signer(identity).sign_recoverable(message, hasher=None)
    return f"{identity.address}:0x{signed[:64].hex()}{signed[64] + 27:02x}"


@functools.cache
def _signer(identity: LocalAccount) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(bytes(identity.key))


def backrun_body(target_hash: str, raws: Sequence[str]) -> list[dict[str, Any]]:
    """A `mev_sendBundle` body that puts `raws` right behind the transaction `target_hash`
    (a private transaction or hinted bundle the builder holds); none of ours may revert."""
    return [{"hash": target_hash}, *({"tx": raw, "canRevert": False} for raw in raws)]


class BuilderClient:
    """Signed JSON-RPC requests to every configured builder at once."""

    def __init__(
        self, endpoints: Sequence[BuilderEndpoint], identity: LocalAccount, *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not endpoints:
            raise ValueError("a builder client needs at least one builder endpoint")
        self.endpoints = tuple(endpoints)
        self._identity = identity
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        # [ha] (keeper/ha/replica.py): raises unless this replica leads, checked in memory
        # before a bundle leaves, as the chain client's `send_gate` before a broadcast.
        self.send_gate: Callable[[], None] | None = None

    @property
    def identity_address(self) -> str:
        """The searcher address builders know us by (public; the key is not)."""
        return str(self._identity.address)

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> BuilderClient:
        await self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def header(self, body: bytes) -> str:
        """The X-Flashbots-Signature value of `body` under our identity."""
        return signature_header(body, self._identity)

    async def send_bundle(
        self, txs: Sequence[str], block: int, *, reverting: Sequence[str] = (),
        replacement_uuid: str | None = None,
    ) -> list[BuilderReply]:
        """`eth_sendBundle`: `txs` (raw signed, in order) for block `block` only."""
        return await self.request("eth_sendBundle", [bundle_params(
            txs, block, reverting=reverting, replacement_uuid=replacement_uuid)])

    async def call_bundle(
        self, txs: Sequence[str], block: int, state_block: int | str = "latest",
    ) -> list[BuilderReply]:
        """`eth_callBundle`: `txs` simulated in block `block` on the state of `state_block`."""
        state = hex(state_block) if isinstance(state_block, int) else state_block
        return await self.request("eth_callBundle", [{
            "txs": list(txs), "blockNumber": hex(block), "stateBlockNumber": state}])

    async def mev_send_bundle(
        self, body: Sequence[Mapping[str, Any]], block: int, max_block: int | None = None,
    ) -> list[BuilderReply]:
        """`mev_sendBundle` (MEV-Share v0.1): `body` for blocks `block`..`max_block`."""
        return await self.request("mev_sendBundle", [mev_params(body, block, max_block)])

    async def request(self, method: str, params: list[Any]) -> list[BuilderReply]:
        """One signed request to every builder at once; one reply per builder, in order."""
        [replies] = await self.send_many([(method, params)])
        return replies

    async def send_many(
        self, requests: Sequence[tuple[str, list[Any]]]
    ) -> list[list[BuilderReply]]:
        """Several requests (say, one bundle per target block), each to every builder, all
        at once; for each request, one reply per builder in the endpoints' order."""
        if self.send_gate is not None and any(m != "eth_callBundle" for m, _ in requests):
            try:
                self.send_gate()
            except Exception as exc:  # not the leader: nothing leaves, every builder says so
                return [[BuilderReply(e.name, False, error=f"not sent: {exc}")
                         for e in self.endpoints] for _ in requests]
        await self.open()
        bodies = [json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                              "params": params}).encode() for method, params in requests]
        # Signed once per body: every builder checks the same bytes.
        signed = [(body, self.header(body)) for body in bodies]
        flat = await asyncio.gather(*(
            self._post(endpoint, body, header)
            for body, header in signed for endpoint in self.endpoints))
        width = len(self.endpoints)
        return [list(flat[i * width:(i + 1) * width]) for i in range(len(requests))]

    async def _post(self, endpoint: BuilderEndpoint, body: bytes, header: str) -> BuilderReply:
        assert self._session is not None
        started = time.monotonic()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: header}
        try:
            async with self._session.post(endpoint.url, data=body, headers=headers) as answer:
                text = await answer.text()
                if answer.status != 200:
                    return BuilderReply(endpoint.name, False, error=f"HTTP {answer.status}: "
                                        f"{text[:200]}", seconds=time.monotonic() - started)
            reply = json.loads(text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # One builder down or slow is that builder's reply; the others go on.
            what = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            return BuilderReply(endpoint.name, False, error=what,
                                seconds=time.monotonic() - started)
        seconds = time.monotonic() - started
        if not isinstance(reply, dict):
            return BuilderReply(endpoint.name, False, error="malformed answer", seconds=seconds)
        if reply.get("error") is not None:
            error = reply["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            return BuilderReply(endpoint.name, False, error=str(message), seconds=seconds)
        return BuilderReply(endpoint.name, True, result=reply.get("result"), seconds=seconds)


def bundle_params(
    txs: Sequence[str], block: int, *, reverting: Sequence[str] = (),
    replacement_uuid: str | None = None,
) -> dict[str, Any]:
    """The parameter object of `eth_sendBundle`."""
    params: dict[str, Any] = {"txs": list(txs), "blockNumber": hex(block)}
    if reverting:
        params["revertingTxHashes"] = list(reverting)
    if replacement_uuid is not None:
        params["replacementUuid"] = replacement_uuid
    return params


def mev_params(
    body: Sequence[Mapping[str, Any]], block: int, max_block: int | None = None,
) -> dict[str, Any]:
    """The parameter object of `mev_sendBundle` (version v0.1)."""
    inclusion: dict[str, Any] = {"block": hex(block)}
    if max_block is not None and max_block != block:
        inclusion["maxBlock"] = hex(max_block)
    return {"version": "v0.1", "inclusion": inclusion, "body": [dict(b) for b in body]}
