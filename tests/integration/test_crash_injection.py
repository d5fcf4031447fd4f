"""Exactly once across `kill -9`: the daemon is killed at random points of a crash, 50 times.

A WETH drop makes dozens of Aave accounts liquidatable. The daemon (`keeper run`, live, on
the devnet) is started, and killed with SIGKILL at a random moment after it logged that it
is running: during its sync, its ranking, between signing and broadcasting, or while it
waits for receipts; then started again on the same journal. After the 50th kill a last run
is stopped cleanly. Asserted on the chain and the journal:

- every liquidation transaction mined from the keeper's account is in the journal as
  confirmed (none lost), and no opportunity key was confirmed twice (none duplicated);
- the account's nonce equals the number of transactions it got mined (no gap, no reuse);
- the journal has nothing left signed or sent and not settled.

The kill points are random on purpose (seeded, so a failure can be replayed with the same
seed); `KEEPER_CRASH_KILLS` raises the count (the documented long run is 1,000).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from web3 import Web3

from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.tokens import post_price
from tests.conftest import Devnet, Miner, wait_for
from tests.integration.helpers import KEEP_ENV, SPECS, liquidator, mined_from
from tests.integration.test_scan_run import devnet_toml

KEEPER = Path(sys.executable).parent / "keeper"
KILLS = int(os.environ.get("KEEPER_CRASH_KILLS", "50"))
SEED = int(os.environ.get("KEEPER_CRASH_SEED", "20261121"))
LIQUIDATION_CALL = Web3.keccak(
    text="LiquidationCall(address,address,address,uint256,uint256,address,bool)").hex()


def _start(path: Path) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    env |= {k: v for k, v in os.environ.items() if k.upper() in KEEP_ENV}
    env["KEEPER_ACCOUNT__PRIVATE_KEY"] = DEVNET_LIQUIDATOR_KEY
    process = subprocess.Popen(
        [str(KEEPER), "--config", str(path), "--log-format", "json", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    lines: list[str] = []
    stderr = process.stderr
    assert stderr is not None
    threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")), daemon=True).start()
    return process, lines


def _journal(path: Path) -> tuple[dict[str, str], list[str]]:
    """(confirmed tx hash -> intent key, statuses of transactions not settled)."""
    if not path.exists():
        return {}, []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        confirmed = dict(db.execute(
            "SELECT lower(tx_hash), intent_key FROM transactions WHERE status = 'confirmed'"))
        open_ = [s for (s,) in db.execute(
            "SELECT status FROM transactions WHERE status IN ('signed', 'sent')")]
        return confirmed, open_
    except sqlite3.OperationalError:
        return {}, []
    finally:
        db.close()


def _until_running(process: subprocess.Popen[str], lines: list[str], mine: Miner) -> None:
    def running() -> bool:
        assert process.poll() is None, lines[-3:]
        mine()
        return any('"keeper running"' in line for line in lines)

    wait_for(running, timeout=60, what="the daemon to start")


def test_fifty_sigkills_lose_nothing_and_send_nothing_twice(
    devnet: Devnet, tmp_path: Path
) -> None:
    path = devnet_toml(devnet, tmp_path, mode="live", ws=True)
    journal = tmp_path / "journal.sqlite"
    me = liquidator(devnet)
    start_block = devnet.w3.eth.block_number
    post_price(devnet.w3, devnet.info.feeds["WETH"], SPECS["WETH"].usd_price * 7 / 10,
               devnet.info.accounts.deployer)
    rng = random.Random(SEED)
    mine = Miner(devnet, every=0.1)
    for _ in range(KILLS):
        process, lines = _start(path)
        try:
            _until_running(process, lines, mine)
            deadline = time.monotonic() + rng.uniform(0.0, 1.5)  # the kill point
            while time.monotonic() < deadline:
                assert process.poll() is None, lines[-3:]
                mine()
                time.sleep(0.01)  # keeps the loop from spinning; the kill moment is random
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    # A last run settles everything, then stops cleanly.
    process, lines = _start(path)
    try:
        def settled() -> bool:
            assert process.poll() is None, lines[-3:]
            mine()
            return any('"keeper running"' in line for line in lines) and not _journal(journal)[1]

        wait_for(settled, timeout=120, what="the last run to settle every transaction")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, lines[-3:]

    confirmed, open_ = _journal(journal)
    assert open_ == []
    keys = list(confirmed.values())
    assert len(keys) == len(set(keys)), "an opportunity was confirmed twice"
    mined_from_me = mined_from(devnet, me, start_block, devnet.w3.eth.block_number)
    topic = "0x" + LIQUIDATION_CALL.removeprefix("0x")
    liquidations = [tx["hash"] for tx in mined_from_me if topic in tx["topics"]]
    assert liquidations, "no liquidation landed at all"
    assert set(liquidations) <= set(confirmed), "a mined liquidation is missing from the journal"
    nonce = devnet.w3.eth.get_transaction_count(me)
    start_nonce = nonce - len(mined_from_me)
    assert sorted(tx["nonce"] for tx in mined_from_me) == list(range(start_nonce, nonce))
    print(f"\ncrash injection: {KILLS} SIGKILLs (seed {SEED}), {len(liquidations)} "
          f"liquidations mined, {len(confirmed)} confirmed in the journal, "
          f"{len(mined_from_me)} transactions from the keeper (approvals included)")
