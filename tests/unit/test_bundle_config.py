"""Bundle mode's configuration: `execution.submitter`, `[[execution.builders]]`,
`bundle_blocks`, and the two keys it reads only from the environment (the header identity
and the nonce lanes), registered as secrets and refused in the file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from keeper import secrets
from keeper.chain.http import HttpRpc
from keeper.config import load_config
from keeper.execution.bundles_config import make_executor
from keeper.execution.bundles_executor import BundleExecutor
from keeper.execution.executor import Executor
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from tests.unit.test_config import KEY, MINIMAL, clean_env, error_of, write  # noqa: F401

SEARCHER = "5e" * 32
LANES = ["11" * 32, "0x" + "22" * 32]
BUNDLE = MINIMAL + """submitter = "bundle"
bundle_blocks = 5
flash_executor = "0x00000000000000000000000000000000000fee05"

[[execution.builders]]
name = "first"
url = "http://127.0.0.1:1"

[[execution.builders]]
name = "second"
url = "https://builder.example/rpc"
"""


def test_bundle_mode_needs_a_builder(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL + 'submitter = "bundle"\n'))
    assert "[[execution.builders]]" in message
    twice = BUNDLE.replace('name = "second"', 'name = "first"')
    assert "own name" in error_of(write(tmp_path, twice))
    bad = BUNDLE.replace("https://builder.example/rpc", "builder.example")
    assert "http://" in error_of(write(tmp_path, bad))


def test_builder_urls_are_masked_for_display(tmp_path: Path) -> None:
    keyed = BUNDLE.replace("https://builder.example/rpc",
                           "https://builder.example/v1/a1b2c3d4e5f6a7b8c9d0")
    shown = load_config(write(tmp_path, keyed)).masked()["execution"]["builders"]
    assert [b["url"] for b in shown] == ["http://127.0.0.1:1",
                                         f"https://builder.example/v1/{secrets.MASK}"]


@pytest.mark.parametrize("key", ["searcher_key", "lane_keys"])
def test_bundle_keys_are_refused_in_the_file(tmp_path: Path, key: str) -> None:
    value = f'"{SEARCHER}"' if key == "searcher_key" else f'["{SEARCHER}"]'
    message = error_of(write(tmp_path, BUNDLE + f"\n[account]\n{key} = {value}\n"))
    assert f"account.{key} must not be in the config file" in message
    assert SEARCHER not in message


def test_bundle_mode_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    monkeypatch.setenv("KEEPER_ACCOUNT__SEARCHER_KEY", SEARCHER)
    monkeypatch.setenv("KEEPER_ACCOUNT__LANE_KEYS", json.dumps(LANES))
    config = load_config(write(tmp_path, BUNDLE))
    assert config.execution.submitter == "bundle" and config.execution.bundle_blocks == 5
    assert [b.name for b in config.execution.builders] == ["first", "second"]
    account = config.account.load()
    assert account is not None
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        chain = HttpRpc("http://127.0.0.1:1")
        executor = make_executor(config, chain, account, journal, FeePolicy(10, 1),
                                 lambda c, d, got, paid, gas: 0)
        assert isinstance(executor, BundleExecutor)
        bundles = executor.bundles
        assert bundles.blocks == 5 and len(bundles.lanes) == 3
        assert [e.url for e in bundles.client.endpoints] == [
            "http://127.0.0.1:1", "https://builder.example/rpc"]
        # The identity and the lanes' keys are secrets: masked wherever they would show.
        for key in (SEARCHER, *LANES):
            assert secrets.redact(f"key {key}") == f"key {secrets.MASK}"
        assert SEARCHER not in repr(config.account)
        assert bundles.client.identity_address.lower() == \
            config.account.searcher().address.lower()
        asyncio.run(bundles.client.close())
    finally:
        journal.close()
    public = load_config(write(tmp_path, MINIMAL))
    assert public.execution.submitter == "public"
    executor = make_executor(public, HttpRpc("http://127.0.0.1:1"), account,
                             Journal(tmp_path / "other.sqlite"), FeePolicy(10, 1),
                             lambda c, d, got, paid, gas: 0)
    assert type(executor) is Executor
    executor.journal.close()
