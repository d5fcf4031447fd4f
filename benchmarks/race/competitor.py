"""The competitor: a liquidation bot of the common open-source peer design, for the race.

Not part of the product. What it does, as most open-source liquidators do:

* it learns its borrowers from the Aave Pool's and Morpho Blue's `Borrow` logs (all of
  them at start, then each new block's);
* it polls the head every `poll_interval` (100 ms) over HTTP with
  `eth_getBlockByNumber("latest")`, or, in the WebSocket variant, takes `newHeads` pushed
  over a socket; each new head is one round (heads that arrive during a round are folded:
  the newest wins);
* each round: one JSON-RPC batch of `getUserAccountData` for every Aave borrower and of
  `position` for every Morpho borrower (with each market's state and oracle price);
* for every Aave account with HF < 1, one more batch reads its reserves (the Pool's
  `getUserConfiguration`, aToken and debt-token `balanceOf`, the oracle's `getAssetPrice`)
  and it liquidates its largest debt against its largest collateral at the close factor
  (50 %, all of it below HF 0.95: Aave v3.0), capped by the debt tokens it holds;
* for every Morpho position over its LLTV it liquidates the whole position: all borrow
  shares when the collateral covers them with the market's incentive, else all collateral;
* each liquidation is simulated with `eth_estimateGas` (+25 %), signed locally
  (eth_account) as an EIP-1559 transaction with max fee 2 x base fee + tip and a fixed tip
  (1 gwei), sent raw, one after another; an account with its own transaction in flight
  (sent, no receipt yet) is skipped.

It runs as its own process (`python -m benchmarks.race.competitor CONFIG.json`), so on a
2-core machine it competes with the keeper for the CPU as a separate bot would, and prints
one JSON line `{"ready": ...}` once it knows its borrowers; on SIGTERM or SIGINT it
finishes the round, writes its send log (`CONFIG.json`'s `report` path) and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from websockets.asyncio.client import connect

from benchmarks.race import abi
from benchmarks.race.plans import Market, Plan, Reserve, aave_plan, morpho_plan
from benchmarks.race.rpc import Rpc, RpcFault

GWEI = 10**9
GAS_MARGIN_PERCENT = 125


@dataclass(frozen=True)
class CompetitorConfig:
    """Where to find the protocols, how to sign, and the variant's knobs."""

    rpc_url: str
    key: str
    pool: str
    oracle: str
    morpho: str | None = None
    ws_url: str | None = None
    ws: bool = False  # heads over the WebSocket instead of polling
    poll_interval: float = 0.1
    tip: int = GWEI
    report: str | None = None  # where to write the send log on exit

    @classmethod
    def read(cls, path: Path) -> CompetitorConfig:
        return cls(**json.loads(path.read_text()))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


@dataclass
class Send:
    """One transaction the competitor sent (times are wall-clock seconds)."""

    tx_hash: str
    account: str
    block_seen: int
    seen_at: float  # the round's head was first seen
    sent_at: float  # eth_sendRawTransaction answered
    nonce: int


@dataclass
class Report:
    """What the competitor did, for the harness's timing table (the verdict reads the chain)."""

    address: str
    rounds: int = 0
    sends: list[Send] = field(default_factory=list)
    skipped_in_flight: int = 0
    simulation_reverts: dict[str, int] = field(default_factory=dict)
    send_errors: dict[str, int] = field(default_factory=dict)
    round_ms: list[float] = field(default_factory=list)


class Competitor:
    """The peer bot; `start` learns the protocols and borrowers, `run` follows the chain."""

    def __init__(self, rpc: Rpc, config: CompetitorConfig) -> None:
        self.rpc = rpc
        self.config = config
        self.account: LocalAccount = Account.from_key(config.key)
        self.address = self.account.address.lower()
        self.report = Report(self.address)
        self.reserves: list[Reserve] = []
        self.decimals: dict[str, int] = {}
        self.markets: dict[str, Market] = {}
        self.aave_borrowers: list[str] = []
        self.morpho_borrowers: list[tuple[str, str]] = []  # (market id, borrower)
        self._known: set[str] = set()
        self.inflight: dict[str, str] = {}  # account key -> tx hash
        self._spent: dict[str, int] = {}  # token -> planned to be paid this round
        self.chain_id = 0
        self.nonce = 0
        self.logs_to = 0  # Borrow logs read up to this block

    async def start(self) -> int:
        """Reserves, markets, every borrower so far, the nonce; returns the head."""
        head = int(await self.rpc.call("eth_blockNumber"), 16)
        self.chain_id = int(await self.rpc.call("eth_chainId"), 16)
        self.nonce = int(await self.rpc.call(
            "eth_getTransactionCount", [self.address, "pending"]), 16)
        listed = abi.words(await self.rpc.eth_call(
            self.config.pool, abi.calldata(abi.GET_RESERVES_LIST)))
        assets = [abi.address_word(w) for w in listed[2:2 + listed[1]]]
        answers = await self.rpc.batch(
            [("eth_call", [{"to": self.config.pool,
                            "data": abi.calldata(abi.GET_RESERVE_DATA, a)}, "latest"])
             for a in assets]
            + [("eth_call", [{"to": a, "data": abi.calldata(abi.DECIMALS)}, "latest"])
               for a in assets])
        for asset, data in zip(assets, answers[: len(assets)], strict=True):
            w = abi.words(data)
            self.reserves.append(Reserve(
                asset, w[abi.RESERVE_ID], abi.address_word(w[abi.RESERVE_ATOKEN]),
                abi.address_word(w[abi.RESERVE_STABLE_DEBT]),
                abi.address_word(w[abi.RESERVE_VARIABLE_DEBT])))
        for asset, data in zip(assets, answers[len(assets):], strict=True):
            self.decimals[asset] = abi.words(data)[0]
        await self._learn(0, head)
        return head

    async def _learn(self, first: int, last: int) -> None:
        """Borrowers from the Borrow logs of blocks first..last."""
        if last < first:
            return
        filters: list[tuple[str, list[Any]]] = [("eth_getLogs", [{
            "fromBlock": hex(first), "toBlock": hex(last), "address": self.config.pool,
            "topics": [abi.AAVE_BORROW]}])]
        if self.config.morpho:
            filters.append(("eth_getLogs", [{
                "fromBlock": hex(first), "toBlock": hex(last), "address": self.config.morpho,
                "topics": [abi.MORPHO_BORROW]}]))
        answers = await self.rpc.batch(filters)
        for answer in answers:
            if isinstance(answer, RpcFault):
                raise answer
        for log in answers[0]:
            user = abi.topic_address(log["topics"][2])  # onBehalfOf
            if user not in self._known:
                self._known.add(user)
                self.aave_borrowers.append(user)
        for log in answers[1] if len(answers) > 1 else []:
            market, borrower = log["topics"][1], abi.topic_address(log["topics"][2])
            if market not in self.markets:
                await self._market(market)
            key = f"{market}:{borrower}"
            if key not in self._known:
                self._known.add(key)
                self.morpho_borrowers.append((market, borrower))
        self.logs_to = last

    async def _market(self, market_id: str) -> None:
        assert self.config.morpho is not None
        query = abi.calldata(abi.MORPHO_ID_TO_PARAMS, bytes.fromhex(market_id[2:]))
        w = abi.words(await self.rpc.eth_call(self.config.morpho, query))
        loan, collateral, oracle, irm = (abi.address_word(x) for x in w[:4])
        self.markets[market_id] = Market(market_id, loan, collateral, oracle, irm, w[4])

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        heads: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        source = self._subscribe(heads, stop) if self.config.ws else self._poll(heads, stop)
        feeder = asyncio.create_task(source)
        try:
            last = -1
            while not stop.is_set():
                getter = asyncio.create_task(heads.get())
                halt = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait({getter, halt}, return_when=asyncio.FIRST_COMPLETED)
                halt.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                head = getter.result()
                while not heads.empty():  # the newest head wins
                    head = heads.get_nowait()
                number = int(head["number"], 16)
                if number <= last:
                    continue
                last = number
                await self.round(number, int(head.get("baseFeePerGas", "0x0"), 16),
                                 float(head["_seen"]))
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    async def _poll(self, heads: asyncio.Queue[dict[str, Any]], stop: asyncio.Event) -> None:
        last = -1
        while not stop.is_set():
            try:
                block = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
            except (RpcFault, OSError) as exc:
                print(json.dumps({"poll_error": str(exc)}), file=sys.stderr)
                block = None
            if block is not None and int(block["number"], 16) > last:
                last = int(block["number"], 16)
                block["_seen"] = time.time()
                heads.put_nowait(block)
            await asyncio.sleep(self.config.poll_interval)

    async def _subscribe(self, heads: asyncio.Queue[dict[str, Any]], stop: asyncio.Event) -> None:
        assert self.config.ws_url is not None, "the WebSocket variant needs ws_url"
        async with connect(self.config.ws_url, max_size=None) as socket:
            await socket.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                          "params": ["newHeads"]}))
            while not stop.is_set():
                message = json.loads(await socket.recv())
                result = message.get("params", {}).get("result")
                if isinstance(result, dict) and "number" in result:
                    result["_seen"] = time.time()
                    heads.put_nowait(result)

    async def round(self, number: int, base_fee: int, seen_at: float) -> None:
        """One new head: learn new borrowers, settle receipts, find and send liquidations."""
        started = time.perf_counter()
        self.report.rounds += 1
        self._spent = {}
        await self._learn(self.logs_to + 1, number)
        await self._settle()
        plans = await self._aave_plans() + await self._morpho_plans()
        for plan in plans:
            if plan.account in self.inflight:
                self.report.skipped_in_flight += 1
                continue
            await self._send(plan, number, base_fee, seen_at)
        self.report.round_ms.append((time.perf_counter() - started) * 1000)

    async def _settle(self) -> None:
        if not self.inflight:
            return
        keys = list(self.inflight)
        receipts = await self.rpc.batch(
            [("eth_getTransactionReceipt", [self.inflight[k]]) for k in keys])
        for key, receipt in zip(keys, receipts, strict=True):
            if isinstance(receipt, dict):
                del self.inflight[key]

    # ------------------------------------------------------------------ Aave V3

    async def _aave_plans(self) -> list[Plan]:
        pool = self.config.pool
        answers = await self.rpc.batch(
            [("eth_call", [{"to": pool, "data": abi.calldata(abi.GET_USER_ACCOUNT_DATA, u)},
                           "latest"]) for u in self.aave_borrowers])
        unhealthy = []
        for user, data in zip(self.aave_borrowers, answers, strict=True):
            if isinstance(data, RpcFault):
                continue
            w = abi.words(data)
            if w[1] > 0 and w[5] < abi.WAD:
                unhealthy.append((user, w[5]))
        if not unhealthy:
            return []
        oracle = self.config.oracle
        shared: list[tuple[str, list[Any]]] = [
            ("eth_call", [{"to": oracle, "data": abi.calldata(abi.GET_ASSET_PRICE, r.asset)},
                          "latest"]) for r in self.reserves]
        shared += [("eth_call", [{"to": r.asset, "data": abi.calldata(abi.BALANCE_OF,
                                                                       self.address)}, "latest"])
                   for r in self.reserves]
        per_user: list[tuple[str, list[Any]]] = []
        for user, _hf in unhealthy:
            per_user.append(("eth_call", [{"to": pool, "data": abi.calldata(
                abi.GET_USER_CONFIGURATION, user)}, "latest"]))
            for r in self.reserves:
                for token in (r.a_token, r.variable_debt, r.stable_debt):
                    per_user.append(("eth_call", [{"to": token, "data": abi.calldata(
                        abi.BALANCE_OF, user)}, "latest"]))
        answers = await self.rpc.batch(shared + per_user)
        if any(isinstance(a, RpcFault) for a in answers):
            return []
        n = len(self.reserves)
        prices = [abi.words(a)[0] for a in answers[:n]]
        mine = [abi.words(a)[0] for a in answers[n: 2 * n]]
        plans = []
        stride = 1 + 3 * n
        for k, (user, hf) in enumerate(unhealthy):
            chunk = answers[2 * n + k * stride: 2 * n + (k + 1) * stride]
            plan = aave_plan(self.config.pool, self.reserves, self.decimals, (user, hf), chunk,
                             quotes=(prices, mine), spent=self._spent)
            if plan is not None:
                plans.append(plan)
        return plans

    # ------------------------------------------------------------------ Morpho Blue

    async def _morpho_plans(self) -> list[Plan]:
        morpho = self.config.morpho
        if morpho is None or not self.morpho_borrowers:
            return []
        ids = list(self.markets)
        calls: list[tuple[str, list[Any]]] = []
        for market_id in ids:
            market = self.markets[market_id]
            raw_id = bytes.fromhex(market_id[2:])
            calls.append(("eth_call", [{"to": morpho, "data": abi.calldata(
                abi.MORPHO_MARKET, raw_id)}, "latest"]))
            calls.append(("eth_call", [{"to": market.oracle, "data": abi.calldata(
                abi.ORACLE_PRICE)}, "latest"]))
            calls.append(("eth_call", [{"to": market.loan, "data": abi.calldata(
                abi.BALANCE_OF, self.address)}, "latest"]))
        for market_id, borrower in self.morpho_borrowers:
            calls.append(("eth_call", [{"to": morpho, "data": abi.calldata(
                abi.MORPHO_POSITION, bytes.fromhex(market_id[2:]), borrower)}, "latest"]))
        answers = await self.rpc.batch(calls)
        if any(isinstance(a, RpcFault) for a in answers):
            return []
        state = {market_id: (abi.words(answers[3 * i]), abi.words(answers[3 * i + 1])[0],
                             abi.words(answers[3 * i + 2])[0]) for i, market_id in enumerate(ids)}
        plans = []
        for (market_id, borrower), data in zip(self.morpho_borrowers, answers[3 * len(ids):],
                                               strict=True):
            _supply, shares, collateral = abi.words(data)
            if shares == 0:
                continue
            plan = morpho_plan(morpho, self.markets[market_id], borrower, (shares, collateral),
                               state[market_id], spent=self._spent)
            if plan is not None:
                plans.append(plan)
        return plans

    # ------------------------------------------------------------------ sending

    async def _send(self, plan: Plan, block: int, base_fee: int, seen_at: float) -> None:
        call = {"from": self.address, "to": plan.to, "data": plan.data}
        try:
            gas = int(await self.rpc.call("eth_estimateGas", [call]), 16)
        except RpcFault as exc:
            reason = abi.revert_reason(exc.data if isinstance(exc.data, str) else None,
                                       exc.message)
            self.report.simulation_reverts[reason] = \
                self.report.simulation_reverts.get(reason, 0) + 1
            return
        tip = self.config.tip
        tx: dict[str, Any] = {
            "chainId": self.chain_id, "nonce": self.nonce, "to": plan.to, "data": plan.data,
            "value": 0, "gas": gas * GAS_MARGIN_PERCENT // 100, "type": 2,
            "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base_fee + tip}
        signed = self.account.sign_transaction(tx)
        try:
            tx_hash = await self.rpc.call(
                "eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        except RpcFault as exc:
            self.report.send_errors[exc.message[:80]] = \
                self.report.send_errors.get(exc.message[:80], 0) + 1
            if "nonce" in exc.message.lower():
                self.nonce = int(await self.rpc.call(
                    "eth_getTransactionCount", [self.address, "pending"]), 16)
            return
        self.report.sends.append(Send(str(tx_hash), plan.account, block, seen_at, time.time(),
                                      self.nonce))
        self.nonce += 1
        self.inflight[plan.account] = str(tx_hash)


async def _main(config: CompetitorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    rpc = await Rpc.open(config.rpc_url)
    try:
        bot = Competitor(rpc, config)
        head = await bot.start()
        print(json.dumps({"ready": head, "address": bot.address,
                          "aave_borrowers": len(bot.aave_borrowers),
                          "morpho_borrowers": len(bot.morpho_borrowers)}), flush=True)
        try:
            await bot.run(stop)
        finally:
            if config.report:
                Path(config.report).write_text(json.dumps(asdict(bot.report)))
    finally:
        await rpc.aclose()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.race.competitor CONFIG.json")
    asyncio.run(_main(CompetitorConfig.read(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
