"""Who may hold a position: the users named by a pool's logs, read straight off the topics.

Cold start collects every account that ever touched the pool from its logs (Supply,
Borrow, Withdraw, Repay, LiquidationCall, collateral on/off, e-mode) and from aToken
BalanceTransfer logs: ~3-4 logs per account, 400k logs for 100k accounts. Decoding each
one with eth_abi (`events.decode`) costs ~50 us, 20 s at that size, although every user
but a liquidator sits in an indexed topic. `users_in` reads those topics directly and
gives the same users in the same order as `_users_of(events.decode(log))` over the same
logs (a test checks both on the devnet); any log it cannot read that way (a
LiquidationCall, whose liquidator is in the data, or a malformed topic) goes through
`events.decode`, which validates it as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from keeper.types import Event
from strategies.aave_v3 import events as ev

# topic0 -> (topic index of the user, the topic count a well-formed log has)
_USER_TOPIC: dict[str, tuple[int, int]] = {
    ev.TOPIC_SUPPLY: (2, 4),  # Supply(reserve, user, onBehalfOf indexed, ...): onBehalfOf
    ev.TOPIC_BORROW: (2, 4),  # Borrow(reserve, user, onBehalfOf indexed, ...): onBehalfOf
    ev.TOPIC_WITHDRAW: (2, 4),  # Withdraw(reserve, user indexed, to, amount): user
    ev.TOPIC_REPAY: (2, 4),  # Repay(reserve, user indexed, repayer, ...): user
    ev.TOPIC_COLLATERAL_ENABLED: (2, 3),
    ev.TOPIC_COLLATERAL_DISABLED: (2, 3),
    ev.TOPIC_USER_EMODE_SET: (1, 2),
    ev.TOPIC_BALANCE_TRANSFER: (2, 3),  # BalanceTransfer(from, to indexed, ...): to
}
_ADDRESS_PADDING = "0" * 24


def users_in(
    logs: Iterable[Event], slow: Callable[[ev.AaveEvent | None], tuple[str, ...]]
) -> list[str]:
    """Every user the logs name, first appearance first, without duplicates.

    `slow` maps a decoded record to its users (the strategy's `_users_of`); it is used
    for the logs the topics alone cannot answer.
    """
    seen: dict[str, None] = {}
    for log in logs:
        where = _USER_TOPIC.get(log.topic0)
        if where is not None and len(log.topics) == where[1]:
            word = log.topics[where[0]]
            if len(word) == 66 and word[2:26] == _ADDRESS_PADDING:
                seen.setdefault("0x" + word[26:])  # topics are lower-case 0x-hex
                continue
        for user in slow(ev.decode(log)):
            seen.setdefault(user)
    return list(seen)
