"""A price-path file for `keeper backtest --devnet --price-path FILE`: loaded and checked.

A path file is `time_utc,price[,gas_gwei]`: a header whose first column is the time, then
rows of an ISO-8601 UTC time (increasing), a positive price and, optionally, the gas price
in gwei; a `# drives: WETH=1, WBTC=0.7` comment says which devnet feeds follow it and with
what beta (the default is the demo's). The files shipped in `keeper/backtest/paths/` credit
their source.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from keeper.devnet.crash import BETAS
from keeper.devnet.price_path import PricePoint, load_price_path
from keeper.devnet.tokens import DEFAULT_TOKENS
from keeper.errors import InputFileError

PATHS = Path(__file__).parent / "paths"


@dataclass(frozen=True)
class PricePath:
    """A loaded path file: its points and the devnet symbols it drives, with their betas."""

    path: Path
    points: list[PricePoint]
    betas: dict[str, Decimal]


def load_path(path: Path) -> PricePath:
    """The path's points, and its `# drives:` header (the demo's betas when it has none).

    Checked whole before anything runs: a header naming the time column first, ISO-8601
    times in increasing order, finite positive prices within a million-fold of the first,
    gas prices finite and not negative, at least two rows; each fault is one
    `InputFileError` line.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputFileError(f"{path}: price path file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read price path ({exc})") from None
    _check_shape(path, text)
    points = load_price_path(path)
    symbols = {t.symbol for t in DEFAULT_TOKENS}
    betas: dict[str, Decimal] = dict(BETAS)
    for line in text.splitlines():
        if not line.startswith("# drives:"):
            continue
        betas = {}
        for item in line.removeprefix("# drives:").split(","):
            symbol, _, beta = item.strip().partition("=")
            if symbol not in symbols:
                raise InputFileError(f"{path}: drives {symbol!r}, not a devnet asset "
                                     f"({', '.join(sorted(symbols))})")
            try:
                betas[symbol] = Decimal(beta or "1")
            except InvalidOperation:
                raise InputFileError(f"{path}: bad beta {beta!r} for {symbol}") from None
    return PricePath(path, points, betas)


# A path drives the feeds as moves relative to its first price: one a million times lower
# or higher is no market's path, and rescaled to a devnet price it rounds to zero or
# overflows the feeds' 8-decimal answers.
MOST_MOVE = Decimal(10**6)


def _check_shape(path: Path, text: str) -> None:
    """What `load_price_path` (shared with the demo) does not check: the header, the times,
    the numbers' range (a NaN, an infinity or a price rounding to zero stopped it with an
    internal error)."""
    rows = [(n, line) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.startswith("#")]
    if not rows:
        raise InputFileError(f"{path}: empty; a price path is a header time_utc,price"
                             "[,gas_gwei] and at least two rows")
    header = next(csv.reader([rows[0][1]]))
    if not header[0].strip().lower().startswith("time") or len(header) not in (2, 3):
        raise InputFileError(f"{path}:{rows[0][0]}: expected a header time_utc,price[,gas_gwei]"
                             f", got {rows[0][1][:40]!r}")
    last: datetime | None = None
    first: tuple[Decimal, str] | None = None  # the first row's price, and as written
    for number, line in rows[1:]:
        fields = next(csv.reader([line]))
        if not 2 <= len(fields) <= len(header):
            raise InputFileError(f"{path}:{number}: {len(fields)} columns, the header has "
                                 f"{len(header)}")
        try:
            when = datetime.fromisoformat(fields[0].strip().removesuffix("Z"))
        except ValueError:
            raise InputFileError(f"{path}:{number}: {fields[0][:30]!r} is not an ISO-8601 "
                                 "time") from None
        if last is not None and when <= last:
            raise InputFileError(f"{path}:{number}: time {fields[0]} is not after the row "
                                 "before")
        last = when
        price = _number(path, number, fields[1], "price")
        if price <= 0:
            raise InputFileError(f"{path}:{number}: price {fields[1].strip()} is not positive")
        first = (price, fields[1].strip()) if first is None else first
        if not first[0] / MOST_MOVE <= price <= first[0] * MOST_MOVE:
            raise InputFileError(f"{path}:{number}: price {fields[1].strip()} is more than a "
                                 f"million-fold move from the first row's {first[1]}")
        if len(fields) > 2 and fields[2].strip() and _number(
                path, number, fields[2], "gas price") < 0:
            raise InputFileError(f"{path}:{number}: gas price {fields[2].strip()} is negative")
    if len(rows) < 3:
        raise InputFileError(f"{path}: a price path needs at least two rows")


def _number(path: Path, number: int, text: str, what: str) -> Decimal:
    """A finite decimal, or one error line naming the row."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise InputFileError(f"{path}:{number}: {what} {text.strip()[:30]!r} is not a number")
    return value


def resolve_path(name: str | Path) -> Path:
    """A path file by file name, or by the name of a shipped one (with or without `.csv`)."""
    given = Path(name)
    if given.exists():
        return given
    for candidate in (PATHS / given.name, PATHS / f"{given.name}.csv"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.stem for p in PATHS.glob("*.csv")))
    raise InputFileError(f"{name}: price path file not found (shipped paths: {shipped})")
