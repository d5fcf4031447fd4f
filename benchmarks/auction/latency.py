"""Oracle transaction in the pool (or its hint) -> a bundle backrunning it at the builder,
by the builder's own clock (keeper/devnet/builder/arrivals.py): for each oracle
transaction the crash posted and each bot (by the address that signs its bundles' header),
the first bundle that names the transaction (`{hash}` in a mev_sendBundle body) or holds
it (an eth_sendBundle with its raw bytes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Latencies:
    """Seconds per bot and origin ("hint", "pool"), and the targets a bot never answered."""

    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)

    def quantile(self, who: str, origin: str, q: float) -> float | None:
        values = sorted(self.seconds.get(who, {}).get(origin, []))
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for who, origins in self.seconds.items():
            out[who] = {o: {"n": len(v), "p50_ms": _ms(self.quantile(who, o, 0.5)),
                            "p99_ms": _ms(self.quantile(who, o, 0.99))}
                        for o, v in origins.items()}
            out[who]["missed"] = self.missed.get(who, 0)
        return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def latencies(arrivals: Mapping[str, Any], targets: Sequence[tuple[str, str]],
              bots: Mapping[str, str]) -> Latencies:
    """`targets`: (oracle transaction hash, origin); `bots`: name -> header signer."""
    since = {"hint": arrivals.get("hints", {}), "pool": arrivals.get("pool", {})}
    by_signer = {address.lower(): name for name, address in bots.items()}
    first: dict[tuple[str, str], float] = {}
    for bundle in arrivals.get("bundles", []):
        who = by_signer.get(str(bundle.get("signer", "")).lower())
        if who is None:
            continue
        for named in {*bundle.get("refs", []), *bundle.get("txs", [])}:
            key = (who, str(named).lower())
            first[key] = min(first.get(key, bundle["at"]), bundle["at"])
    out = Latencies()
    for tx_hash, origin in targets:
        start = since[origin].get(tx_hash.lower())
        if start is None:
            continue
        for who in bots:
            at = first.get((who, tx_hash.lower()))
            if at is None:
                out.missed[who] = out.missed.get(who, 0) + 1
                continue
            out.seconds.setdefault(who, {}).setdefault(origin, []).append(at - start)
    return out
