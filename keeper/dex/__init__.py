"""Exact swap quotes from DEX pool reserves kept current by the pools' own events.

`uniswap_v2` mirrors UniswapV2Library's integer math and keeps a `PairBook` of
reserves: loaded once with batched reads, then updated from `Sync` logs.
`uniswap_v3` keeps a `V3Book` of concentrated-liquidity pools (ticks, bitmap, price)
loaded in three batches and updated from Initialize/Swap/Mint/Burn logs; its exact
quotes run the swap loop mirrored in `v3_pool` on the math of `v3_math` and `v3_ticks`.
"""
