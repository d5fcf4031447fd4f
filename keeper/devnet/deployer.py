"""Deploy and drive contracts on the devnet from anvil's unlocked dev accounts.

This is set-up code, not the hot path: it uses web3's synchronous HTTP
provider and `eth_sendTransaction` from unlocked accounts, and fails loudly
(naming the step) on any reverted transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound
from web3.types import RPCEndpoint, TxReceipt

from keeper.devnet.artifacts import Artifact
from keeper.errors import DevnetError

SETUP_GAS = 29_000_000


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
        """Send from an unlocked (or impersonated) account; anvil fills gas, fees and nonce.

        Raw `eth_sendTransaction` keeps this at two requests per transaction
        (web3's transact() makes about six), which matters when seeding hundreds
        of borrowers.
        """
        tx: dict[str, Any] = {
            "from": sender or self.sender,
            "to": call.address,
            "data": call._encode_transaction_data(),
            # anvil's own estimate can fall short for Aave's nested calls; set-up gas is free.
            "gas": hex(SETUP_GAS),
        }
        if value:
            tx["value"] = hex(value)
        reply = self.w3.provider.make_request(RPCEndpoint("eth_sendTransaction"), [tx])
        if "error" in reply:
            message = reply["error"].get("message", reply["error"])
            raise DevnetError(f"{call.fn_name}: {message}")
        return self._receipt(reply["result"], call.fn_name)

    def _receipt(self, tx_hash: Any, what: str) -> TxReceipt:
        receipt = mined_receipt(self.w3, tx_hash)
        if receipt["status"] != 1:
            shown = tx_hash if isinstance(tx_hash, str) else Web3.to_hex(tx_hash)
            raise DevnetError(f"{what}: transaction reverted ({shown}{_reason(self.w3, shown)})")
        return receipt


def _reason(w3: Web3, tx_hash: str) -> str:
    """The revert reason, replayed on the parent block (automine: one tx per block)."""
    tx = w3.eth.get_transaction(HexStr(tx_hash))
    call: dict[str, Any] = {"from": tx["from"], "to": tx.get("to"), "data": tx["input"]}
    try:
        w3.eth.call(call, tx["blockNumber"] - 1)  # type: ignore[arg-type]
    except ContractLogicError as exc:
        return f": {exc.message}"
    return ""


def mined_receipt(w3: Web3, tx_hash: Any) -> TxReceipt:
    """The receipt, at once under automine; polls briefly under interval mining."""
    try:
        return w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
