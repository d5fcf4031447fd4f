"""structlog setup, done once by the CLI; library modules only call `structlog.get_logger()`.

Console rendering on a terminal, JSON lines elsewhere. Context bound with
`structlog.contextvars.bind_contextvars(block=..., strategy=..., account=...,
tx=...)` is merged into every event. The standard library's logging (web3,
urllib3, asyncio) goes through the same processors. Every rendered value
passes through `keeper.secrets.redact` first.

Read at 3 a.m.: the console shows amounts in token units with their symbols
(keeper/units.py: `repay=1,250 USDC`, `net_profit=0.41 WETH`, `gas_paid=0.002 ETH`),
addresses and hashes short, an opportunity's key as its pair (`pair=WETH/USDC`), the
longest text values cut until a line fits `MAX_LINE` characters, and a condition that
repeats (79 "not enough debt asset on hand" in one price move) as its first line and then,
once it has gone quiet, one line with the count (`RepeatLimiter`). JSON lines keep every
exact integer and add the same amounts in units under `units`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
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
MAX_LINE = 160  # characters of one console line (a terminal's width at 3 a.m.); see _fit
MIN_CUT = 16  # a text value is never cut shorter than this to fit a line
PREFIX = len("23:59:59 [warning] ")  # the time and level the renderer puts first
DROPPED = frozenset({"logger"})  # the module name: noise on a console
RENAMED = {"net_profit": "profit"}  # on the console only: a send's line fits 160 characters


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


def _short(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) == 66 and value.startswith("0x"):  # a hash
            return f"{value[:8]}…"  # 24 bits tell a run's sends apart; --csv has it whole
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
            alias = RENAMED.get(name, name)  # kept when the event has a field of that name
            out[alias if alias not in event_dict else name] = shown[name]
        elif name == "key" and (parts := _key_parts(value)) is not None:
            out["pair"] = f"{units.symbol(parts[3])}/{units.symbol(parts[4])}"
        elif name == "batch" and isinstance(value, list):
            out[name] = f"{len(value)} liquidations"
        elif name in {"event", "exception"}:
            out[name] = value
        elif name in ADDRESS_FIELDS or isinstance(value, str | list | tuple):
            short = _short(value)
            out[name] = _cut(short if isinstance(short, str) else repr(short), MAX_VALUE)
        else:
            out[name] = value
    return _fit(out, {RENAMED.get(name, name) for name in shown} | set(shown))


def _shown(value: Any) -> str:
    """A value as structlog's ConsoleRenderer writes it (quoted when it holds a space)."""
    if isinstance(value, str):
        return repr(value) if set(value) & {" ", "\t", "=", "\n", '"', "'"} else value
    return repr(value)


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters of `text`: its start and its end, cut in the middle (a
    path's file, a URL's port, a revert's selector)."""
    if len(text) <= limit:
        return text
    tail = (limit - 1) // 3
    return f"{text[: limit - 1 - tail]}…{text[len(text) - tail:]}"


def _fit(event_dict: EventDict, whole: Collection[str]) -> EventDict:
    """Cut the longest text values (a revert reason, a URL) in their middle until the line
    fits `MAX_LINE`; amounts (`whole`) and values shorter than `MIN_CUT` stay whole. The
    JSON log keeps every value in full."""
    fields = {k: v for k, v in event_dict.items()
              if k not in {"event", "exception", "timestamp", "level"}}
    width = PREFIX + len(str(event_dict.get("event", ""))) + sum(
        len(k) + 2 + len(_shown(v)) for k, v in fields.items())
    while width > MAX_LINE:
        texts = [(len(v), k) for k, v in fields.items()
                 if isinstance(v, str) and len(v) > MIN_CUT and k not in whole]
        if not texts:
            break
        length, name = max(texts)
        cut = _cut(fields[name], max(MIN_CUT, length - (width - MAX_LINE)))
        width -= len(_shown(fields[name])) - len(_shown(cut))
        fields[name] = event_dict[name] = cut
    return event_dict


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
    seen: float = 0.0  # when the last repeat came


class RepeatLimiter:
    """structlog processor (console): the first line of an event is shown; the same event
    (level and message) again within `window` seconds of it is counted instead. A burst
    ends once `quiet` seconds pass without a repeat, or `window` seconds after its first
    line, and `flush_repeats` (every second while the daemon runs, each new head, and the
    stop) reports its count as one line, timed from its first line to its last repeat:
    `not enough debt asset on hand; not sent (repeated 78 more times within 2 s)`."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 quiet: float = 2.0) -> None:
        self.window = window
        self.quiet = quiet
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
            if burst is None or self._over(burst, now):
                if burst is not None and burst.suppressed:
                    self._pending.append((key, burst))
                self._bursts[key] = _Burst(now, dict(event_dict), seen=now)
                return event_dict
            burst.suppressed += 1
            burst.last = dict(event_dict)
            burst.seen = now
        raise structlog.DropEvent

    def _over(self, burst: _Burst, now: float) -> bool:
        return now - burst.first > self.window or now - burst.seen > self.quiet

    def take(self, *, everything: bool = False) -> list[tuple[str, str, int, float]]:
        """(level, event, count, seconds) of each closed burst with suppressed lines (all of
        them when `everything`), forgetting them."""
        now = self.clock()
        out: list[tuple[str, str, int, float]] = []
        with self._lock:
            pending, self._pending = self._pending, []
            for key, burst in list(self._bursts.items()):
                if everything or self._over(burst, now):
                    del self._bursts[key]
                    if burst.suppressed:
                        pending.append((key, burst))
            for (level, event), burst in pending:
                out.append((level, event, burst.suppressed, burst.seen - burst.first))
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
        emit(f"{event} (repeated {count} more times within {max(1, round(seconds))} s)",
             repeats=count)


def _renderer(fmt: LogFormat, stream: TextIO) -> tuple[list[Processor], Processor]:
    """The console or JSON processors that run after the shared ones, and the renderer."""
    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    if fmt == "console":
        limiter = RepeatLimiter()
        _state["limiter"] = limiter
        # Fields in the order the event gives them (`status head=… tracked=…`), not sorted.
        # Neither the event nor the level padded: lines short enough for one terminal row.
        return [limiter, humanize], structlog.dev.ConsoleRenderer(
            colors=_isatty(stream), pad_event_to=0, pad_level=False, sort_keys=False)
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
