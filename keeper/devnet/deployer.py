"""Deploy and drive contracts on the devnet from anvil's unlocked dev accounts.

This is set-up code, not the hot path: it uses web3's synchronous HTTP
provider and `eth_sendTransaction` from unlocked accounts, and fails loudly
(naming the step) on any reverted transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import RPCEndpoint, TxReceipt

from keeper.devnet.artifacts import Artifact
from keeper.errors import DevnetError


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    """A raw JSON-RPC call (anvil_* and evm_* methods have no web3 wrapper)."""
    reply = w3.provider.make_request(RPCEndpoint(method), list(params))
    if "error" in reply:
        raise DevnetError(f"{method}: {reply['error']}")
    return reply.get("result")


class Deployer:
    """Sends set-up transactions; every one must succeed."""

    def __init__(self, w3: Web3, sender: ChecksumAddress) -> None:
        self.w3 = w3
        self.sender = sender

    def deploy(
        self,
        artifact: Artifact,
        *args: Any,
        libraries: Mapping[str, str] | None = None,
        sender: ChecksumAddress | None = None,
    ) -> Contract:
        code = artifact.linked(libraries or {})
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=code)
        tx_hash = factory.constructor(*args).transact({"from": sender or self.sender})
        receipt = self._receipt(tx_hash, f"deploy {artifact.name}")
        address = receipt["contractAddress"]
        if address is None:
            raise DevnetError(f"deploy {artifact.name}: no contract address in receipt")
        return self.w3.eth.contract(address=address, abi=artifact.abi)

    def at(self, artifact: Artifact, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)

    def send(
        self, call: ContractFunction, *, sender: ChecksumAddress | None = None, value: int = 0
    ) -> TxReceipt:
        params: dict[str, Any] = {"from": sender or self.sender}
        if value:
            params["value"] = value
        try:
            tx_hash = call.transact(params)  # type: ignore[arg-type]
        except Exception as exc:  # web3 raises many types for a reverted estimate
            raise DevnetError(f"{call.fn_name}: {exc}") from None
        return self._receipt(tx_hash, call.fn_name)

    def _receipt(self, tx_hash: Any, what: str) -> TxReceipt:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        if receipt["status"] != 1:
            raise DevnetError(f"{what}: transaction reverted ({tx_hash.hex()})")
        return receipt
