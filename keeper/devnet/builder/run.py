"""Start and stop the devnet builder: an anvil that never mines by itself, and the
builder's two JSON-RPC endpoints in front of it.

`BuilderService` runs on an asyncio loop (the endpoints, and a block every `interval`
seconds; 0 mines only on `builder_buildBlock`). `BuilderThread` runs it on a loop of its
own in a daemon thread, for synchronous callers: `keeper devnet --builder` and the tests
(`running_builder`). `builder_anvil` starts the anvil it needs (`--no-mining --order
fifo`), from a saved state or empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from keeper.anvil import Anvil
from keeper.devnet.builder.chain import AnvilClient
from keeper.devnet.builder.server import Builder

log = structlog.get_logger(__name__)

ANVIL_ARGS = ("--no-mining", "--order", "fifo")
# The builder's fee recipient (block.coinbase of every block it mines): a fixed address
# that holds no code and no key, so its balance only grows by what the builder is paid.
DEFAULT_COINBASE = "0x00000000000000000000000000000000000b1d00"
DEFAULT_INTERVAL = 1.0


def builder_anvil(*, load_state: Path | None = None, port: int = 0) -> Anvil:
    """A started anvil for the builder (the caller stops it)."""
    return Anvil(args=ANVIL_ARGS, load_state=load_state, port=port).start()


def restart_for_builder(anvil: Anvil) -> Anvil:
    """Stop `anvil` (an automining devnet) and start a builder anvil from its state."""
    dumped = anvil.rpc("anvil_dumpState")
    state = gzip.decompress(bytes.fromhex(str(dumped).removeprefix("0x")))
    with tempfile.TemporaryDirectory(prefix="keeper-builder-") as folder:
        path = Path(folder) / "state.json"
        path.write_bytes(state)
        anvil.stop()
        return builder_anvil(load_state=path)


class BuilderService:
    """The builder on the running asyncio loop: its endpoints and its block timer."""

    def __init__(
        self, anvil_url: str, *, ports: tuple[int, ...] = (0, 0), host: str = "127.0.0.1",
        interval: float = DEFAULT_INTERVAL, coinbase: str = DEFAULT_COINBASE,
    ) -> None:
        self.builder = Builder(AnvilClient(anvil_url, coinbase), endpoints=len(ports))
        self._ports, self._host, self.interval = ports, host, interval
        self._runners: list[web.AppRunner] = []
        self._timer: asyncio.Task[None] | None = None
        self.urls: list[str] = []

    async def start(self) -> list[str]:
        """Open the endpoints; their URLs (one per port, in order)."""
        chain = self.builder.chain
        await chain.open()
        await chain.call("evm_setAutomine", False)
        await chain.call("anvil_setCoinbase", chain.coinbase)
        await self.builder.refresh()
        for endpoint, port in enumerate(self._ports):
            runner = web.AppRunner(self.builder.app(endpoint), access_log=None)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, self._host, port)
            await site.start()
            server = site._server  # the bound port when 0 was asked for
            assert isinstance(server, asyncio.base_events.Server)
            self.urls.append(f"http://{self._host}:{server.sockets[0].getsockname()[1]}")
        if self.interval > 0:
            self._timer = asyncio.create_task(self._blocks())
        return self.urls

    async def _blocks(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at + self.interval, loop.time())
            try:
                report = await self.builder.build()
            except Exception as exc:  # one bad block must not stop the chain
                log.error("builder block failed", error=str(exc))
                continue
            if report.mismatch:
                log.error("builder block differs from its plan", mismatch=report.mismatch)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        self.builder.hints.close()
        for runner in self._runners:
            await runner.cleanup()
        await self.builder.chain.close()


class BuilderThread:
    """A BuilderService on its own event loop in a daemon thread."""

    def __init__(self, anvil_url: str, **kwargs: Any) -> None:
        self._anvil_url, self._kwargs = anvil_url, kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="devnet-builder")
        self.service: BuilderService | None = None
        self.urls: list[str] = []

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=60)

    def start(self) -> BuilderThread:
        self._thread.start()

        async def create() -> BuilderService:
            return BuilderService(self._anvil_url, **self._kwargs)

        self.service = self._run(create())
        try:
            self.urls = self._run(self.service.start())
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def events_url(self) -> str:
        return self.urls[0] + "/events"

    def stop(self) -> None:
        if self.service is not None and self._loop.is_running():
            with contextlib.suppress(Exception):
                self._run(self.service.stop())
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running() and not self._thread.is_alive():
            self._loop.close()


@contextlib.contextmanager
def running_builder(
    *, interval: float = 0.0, load_state: Path | None = None, **kwargs: Any
) -> Iterator[tuple[Anvil, BuilderThread]]:
    """An anvil and a builder in front of it on free ports; both stopped on exit."""
    anvil = builder_anvil(load_state=load_state)
    try:
        thread = BuilderThread(anvil.rpc_url, interval=interval, **kwargs).start()
        try:
            yield anvil, thread
        finally:
            thread.stop()
    finally:
        anvil.stop()
