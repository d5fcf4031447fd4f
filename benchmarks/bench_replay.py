"""Archive replay speed, in blocks per second, on the devnet.

Run: `.venv/bin/python -m benchmarks.bench_replay [--blocks 200] [--max-txs 20]`.

A devnet history of `--blocks` blocks is mined first, each holding 1 to `--max-txs`
transactions (USDC transfers among a few dev accounts, and every tenth block a WETH price
update that moves 0.5% around 2000 USD, so nothing becomes liquidatable), with automine
off. Then the range is replayed on an anvil fork of the devnet
(`keeper.backtest.archive`: raw transactions sent in order, historical base fee and
timestamp, `evm_mine`, and every block checked against history: tx hashes, receipts root,
balance fingerprint), three ways:

- history only (no keeper),
- with the keeper's engine observing (passive: steps, ranks, sends nothing),
- with the keeper active (the devnet liquidator's key): the engine's per-block cost with an
  executor, which also reads its balances on blocks with candidates.

The figure is blocks replayed / seconds of the replay loop (fork start and the engine's
cold start excluded; both are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from keeper.anvil import Anvil, rpc_call
from keeper.backtest.archive import ReplayResult, open_archive, replay_on_fork, start_fork
from keeper.config import KeeperConfig
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import to_feed_answer
from tests.integration.backtest_history import devnet_keeper_config

TRANSFER = "0xa9059cbb"  # transfer(address,uint256)
MINT = "0x40c10f19"  # mint(address,uint256)
UPDATE_ANSWER = "0xa87a20ce"  # updateAnswer(int256)
SENDERS = range(5, 10)  # dev accounts the seeded devnet leaves untouched


def _word(value: int) -> str:
    return hex(value % 2**256)[2:].rjust(64, "0")


def make_history(anvil: Anvil, info: DevnetInfo, blocks: int, max_txs: int, seed: int
                 ) -> tuple[int, int, int]:
    """Mine the benchmark's history; returns (first block, last block, transactions)."""
    rng = random.Random(seed)
    url = anvil.rpc_url
    accounts: list[str] = rpc_call(url, "eth_accounts")
    senders = [accounts[i] for i in SENDERS]
    usdc, feed = info.tokens["USDC"].address, info.feeds["WETH"]
    for sender in senders:
        rpc_call(url, "eth_sendTransaction", [{"from": sender, "to": usdc, "data": MINT
                                               + _word(int(sender, 16)) + _word(10**15)}])
    rpc_call(url, "evm_setAutomine", [False])
    first = int(rpc_call(url, "eth_blockNumber"), 16) + 1
    sent = 0
    price = Decimal(2000)
    try:
        for index in range(blocks):
            for _ in range(rng.randint(1, max_txs)):
                sender, receiver = rng.sample(senders, 2)
                data = TRANSFER + _word(int(receiver, 16)) + _word(rng.randint(1, 10**6))
                rpc_call(url, "eth_sendTransaction",
                         [{"from": sender, "to": usdc, "data": data, "gas": hex(100_000)}])
                sent += 1
            if index % 10 == 5 and sent:
                # Around 2000 USD: a replay speed, not the cost of ranking a crash.
                price = Decimal(2000) * (Decimal("0.995") if index % 20 == 5 else Decimal(1))
                rpc_call(url, "eth_sendTransaction", [{
                    "from": info.accounts.deployer, "to": feed, "gas": hex(200_000),
                    "data": UPDATE_ANSWER + _word(to_feed_answer(price))}])
                sent += 1
            rpc_call(url, "evm_mine")
    finally:
        rpc_call(url, "evm_setAutomine", [True])
    return first, int(rpc_call(url, "eth_blockNumber"), 16), sent


async def replay(url: str, first: int, last: int, config: KeeperConfig | None
                 ) -> tuple[ReplayResult, float]:
    """One archive replay; returns it and the seconds spent before the loop (fork, sync)."""
    started = time.monotonic()
    archive = await open_archive(url)
    fork = await start_fork(chain_id=archive.chain_id, fork_url=url, block=first - 1)
    try:
        result = await replay_on_fork(archive, fork, from_block=first, to_block=last,
                                      insert="after-oracle", config=config, progress=None,
                                      mode="archive")
    finally:
        fork.stop()
        await archive.aclose()
    return result, time.monotonic() - started - result.report.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--max-txs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    anvil, info, _cached = start_devnet(DevnetSpec())
    try:
        made = time.monotonic()
        first, last, sent = make_history(anvil, info, args.blocks, args.max_txs, args.seed)
        print(f"history: blocks {first}..{last} ({last - first + 1} blocks, {sent} txs, "
              f"1..{args.max_txs} per block) mined in {time.monotonic() - made:.1f} s")
        with tempfile.TemporaryDirectory() as scratch:
            runs = {
                "history only (no keeper)": None,
                "keeper observing (passive)": devnet_keeper_config(info, Path(scratch),
                                                                   active=False),
                "keeper active (liquidator key)": devnet_keeper_config(info, Path(scratch),
                                                                active=True),
            }
            for name, config in runs.items():
                result, setup = asyncio.run(replay(anvil.rpc_url, first, last, config))
                report = result.report
                print(f"{name:32s} {report.blocks_per_second:7.1f} blocks/s  "
                      f"({report.blocks_replayed} blocks in {report.seconds:.2f} s; "
                      f"{result.reproduced} reproduced exactly; set-up {setup:.1f} s)")
    finally:
        anvil.stop()


if __name__ == "__main__":
    main()
