"""Exact swap quotes from DEX pool reserves kept current by the pools' own events.

`uniswap_v2` mirrors UniswapV2Library's integer math and keeps a `PairBook` of
reserves: loaded once with batched reads, then updated from `Sync` logs.
"""
