"""Where a backtest puts the keeper's transactions, and the trial block that "after-oracle"
needs; shared by the archive replay (`keeper.backtest.replay`) and the devnet price-path
replay (`keeper.backtest.devnet_replay`).

- "next-block": the keeper steps onto a mined block and its transactions wait in the pool
  for the next one (the top of the next block);
- "after-oracle": a block holding a price-feed update is first mined as a trial, up to and
  including the update, on an `evm_snapshot`; the engine steps onto it on copies of its
  books (`Keeper.step(trial=True)`: `Engine.what_if`), its executor simulates at the
  trial block and sends; its transactions are taken from the pool, the fork is reverted,
  and the caller rebuilds the block with them right after the update.

The fork's mining is the caller's (automine off): it sets the block's environment
(timestamp, base fee) before the trial and again before the rebuild.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from keeper.backtest.history import BacktestError
from keeper.chain.http import HttpRpc

Insert = Literal["after-oracle", "next-block"]
INSERTS: tuple[Insert, ...] = ("after-oracle", "next-block")


def insert_position(text: str) -> Insert:
    """`text` as an insert position; one clear error otherwise."""
    for position in INSERTS:
        if text == position:
            return position
    raise ValueError(f"an insert position must be after-oracle or next-block, not {text!r}")


async def pool_hashes(rpc: HttpRpc, sender: str | None) -> list[str]:
    """The hashes of `sender`'s transactions waiting in the node's pool, by nonce."""
    if sender is None:
        return []
    content = await rpc.call("txpool_content", [])
    pending = {a.lower(): txs for a, txs in (content.get("pending") or {}).items()}
    waiting = pending.get(sender.lower(), {})
    return [str(waiting[n]["hash"]) for n in sorted(waiting, key=int)]


async def pool_raws(rpc: HttpRpc, sender: str | None) -> list[str]:
    """`sender`'s transactions waiting in the pool, by nonce, as signed raw bytes (to send
    again, unchanged, after a revert)."""
    hashes = await pool_hashes(rpc, sender)
    if not hashes:
        return []
    return [str(r) for r in await rpc.batch(
        [("eth_getRawTransactionByHash", [h]) for h in hashes])]


async def trial_block(
    rpc: HttpRpc, *, number: int, sender: str | None,
    prefix: Callable[[], Awaitable[object]], step: Callable[[], Awaitable[None]],
) -> list[str]:
    """The keeper's transactions decided on the state right after a block's feed update.

    On a snapshot: `prefix` puts the block's transactions up to the update into the pool,
    the block (`number`) is mined, `step` steps the keeper onto it as a trial (and waits
    for its sends to reach the pool); then `sender`'s pooled transactions are taken, the
    pool emptied and the fork reverted. Leaves the fork at the block's parent, pool empty.
    """
    snapshot = await rpc.call("evm_snapshot", [])
    await prefix()
    await rpc.call("evm_mine", [])
    mined = int(await rpc.call("eth_blockNumber", []), 16)
    if mined != number:
        raise BacktestError(f"the trial of block {number} was mined as block {mined}")
    await step()
    decided = await pool_raws(rpc, sender)
    await rpc.call("anvil_dropAllTransactions", [])
    if await rpc.call("evm_revert", [snapshot]) is not True:
        raise BacktestError(f"block {number}: the fork could not revert its trial")
    return decided
