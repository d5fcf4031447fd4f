"""Strategy plugins, one package per lending protocol, found through `keeper.strategies`."""
