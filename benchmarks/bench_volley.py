"""Sending N liquidations of one block: one at a time (simulate "before") against a volley
(simulate "alongside"), side by side in one run.

Run: `python -m benchmarks.bench_volley [--sends 1 4 16 32] [--trials 10]`.

Two parts, both printed per N (sends per block):

1. **Journal and signing, no network.** The journal's writes and the signing of N sends
   on a fresh SQLite journal in a temporary directory (WAL, `synchronous=FULL`, so each
   durable commit is an fsync): one at a time as the "before" path does them (claim,
   sign, `record_signed` synced, [broadcast], `mark_sent` synced, per send) against a
   volley as `Sender.send_all` does it (`claim_all`; the first signed,
   `record_signed_all` synced, [broadcast], `mark_sent_all` unsynced; then the other
   N-1 the same way, together). Printed: time until the first send may leave, until the
   last may leave, per send, and the fsyncs before the last one may leave.
2. **On the devnet** (the default devnet, cached; automine): N ERC-20 `approve` intents
   of a fresh funded account (they need no balance) through a real `Executor`, each
   trial on its own journal, the two modes interleaved trial by trial: time from
   `Executor.launch` to the first and to the last `eth_sendRawTransaction` answered.

Benchmarks report numbers; they assert nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr

from keeper.chain.http import HttpRpc
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.execution.executor import Executor, Simulate
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal, Signed
from keeper.log import configure_logging
from keeper.types import Call, Candidate, Opportunity, TxIntent

GWEI = 10**9
APPROVE = "0x095ea7b3"
SEND = "eth_sendRawTransaction"
TOKEN = "0x" + "22" * 20


def _opportunity(k: int, token: str, block: int, tag: str) -> Opportunity:
    candidate = Candidate(
        strategy="aave_v3", account=f"0x{k + 1:040x}", collateral=token, debt=token,
        max_repay=1, health_factor=9 * 10**17, key=f"{tag}:{k}", seize=lambda repay: repay,
        gas_limit=60_000, spender=token)
    return Opportunity(
        strategy="aave_v3", key=f"{tag}:{k}", account=f"0x{k + 1:040x}", collateral=token,
        debt=token, debt_to_cover=1, collateral_received=1, gross_value=10**16, slippage=0,
        gas_limit=60_000, gas_cost=10**15, net_profit=10**16, quote_token=token,
        health_factor=9 * 10**17, block=block, candidate=candidate)


def _call(token: str, k: int) -> Call:
    return Call(token, APPROVE + encode(["address", "uint256"], ["0x" + "77" * 20, k + 1]).hex())


def _sign(account: LocalAccount, token: str, k: int, nonce: int) -> tuple[str, str]:
    signed = account.sign_transaction({
        "type": 2, "chainId": 31337, "nonce": nonce, "to": account.address,
        "data": HexStr(_call(token, k).data), "value": 0, "gas": 60_000,
        "maxFeePerGas": 100 * GWEI, "maxPriorityFeePerGas": GWEI})
    return "0x" + bytes(signed.hash).hex(), "0x" + bytes(signed.raw_transaction).hex()


def local(sends: int, folder: Path, account: LocalAccount, trial: int) -> dict[str, float]:
    """One trial of part 1: (mode/what -> seconds or count)."""
    out: dict[str, float] = {}
    opps = [_opportunity(k, TOKEN, 1, f"t{trial}") for k in range(sends)]
    with Journal(folder / f"one-{sends}-{trial}.sqlite") as journal:
        started = time.perf_counter()
        leaves = []
        for nonce, opp in enumerate(opps):
            journal.claim(opp, 31337)
            tx_hash, raw = _sign(account, TOKEN, nonce, nonce)
            journal.record_signed(opp.key, nonce, tx_hash, raw, 100 * GWEI, GWEI)
            leaves.append(time.perf_counter() - started)  # this one may leave here
            journal.mark_sent(opp.key, tx_hash)
        out["before first"], out["before last"] = leaves[0], leaves[-1]
        out["before fsyncs"] = 2 * sends - 1  # record_signed and mark_sent, each synced
    with Journal(folder / f"volley-{sends}-{trial}.sqlite") as journal:
        started = time.perf_counter()
        journal.claim_all([(o, ()) for o in opps], 31337)
        waves = [range(1), range(1, sends)]  # as `Sender.send_all`: the first alone
        for wave in waves:
            if not wave:
                continue
            signed = []
            for nonce in wave:
                tx_hash, raw = _sign(account, TOKEN, nonce, nonce)
                signed.append(Signed(opps[nonce].key, nonce, tx_hash, raw, 100 * GWEI, GWEI))
            journal.record_signed_all(signed)
            out.setdefault("volley first", time.perf_counter() - started)
            out["volley last"] = time.perf_counter() - started  # this wave may leave here
            journal.mark_sent_all([(s.key, s.tx_hash) for s in signed])
        out["volley fsyncs"] = min(sends, 2)
    return out


class Timed(HttpRpc):
    """Timestamps each `eth_sendRawTransaction` answered (a batch counts as its sends)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sent: list[float] = []

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        result = await super().call(method, params)
        if method == SEND:
            self.sent.append(time.perf_counter())
        return result

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        result = await super().batch(calls)
        sends = sum(1 for method, _ in calls if method == SEND)
        self.sent.extend([time.perf_counter()] * sends)
        return result


async def devnet_trial(url: str, token: str, sends: int, mode: Simulate, *, folder: Path,
                       trial: str) -> tuple[float, float]:
    """One trial of part 2: (launch -> first send answered, launch -> last)."""
    account: LocalAccount = Account.from_key("0x" + secrets.token_hex(32))
    chain = Timed(url)
    async with chain:
        await chain.call("anvil_setBalance", [account.address, hex(10**19)])
        head = int(await chain.call("eth_blockNumber", []), 16)
        with Journal(folder / f"{trial}.sqlite") as journal:
            executor = Executor(chain, account, journal, FeePolicy(100 * GWEI, GWEI),
                                appraise=lambda c, d, got, paid, gas: -gas, simulate=mode)
            await executor.start()
            intents = [TxIntent(_opportunity(k, token, head, trial), _call(token, k), 60_000,
                                None) for k in range(sends)]
            started = time.perf_counter()
            follows = await executor.launch(intents, base_fee=10)
            tasks = [asyncio.ensure_future(f) for f in follows]
            while len(chain.sent) < sends:
                await asyncio.sleep(0.0005)
            first, last = min(chain.sent) - started, max(chain.sent) - started
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return first, last


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.2f}"


async def on_devnet(args: argparse.Namespace, folder: Path) -> None:
    anvil, info, cached = start_devnet(DevnetSpec())
    try:
        token = info.tokens["WETH"].address
        print(f"\non the devnet ({'cached' if cached else 'deployed'}, automine), "
              f"median of {args.trials} trials, ms from launch to the send answered:")
        print(f"  {'N':>3} {'mode':<10} {'first':>8} {'last':>8} {'per send':>8}")
        for sends in args.sends:
            times: dict[Simulate, tuple[list[float], list[float]]] = {
                "before": ([], []), "alongside": ([], [])}
            for trial in range(args.trials + 1):
                for mode in ("before", "alongside"):
                    first, last = await devnet_trial(info.rpc_url, token, sends, mode,
                                                     folder=folder,
                                                     trial=f"{mode}-{sends}-{trial}")
                    if trial:  # the first is a warm-up
                        times[mode][0].append(first)
                        times[mode][1].append(last)
            for mode, (firsts, lasts) in times.items():
                per = [x / sends for x in lasts]
                print(f"  {sends:>3} {mode:<10} {_ms(firsts)} {_ms(lasts)} {_ms(per)}")
    finally:
        anvil.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sends", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--no-devnet", action="store_true", help="part 1 only")
    args = parser.parse_args()
    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    account: LocalAccount = Account.from_key("0x" + secrets.token_hex(32))
    with tempfile.TemporaryDirectory(prefix="keeper-bench-volley-") as name:
        folder = Path(name)
        print(f"journal and signing, no network (SQLite in {folder.parent}), median of "
              f"{args.trials} trials, ms until the send may leave:")
        print(f"  {'N':>3} {'mode':<10} {'first':>8} {'last':>8} {'per send':>8} {'fsyncs':>6}")
        for sends in args.sends:
            runs = [local(sends, folder, account, t) for t in range(args.trials)]
            for mode in ("before", "volley"):
                firsts = [r[f"{mode} first"] for r in runs]
                lasts = [r[f"{mode} last"] for r in runs]
                per = [x / sends for x in lasts]
                print(f"  {sends:>3} {mode:<10} {_ms(firsts)} {_ms(lasts)} {_ms(per)} "
                      f"{runs[0][f'{mode} fsyncs']:6.0f}")
        if not args.no_devnet:
            asyncio.run(on_devnet(args, folder))


if __name__ == "__main__":
    main()
