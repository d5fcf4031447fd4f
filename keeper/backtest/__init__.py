"""Backtests: replaying history (an archive node, a recorded tape, or a price path on the devnet)
with the keeper inserted, and the report of what it would have earned."""
