"""The auction benchmark (issue 15): the devnet crash in builder mode, its Aave market priced
by the oracle network (WETH's feed SVR-style), the keeper answering pending and hinted
oracle transactions with backrun bundles that bid to the builder, against (a) the race's
peer-design polling competitor sending publicly with a fixed tip, or (b) a second keeper
with a lower bid share. docs/benchmarks.md has the figures and how to run it.
"""
