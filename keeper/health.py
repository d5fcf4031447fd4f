"""The keeper's health verdict for `/health`: healthy, degraded or failing, with reasons.

The mapping (HTTP status in brackets, as served by `keeper.metrics.serve`):

- **failing** [503]: the keeper cannot see the chain, so it can neither watch nor
  send: no new head for more than `stall_seconds` (or none at all that long after
  start), or, when `max_head_lag` is set, the newest head's timestamp is more than
  that many seconds behind the wall clock (a node stuck far behind); or a
  condition flagged "failing" by the caller.
- **degraded** [200]: the keeper is watching but not everything works: a circuit
  breaker is tripped (sending halted), it is starting and has no head yet, or a
  condition flagged "degraded" by the caller (say, the WebSocket is down and heads
  are polled over HTTP). 200 because restarting it would not help: a tripped
  breaker needs a human, and a supervisor that restarts on 503 must not clear it.
- **healthy** [200]: none of the above.

Reasons are short strings, one per problem, failing ones first. Stalls are measured
with a monotonic clock on the keeper's side (when a head arrived); head lag compares
the block timestamp with the wall clock. Both clocks are injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from keeper.breakers import Breakers

Status = Literal["healthy", "degraded", "failing"]
Level = Literal["degraded", "failing"]


@dataclass(frozen=True)
class HealthReport:
    """One verdict: the status and why."""

    status: Status
    reasons: list[str] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        return 503 if self.status == "failing" else 200

    def as_json(self) -> dict[str, object]:
        return {"status": self.status, "reasons": list(self.reasons)}


class Health:
    """Evaluates health on demand from the last head, the breakers and flagged conditions."""

    def __init__(
        self,
        *,
        stall_seconds: float = 60.0,
        max_head_lag: float | None = None,
        breakers: Breakers | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if stall_seconds <= 0:
            raise ValueError("stall_seconds must be positive")
        self.stall_seconds = stall_seconds
        self.max_head_lag = max_head_lag
        self.breakers = breakers
        self._clock = clock
        self._wall = wall
        self._started = clock()
        self._head: tuple[int, int, float] | None = None  # (number, timestamp, heard at)
        self._flags: dict[str, tuple[Level, str]] = {}

    def head(self, number: int, timestamp: int) -> None:
        """A new head arrived (call once per head the engine processes or hears)."""
        if self._head is None or number > self._head[0]:
            self._head = (number, timestamp, self._clock())

    def flag(self, name: str, level: Level, reason: str) -> None:
        """Raise (or update) a condition of the caller's, e.g. "websocket" degraded."""
        self._flags[name] = (level, reason)

    def clear(self, name: str) -> None:
        """Drop a condition raised with `flag` (no error if it is not raised)."""
        self._flags.pop(name, None)

    def check(self) -> HealthReport:
        """The verdict now."""
        failing: list[str] = []
        degraded: list[str] = []
        now = self._clock()
        if self._head is None:
            waited = now - self._started
            if waited > self.stall_seconds:
                failing.append(f"no head received in {waited:.0f} s since start")
            else:
                degraded.append("starting: no head yet")
        else:
            number, timestamp, heard = self._head
            silent = now - heard
            if silent > self.stall_seconds:
                failing.append(f"head stalled: no new head for {silent:.0f} s (last {number})")
            lag = self._wall() - timestamp
            if self.max_head_lag is not None and lag > self.max_head_lag:
                failing.append(f"head {number} is {lag:.0f} s behind the clock")
        if self.breakers is not None:
            degraded.extend(f"breaker {s.name} tripped: {s.reason}; sending halted"
                            for s in self.breakers.tripped())
        for level, reason in self._flags.values():
            (failing if level == "failing" else degraded).append(reason)
        if failing:
            return HealthReport("failing", failing + degraded)
        if degraded:
            return HealthReport("degraded", degraded)
        return HealthReport("healthy")
