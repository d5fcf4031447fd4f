"""Lane 0's chain: liquidations paid from the account's tokens, sent by several dispatches
while an earlier one's bundle is still out.

Only nonce lane 0 holds the account's tokens, and a lane holds one unresolved bundle
(keeper/execution/lanes.py): alone, a later nonce cannot land before the earlier one. So
a dispatch's wallet-paid liquidations that found lane 0 holding an earlier dispatch's
bundle were refused (`send-failed`, "every nonce lane holds a bundle"), and a ranking
sized while lane 0 was held paid nothing from the wallet. A crash step is ranked and
dispatched in waves (`Engine._rank`), so after its first wave lane 0 was held for the
rest of the step: in the auction benchmark with pools at the market (--arbitrage, quick
run, competitor mode) the keeper refused 302 to 464 sends so per run, and 18 of the public
bot's 49 first liquidations in one run were positions refused so.

Instead, a later dispatch joins: its wallet-paid transactions take lane 0's next nonces,
and its bundle holds the earlier ones still unresolved (the same signed bytes) before
them. Both bundles sit at the builders for the same blocks and share transactions, so a
builder includes at most one of them: the superset pays more (its tips are the earlier
one's plus its own), and each transaction is mined at most once whichever lands. If the
earlier bundle lands first, the superset can no longer (a nonce is used): so the new
transactions also go in a bundle of their own (`suffix`), valid only then. Every
transaction of the chain is `shared` (`Lane.hold`): not resent alone when not included.

Only transactions sent in plain bundles join; lane 0 holding one behind a backrun (an
oracle transaction: its liquidations are valued at the new answer) is not joined by a
plain bundle, but the backrun bundle takes the chain's transactions in (a price update
leaves them liquidatable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from keeper.chain.http import HttpRpc
from keeper.execution.bundles_journal import BundleBook
from keeper.execution.bundles_send import BundleSender, Live
from keeper.execution.lanes import Lane

JOINING = "joining"  # lane 0's holder while a transaction is signed for the chain


class OwnChain:
    """Lane 0's transactions sent in plain bundles that may still land."""

    def __init__(self, lane: Lane, rpc: HttpRpc, book: BundleBook, sender: BundleSender,
                 ) -> None:
        self.lane = lane
        self.rpc, self.book, self.sender = rpc, book, sender
        self.lives: list[Live] = []

    def open(self) -> bool:
        """May a wallet-paid transaction take lane 0 now: free, or holding only the
        chain's transactions (signed, or being signed for it: `JOINING`)."""
        lane = self.lane
        if lane.holder is None:
            return True
        return lane.held <= self.hashes() and (lane.holder in lane.held
                                               or lane.holder == JOINING)

    def claim(self, lane: Lane | None, *, own_tokens: bool, plain: bool) -> Lane | None:
        """The lane a transaction was given (`Lanes.take`; None: none was free). One paid
        from the account's tokens takes lane 0 while it is `open`, in a plain bundle
        (`plain`) marked as signing for the chain; behind a backrun as signing only (the
        backrun's bundle takes the chain in: `BundleLauncher._union`)."""
        if not own_tokens:
            return lane
        if lane is None and self.open():
            lane = self.lane
        if lane is self.lane:
            lane.holder = JOINING if plain else ""  # `Lane.hold` / `let_go` replace it
        return lane

    def hashes(self) -> set[str]:
        """The chain's transactions lane 0 still holds."""
        return {live.tx.tx_hash for live in self.lives if live.tx.tx_hash in self.lane.held}

    def add(self, live: Live) -> None:
        """`live` went (or goes) in the chain's next bundle; those no longer held leave."""
        held = self.lane.held
        self.lives = [x for x in self.lives if x.tx.tx_hash in held and x is not live]
        self.lives.append(live)

    def bundle(self, used: int) -> list[Live]:
        """The chain's transactions that may still land, in nonce order from `used` (the
        lane's mined count: lower ones were mined, whatever their followers saw yet), up
        to the first gap (a later nonce could not land without the missing one)."""
        held = self.lane.held
        run: list[Live] = []
        for live in sorted((x for x in self.lives if x.tx.tx_hash in held
                            and x.tx.nonce >= used), key=lambda x: x.tx.nonce):
            if run and live.tx.nonce != run[-1].tx.nonce + 1:
                break
            run.append(live)
        return run

    async def send(self, own: list[Live], first: int) -> None:
        """`own` (one dispatch's) in one bundle after the chain's earlier transactions still
        unresolved, and alone too when it follows some (`suffix`); the earlier ones' last
        target block raised to theirs first, on disk before the bundle leaves."""
        earlier = [x for x in self.bundle(0) if x not in own]
        used = 0
        if earlier:  # mined ones stay out, even if their followers have not seen it yet
            used = int(await self.rpc.call("eth_getTransactionCount",
                                           [self.lane.address, "latest"]), 16)
        lives = self.bundle(used)
        last = own[-1].tx.last_block
        for live in lives:
            if live.tx.last_block < last:
                self.book.extend(live.tx.tx_hash, last)
                live.tx = dataclasses.replace(live.tx, last_block=last)
        await self.sender.together(lives, first)
        if alone := suffix(lives, own):
            await self.sender.together(alone, first)


def suffix(chain: Sequence[Live], new: Sequence[Live]) -> list[Live]:
    """The new transactions alone when the chain's bundle holds earlier ones: valid once
    those are mined (by the earlier bundle), so the new ones are not stranded then."""
    fresh = {id(x) for x in new}
    return [x for x in chain if id(x) in fresh] if len(chain) > len(new) else []
