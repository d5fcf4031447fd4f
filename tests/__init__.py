"""The keeper's test suite: unit/ needs no chain, integration/ runs on a real anvil devnet."""
