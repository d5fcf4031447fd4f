"""`keeper demo`: the devnet, a historical crash driven through the feeds, and its effect.

Starts the devnet (cached after the first run), then posts the 2021-05-19
ETH/USD path on the WETH and WBTC feeds one step per block, with that day's
gas prices as base fees, and shows live how many Aave V3 and Morpho Blue
positions the chain considers liquidatable. Ends with a table of the
positions that crossed the line. Anvil is always stopped on the way out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from web3 import Web3

from keeper.devnet.borrowers import BorrowerPlan, plan_population
from keeper.devnet.crash import CrashStep, apply_step, crash_steps
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.observe import aave_accounts, morpho_positions
from keeper.devnet.price_path import load_price_path
from keeper.devnet.tokens import DEFAULT_TOKENS

WAD = 10**18


@dataclass
class DemoState:
    """What the live view shows, updated after each step."""

    step: CrashStep | None = None
    block: int = 0
    aave_liquidatable: int = 0
    morpho_liquidatable: int = 0
    aave_total: int = 0
    morpho_total: int = 0


def _view(state: DemoState, total_steps: int) -> Table:
    table = Table(title="keeper demo: 2021-05-19 ETH crash on the devnet", show_header=False)
    if state.step is not None:
        prices = "  ".join(f"{s} ${p:,.2f}" for s, p in state.step.prices.items())
        table.add_row("step", f"{state.step.index + 1}/{total_steps}  ({state.step.time} UTC)")
        table.add_row("block", str(state.block))
        table.add_row("prices", prices)
        gas = state.step.gas_gwei
        table.add_row("base fee", "-" if gas is None else f"{gas} gwei")
    table.add_row("Aave V3 liquidatable", f"{state.aave_liquidatable} of {state.aave_total}")
    morpho = f"{state.morpho_liquidatable} of {state.morpho_total}"
    table.add_row("Morpho Blue liquidatable", morpho)
    return table


def run_demo(console: Console, *, spec: DevnetSpec | None = None, max_steps: int = 90) -> int:
    """Run the demo; returns how many positions became liquidatable."""
    spec = spec or DevnetSpec()
    started = time.monotonic()
    with console.status("starting the devnet (the first run deploys and takes longer)…"):
        anvil, info, cached = start_devnet(spec)
    try:
        console.print(
            f"devnet up in {time.monotonic() - started:.1f} s "
            f"({'cached state' if cached else 'cold deploy'}) at {info.rpc_url}"
        )
        plans = plan_population(spec.borrowers, spec.seed)
        return _drive(console, info, plans, max_steps)
    finally:
        anvil.stop()


def _drive(console: Console, info: DevnetInfo, plans: list[BorrowerPlan], max_steps: int) -> int:
    w3 = Web3(Web3.HTTPProvider(info.rpc_url))
    start = {s.symbol: s.usd_price for s in DEFAULT_TOKENS}
    steps = crash_steps(load_price_path(), start)[:max_steps]
    aave_plans = [p.address for p in plans if p.protocol == "aave_v3"]
    morpho_plans = [p.address for p in plans if p.protocol == "morpho_blue"]
    kinds = {str(p.address): p.kind for p in plans}
    state = DemoState(aave_total=len(aave_plans), morpho_total=len(morpho_plans))
    crossed: dict[str, tuple[str, int, str]] = {}
    with Live(_view(state, len(steps)), console=console, refresh_per_second=8) as live:
        for step in steps:
            state.step, state.block = step, apply_step(w3, info, step)
            aave = [a for a in aave_accounts(w3, info, aave_plans) if a.liquidatable]
            morpho = [p for p in morpho_positions(w3, info, morpho_plans) if p.liquidatable]
            state.aave_liquidatable, state.morpho_liquidatable = len(aave), len(morpho)
            for account in aave:
                hf = f"HF {Decimal(account.health_factor) / WAD:.4f}"
                crossed.setdefault(account.address, ("Aave V3", state.block, hf))
            for position in morpho:
                ltv = f"LTV {position.borrowed / max(position.max_borrow, 1) * 86:.1f}%"
                crossed.setdefault(position.address, ("Morpho Blue", state.block, ltv))
            live.update(_view(state, len(steps)))
    summary = Table(title="positions that became liquidatable during the crash")
    for column in ("protocol", "borrower", "kind", "first block", "at first sight"):
        summary.add_column(column)
    for address, (protocol, block, figure) in sorted(crossed.items(), key=lambda i: i[1][1]):
        summary.add_row(protocol, address, kinds.get(address, "?"), str(block), figure)
    console.print(Group(summary))
    console.print(
        f"{len(crossed)} of {len(plans)} positions became liquidatable; "
        "(the daemon that liquidates them is not wired into the demo yet)."
    )
    return len(crossed)


@click.command("demo")
@click.option("--steps", default=90, show_default=True, type=click.IntRange(1, 144),
              help="10-minute steps of the crash path to play (the low comes at step 79).")
def demo(steps: int) -> None:
    """Run the devnet, play the 2021-05-19 crash through the feeds, and show what it does."""
    run_demo(Console(), max_steps=steps)
