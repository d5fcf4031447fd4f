"""Flipper auctions, event-sourced: every live auction of one Flipper, kept from its logs.

The Flipper (dss flip.sol, liquidations 1.2 with LibNote) tells everything in logs:

- `Kick(id, lot, bid, tab, usr indexed, gal indexed)` when the Cat bites a vault;
- an anonymous `LogNote(sig, caller, arg1, arg2, data)` after each successful `tend`,
  `dent`, `deal`, `tick`, `yank` and `file` (LibNote's `note` modifier logs after the body,
  so a note is only there when the call succeeded): topic 0 is the selector padded to 32
  bytes, topic 1 the caller, topics 2 and 3 the first two arguments (`id`, `lot`), and the
  data is the ABI `bytes` of the first 224 bytes of calldata (the third argument, `bid`, is
  its 68th to 100th byte).

`apply` replays them with the block's timestamp (`tic` and `end` are `now` plus `ttl` or
`tau`), so the book equals `bids(id)` at every block without a read (the parity test proves
it). `sync` reads the parameters, the Kick logs since `start_block` and then `bids(id)` of
each kicked auction in one batch; auctions kicked before `start_block` are not followed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from keeper.errors import StrategyError
from keeper.strategy import ChainReader
from keeper.types import BlockRef, Event, LogFilter
from strategies.maker import flip_rules as rules
from strategies.maker.flip_rules import Bid, FlipParams

KICK = "0x" + keccak(text="Kick(uint256,uint256,uint256,uint256,address,address)").hex()


def _note(signature: str) -> str:
    """LibNote's topic 0: the function selector, left-aligned in 32 bytes."""
    return "0x" + keccak(text=signature)[:4].hex() + "00" * 28


TEND = _note("tend(uint256,uint256,uint256)")
DENT = _note("dent(uint256,uint256,uint256)")
DEAL = _note("deal(uint256)")
TICK = _note("tick(uint256)")
YANK = _note("yank(uint256)")
FILE_UINT = _note("file(bytes32,uint256)")
TOPICS = (KICK, TEND, DENT, DEAL, TICK, YANK, FILE_UINT)

SELECTOR = {name: "0x" + keccak(text=sig)[:4].hex() for name, sig in {
    "bids": "bids(uint256)", "beg": "beg()", "ttl": "ttl()", "tau": "tau()", "cat": "cat()",
    "kicks": "kicks()", "tend": "tend(uint256,uint256,uint256)",
    "dent": "dent(uint256,uint256,uint256)", "deal": "deal(uint256)", "tick": "tick(uint256)",
}.items()}


class FlipBookError(StrategyError):
    """A Flipper log the book cannot follow (a note for an auction it does not hold)."""


def _word(hexstr: str) -> int:
    return int(hexstr, 16)


def _address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def _note_third_argument(data: str) -> int:
    """The third uint256 argument in a LogNote's data: offset and length words, then the
    calldata (4-byte selector, then 32-byte words)."""
    raw = bytes.fromhex(data.removeprefix("0x"))
    return int.from_bytes(raw[64 + 4 + 64: 64 + 4 + 96], "big")


def _bytes32_text(topic: str) -> str:
    return bytes.fromhex(topic.removeprefix("0x")).rstrip(b"\0").decode("ascii", "replace")


def decode_bid(answer: str) -> Bid:
    """Flipper.bids(id)'s return value."""
    bid, lot, guy, tic, end, usr, gal, tab = decode(
        ["uint256", "uint256", "address", "uint48", "uint48", "address", "address", "uint256"],
        bytes.fromhex(answer.removeprefix("0x")))
    return Bid(bid, lot, guy.lower(), tic, end, usr.lower(), gal.lower(), tab)


def bids_call(auction_id: int) -> str:
    """Calldata of Flipper.bids(id)."""
    return SELECTOR["bids"] + encode(["uint256"], [auction_id]).hex()


class FlipBook:
    """The live auctions of one Flipper and its parameters, from its logs."""

    def __init__(self, flipper: str, kicker: str, params: FlipParams) -> None:
        self.flipper = flipper.lower()
        self.kicker = kicker.lower()  # the Cat: Flipper.kick sets guy = msg.sender
        self.params = params
        self.auctions: dict[int, Bid] = {}
        # Auctions kicked before the book's `start_block` (ids below this) are not followed.
        self.followed_from = 1

    def subscriptions(self) -> LogFilter:
        """The Flipper's Kick and the notes that change an auction or a parameter."""
        return LogFilter(addresses=(self.flipper,), topics0=TOPICS)

    def apply(self, events: Iterable[Event], block: BlockRef) -> None:
        """Replay one block's Flipper logs (in log order) at its timestamp."""
        now = block.timestamp
        for event in sorted((e for e in events if e.address == self.flipper and not e.removed),
                            key=lambda e: (e.transaction_index, e.log_index)):
            self._one(event, now)

    def _one(self, event: Event, now: int) -> None:
        topic = event.topic0
        if topic == KICK:
            auction_id, lot, bid, tab = decode(
                ["uint256"] * 4, bytes.fromhex(event.data.removeprefix("0x")))
            self.auctions[auction_id] = rules.kicked(
                tab, lot, bid, usr=_address(event.topics[1]), gal=_address(event.topics[2]),
                kicker=self.kicker, now=now, params=self.params)
            return
        if topic == FILE_UINT:
            self._file(_bytes32_text(event.topics[2]), _word(event.topics[3]))
            return
        if topic not in (TEND, DENT, DEAL, TICK, YANK):
            return
        auction_id = _word(event.topics[2])
        auction = self.auctions.get(auction_id)
        if auction is None:
            if auction_id < self.followed_from:
                return
            raise FlipBookError(
                f"flipper {self.flipper}: a note for auction {auction_id} the book lacks")
        sender = _address(event.topics[1])
        if topic == TEND:
            self.auctions[auction_id] = rules.after_tend(
                auction, self.params, now, sender, _note_third_argument(event.data))
        elif topic == DENT:
            self.auctions[auction_id] = rules.after_dent(
                auction, self.params, now, sender, _word(event.topics[3]))
        elif topic == TICK:
            self.auctions[auction_id] = rules.after_tick(auction, self.params, now)
        else:  # deal and yank delete the auction
            del self.auctions[auction_id]

    def _file(self, what: str, data: int) -> None:
        """Flipper.file(what, data): beg is a wad, ttl and tau are stored as uint48."""
        if what == "beg":
            self.params = replace(self.params, beg=data)
        elif what == "ttl":
            self.params = replace(self.params, ttl=data % 2**48)
        elif what == "tau":
            self.params = replace(self.params, tau=data % 2**48)


async def read_params(chain: ChainReader, flipper: str, block: int) -> tuple[FlipParams, str]:
    """Flipper's beg, ttl, tau and its Cat at `block`, in one batch."""
    answers = await chain.batch([
        ("eth_call", [{"to": flipper, "data": SELECTOR[name]}, hex(block)])
        for name in ("beg", "ttl", "tau", "cat")])
    beg, ttl, tau, cat = (str(a) for a in answers)
    return FlipParams(_word(beg), _word(ttl), _word(tau)), _address(cat)


async def read_bids(chain: ChainReader, flipper: str, ids: Sequence[int],
                    block: int) -> dict[int, Bid]:
    """Flipper.bids(id) of each id at `block`, in one batch."""
    answers = await chain.batch([
        ("eth_call", [{"to": flipper, "data": bids_call(i)}, hex(block)]) for i in ids])
    return {i: decode_bid(str(a)) for i, a in zip(ids, answers, strict=True)}


async def sync_book(chain: ChainReader, flipper: str, start_block: int,
                    at: BlockRef) -> FlipBook:
    """A book of the Flipper at block `at`: its parameters, and every auction kicked since
    `start_block` that is still live (one batch of `bids`)."""
    params, cat = await read_params(chain, flipper, at.number)
    book = FlipBook(flipper, cat, params)
    kicks = await chain.get_logs(LogFilter(addresses=(book.flipper,), topics0=(KICK,)),
                                 start_block, at.number)
    ids = sorted({_word("0x" + e.data.removeprefix("0x")[:64]) for e in kicks})
    bids = await read_bids(chain, book.flipper, ids, at.number)
    book.auctions = {i: b for i, b in bids.items() if b.live}
    count = _word(str(await chain.eth_call(book.flipper, SELECTOR["kicks"], at.number)))
    book.followed_from = ids[0] if ids else count + 1
    return book
