"""Decoders of strategies/aave_v3/events.py on hand-built logs (no chain)."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode

from keeper.types import Event
from strategies.aave_v3 import events as ev

A, B, C = ("0x" + c * 40 for c in "abc")


def _log(topic0: str, indexed: list[tuple[str, object]], data: list[tuple[str, object]]) -> Event:
    topics = (topic0, *("0x" + encode([t], [v]).hex() for t, v in indexed))
    payload = "0x" + encode([t for t, _ in data], [v for _, v in data]).hex()
    return Event("0x" + "11" * 20, topics, payload, 1, "0x" + "00" * 32, "0x" + "22" * 32, 0, 0)


def test_topics_are_the_known_keccaks() -> None:
    assert ev.TOPIC_SUPPLY == "0x2b627736bca15cd5381dcf80b0bf11fd197d01a037c52b927a881a10fb73ba61"
    assert ev.TOPIC_BORROW == "0xb3d084820fb1a9decffb176436bd02558d15fac9b0ddfed8c465bc7359d7dce0"
    assert ev.TOPIC_MINT != ev.TOPIC_STABLE_MINT and ev.TOPIC_BURN != ev.TOPIC_STABLE_BURN
    assert len({*ev.POOL_TOPICS, *ev.TOKEN_TOPICS}) == len(ev.POOL_TOPICS) + len(ev.TOKEN_TOPICS)


def test_pool_events() -> None:
    supply = _log(ev.TOPIC_SUPPLY, [("address", A), ("address", B), ("uint16", 7)],
                  [("address", C), ("uint256", 5)])
    assert ev.decode(supply) == ev.Supply(A, C, B, 5, 7)
    borrow = _log(ev.TOPIC_BORROW, [("address", A), ("address", B), ("uint16", 0)],
                  [("address", C), ("uint256", 9), ("uint8", 2), ("uint256", 3)])
    assert ev.decode(borrow) == ev.Borrow(A, C, B, 9, 2, 3, 0)
    repay = _log(ev.TOPIC_REPAY, [("address", A), ("address", B), ("address", C)],
                 [("uint256", 4), ("bool", True)])
    assert ev.decode(repay) == ev.Repay(A, B, C, 4, True)
    withdraw = _log(ev.TOPIC_WITHDRAW, [("address", A), ("address", B), ("address", C)],
                    [("uint256", 8)])
    assert ev.decode(withdraw) == ev.Withdraw(A, B, C, 8)
    liq = _log(ev.TOPIC_LIQUIDATION_CALL, [("address", A), ("address", B), ("address", C)],
               [("uint256", 1), ("uint256", 2), ("address", A), ("bool", False)])
    assert ev.decode(liq) == ev.LiquidationCall(A, B, C, 1, 2, A, False)
    rdu = _log(ev.TOPIC_RESERVE_DATA_UPDATED, [("address", A)],
               [("uint256", i) for i in range(1, 6)])
    assert ev.decode(rdu) == ev.ReserveDataUpdated(A, 1, 2, 3, 4, 5)
    on = _log(ev.TOPIC_COLLATERAL_ENABLED, [("address", A), ("address", B)], [])
    off = _log(ev.TOPIC_COLLATERAL_DISABLED, [("address", A), ("address", B)], [])
    assert ev.decode(on) == ev.CollateralEnabled(A, B)
    assert ev.decode(off) == ev.CollateralDisabled(A, B)
    emode = _log(ev.TOPIC_USER_EMODE_SET, [("address", A)], [("uint8", 1)])
    assert ev.decode(emode) == ev.UserEModeSet(A, 1)


def test_token_events() -> None:
    mint = _log(ev.TOPIC_MINT, [("address", A), ("address", B)],
                [("uint256", 10), ("uint256", 3), ("uint256", 10**27)])
    assert ev.decode(mint) == ev.Mint(A, B, 10, 3, 10**27)
    burn = _log(ev.TOPIC_BURN, [("address", A), ("address", B)],
                [("uint256", 10), ("uint256", 3), ("uint256", 10**27)])
    assert ev.decode(burn) == ev.Burn(A, B, 10, 3, 10**27)
    transfer = _log(ev.TOPIC_BALANCE_TRANSFER, [("address", A), ("address", B)],
                    [("uint256", 6), ("uint256", 2 * 10**27)])
    assert ev.decode(transfer) == ev.BalanceTransfer(A, B, 6, 2 * 10**27)
    smint = _log(ev.TOPIC_STABLE_MINT, [("address", A), ("address", B)],
                 [("uint256", i) for i in range(1, 7)])
    assert ev.decode(smint) == ev.StableMint(A, B, 1, 2, 3, 4, 5, 6)
    sburn = _log(ev.TOPIC_STABLE_BURN, [("address", A)], [("uint256", i) for i in range(1, 6)])
    assert ev.decode(sburn) == ev.StableBurn(A, 1, 2, 3, 4, 5)
    answer = _log(ev.TOPIC_ANSWER_UPDATED, [("int256", -5), ("uint256", 2)], [("uint256", 9)])
    assert ev.decode(answer) == ev.AnswerUpdated(-5, 2, 9)


def test_unknown_and_malformed_logs() -> None:
    assert ev.decode(_log("0x" + "99" * 32, [], [])) is None
    short = _log(ev.TOPIC_MINT, [("address", A)], [("uint256", 1)])
    with pytest.raises(ev.EventDecodeError):
        ev.decode(short)
    truncated = _log(ev.TOPIC_BURN, [("address", A), ("address", B)], [("uint256", 1)])
    with pytest.raises(ev.EventDecodeError):
        ev.decode(truncated)
