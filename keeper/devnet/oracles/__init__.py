"""The devnet's oracle network: OCR2-style median aggregators behind Chainlink's proxy.

A devnet component, not part of the daemon (docs/devnet.md, "Oracle network"):
`contracts` compiles and deploys the aggregators (Chainlink's OCR2Base plus our median
report) and EACAggregatorProxy; `keys` holds the devnet-only oracle keys; `report` builds
and signs reports as OCR2 does; `network` decides when a feed transmits (deviation,
heartbeat) and sends publicly, or twice for an SVR-style feed (privately to a builder,
publicly after a cut-off delay).
"""
