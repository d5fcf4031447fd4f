"""structlog setup, done once by the CLI; library modules only call `structlog.get_logger()`.

Console rendering on a terminal, JSON lines elsewhere. Context bound with
`structlog.contextvars.bind_contextvars(block=..., strategy=..., account=...,
tx=...)` is merged into every event. The standard library's logging (web3,
urllib3, asyncio) goes through the same processors. Every rendered value
passes through `keeper.secrets.redact` first.

Read at 3 a.m.: the console shows amounts in token units with their symbols
(keeper/units.py: `repay=1,250 USDC`, `net_profit=0.41 WETH`, `gas_paid=0.002 ETH`),
addresses and hashes short, an opportunity's key as its pair (`pair=WETH/USDC`), long
values cut, and a condition that repeats (79 "not enough debt asset on hand" in one price
move) as its first line and then one line with the count (`RepeatLimiter`). JSON lines keep
every exact integer and add the same amounts in units under `units`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from keeper import units
from keeper.secrets import redact

LogFormat = Literal["auto", "console", "json"]
LEVELS = ("debug", "info", "warning", "error", "critical")
_PLAIN = (int, float, bool, type(None))


def redact_value(value: Any) -> Any:
    """`value` with registered secrets masked, recursing into containers."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    text = str(value)
    masked = redact(text)
    return masked if masked != text else value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask every registered secret in every event value."""
    return {key: redact_value(value) for key, value in event_dict.items()}


# Amount fields, by unit. An opportunity's debt token is the 5th field of its key
# (`chain:strategy:user:collateral:debt:state`, strategies/*/strategy.py).
QUOTE_FIELDS = frozenset({"net_profit", "realized_profit", "gross", "gas_cost", "profit",
                          "pnl", "slippage", "bid", "min_profit"})
NATIVE_FIELDS = frozenset({"gas_paid", "balance", "gas_spent"})
GWEI_FIELDS = frozenset({"max_fee", "tip", "priority_fee", "base_fee", "max_fee_per_gas"})
DEBT_FIELDS = frozenset({"repay", "debt_to_cover"})
ADDRESS_FIELDS = frozenset({"account", "spender", "to", "executor", "token", "debt",
                            "collateral", "winner", "tx", "orphan_hash", "morpho", "aave_pool",
                            "feed"})
MAX_VALUE = 72  # characters of one console value; longer ones are cut
DROPPED = frozenset({"logger"})  # the module name: noise on a console


def _key_parts(key: Any) -> list[str] | None:
    parts = key.split(":") if isinstance(key, str) else []
    return parts if len(parts) >= 6 else None


def _units_of(event_dict: EventDict) -> dict[str, str]:
    """The amount fields of one event, in token units (only fields that are integers)."""
    parts = _key_parts(event_dict.get("key"))
    debt = event_dict.get("debt") if isinstance(event_dict.get("debt"), str) else (
        parts[4] if parts else None)
    out: dict[str, str] = {}
    for name, value in event_dict.items():
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if name in QUOTE_FIELDS:
            out[name] = units.amount(value, None)
        elif name in NATIVE_FIELDS:
            out[name] = units.native(value)
        elif name in GWEI_FIELDS:
            out[name] = units.gwei(value)
        elif name in DEBT_FIELDS and debt is not None:
            out[name] = units.amount(value, debt)
    return out


def add_units(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor (JSON): the exact integers stay; `units` repeats them in units
    (amounts of a token whose symbol is unknown are left out: the integer says it all)."""
    shown = {k: v for k, v in _units_of(event_dict).items() if "(raw " not in v}
    if shown:
        event_dict["units"] = shown
    return event_dict


def _cut(text: str, limit: int = MAX_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) == 66 and value.startswith("0x"):  # a hash
            return f"{value[:10]}…"
        return units.short_address(value) if len(value) == 42 else value
    if isinstance(value, list | tuple):
        return [_short(v) for v in value]
    return value


def humanize(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor (console): token units, short addresses and values, the key as
    its pair, the time of day only."""
    shown = _units_of(event_dict)
    out: EventDict = {}
    for name, value in event_dict.items():
        if name in DROPPED or value is None:  # `fork=None`: nothing to read
            continue
        if name == "timestamp" and isinstance(value, str) and len(value) >= 19:
            out[name] = value[11:19]
        elif name in shown:
            out[name] = shown[name]
        elif name == "key" and (parts := _key_parts(value)) is not None:
            out["pair"] = f"{units.symbol(parts[3])}/{units.symbol(parts[4])}"
        elif name == "batch" and isinstance(value, list):
            out[name] = f"{len(value)} liquidations"
        elif name in {"event", "exception"}:
            out[name] = value
        elif name in ADDRESS_FIELDS or isinstance(value, str | list | tuple):
            short = _short(value)
            out[name] = _cut(short if isinstance(short, str) else repr(short))
        else:
            out[name] = value
    return out


NEVER_LIMITED = frozenset({
    "liquidation sent", "liquidation confirmed", "liquidation reverted", "lost the race",
    "status", "keeper running", "synced", "circuit breaker tripped: sending halted, still watching",
    "circuit breaker cleared: balance restored",
})
"""Events always shown in full: each one is news, however many there are."""


@dataclass
class _Burst:
    first: float
    shown: EventDict
    suppressed: int = 0
    last: EventDict = field(default_factory=dict)


class RepeatLimiter:
    """structlog processor (console): the first line of an event is shown; the same event
    (level and message) again within `window` seconds is counted instead, and
    `flush_repeats` (each new head, and the stop) reports the count as one line:
    `not enough debt asset on hand; not sent (repeated 78 more times within 2 s)`."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._bursts: dict[tuple[str, str], _Burst] = {}
        self._pending: list[tuple[tuple[str, str], _Burst]] = []

    def __call__(self, _logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        event = str(event_dict.get("event", ""))
        if event in NEVER_LIMITED or method == "critical" or "repeats" in event_dict:
            return event_dict
        now = self.clock()
        key = (method, event)
        with self._lock:
            burst = self._bursts.get(key)
            if burst is None or now - burst.first > self.window:
                if burst is not None and burst.suppressed:
                    self._pending.append((key, burst))
                self._bursts[key] = _Burst(now, dict(event_dict))
                return event_dict
            burst.suppressed += 1
            burst.last = dict(event_dict)
        raise structlog.DropEvent

    def take(self, *, everything: bool = False) -> list[tuple[str, str, int, float]]:
        """(level, event, count, seconds) of each closed burst with suppressed lines (all of
        them when `everything`), forgetting them."""
        now = self.clock()
        out: list[tuple[str, str, int, float]] = []
        with self._lock:
            pending, self._pending = self._pending, []
            for key, burst in list(self._bursts.items()):
                if everything or now - burst.first > self.window:
                    del self._bursts[key]
                    if burst.suppressed:
                        pending.append((key, burst))
            for (level, event), burst in pending:
                out.append((level, event, burst.suppressed, now - burst.first))
        return out


_state: dict[str, RepeatLimiter] = {}


def flush_repeats(*, everything: bool = False) -> None:
    """Log one `repeated` line for each condition whose repeats were held back (console
    only; the JSON log holds every line)."""
    limiter = _state.get("limiter")
    if limiter is None:
        return
    logger = structlog.get_logger("keeper.log")
    for level, event, count, seconds in limiter.take(everything=everything):
        emit = getattr(logger, level if level in LEVELS else "info")
        emit(f"{event} (repeated {count} more times within {seconds:.0f} s)", repeats=count)


def _renderer(fmt: LogFormat, stream: TextIO) -> tuple[list[Processor], Processor]:
    """The console or JSON processors that run after the shared ones, and the renderer."""
    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    if fmt == "console":
        limiter = RepeatLimiter()
        _state["limiter"] = limiter
        # Fields in the order the event gives them (`status head=… tracked=…`), not sorted.
        return [limiter, humanize], structlog.dev.ConsoleRenderer(
            colors=_isatty(stream), pad_event_to=0 if not _isatty(stream) else 30,
            sort_keys=False)
    _state.pop("limiter", None)
    return [add_units], structlog.processors.JSONRenderer()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(
    fmt: LogFormat = "auto", level: str | int = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's root logger; call once, from the CLI."""
    stream = sys.stderr if stream is None else stream
    numeric = level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    extra, renderer = _renderer(fmt, stream)
    structlog.configure(
        processors=[*shared[:1], *shared[2:], *extra, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *extra,
                        renderer],
        )
    )
    _remove_handlers()
    handler._keeper = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(numeric)


def reset_logging() -> None:
    """Undo `configure_logging` (for tests whose captured stream is about to close)."""
    _state.pop("limiter", None)
    _remove_handlers()
    structlog.reset_defaults()


def _remove_handlers() -> None:
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if getattr(handler, "_keeper", False):
            root.removeHandler(handler)
