"""What the keeper's MakerKeeper contract holds inside the Vat, mirrored from the Vat's notes.

The contract is the Flipper auctions' bidder, so two things can land in its Vat balances and
stay there: the **DAI** of a bid another bidder outbid (Flipper.tend/dent repay the last
bidder with `Vat.move`), and the **gems** of an auction it won that someone else dealt
(Flipper.deal is anyone's: it `Vat.flux`es the lot to the winner). MakerKeeper.payOut and
MakerKeeper.exitGem return them to the account as ERC-20s, which the journal then sees.

The Vat's own LibNote logs every call with topic 0 the selector and topics 1-3 the first
three arguments (the fourth is in the data's calldata copy), so the balances follow exactly:
`move(src, dst, rad)` and `suck(u, v, rad)` for DAI, `flux(ilk, src, dst, wad)` and
`slip(ilk, usr, wad)` (a join or exit) for gems. `credits` counts the notes that added to a
balance: a payout's or an exit's key names it, so two equal amounts at different times are
two sends, and the same one is never sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_utils.crypto import keccak

from keeper.types import Event, LogFilter


def _note(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex() + "00" * 28


MOVE = _note("move(address,address,uint256)")
SUCK = _note("suck(address,address,uint256)")
FLUX = _note("flux(bytes32,address,address,uint256)")
SLIP = _note("slip(bytes32,address,int256)")
DAI_OF = "0x" + keccak(text="dai(address)")[:4].hex()
GEM_OF = "0x" + keccak(text="gem(bytes32,address)")[:4].hex()


def _address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


def _ilk(topic: str) -> str:
    return bytes.fromhex(topic.removeprefix("0x")).rstrip(b"\0").decode("ascii", "replace")


def _int256(word: int) -> int:
    return word - 2**256 if word >= 2**255 else word


@dataclass
class KeeperVat:
    """MakerKeeper's DAI [rad] and gems per ilk [wad] in the Vat."""

    vat: str
    keeper: str
    dai: int = 0
    gems: dict[str, int] = field(default_factory=dict)
    credits: int = 0

    def subscription(self) -> LogFilter:
        return LogFilter((self.vat,), (MOVE, SUCK, FLUX, SLIP))

    def apply(self, event: Event) -> None:
        """One Vat note (any other log is ignored)."""
        if event.address != self.vat or event.removed or event.topic0 not in (
                MOVE, SUCK, FLUX, SLIP):
            return
        topic = event.topic0
        if topic in (MOVE, SUCK):
            src, dst = _address(event.topics[1]), _address(event.topics[2])
            rad = int(event.topics[3], 16)
            if dst == self.keeper:
                self.dai += rad
                self.credits += 1
            if src == self.keeper and topic == MOVE:
                self.dai -= rad
            return
        ilk = _ilk(event.topics[1])
        if ilk not in self.gems:
            return
        if topic == SLIP:
            if _address(event.topics[2]) == self.keeper:
                self.gems[ilk] += _int256(int(event.topics[3], 16))
            return
        src, dst = _address(event.topics[2]), _address(event.topics[3])
        raw = bytes.fromhex(event.data.removeprefix("0x"))
        wad = int.from_bytes(raw[64 + 4 + 96: 64 + 4 + 128], "big")
        if dst == self.keeper:
            self.gems[ilk] += wad
            self.credits += 1
        if src == self.keeper:
            self.gems[ilk] -= wad

    def reads(self, ilks: list[str]) -> list[tuple[str, str]]:
        """(to, calldata) of Vat.dai(keeper) and Vat.gem(ilk, keeper) for each ilk."""
        who = "00" * 12 + self.keeper[2:]
        return [(self.vat, DAI_OF + who)] + [
            (self.vat, GEM_OF + name.encode().ljust(32, b"\0").hex() + who) for name in ilks]

    def load(self, ilks: list[str], answers: list[str]) -> None:
        """Set the balances from the answers to `reads(ilks)`."""
        self.dai = int(answers[0], 16)
        self.gems = {name: int(a, 16) for name, a in zip(ilks, answers[1:], strict=True)}
        self.credits = 0
