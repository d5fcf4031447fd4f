"""The devnet as the price-path replay mines it (`keeper.backtest.devnet_replay`): its clock,
its price blocks, and the liquidator's setup.

Automine is off: every block is mined here, `BLOCK_SECONDS` apart whatever the wall clock
says. A step's prices (each feed's `updateAnswer`, Maker's pip and Spotter pokes with
them) go in one block, at the step's historical base fee. With the keeper inserted
"after-oracle" (`keeper.backtest.trial`), that block is first mined as a trial holding the
prices only; the keeper steps onto it on copies of its books and sends; the fork is
reverted and the block rebuilt, same number, timestamp and base fee, with the keeper's
transactions after the prices. anvil orders a devnet block by fee (`--order fees`, its
default), so in that mode the price transactions pay a tip above any the keeper can pay
(its fee cap is `keeper.demo.DEMO_MAX_FEE`), and every rebuilt block is checked for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector

from keeper import demo_profiles as profiles
from keeper.backtest.history import BacktestError
from keeper.backtest.trial import pool_hashes, trial_block
from keeper.chain.http import HttpRpc
from keeper.demo import DEMO_MAX_FEE
from keeper.demo_perp import follow_step_replayed
from keeper.devnet.crash import CrashStep
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import DEFAULT_TOKENS, to_feed_answer
from keeper.errors import RpcError
from keeper.execution.allowances import APPROVE, MAX_UINT
from keeper.execution.capital import BALANCE_OF
from keeper.wiring import Keeper

WAD = 10**18
GWEI = 10**9
# A block waits at most this long for the keeper's sends of the block before to reach the
# pool (or end); then it is mined without the late ones, and the report says so.
SETTLE_SECONDS = 10.0
BLOCK_SECONDS = 12  # the replayed blocks' spacing (their timestamps do not follow the clock)
FEED_GAS = 200_000
UPDATE_ANSWER = "0x" + function_signature_to_4byte_selector("updateAnswer(int256)").hex()
TRANSFER = "0x" + function_signature_to_4byte_selector("transfer(address,uint256)").hex()
MINT = "0x" + function_signature_to_4byte_selector("mint(address,uint256)").hex()

# Steps the keeper onto a trial block (its number); how many late waits it had.
TrialStep = Callable[[int], Awaitable[int]]


@dataclass
class Clock:
    """The replay's blocks' timestamps: `BLOCK_SECONDS` apart from the devnet's last block,
    whatever the wall clock says (interest accrues the same in every run)."""

    stamp: int

    @classmethod
    async def of(cls, rpc: HttpRpc) -> Clock:
        """From the devnet's last block; anvil's own clock is moved back there, or it would
        refuse a timestamp below the wall clock's."""
        stamp = int((await rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"], 16)
        await rpc.call("evm_setTime", [stamp + 1])
        return cls(stamp)

    async def release(self, rpc: HttpRpc) -> None:
        """Anvil's clock back to the wall clock (never below the replay's last block)."""
        await rpc.call("evm_setTime", [max(int(time.time()), self.stamp + 1)])

    async def mine(self, rpc: HttpRpc, after: int = BLOCK_SECONDS) -> int:
        """One block of what the pool holds (by fee), `after` seconds on; its number."""
        self.stamp += after
        await rpc.call("evm_setNextBlockTimestamp", [self.stamp])
        await rpc.call("evm_mine", [])
        return int(await rpc.call("eth_blockNumber", []), 16)


class DevnetChain:
    """The devnet, mined by the replay: one block per `mine`, at the base fee the path
    says."""

    def __init__(self, keeper: Keeper, info: DevnetInfo, clock: Clock,
                 step_seconds: int = 0) -> None:
        self.rpc = keeper.chain
        self.keeper = keeper
        self.info = info
        self.clock = clock
        self.step_seconds = step_seconds  # chain time a step stands for (Maker's auctions)
        self.sender = keeper.executor.address if keeper.executor is not None else None
        if keeper.volley is not None:  # so that the same inputs give the same sends
            keeper.volley.hold_learned = True

    async def mine(self) -> int:
        return await self.clock.mine(self.rpc)

    async def post(self, step: CrashStep, trial: TrialStep | None = None) -> tuple[int, int]:
        """The step's prices, all in one block (mined here; `step_seconds` after the step
        before: the clock jumps that far first), Maker's pip and Spotter with them; with
        Perp, its vAMMs' trades to the new prices follow (its marks move only so). With
        `trial` ("after-oracle"), the keeper's reaction to the prices goes in their block
        (see the module docstring). The last block's number, and how many late waits the
        trial had."""
        if step.index:
            self.clock.stamp += self.step_seconds
        base_fee = None if step.gas_gwei is None else int(step.gas_gwei * GWEI)
        if base_fee is not None:
            await self.rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])
        late = 0
        if trial is None:
            await self._send_prices(step, tip=None)
            block = await self.mine()
        else:
            block, late = await self._after_oracle(step, base_fee, trial)
        last = await follow_step_replayed(self.rpc, self.info, step,
                                          lambda s: self.clock.mine(self.rpc, s))
        return last or block, late

    async def _send_prices(self, step: CrashStep, tip: int | None) -> list[str]:
        """The step's price transactions into the pool (`tip`: as both fee fields, wei per
        gas); their hashes."""
        fees = {} if tip is None else {"maxFeePerGas": hex(tip), "maxPriorityFeePerGas": hex(tip)}
        deployer = self.info.accounts.deployer
        hashes: list[str] = []
        for symbol, usd in step.prices.items():
            data = UPDATE_ANSWER + encode(["int256"], [to_feed_answer(usd)]).hex()
            txs: list[dict[str, Any]] = [{"from": deployer, "to": self.info.feeds[symbol],
                                          "data": data, "gas": hex(FEED_GAS)}]
            txs += [dict(tx) for tx in profiles.maker_price_txs(self.info, symbol, usd)]
            for tx in txs:
                hashes.append(str(await self.rpc.call("eth_sendTransaction", [tx | fees])))
        return hashes

    async def _after_oracle(
        self, step: CrashStep, base_fee: int | None, trial: TrialStep
    ) -> tuple[int, int]:
        """The price block mined as a trial, the keeper stepped onto it, then rebuilt with
        the keeper's transactions after the prices; its number and the trial's late waits."""
        latest = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        number = int(latest["number"], 16) + 1
        # Above any tip the keeper can pay at this base fee (and any fee cap it has): the
        # price transactions lead a block anvil orders by fee. (The next base fee is at
        # most 1.125 times the last one when the path does not set it.)
        tip = DEMO_MAX_FEE + (base_fee if base_fee is not None
                              else 2 * int(latest.get("baseFeePerGas", "0x0"), 16))
        stamp = self.clock.stamp + BLOCK_SECONDS
        trial_fee = late = 0

        async def on_trial() -> None:
            nonlocal trial_fee, late
            header = await self.rpc.call("eth_getBlockByNumber", [hex(number), False])
            trial_fee = int(header["baseFeePerGas"], 16)
            late = await trial(number)

        await self.rpc.call("evm_setNextBlockTimestamp", [stamp])
        decided = await trial_block(self.rpc, number=number, sender=self.sender,
                                    prefix=lambda: self._send_prices(step, tip), step=on_trial)
        # The rebuild: same base fee and timestamp (Clock.mine sets it), the prices, then
        # the keeper's transactions (the mining watch may have sent them again already).
        await self.rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(trial_fee)])
        prices = await self._send_prices(step, tip)
        for raw in decided:
            try:
                await self.rpc.call("eth_sendRawTransaction", [raw])
            except RpcError as exc:
                if "already" not in exc.message.lower():
                    raise
        block = await self.mine()
        await self._check_order(block, prices)
        return block, late

    async def _check_order(self, block: int, prices: list[str]) -> None:
        """Every price transaction of the rebuilt block comes before all its others (the
        keeper's)."""
        hashes = [h.lower() for h in (await self.rpc.call(
            "eth_getBlockByNumber", [hex(block), False]))["transactions"]]
        ours = {p.lower() for p in prices}
        if set(hashes[: len(ours)]) != ours:
            raise BacktestError(f"block {block}: the node did not put the step's price "
                                "transactions ahead of the keeper's")

    async def keeper_pool(self) -> int:
        """How many of the keeper's transactions wait in the pool."""
        return len(await pool_hashes(self.rpc, self.sender))

    async def caught_up(self) -> bool:
        """Until every liquidation in flight has its transaction in the pool, or has ended,
        and the simulations judging them have answered, what they taught applied
        (`Volley.settled`, `hold_learned`); False after `SETTLE_SECONDS`: the block is then
        mined without the late ones."""
        deadline = time.monotonic() + SETTLE_SECONDS
        volley = self.keeper.volley
        while self.keeper.inflight > await self.keeper_pool() or (
                volley is not None and not volley.settled):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        if volley is not None:
            volley.apply_learned()
        return True


async def prepare(
    rpc: HttpRpc, clock: Clock, info: DevnetInfo, capital_usd: Decimal | None
) -> None:
    """In one block: the liquidator allows the Aave Pool and Morpho to pull every devnet
    token (what its first liquidation of each would do: otherwise an approval mined
    mid-step would hold that step's sends behind it), and, with `capital_usd`, holds that
    much of each token (at the devnet's starting prices): the excess goes to the
    deployer, a shortfall is minted."""
    address = info.accounts.liquidator
    prices = {t.symbol: t.usd_price for t in DEFAULT_TOKENS}
    accounts, txs = profiles.replay_setup(info)  # Maker's, when the devnet has it
    for account in accounts:
        await rpc.call("anvil_impersonateAccount", [account])
        await rpc.call("anvil_setBalance", [account, hex(1000 * WAD)])
    for tx in txs:
        await rpc.call("eth_sendTransaction", [tx])
    for symbol, token in sorted(info.tokens.items()):
        for spender in (info.aave_v3.pool, info.morpho_blue.morpho):
            data = APPROVE + encode(["address", "uint256"], [spender, MAX_UINT]).hex()
            await rpc.call("eth_sendTransaction", [{"from": address, "to": token.address,
                                                    "data": data}])
        if capital_usd is None or symbol not in prices:
            continue
        keep = int(capital_usd / prices[symbol] * 10**token.decimals)
        have = int(await rpc.eth_call(
            token.address, BALANCE_OF + encode(["address"], [address]).hex()), 16)
        if have > keep:
            move = TRANSFER + encode(["address", "uint256"],
                                     [info.accounts.deployer, have - keep]).hex()
            await rpc.call("eth_sendTransaction", [{"from": address, "to": token.address,
                                                    "data": move}])
        elif have < keep:  # the devnet's tokens are mintable (Aave's MintableERC20 mock)
            mint = MINT + encode(["address", "uint256"], [address, keep - have]).hex()
            await rpc.call("eth_sendTransaction", [{"from": info.accounts.deployer,
                                                    "to": token.address, "data": mint}])
    await clock.mine(rpc)
