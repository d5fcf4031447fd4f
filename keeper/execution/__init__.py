"""Execution: the only part of the keeper that holds keys and sends transactions.

`journal` records every intent and signed transaction on disk before it is
broadcast, `nonces` owns the sending account's nonce, and `fees` prices
EIP-1559 transactions and their replacements.
"""
