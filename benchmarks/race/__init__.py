"""The race: the keeper against a competing bot of the common peer design, on the devnet.

Benchmark tooling, not part of the product. `python -m benchmarks.race` starts a devnet
whose borrower population comes from a seed not used in development (printed), funds both
bots with the same token balances, runs the keeper daemon and the competitor
(competitor.py) each in its own process, drives a crash along a price path in one of two
block modes (automine, or one-second blocks ordered by fee), and judges from the chain
alone (verdict.py): who liquidated each account first, the share of the bonus each took,
gas, and every revert with its cause. harness.py runs one race; timing.py explains it with
the bots' send times.
"""
