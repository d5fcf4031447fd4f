"""structlog setup, done once by the CLI; library modules only call `structlog.get_logger()`.

Console rendering on a terminal, JSON lines elsewhere. Context bound with
`structlog.contextvars.bind_contextvars(block=..., strategy=..., account=...,
tx=...)` is merged into every event. The standard library's logging (web3,
urllib3, asyncio) goes through the same processors. Every rendered value
passes through `keeper.secrets.redact` first.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

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


def _renderer(fmt: LogFormat, stream: TextIO) -> Processor:
    if fmt == "auto":
        fmt = "console" if _isatty(stream) else "json"
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    return structlog.processors.JSONRenderer()


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
    renderer = _renderer(fmt, stream)
    structlog.configure(
        processors=[*shared[:1], *shared[2:], renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    _remove_handlers()
    handler._keeper = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(numeric)


def reset_logging() -> None:
    """Undo `configure_logging` (for tests whose captured stream is about to close)."""
    _remove_handlers()
    structlog.reset_defaults()


def _remove_handlers() -> None:
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if getattr(handler, "_keeper", False):
            root.removeHandler(handler)
