"""Morpho Blue positions a feed's next answer would open, before it is posted.

The book mirrors each FeedOracle from its feeds' answers (`MorphoBook.answers`), so a
hypothetical answer is the book's answer swapped for it while the strategy's own
`candidates` runs, then put back; nothing else reads the book meanwhile (this is not
async). Markets are few and positions per market are read in one pass, so no screen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from keeper.types import BlockRef, Candidate
from strategies.morpho_blue.book import MorphoBook


def feed_answers(book: MorphoBook) -> dict[str, int]:
    """Each feed a mirrored oracle follows, with the answer the book holds now."""
    return {f: book.answers[f] for f in book.feeds if f in book.answers}


def candidates_if(
    book: MorphoBook, candidates: Callable[[BlockRef], Iterable[Candidate]], block: BlockRef,
    feed: str, answers: Sequence[int],
) -> list[list[Candidate]]:
    """Per answer (ever further in one direction), the candidates of the positions it opens
    and no answer before it (nor the current one) did."""
    feed = feed.lower()
    if feed not in book.answers:
        return [[] for _ in answers]
    seen = {c.account for c in candidates(block)}
    held = book.answers[feed]
    out: list[list[Candidate]] = []
    try:
        for answer in answers:
            book.answers[feed] = answer
            opened = [c for c in candidates(block) if c.account not in seen]
            seen.update(c.account for c in opened)
            out.append(opened)
    finally:
        book.answers[feed] = held
    return out
