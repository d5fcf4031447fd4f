"""One keeper per journal and account (keeper/lock.py): a second `keeper run` exits with one
line naming the holder's pid, and a dead holder leaves no stale lock."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from keeper import cli, secrets
from keeper.lock import AlreadyRunning, account_lock, journal_lock
from keeper.log import reset_logging

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
HOLD = """\
import sys, time
from pathlib import Path
from keeper.lock import journal_lock
lock = journal_lock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""
CONFIG = """\
[chain]
chain_id = 1
http_urls = ["http://127.0.0.1:9"]
[execution]
mode = "live"
quote_token = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
journal = "j.sqlite"
[dex]
uniswap_v2_factory = "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"
[strategies.aave_v3]
addresses_provider = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"
"""


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_") and "__" in name:
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    secrets.clear_secrets()
    yield
    reset_logging()
    secrets.clear_secrets()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the journal lock of tmp_path/j.sqlite."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "j.sqlite")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait()


def test_second_lock_names_the_holder(tmp_path: Path) -> None:
    with (journal_lock(tmp_path / "j.sqlite"),
          pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}")):
        journal_lock(tmp_path / "j.sqlite").acquire()
    with journal_lock(tmp_path / "j.sqlite"):  # released: free again
        pass


def test_account_lock_is_per_chain_and_address(tmp_path: Path) -> None:
    address = "0x" + "ab" * 20
    with account_lock(1, address, tmp_path):
        with pytest.raises(AlreadyRunning, match=r"(?i)account 0x(ab){20} on chain 1"):
            account_lock(1, address.upper().replace("0X", "0x"), tmp_path).acquire()
        with account_lock(10, address, tmp_path):
            pass


def test_dead_holder_leaves_no_stale_lock(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(AlreadyRunning, match=f"pid {holder.pid}"):
        journal_lock(tmp_path / "j.sqlite").acquire()
    holder.kill()
    holder.wait()
    with journal_lock(tmp_path / "j.sqlite"):
        pass


def test_second_run_exits_with_one_line(
    tmp_path: Path, holder: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    path = tmp_path / "keeper.toml"
    path.write_text(CONFIG)
    result = CliRunner().invoke(cli.main, ["run", "--config", str(path)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("keeper: error: journal ") and f"pid {holder.pid}" in line


def test_second_run_on_the_same_account_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another journal, the same account: refused too (their nonces would collide)."""
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    path = tmp_path / "keeper.toml"
    path.write_text(CONFIG)
    from eth_account import Account  # noqa: PLC0415

    address = Account.from_key(KEY).address
    with account_lock(1, address):
        result = CliRunner().invoke(cli.main, ["run", "--config", str(path)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"account {address} on chain 1" in line and f"pid {os.getpid()}" in line


def test_deploy_executor_waits_for_no_keeper_on_its_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy-executor signs from the account too: refused while a keeper holds it, before
    any RPC (the config's endpoint answers nothing)."""
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    path = tmp_path / "keeper.toml"
    path.write_text(CONFIG)
    from eth_account import Account  # noqa: PLC0415

    address = Account.from_key(KEY).address
    with account_lock(1, address):
        result = CliRunner().invoke(cli.main, ["deploy-executor", "--config", str(path)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert f"account {address} on chain 1" in line and f"pid {os.getpid()}" in line
