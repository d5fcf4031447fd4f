"""Run anvil (from the npm package @foundry-rs/anvil) as a child process.

Shared by `keeper devnet` (keeper/devnet/), the dry-run fork (keeper/execution/fork.py),
the archive backtest and the tests, so none of them imports another's package for it.

The binary is started directly, never through npx: killing an npx PID would
leave the real anvil running. On Linux the child also gets PR_SET_PDEATHSIG,
so it dies with us even if we are killed with SIGKILL.

Anvil writes the chain states it cannot keep in memory to disk (by default under
~/.foundry/anvil/tmp, never removed when anvil is killed: a day of tests left 79 GB
there). Each of ours gets its own `--cache-path` in the system temp folder, removed
when it stops; one left by an anvil that was killed is removed by the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from keeper.errors import DevnetError
from keeper.paths import node_modules

_LISTENING = re.compile(r"Listening on ([0-9.]+):(\d+)")
_CACHE_PREFIX = "keeper-anvil-"
_PID_FILE = "anvil.pid"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def anvil_binary() -> Path:
    """Path of the anvil binary shipped in the platform sub-package."""
    override = os.environ.get("KEEPER_ANVIL_BIN")
    if override:
        return Path(override)
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    path = node_modules() / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    if not path.is_file():
        raise DevnetError(f"anvil binary not found at {path}: run `npm ci` in the project root")
    return path


def _die_with_parent() -> None:
    # Runs in the child between fork and exec.
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def remove_orphaned_caches() -> int:
    """Remove the state caches of our anvils that are no longer running (killed ones never
    clean up); returns how many were removed."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob(_CACHE_PREFIX + "*"):
        try:
            pid = int((folder / _PID_FILE).read_text())
        except (OSError, ValueError):
            # Not started yet, or its start failed: leave young ones to their owner.
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > 3600:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            continue
        if not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process with that pid
    return True


def rpc_call(url: str, method: str, params: Sequence[Any] = (), timeout: float = 5.0) -> Any:
    """One JSON-RPC call over HTTP with the standard library (no web3 needed)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise DevnetError(f"{method} failed on {url}: {reply['error'].get('message')}")
    return reply["result"]


class Anvil:
    """An anvil child process on a free loopback port; a context manager that always stops it."""

    def __init__(
        self,
        *,
        args: Sequence[str] = (),
        load_state: Path | None = None,
        block_time: float | None = None,
        port: int = 0,
        chain_id: int = 31337,
        startup_timeout: float = 30.0,
    ) -> None:
        self._args = list(args)
        self._load_state = load_state
        self._block_time = block_time
        self._port = port
        self.chain_id = chain_id
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._cache: Path | None = None  # where this anvil spills states (removed on stop)
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        cmd = [
            str(anvil_binary()),
            "--host", "127.0.0.1",
            "--port", str(self._port),
            "--chain-id", str(self.chain_id),
        ]
        if self._load_state is not None:
            cmd += ["--load-state", str(self._load_state)]
        if self._block_time is not None:
            cmd += ["--block-time", str(self._block_time)]
        if self._cache is not None:
            cmd += ["--cache-path", str(self._cache)]
        return cmd + self._args

    def start(self) -> Anvil:
        remove_orphaned_caches()
        self._cache = Path(tempfile.mkdtemp(prefix=_CACHE_PREFIX))
        # Lives as long as the process; closed in stop().
        self._log = tempfile.TemporaryFile(mode="w+", prefix="anvil-", suffix=".log")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (only calls prctl, no locks)
            )
            (self._cache / _PID_FILE).write_text(str(self._process.pid))
        except BaseException:
            self.stop()
            raise
        try:
            self._await_listening()
            self._await_rpc()
        except BaseException:
            self.stop()
            raise
        return self

    def _await_listening(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + self._startup_timeout
        for line in self._process.stdout:
            match = _LISTENING.search(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                break
            if time.monotonic() > deadline:
                raise DevnetError("anvil did not report its port in time")
        else:
            raise DevnetError(f"anvil exited at start-up: {self._tail_log()}")
        # Keep draining stdout so anvil never blocks on a full pipe.
        stdout = self._process.stdout
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()

    def _await_rpc(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while True:
            try:
                rpc_call(self.rpc_url, "eth_chainId", timeout=1.0)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise DevnetError(f"anvil at {self.rpc_url} did not answer: {exc}") from None
                if self._process is not None and self._process.poll() is not None:
                    raise DevnetError(f"anvil exited at start-up: {self._tail_log()}") from None
                time.sleep(0.02)

    def _tail_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().splitlines() if line.strip()]
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if anvil has not exited within 5 s."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        cache, self._cache = self._cache, None
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def poll(self) -> int | None:
        """anvil's exit code, or None while it runs (or was never started)."""
        return self._process.poll() if self._process is not None else None

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc_call(self.rpc_url, method, params)


@contextlib.contextmanager
def running_anvil(**kwargs: Any) -> Iterator[Anvil]:
    with Anvil(**kwargs) as anvil:
        yield anvil
