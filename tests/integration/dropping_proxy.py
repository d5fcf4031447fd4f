"""An HTTP/1.1 proxy in front of one JSON-RPC node that drops connections when told to.

Each request is read whole (head and body) before anything is decided, so a drop can pick
its request by JSON-RPC method. What it can do to a request:

- `drop`: close the client's connection without forwarding it: the client sees the server
  close a kept-alive connection as it reused it (aiohttp: `ServerDisconnectedError`);
- `lose`: forward it, read the node's answer, then close the client's connection without
  that answer: the node acted on it (a send reached its pool) and the client cannot know.

Drops are armed with `drop_next` / `lose_next` (the next `count` requests, optionally only
those naming one of `methods`). `idle_close` (settable at any time) closes a client
connection that carried no request for that long, as a server's keep-alive timeout does.
`requests` counts what came in by method, `dropped` what was dropped or lost, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import Iterable
from typing import Literal

Action = Literal["drop", "lose"]


@dataclasses.dataclass
class _Rule:
    action: Action
    count: int
    methods: frozenset[str] | None


def _methods_of(body: bytes) -> list[str]:
    try:
        payload = json.loads(body)
    except ValueError:
        return []
    items = payload if isinstance(payload, list) else [payload]
    return [str(i.get("method")) for i in items if isinstance(i, dict)]


async def _read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 message (head and body, Content-Length or chunked); None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "content-length" in fields:
        return head + await reader.readexactly(int(fields["content-length"]))
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            body += size_line
            size = int(size_line.split(b";")[0], 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                return head + body
    return head


class DroppingProxy:
    """Forwards HTTP to `host:port`, one upstream connection per client connection."""

    def __init__(self, host: str, port: int, *, idle_close: float | None = None) -> None:
        self.target = (host, port)
        self.idle_close = idle_close
        self.requests: Counter[str] = Counter()
        self.dropped: list[tuple[Action, tuple[str, ...]]] = []
        self.idle_closed = 0
        self._rules: list[_Rule] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def drop_next(self, count: int, methods: Iterable[str] | None = None) -> None:
        """Close the connection of each of the next `count` requests (naming one of
        `methods`, when given) without forwarding it."""
        self._rules.append(_Rule("drop", count, frozenset(methods) if methods else None))

    def lose_next(self, count: int, methods: Iterable[str] | None = None) -> None:
        """Forward each of the next `count` requests (naming one of `methods`, when given),
        then close the connection instead of passing the answer on."""
        self._rules.append(_Rule("lose", count, frozenset(methods) if methods else None))

    @property
    def armed(self) -> int:
        """Drops still to come."""
        return sum(r.count for r in self._rules)

    def _action(self, methods: list[str]) -> Action | None:
        for rule in self._rules:
            if rule.count > 0 and (rule.methods is None or rule.methods & set(methods)):
                rule.count -= 1
                return rule.action
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    request = await asyncio.wait_for(_read_message(reader), self.idle_close)
                except TimeoutError:
                    self.idle_closed += 1
                    return
                if request is None:
                    return
                methods = _methods_of(request.partition(b"\r\n\r\n")[2])
                self.requests.update(methods)
                action = self._action(methods)
                if action == "drop":
                    self.dropped.append((action, tuple(methods)))
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection(*self.target)
                upstream[1].write(request)
                await upstream[1].drain()
                answer = await _read_message(upstream[0])
                if answer is None:
                    return
                if action == "lose":
                    self.dropped.append((action, tuple(methods)))
                    return
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            if upstream is not None:
                upstream[1].close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
