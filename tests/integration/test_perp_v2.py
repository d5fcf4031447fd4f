"""Perp v2 (Curie) on its devnet profile: parity with the chain, and a crash the keeper works.

PARITY: the strategy syncs once, then follows the chain from its logs alone (plus its one
batch of reads a block); at every step of a crash (vBTC -9.5 % in one step, then vETH down
4 % at a time, each step: the index, trades on the vAMM, 16 s for the mark), every seeded
account's account value and liquidation margin requirement equal ClearingHouse.getAccountValue
and AccountBalance.getMarginRequirementForLiquidation, and the mark price equals
AccountBalance.getMarkPrice.

CRASH: the keeper runs (the real engine, ranking, dispatcher and executor) while the same
crash is driven; every account is liquidated (or its orders cancelled first) at the first
block it is liquidatable, i.e. nothing but the keeper's own transactions is mined between that
block and its liquidation; the account a single step took into a deficit beyond the insurance
fund is reported with that reason; none of the keeper's transactions reverts; the positions it
took over are closed, and its realized PnL equals the chain's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from web3 import Web3
from web3.exceptions import ContractLogicError

from keeper.anvil import Anvil, rpc_call
from keeper.chain.http import HttpRpc
from keeper.cli import main
from keeper.demo import DEMO_MAX_FEE, DEMO_PRIORITY_FEE
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import DevnetInfo
from keeper.devnet.perp import PerpContracts, PerpInfo, attach
from keeper.devnet.perp_cli import write_perp_outputs
from keeper.devnet.perp_drive import move_market
from keeper.devnet.perp_seed import start_perp_devnet
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.strategy import StrategyContext
from keeper.types import BlockRef, Event, Outcome
from keeper.wiring import Keeper
from strategies.perp_v2 import STRATEGY, PerpV2Config, PerpV2Strategy
from strategies.perp_v2 import math as pm
from tests.conftest import rolled_back
from tests.integration.helpers import devnet_keeper

ETH_STEPS = (Decimal("0.96"), Decimal("0.92"), Decimal("0.88"), Decimal("0.84"), Decimal("0.80"),
             Decimal("0.76"), Decimal("0.72"))
BTC_STEP = Decimal("0.905")


@dataclass
class PerpNet:
    anvil: Anvil
    devnet: DevnetInfo
    info: PerpInfo
    w3: Web3
    contracts: PerpContracts

    def rpc(self, method: str, *params: object) -> Any:
        return rpc_call(self.anvil.rpc_url, method, params, timeout=60)


@pytest.fixture(scope="module")
def perp_session() -> Iterator[PerpNet]:
    anvil, devnet, info, _cached = start_perp_devnet()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        yield PerpNet(anvil, devnet, info, w3, attach(w3, info))
    finally:
        anvil.stop()


@pytest.fixture
def perp(perp_session: PerpNet) -> Iterator[PerpNet]:
    with rolled_back(perp_session):
        yield perp_session


def make_strategy(net: PerpNet) -> PerpV2Strategy:
    section = PerpV2Config(clearing_house=net.info.clearing_house,
                           market_registry=net.info.market_registry)
    strategy = STRATEGY.create(section, StrategyContext(net.devnet.chain_id, net.info.liquidator))
    assert isinstance(strategy, PerpV2Strategy)
    return strategy


async def block_ref(rpc: HttpRpc, tag: str | int = "latest") -> BlockRef:
    raw = await rpc.call("eth_getBlockByNumber", [hex(tag) if isinstance(tag, int) else tag,
                                                  False])
    return BlockRef(int(raw["number"], 16), raw["hash"], raw["parentHash"],
                    int(raw["timestamp"], 16))


async def follow(rpc: HttpRpc, strategy: PerpV2Strategy) -> BlockRef:
    """Apply every log after the strategy's last block up to the head, then refresh there."""
    last = strategy.synced
    assert last is not None
    head = await block_ref(rpc)
    events: list[Event] = []
    for f in strategy.subscriptions():
        events += await rpc.get_logs(f, last.number + 1, head.number)
    events.sort(key=lambda e: (e.block_number, e.log_index))
    strategy.apply(events, head)
    await strategy.refresh(rpc, head)
    return head


def seeded(net: PerpNet) -> dict[str, str]:
    return {name: a.lower() for name, a in {**net.info.traders, **net.info.makers}.items()}


def chain_view(net: PerpNet, account: str, block: int) -> tuple[int, int]:
    who = Web3.to_checksum_address(account)
    value = net.contracts.clearing_house.functions.getAccountValue(who).call(
        block_identifier=block)
    need = net.contracts.account_balance.functions.getMarginRequirementForLiquidation(who).call(
        block_identifier=block)
    return int(value), int(need)


def check_parity(net: PerpNet, strategy: PerpV2Strategy, head: BlockRef) -> set[str]:
    """Every seeded account and mark equal the chain at `head`; the liquidatable names."""
    marks = strategy.marks()
    for symbol, base in net.contracts.bases.items():
        chain_mark = net.contracts.account_balance.functions.getMarkPrice(base.address).call(
            block_identifier=head.number)
        assert marks[base.address.lower()] == chain_mark, symbol
    weak = set()
    for name, account in seeded(net).items():
        value, need = chain_view(net, account, head.number)
        assert (strategy.account_value(account), strategy.margin_requirement(account)) == (
            value, need), (name, head.number)
        if value < need:
            weak.add(name)
    return weak


def check_orders(net: PerpNet, strategy: PerpV2Strategy, head: BlockRef) -> int:
    """Every seeded maker's orders kept from the logs equal the OrderBook's at `head` (the
    order ids of each market, and each order's liquidity and debts), and what they hold at
    the pool's price, derived locally, equals the OrderBook's totals; the orders checked."""
    book, at = net.contracts.order_book.functions, head.number
    checked = 0
    for name, maker in net.info.makers.items():
        who = Web3.to_checksum_address(maker)
        local = strategy.book.accounts.get(maker.lower())
        orders = local.orders if local is not None else {}
        for symbol, token in net.contracts.bases.items():
            base = token.address.lower()
            mine = {k: o for k, o in orders.items() if k[0] == base}
            ids = book.getOpenOrderIds(who, token.address).call(block_identifier=at)
            assert len(ids) == len(mine), (name, symbol, at)
            for (_, lower, upper), order in mine.items():
                info = book.getOpenOrder(who, token.address, lower, upper).call(
                    block_identifier=at)
                assert (order.liquidity, order.base_debt, order.quote_debt) == (
                    info[0], info[7], info[8]), (name, symbol, lower, upper, at)
                checked += 1
            if not mine:
                continue
            # Valued at the pool's price the strategy read: the base and quote net of debt.
            in_pool = book.getTotalTokenAmountInPoolAndPendingFee(who, token.address, True).call(
                block_identifier=at)[0]
            debt = book.getTotalOrderDebt(who, token.address, True).call(block_identifier=at)
            quote, fee = book.getTotalQuoteBalanceAndPendingFee(who, [token.address]).call(
                block_identifier=at)
            position = strategy.state(maker.lower()).markets[base]
            assert (position.maker_base, position.maker_quote, position.pending_fee) == (
                in_pool - debt, quote, fee), (name, symbol, at)
    return checked


def crash(net: PerpNet, each_block: Callable[[int], None], *, btc_again: bool = False) -> None:
    """The crash, one step at a time, `each_block` called after every block it mines;
    `btc_again`: a second vBTC step at the end."""
    deployer = Deployer(net.w3, net.w3.eth.accounts[0])
    prices = {s: Decimal(int(net.contracts.bases[s].functions.getIndexPrice(0).call()))
              / 10**18 for s in net.contracts.bases}
    move_market(deployer, net.contracts, net.info, "vBTC", prices["vBTC"] * BTC_STEP,
                each_block=each_block)
    for step in ETH_STEPS:
        move_market(deployer, net.contracts, net.info, "vETH", prices["vETH"] * step,
                    each_block=each_block)
    if btc_again:
        move_market(deployer, net.contracts, net.info, "vBTC",
                    prices["vBTC"] * BTC_STEP * BTC_STEP, each_block=each_block)


def in_loop(loop: asyncio.AbstractEventLoop,
            work: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[int], None]:
    """A block hook for `crash` (which runs in a thread): `work` done on the test's loop."""
    def hook(_block: int) -> None:
        asyncio.run_coroutine_threadsafe(work(), loop).result(TIMEOUT)
    return hook


async def test_parity_across_a_crash(perp: PerpNet) -> None:
    rpc = await HttpRpc.open(perp.anvil.rpc_url)
    try:
        strategy = make_strategy(perp)
        await strategy.sync(rpc, await block_ref(rpc))
        assert set(seeded(perp).values()) <= set(strategy.valued())
        assert not check_parity(perp, strategy, await block_ref(rpc))
        assert check_orders(perp, strategy, await block_ref(rpc)) > 0
        seen: set[str] = set()
        checked: list[int] = []
        orders_checked: list[int] = []

        async def check() -> None:
            head = await follow(rpc, strategy)
            seen.update(await asyncio.to_thread(check_parity, perp, strategy, head))
            orders_checked.append(await asyncio.to_thread(check_orders, perp, strategy, head))
            checked.append(head.number)

        hook = in_loop(asyncio.get_running_loop(), check)
        await asyncio.to_thread(lambda: crash(perp, hook, btc_again=True))
        assert len(checked) > 20, checked
        assert min(orders_checked) > 0, orders_checked  # nobody cancels: the orders stay
        # Nobody liquidated: the second vBTC step left accounts in deficits beyond the fund.
        # Each one the strategy passes over for CH_IIC, the chain refuses for it; each
        # liquidation it offers, the chain accepts.
        head = await block_ref(rpc)
        offered = {c.account for c in strategy.candidates(head) if ":liquidate:" in c.key}
        refused = {a for a, why in strategy.reported.items() if "CH_IIC" in why}
        assert seeded(perp)["btc_long_9x_deficit"] in refused, strategy.reported
        assert not offered & refused  # a refused account is never offered (nor sent)
        house = perp.contracts.clearing_house
        for account in offered | refused:
            state = strategy.state(account)
            base = pm.sorted_by_value(state, strategy.marks())[0]
            call = house.functions.liquidate(Web3.to_checksum_address(account),
                                             Web3.to_checksum_address(base))
            if account in refused:
                with pytest.raises(ContractLogicError, match="CH_IIC"):
                    call.call({"from": perp.info.liquidator})
            else:
                call.call({"from": perp.info.liquidator})
        # The risk view's curve: at no drop it counts what the chain calls liquidatable;
        # a deeper drop never counts fewer.
        head = await block_ref(rpc)
        valued = {a: chain_view(perp, a, head.number) for a in strategy.valued()}
        weak_now = sum(1 for value, need in valued.values() if value < need)
        points = strategy.liquidation_curve(head, (0, 10, 30))
        for token in perp.contracts.bases.values():
            mine = [p.liquidatable for p in points if p.asset == token.address.lower()]
            assert mine[0] == weak_now and mine == sorted(mine), (mine, weak_now)
        assert {"eth_long_9x", "btc_long_9x_deficit", "maker_thin"} <= seen, seen
    finally:
        await rpc.aclose()


# ---------------------------------------------------------------------------------- crash

TIMEOUT = 120.0
BAD = ("reverted", "error")


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _settled(keeper: Keeper, net: PerpNet) -> None:
    """Until the keeper has processed the head with nothing in flight, twice in a row with
    nothing sent in between (its own transactions mine blocks it must process too)."""
    stable = 0
    while stable < 2:
        before = keeper.outcomes.recorded

        async def settled() -> bool:
            head = await asyncio.to_thread(lambda: net.w3.eth.block_number)
            return keeper.engine.stats.processed >= head and keeper.inflight == 0

        await _until(settled, "the keeper to settle")
        await asyncio.sleep(0.05)
        new = keeper.outcomes.since(before)
        stable = stable + 1 if keeper.inflight == 0 and all(
            o.status == "duplicate" for o in new) else 0


async def _perp_keeper(net: PerpNet, journal: Journal) -> tuple[Keeper, PerpV2Strategy]:
    section = PerpV2Config(clearing_house=net.info.clearing_house,
                           market_registry=net.info.market_registry,
                           max_margin_usd=Decimal(500_000))
    strategy = STRATEGY.create(section, StrategyContext(net.devnet.chain_id, net.info.liquidator))
    assert isinstance(strategy, PerpV2Strategy)
    keeper = await devnet_keeper(net.devnet, journal, strategy,
                                 fees=FeePolicy(DEMO_MAX_FEE, DEMO_PRIORITY_FEE), min_profit=0)
    return keeper, strategy


async def _liquidatable_at(
    rpc: HttpRpc, net: PerpNet, accounts: dict[str, str], block: BlockRef
) -> set[str]:
    """The names of `accounts` the chain calls liquidatable at `block`, and still at `block`'s
    state one second later, the earliest a liquidation sent on it can run (one batch)."""
    house, balance = net.contracts.clearing_house, net.contracts.account_balance
    calls: list[tuple[str, list[Any]]] = []
    for overrides in ([], [{}, {"time": hex(block.timestamp + 1)}]):
        for account in accounts.values():
            who = Web3.to_checksum_address(account)
            for to, fn in ((house, house.functions.getAccountValue(who)),
                           (balance, balance.functions.getMarginRequirementForLiquidation(who))):
                data = fn._encode_transaction_data()
                calls.append(("eth_call", [{"to": to.address, "data": data}, hex(block.number),
                                           *overrides]))
    answers = [int.from_bytes(bytes.fromhex(str(a)[2:]), "big", signed=True)
               for a in await rpc.batch(calls)]
    n = len(accounts)
    return {name for i, name in enumerate(accounts)
            if answers[2 * i] < answers[2 * i + 1]
            and answers[2 * (n + i)] < answers[2 * (n + i) + 1]}


def _first_attempts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """account -> the block of the keeper's first mined cancel or liquidation of it (a lost
    race included: the executor checked it was valid at the block it was ranked at)."""
    first: dict[str, int] = {}
    for o in outcomes:
        _chain, _strategy, account, _base, kind, _state = o.key.split(":")
        if kind in ("liquidate", "cancel") and o.status in ("confirmed", "lost") and o.block:
            first[account] = min(first.get(account, o.block), o.block)
    return first


def _only_keeper_between(net: PerpNet, low: int, high: int) -> bool:
    me = net.info.liquidator.lower()
    for number in range(low + 1, high):
        block = net.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)  # full transactions were asked for
            if str(tx["from"]).lower() != me:
                return False
    return True


def _reverted(net: PerpNet, low: int, high: int) -> list[str]:
    """The keeper's transactions mined in blocks low..high that reverted."""
    me = net.info.liquidator.lower()
    out = []
    for number in range(low, high + 1):
        for tx in net.w3.eth.get_block(number, full_transactions=True)["transactions"]:
            assert not isinstance(tx, bytes)  # full transactions were asked for
            if str(tx["from"]).lower() == me and \
                    net.w3.eth.get_transaction_receipt(tx["hash"])["status"] != 1:
                out.append(tx["hash"].to_0x_hex())
    return out


def _why(net: PerpNet, tx_hash: str) -> str:
    """A mined transaction's revert reason, replayed on its parent block."""
    if not tx_hash:
        return ""
    tx = net.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    try:
        net.w3.eth.call({"from": tx["from"], "to": tx["to"], "data": tx["input"]},
                        tx["blockNumber"] - 1)
    except Exception as exc:  # any revert is the answer
        return str(exc)[:120]
    return "no revert on the parent block"


def _holdings(net: PerpNet) -> int:
    """The keeper's Vault balance and owed realized PnL (X10_18)."""
    who = Web3.to_checksum_address(net.info.liquidator)
    owed = int(net.contracts.account_balance.functions.getPnlAndPendingFee(who).call()[0])
    balance = int(net.contracts.vault.functions.getBalance(who).call())
    return balance * 10**12 + owed


async def test_crash_liquidates_every_account_at_its_first_liquidatable_block(
    perp: PerpNet, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    keeper, strategy = await _perp_keeper(perp, journal)
    start = perp.w3.eth.block_number
    holdings_before = await asyncio.to_thread(_holdings, perp)
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(keeper.run(stop))
        try:
            await asyncio.to_thread(crash, perp, in_loop(asyncio.get_running_loop(),
                                                           lambda: _settled(keeper, perp)))
            for _ in range(3):  # a few empty blocks: the last close's profit is withdrawn
                await asyncio.to_thread(perp.rpc, "evm_mine")
                await _settled(keeper, perp)
        finally:
            stop.set()
            await task
        end = perp.w3.eth.block_number
        outcomes = keeper.outcomes
        bad = [(o.status, o.key, o.reason[:80], _why(perp, o.tx_hash)) for o in outcomes
               if o.status in BAD or (o.status == "lost" and "no longer liquidatable"
                                      not in o.reason)]
        assert not bad, bad
        # None of the keeper's transactions reverts (a liquidation sent before its simulation
        # answered once ran out of gas on a flat gas figure).
        assert not await asyncio.to_thread(_reverted, perp, start + 1, end)
        to_market = [o for o in outcomes if o.status == "lost"]
        gaps = []  # seconds from the block a lost send was ranked at to the one it landed in
        for o in to_market:
            ranked = int(o.reason.split("valid at block ")[1].split(",")[0])
            gaps.append((await block_ref(keeper.chain, o.block)).timestamp
                        - (await block_ref(keeper.chain, ranked)).timestamp)
        accounts = seeded(perp)
        names = {a: n for n, a in accounts.items()}
        acted = _first_attempts(outcomes)
        first: dict[str, int] = {}
        for number in range(start, end + 1):
            ref = await block_ref(keeper.chain, number)
            for name in await _liquidatable_at(keeper.chain, perp, accounts, ref):
                first.setdefault(name, number)
        # Liquidated at its first liquidatable block, the 9x vBTC account never reaches the
        # deficit a keeper-less crash leaves it in (the parity test checks that case).
        assert not strategy.reported, strategy.reported
        assert {"eth_long_9x", "maker_thin", "btc_long_8x"} <= set(first), first
        for name, block in first.items():
            action = acted.get(accounts[name])
            assert action is not None and action > block, (name, block, action)
            assert await asyncio.to_thread(_only_keeper_between, perp, block, action), (
                name, block, action, keeper.engine.stats.processed)
        assert {names[a] for a in acted} <= set(first)
        cancelled = {o.key.split(":")[2] for o in outcomes.confirmed if ":cancel:" in o.key}
        assert accounts["maker_thin"] in cancelled  # its orders went first (CH_CLWTISO)
        # The orders kept from the logs followed the cancels: they equal the OrderBook's at
        # the last block the keeper processed (maker_thin's are gone on both sides).
        synced = strategy.synced
        assert synced is not None
        await asyncio.to_thread(check_orders, perp, strategy, synced)
        assert not any(k for k in strategy.book.account(accounts["maker_thin"]).orders)
        for base in perp.contracts.bases.values():  # every position taken over was closed
            size = perp.contracts.account_balance.functions.getTakerPositionSize(
                Web3.to_checksum_address(perp.info.liquidator), base.address).call()
            assert size == 0, base.address
        # Realized PnL: the strategy's ledger (every PnlRealized of the keeper's account) is
        # what the keeper's Vault holdings gained plus what it withdrew, but for the
        # sub-cent rounding of each withdrawal's settlement; the withdrawals moved its
        # profit out as USDC transfers, so the journal (which values a send by its
        # transfers) holds it, and less than a cent is left behind.
        mine = sum(r.amount for r in strategy.realized if r.block > start)
        gained = await asyncio.to_thread(_holdings, perp) - holdings_before
        vault = perp.contracts.vault
        withdrawn = [int(e["args"]["amount"]) for e in vault.events.Withdrawn().get_logs(
            from_block=start, to_block=end) if e["args"]["trader"] == perp.info.liquidator]
        assert mine > 0 and withdrawn
        lost = mine - gained - sum(withdrawn) * 10**12
        assert 0 <= lost < len(withdrawn) * 10**12, (mine, gained, withdrawn)
        assert gained < 10**16, gained
        taken = [o for o in outcomes.confirmed if ":withdraw:" in o.key]
        assert len(taken) == len(withdrawn) and all(o.realized_profit > 0 for o in taken)
        print(f"\nperp crash: {len(first)} accounts liquidatable, {len(acted)} acted on, "
              f"{len(outcomes.confirmed)} confirmed, {len(to_market)} lost to the market "
              f"(valid when sent, not when mined; {gaps} s later), realized {mine / 1e18:.2f} USD "
              f"({sum(withdrawn) / 1e6:.2f} USDC withdrawn in {len(withdrawn)}), "
              f"statuses {sorted({o.status for o in outcomes})}")
    finally:
        await keeper.aclose()
        journal.close()


async def test_an_account_a_step_took_into_deficit_is_reported_not_sent(
    perp: PerpNet, tmp_path: Path
) -> None:
    """Two vBTC steps the keeper does not see in between (one step, for the keeper) leave the
    9x vBTC account in a deficit beyond the insurance fund: the keeper reports it with
    CH_IIC and never sends it; it liquidates the others the steps made liquidatable."""
    deployer = Deployer(perp.w3, perp.w3.eth.accounts[0])
    btc = Decimal(int(perp.contracts.bases["vBTC"].functions.getIndexPrice(0).call())) / 10**18
    for steps in (1, 2):
        await asyncio.to_thread(move_market, deployer, perp.contracts, perp.info, "vBTC",
                                btc * BTC_STEP**steps)
    start = perp.w3.eth.block_number
    journal = Journal(tmp_path / "j.sqlite")
    keeper, strategy = await _perp_keeper(perp, journal)
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(keeper.run(stop))
        try:
            for _ in range(3):  # the keeper sees the steps' last block, then its own sends'
                await asyncio.to_thread(perp.rpc, "evm_mine")
                await _settled(keeper, perp)
        finally:
            stop.set()
            await task
        deficit = seeded(perp)["btc_long_9x_deficit"]
        assert "CH_IIC" in strategy.reported.get(deficit, ""), strategy.reported
        acted = _first_attempts(keeper.outcomes)
        assert deficit not in acted and acted, acted
        assert not [o for o in keeper.outcomes if o.key.split(":")[2] == deficit]
        assert not [o for o in keeper.outcomes if o.status in BAD]
        assert not await asyncio.to_thread(_reverted, perp, start + 1,
                                           perp.w3.eth.block_number)
    finally:
        await keeper.aclose()
        journal.close()


def test_perp_move_cli(perp: PerpNet, tmp_path: Path) -> None:
    """`keeper devnet perp-move` moves index, vAMM and mark; bad input is one line, exit 2."""
    devnet_file, perp_file = tmp_path / "devnet.json", tmp_path / "perp.json"
    perp.devnet.write(devnet_file)
    write_perp_outputs(perp.info, devnet_file, None)
    assert perp_file.is_file()
    files = ["--devnet-file", str(devnet_file), "--perp-file", str(perp_file)]
    result = CliRunner().invoke(main, ["devnet", "perp-move", "vETH", "1900", *files])
    assert result.exit_code == 0, result.output
    base = perp.contracts.bases["vETH"].address
    mark = perp.contracts.account_balance.functions.getMarkPrice(base).call()
    assert abs(mark - 1900 * 10**18) < 10**18, mark  # within a dollar of the move
    for args, says in ((["vXX", "1900"], "no market"), (["vETH", "0"], "positive"),
                       (["vETH", "1900", "--perp-file", str(tmp_path / "no.json")], "not found")):
        result = CliRunner().invoke(main, ["devnet", "perp-move", *args, *files[:2],
                                           *([] if "--perp-file" in args else files[2:])])
        assert result.exit_code == 2, result.output
        assert says in result.output and "Traceback" not in result.output
