"""`python -m benchmarks.race`: the keeper against the peer-design competitor, judged by the chain.

    python -m benchmarks.race [--seed 20261202 ...] [--mode automine|interval|both] [--runs 1]
        [--steps 90] [--first-step 0] [--step-seconds 1.0] [--borrowers 300]
        [--competitor-poll 0.1] [--competitor-ws] [--competitor-tip 1] [--keeper-tip 1]
        [--flash] [--historical-gas] [--capital-usd 100000000] [--alone] [--long] [--json]
        [--json-out FILE] [--verbose] [--workdir DIR] [--ha | --ha-compare]

Each race starts anvil afresh from the seed's cached devnet (the first start of a new seed
deploys it: about 25-40 s), so runs never see each other's transactions. `--long` is the
long version: three seeds x both block modes. It prints, per race, the seed and block mode,
each bot's first-liquidation win rate and bonus capture share, its transactions, reverts by
cause and gas, the send-timing table, and the keeper's own view from its /metrics;
`--json` prints one JSON object per race instead. The bots' logs, the keeper's journal and
config and the competitor's send log stay in the workdir (printed). `--ha` runs the keeper
side with `[ha]` on: two replicas of its account on a PostgreSQL journal the race starts
(benchmarks/race/ha.py; the `ha` extra); `--ha-compare` runs each race twice, without and
with it, each on a fresh devnet, and prints the two side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.race.harness import Mode, RaceOptions, RaceResult, run_race
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.paths import cache_dir

DEFAULT_SEED = 20261202  # not the development seed (7)
LONG_SEEDS = (20261202, 20261203, 20261204)
# Both bots' balance of every token: more than a crash of the default population needs
# (with the devnet's $5M each, both run out of USDC in the first wave and capital, not
# speed, decides who liquidates what).
CAPITAL_USD = Decimal(100_000_000)


def _options(args: argparse.Namespace, mode: Mode, ha: bool) -> RaceOptions:
    return RaceOptions(
        mode=mode, path=args.path, first_step=args.first_step, steps=args.steps,
        step_seconds=args.step_seconds, competitor=not args.alone,
        competitor_poll=args.competitor_poll, competitor_ws=args.competitor_ws,
        competitor_tip_gwei=args.competitor_tip, keeper_tip_gwei=args.keeper_tip,
        flash=args.flash, capital_usd=args.capital_usd or None,
        historical_gas=args.historical_gas, deviation_gated=not args.every_step, ha=ha)


def _variant(options: RaceOptions) -> str:
    if not options.competitor:
        return "keeper alone"
    heads = "WebSocket heads" if options.competitor_ws \
        else f"{options.competitor_poll * 1000:.0f} ms polling"
    flash = ", keeper with flash executor" if options.flash else ""
    ha = ", keeper as two [ha] replicas" if options.ha else ""
    return f"competitor {heads}, tip {options.competitor_tip_gwei} gwei{flash}{ha}"


def print_result(seed: int, result: RaceResult, *, verbose: bool = False) -> None:
    options = result.options
    print(f"\n== race: seed {seed}, {options.mode}, steps {options.first_step}.."
          f"{options.first_step + options.steps - 1} every {options.step_seconds:g} s, "
          f"{_variant(options)}; keeper tip {options.keeper_tip_gwei} gwei "
          f"({result.seconds:.0f} s, load average {result.load[0]:.1f} -> {result.load[1]:.1f}, "
          f"workdir {result.workdir})")
    for line in result.verdict.lines():
        print(line)
    reasons = Counter((r.who, r.cause, r.reason) for r in result.verdict.reverts)
    for (who, cause, reason), count in sorted(reasons.items()):
        print(f"    {who} reverted {count}: {cause}: {reason}")
    if verbose:
        for revert in result.verdict.reverts:
            winner = (f" after {revert.winner_who} {revert.winner} "
                      f"(+{revert.blocks_after} blocks)") if revert.winner else ""
            print(f"    {revert.who} {revert.tx_hash} block {revert.block}: "
                  f"{revert.cause}: {revert.reason}{winner}")
    print(" send timing (bots' own send clocks against the step block's arrival):")
    for line in result.timing.lines():
        print(line)
    for name, by_cause in result.lost.items():
        for cause, lost in sorted(by_cause.items()):
            print(lost.line(name, cause))
    keeper_view = {k: v for k, v in result.keeper_metrics.items()
                   if v and not k.startswith("keeper_head_block")}
    print(f" keeper's own view (/metrics): {json.dumps(keeper_view)}")
    competitor = result.competitor
    if competitor:
        print(f" competitor: {competitor.get('rounds', 0)} rounds, "
              f"{len(competitor.get('sends', []))} sends, simulation reverts "
              f"{competitor.get('simulation_reverts', {})}, send errors "
              f"{competitor.get('send_errors', {})}")
    if result.stuck:
        print(f" {result.stuck} transactions still in the pool at the end")
    for note in result.notes:
        print(f" {note}")


def as_json(seed: int, result: RaceResult) -> dict[str, Any]:
    options = {k: str(v) if isinstance(v, Decimal | Path) else v
               for k, v in asdict(result.options).items()}
    return {"seed": seed, "options": options, "seconds": round(result.seconds, 1),
            "workdir": str(result.workdir), "verdict": result.verdict.as_json(),
            "timing": result.timing.as_json(),
            "lost_races": {n: {c: asdict(x) for c, x in by_cause.items()}
                           for n, by_cause in result.lost.items()},
            "keeper_metrics": result.keeper_metrics,
            "competitor": {k: v for k, v in result.competitor.items() if k != "round_ms"},
            "stuck": result.stuck, "load": result.load}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.race", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, action="append",
                        help=f"borrower population seed (repeatable; default {DEFAULT_SEED})")
    parser.add_argument("--mode", choices=["automine", "interval", "both"], default="automine")
    parser.add_argument("--runs", type=int, default=1, help="races per seed and mode")
    parser.add_argument("--long", action="store_true",
                        help=f"seeds {', '.join(map(str, LONG_SEEDS))} x both modes")
    parser.add_argument("--borrowers", type=int, default=300)
    parser.add_argument("--path", type=Path, help="price path CSV (default: 2021-05-19)")
    parser.add_argument("--first-step", type=int, default=0)
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--step-seconds", type=float, default=1.0)
    parser.add_argument("--competitor-poll", type=float, default=0.1, help="seconds")
    parser.add_argument("--competitor-ws", action="store_true", help="newHeads over WebSocket")
    parser.add_argument("--competitor-tip", type=Decimal, default=Decimal(1), help="gwei")
    parser.add_argument("--keeper-tip", type=Decimal, default=Decimal(1), help="gwei")
    parser.add_argument("--flash", action="store_true", help="the keeper's flash executor on")
    parser.add_argument("--historical-gas", action="store_true",
                        help="post the path's gas prices as base fees (they jump up to 3x "
                             "from one step's block to the next)")
    parser.add_argument("--capital-usd", type=Decimal, default=CAPITAL_USD,
                        help="both bots hold this much of every token, so capital is not what "
                             "decides the race; 0: the devnet liquidator's $5M, matched")
    parser.add_argument("--every-step", action="store_true",
                        help="post every feed at every step (default: only when its price "
                             "moved by the feed's published deviation, as Chainlink does)")
    parser.add_argument("--alone", action="store_true", help="no competitor")
    parser.add_argument("--json", action="store_true", help="one JSON object per race")
    parser.add_argument("--json-out", type=Path, help="also append each race's JSON to a file")
    parser.add_argument("--verbose", action="store_true", help="list every revert")
    parser.add_argument("--workdir", type=Path, help="default .cache/race/<time>")
    ha = parser.add_mutually_exclusive_group()
    ha.add_argument("--ha", action="store_true",
                    help="the keeper as two [ha] replicas on a PostgreSQL journal")
    ha.add_argument("--ha-compare", action="store_true",
                    help="each race twice, without and with --ha, side by side")
    args = parser.parse_args()
    if (args.ha or args.ha_compare) and importlib.util.find_spec("psycopg") is None:
        parser.error("--ha needs the ha extra: pip install -e '.[ha]'")
    variants = [False, True] if args.ha_compare else [args.ha]
    seeds = list(LONG_SEEDS) if args.long else (args.seed or [DEFAULT_SEED])
    modes: list[Mode] = ["automine", "interval"] if args.long or args.mode == "both" \
        else [args.mode]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = args.workdir or cache_dir() / "race" / stamp
    for seed in seeds:
        spec = DevnetSpec(borrowers=args.borrowers, seed=seed)
        if not args.json:
            print(f"borrower seed {seed} ({args.borrowers} borrowers)", flush=True)
        for mode in modes:
            for run in range(args.runs):
                results = [_one(args, spec, _options(args, mode, ha),
                                root / f"seed{seed}-{mode}-{run + 1}{'-ha' if ha else ''}")
                           for ha in variants]
                if args.ha_compare and not args.json:
                    from benchmarks.race.ha import compare_lines  # noqa: PLC0415 (psycopg)

                    print(f"\n== without and with [ha]: seed {seed}, {mode}, run {run + 1}")
                    print("\n".join(compare_lines(*results)), flush=True)


def _one(args: argparse.Namespace, spec: DevnetSpec, options: RaceOptions,
         workdir: Path) -> RaceResult:
    """One race on a fresh anvil from the seed's cached devnet, printed as asked."""
    started = time.monotonic()
    anvil, info, cached = start_devnet(spec)
    if not args.json and not cached:
        print(f"deployed the seed's devnet in {time.monotonic() - started:.0f} s", flush=True)
    try:
        result = run_race(info, options, workdir)
    finally:
        anvil.stop()
    if args.json_out:
        with args.json_out.open("a") as out:
            out.write(json.dumps(as_json(spec.seed, result)) + "\n")
    if args.json:
        print(json.dumps(as_json(spec.seed, result)), flush=True)
    else:
        print_result(spec.seed, result, verbose=args.verbose)
    return result


if __name__ == "__main__":
    main()
