"""The hint -> bundle benchmark's judging (benchmarks/auction/hint_latency.py): each bot's
time comes from the builder's arrivals, the first bundle of that bot naming the oracle
transaction, from the hint (or the pool entry) on."""

from __future__ import annotations

from benchmarks.auction.hint_latency import LatencyRun, Trial, quantile, summary, timed

KEEPER, BARE = "0xkeeper", "0xbare"
SIGNERS = {"keeper": KEEPER, "bare": BARE}


def _arrivals() -> dict[str, object]:
    return {
        "hints": {"0xaa": 100.0}, "pool": {"0xbb": 200.0},
        "bundles": [
            {"at": 100.004, "signer": BARE, "refs": ["0xaa"], "txs": ["0x01"]},
            {"at": 100.020, "signer": KEEPER, "refs": ["0xaa"], "txs": ["0x02", "0x03", "0x04"]},
            {"at": 100.009, "signer": KEEPER, "refs": ["0xaa"], "txs": ["0x02"]},
            {"at": 100.001, "signer": KEEPER, "refs": ["0xcc"], "txs": ["0x05"]},  # another
            # A public transmit backrun with eth_sendBundle: the target is among the txs.
            {"at": 200.012, "signer": KEEPER, "refs": [], "txs": ["0xbb", "0x06", "0x07"]},
        ]}


def test_first_bundle_naming_the_target_by_the_builders_clock() -> None:
    hint = Trial("WETH", "hint", "0xaa", 1700.0)
    timed(_arrivals(), hint, SIGNERS)
    assert (hint.keeper_ms, hint.bare_ms, hint.keeper_txs) == (9.0, 4.0, 1)
    pool = Trial("WBTC", "pool", "0xbb", 26000.0)
    timed(_arrivals(), pool, SIGNERS)
    # The oracle transaction itself is not one of the keeper's liquidations.
    assert (pool.keeper_ms, pool.bare_ms, pool.keeper_txs) == (12.0, None, 2)


def test_unanswered_trials_are_counted_apart() -> None:
    answered = Trial("WETH", "hint", "0xaa", 1700.0, keeper_ms=9.0, bare_ms=4.0)
    missed = Trial("WETH", "hint", "0xdd", 1690.0, bare_ms=5.0)
    report = summary(LatencyRun(trials=[answered, missed]))
    assert report["hint"]["trials"] == 2 and report["hint"]["keeper_answered"] == 1
    assert report["hint"]["keeper_p50_ms"] == 9.0
    assert report["hint"]["bare_p50_ms"] == 5.0  # of [4, 5]: the upper median
    assert report["pool"]["trials"] == 0 and report["pool"]["keeper_p50_ms"] is None
    assert quantile([3.0, 1.0, 2.0], 0.99) == 3.0
