"""What the auction's chain says beyond the race's verdict: the bids each bot paid the
builder (transfers to `block.coinbase` inside its transactions, from call traces), and
where each oracle update landed and what followed it in its block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils.crypto import keccak

from benchmarks.race.records import Liquidation, Revert
from benchmarks.race.rpc import Rpc, RpcFault
from benchmarks.race.verdict import BotTotals, Verdict

LANE_MARK = "~"  # "keeper~2": the keeper's second nonce lane, judged as its own sender


def _base(name: str | None) -> str | None:
    return None if name is None else name.split(LANE_MARK)[0]


def merge_lanes(judged: Verdict) -> Verdict:
    """The verdict with every lane counted as its bot ("keeper~2" -> "keeper")."""
    totals: dict[str, BotTotals] = {}
    for name, t in judged.totals.items():
        into = totals.setdefault(str(_base(name)), BotTotals())
        for f in dataclasses.fields(BotTotals):
            setattr(into, f.name, getattr(into, f.name) + getattr(t, f.name))
    liquidations: list[Liquidation] = [
        dataclasses.replace(x, who=str(_base(x.who))) for x in judged.liquidations]
    reverts: list[Revert] = [
        dataclasses.replace(r, who=str(_base(r.who)), winner_who=_base(r.winner_who))
        for r in judged.reverts]
    bots = {n: a for n, a in judged.bots.items() if LANE_MARK not in n}
    return Verdict(judged.first_block, judged.last_block, bots, liquidations, reverts, totals)


@dataclass
class Bids:
    """Per bot: wei sent to the coinbase by its transactions, and in how many."""

    wei: dict[str, int] = field(default_factory=dict)
    paying: dict[str, int] = field(default_factory=dict)


def _to_coinbase(call: Mapping[str, Any], coinbase: str) -> int:
    paid = int(str(call.get("value") or "0x0"), 16) \
        if str(call.get("to", "")).lower() == coinbase else 0
    return paid + sum(_to_coinbase(c, coinbase) for c in call.get("calls") or ())


async def bot_transactions(rpc: Rpc, senders: Mapping[str, str], first: int,
                           last: int) -> dict[str, list[dict[str, Any]]]:
    """Every transaction each bot sent in blocks first..last (`senders`: address -> bot;
    a bot may sign from several addresses, its nonce lanes)."""
    senders = {a.lower(): n for a, n in senders.items()}
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in senders.values()}
    blocks = await rpc.batch([("eth_getBlockByNumber", [hex(n), True])
                              for n in range(first, last + 1)])
    for block in blocks:
        if isinstance(block, RpcFault):
            raise block
        for tx in block["transactions"]:
            who = senders.get(tx["from"].lower())
            if who is not None:
                out[who].append(tx)
    return out


async def bids(rpc: Rpc, sent: Mapping[str, Sequence[Mapping[str, Any]]],
               coinbase: str) -> Bids:
    """Direct transfers to `coinbase` inside each bot's transactions (callTracer)."""
    out = Bids()
    for who, txs in sent.items():
        traces = await rpc.batch([("debug_traceTransaction", [tx["hash"],
                                                              {"tracer": "callTracer"}])
                                  for tx in txs])
        out.wei[who], out.paying[who] = 0, 0
        for trace in traces:
            if isinstance(trace, RpcFault):
                raise trace
            paid = _to_coinbase(trace, coinbase.lower())
            out.wei[who] += paid
            out.paying[who] += paid > 0
    return out


@dataclass(frozen=True)
class Landing:
    """An oracle transaction's block and index, and the bots' transactions after it there."""

    tx_hash: str
    origin: str  # "hint" (an SVR update, private) or "pool" (a public transmit)
    block: int | None
    index: int | None
    behind: dict[str, list[int]]  # bot -> the indices of its transactions later in the block


async def landings(rpc: Rpc, oracle_txs: Sequence[tuple[str, str]],
                   sent: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Landing]:
    """Where each (oracle transaction, origin) landed, and the bots' transactions behind it."""
    receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h, _ in oracle_txs])
    out = []
    for (tx_hash, origin), receipt in zip(oracle_txs, receipts, strict=True):
        if isinstance(receipt, RpcFault) or not receipt:
            out.append(Landing(tx_hash, origin, None, None, {}))
            continue
        block, index = int(receipt["blockNumber"], 16), int(receipt["transactionIndex"], 16)
        behind = {who: sorted(int(t["transactionIndex"], 16) for t in txs
                              if int(t["blockNumber"], 16) == block
                              and int(t["transactionIndex"], 16) > index)
                  for who, txs in sent.items()}
        out.append(Landing(tx_hash, origin, block, index, behind))
    return out


EXECUTED = "0x" + keccak(text="Executed(address,uint256,uint256)").hex()
GET_ASSET_PRICE = "0xb3596f07"  # AaveOracle.getAssetPrice(address): USD, 8 decimals
DECIMALS = "0x313ce567"


async def executed_profit_usd(rpc: Rpc, sent: Mapping[str, Sequence[Mapping[str, Any]]],
                              oracle: str) -> dict[str, float]:
    """Per bot: the profit its flash executor paid its owner (`Executed(profitToken,
    profit, n)`, after the bid), valued at the Aave oracle's price of the block before."""
    out: dict[str, float] = {}
    decimals: dict[str, int] = {}
    for who, txs in sent.items():
        receipts = await rpc.batch([("eth_getTransactionReceipt", [tx["hash"]]) for tx in txs])
        total = 0.0
        for receipt in receipts:
            if isinstance(receipt, RpcFault):
                raise receipt
            block = hex(int(receipt["blockNumber"], 16) - 1)
            for log in receipt["logs"]:
                if not log["topics"] or log["topics"][0] != EXECUTED:
                    continue
                token = "0x" + log["topics"][1][-40:]
                profit = int(log["data"][2:66], 16)
                if token not in decimals:
                    decimals[token] = int(await rpc.call("eth_call", [
                        {"to": token, "data": DECIMALS}, "latest"]), 16)
                price = int(await rpc.call("eth_call", [
                    {"to": oracle, "data": GET_ASSET_PRICE + token[2:].rjust(64, "0")},
                    block]), 16)
                total += profit / 10**decimals[token] * price / 10**8
        out[who] = total
    return out
