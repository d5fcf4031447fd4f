"""`[intake]`: off by default; on, it is refused with one clear line unless liquidations go
as bundles (a public send before the oracle transaction is mined would land in front of it)
and feeds are prepared for; an unknown key is an error like anywhere in the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import pytest

from keeper.config import load_config
from keeper.errors import ConfigError
from keeper.intake.wire import build_intake
from keeper.wiring import Keeper

BASE = """\
[chain]
chain_id = 1
http_urls = ["http://127.0.0.1:8545"]

[execution]
mode = "dry-run"
"""


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(BASE + text)
    return path


def test_intake_is_off_by_default(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, ""))
    assert not config.intake.enabled
    assert build_intake(cast(Keeper, None), config) is None  # nothing is read of the keeper


def test_intake_needs_bundles(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, '\n[intake]\nhint_urls = ["http://x/events"]\n'))
    assert config.intake.enabled
    with pytest.raises(ConfigError, match=re.escape('needs execution.submitter = "bundle"')):
        build_intake(cast(Keeper, None), config)


def test_intake_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="poll_interval_ms"):
        load_config(_config(tmp_path, '\n[intake]\npending = "poll"\npoll_interval_ms = 0\n'))
    with pytest.raises(ConfigError, match="pending"):
        load_config(_config(tmp_path, '\n[intake]\npending = "mempool"\n'))
