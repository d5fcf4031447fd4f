"""`resolve_feeds`: which contract's AnswerUpdated logs move each Aave price source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keeper.chain.http import RpcError
from keeper.types import Event, LogFilter
from strategies.aave_v3.market import AGGREGATOR, ZERO_ADDRESS, resolve_feeds

PROXY = "0x" + "11" * 20
AGG = "0x" + "22" * 20
PLAIN = "0x" + "33" * 20
BROKEN_PROXY = "0x" + "44" * 20


class FakeReader:
    """Answers `aggregator()` like a Chainlink proxy for PROXY, reverts for PLAIN."""

    chain_id = 1

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int | str]] = []

    async def eth_call(self, to: str, data: str, block: int | str = "latest") -> str:
        self.calls.append((to, data, block))
        assert data == AGGREGATOR
        if to == PROXY:
            return "0x" + AGG.removeprefix("0x").rjust(64, "0")
        if to == BROKEN_PROXY:
            return "0x" + "00" * 32
        raise RpcError("eth_call", {"code": 3, "message": "execution reverted"})

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        raise AssertionError("not used")

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        raise AssertionError("not used")

    async def get_logs(self, log_filter: LogFilter, from_block: int, to_block: int) -> list[Event]:
        raise AssertionError("not used")


async def test_a_proxy_resolves_to_its_aggregator_and_others_to_themselves() -> None:
    reader = FakeReader()
    feeds = await resolve_feeds(reader, [PROXY, PLAIN, PROXY, BROKEN_PROXY, ZERO_ADDRESS], 7)
    assert feeds == {PROXY: AGG, PLAIN: PLAIN, BROKEN_PROXY: BROKEN_PROXY,
                     ZERO_ADDRESS: ZERO_ADDRESS}
    # Each distinct non-zero source asked once, pinned at the discovery block.
    assert sorted(c[0] for c in reader.calls) == sorted([PROXY, PLAIN, BROKEN_PROXY])
    assert {c[2] for c in reader.calls} == {7}
