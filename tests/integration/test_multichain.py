"""Two chains in one daemon: two anvil devnets with different chain ids, one `keeper run`
with `[chains.alpha]` and `[chains.beta]`. A WETH crash on each is liquidated on each (each
chain's own journal, signed for its own chain id); `/metrics` labels both chains; once
beta's node is killed, a deeper crash on alpha is still liquidated, the daemon keeps
running, and SIGTERM stops it with a summary per chain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from web3 import Web3

from keeper import secrets
from keeper.anvil import Anvil
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY, cache_key
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import post_price
from keeper.paths import cache_dir
from tests.conftest import TEST_SPEC, Devnet, wait_for
from tests.integration.helpers import KEEP_ENV, SPECS, clear_keeper_env, confirmed_intents

KEEPER = Path(sys.executable).parent / "keeper"
CHAIN_IDS = {"alpha": 31337, "beta": 4242}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    clear_keeper_env(monkeypatch)
    yield
    secrets.clear_secrets()


@pytest.fixture
def chains(devnet_session: Devnet) -> Iterator[dict[str, Anvil]]:
    """Two anvils from the session devnet's cached state, one per chain id."""
    state = cache_dir() / "devnet" / f"{cache_key(TEST_SPEC)}.state.json"
    assert state.is_file(), "the session devnet caches its state"
    started: dict[str, Anvil] = {}
    try:
        for name, chain_id in CHAIN_IDS.items():
            started[name] = Anvil(load_state=state, chain_id=chain_id).start()
        yield started
    finally:
        for anvil in started.values():
            anvil.stop()


def _toml(info: DevnetInfo, anvils: dict[str, Anvil], folder: Path) -> Path:
    tables = "".join(
        f'[chains.{name}.chain]\nchain_id = {CHAIN_IDS[name]}\nhttp_urls = ["{a.rpc_url}"]\n'
        "block_time_seconds = 1\n"
        f'[chains.{name}.execution]\nquote_token = "{info.tokens["WETH"].address}"\n'
        f'[chains.{name}.dex]\nuniswap_v2_factory = "{info.uniswap_v2.factory}"\n'
        f'[chains.{name}.strategies.aave_v3]\n'
        f'addresses_provider = "{info.aave_v3.addresses_provider}"\n'
        f'[chains.{name}.strategies.morpho_blue]\nmorpho = "{info.morpho_blue.morpho}"\n\n'
        for name, a in anvils.items())
    path = folder / "keeper.toml"
    path.write_text('[execution]\nmode = "live"\nmin_profit_quote = "0"\n'
                    'journal = "journal.sqlite"\nmax_fee_per_gas_gwei = "3000"\n\n'
                    "[monitoring]\nport = 0\n\n"
                    # a crash costs more gas than the default hourly cap at 3000 gwei
                    '[breakers]\nmax_gas_per_hour_eth = "0"\n\n' + tables)
    return path


def _crash(info: DevnetInfo, anvil: Anvil, share: str) -> None:
    post_price(Web3(Web3.HTTPProvider(anvil.rpc_url)), info.feeds["WETH"],
               SPECS["WETH"].usd_price * Decimal(share), info.accounts.deployer)


def _events(lines: list[str]) -> list[dict[str, object]]:
    out = []
    for line in list(lines):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@pytest.mark.anvil
def test_one_daemon_liquidates_on_two_chains_and_outlives_one_node(
    devnet_session: Devnet, chains: dict[str, Anvil], tmp_path: Path
) -> None:
    info = devnet_session.info
    config = _toml(info, chains, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env |= {k: v for k, v in os.environ.items() if k.upper() in KEEP_ENV}
    env["KEEPER_ACCOUNT__PRIVATE_KEY"] = DEVNET_LIQUIDATOR_KEY
    process = subprocess.Popen([str(KEEPER), "--config", str(config), "--log-format", "json",
                                "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    assert process.stderr is not None and process.stdout is not None
    lines: list[str] = []
    stderr = process.stderr
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")),
                              daemon=True)
    reader.start()
    journals = {name: tmp_path / f"journal.{name}.sqlite" for name in CHAIN_IDS}
    try:
        def synced() -> bool:
            assert process.poll() is None, lines[-5:]
            return {e.get("chain") for e in _events(lines) if e.get("event") == "synced"} \
                == set(CHAIN_IDS)

        wait_for(synced, timeout=120, what="both chains' engines to sync")
        for anvil in chains.values():
            _crash(info, anvil, "0.8")
        wait_for(lambda: all(confirmed_intents(j) > 0 for j in journals.values()), timeout=120,
                 what="a liquidation confirmed on each chain")
        for name, anvil in chains.items():  # each chain's liquidation is signed for its id
            tx = anvil.rpc("eth_getBlockByNumber", "latest", True)["transactions"][-1]
            assert int(tx["chainId"], 16) == CHAIN_IDS[name]

        running = next(e for e in _events(lines) if e.get("event") == "keeper running")
        with urllib.request.urlopen(f"{running['monitoring']}/metrics", timeout=10) as page:
            families = {f.name: f for f in text_string_to_metric_families(page.read().decode())}
        heads = {s.labels["chain"]: s.value for s in families["keeper_head_block"].samples}
        assert set(heads) == set(CHAIN_IDS) and min(heads.values()) > 0
        confirmed: dict[str, float] = {}
        for sample in families["keeper_opportunities_confirmed"].samples:
            if sample.name.endswith("_total"):
                chain = sample.labels["chain"]
                confirmed[chain] = confirmed.get(chain, 0.0) + sample.value
        assert set(confirmed) == set(CHAIN_IDS) and min(confirmed.values()) >= 1, confirmed
        assert "process_resident_memory_bytes" in families  # the process's own, once

        chains["beta"].stop()  # beta's node dies
        before = confirmed_intents(journals["alpha"])
        _crash(info, chains["alpha"], "0.6")
        wait_for(lambda: confirmed_intents(journals["alpha"]) > before, timeout=120,
                 what="alpha liquidating after beta's node died")
        assert process.poll() is None, lines[-5:]

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)
        stdout = process.stdout.read()
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, lines[-8:]
    assert "chain alpha: keeper: stopped" in stdout and "chain beta: keeper: stopped" in stdout, \
        stdout
    # Beta's sends in flight when its node died are logged with their error; nothing else.
    crashes = [line[:300] for line in lines if "Traceback" in line
               and not (line.startswith("{") and json.loads(line).get("chain") == "beta")]
    assert not crashes, crashes[:2]
    assert all(e.get("chain") in CHAIN_IDS for e in _events(lines)
               if e.get("event") == "liquidation confirmed")
