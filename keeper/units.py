"""Token symbols and decimals, for showing amounts to people: `1,234.5 USDC`, not
`1234500000`.

The daemon registers each token it prices (the quote token and the DEX pairs' tokens)
once at start-up (`load_tokens`); the console log renderer (keeper/log.py) and the stop
summary then turn raw integers into token units with `amount`. Unknown tokens show as a
short address with the raw integer, never a guessed unit. JSON logs keep the exact
integers (the units are added beside them).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError

from keeper.errors import KeeperError

SYMBOL = "0x95d89b41"  # symbol()
DECIMALS = "0x313ce567"  # decimals()
NATIVE = "ETH"
SIGNIFICANT = 6  # digits kept after the point for amounts below 1; fewer above


@dataclass(frozen=True)
class Token:
    symbol: str
    decimals: int


class _Book:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: dict[str, Token] = {}
        self.quote: str | None = None


_book = _Book()


def register(address: str, symbol: str, decimals: int, *, quote: bool = False) -> None:
    """Remember a token (addresses are matched lower-case)."""
    with _book.lock:
        _book.tokens[address.lower()] = Token(symbol, decimals)
        if quote:
            _book.quote = address.lower()


def clear() -> None:
    """Forget every token (for tests)."""
    with _book.lock:
        _book.tokens.clear()
        _book.quote = None


def token(address: str) -> Token | None:
    return _book.tokens.get(address.lower())


def quote_token() -> str | None:
    return _book.quote


def symbol(address: str) -> str:
    """The token's symbol, or its short address."""
    known = token(address)
    return known.symbol if known is not None else short_address(address)


def short_address(address: str) -> str:
    """0x1234…cdef for a 20-byte address (as `keeper journal` shows it); anything else
    unchanged."""
    if len(address) == 42 and address.startswith("0x"):
        return f"{address[:6]}…{address[-4:]}"
    return address


def decimal_text(raw: int, decimals: int) -> str:
    """`raw` in whole units: thousands separated, at most 6 decimals below 1, 4 below 1,000,
    2 below a million and none above (`4,679,220 DAI`, not `4,679,220.0012 DAI`)."""
    value = Decimal(raw).scaleb(-decimals)
    size = abs(value)
    places = SIGNIFICANT if size < 1 else 4 if size < 1000 else 2 if size < 10**6 else 0
    text = f"{value:,.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def amount(raw: int, address: str | None) -> str:
    """`raw` base units of `address` as `1,234.5 USDC` (None: the quote token); an unknown
    token keeps the exact integer with its short address."""
    where = address if address is not None else _book.quote
    known = token(where) if where is not None else None
    if known is None:
        return f"{raw} (raw {short_address(where) if where else 'units'})"
    return f"{decimal_text(raw, known.decimals)} {known.symbol}"


def native(wei: int) -> str:
    """Native-token wei as `0.0123 ETH`."""
    return f"{decimal_text(wei, 18)} {NATIVE}"


def gwei(wei: int) -> str:
    return f"{decimal_text(wei, 9)} gwei"


class Caller(Protocol):
    async def call(self, method: str, params: Sequence[Any]) -> Any: ...


MAX_TOKENS = 64
"""Tokens read at start-up (two calls each); beyond them amounts show raw with an address."""


async def load_tokens(chain: Caller, addresses: Iterable[str], quote: str) -> int:
    """Read symbol() and decimals() of the quote token and up to `MAX_TOKENS` others (in
    the order given, skipping those already known), and register them; a token that lacks
    either is shown by address. Never raises for a token; returns how many were
    registered."""
    tokens = [quote.lower()] if token(quote) is None else []
    for address in (a.lower() for a in addresses):
        if len(tokens) >= MAX_TOKENS:
            break
        if address not in tokens and address != quote.lower() and token(address) is None:
            tokens.append(address)
    found = await asyncio.gather(*(_read(chain, t) for t in tokens))
    count = 0
    for address, meta in zip(tokens, found, strict=True):
        if meta is not None:
            register(address, *meta, quote=address == quote.lower())
            count += 1
    return count


async def _read(chain: Caller, address: str) -> tuple[str, int] | None:
    try:
        raw_symbol = await chain.call("eth_call", [{"to": address, "data": SYMBOL}, "latest"])
        raw_decimals = await chain.call("eth_call", [{"to": address, "data": DECIMALS}, "latest"])
        digits = int(str(raw_decimals), 16)
    except (KeeperError, ValueError):
        return None
    name = _symbol_text(str(raw_symbol))
    return (name, digits) if name is not None and 0 <= digits <= 77 else None


def _symbol_text(answer: str) -> str | None:
    data = bytes.fromhex(answer.removeprefix("0x")) if len(answer) % 2 == 0 else b""
    try:
        (text,) = decode(["string"], data)
    except (DecodingError, OverflowError, ValueError):
        text = data[:32].rstrip(b"\0").decode("utf-8", "replace") if len(data) == 32 else ""
    text = "".join(c for c in str(text) if c.isprintable())[:12]
    return text or None
