"""The history a replay follows: historical blocks, read from an archive node or from a tape.

A `HistoricalBlock` holds what the replay needs to rebuild one block on a fork (its header
fields and its original signed raw transactions, in order) and what it needs to judge the
rebuilt block (the receipts root, each transaction's status, gas and logs, and a balance
fingerprint of the accounts the block touched). `ArchiveHistory` reads them from a node;
`keeper.backtest.tape.TapeHistory` from a recorded file. Both answer the same `History`
protocol, so the replay cannot tell them apart.

The liquidation decoders below know the two protocols' events by their ABI signatures only
(keeper/ never imports strategies/).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import rlp  # type: ignore[import-untyped]  # pyrlp ships no type information
from eth_abi.abi import decode, encode
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from keeper.chain.http import HttpRpc, RpcError
from keeper.errors import FatalError

ZERO_ADDRESS = "0x" + "00" * 20
BALANCE_OF = "0x70a08231"


class BacktestError(FatalError):
    """Bad backtest input: a block range, a source or a tape that cannot be replayed."""


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


TRANSFER = topic("Transfer(address,address,uint256)")
AAVE_LIQUIDATION_CALL = topic(
    "LiquidationCall(address,address,address,uint256,uint256,address,bool)")
MORPHO_LIQUIDATE = topic(
    "Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)")
ID_TO_MARKET_PARAMS = "0x" + keccak(text="idToMarketParams(bytes32)").hex()[:8]


@dataclass(frozen=True)
class TxRecord:
    """One historical transaction: its hash, signed bytes, sender, target and receipt."""

    hash: str
    raw: str
    sender: str
    to: str | None
    status: int
    gas_used: int
    gas_price: int  # effective
    logs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class HistoricalBlock:
    """One block as it happened, and the fingerprint of the state it left."""

    number: int
    hash: str
    timestamp: int
    base_fee: int
    gas_limit: int
    coinbase: str
    receipts_root: str
    state_root: str
    txs: tuple[TxRecord, ...]
    # "balance:<addr>", "nonce:<addr>", "erc20:<token>:<holder>" -> 0x-hex, after the block
    fingerprint: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoricalBlock:
        txs = tuple(TxRecord(**{**t, "logs": tuple(t["logs"])}) for t in data["txs"])
        return cls(**{**data, "txs": txs, "fingerprint": dict(data["fingerprint"])})


class History(Protocol):
    """Where the replay gets its blocks."""

    chain_id: int

    async def block(self, number: int) -> HistoricalBlock: ...

    async def aclose(self) -> None: ...


def fingerprint_calls(
    number: int, coinbase: str, txs: Sequence[TxRecord]
) -> list[tuple[str, str, list[Any]]]:
    """(key, method, params) of the state reads that fingerprint block `number`: the native
    balance and nonce of every sender, target and the coinbase, and the ERC-20 balance of
    every party to a Transfer log. Pinned to `number`, so source and fork answer alike."""
    tag = hex(number)
    accounts = {coinbase.lower()}
    holdings: set[tuple[str, str]] = set()
    for tx in txs:
        accounts.add(tx.sender.lower())
        if tx.to:
            accounts.add(tx.to.lower())
        for entry in tx.logs:
            topics = entry["topics"]
            if len(topics) == 3 and topics[0].lower() == TRANSFER:
                for word in topics[1:]:
                    holder = "0x" + word[-40:].lower()
                    if holder != ZERO_ADDRESS:
                        holdings.add((entry["address"].lower(), holder))
    calls: list[tuple[str, str, list[Any]]] = []
    for account in sorted(accounts):
        calls.append((f"balance:{account}", "eth_getBalance", [account, tag]))
        calls.append((f"nonce:{account}", "eth_getTransactionCount", [account, tag]))
    for token, holder in sorted(holdings):
        data = BALANCE_OF + encode(["address"], [holder]).hex()
        calls.append((f"erc20:{token}:{holder}", "eth_call", [{"to": token, "data": data}, tag]))
    return calls


def normalized(calls: Sequence[tuple[str, str, list[Any]]], answers: Sequence[Any]
               ) -> dict[str, str]:
    """The fingerprint from the answers to `fingerprint_calls`; ints in hex, as nodes differ
    in the leading zeros of eth_call words."""
    return {key: hex(int(str(a), 16)) for (key, _m, _p), a in zip(calls, answers, strict=True)}


async def read_fingerprint(
    rpc: HttpRpc, number: int, coinbase: str, txs: Sequence[TxRecord]
) -> dict[str, str]:
    calls = fingerprint_calls(number, coinbase, txs)
    return normalized(calls, await rpc.batch([(m, p) for _key, m, p in calls]))


def signed_raw(tx: Mapping[str, Any]) -> str:
    """The signed bytes of a transaction rebuilt from its JSON fields and signature (types 0,
    1 and 2), for nodes without `eth_getRawTransactionByHash`; checked against its hash."""
    kind = int(tx.get("type", "0x0"), 16)

    def num(key: str) -> int:
        return int(tx[key], 16)

    data = str(tx["input"])
    if kind == 0:
        to = bytes.fromhex(str(tx["to"])[2:]) if tx.get("to") else b""
        raw = rlp.encode([num("nonce"), num("gasPrice"), num("gas"), to, num("value"),
                          bytes.fromhex(data[2:]), num("v"), num("r"), num("s")])
    elif kind in (1, 2):
        fields: dict[str, Any] = {
            "type": kind, "chainId": num("chainId"), "nonce": num("nonce"), "gas": num("gas"),
            "value": num("value"), "data": data, "accessList": tx.get("accessList") or [],
            "v": int(tx.get("yParity", tx["v"]), 16), "r": num("r"), "s": num("s"),
        }
        if tx.get("to"):
            fields["to"] = to_checksum_address(str(tx["to"]))
        if kind == 1:
            fields["gasPrice"] = num("gasPrice")
        else:
            fields["maxFeePerGas"] = num("maxFeePerGas")
            fields["maxPriorityFeePerGas"] = num("maxPriorityFeePerGas")
        raw = TypedTransaction.from_dict(fields).encode()
    else:
        raise BacktestError(f"transaction {tx['hash']}: type {kind} cannot be rebuilt; the "
                            "node must serve eth_getRawTransactionByHash")
    if "0x" + keccak(raw).hex() != str(tx["hash"]).lower():
        raise BacktestError(f"transaction {tx['hash']}: rebuilt bytes do not match its hash")
    return "0x" + bytes(raw).hex()


async def _raw_transactions(rpc: HttpRpc, number: int, hashes: Sequence[str]) -> list[str]:
    try:
        raws = await rpc.batch([("eth_getRawTransactionByHash", [h]) for h in hashes])
        if all(isinstance(r, str) for r in raws):
            return [str(r) for r in raws]
    except RpcError:
        pass  # not served: rebuilt from the block's transactions below
    block = await rpc.call("eth_getBlockByNumber", [hex(number), True])
    return [signed_raw(tx) for tx in block["transactions"]]


async def read_block(rpc: HttpRpc, number: int, *, fingerprint: bool = True) -> HistoricalBlock:
    """Block `number` from a node that still has its state (an archive, or the fork itself)."""
    raw = await rpc.call("eth_getBlockByNumber", [hex(number), False])
    if raw is None:
        raise BacktestError(f"block {number} is not on the source")
    hashes: list[str] = list(raw["transactions"])
    raws = await _raw_transactions(rpc, number, hashes) if hashes else []
    receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    txs = tuple(
        TxRecord(
            hash=h, raw=str(r), sender=str(rc["from"]).lower(),
            to=str(rc["to"]).lower() if rc.get("to") else None, status=int(rc["status"], 16),
            gas_used=int(rc["gasUsed"], 16), gas_price=int(rc["effectiveGasPrice"], 16),
            logs=tuple(
                {"address": e["address"].lower(), "topics": [t.lower() for t in e["topics"]],
                 "data": e["data"]}
                for e in rc["logs"]
            ),
        )
        for h, r, rc in zip(hashes, raws, receipts, strict=True)
    )
    coinbase = str(raw["miner"]).lower()
    prints = await read_fingerprint(rpc, number, coinbase, txs) if fingerprint else {}
    return HistoricalBlock(
        number=number, hash=raw["hash"], timestamp=int(raw["timestamp"], 16),
        base_fee=int(raw.get("baseFeePerGas", "0x0"), 16), gas_limit=int(raw["gasLimit"], 16),
        coinbase=coinbase, receipts_root=raw["receiptsRoot"], state_root=raw["stateRoot"],
        txs=txs, fingerprint=prints,
    )


class ArchiveHistory:
    """Historical blocks from an archive node (any node that still serves their state)."""

    def __init__(self, rpc: HttpRpc) -> None:
        self.rpc = rpc
        self.chain_id = rpc.chain_id

    async def block(self, number: int) -> HistoricalBlock:
        return await read_block(self.rpc, number)

    async def aclose(self) -> None:
        await self.rpc.aclose()


@dataclass(frozen=True)
class LiquidationLog:
    """A liquidation event decoded from a log: who liquidated whom, for how much."""

    protocol: str  # "aave_v3" | "morpho_blue"
    emitter: str  # the Pool or the Morpho contract
    liquidator: str
    account: str
    collateral: str  # token address (Morpho: resolved from the market id by the caller)
    debt: str
    repaid: int
    seized: int
    market: str = ""  # Morpho market id


def decode_liquidations(logs: Iterable[Mapping[str, Any]]) -> list[LiquidationLog]:
    """Every Aave V3 `LiquidationCall` and Morpho Blue `Liquidate` among `logs`."""
    out: list[LiquidationLog] = []
    for entry in logs:
        topics = [t.lower() for t in entry["topics"]]
        if not topics:
            continue
        data = bytes.fromhex(str(entry["data"]).removeprefix("0x"))
        if topics[0] == AAVE_LIQUIDATION_CALL and len(topics) == 4:
            repaid, seized, liquidator, _receive_a_token = decode(
                ["uint256", "uint256", "address", "bool"], data)
            out.append(LiquidationLog(
                "aave_v3", entry["address"].lower(), str(liquidator).lower(),
                "0x" + topics[3][-40:], "0x" + topics[1][-40:], "0x" + topics[2][-40:],
                int(repaid), int(seized)))
        elif topics[0] == MORPHO_LIQUIDATE and len(topics) == 4:
            repaid, _shares, seized, _bad_assets, _bad_shares = decode(["uint256"] * 5, data)
            out.append(LiquidationLog(
                "morpho_blue", entry["address"].lower(), "0x" + topics[2][-40:],
                "0x" + topics[3][-40:], "", "", int(repaid), int(seized), market=topics[1]))
    return out


async def morpho_tokens(rpc: HttpRpc, morpho: str, market: str) -> tuple[str, str]:
    """(collateral token, loan token) of a Morpho Blue market, from `idToMarketParams`."""
    answer = await rpc.eth_call(morpho, ID_TO_MARKET_PARAMS + market.removeprefix("0x"))
    loan, collateral, _oracle, _irm, _lltv = decode(
        ["address", "address", "address", "address", "uint256"],
        bytes.fromhex(answer.removeprefix("0x")))
    return str(collateral).lower(), str(loan).lower()
