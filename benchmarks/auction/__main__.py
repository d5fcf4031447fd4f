"""`python -m benchmarks.auction`: the devnet crash in builder mode, judged by the chain.

    python -m benchmarks.auction [--mode competitor|bidder|both] [--first-step 60]
        [--steps 22] [--step-seconds 1.5] [--keeper-bid 0.9] [--rival-bid 0.5]
        [--block-interval 1.0] [--competitor-tip 1] [--json-out FILE] [--workdir DIR]
        [--quick] [--no-arbitrage]

Per mode it prints each bot's first-liquidation win rate, the bonus it took, the bids it
paid the builder (transfers to block.coinbase in its transactions, from call traces), its
gas, and its net capture (bonus - gas - bids, USD); where each SVR update landed and
whether the keeper's liquidations stood right behind it in that block; and the time from
each oracle transaction entering the builder's pool (or its hint going out) to each bot's
first bundle naming it, p50/p99, beside the bare loop's (by the builder's clock). The
bots' logs, journals and configs stay in the workdir. `--quick`: both modes on six steps
of the steepest part (62-67, WETH $1,700 -> $1,585), to compare two builds in a few
minutes; its figures are not the full run's. By default the devnet's pools are traded to
each step's prices before its oracle transactions, and back to them every block after
(keeper/devnet/arbitrage.py), so exits follow the market as on a live chain;
`--no-arbitrage` leaves them at the deployed prices through the crash (every flash exit a
windfall, and the bids, valued on those pools, inflated: the setting before 2026-12-03).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.auction.harness import AuctionOptions, AuctionResult, Mode, run_auction
from keeper.paths import cache_dir

QUICK_FIRST_STEP, QUICK_STEPS = 62, 6  # WETH $1,700 -> $1,585: every step opens positions


def _usd_per_wei(result: AuctionResult, who: str) -> float:
    totals = result.verdict.totals.get(who)
    if totals is None or not totals.fees_wei:
        return 0.0
    return totals.fees_usd / totals.fees_wei


def summary(result: AuctionResult) -> dict[str, Any]:
    """The figures of one run as JSON."""
    judged = result.verdict
    bots: dict[str, Any] = {}
    for who, totals in judged.totals.items():
        bid_usd = result.bids.wei.get(who, 0) * _usd_per_wei(result, who)
        bots[who] = {
            "first_liquidation_win_rate": round(judged.win_rate(who), 4),
            "bonus_share": round(judged.capture(who), 4),
            "bonus_usd": round(totals.bonus_usd, 2),
            "liquidations": totals.liquidations, "firsts": totals.first,
            "transactions": totals.transactions, "reverted": totals.reverted,
            "gas_usd": round(totals.fees_usd, 2),
            "bids_eth": result.bids.wei.get(who, 0) / 10**18,
            "bids_usd": round(bid_usd, 2),
            "net_capture_usd": round(totals.bonus_usd - totals.fees_usd - bid_usd, 2),
        }
        if who in result.gained:  # a keeper: what its executor paid it, after the bid
            received = result.gained[who]
            bots[who]["profit_received_usd"] = round(received, 2)
            # Paid out after the bid (the contract takes it from the profit first).
            bots[who]["realized_net_usd"] = round(received - totals.fees_usd, 2)
    svr = [{"tx": x.tx_hash, "block": x.block, "index": x.index,
            "behind": {k: v for k, v in x.behind.items() if v}} for x in result.landings
           if x.origin == "hint"]
    return {
        "mode": result.mode, "options": {k: str(v) for k, v in vars(result.options).items()},
        "accounts": judged.accounts, "bonus_total_usd": round(judged.bonus_total, 2),
        "bots": bots, "svr_updates": svr, "latency": result.latencies.as_json(),
        "keeper_metrics": result.metrics, "seconds": round(result.seconds, 1),
        "load": result.load, "workdir": str(result.workdir),
        "oracle_transactions": len(result.posted),
    }


def lines(report: dict[str, Any]) -> list[str]:
    out = [f"== mode {report['mode']}: {report['accounts']} accounts liquidated, bonus "
           f"${report['bonus_total_usd']:,.0f}, {report['oracle_transactions']} oracle "
           f"transactions, {report['seconds']} s, load {report['load'][0]:.1f} -> "
           f"{report['load'][1]:.1f}"]
    for who, b in report["bots"].items():
        out.append(f"  {who:<10} first {b['first_liquidation_win_rate']:6.1%} "
                   f"({b['firsts']})  bonus {b['bonus_share']:6.1%} (${b['bonus_usd']:,.0f})  "
                   f"bids {b['bids_eth']:.3f} ETH (${b['bids_usd']:,.0f})  gas "
                   f"${b['gas_usd']:,.0f}  net ${b['net_capture_usd']:,.0f}  txs "
                   f"{b['transactions']} (reverted {b['reverted']})"
                   + (f"  profit paid out after the bid ${b['profit_received_usd']:,.0f}, less "
                      f"gas ${b['realized_net_usd']:,.0f}" if "profit_received_usd" in b else ""))
    behind = sum(1 for u in report["svr_updates"] if u["behind"].get("keeper"))
    right = sum(1 for u in report["svr_updates"]
                if u["index"] is not None and (u["index"] + 1) in u["behind"].get("keeper", []))
    out.append(f"  SVR updates {len(report['svr_updates'])}: keeper liquidations in the same "
               f"block behind {behind}, right behind {right}")
    for who, origins in report["latency"].items():
        for origin, figures in origins.items():
            if isinstance(figures, dict):
                out.append(f"  latency {who:<8} {origin:<5} n={figures['n']:<3} "
                           f"p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms")
        out.append(f"  latency {who:<8} unanswered {origins.get('missed', 0)}")
    for who, metrics in report["keeper_metrics"].items():
        shown = {k: v for k, v in metrics.items() if v and "head_block" not in k}
        out.append(f"  {who} /metrics: {json.dumps(shown, sort_keys=True)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.auction")
    parser.add_argument("--mode", choices=["competitor", "bidder", "both"], default="both")
    parser.add_argument("--first-step", type=int, default=AuctionOptions.first_step)
    parser.add_argument("--steps", type=int, default=AuctionOptions.steps)
    parser.add_argument("--step-seconds", type=float, default=AuctionOptions.step_seconds)
    parser.add_argument("--keeper-bid", type=Decimal, default=AuctionOptions.keeper_bid)
    parser.add_argument("--rival-bid", type=Decimal, default=AuctionOptions.rival_bid)
    parser.add_argument("--block-interval", type=float, default=AuctionOptions.block_interval)
    parser.add_argument("--competitor-tip", type=Decimal,
                        default=AuctionOptions.competitor_tip_gwei)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--arbitrage", action=argparse.BooleanOptionalAction,
                        default=AuctionOptions.arbitrage,
                        help="keep the devnet's pools at the market's prices (the default); "
                        "--no-arbitrage: leave them at the deployed prices")
    parser.add_argument("--quick", action="store_true",
                        help="both modes, steps 62-67 only (a before/after check)")
    args = parser.parse_args()
    if args.quick:
        args.first_step, args.steps = QUICK_FIRST_STEP, QUICK_STEPS
    options = AuctionOptions(first_step=args.first_step, steps=args.steps,
                             step_seconds=args.step_seconds, keeper_bid=args.keeper_bid,
                             rival_bid=args.rival_bid, competitor_tip_gwei=args.competitor_tip,
                             block_interval=args.block_interval, arbitrage=args.arbitrage)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    root = args.workdir or cache_dir() / "bench" / f"auction-{stamp}-{os.getpid()}"
    modes: list[Mode] = ["competitor", "bidder"] if args.mode == "both" else [args.mode]
    reports = []
    for mode in modes:
        began = time.monotonic()
        result = run_auction(mode, options, root / mode)
        report = summary(result)
        reports.append(report)
        print("\n".join(lines(report)), flush=True)
        print(f"  ({time.monotonic() - began:.0f} s; workdir {result.workdir})", flush=True)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
