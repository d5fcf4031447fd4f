"""keeper: a liquidation bot for EVM lending markets with exact, contract-mirrored math."""

__version__ = "0.1.0"
