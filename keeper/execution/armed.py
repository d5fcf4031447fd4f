"""Armed levels: a prepared level's transactions built and signed before its answer arrives.

A prepared level (keeper/prepared.py) holds the liquidations a feed's next answer would
open. Arming it (`Dispatcher.arm`) does, off the critical path, what the dispatch of that
level would do first: group its opportunities into sends and build each send's `TxIntent`
(`IntentBuilder`), and sign the first few transactions of the volley with the nonces the
account's stream would hand them now and the fees for the next block's base fee and each
send's bid (`Sender.presign`). When the answer arrives, the level is dispatched with its
`Armed`: the intents are taken as built (with the posting block set on the opportunity,
for the simulation), and `Sender.send_all` sends a pre-signed transaction only if it
`fits` what it would sign then: the same call, gas and tip, the very nonce the stream
reserves for it then (a nonce another send took is never handed out twice, so a stale
pre-signed transaction cannot be sent), and a max fee that still covers the next block.
Anything else is signed on the spot, as before.

Nothing of an armed level is journaled or reserved until it is dispatched: the claim, the
signed record (its raw bytes, before the broadcast) and the `sent` mark are written then,
as for any send (see `Sender.send_all` for where the fsync goes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from keeper.batching import Send
from keeper.execution.sender import Presigned
from keeper.types import Opportunity, TxIntent

# Transactions signed ahead per level: the first sends are what a race is won with; the
# rest of a deep level is signed when it goes (about 0.5 ms each on the devnet's 2 cores).
PRESIGNED_PER_LEVEL = 16


def send_keys(send: Send) -> tuple[str, ...]:
    """What a send (a liquidation, or a flash batch) is known by: its opportunities' keys."""
    return tuple(o.key for o in send)


@dataclass(frozen=True)
class Armed:
    """A level's sends as dispatching it now would make them: each send's intent (by
    `send_keys`), and the first transactions of the volley signed ahead (by lead key).
    `nonce` and `base_fee`: the next nonce and the base fee they were signed for."""

    intents: Mapping[tuple[str, ...], TxIntent]
    presigned: Mapping[str, Presigned]
    nonce: int
    base_fee: int

    def intent(self, send: Send) -> TxIntent | None:
        """The intent built for `send` at arming, carrying `send`'s own opportunities (their
        block is the one that posted the answer: simulations run there)."""
        built = self.intents.get(send_keys(send))
        if built is None:
            return None
        # Built directly, not by `dataclasses.replace` (~4 us against ~1 us): a fired level
        # builds every send's intent before its first transaction leaves.
        return TxIntent(send[0], built.call, built.gas_limit, built.spender, tuple(send[1:]))

    def stale(self, nonce: int | None, base_fee: int) -> bool:
        """Signed for another nonce stream position or base fee: arm again."""
        return nonce != self.nonce or base_fee != self.base_fee

    @property
    def signed(self) -> int:
        return len(self.presigned)

    @property
    def lead(self) -> tuple[str, ...]:
        """The keys (`send_keys`) of the send signed with the first nonce: the transaction
        that leaves first when the level fires. () when none was signed for it."""
        key = next((k for k, p in self.presigned.items() if p.nonce == self.nonce), None)
        return next((keys for keys in self.intents if keys[0] == key), ()) if key else ()


_FIELDS = tuple(f.name for f in dataclasses.fields(Opportunity))
_set = object.__setattr__


def at_block(opportunities: Iterable[Opportunity], block: int) -> list[Opportunity]:
    """Each of `opportunities` as valued at `block` (`dataclasses.replace(o, block=block)`),
    copied field by field: a fired level stamps each of its liquidations with the block that
    posted the answer before its first transaction leaves, and `replace` took ~13 us each
    (0.65 ms for a level of 50) against ~5 us this way. `Opportunity` has slots and no
    `__post_init__`, so a copy of its fields is what `replace` would make."""
    out = []
    for opp in opportunities:
        if type(opp) is not Opportunity:  # a subclass or a stand-in: the general way
            out.append(dataclasses.replace(opp, block=block))
            continue
        copy = object.__new__(Opportunity)
        for name in _FIELDS:
            _set(copy, name, getattr(opp, name))
        _set(copy, "block", block)
        out.append(copy)
    return out


def ordered(armed_intents: Mapping[tuple[str, ...], TxIntent],
            sends: Sequence[Send]) -> list[TxIntent]:
    """The built intents of `sends`, in their order (sends that failed to build left out)."""
    return [armed_intents[k] for k in map(send_keys, sends) if k in armed_intents]
