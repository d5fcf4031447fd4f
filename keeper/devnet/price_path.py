"""Historical price paths that drive the devnet's feeds.

The bundled path is ETH/USD on 2021-05-19 in 10-minute buckets (see the
header of the CSV for its source). A path is applied as relative moves: the
first point maps to the devnet's starting price, so the crash keeps its shape
whatever the starting level.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from keeper.errors import InputFileError

BUNDLED = Path(__file__).parent / "data" / "eth_usd_2021-05-19_10min.csv"


@dataclass(frozen=True)
class PricePoint:
    time: str
    price: Decimal
    gas_gwei: Decimal | None


def load_price_path(path: Path = BUNDLED) -> list[PricePoint]:
    """Read `time_utc,price[,gas_gwei]` rows; `#` lines are comments. One clear error per fault."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise InputFileError(f"{path}: price path file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read price path ({exc})") from None
    rows = [
        (n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")
    ]
    if len(rows) < 2:
        raise InputFileError(f"{path}: price path needs a header and at least one row")
    points: list[PricePoint] = []
    for number, fields in ((n, next(csv.reader([line]))) for n, line in rows[1:]):
        try:
            price = Decimal(fields[1])
            gas = Decimal(fields[2]) if len(fields) > 2 and fields[2] else None
        except (IndexError, InvalidOperation):
            raise InputFileError(f"{path}:{number}: expected time,price[,gas_gwei]") from None
        if price <= 0:
            raise InputFileError(f"{path}:{number}: price must be positive")
        points.append(PricePoint(fields[0], price, gas))
    return points


def relative_moves(points: list[PricePoint], start: Decimal) -> list[Decimal]:
    """The path rescaled so that its first point equals `start`."""
    base = points[0].price
    return [(p.price / base * start).quantize(Decimal("0.01")) for p in points]
