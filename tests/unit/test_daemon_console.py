"""The daemon's console at 3 a.m. (issue 19): token units with symbols, short lines,
repeated conditions as one line with a count, a status line every N blocks, and a stop
summary of this run only with the reasons for what was abandoned and lost. JSON lines keep
the exact integers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from eth_abi.abi import encode

from keeper import units
from keeper.breakers import BreakerLimits, Breakers
from keeper.errors import Reverted
from keeper.health import Health
from keeper.log import MAX_LINE, RepeatLimiter, configure_logging, flush_repeats, reset_logging
from keeper.metrics import Metrics
from keeper.monitor import REASON_WIDTH, Monitor, RunTally
from keeper.run_support import DaemonResult, run_summary
from keeper.types import BlockRef, Outcome
from tests.factories import candidate

WETH = "0x" + "11" * 20
USDC = "0x" + "22" * 20
USER = "0x" + "33" * 20
KEY = f"31337:morpho_blue:{USER}:{WETH}:{USDC}:0x{'ab' * 32}"
NO_CAPITAL = "not enough debt asset on hand; not sent"


@pytest.fixture(autouse=True)
def tokens() -> Iterator[None]:
    units.register(WETH, "WETH", 18, quote=True)
    units.register(USDC, "USDC", 6)
    yield
    units.clear()
    structlog.contextvars.clear_contextvars()
    reset_logging()


def console() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("console", "info", stream)
    return stream


def test_console_shows_token_units_and_short_lines() -> None:
    stream = console()
    structlog.contextvars.bind_contextvars(block=19_000_000)
    structlog.get_logger("keeper.execution").info(
        "liquidation sent", strategy="morpho_blue", account=USER, key=KEY,
        net_profit=412_345_678_901_234_567, repay=1_250_000_000, tx="0x" + "cd" * 32)
    structlog.get_logger().info("fees bumped", tx="0x" + "cd" * 32, max_fee=31_500_000_000,
                                tip=2_000_000_000, gas_paid=2_100_000_000_000_000)
    sent, bumped = stream.getvalue().splitlines()
    assert "profit='0.412346 WETH'" in sent and "repay='1,250 USDC'" in sent
    assert "pair=WETH/USDC" in sent and "0x3333…3333" in sent
    assert "412345678901234567" not in sent and KEY not in sent and "keeper.execution" not in sent
    assert "max_fee='31.5 gwei'" in bumped and "tip='2 gwei'" in bumped
    assert "gas_paid='0.0021 ETH'" in bumped
    assert max(len(line) for line in (sent, bumped)) <= MAX_LINE


def test_the_devnet_tours_longest_lines_fit() -> None:
    """The lines of the README's tour that ran to 196 characters on a terminal (a send of a
    second market with millions of debt, a revert reason), at a mainnet block number."""
    stream = console()
    structlog.contextvars.bind_contextvars(block=21_000_000)
    log = structlog.get_logger()
    log.info("liquidation sent", strategy="aave_v3_6", account=USER, key=KEY,
             tx="0x" + "cd" * 32, net_profit=741_935_412_345_678_901_234,
             repay=4_679_220_001_234)
    log.info("liquidation confirmed", strategy="morpho_blue", account=USER, key=KEY,
             tx="0x" + "cd" * 32, realized_profit=955_901_600_000_000_000_000)
    reason = "execution reverted: panic: arithmetic underflow or overflow (0x11)"
    log.info("simulation reverted; not sent", strategy="aave_v3", account=USER, key=KEY,
             reason=reason)
    log.warning("rpc endpoint failed over", url="https://eth-mainnet.example/v2/" + "k" * 40,
                error="ReadTimeout: " + "x" * 200, attempt=3)
    sent, confirmed, reverted, failed = stream.getvalue().splitlines()
    assert "repay='4,679,220 USDC'" in sent and " profit='741.9354 WETH'" in sent
    assert "realized_profit='955.9016 WETH'" in confirmed
    assert "reason='execution reverted: pan…flow (0x11)'" in reverted  # cut, not dropped
    assert "attempt=3" in failed and "block=21000000" in failed
    assert max(len(line) for line in (sent, confirmed, reverted, failed)) <= MAX_LINE == 160


def test_unknown_token_keeps_the_exact_integer() -> None:
    stream = console()
    other = "0x" + "44" * 20
    key = f"1:aave_v3:{USER}:{WETH}:{other}:0x00"
    structlog.get_logger().info(NO_CAPITAL, key=key, repay=123_456_789)
    assert "repay='123456789 (raw 0x4444…4444)'" in stream.getvalue()


def test_json_keeps_exact_integers_and_adds_units() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    structlog.get_logger().info("liquidation confirmed", key=KEY,
                                realized_profit=412_345_678_901_234_567, repay=1_250_000_000)
    event = json.loads(stream.getvalue())
    assert event["realized_profit"] == 412_345_678_901_234_567 and event["key"] == KEY
    assert event["units"] == {"realized_profit": "0.412346 WETH", "repay": "1,250 USDC"}
    units.clear()  # symbols unknown (a process that never loaded them): no `units`
    structlog.get_logger().info("liquidation confirmed", key=KEY, realized_profit=5)
    assert "units" not in json.loads(stream.getvalue().splitlines()[-1])


def test_79_identical_lines_become_two() -> None:
    """One price move's burst: the first line, then one line with the count."""
    stream = console()
    log = structlog.get_logger()
    for index in range(79):
        log.info(NO_CAPITAL, account=f"0x{index:040x}", key=KEY, repay=10**9)
        log.info("liquidation sent", key=KEY, net_profit=10**15)  # never limited
    for breaker in ("consecutive_reverts", "gas_per_hour"):  # each trip is news
        log.error("circuit breaker tripped: sending halted, still watching", breaker=breaker)
    flush_repeats(everything=True)
    lines = stream.getvalue().splitlines()
    assert sum("breaker=gas_per_hour" in line for line in lines) == 1
    assert sum(NO_CAPITAL in line for line in lines) == 2
    assert "(repeated 78 more times within 1 s)" in lines[-1]
    assert sum("liquidation sent" in line for line in lines) == 79


def test_a_burst_is_counted_once_it_goes_quiet() -> None:
    """The count line comes ~2 s after the burst's last repeat (a quiet chain may bring no
    head for minutes), timed from its first line to its last repeat, not to the flush."""
    now = [0.0]
    limiter = RepeatLimiter(window=10, clock=lambda: now[0], quiet=2)
    for step in range(79):  # 79 lines in 0.78 s
        now[0] = step / 100
        with contextlib.suppress(structlog.DropEvent):
            limiter(None, "info", {"event": NO_CAPITAL})
    now[0] = 1.5
    assert limiter.take() == []  # still within 2 s of the last repeat
    now[0] = 2.9
    assert limiter.take() == [("info", NO_CAPITAL, 78, 0.78)]
    now[0] = 60.0  # the same condition a minute later: shown again
    limiter(None, "info", {"event": NO_CAPITAL})
    assert limiter.take(everything=True) == []


def test_limiter_window_reopens() -> None:
    now = [0.0]
    limiter = RepeatLimiter(window=10, clock=lambda: now[0])
    shown = 0
    for step in range(30):  # one event a second for 30 s: a first line every 10 s
        now[0] = float(step)
        try:
            limiter(None, "info", {"event": "cannot process block; retrying"})
            shown += 1
        except structlog.DropEvent:
            pass
    assert shown == 3  # at 0, 11 and 22 s (a window is 10 s after its first line)
    taken = limiter.take(everything=True)
    assert [count for _level, _event, count, _seconds in taken] == [10, 10, 7]


def outcome(status: str, **fields: object) -> Outcome:
    return Outcome(KEY, status, **fields)  # type: ignore[arg-type]


def test_stop_summary_is_this_run_in_units_with_reasons(tmp_path: Path) -> None:
    tally = RunTally()
    for item in [outcome("confirmed", realized_profit=2 * 10**18, gas_paid=3 * 10**15),
                 outcome("confirmed", realized_profit=5 * 10**17, gas_paid=10**15),
                 *[outcome("no-capital", reason="debt asset balance is committed")] * 40,
                 *[outcome("simulation-failed", reason="execution reverted: 0x1234")] * 4,
                 outcome("lost", winner="0x" + "ef" * 32),
                 outcome("lost", reason="our cancel took the nonce")]:
        tally.add(item)
    from keeper.execution.journal import JournalSummary  # noqa: PLC0415

    result = DaemonResult(JournalSummary({"confirmed": 900}, 10**30, 0), 18, abandoned=1,
                          tally=tally, seconds=3725, journal=tmp_path / "j.sqlite")
    lines = run_summary(result)
    first = lines[0]
    assert first.startswith("keeper: stopped; this run (1h02m): 2 liquidations confirmed")
    assert first.endswith("; realized profit 2.5 WETH net of gas")
    assert lines[1] == "  gas paid 0.004 ETH, lost 2, abandoned 44, abandoned in flight 1"
    assert "900" not in first and "(quote token)" not in first
    assert "  abandoned 40: not enough debt asset on hand" in lines
    assert "  abandoned 4: simulation reverted: execution reverted: 0x1234" in lines
    assert "  lost 1: a rival liquidated it first" in lines
    assert "  lost 1: our cancel took the nonce" in lines
    assert max(map(len, lines)) < 160
    big = DaemonResult(JournalSummary({}, 0, 0), 18, tally=RunTally(
        counts=Counter(confirmed=9_999), realized_profit=-12_345_678 * 10**18,
        gas_paid=12_345 * 10**18), seconds=10**6)
    assert max(len(line) for line in run_summary(big, dry_run=True)) < 160


def test_a_long_reason_is_cut_with_an_ellipsis() -> None:
    tally = RunTally()
    tally.add(outcome("simulation-failed", reason="execution reverted: " + "0x" + "ab" * 300))
    (reason,) = tally.abandoned_reasons()
    assert len(reason) == REASON_WIDTH and reason.endswith("…")


def test_status_line_every_n_blocks() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    monitor = Monitor(Metrics(strategies=["aave_v3"]), Health(),
                      Breakers(BreakerLimits.from_eth(None, None, None)), status_every=10)
    monitor.inflight = lambda: 2
    monitor.outcome(outcome("confirmed", realized_profit=7 * 10**17), "aave_v3")
    risky = candidate()
    for number in range(100, 125):
        monitor.block(BlockRef(number, "0x" + f"{number:064x}", "0x" + "00" * 32, 1_700_000_000),
                      1)
        monitor.evaluated({"aave_v3": 300}, [risky], [])
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    status = [e for e in events if e["event"] == "status"]
    assert [e["head"] for e in status] == [100, 110, 120]
    assert status[0]["tracked"] == 300 and status[0]["at_risk"] == 1
    assert status[0]["in_flight"] == 2 and status[0]["confirmed"] == 1
    assert status[0]["pnl"] == 7 * 10**17 and status[0]["units"]["pnl"] == "0.7 WETH"


class TokenNode:
    """Answers symbol() and decimals() for a few tokens; anything else reverts."""

    def __init__(self, tokens: dict[str, tuple[str, int]]) -> None:
        self.tokens = tokens
        self.asked: list[str] = []

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        to, data = params[0]["to"], params[0]["data"]
        self.asked.append(to)
        if to not in self.tokens:
            raise Reverted("eth_call", {"code": 3, "message": "execution reverted"})
        symbol, decimals = self.tokens[to]
        if data == units.SYMBOL:
            return "0x" + encode(["string"], [symbol]).hex()
        return hex(decimals)


def test_token_names_are_read_once_in_order() -> None:
    dai, odd = "0x" + "55" * 20, "0x" + "66" * 20
    node = TokenNode({dai: ("DAI", 18), USDC: ("USDC", 6), WETH: ("WETH", 18)})
    found = asyncio.run(units.load_tokens(node, [dai, USDC, odd, dai], WETH))
    assert found == 1  # DAI; WETH and USDC were known, odd has no symbol()
    assert units.amount(15 * 10**17, dai) == "1.5 DAI"
    assert units.amount(7, odd) == "7 (raw 0x6666…6666)"
    assert sorted(set(node.asked)) == sorted({dai, odd})


def test_candidates_with_unnamed_tokens_are_noted() -> None:
    monitor = Monitor(Metrics(strategies=["aave_v3"]), Health(),
                      Breakers(BreakerLimits.from_eth(None, None, None)))
    risky = candidate()  # its collateral and debt are the zero address: no symbol known
    monitor.evaluated({"aave_v3": 1}, [risky], [])
    assert monitor.unnamed == {risky.collateral, risky.debt}
