"""The race's verdict, from the chain alone.

Between the crash's first block and the end, it reads every block's transactions and the
receipts of the two bots' ones, the Aave Pool's `LiquidationCall` and Morpho Blue's
`Liquidate` logs, and decides:

* per liquidated account (an Aave user, or a Morpho market and borrower), who liquidated
  it first: the keeper, the competitor or someone else, by the sender of the transaction
  that emitted the log (with the flash executor the log's liquidator is the contract; the
  sender is still the keeper);
* the bonus each liquidation took: collateral seized minus debt repaid, both valued at the
  Aave oracle's prices it executed at, in USD: the oracle read with an `eth_call` pinned to
  the parent block, unless the token's feed posted a new answer earlier in the liquidation's
  own block (then that answer: with interval mining a block holds price posts and
  liquidations, and a bid can put a liquidation before the post; the block's closing price
  would value it at a price it did not see);
* the gas each bot spent (all its transactions in the window, reverted ones included), and
  its fees in USD at WETH's oracle price of each transaction's block;
* every reverted transaction of either bot with its cause (reverts.py): `lost` when
  someone else's earlier liquidation of the same account made it fail (an earlier
  transaction of the same block or of an earlier block, named), `self` when the bot's own
  did, `market` when a price post in between did (the price rose back before it was
  mined), else `revert` with the decoded reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.race import abi
from benchmarks.race.records import Liquidation, Revert
from benchmarks.race.reverts import PricePost, classify
from benchmarks.race.rpc import Rpc, RpcFault

USD = 10**8  # the Aave oracle's base currency unit (and the feeds' answers)
ANSWER_UPDATED = abi.topic("AnswerUpdated(int256,uint256,uint256)")
CHUNK = 200  # blocks per batch


@dataclass
class BotTotals:
    """One bot's transactions in the window."""

    transactions: int = 0
    reverted: int = 0
    gas_used: int = 0
    fees_wei: int = 0
    fees_usd: float = 0.0  # each transaction's fee at WETH's oracle price of its block
    liquidations: int = 0
    first: int = 0
    bonus_usd: float = 0.0
    repaid_usd: float = 0.0


@dataclass
class Verdict:
    """Who won what, from the chain."""

    first_block: int
    last_block: int
    bots: dict[str, str]  # name -> address
    liquidations: list[Liquidation] = field(default_factory=list)
    reverts: list[Revert] = field(default_factory=list)
    totals: dict[str, BotTotals] = field(default_factory=dict)

    def firsts(self) -> dict[str, Liquidation]:
        """Each liquidated account's first liquidation."""
        out: dict[str, Liquidation] = {}
        for liquidation in sorted(self.liquidations, key=lambda x: x.position):
            out.setdefault(liquidation.account, liquidation)
        return out

    @property
    def accounts(self) -> int:
        return len(self.firsts())

    @property
    def bonus_total(self) -> float:
        return sum(x.bonus_usd for x in self.liquidations)

    def win_rate(self, who: str) -> float:
        firsts = self.firsts()
        return sum(x.who == who for x in firsts.values()) / len(firsts) if firsts else 0.0

    def capture(self, who: str) -> float:
        total = self.bonus_total
        mine = sum(x.bonus_usd for x in self.liquidations if x.who == who)
        return mine / total if total else 0.0

    def causes(self, who: str) -> Counter[str]:
        return Counter(r.cause for r in self.reverts if r.who == who)

    def as_json(self) -> dict[str, Any]:
        names = [*self.bots, "other"]
        return {
            "first_block": self.first_block, "last_block": self.last_block, "bots": self.bots,
            "accounts": self.accounts, "bonus_total_usd": round(self.bonus_total, 2),
            "win_rate": {n: round(self.win_rate(n), 4) for n in names},
            "capture": {n: round(self.capture(n), 4) for n in names},
            "totals": {n: asdict(t) for n, t in self.totals.items()},
            "revert_causes": {n: dict(self.causes(n)) for n in self.bots},
            "liquidations": [asdict(x) for x in self.liquidations],
            "reverts": [asdict(r) for r in self.reverts],
        }

    def lines(self) -> list[str]:
        """The verdict as a few printed lines."""
        out = [f"blocks {self.first_block}..{self.last_block}: {self.accounts} accounts "
               f"liquidated, {len(self.liquidations)} liquidations, bonus taken "
               f"${self.bonus_total:,.0f}"]
        for name in [*self.bots, "other"]:
            t = self.totals.get(name, BotTotals())
            line = (f"  {name:<10} first liquidation {self.win_rate(name):6.1%} "
                    f"({t.first}/{self.accounts})  bonus share {self.capture(name):6.1%} "
                    f"(${t.bonus_usd:,.0f} on ${t.repaid_usd:,.0f} repaid)")
            if name in self.bots:
                causes = ", ".join(f"{c} {n}" for c, n in sorted(self.causes(name).items()))
                line += (f"  txs {t.transactions}, reverted {t.reverted}"
                         f"{' (' + causes + ')' if causes else ''}, gas {t.gas_used:,} "
                         f"({t.fees_wei / 10**18:.3f} ETH, ${t.fees_usd:,.0f})")
            out.append(line)
        return out


@dataclass(frozen=True)
class Contracts:
    """Where the liquidations happen and where the prices come from."""

    pool: str
    morpho: str | None
    oracle: str
    native: str | None = None  # the wrapped native token, to value fees (WETH)
    feeds: Mapping[str, str] = field(default_factory=dict)  # token -> its oracle's price feed


async def verdict(rpc: Rpc, contracts: Contracts, bots: Mapping[str, str], first: int,
                  last: int) -> Verdict:
    """The verdict of blocks first..last for `bots` (name -> sending address)."""
    by_address = {a.lower(): n for n, a in bots.items()}
    result = Verdict(first, last, {n: a.lower() for n, a in bots.items()},
                     totals={n: BotTotals() for n in [*bots, "other"]})
    senders = await _transactions(rpc, contracts, by_address, result)
    logs = await _logs(rpc, contracts, first, last)
    result.liquidations = await _liquidations(rpc, contracts, logs, senders, by_address)
    for liquidation in result.liquidations:
        totals = result.totals[liquidation.who]
        totals.liquidations += 1
        totals.bonus_usd += liquidation.bonus_usd
        totals.repaid_usd += liquidation.repaid_usd
    for liquidation in result.firsts().values():
        result.totals[liquidation.who].first += 1
    posts = await _price_posts(rpc, contracts, first, last) if result.reverts else []
    result.reverts = await classify(rpc, contracts, result.reverts, result.liquidations, posts)
    return result


# (block, tx index) of every transaction, with its sender; the bots' receipts tallied.
_Senders = dict[str, tuple[str, int, int]]


async def _transactions(rpc: Rpc, contracts: Contracts, bots: Mapping[str, str],
                        result: Verdict) -> _Senders:
    first, last = result.first_block, result.last_block
    senders: _Senders = {}
    ours: list[tuple[str, str]] = []
    for start in range(first, last + 1, CHUNK):
        blocks = await rpc.batch([("eth_getBlockByNumber", [hex(n), True])
                                  for n in range(start, min(last, start + CHUNK - 1) + 1)])
        for block in blocks:
            if isinstance(block, RpcFault):
                raise block
            for tx in block["transactions"]:
                sender = tx["from"].lower()
                senders[tx["hash"]] = (sender, int(tx["blockNumber"], 16),
                                       int(tx["transactionIndex"], 16))
                if sender in bots:
                    ours.append((bots[sender], tx["hash"]))
    receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for _, h in ours])
    native: dict[tuple[int, str], int] = {}
    if contracts.native is not None:
        native = await _prices(rpc, contracts.oracle, {(senders[h][1], contracts.native)
                                                       for _, h in ours})
    for (name, tx_hash), receipt in zip(ours, receipts, strict=True):
        if isinstance(receipt, RpcFault):
            raise receipt
        totals = result.totals[name]
        totals.transactions += 1
        gas = int(receipt["gasUsed"], 16)
        fee = gas * int(receipt["effectiveGasPrice"], 16)
        totals.gas_used += gas
        totals.fees_wei += fee
        if contracts.native is not None:
            totals.fees_usd += fee / 10**18 * native[(senders[tx_hash][1], contracts.native)] / USD
        if int(receipt["status"], 16) != 1:
            totals.reverted += 1
            _sender, block, index = senders[tx_hash]
            result.reverts.append(Revert(name, tx_hash, block, index, (), "", "revert"))
    return senders


async def _price_posts(rpc: Rpc, contracts: Contracts, first: int, last: int) -> list[PricePost]:
    """Every `AnswerUpdated` of the oracle's feeds in the window (a revert a price move
    explains is `market`)."""
    if not contracts.feeds:
        return []
    logs = await rpc.call("eth_getLogs", [{
        "fromBlock": hex(first), "toBlock": hex(last),
        "address": sorted({f.lower() for f in contracts.feeds.values()}),
        "topics": [ANSWER_UPDATED]}])
    return [PricePost(int(x["blockNumber"], 16), int(x["transactionIndex"], 16),
                      str(x["transactionHash"])) for x in logs]


async def _logs(rpc: Rpc, contracts: Contracts, first: int, last: int) -> list[dict[str, Any]]:
    filters: list[tuple[str, list[Any]]] = [("eth_getLogs", [{
        "fromBlock": hex(first), "toBlock": hex(last), "address": contracts.pool,
        "topics": [abi.LIQUIDATION_CALL_EVENT]}])]
    if contracts.morpho:
        filters.append(("eth_getLogs", [{
            "fromBlock": hex(first), "toBlock": hex(last), "address": contracts.morpho,
            "topics": [abi.MORPHO_LIQUIDATE_EVENT]}]))
    out: list[dict[str, Any]] = []
    for answer in await rpc.batch(filters):
        if isinstance(answer, RpcFault):
            raise answer
        out += answer
    return sorted(out, key=lambda x: (int(x["blockNumber"], 16), int(x["logIndex"], 16)))


async def _liquidations(rpc: Rpc, contracts: Contracts, logs: Sequence[dict[str, Any]],
                        senders: _Senders, bots: Mapping[str, str]) -> list[Liquidation]:
    markets = await _markets(rpc, contracts, logs)
    rows = []
    for log in logs:
        block = int(log["blockNumber"], 16)
        words = abi.words(log["data"])
        if log["address"].lower() == contracts.pool.lower():
            collateral, debt = (abi.topic_address(t) for t in log["topics"][1:3])
            account = abi.topic_address(log["topics"][3])
            repaid, seized, protocol = words[0], words[1], "aave_v3"
        else:
            market = log["topics"][1]
            debt, collateral = markets[market]
            account = f"{market}:{abi.topic_address(log['topics'][3])}"
            repaid, seized, protocol = words[0], words[2], "morpho_blue"
        sender, _block, index = senders[log["transactionHash"]]
        rows.append((protocol, account, block, index, log["transactionHash"], sender,
                     collateral, debt, repaid, seized))
    prices = await _executed_prices(rpc, contracts,
                                    {(r[2], r[3], t) for r in rows for t in (r[6], r[7])})
    decimals = await _decimals(rpc, {t for r in rows for t in (r[6], r[7])})
    out = []
    for protocol, account, block, index, tx_hash, sender, coll, debt, repaid, seized in rows:
        paid = repaid * prices[(block, index, debt)] / 10 ** decimals[debt] / USD
        value = seized * prices[(block, index, coll)] / 10 ** decimals[coll] / USD - paid
        out.append(Liquidation(protocol, account, block, index, tx_hash, sender,
                               bots.get(sender, "other"), coll, debt, repaid, seized, value,
                               paid))
    return out


async def _markets(rpc: Rpc, contracts: Contracts,
                   logs: Sequence[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Morpho market id -> (loan token, collateral token)."""
    ids = sorted({x["topics"][1] for x in logs if x["address"].lower() != contracts.pool.lower()})
    if not ids or contracts.morpho is None:
        return {}
    morpho = contracts.morpho
    answers = await rpc.batch([("eth_call", [{"to": morpho, "data": abi.calldata(
        abi.MORPHO_ID_TO_PARAMS, bytes.fromhex(i[2:]))}, "latest"]) for i in ids])
    out = {}
    for market, answer in zip(ids, answers, strict=True):
        if isinstance(answer, RpcFault):
            raise answer
        w = abi.words(answer)
        out[market] = (abi.address_word(w[0]), abi.address_word(w[1]))
    return out


async def _executed_prices(
    rpc: Rpc, contracts: Contracts, wanted: set[tuple[int, int, str]]
) -> dict[tuple[int, int, str], int]:
    """The oracle price each (block, tx index, token) executed at: the price at the end of
    the parent block, unless the token's feed posted earlier in the same block (a block of
    interval mining holds price posts and liquidations, in fee order)."""
    parents = await _prices(rpc, contracts.oracle, {(b - 1, t) for b, _, t in wanted})
    feeds = {f.lower(): t.lower() for t, f in contracts.feeds.items()}
    posts: dict[tuple[int, str], list[tuple[int, int]]] = {}  # (block, token) -> [(index, answer)]
    if feeds and wanted:
        blocks = sorted({b for b, _, _ in wanted})
        logs = await rpc.call("eth_getLogs", [{
            "fromBlock": hex(blocks[0]), "toBlock": hex(blocks[-1]), "address": list(feeds),
            "topics": [ANSWER_UPDATED]}])
        for log in logs:
            key = (int(log["blockNumber"], 16), feeds[log["address"].lower()])
            posts.setdefault(key, []).append((int(log["transactionIndex"], 16),
                                              int(log["topics"][1], 16)))
    out = {}
    for block, index, token in wanted:
        earlier = [answer for i, answer in posts.get((block, token), []) if i < index]
        out[(block, index, token)] = earlier[-1] if earlier else parents[(block - 1, token)]
    return out


async def _prices(
    rpc: Rpc, oracle: str, wanted: set[tuple[int, str]]
) -> dict[tuple[int, str], int]:
    keys = sorted(wanted)
    answers = await rpc.batch([("eth_call", [{"to": oracle, "data": abi.calldata(
        abi.GET_ASSET_PRICE, token)}, hex(block)]) for block, token in keys])
    out = {}
    for key, answer in zip(keys, answers, strict=True):
        if isinstance(answer, RpcFault):
            raise answer
        out[key] = abi.words(answer)[0]
    return out


async def _decimals(rpc: Rpc, tokens: set[str]) -> dict[str, int]:
    keys = sorted(tokens)
    answers = await rpc.batch([("eth_call", [{"to": t, "data": abi.calldata(abi.DECIMALS)},
                                             "latest"]) for t in keys])
    return {t: abi.words(a)[0] for t, a in zip(keys, answers, strict=True)
            if not isinstance(a, RpcFault)}
