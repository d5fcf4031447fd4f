"""Numbers as a reader wants them: token units with symbols, USD, short addresses.

Reports and tables show amounts in whole tokens with their symbol ("1,234.56 USDC"),
values in USD at the oracle's prices where one is known, and addresses and hashes cut
to their ends ("0x1234…abcd"); every table cell stays within `CELL` characters. The
exact integers (raw token units, wei) stay in the JSON, never in a table.
"""

from __future__ import annotations

CELL = 24  # the widest a table cell may be, in characters


def amount(value: float, symbol: str = "") -> str:
    """A token amount in whole units, with about five significant digits (never "1e+07")."""
    size = abs(value)
    if size >= 1000:
        text = f"{value:,.0f}" if size >= 1e6 else f"{value:,.2f}"
    elif size >= 1:
        text = f"{value:,.4f}"
    elif size == 0:
        text = "0"
    else:
        text = f"{value:.6f}".rstrip("0").rstrip(".") if size >= 1e-6 else f"{value:.2e}"
    return f"{text} {symbol}".rstrip()


def compact(value: float, unit: str = "") -> str:
    """A large value in about 8 characters and its unit: "$13.21M", "130,877 USDC",
    "2.44B WETH" (`unit` "USD" is a leading "$"): tables that must fit an 80-column console."""
    size = abs(value)
    # Thresholds half a unit low: 999,999.6 reads "1.00M", not "1,000,000".
    text = (f"{value / 1e9:,.2f}B" if size >= 1e9 - 5e6 else f"{value / 1e6:,.2f}M"
            if size >= 1e6 - 0.5
            else f"{value:,.0f}" if size >= 1 or size == 0 else f"{value:.2g}")
    if unit == "USD":
        return f"-${text[1:]}" if text.startswith("-") else f"${text}"
    return f"{text} {unit}".rstrip()


def raw_amount(raw: int, decimals: int, symbol: str = "") -> str:
    """Raw token units (an exact int) in whole tokens."""
    return amount(raw / 10**decimals, symbol)


def usd(value: float | None) -> str:
    """A USD value: "$1,234", "$0.52"; "-" when no price is known."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size == 0:
        return "$0"
    return f"{sign}${size:,.0f}" if size >= 100 else f"{sign}${size:,.2f}"


def short(text: str) -> str:
    """An address or hash as its ends ("0x1234…abcd"); other text as it is."""
    if text.startswith("0x") and len(text) > 14:
        return f"{text[:6]}…{text[-4:]}"
    return text


def cell(text: object) -> str:
    """Fit a table cell: addresses shortened, other long text cut with an ellipsis."""
    out = short(str(text))
    return out if len(out) <= CELL else out[: CELL - 1] + "…"
