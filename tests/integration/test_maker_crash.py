"""A crash on the Maker devnet with the keeper running the `maker` strategy alone.

WETH falls from $2,000 to $1,700 (the devnet feed, Maker's pip and Spotter.poke), then time
passes in 2-minute steps while the Clipper prices fall. Asserted: none of the keeper's
transactions reverted or failed; every Dog-liquidated vault unsafe after the crash was
barked by the keeper, or the strategy holds the Dog's reason for refusing it (its limit
full, a dusty partial); each kick and reset is paid its incentive (one send per auction:
the journal's key); at least one auction was taken, and every take was profitable net of
gas (realized from the receipt's transfers, as the engine values every send); no receipt
of the keeper's reverted (a race the executor calls lost included); realized PnL equals
the journal: each journaled profit is its receipt's transfers valued, and the account's
Maker DAI and WETH moved by exactly what those transfers say. Run twice: taking with
DAI the account holds, and with the MCD_WETH/MCD_DAI pair as exit, starting with no DAI,
where the strategy also offers selling the collateral inside the take
(MakerKeeper.takeAndSell through Clipper's clipperCall) and ranking sends the better one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.devnet import maker as mcd
from keeper.devnet.crash import CrashStep, apply_step
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.strategy import StrategyContext
from keeper.wiring import Keeper
from strategies.maker import MakerStrategy
from strategies.maker.book import ilk_word
from strategies.maker.math import RAY
from tests.conftest import Devnet
from tests.integration.helpers import devnet_keeper
from tests.integration.maker_helpers import (
    journal_ledger,
    keeper_contract,
    maker_config,
    reverted_sends,
)

GWEI = 10**9
TIMEOUT = 90.0
STEPS = 20  # 2-minute steps: ETH-B's linear price falls 3.3 % of top each, ETH-C's 11 %
BAD = ("reverted", "error")


async def _keeper(
    devnet: Devnet, journal: Journal, contract: str, *, sell: bool
) -> tuple[Keeper, MakerStrategy]:
    info = devnet.info
    context = StrategyContext(chain_id=info.chain_id, liquidator=info.accounts.liquidator)
    assert info.maker is not None
    extra = {"clip_exit_pair": info.maker.pairs["MCD_WETH/MCD_DAI"]} if sell else {}
    strategy = MakerStrategy(maker_config(devnet, contract, **extra), context)
    keeper = await devnet_keeper(info, journal, strategy, fees=FeePolicy(3_000 * GWEI, 2 * GWEI),
                                 min_profit=10**15)
    return keeper, strategy


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _settled(keeper: Keeper, devnet: Devnet) -> None:
    """Until the keeper processed the head with nothing in flight, twice with nothing new."""
    quiet = 0
    while quiet < 2:
        before = keeper.outcomes.recorded

        async def done() -> bool:
            head = await asyncio.to_thread(lambda: devnet.w3.eth.block_number)
            return keeper.engine.stats.processed >= head and keeper.inflight == 0

        await _until(done, "the keeper to settle")
        new = keeper.outcomes.since(before)
        quiet = quiet + 1 if all(o.status == "duplicate" for o in new) else 0
        await asyncio.to_thread(devnet.rpc, "evm_mine")


def _unsafe(devnet: Devnet, usd: int | None = None) -> set[tuple[str, str]]:
    """The Dog vaults unsafe now, or (`usd`) at the spot Spotter.poke sets for that price:
    rdiv(rdiv(val * 1e9, par), mat), read before the keeper can act on the crash."""
    info = devnet.info.maker
    assert info is not None
    vat = mcd.contract(devnet.w3, "Vat", info.vat)
    spotter = mcd.contract(devnet.w3, "Spotter", info.spot)
    out = set()
    for vault in info.vaults:
        if info.ilks[vault.ilk].engine != "clip":
            continue
        ilk = bytes.fromhex(ilk_word(vault.ilk)[2:])
        ink, art = vat.functions.urns(ilk, vault.urn).call()
        rate, spot = vat.functions.ilks(ilk).call()[1:3]
        if usd is not None:
            par, mat = spotter.functions.par().call(), spotter.functions.ilks(ilk).call()[1]
            spot = usd * 10**18 * 10**9 * RAY // par * RAY // mat
        if ink * spot < art * rate:
            out.add((vault.ilk, vault.urn.lower()))
    return out


def _balances(devnet: Devnet) -> dict[str, int]:
    """The liquidator's Maker DAI and Maker WETH, by token address (lower-case)."""
    info = devnet.info.maker
    assert info is not None
    who = devnet.w3.to_checksum_address(devnet.info.accounts.liquidator)
    return {a.lower(): int(mcd.contract(devnet.w3, name, a).functions.balanceOf(who).call())
            for name, a in (("Dai", info.dai), ("WETH9", info.weth))}


def _give_away_dai(devnet: Devnet) -> None:
    """The liquidator's Maker DAI to the deployer."""
    info = devnet.info.maker
    assert info is not None
    dai = mcd.contract(devnet.w3, "Dai", info.dai)
    owner = devnet.w3.to_checksum_address(devnet.info.accounts.liquidator)
    tx = dai.functions.transfer(devnet.info.accounts.deployer,
                                dai.functions.balanceOf(owner).call())
    assert devnet.w3.eth.wait_for_transaction_receipt(
        tx.transact({"from": owner}), timeout=30)["status"] == 1


def _barked(devnet: Devnet, start: int, kpr: str) -> list[tuple[str, str]]:
    """(ilk, urn) of every Dog.Bark whose auction's keeper was `kpr`, in order."""
    info = devnet.info.maker
    assert info is not None
    out = []
    for name in ("ETH-B", "ETH-C"):
        clip = mcd.contract(devnet.w3, "Clipper", info.ilks[name].auction)
        for kick in clip.events.Kick().get_logs(from_block=start):
            if str(kick["args"]["kpr"]).lower() == kpr.lower():
                out.append((name, str(kick["args"]["usr"]).lower()))
    return out


@pytest.mark.parametrize("sell", [False, True], ids=["with_dai", "clipper_call"])
async def test_crash_barks_every_unsafe_vault_and_takes_at_a_profit(
    maker: Devnet, tmp_path: Path, sell: bool
) -> None:
    contract = keeper_contract(maker)
    journal = Journal(tmp_path / "j.sqlite")
    keeper, strategy = await _keeper(maker, journal, contract, sell=sell)
    if sell:  # no DAI on hand: an auction is first taken by selling inside the take
        await asyncio.to_thread(_give_away_dai, maker)
    start = maker.w3.eth.block_number + 1
    before = _balances(maker)
    try:
        assert not await asyncio.to_thread(_unsafe, maker)
        unsafe = await asyncio.to_thread(_unsafe, maker, 1700)
        assert len(unsafe) >= 6, unsafe
        stop = asyncio.Event()
        task = asyncio.create_task(keeper.run(stop))
        try:
            await asyncio.to_thread(apply_step, maker.w3, maker.info,
                                    CrashStep(0, "crash", {"WETH": Decimal("1700")}, None))
            await _settled(keeper, maker)
            for _ in range(STEPS):
                await asyncio.to_thread(maker.rpc, "evm_increaseTime", 120)
                await asyncio.to_thread(maker.rpc, "evm_mine")
                await _settled(keeper, maker)
        finally:
            stop.set()
            await task
        outcomes = list(keeper.outcomes)
        bad = [(o.status, o.key, o.reason[:80]) for o in outcomes if o.status in BAD]
        assert not bad, bad
        barked = await asyncio.to_thread(_barked, maker, start, contract)
        for vault in unsafe:
            assert vault in barked or vault in strategy.forbidden, vault
        confirmed = [o for o in outcomes if o.status == "confirmed"]
        kicks = [o for o in confirmed if ":bark:" in o.key or ":redo:" in o.key]
        takes = [o for o in confirmed if ":take:" in o.key or ":sell:" in o.key]
        # Without an exit pair every take pays DAI; with one the strategy also offers the
        # take that sells inside itself (clipperCall) and ranking sends the better of the
        # two: the sale while the account has no DAI (later the kicks' rewards pay some).
        sells = [o for o in takes if ":sell:" in o.key]
        assert sells if sell else not sells, takes
        assert len([o for o in kicks if ":bark:" in o.key]) == len(barked)
        assert all(o.realized_profit > 0 for o in kicks), kicks
        assert takes and all(o.realized_profit > 0 for o in takes), takes
        assert not await asyncio.to_thread(reverted_sends, maker, start,
                                           maker.w3.eth.block_number)
        weth = maker.info.tokens["WETH"].address.lower()
        total, moved = await journal_ledger(keeper, tmp_path / "j.sqlite",
                                            maker.info.accounts.liquidator, weth)
        assert total == sum(o.realized_profit for o in confirmed)
        after = await asyncio.to_thread(_balances, maker)
        assert {t: after[t] - before[t] for t in after} == {t: moved[t] for t in after}, (
            before, after, moved)
        mode = "clipperCall" if sell else "with DAI"
        print(f"\nmaker crash ({mode}): {len(unsafe)} unsafe, {len(barked)} barked, forbidden "
              f"{sorted(set(strategy.forbidden.values()))}, {len(takes)} takes ({len(sells)} "
              f"clipperCall), profit "
              f"{sum(o.realized_profit for o in confirmed) / 1e18:.4f} WETH")
    finally:
        await keeper.aclose()
        journal.close()
