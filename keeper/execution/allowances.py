"""ERC-20 allowances of the sending account for the protocols' own contracts.

A liquidation paid from the sender's own debt asset needs the protocol's
contract (never an arbitrary address) to be allowed to pull it: the first
send per (token, spender) approves the maximum once, mined before anything
is simulated against it. The block it was mined at is remembered, since a
simulation pinned to an older block would not see it. `look` reads, before any
send, whether a maximal allowance is already in place (from an earlier run). An approval whose block
a reorg orphans is sent again as it was signed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from eth_abi.abi import encode

from keeper.chain.http import HttpRpc, RpcError
from keeper.execution.mining import MiningWatch
from keeper.execution.receipts import FINALITY_DEPTH, RecentReceipts
from keeper.execution.sender import Sender

log = structlog.get_logger(__name__)

ALLOWANCE = "0xdd62ed3e"
APPROVE = "0x095ea7b3"
MAX_UINT = 2**256 - 1
APPROVE_GAS = 100_000
KNOWN_IN_PLACE = 2**255  # a maximal approval, however much of it was spent since


class Allowances:
    """Which (token, spender) allowances of one account are in place, and since when."""

    def __init__(
        self, chain: HttpRpc, sender: Sender, watch: MiningWatch, recent: RecentReceipts
    ) -> None:
        self.chain = chain
        self.address = sender.address
        self._sender = sender
        self._watch = watch
        self._recent = recent
        # (token, spender) -> the block from which the allowance is known to be in place
        self._approved: dict[tuple[str, str], int] = {}
        # our approvals not final yet: tx hash -> (block, token, spender, raw signed tx)
        self._approvals: dict[str, tuple[int, str, str, str]] = {}
        self._approving = asyncio.Lock()
        self._looked: set[tuple[str, str]] = set()  # pairs `look` read (in place or not)

    def since(self, token: str, spender: str) -> int | None:
        """The block from which `spender` may pull `token` (0: before we looked), or None."""
        return self._approved.get((token, spender))

    async def look(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Read the allowances of (token, spender) pairs never looked at, in one batch: one
        already in place (at least `KNOWN_IN_PLACE`, what a maximal approval stays at) is
        known from then on, so the first send paying with it needs no approval step. A pair
        found without one is not read again (its first send approves, after reading it)."""
        unknown = sorted({p for p in pairs if p not in self._approved and p not in self._looked})
        if not unknown:
            return
        self._looked.update(unknown)
        answers = await self.chain.batch([
            ("eth_call", [{"to": token, "data": ALLOWANCE + encode(
                ["address", "address"], [self.address, spender]).hex()}, "latest"])
            for token, spender in unknown])
        for pair, answer in zip(unknown, answers, strict=True):
            if int(answer, 16) >= KNOWN_IN_PLACE:
                self._approved.setdefault(pair, 0)

    async def ensure(self, token: str, spender: str, amount: int, base_fee: int) -> None:
        """Approve the protocol's own contract (never an arbitrary address) once per token."""
        if (token, spender) in self._approved:
            return
        async with self._approving:  # concurrent sends must not approve twice
            if (token, spender) not in self._approved:
                await self._approve(token, spender, amount, base_fee)

    async def _approve(self, token: str, spender: str, amount: int, base_fee: int) -> None:
        query = ALLOWANCE + encode(["address", "address"], [self.address, spender]).hex()
        allowance = int(await self.chain.eth_call(token, query), 16)
        if allowance < amount:
            data = APPROVE + encode(["address", "uint256"], [spender, MAX_UINT]).hex()
            sent = await self._sender.send(token, data, APPROVE_GAS, base_fee, key=None)
            if sent is None:
                raise RuntimeError("base fee above max_fee_per_gas: cannot approve")
            mined = await self._watch.mined(sent, sign=None)
            self._sender.nonces.confirm(sent.nonce)  # used either way: mined or taken
            if mined.receipt is None:
                raise RuntimeError(f"approve of {token}: its nonce went to another transaction")
            receipt = mined.receipt
            if int(receipt["status"], 16) != 1:
                raise RuntimeError(f"approve of {token} for {spender} reverted")
            block = int(receipt["blockNumber"], 16)
            self._approved[(token, spender)] = block
            tx_hash = mined.tx_hash or sent.hashes[-1]
            self._recent.add(tx_hash, receipt)
            self._approvals[tx_hash] = (block, token, spender, sent.raws[tx_hash])
        else:
            self._approved[(token, spender)] = 0

    def final(self, head: int) -> None:
        """Forget the raw bytes of approvals `FINALITY_DEPTH` below `head` (no reorg reaches)."""
        for tx_hash, (block, *_) in list(self._approvals.items()):
            if block <= head - FINALITY_DEPTH:
                del self._approvals[tx_hash]

    async def restore(self, orphaned: Sequence[str]) -> None:
        """An orphaned approval is sent again as it was signed (an approval is harmless to
        repeat, and the liquidations after it in nonce order need its nonce filled); until
        it is mined again, the allowance is not assumed."""
        for tx_hash in orphaned:
            if tx_hash not in self._approvals:
                continue
            _, token, spender, raw = self._approvals.pop(tx_hash)
            self._approved.pop((token, spender), None)
            log.warning("reorg: our approval was orphaned; sending it again", tx=tx_hash,
                        token=token, spender=spender)
            try:
                await self.chain.call("eth_sendRawTransaction", [raw])
            except RpcError as exc:  # already back in the pool, or its nonce went elsewhere
                log.info("re-sending the orphaned approval was refused", reason=exc.message)

    def forget(self) -> None:
        """Assume no allowance is in place (a dry-run fork was reset: its approvals are gone)."""
        self._approved.clear()
        self._looked.clear()
