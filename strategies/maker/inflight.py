"""The keeper's barks sent but not yet seen mined, and the Dog room they will take.

The strategy sees Dog.Dirt and each ilk's dirt only from mined blocks (the Bark log). A
bark built in one block and still in flight at the next holds room the book does not
show yet: a bark planned without it may find Hole/hole full when it lands (Dog/liquidation-
limit-hit) or its partial dusty. The keeper's own sends land in nonce order, so the room
of those in flight is taken first. Mirrors no contract function: book-keeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from strategies.maker.book import VaultBook
from strategies.maker.math import DogIlk

# A bark not seen mined after this many blocks is taken to have failed or been dropped.
INFLIGHT_BLOCKS = 5


@dataclass
class InFlight:
    """(ilk, urn) -> (art the bark was planned on [wad], tab it adds [rad], block built)."""

    barks: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)
    head: int = 0  # the block the strategy last offered candidates at

    def sent(self, ilk: str, urn: str, *, art: int, tab: int) -> None:
        self.barks[(ilk, urn)] = (art, tab, self.head)

    def forget_landed(self, book: VaultBook, block: int) -> None:
        """At a new `block`: drop the barks that landed (the vault's art moved: its Bark is
        in the book, or another keeper's) or are older than INFLIGHT_BLOCKS."""
        self.head = block
        for (ilk, urn), (art, _tab, built) in list(self.barks.items()):
            vault = book.urns.get((ilk, urn))
            if vault is None or vault.art != art or block > built + INFLIGHT_BLOCKS:
                del self.barks[(ilk, urn)]

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.barks

    def taken(self, dog: DogIlk, ilk: str, added: int = 0) -> DogIlk:
        """The Dog's view with the room of the barks in flight taken (of `ilk` in its dirt,
        of every ilk in Dirt), and `added` [rad] more in Dirt."""
        return replace(dog, dirt=dog.dirt + self.dirt(ilk),
                       Dirt=dog.Dirt + self.dirt() + added)

    def dirt(self, ilk: str | None = None) -> int:
        """The tabs [rad] in flight: of `ilk` (its dirt), or of every ilk (Dirt)."""
        return sum(t for (i, _u), (_a, t, _b) in self.barks.items() if ilk in (None, i))
