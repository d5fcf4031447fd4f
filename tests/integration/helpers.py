"""Helpers shared by the integration tests that run on the session devnet (tests/conftest.py).

The devnet is deployed once (and cached); tests find its contracts through
`devnet.info` and build web3 objects from those addresses and the npm ABIs.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from keeper import secrets
from keeper.chain.http import HttpRpc
from keeper.cli import main
from keeper.devnet.artifacts import Artifact, aave
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import mintable_erc20, price_feed, to_feed_answer
from keeper.dex.uniswap_v2 import PairBook
from keeper.execution.dispatch import LivePositions
from keeper.execution.executor import Executor
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.log import reset_logging
from keeper.ranking import realized_value
from keeper.strategy import Strategy
from keeper.wiring import Keeper, assemble
from tests.conftest import TEST_SPEC, Devnet

# The session devnet's tokens; its feeds start at these prices (each test's changes are reverted).
SPECS = {s.symbol: s for s in TEST_SPEC.tokens}
MAX_UINT = 2**256 - 1
WAD = 10**18
# anvil dev accounts that neither the deploy nor the seeded population touches (those use 0..3
# and keccak-derived borrower addresses): free for a test's own borrowers and traders.
FRESH_ACCOUNT_INDEXES = range(5, 10)
# The KEEPER_* variables a test keeps from the developer's shell: where the keeper's files,
# its cache and anvil are (the others would change the settings a test means to check).
KEEP_ENV = {"KEEPER_HOME", "KEEPER_CACHE_DIR", "KEEPER_ANVIL_BIN"}


def units(symbol: str, amount: int | str) -> int:
    """`amount` whole tokens of `symbol` in base units: units("USDC", 5) == 5_000_000."""
    return int(Decimal(amount) * 10 ** SPECS[symbol].decimals)


def contract(devnet: Devnet, abi: Artifact | list[dict[str, Any]], address: str) -> Contract:
    """A web3 contract at `address` with `abi` (an artifact or a bare ABI list)."""
    return devnet.w3.eth.contract(
        address=Web3.to_checksum_address(address),
        abi=abi.abi if isinstance(abi, Artifact) else abi,
    )


def aave_pool(devnet: Devnet) -> Contract:
    """The devnet's Aave V3 Pool."""
    return contract(devnet, aave("protocol/pool/Pool.sol/Pool.json"), devnet.info.aave_v3.pool)


def tokens(devnet: Devnet) -> dict[str, Contract]:
    """The devnet's ERC-20s (public mint) by symbol, in deploy order."""
    artifact = mintable_erc20()
    return {s: contract(devnet, artifact, t.address) for s, t in devnet.info.tokens.items()}


def feeds(devnet: Devnet) -> dict[str, Contract]:
    """The devnet's Chainlink-style USD feeds by token symbol (the deployer owns them)."""
    artifact = price_feed()
    return {s: contract(devnet, artifact, a) for s, a in devnet.info.feeds.items()}


def deployer(devnet: Devnet) -> Deployer:
    """Sends as the devnet deployer (owner of the feeds and every admin role) by default."""
    return Deployer(devnet.w3, Web3.to_checksum_address(devnet.info.accounts.deployer))


def liquidator(devnet: Devnet) -> ChecksumAddress:
    """The devnet's liquidator (anvil account 1), funded with $5M of every token."""
    return Web3.to_checksum_address(devnet.info.accounts.liquidator)


def fresh_accounts(devnet: Devnet, count: int) -> list[ChecksumAddress]:
    """`count` unlocked anvil accounts that have never sent a transaction nor hold a token."""
    accounts = [devnet.w3.eth.accounts[i] for i in FRESH_ACCOUNT_INDEXES[:count]]
    assert len(accounts) == count, f"only {len(FRESH_ACCOUNT_INDEXES)} fresh accounts"
    erc20s = tokens(devnet).values()
    for account in accounts:
        assert devnet.w3.eth.get_transaction_count(account) == 0, f"{account} is not fresh"
        assert all(t.functions.balanceOf(account).call() == 0 for t in erc20s), account
    return accounts


def set_price(devnet: Devnet, symbol: str, usd: Decimal) -> None:
    """Post a new answer on `symbol`'s USD feed (as its owner, the deployer)."""
    deployer(devnet).send(feeds(devnet)[symbol].functions.updateAnswer(to_feed_answer(usd)))


CRASH_DROPS = {"WETH": Decimal("0.70"), "WBTC": Decimal("0.80")}


def crash_in_one_block(devnet: Devnet, drops: dict[str, Decimal] | None = None) -> int:
    """Post the price drops in one block P and return P.

    A post waits for its receipt, one block each; to land them all in one block the same
    `updateAnswer` calls are sent with automine paused, then one block is mined.
    """
    owner = Web3.to_checksum_address(devnet.info.accounts.deployer)
    contracts = feeds(devnet)
    devnet.rpc("evm_setAutomine", False)
    try:
        for symbol, factor in (drops or CRASH_DROPS).items():
            answer = to_feed_answer(SPECS[symbol].usd_price * factor)
            contracts[symbol].functions.updateAnswer(answer).transact({"from": owner})
        devnet.rpc("evm_mine")
    finally:
        devnet.rpc("evm_setAutomine", True)
    return int(devnet.w3.eth.block_number)



def process_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (read from /proc: the `keeper devnet` tests find
    the anvil a command started this way)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def clear_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No KEEPER_* settings from the developer's shell (but `KEEP_ENV`), no secrets from
    earlier tests: what a test's `clean_env` fixture does before the test."""
    for name in list(os.environ):
        if name.upper().startswith("KEEPER_") and name.upper() not in KEEP_ENV:
            monkeypatch.delenv(name)
    secrets.clear_secrets()


def run_keeper(*args: str) -> Result:
    """`keeper ARGS` as a user types it, through click's runner; the logging the command set
    up is reset after (it would otherwise write to this test's files in later tests)."""
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        reset_logging()


def demo_output(profile: str, steps: int, log_file: Path) -> str:
    """`keeper demo PROFILE --steps STEPS`'s output on one line (the console wraps at 80
    columns here), after asserting it succeeded and that no liquidation reverted."""
    result = run_keeper("demo", profile, "--steps", str(steps), "--log-file", str(log_file))
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    totals = re.search(r"(\d+) liquidations confirmed, (\d+) reverted", out)
    assert totals is not None, out
    assert int(totals[2]) == 0, out
    return out


def devnet_backtest(profile: str, steps: int, log_file: Path) -> dict[str, Any]:
    """`keeper backtest --devnet PROFILE` on the 2021-05-19 path's first STEPS steps: its
    JSON report, after asserting the command succeeded."""
    result = run_keeper("backtest", "--devnet", profile, "--price-path",
                        "eth_usd_2021-05-19_10min", "--steps", str(steps), "--json",
                        "--log-file", str(log_file))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


async def devnet_keeper(
    info: DevnetInfo, journal: Journal, strategy: Strategy, *, fees: FeePolicy, min_profit: int,
) -> Keeper:
    """The whole engine on a devnet, synced: `strategy` alone, sending through the
    liquidator's Executor, every send valued as the engine values it (in WETH, on the
    devnet's Uniswap v2 pairs). The caller closes it (`aclose`)."""
    chain = await HttpRpc.open(info.rpc_url, timeout=60)
    weth = info.tokens["WETH"].address.lower()
    head = int(await chain.call("eth_blockNumber", []), 16)
    dex = await PairBook.load(chain, info.uniswap_v2.factory, head)
    live = LivePositions()
    executor = Executor(
        chain, Account.from_key(DEVNET_LIQUIDATOR_KEY), journal, fees,
        appraise=lambda c, d, got, paid, gas: realized_value(
            dex, weth, collateral=c, debt=d, collateral_received=got, debt_paid=paid,
            gas_paid=gas),
        quote_token=weth, still_there=live)
    await executor.start()
    keeper = assemble(chain, [strategy], dex, quote_token=weth, min_profit=min_profit,
                      priority_fee=fees.priority_fee, executor=executor, live=live)
    await keeper.sync()
    return keeper


def confirmed_intents(journal: Path) -> int:
    """How many intents a running daemon's journal holds as confirmed (read-only; 0 before
    the daemon has written the journal or its schema)."""
    if not journal.exists():
        return 0
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT COUNT(*) FROM intents WHERE status = 'confirmed'").fetchone()
    except sqlite3.OperationalError:  # the schema is not written yet
        return 0
    finally:
        db.close()
    return int(count)


def mined_from(devnet: Devnet, sender: str, start: int, end: int) -> list[dict[str, Any]]:
    """Every transaction `sender` got mined in blocks (start, end]: its hash, nonce, `to`,
    input and the first topic of each of its receipt's logs."""
    out: list[dict[str, Any]] = []
    for number in range(start + 1, end + 1):
        block = devnet.rpc("eth_getBlockByNumber", hex(number), True)
        assert isinstance(block, dict)
        for tx in block["transactions"]:
            if str(tx["from"]).lower() == sender.lower():
                receipt = devnet.rpc("eth_getTransactionReceipt", tx["hash"])
                assert isinstance(receipt, dict)
                out.append({"hash": str(tx["hash"]).lower(), "nonce": int(tx["nonce"], 16),
                            "to": str(tx["to"]).lower(), "input": str(tx["input"]),
                            "topics": [t for log in receipt["logs"] for t in log["topics"][:1]]})
    return out
