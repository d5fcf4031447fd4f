"""What the dispatcher remembers of its liquidations, bounded for a daemon that runs for months.

`OutcomeLog` keeps the newest `keep` outcomes (a ring) and exact running totals over
the whole run (counts by status, confirmed count, realized profit and gas), so the
demo, the metrics and the stop summary never need the full history. A backtest, whose
length its block range bounds, keeps everything (`keep=None`).

`RecentKeys` is a bounded set for per-key memory (opportunity keys whose batch failed
simulation): the oldest key is forgotten first. Keys carry the oracle state, so an old
key does not come back once prices moved.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator

from keeper.types import Outcome

DEFAULT_KEEP = 4_096


class OutcomeLog:
    """The newest outcomes and exact totals since start."""

    def __init__(self, keep: int | None = DEFAULT_KEEP) -> None:
        self._recent: deque[Outcome] = deque(maxlen=keep)
        self.recorded = 0  # outcomes recorded since start (also those the ring forgot)
        self.by_status: Counter[str] = Counter()
        self.realized_profit = 0  # of confirmed liquidations, quote wei
        self.gas_paid = 0  # native wei

    def add(self, outcome: Outcome) -> None:
        self._recent.append(outcome)
        self.recorded += 1
        self._count(outcome, 1)

    def replace(self, outcomes: Iterable[Outcome]) -> None:
        """Record `outcomes`, replacing what was recorded for their keys (an orphaned
        liquidation re-evaluated after a reorg) where the ring still holds it."""
        new = list(outcomes)
        keys = {o.key for o in new if o.key}
        kept = [o for o in self._recent if o.key not in keys]
        for old in self._recent:
            if old.key in keys:
                self._count(old, -1)
        self._recent.clear()
        self._recent.extend(kept)
        for outcome in new:
            self.add(outcome)

    def _count(self, outcome: Outcome, sign: int) -> None:
        self.by_status[outcome.status] += sign
        self.gas_paid += sign * outcome.gas_paid
        if outcome.status == "confirmed":
            self.realized_profit += sign * outcome.realized_profit

    @property
    def confirmed_count(self) -> int:
        return self.by_status["confirmed"]

    @property
    def recent(self) -> list[Outcome]:
        """The outcomes the ring still holds, oldest first."""
        return list(self._recent)

    @property
    def confirmed(self) -> list[Outcome]:
        return [o for o in self._recent if o.status == "confirmed"]

    def since(self, recorded: int) -> list[Outcome]:
        """The outcomes recorded after the first `recorded` ones (those the ring holds)."""
        newer = self.recorded - recorded
        return list(self._recent)[-newer:] if newer > 0 else []

    def __iter__(self) -> Iterator[Outcome]:
        return iter(list(self._recent))

    def __len__(self) -> int:
        return len(self._recent)


class RecentKeys:
    """A set that forgets its oldest members beyond `size`."""

    def __init__(self, size: int = DEFAULT_KEEP) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def update(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)
