"""Logging: JSON or console, bound context, secrets redacted everywhere (logs and errors)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner

from keeper import cli, secrets
from keeper.log import configure_logging, reset_logging

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
CONFIG = """\
[chain]
chain_id = 1
http_urls = ["http://127.0.0.1:1"]
"""


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith(("KEEPER_ACCOUNT", "KEEPER_CHAIN", "KEEPER_EXECUTION")):
            monkeypatch.delenv(name)
    secrets.clear_secrets()
    yield
    structlog.contextvars.clear_contextvars()
    reset_logging()
    secrets.clear_secrets()


def absent(text: str) -> bool:
    """No part of the key (any case, with or without 0x, even truncated) is in `text`."""
    text = text.lower()
    return all(KEY[i : i + 12] not in text for i in range(0, len(KEY) - 12, 4))


def test_json_lines_with_bound_context() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    structlog.contextvars.bind_contextvars(block=19_000_000, strategy="aave_v3")
    structlog.get_logger().info("opportunity", account="0xabc", tx="0xdef")
    structlog.get_logger().debug("hidden")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "opportunity" and event["level"] == "info"
    assert event["block"] == 19_000_000 and event["strategy"] == "aave_v3"
    assert event["account"] == "0xabc" and event["tx"] == "0xdef" and "timestamp" in event


def test_auto_is_json_off_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("auto", "debug", stream)
    structlog.get_logger().debug("x", n=1)
    assert json.loads(stream.getvalue())["n"] == 1


def test_console_renderer() -> None:
    stream = io.StringIO()
    configure_logging("console", "info", stream)
    structlog.get_logger().info("started", port=8545)
    text = stream.getvalue()
    assert "started" in text and "port=8545" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_stdlib_logging_goes_through_structlog() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    logging.getLogger("web3.providers").warning("retrying %s", "eth_call")
    event = json.loads(stream.getvalue())
    assert event["event"] == "retrying eth_call" and event["logger"] == "web3.providers"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_registered_secrets_are_redacted(fmt: str) -> None:
    secrets.register_secret("0x" + KEY)
    secrets.register_secret("keystore-password")
    stream = io.StringIO()
    configure_logging(fmt, "debug", stream)  # type: ignore[arg-type]
    log = structlog.get_logger()
    structlog.contextvars.bind_contextvars(account=KEY)
    log.info(f"key {KEY}", key="0x" + KEY, nested={"k": [KEY.upper()]}, pw="keystore-password")
    try:
        raise ValueError(f"bad {KEY}")
    except ValueError:
        log.exception("failed")
    logging.getLogger("web3").error("stdlib 0x%s", KEY)
    text = stream.getvalue()
    assert absent(text) and "keystore-password" not in text
    assert text.count("**********") >= 6


def test_configured_key_never_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check-config and a failing command, key set via env: no output contains the key."""
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", "0x" + KEY)
    good = tmp_path / "good.toml"
    good.write_text(CONFIG)
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG + "[execution]\nmode = 'live'\nmin_profit_quote = '0x" + KEY + "'\n")
    runner = CliRunner()
    outputs = []
    for args in (
        ["--log-level", "debug", "check-config", "--offline", str(good)],
        ["--log-level", "debug", "check-config", str(good)],  # unreachable RPC
        ["--debug", "check-config", "--offline", str(bad)],
        ["--debug", "--log-format", "console", "check-config", str(good)],
    ):
        result = runner.invoke(cli.main, args)
        assert result.exit_code in (0, 2), result.output
        outputs.append(result.stdout + result.stderr)
    assert "**********" in outputs[0] and "# account: 0x" in outputs[0]
    assert "min_profit_quote" in outputs[2]
    for output in outputs:
        assert absent(output), output


def test_key_not_in_subprocess_output(tmp_path: Path) -> None:
    """The same through the real console script, JSON logs at debug level."""
    script = Path(sys.executable).with_name("keeper")
    if not script.exists():
        pytest.skip("console script not installed")
    config = tmp_path / "keeper.toml"
    config.write_text(CONFIG + f"[account]\nkeystore = '{KEY}.json'\npassword_file = 'pw'\n")
    env = {**os.environ, "KEEPER_ACCOUNT__PRIVATE_KEY": KEY.upper()}
    for args in (["check-config", "--offline"], ["--debug", "check-config"]):
        done = subprocess.run(
            [str(script), "--log-level", "debug", "--config", str(config), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert absent(done.stdout + done.stderr), done.stderr
