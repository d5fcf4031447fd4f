"""Signing and broadcasting for one account: the only code that holds the key.

Each transaction takes its nonce from the account's `NonceManager`. One sent
for an intent is journaled (`record_signed`, on disk) before it is broadcast,
and marked sent after, so a crash in between leaves its raw bytes to re-send.
A refusal by the node is classified (`classify_send_error`) and the nonce is
handed back or skipped past accordingly.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from keeper.chain.http import HttpRpc, RpcError
from keeper.execution.fees import FeePolicy, Fees
from keeper.execution.journal import Journal
from keeper.execution.mining import Pending, SendRefusal, classify_send_error
from keeper.execution.nonces import NonceManager

CANCEL_GAS = 21_000  # a zero-value transfer to itself: frees a nonce, does nothing


class SendRefused(RpcError):
    """`eth_sendRawTransaction` was refused; `refusal` says how (`classify_send_error`)."""

    def __init__(self, refusal: SendRefusal, method: str, message: str) -> None:
        super().__init__(method, {"code": None, "message": message})
        self.refusal = refusal


class Sender:
    """Signs EIP-1559 transactions of `account` and broadcasts them, journaled first."""

    def __init__(
        self, chain: HttpRpc, account: LocalAccount, journal: Journal, fees: FeePolicy,
        nonces: NonceManager,
    ) -> None:
        self.chain = chain
        self.account = account
        self.address = account.address.lower()
        self.journal = journal
        self.fees = fees
        self.nonces = nonces

    async def sign(
        self, to: str, data: str, gas: int, nonce: int, fees: Fees
    ) -> tuple[str, str]:
        """(tx hash, raw signed tx) of a call with these fees and this nonce."""
        tx: dict[str, Any] = {
            "type": 2, "chainId": self.chain.chain_id, "nonce": nonce,
            "to": to_checksum_address(to),
            "data": data, "value": 0, "gas": gas,
            "maxFeePerGas": fees[0], "maxPriorityFeePerGas": fees[1],
        }
        signed = self.account.sign_transaction(tx)
        return "0x" + bytes(signed.hash).hex(), "0x" + bytes(signed.raw_transaction).hex()

    async def cancel(self, nonce: int, fees: Fees) -> tuple[str, str]:
        """A no-op for `nonce` (a zero-value transfer to the sender): frees it for later sends."""
        return await self.sign(self.address, "0x", CANCEL_GAS, nonce, fees)

    async def send(
        self, to: str, data: str, gas: int, base_fee: int, *, key: str | None,
        profit_cap_wei: int = 0, priority_fee: int | None = None,
    ) -> Pending | None:
        """Reserve a nonce, sign, journal (for `key`), broadcast; None above the fee cap.
        `priority_fee`: the tip this send bids (the policy's tip when None).

        Raises `SendRefused` when the node refuses it (the nonce is released, or skipped
        past when the node says it is used).
        """
        policy = self.fees
        if priority_fee is not None and priority_fee != policy.priority_fee:
            policy = FeePolicy(policy.max_fee_per_gas, min(priority_fee, policy.max_fee_per_gas))
        fees = policy.fees(base_fee)
        if fees is None:
            return None
        nonce = await self.nonces.reserve()
        try:
            tx_hash, raw = await self.sign(to, data, gas, nonce, fees)
            if key is not None:
                self.journal.record_signed(key, nonce, tx_hash, raw, fees[0], fees[1])
        except BaseException:
            self.nonces.release(nonce)  # never broadcast: the next send takes it, no gap
            raise
        try:
            await self.chain.call("eth_sendRawTransaction", [raw])
        except RpcError as exc:
            refusal = classify_send_error(exc.message)
            if refusal != "known":  # "already known": it is in the pool, as if just sent
                if refusal == "nonce-low":  # used: never hand it out again
                    chain_nonce = int(await self.chain.call(
                        "eth_getTransactionCount", [self.address, "pending"]), 16)
                    self.nonces.confirm(nonce)
                    await self.nonces.skip_to(chain_nonce)
                else:
                    self.nonces.release(nonce)
                raise SendRefused(refusal, exc.method, exc.message) from None
        if key is not None:
            self.journal.mark_sent(key, tx_hash)
        return Pending(key, nonce, fees, gas, profit_cap_wei, [tx_hash], {tx_hash: raw})
