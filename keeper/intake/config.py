"""`[intake]`: reading a feed's next answer before its transaction is mined (keeper/intake).

Off by default. `pending` picks how the public pool is read: `subscribe`
(`eth_subscribe ["newPendingTransactions", true]` on `pending_url`, default the chain's
`ws_url`) or `poll` (`txpool_content` on `pending_url`, default the first HTTP endpoint,
every `poll_interval_ms`). `hint_urls`: MEV-Share-style hint streams (server-sent
events), where an SVR feed's private update is announced. URLs may carry API keys: they
are redacted in logs like the chain's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keeper.config_sections import Section


class IntakeConfig(Section):
    """`[intake]`: pending and hinted oracle transactions as early price updates."""

    pending: Literal["off", "subscribe", "poll"] = "off"
    pending_url: str | None = None
    poll_interval_ms: float = Field(default=5.0, gt=0, le=10_000)
    hint_urls: list[str] = Field(default_factory=list)
    backrun: bool = True
    """With bundles (`execution.submitter = "bundle"`), send the liquidations an early
    answer opens as backruns of its oracle transaction; off: as ordinary bundles."""

    @property
    def enabled(self) -> bool:
        return self.pending != "off" or bool(self.hint_urls)
