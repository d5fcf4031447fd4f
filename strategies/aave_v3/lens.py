"""Read hundreds of Aave V3 accounts per `eth_call` with a lens that is never deployed.

The per-call read path (`market.read_accounts_per_call`) asks 2 + 5 * reserves view
functions per user: 22 `eth_call`s per account on a 4-reserve market, 2.2M for 100k
accounts. `contracts/lens/AaveLens.sol` makes the very same view calls on chain for a list
of users and returns their results packed. It is not deployed anywhere: each `eth_call`
carries a state override that puts its runtime code at `LENS_ADDRESS` (an address with
no code, derived from a hash), so one call reads `USERS_PER_CALL` accounts on any node
that supports state overrides (geth, erigon, reth, anvil and the large providers). A node
that refuses them makes the call fail, and `market.read_accounts` falls back to per-call
reads. Calls are sized to stay within the node's eth_call gas cap, and grouped into
JSON-RPC batches far below the provider's batch limit.

`read_rows` returns, per user, the raw words in the order of the per-call path
(configuration, e-mode, then per reserve: aToken scaled balance, variable debt scaled
balance, stable principal, stable rate, stable last update). The runtime code ships in
`aave_lens.json` (no compiler at run time); `keeper.devnet.scale.build_lens_artifact`
rebuilds it, and a test checks it against a fresh compile of the source.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak

from keeper.errors import StrategyError
from keeper.strategy import ChainReader

ARTIFACT = Path(__file__).with_name("aave_lens.json")
# An address nobody holds a key or code for: the last 20 bytes of a hash.
LENS_ADDRESS = "0x" + keccak(b"keeper:aave_v3:lens").hex()[-40:]
_READ = function_signature_to_4byte_selector("read(address,address[],address[])")
# Users per lens call, at most: on the 4-reserve devnet a user is 22 view calls, ~80k gas.
USERS_PER_CALL = 250
# The gas each call may use: geth-style nodes cap eth_call at 50M by default. A call is
# planned for half of it, at GAS_PER_WORD per word read (measured: ~3.6k with cold
# accesses), so a market with 30 reserves (152 words a user) gets ~40 users per call.
CALL_GAS = 50_000_000
GAS_PER_WORD = 4_000
# Lens calls per JSON-RPC batch, and batches in flight: an answer stays a few MB and the
# node is not flooded. (HttpRpc further splits at its own max_batch.)
CALLS_PER_BATCH = 8
BATCHES_IN_FLIGHT = 4
WORD = 32


class LensError(StrategyError):
    """The lens answered something other than the rows it was asked for."""


@functools.cache
def runtime_code() -> str:
    """AaveLens's runtime bytecode (0x-hex), from the shipped artifact."""
    return "0x" + str(json.loads(ARTIFACT.read_text())["runtime"]).removeprefix("0x")


def words_per_user(reserves: int) -> int:
    return 2 + 5 * reserves


def call_params(
    pool: str, tokens: Sequence[str], users: Sequence[str], block: int
) -> list[Any]:
    """`eth_call` params: AaveLens.read(pool, tokens, users) with the lens's code
    overridden in at LENS_ADDRESS."""
    args = encode(["address", "address[]", "address[]"], [pool, list(tokens), list(users)])
    call = {"to": LENS_ADDRESS, "data": "0x" + (_READ + args).hex(), "gas": hex(CALL_GAS)}
    return [call, hex(block), {LENS_ADDRESS: {"code": runtime_code()}}]


def decode_rows(answer: str, users: int, reserves: int) -> list[list[int]]:
    """Split the lens's packed big-endian words into one row per user."""
    raw = bytes.fromhex(answer.removeprefix("0x"))
    per_user = words_per_user(reserves)
    if len(raw) != users * per_user * WORD:
        raise LensError(
            f"lens returned {len(raw)} bytes for {users} users, expected {users * per_user * WORD}"
        )
    values = [int.from_bytes(raw[i : i + WORD], "big") for i in range(0, len(raw), WORD)]
    return [values[u * per_user : (u + 1) * per_user] for u in range(users)]


async def read_rows(
    chain: ChainReader, pool: str, tokens: Sequence[str], users: Sequence[str], block: int,
    *, users_per_call: int = USERS_PER_CALL,
) -> list[list[int]]:
    """One row of raw words per user (see the module docstring), read at `block`.

    `tokens` lists, per reserve in the pool's order, its aToken, variable debt token and
    stable debt token. Raises KeeperError when the node refuses the call.
    """
    reserves = len(tokens) // 3
    fits = CALL_GAS // 2 // (GAS_PER_WORD * words_per_user(reserves))
    per_call = max(1, min(users_per_call, fits))
    groups = [users[i : i + per_call] for i in range(0, len(users), per_call)]
    calls: list[tuple[str, Sequence[Any]]] = [
        ("eth_call", call_params(pool, tokens, g, block)) for g in groups
    ]
    limit = asyncio.Semaphore(BATCHES_IN_FLIGHT)

    async def one_batch(start: int) -> list[Any]:
        async with limit:
            return await chain.batch(calls[start : start + CALLS_PER_BATCH])

    # gather, not a TaskGroup: the first error propagates as itself (a KeeperError the
    # caller can fall back on), not wrapped in an ExceptionGroup; the rest are cancelled.
    pending = [asyncio.ensure_future(one_batch(i)) for i in range(0, len(calls), CALLS_PER_BATCH)]
    try:
        batches = await asyncio.gather(*pending)
    except BaseException:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise
    rows: list[list[int]] = []
    answers = (a for batch in batches for a in batch)
    for group, answer in zip(groups, answers, strict=True):
        rows.extend(decode_rows(str(answer), len(group), reserves))
    return rows
