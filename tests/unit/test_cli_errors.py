"""Bad input gives one `keeper: error:` line naming the key, file or URL, and exit code 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from eth_account import Account

from keeper import cli, secrets
from keeper.execution.journal import JournalStateError
from keeper.log import reset_logging

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = Account.from_key(KEY).address
CONFIG = """\
[chain]
chain_id = {chain_id}
http_urls = ["{url}"]

[execution]
mode = "dry-run"
"""


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith(("KEEPER_ACCOUNT", "KEEPER_CHAIN", "KEEPER_EXECUTION")):
            monkeypatch.delenv(name)
        if name.upper().startswith(("KEEPER_STRATEGIES", "KEEPER_CONFIG")):
            monkeypatch.delenv(name)
    secrets.clear_secrets()
    yield
    reset_logging()
    secrets.clear_secrets()


class _Rpc(BaseHTTPRequestHandler):
    chain_id = 1

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": hex(self.chain_id)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def rpc_url() -> Iterator[str]:
    """A tiny JSON-RPC server on loopback that answers eth_chainId = 1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rpc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, ["--log-format", "json", *args])


def assert_one_error_line(result: Result, *names: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("keeper: error: ")
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def test_check_config_ok(tmp_path: Path, rpc_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    path = write(tmp_path, CONFIG.format(chain_id=1, url=rpc_url))
    result = run("check-config", str(path))
    assert result.exit_code == 0, result.output
    assert f"# account: {ADDRESS}" in result.stdout
    assert "chain id verified" in result.stdout
    assert "**********" in result.stdout and KEY not in result.output


def test_check_config_uses_global_config_option(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG.format(chain_id=1, url="http://127.0.0.1:1"))
    result = run("--config", str(path), "check-config", "--offline")
    assert result.exit_code == 0, result.output
    assert "not checked" in result.stdout and "account: none configured" in result.stdout


def test_missing_file(tmp_path: Path) -> None:
    assert_one_error_line(run("check-config", str(tmp_path / "nope.toml")), "nope.toml")


def test_missing_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_error_line(run("check-config"), "keeper.toml")


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[chain]\nchain_id = 1\nhttp_urls = [\n")
    assert_one_error_line(run("check-config", "--offline", str(path)), str(path), "line")


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG.format(chain_id=1, url="http://x") + "turbo = true\n")
    assert_one_error_line(run("check-config", "--offline", str(path)), "execution.turbo")


def test_wrong_type(tmp_path: Path) -> None:
    text = CONFIG.format(chain_id=1, url="http://x") + 'max_fee_per_gas_gwei = "cheap"\n'
    path = write(tmp_path, text)
    assert_one_error_line(
        run("check-config", "--offline", str(path)), "execution.max_fee_per_gas_gwei", str(path)
    )


def test_unknown_strategy(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG.format(chain_id=1, url="http://x") + "[strategies.euler]\n")
    assert_one_error_line(run("check-config", "--offline", str(path)), "euler", "aave_v3")


def test_unreachable_rpc(tmp_path: Path, dead_url: str) -> None:
    path = write(tmp_path, CONFIG.format(chain_id=1, url=dead_url))
    assert_one_error_line(run("check-config", str(path)), dead_url, "unreachable")


def test_chain_id_mismatch(tmp_path: Path, rpc_url: str) -> None:
    path = write(tmp_path, CONFIG.format(chain_id=10, url=rpc_url))
    line = assert_one_error_line(run("check-config", str(path)), rpc_url, "10")
    assert "chain id 1," in line


def test_offline_skips_rpc(tmp_path: Path, dead_url: str) -> None:
    path = write(tmp_path, CONFIG.format(chain_id=1, url=dead_url))
    assert run("check-config", "--offline", str(path)).exit_code == 0


def keystore_config(tmp_path: Path, keystore: str, password_file: str) -> Path:
    text = CONFIG.format(chain_id=1, url="http://x")
    return write(
        tmp_path, f'{text}\n[account]\nkeystore = "{keystore}"\npassword_file = "{password_file}"\n'
    )


def make_keystore(tmp_path: Path, password: str = "pw-for-tests") -> None:
    encrypted = Account.encrypt(bytes.fromhex(KEY), password, kdf="pbkdf2", iterations=2)
    (tmp_path / "key.json").write_text(json.dumps(encrypted))
    (tmp_path / "pw.txt").write_text("pw-for-tests\n")


def test_keystore_ok(tmp_path: Path) -> None:
    make_keystore(tmp_path)
    result = run("check-config", "--offline", str(keystore_config(tmp_path, "key.json", "pw.txt")))
    assert result.exit_code == 0, result.output
    assert f"# account: {ADDRESS}" in result.stdout
    assert KEY not in result.output and "pw-for-tests" not in result.output


def test_missing_keystore(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("x\n")
    path = keystore_config(tmp_path, "gone.json", "pw.txt")
    assert_one_error_line(run("check-config", "--offline", str(path)), "gone.json")


def test_keystore_not_json(tmp_path: Path) -> None:
    (tmp_path / "key.json").write_text("garbage")
    path = keystore_config(tmp_path, "key.json", "pw.txt")
    assert_one_error_line(run("check-config", "--offline", str(path)), "key.json", "JSON")


def test_wrong_password(tmp_path: Path) -> None:
    make_keystore(tmp_path, password="another password")
    path = keystore_config(tmp_path, "key.json", "pw.txt")
    line = assert_one_error_line(run("check-config", "--offline", str(path)), "key.json")
    assert "wrong password" in line and "pw-for-tests" not in line


def test_missing_password_file(tmp_path: Path) -> None:
    make_keystore(tmp_path)
    path = keystore_config(tmp_path, "key.json", "nopw.txt")
    assert_one_error_line(run("check-config", "--offline", str(path)), "nopw.txt")


def test_private_key_in_file(tmp_path: Path) -> None:
    text = CONFIG.format(chain_id=1, url="http://x") + f'\n[account]\nprivate_key = "0x{KEY}"\n'
    path = write(tmp_path, text)
    line = assert_one_error_line(
        run("check-config", "--offline", str(path)), "KEEPER_ACCOUNT__PRIVATE_KEY", "keystore"
    )
    assert KEY not in line


def test_internal_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: object) -> None:
        raise RuntimeError(f"surprise {KEY}")

    monkeypatch.setattr(cli, "load_config", boom)
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    result = run("check-config")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "keeper: internal error: RuntimeError: surprise ********** "
        "(run with --debug for the traceback)"
    ]


def test_debug_shows_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: object) -> None:
        raise RuntimeError(f"surprise {KEY}")

    monkeypatch.setattr(cli, "load_config", boom)
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    result = run("--debug", "check-config")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "in boom" in result.stderr
    assert (
        result.stderr.splitlines()[-1]
        == "keeper: internal error: RuntimeError: surprise **********"
    )
    assert KEY not in result.output


def test_a_task_groups_sole_error_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # A daemon's task failing on a journal inconsistency reaches the CLI wrapped in its
    # task group's ExceptionGroup (once "internal error: ExceptionGroup: ...").
    def task_failed(path: object) -> None:
        inner = ExceptionGroup("inner", [JournalStateError("no intent with key k")])
        raise ExceptionGroup("unhandled errors in a TaskGroup", [inner])

    monkeypatch.setattr(cli, "load_config", task_failed)
    result = run("check-config")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["keeper: error: no intent with key k"]

    def two_failed(path: object) -> None:
        raise ExceptionGroup("unhandled errors in a TaskGroup",
                             [RuntimeError("a"), RuntimeError("b")])

    monkeypatch.setattr(cli, "load_config", two_failed)
    result = run("check-config")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "keeper: internal error: ExceptionGroup: unhandled errors in a TaskGroup (2 "
        "sub-exceptions) (run with --debug for the traceback)"]


def test_keyboard_interrupt_exits_130_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(path: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_config", interrupted)
    result = run("check-config")
    assert result.exit_code == 130
    assert result.output == ""


def test_devnet_group_is_registered() -> None:
    command = cli.main.get_command(click.Context(cli.main), "devnet")
    assert command is not None and command.name == "devnet"


def test_console_script_one_line(tmp_path: Path) -> None:
    """The installed entry point behaves like CliRunner: one line, exit 2, no traceback."""
    script = Path(sys.executable).with_name("keeper")
    if not script.exists():
        pytest.skip("console script not installed")
    path = write(tmp_path, CONFIG.format(chain_id=1, url="http://x") + "turbo = 1\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_ACC")}
    done = subprocess.run(
        [str(script), "check-config", "--offline", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"keeper: error: {path}:7: unknown key execution.turbo"]
    assert done.stdout == ""
