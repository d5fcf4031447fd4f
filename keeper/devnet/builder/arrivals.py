"""When things reached the devnet builder, by its own clock (time.time()): each public
transaction entering the pool, each hint published, each bundle arriving. A benchmark
reads them with `builder_arrivals` to time "oracle transaction in the pool (or its hint)
-> a bundle backrunning it at the builder" without trusting the bots' own figures.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from keeper.devnet.builder.bundles import Bundle

KEPT = 8192


class Arrivals:
    """The last KEPT pool entries, hints and bundles, with their times."""

    def __init__(self) -> None:
        self.pool: OrderedDict[str, float] = OrderedDict()
        self.hinted: OrderedDict[str, float] = OrderedDict()
        self.bundles: deque[dict[str, Any]] = deque(maxlen=KEPT)

    @staticmethod
    def _keep(book: OrderedDict[str, float], key: str, when: float) -> None:
        book.setdefault(key, when)
        if len(book) > KEPT:
            book.popitem(last=False)

    def entered_pool(self, tx_hash: str, when: float) -> None:
        self._keep(self.pool, tx_hash, when)

    def hint(self, hash_: str, when: float) -> None:
        self._keep(self.hinted, hash_, when)

    def bundle(self, endpoint: int, bundle: Bundle, refs: list[str], when: float) -> None:
        """A bundle at `endpoint`: its transactions, and the `{hash}` entries it named."""
        self.bundles.append({"at": when, "endpoint": endpoint, "hash": bundle.hash,
                             "signer": bundle.signer.lower(),
                             "kind": bundle.kind, "block": bundle.first_block,
                             "txs": [t.tx.hash for t in bundle.txs], "refs": refs})

    def as_json(self) -> dict[str, Any]:
        return {"pool": dict(self.pool), "hints": dict(self.hinted),
                "bundles": list(self.bundles)}
