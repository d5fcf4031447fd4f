"""The local devnet: anvil from node_modules with the real Aave V3, Uniswap V2 and Morpho Blue."""
