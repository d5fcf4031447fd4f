"""Execution: the only part of the keeper that holds keys and sends transactions.

`journal` records every intent and signed transaction on disk before it is
broadcast, `nonces` owns the sending account's nonce, and `fees` prices
EIP-1559 transactions and their replacements.

It knows no protocol and no devnet (tests/unit/test_layering.py): strategies
encode their own calls and flash legs (`keeper.types.FlashLeg`), the executor
contract is built and deployed by `keeper.deploy_executor`, and the dry-run
fork runs anvil through `keeper.anvil`.
"""
