"""Signing and broadcasting for one account: the only code that holds the key.

Each transaction takes its nonce from the account's `NonceManager`. One sent
for an intent is journaled (`record_signed`, on disk) before it is broadcast,
and marked sent after, so a crash in between leaves its raw bytes to re-send.
A refusal by the node is classified (`classify_send_error`) and the nonce is
handed back or skipped past accordingly. A broadcast whose answer was lost (a dropped
connection, a timeout: a `RetryableError` that is not the node's refusal) may have reached
the node: it counts as sent, its nonce used, and the mining watch follows it (it finds its
receipt, or sends the journaled bytes again when the node does not have it).

`send_all` does the same for several transactions at once, the way a block that makes
several accounts liquidatable needs it: nonces in the given order, each signed, the
signed ones journaled in one database transaction (one fsync), broadcast in one JSON-RPC
batch, and marked sent in one database transaction; the first one goes just before the
others, alone, so that it leaves after one signature and one fsync.

`presign` signs calls ahead (a prepared level's, keeper/execution/armed.py) with the
nonces the stream would hand them now; `send_all` sends such a transaction only if it
still `fits` (the nonce reserved then is the one it was signed with), and then writes
the records before the broadcast without the fsync and syncs them after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from eth_account.signers.local import LocalAccount

from keeper.chain.http import HttpRpc, RpcError
from keeper.errors import RetryableError, RpcUnavailable
from keeper.execution.fees import FeePolicy, Fees
from keeper.execution.journal import Journal, Signed
from keeper.execution.journal_schema import LIVE_TX
from keeper.execution.mining import Pending, SendRefusal, classify_send_error
from keeper.execution.nonces import NonceManager
from keeper.execution.signing import TxSigner

log = structlog.get_logger(__name__)

CANCEL_GAS = 21_000  # a zero-value transfer to itself: frees a nonce, does nothing


class SendRefused(RpcError):
    """`eth_sendRawTransaction` was refused; `refusal` says how (`classify_send_error`)."""

    def __init__(self, refusal: SendRefusal, method: str, message: str) -> None:
        super().__init__(method, {"code": None, "message": message})
        self.refusal = refusal


SEND = "eth_sendRawTransaction"


@dataclass(frozen=True)
class Unsigned:
    """One call to sign and send for a journal intent (`Sender.send`'s arguments)."""

    to: str
    data: str
    gas: int
    key: str
    profit_cap_wei: int = 0
    priority_fee: int | None = None


@dataclass(frozen=True)
class Presigned:
    """A transaction signed before it is decided (a prepared level's, keeper/execution/armed.py):
    it stands for exactly one call with one nonce and one tip."""

    to: str
    data: str
    gas: int
    nonce: int
    max_fee: int
    priority_fee: int
    tx_hash: str
    raw: str
    claimable: bool = False  # its keys were free in the journal at arming (ahead.py)

    def fits(self, call: Unsigned, nonce: int, fees: Fees, base_fee: int) -> bool:
        """Sendable as `call` with `nonce` now: the same call, gas and tip, the nonce the
        stream handed out, and a max fee the next block's base fee cannot pass (it rises by
        at most 1/8 a block), or at least the fee cap's offer now."""
        return (self.nonce == nonce and self.to == call.to and self.data == call.data
                and self.gas == call.gas and self.priority_fee == fees[1]
                and self.max_fee >= min(fees[0], base_fee + base_fee // 8 + 1 + fees[1]))


class Sender:
    """Signs EIP-1559 transactions of `account` and broadcasts them, journaled first."""

    def __init__(
        self, chain: HttpRpc, account: LocalAccount, journal: Journal, fees: FeePolicy,
        nonces: NonceManager,
    ) -> None:
        self.chain = chain
        self.account = account
        self.signer = TxSigner(account)  # signing.py: eth_account's bytes, 4x faster
        self.address = account.address.lower()
        self.journal = journal
        self.fees = fees
        self.nonces = nonces
        self._unsynced: list[tuple[str, str]] = []  # sent marks of `sync=False` sends
        # A lone broadcast (a volley's first transaction) goes here when set: the chain
        # follower's subscribed WebSocket (`WsSubscriptions.request`), one frame on a socket
        # already open. Unavailable (socket down, no answer): the HTTP endpoint, same bytes.
        self.fast: Callable[[str, Sequence[Any]], Awaitable[Any]] | None = None

    async def sign(
        self, to: str, data: str, gas: int, nonce: int, fees: Fees
    ) -> tuple[str, str]:
        """(tx hash, raw signed tx) of a call with these fees and this nonce."""
        return self.signer.sign(self.chain.chain_id, to, data, gas=gas, nonce=nonce, fees=fees)

    async def presign(
        self, calls: Sequence[Unsigned], base_fee: int, first_nonce: int,
        known: Mapping[str, Presigned] | None = None,
    ) -> dict[str, Presigned]:
        """Sign `calls` now, by key, with the nonces `send_all` would give them if it ran
        now with `first_nonce` next (calls above the fee cap take none), for `send_all(...,
        presigned=...)` to send later without signing. Nothing is reserved or journaled:
        `send_all` sends one only if the nonce it reserves then is the one it was signed
        with (a nonce another send used is never handed out again). `known`: transactions
        signed before, reused when they are the same call, nonce and fees. The event loop
        runs between two signatures (a feed's log is heard meanwhile)."""
        out: dict[str, Presigned] = {}
        nonce = first_nonce
        for call in calls:
            fees = self._fees(base_fee, call.priority_fee)
            if fees is None:
                continue
            done = known.get(call.key) if known is not None else None
            if done is None or not done.fits(call, nonce, fees, base_fee) or \
                    (done.max_fee, done.priority_fee) != fees:
                tx_hash, raw = await self.sign(call.to, call.data, call.gas, nonce, fees)
                done = Presigned(call.to, call.data, call.gas, nonce, *fees, tx_hash, raw)
                await asyncio.sleep(0)
            out[call.key] = done
            nonce += 1
        return out

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
        fees = self._fees(base_fee, priority_fee)
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
            await self.chain.call(SEND, [raw])
        except RpcError as exc:
            refused = await self._refused(nonce, exc)
            if refused is not None:
                raise refused from None
        except RetryableError as exc:
            _unanswered([tx_hash], exc)  # possibly sent: followed as sent
        if key is not None:
            self.journal.mark_sent(key, tx_hash)
        return Pending(key, nonce, fees, gas, profit_cap_wei, [tx_hash], {tx_hash: raw})

    def _fees(self, base_fee: int, priority_fee: int | None) -> Fees | None:
        policy = self.fees
        if priority_fee is not None and priority_fee != policy.priority_fee:
            policy = FeePolicy(policy.max_fee_per_gas, min(priority_fee, policy.max_fee_per_gas))
        return policy.fees(base_fee)

    async def _refused(self, nonce: int, exc: RpcError) -> SendRefused | None:
        """The node refused the send of `nonce`: hand the nonce back or skip past it, and
        say how (None: "already known", it is in the pool as if just sent)."""
        refusal = classify_send_error(exc.message)
        if refusal == "known":
            return None
        if refusal == "nonce-low":  # used: never hand it out again
            chain_nonce = int(await self.chain.call(
                "eth_getTransactionCount", [self.address, "pending"]), 16)
            self.nonces.confirm(nonce)
            await self.nonces.skip_to(chain_nonce)
        else:
            self.nonces.release(nonce)
        return SendRefused(refusal, exc.method, exc.message)

    async def send_all(
        self, calls: Sequence[Unsigned], base_fee: int,
        presigned: Mapping[str, Presigned] | None = None, *, sync: bool = True,
        alone_first: bool = True,
    ) -> list[Pending | SendRefused | None]:
        """`send` of every call, together: nonces in the order given (so the nonce order
        is the caller's order), each signed, journaled in one database transaction synced
        once, broadcast in one JSON-RPC batch, then marked sent in one database transaction.
        The first call goes alone just before the others (one signature and one fsync, not
        all of them, stand before it), the rest together right after its answer. Each
        result is its `Pending`, its refusal, or None (above the fee cap).

        Exactly once holds as for `send`: every intent was claimed before, and each signed
        transaction is on disk before it leaves. With `presigned` (a prepared level's
        transactions, `presign`), a call whose pre-signed transaction `fits` the nonce it is
        handed now is sent as signed then, the others are signed now; their records are
        written before the broadcast without the fsync (they survive the process: a restart
        re-broadcasts the same bytes) and synced with the `sent` marks right after it, so no
        signature and no fsync stand between the feed's log and the first send. `sync=False`
        (a pre-signed volley's first send, with the rest to follow at once): the marks are
        left unsynced too, for the next pre-signed `send_all` or `flush` to sync.
        `alone_first=False`: every call in one batch (the rest of a volley whose first left).
        """
        fast = presigned is not None
        results: list[Pending | SendRefused | None] = [None] * len(calls)
        offers = [self._fees(base_fee, c.priority_fee) for c in calls]
        order = [index for index, fees in enumerate(offers) if fees is not None]
        marks: list[tuple[str, str]] = []  # pre-signed: marked (and synced) after the last
        try:
            for wave in (order[:1], order[1:]) if alone_first else (order,):
                if not wave:
                    continue
                try:
                    signed = await self._journaled(calls, offers, wave, base_fee, presigned)
                except Exception as exc:
                    if wave[0] == order[0]:
                        raise  # nothing was broadcast
                    # The first has left: it is followed; the others are reported refused.
                    for index in wave:
                        results[index] = SendRefused("other", "sign",
                                                     f"{type(exc).__name__}: {exc}")
                    continue
                refusals = await self._broadcast([record for _, record in signed])
                done: list[tuple[str, str]] = []
                for (index, record), refusal in zip(signed, refusals, strict=True):
                    if refusal is not None:
                        results[index] = refusal
                        continue
                    assert isinstance(record.raw_tx, str)
                    done.append((record.key, record.tx_hash))
                    # The fees it was signed with (a pre-signed one's may differ from
                    # `offers`): a replacement bumps from these.
                    results[index] = Pending(
                        record.key, record.nonce, (record.max_fee, record.priority_fee),
                        calls[index].gas, calls[index].profit_cap_wei, [record.tx_hash],
                        {record.tx_hash: record.raw_tx})
                if fast:
                    marks += done
                elif done:
                    self.journal.mark_sent_all(done)
        finally:
            if marks and not sync:
                self.journal.mark_sent_all(marks)
                self._unsynced += marks
            elif marks:  # one fsync, after every wave left: the records written before it too
                # (the unsynced marks of earlier sends with them: a synced commit takes the
                # whole log to disk; marked again, one already mined would be refused)
                self.journal.mark_sent_all(marks, durable=True)
                self._unsynced = []
        return results

    def flush(self) -> None:
        """Sync what `send_all(..., sync=False)` left unsynced: marked sent again, synced, for
        those still in flight (a later status of one was written after it: synced then)."""
        if self._unsynced:
            live = [(key, tx_hash) for key, tx_hash in self._unsynced
                    if _in_flight(self.journal, key, tx_hash)]
            if live:
                self.journal.mark_sent_all(live, durable=True)
            self._unsynced = []

    async def _journaled(
        self, calls: Sequence[Unsigned], offers: Sequence[Fees | None], wave: Sequence[int],
        base_fee: int, presigned: Mapping[str, Presigned] | None,
    ) -> list[tuple[int, Signed]]:
        """Nonces in order, signatures (or the pre-signed ones that fit), and one journal
        write for `wave`'s calls (synced unless `presigned`); on any failure every nonce of
        the wave is handed back (nothing was broadcast)."""
        signed: list[tuple[int, Signed]] = []
        try:
            for index in wave:
                call, fees = calls[index], offers[index]
                assert fees is not None
                nonce = await self.nonces.reserve()
                signed.append((index, Signed(call.key, nonce, "", "", *fees)))
                ready = presigned.get(call.key) if presigned is not None else None
                if ready is not None and ready.fits(call, nonce, fees, base_fee):
                    signed[-1] = (index, Signed(call.key, nonce, ready.tx_hash, ready.raw,
                                                ready.max_fee, ready.priority_fee))
                    continue
                tx_hash, raw = await self.sign(call.to, call.data, call.gas, nonce, fees)
                signed[-1] = (index, Signed(call.key, nonce, tx_hash, raw, *fees))
            self.journal.record_signed_all([record for _, record in signed],
                                           durable=presigned is None)
        except BaseException:
            for _, record in signed:
                self.nonces.release(record.nonce)
            raise
        return signed

    async def _send_one(self, raw: str | bytes) -> None:
        """`eth_sendRawTransaction` of one journaled transaction: over `fast` when it is up,
        else (or when it cannot tell) over HTTP; sending the same bytes twice is harmless
        (the node answers "already known", which is not a refusal)."""
        if self.fast is not None and isinstance(raw, str):
            try:
                await self.fast(SEND, [raw])
                return
            except RpcUnavailable:
                pass
        await self.chain.call(SEND, [raw])

    async def _broadcast(self, signed: Sequence[Signed]) -> list[SendRefused | None]:
        """Send every journaled transaction in one request; each one's refusal or None."""
        if len(signed) == 1:
            try:
                await self._send_one(signed[0].raw_tx)
            except RpcError as exc:
                return [await self._refused(signed[0].nonce, exc)]
            except RetryableError as exc:
                _unanswered([signed[0].tx_hash], exc)
            return [None]
        if not signed:
            return []
        try:
            await self.chain.batch([(SEND, [s.raw_tx]) for s in signed])
            return [None] * len(signed)
        except RpcError:
            pass  # at least one was refused; the batch does not say which got through
        except RetryableError as exc:
            _unanswered([s.tx_hash for s in signed], exc)
            return [None] * len(signed)
        # The ones the node has (in its pool, or already mined) got through; each other one
        # is sent again alone, for its own answer (refused again, or "already known").
        try:
            found = await self.chain.batch(
                [("eth_getTransactionByHash", [s.tx_hash]) for s in signed])
        except RetryableError as exc:  # which were refused is unknown: the watches tell
            _unanswered([s.tx_hash for s in signed], exc)
            return [None] * len(signed)
        out: list[SendRefused | None] = []
        for record, there in zip(signed, found, strict=True):
            if there is not None:
                out.append(None)
                continue
            try:
                await self.chain.call(SEND, [record.raw_tx])
                out.append(None)
            except RpcError as exc:
                out.append(await self._refused(record.nonce, exc))
            except RetryableError as exc:
                _unanswered([record.tx_hash], exc)
                out.append(None)
        return out


def _unanswered(hashes: Sequence[str], exc: RetryableError) -> None:
    """Broadcasts whose answer was lost: followed as sent (see the module docstring)."""
    log.warning("send not answered; following it as sent", txs=list(hashes), reason=str(exc))


def _in_flight(journal: Journal, key: str, tx_hash: str) -> bool:
    """`tx_hash` of intent `key` is still signed or sent (may be marked sent again)."""
    record = journal.get(key)
    return record is not None and any(
        t.tx_hash == tx_hash and t.status in LIVE_TX for t in record.transactions)
