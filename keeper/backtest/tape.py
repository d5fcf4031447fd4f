"""The tape: what an offline replay needs, in one gzip file of JSON lines.

    {"tape": 1, "chain_id": …, "from_block": A, "to_block": B, "parent": {A-1's header fields}}
    {"state": {address: {"balance", "nonce", "code", "storage": {slot: value}}}}
    {"history": {JSON of [method, params]: result}}  the engine's reads of blocks before A
    {"block": HistoricalBlock}              one line per block A..B, in order

The state is every account and storage slot a recording replay read from the source at
block A-1 (`keeper record` puts a recording proxy between the replay fork and the node, see
`keeper.backtest.record`), with its value at A-1. Without a node, anvil starts from that
state (`--load-state`, with A-1 as its head block), and the replay reads exactly what the
recording replay read: a replay with the same keeper configuration and insert position is
complete. A different configuration may read slots the tape lacks, which anvil answers as
zero; the tape's header keeps the recording's settings so a replay can warn about that.
The engine's cold start also reads history before A (logs, old headers): those answers are
taped too and served to it by `keeper.backtest.proxy.HistoryTap`.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeper.backtest.history import HistoricalBlock
from keeper.errors import InputFileError

VERSION = 1
EMPTY_ROOT = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
EMPTY_UNCLES = "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347"
EMPTY_REQUESTS = "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ZERO_HASH = "0x" + "00" * 32


@dataclass(frozen=True)
class Parent:
    """The header fields of block A-1 that the offline fork starts from."""

    number: int
    timestamp: int
    base_fee: int
    gas_limit: int
    coinbase: str


@dataclass
class TapeHeader:
    chain_id: int
    from_block: int
    to_block: int
    parent: Parent
    settings: dict[str, Any]  # how the recording replay ran: insert, keeper account


def write_tape(
    path: Path, header: TapeHeader, state: Mapping[str, Mapping[str, Any]],
    history: Mapping[str, Any], blocks: Sequence[HistoricalBlock],
) -> None:
    """Write a tape atomically (a temporary file renamed into place)."""
    first = {"tape": VERSION, "chain_id": header.chain_id, "from_block": header.from_block,
             "to_block": header.to_block, "parent": vars(header.parent),
             "settings": header.settings}
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as out:
        out.write(json.dumps(first) + "\n")
        out.write(json.dumps({"state": state}) + "\n")
        out.write(json.dumps({"history": history}) + "\n")
        for block in blocks:
            out.write(json.dumps({"block": block.to_json()}) + "\n")
    tmp.replace(path)


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as source:
            for number, line in enumerate(source, 1):
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    raise InputFileError(f"{path}: line {number} is not JSON") from None
                if not isinstance(item, dict):
                    raise InputFileError(f"{path}: line {number} is not a JSON object")
                yield item
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such tape") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not a keeper tape (gzip JSON lines): {exc}") from None


class TapeHistory:
    """The blocks of a tape, answering the replay's `History` protocol."""

    def __init__(self, path: Path, header: TapeHeader, state: dict[str, Any],
                 history: dict[str, Any], blocks: dict[int, HistoricalBlock]) -> None:
        self.path = path
        self.header = header
        self.chain_id = header.chain_id
        self.state = state
        self.history = history
        self.blocks = blocks

    @classmethod
    def open(cls, path: Path) -> TapeHistory:
        """Read and check a whole tape; a malformed one raises one `InputFileError` line."""
        lines = _lines(path)
        try:
            first = next(lines)
            if first.get("tape") != VERSION:
                raise InputFileError(f"{path}: not a keeper tape (version {VERSION})")
            header = TapeHeader(int(first["chain_id"]), int(first["from_block"]),
                                int(first["to_block"]), Parent(**first["parent"]),
                                dict(first.get("settings") or {}))
            state = next(lines).get("state")
            if not isinstance(state, dict):
                raise InputFileError(f"{path}: line 2 holds no state")
            history = next(lines).get("history")
            if not isinstance(history, dict):
                raise InputFileError(f"{path}: line 3 holds no history")
            blocks: dict[int, HistoricalBlock] = {}
            for item in lines:
                block = HistoricalBlock.from_json(item["block"])
                blocks[block.number] = block
        except StopIteration:
            raise InputFileError(f"{path}: the tape is truncated") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(f"{path}: malformed tape ({type(exc).__name__}: {exc})") from None
        wanted = set(range(header.from_block, header.to_block + 1))
        if set(blocks) != wanted:
            raise InputFileError(f"{path}: the tape lacks blocks of "
                                 f"{header.from_block}..{header.to_block}")
        return cls(path, header, state, history, blocks)

    async def block(self, number: int) -> HistoricalBlock:
        return self.blocks[number]

    async def aclose(self) -> None:
        return None

    def anvil_state(self) -> dict[str, Any]:
        """The tape's state as an `anvil --load-state` file whose head is block A-1."""
        parent = self.header.parent
        header = {
            "parentHash": ZERO_HASH, "sha3Uncles": EMPTY_UNCLES, "miner": parent.coinbase,
            "stateRoot": EMPTY_ROOT, "transactionsRoot": EMPTY_ROOT, "receiptsRoot": EMPTY_ROOT,
            "logsBloom": "0x" + "00" * 256, "difficulty": "0x0", "number": hex(parent.number),
            "gasLimit": hex(parent.gas_limit), "gasUsed": "0x0",
            "timestamp": hex(parent.timestamp), "extraData": "0x", "mixHash": ZERO_HASH,
            "nonce": "0x0000000000000000", "baseFeePerGas": hex(parent.base_fee),
            "withdrawalsRoot": EMPTY_ROOT, "blobGasUsed": "0x0", "excessBlobGas": "0x0",
            "parentBeaconBlockRoot": ZERO_HASH, "requestsHash": EMPTY_REQUESTS,
        }
        return {
            "block": {
                "number": hex(parent.number), "beneficiary": parent.coinbase,
                "timestamp": hex(parent.timestamp), "gas_limit": parent.gas_limit,
                "basefee": parent.base_fee, "difficulty": "0x0", "prevrandao": ZERO_HASH,
                "blob_excess_gas_and_price": {"excess_blob_gas": 0, "blob_gasprice": 1},
            },
            "accounts": self.state,
            "best_block_number": parent.number,
            "blocks": [{"header": header, "transactions": [], "ommers": [],
                        "withdrawals": None}],
            "transactions": [],
            "historical_states": None,
        }
