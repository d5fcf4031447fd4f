"""Two `keeper run` replicas of one account on the devnet, for the failover test and the
takeover benchmark (benchmarks/bench_ha_takeover.py).

Each replica is a real daemon process (`keeper --log-format json run`) with `[ha]`
pointing at the session's PostgreSQL server and one schema; its HTTP endpoint is its own
`RecordingProxy` in front of the devnet's anvil, which forwards every request and notes
when a raw transaction went through it: that is how a test sees which process broadcast
what, and when (heads and logs come over the devnet's WebSocket directly).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from tests.conftest import Devnet
from tests.integration.helpers import KEEP_ENV
from tests.integration.test_scan_run import devnet_toml

KEEPER = Path(sys.executable).parent / "keeper"
LEADING = '"leading: this replica signs and sends"'
RUNNING = '"keeper running"'
SEND = "eth_sendRawTransaction"


class RecordingProxy:
    """A JSON-RPC proxy to `upstream` on a free local port; `sends` holds (monotonic time,
    raw transaction) for every eth_sendRawTransaction that passed, batches included."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.sends: list[tuple[float, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                try:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    proxy.note(body)
                    request = urllib.request.Request(
                        proxy.upstream, data=body,
                        headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        data = answer.read()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the replica was killed meanwhile

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def note(self, body: bytes) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            return
        now = time.monotonic()
        for item in payload if isinstance(payload, list) else [payload]:
            if isinstance(item, dict) and item.get("method") == SEND:
                self.sends.append((now, str(item["params"][0])))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Replica:
    """One replica's daemon process and its JSON log lines (stderr)."""

    name: str
    config: Path
    proxy: RecordingProxy
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
        env |= {k: v for k, v in os.environ.items() if k.upper() in KEEP_ENV}
        env["KEEPER_ACCOUNT__PRIVATE_KEY"] = DEVNET_LIQUIDATOR_KEY
        self.lines = []
        self.process = subprocess.Popen(
            [str(KEEPER), "--config", str(self.config), "--log-format", "json", "run"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        stderr = self.process.stderr
        assert stderr is not None
        lines = self.lines
        threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")),
                         daemon=True).start()

    def saw(self, event: str) -> bool:
        return any(event in line for line in list(self.lines))

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def tail(self) -> list[str]:
        return list(self.lines)[-5:]


def replica_config(devnet: Devnet, folder: Path, *, proxy: RecordingProxy, dsn: str,
                   schema: str, name: str, lease_seconds: float = 1.0) -> Path:
    """The devnet's keeper.toml (live, WebSocket intake) sending through `proxy`, with `[ha]`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = devnet_toml(devnet, folder, mode="live", ws=True)
    text = path.read_text().replace(f'http_urls = ["{devnet.info.rpc_url}"]',
                                    f'http_urls = ["{proxy.url}"]')
    text += (f'\n[ha]\ndsn = "{dsn}"\njournal_schema = "{schema}"\nreplica = "{name}"\n'
             f"lease_seconds = {lease_seconds}\n")
    path.write_text(text)
    return path


def journal_rows(dsn: str, schema: str) -> list[dict[str, Any]]:
    """Every journaled transaction with its intent's key and status, oldest first."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        try:
            rows = conn.execute(
                "SELECT t.tx_hash, t.intent_key, t.nonce, t.status, t.epoch, t.raw_tx, i.status"
                " FROM transactions t JOIN intents i ON i.key = t.intent_key ORDER BY t.seq"
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [{"hash": r[0].lower(), "key": r[1], "nonce": int(r[2]), "status": r[3],
             "epoch": r[4], "raw": r[5], "intent": r[6]} for r in rows]
