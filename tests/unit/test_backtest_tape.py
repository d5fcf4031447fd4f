"""The tape format (keeper.backtest.tape) and the liquidation log decoders, without a chain:
a tape round-trips; a malformed one is one `InputFileError` line; the offline state file
makes block A-1 the head."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from eth_abi.abi import encode

from keeper.backtest.history import (
    AAVE_LIQUIDATION_CALL,
    MORPHO_LIQUIDATE,
    HistoricalBlock,
    TxRecord,
    decode_liquidations,
)
from keeper.backtest.tape import Parent, TapeHeader, TapeHistory, write_tape
from keeper.errors import InputFileError

ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
WETH = "0x" + "0e" * 20
USDC = "0x" + "0c" * 20


def _word(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def _block(number: int) -> HistoricalBlock:
    tx = TxRecord(hash="0x" + f"{number:064x}", raw="0x02", sender=ALICE, to=BOB, status=1,
                  gas_used=21_000, gas_price=7, logs=({"address": WETH, "topics": [],
                                                       "data": "0x"},))
    return HistoricalBlock(number, "0x" + "11" * 32, 1_700_000_000 + number, 7, 30_000_000,
                           BOB, "0x" + "22" * 32, "0x" + "33" * 32, (tx,),
                           {f"balance:{ALICE}": "0x5"})


def _tape(path: Path) -> TapeHistory:
    header = TapeHeader(31337, 10, 12, Parent(9, 1_700_000_009, 7, 30_000_000, BOB),
                        {"insert": "after-oracle"})
    state = {WETH: {"balance": "0x0", "nonce": 1, "code": "0x60", "storage": {"0x1": "0x2"}}}
    write_tape(path, header, state, {'["eth_getLogs", []]': []}, [_block(n) for n in (10, 11, 12)])
    return TapeHistory.open(path)


def test_a_tape_round_trips(tmp_path: Path) -> None:
    tape = _tape(tmp_path / "t.tape")
    assert tape.chain_id == 31337 and sorted(tape.blocks) == [10, 11, 12]
    assert tape.blocks[11] == _block(11)
    assert tape.history == {'["eth_getLogs", []]': []}
    state = tape.anvil_state()
    assert state["best_block_number"] == 9
    assert state["blocks"][0]["header"]["number"] == "0x9"
    assert state["accounts"][WETH]["storage"] == {"0x1": "0x2"}


@pytest.mark.parametrize("content", [
    b"not gzip at all",
    gzip.compress(b"not json\n"),
    gzip.compress(b"[1, 2]\n"),
    gzip.compress(b'{"tape": 99}\n'),
    gzip.compress(b'{"tape": 1}\n'),
    gzip.compress(json.dumps({"tape": 1, "chain_id": 1, "from_block": 5, "to_block": 6,
                              "parent": {"number": 4, "timestamp": 0, "base_fee": 0,
                                         "gas_limit": 1, "coinbase": BOB}}).encode() + b"\n"),
])
def test_a_malformed_tape_is_one_input_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.tape"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as caught:
        TapeHistory.open(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_tape_missing_blocks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.tape"
    _tape(path)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress("\n".join(lines[:-1]).encode()))
    with pytest.raises(InputFileError, match="lacks blocks"):
        TapeHistory.open(path)


def test_missing_tape_is_one_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such tape"):
        TapeHistory.open(tmp_path / "nope.tape")


def test_liquidation_logs_are_decoded() -> None:
    aave = {"address": WETH, "topics": [AAVE_LIQUIDATION_CALL, _word(WETH), _word(USDC),
                                        _word(ALICE)],
            "data": "0x" + encode(["uint256", "uint256", "address", "bool"],
                                  [100, 200, BOB, False]).hex()}
    market = "0x" + "ab" * 32
    morpho = {"address": USDC, "topics": [MORPHO_LIQUIDATE, market, _word(BOB), _word(ALICE)],
              "data": "0x" + encode(["uint256"] * 5, [7, 8, 9, 0, 0]).hex()}
    other = {"address": WETH, "topics": ["0x" + "00" * 32], "data": "0x"}
    first, second = decode_liquidations([aave, other, morpho])
    assert (first.protocol, first.liquidator, first.account, first.collateral, first.debt,
            first.repaid, first.seized) == ("aave_v3", BOB, ALICE, WETH, USDC, 100, 200)
    assert (second.protocol, second.liquidator, second.account, second.market, second.repaid,
            second.seized) == ("morpho_blue", BOB, ALICE, market, 7, 9)
