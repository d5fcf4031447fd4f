"""`keeper run --dry-run` against the devnet, which plays the configured ("live") chain.

The daemon liquidates on its own anvil fork of the devnet after WETH falls: the devnet
sees no transaction from the keeper account and no LiquidationCall, the dry-run journal
(`journal.dry-run.sqlite`, never the live one) holds the confirmed liquidations, the
summary reports them with a realized profit > 0, and the fork's anvil is gone after
SIGTERM. `DryRunFork.follow` moves the fork to a newer block only while nothing is in
flight, and resyncs the nonce from the fork alone. A fork that cannot start is one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from keeper import secrets
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.tokens import post_price
from keeper.execution.fees import FeePolicy
from keeper.execution.fork import DryRunFork, ForkError, ForkExecutor
from keeper.execution.journal import Journal
from keeper.types import Opportunity
from tests.conftest import Devnet, Miner, wait_for
from tests.factories import candidate
from tests.integration.helpers import SPECS, feeds, liquidator

KEEPER = Path(sys.executable).parent / "keeper"
KEEP_ENV = {"KEEPER_HOME", "KEEPER_CACHE_DIR", "KEEPER_ANVIL_BIN"}
GWEI = 10**9
PROFIT = re.compile(r"(\d+) liquidations confirmed on the fork;.* realized profit on the fork "
                    r"(-?[0-9.,]+) ")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No KEEPER_* settings from the developer's shell; no secrets from earlier tests."""
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_") and name.upper() not in KEEP_ENV:
            monkeypatch.delenv(name)
    secrets.clear_secrets()


def keeper_toml(devnet: Devnet, tmp_path: Path, *, mode: str) -> Path:
    info = devnet.info
    path = tmp_path / "keeper.toml"
    path.write_text(
        f'[chain]\nchain_id = {info.chain_id}\nhttp_urls = ["{info.rpc_url}"]\n\n'
        f'[execution]\nmode = "{mode}"\nquote_token = "{info.tokens["WETH"].address}"\n'
        f'min_profit_quote = "0"\njournal = "journal.sqlite"\nmax_fee_per_gas_gwei = "3000"\n\n'
        f'[dex]\nuniswap_v2_factory = "{info.uniswap_v2.factory}"\n\n'
        "[monitoring]\nport = 0\n\n"
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n'
    )
    return path


def keeper_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env |= {k: v for k, v in os.environ.items() if k.upper() in KEEP_ENV}
    env["KEEPER_ACCOUNT__PRIVATE_KEY"] = DEVNET_LIQUIDATOR_KEY
    return env | extra


def confirmed_hashes(journal: Path) -> list[str]:
    if not journal.exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT tx_hash FROM transactions WHERE status = 'confirmed'").fetchall()
    except sqlite3.OperationalError:  # the schema is not written yet
        return []
    finally:
        db.close()
    return [str(h) for (h,) in rows]


def liquidation_calls(devnet: Devnet, start: int) -> list[object]:
    topic = "0x" + Web3.keccak(
        text="LiquidationCall(address,address,address,uint256,uint256,address,bool)"
    ).hex().removeprefix("0x")
    logs = devnet.rpc("eth_getLogs", {"fromBlock": hex(start), "toBlock": "latest",
                                      "address": devnet.info.aave_v3.pool, "topics": [topic]})
    assert isinstance(logs, list)
    return logs


def test_dry_run_liquidates_on_the_fork_only(devnet: Devnet, tmp_path: Path) -> None:
    path = keeper_toml(devnet, tmp_path, mode="live")  # --dry-run wins over the file
    me = liquidator(devnet)
    nonce = devnet.w3.eth.get_transaction_count(me)
    start = devnet.w3.eth.block_number
    process = subprocess.Popen(
        [str(KEEPER), "--config", str(path), "--log-format", "json", "run", "--dry-run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=keeper_env(),
    )
    journal = tmp_path / "journal.dry-run.sqlite"
    try:
        price = SPECS["WETH"].usd_price * Decimal("0.75")
        post_price(devnet.w3, devnet.info.feeds["WETH"], price, devnet.info.accounts.deployer)
        mine = Miner(devnet)

        def liquidated() -> bool:
            assert process.poll() is None, process.communicate()
            if confirmed_hashes(journal):
                return True
            mine()  # a new head makes the daemon evaluate (after its sync)
            return False

        wait_for(liquidated, timeout=90, what="a liquidation confirmed on the fork")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr

    # The configured chain saw nothing from the keeper.
    assert devnet.w3.eth.get_transaction_count(me) == nonce
    assert liquidation_calls(devnet, start) == []
    hashes = confirmed_hashes(journal)
    assert hashes
    assert all(devnet.rpc("eth_getTransactionReceipt", h) is None for h in hashes)
    assert not (tmp_path / "journal.sqlite").exists()  # the live journal is untouched

    lines = stdout.strip().splitlines()
    assert "dry run on a local fork" in lines[0], stdout  # then reasons, and the journal
    found = PROFIT.search(lines[0])
    assert found, lines[0]
    profit = Decimal(found.group(2).replace(",", ""))
    assert int(found.group(1)) == len(hashes) and profit > 0, lines[0]

    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    started = [e for e in events if e.get("event") == "dry-run fork started"]
    assert len(started) == 1
    with pytest.raises(ProcessLookupError):  # the fork's anvil was stopped
        os.kill(int(started[0]["pid"]), 0)
    print(f"\ndry run: {lines[0]}")


def _opportunity(block: int) -> Opportunity:
    zero = "0x" + "00" * 20
    return Opportunity(
        strategy="aave_v3", key=f"test:{block}", account=zero, collateral=zero, debt=zero,
        debt_to_cover=1, collateral_received=1, gross_value=0, slippage=0, gas_limit=1,
        gas_cost=0, net_profit=0, quote_token=zero, health_factor=0, block=block,
        candidate=candidate(),
    )


async def test_fork_follows_the_chain_while_idle(devnet: Devnet, tmp_path: Path) -> None:
    info = devnet.info
    me = liquidator(devnet)
    head = devnet.w3.eth.block_number
    fork = await DryRunFork.start(info.rpc_url, info.chain_id, head)
    async with fork:
        journal = Journal(tmp_path / "j.dry-run.sqlite")
        try:
            # The journal's nonces are fork nonces from earlier dry runs: never synced from.
            assert journal.claim(_opportunity(head), info.chain_id)
            journal.record_signed(f"test:{head}", 999, "0x" + "11" * 32, "0x00", 1, 1)
            executor = ForkExecutor(
                fork.rpc, Account.from_key(DEVNET_LIQUIDATOR_KEY), journal,
                FeePolicy(3000 * GWEI, GWEI), lambda *_: 0, follow=fork.follow,
            )
            fork.attach(executor)
            await fork.resync()
            nonce = devnet.w3.eth.get_transaction_count(me)
            assert executor.nonces.next_nonce == nonce

            # A transaction on the fork only: its nonce moves there, not on the devnet.
            chain_id = fork.rpc.chain_id
            signed = Account.from_key(DEVNET_LIQUIDATOR_KEY).sign_transaction({
                "type": 2, "chainId": chain_id, "nonce": nonce, "to": me, "value": 0,
                "gas": 21_000, "maxFeePerGas": 3000 * GWEI, "maxPriorityFeePerGas": GWEI,
            })
            await fork.rpc.call("eth_sendRawTransaction",
                                ["0x" + bytes(signed.raw_transaction).hex()])
            await fork.resync()
            assert executor.nonces.next_nonce == nonce + 1
            executor.allowances._approved[(me, me)] = 0

            feed = feeds(devnet)["WETH"]
            old = feed.functions.latestAnswer().call()
            post_price(devnet.w3, info.feeds["WETH"], SPECS["WETH"].usd_price / 2,
                       info.accounts.deployer)
            devnet.rpc("anvil_mine", "0x3")
            new_head = devnet.w3.eth.block_number
            on_fork = Web3(Web3.HTTPProvider(fork.anvil.rpc_url)).eth.contract(
                address=feed.address, abi=feed.abi)

            # In flight (a nonce reserved, not confirmed): the fork stays where it is.
            reserved = await executor.nonces.reserve()
            assert executor.busy
            await fork.follow(new_head)
            assert fork.block == head and fork.resets == 0
            assert on_fork.functions.latestAnswer().call() == old
            executor.nonces.release(reserved)

            await fork.follow(new_head)
            assert fork.block == new_head and fork.resets == 1
            assert int(await fork.rpc.call("eth_blockNumber", []), 16) == new_head
            assert on_fork.functions.latestAnswer().call() == feed.functions.latestAnswer().call()
            assert on_fork.functions.latestAnswer().call() != old
            # The fork-only transaction and approvals are gone; the nonce is the chain's again.
            assert executor.nonces.next_nonce == nonce
            assert executor.allowances.since(me, me) is None
            await fork.follow(new_head)  # not behind: nothing to do
            assert fork.resets == 1
        finally:
            journal.close()
    assert fork.anvil.poll() is None and fork.anvil.pid is None  # stopped
    assert devnet.w3.eth.get_transaction_count(me) == nonce


async def test_bad_fork_source_is_one_line(
    devnet: Devnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = devnet.info
    head = devnet.w3.eth.block_number
    with pytest.raises(ForkError) as unreachable:
        await DryRunFork.start("http://127.0.0.1:1/v2/abcdef0123456789abcdef", 31337, head)
    message = str(unreachable.value)
    assert "\n" not in message and "cannot fork" in message and "unreachable" in message
    assert "abcdef0123456789abcdef" not in message  # a key-like path segment is masked

    with pytest.raises(ForkError, match="serves chain id") as mismatch:
        await DryRunFork.start(info.rpc_url, info.chain_id + 1, head)
    assert "\n" not in str(mismatch.value)

    monkeypatch.setenv("KEEPER_ANVIL_BIN", "/bin/false")
    with pytest.raises(ForkError, match="cannot start the local fork") as broken:
        await DryRunFork.start(info.rpc_url, info.chain_id, head)
    assert "\n" not in str(broken.value)


def test_run_dry_run_with_broken_anvil_is_one_line(devnet: Devnet, tmp_path: Path) -> None:
    path = keeper_toml(devnet, tmp_path, mode="dry-run")
    nonce = devnet.w3.eth.get_transaction_count(liquidator(devnet))
    result = subprocess.run(
        [str(KEEPER), "--config", str(path), "run"], capture_output=True, text=True,
        env=keeper_env(KEEPER_ANVIL_BIN="/bin/false"), timeout=60, check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keeper: error: dry-run:"), lines
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert devnet.w3.eth.get_transaction_count(liquidator(devnet)) == nonce
    assert not (tmp_path / "journal.sqlite").exists()
    assert not (tmp_path / "journal.dry-run.sqlite").exists()


def test_dry_run_needs_an_account(devnet_session: Devnet, tmp_path: Path) -> None:
    path = keeper_toml(devnet_session, tmp_path, mode="dry-run")
    env = {k: v for k, v in keeper_env().items() if k != "KEEPER_ACCOUNT__PRIVATE_KEY"}
    result = subprocess.run(
        [str(KEEPER), "--config", str(path), "run", "--dry-run"], capture_output=True,
        text=True, env=env, timeout=60, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs an account" in lines[0] and "dry-run" in lines[0], lines
    assert not (tmp_path / "journal.dry-run.sqlite").exists()
