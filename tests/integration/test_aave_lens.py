"""The lens read path (one eth_call for hundreds of users) equals the per-call read path.

On the test devnet, every seeded Aave V3 account plus accounts with no position at all is
read both ways at the same block, and the two must give identical `Account` objects; also
after real stable-rate borrows (the stable principal, rate and timestamp words), with the
lens split into calls of a few users (the grouping must not shift a row), and when the node
refuses state overrides `read_accounts` falls back to per-call reads. The shipped runtime
code must be what a deployment of `contracts/lens/AaveLens.sol` would store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pytest

from keeper.chain.http import HttpRpc, NodeError
from keeper.devnet.artifacts import aave, compile_solidity
from keeper.devnet.deployer import Deployer, rpc
from keeper.paths import project_root
from keeper.types import Event, LogFilter
from strategies.aave_v3 import discovery, lens
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import market as aave_market
from strategies.aave_v3.market import Market
from strategies.aave_v3.strategy import _USER_TOPICS as USER_TOPICS
from strategies.aave_v3.strategy import _users_of as users_of
from tests.conftest import Devnet, seeded_borrowers
from tests.integration.helpers import contract, tokens

PLANS = seeded_borrowers("aave_v3")
USERS = [p.address for p in PLANS]
NOBODY = ["0x" + f"{i:040x}" for i in (1, 2, 0xDEAD)]


async def _market(chain: HttpRpc, devnet: Devnet, block: int) -> Market:
    return await aave_market.discover(chain, devnet.info.aave_v3.addresses_provider, block)


def test_shipped_runtime_code_is_the_compiled_source(devnet: Devnet) -> None:
    root = project_root() / "contracts" / "lens"
    source = root / "AaveLens.sol"
    compiled = compile_solidity({"AaveLens.sol": source}, roots=[root])["AaveLens"]
    # An eth_call of creation code returns the runtime code a deployment would store.
    deployed = devnet.rpc("eth_call", {"data": "0x" + compiled.bytecode}, "latest")
    shipped = json.loads(lens.ARTIFACT.read_text())
    assert shipped["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest(), (
        "rebuild with keeper.devnet.scale.build_lens_artifact()")
    assert lens.runtime_code() == deployed
    assert devnet.rpc("eth_getCode", lens.LENS_ADDRESS, "latest") == "0x"  # nothing there


async def test_lens_equals_per_call_reads(devnet: Devnet) -> None:
    async with HttpRpc(devnet.info.rpc_url) as chain:
        block = int(await chain.call("eth_blockNumber", []), 16)
        market = await _market(chain, devnet, block)
        users = [*USERS, *NOBODY]
        sent = chain.requests_sent
        by_lens = await aave_market.read_accounts(chain, market, users, block)
        lens_requests = chain.requests_sent - sent
        reference = await aave_market.read_accounts_per_call(chain, market, users, block)
    assert by_lens == reference
    assert list(by_lens) == users
    # ~210 users: one lens call (one HTTP request), against ~4,600 per-value calls.
    assert lens_requests == 1
    assert any(a.emode_category == 1 for a in by_lens.values())
    assert any(len(a.config.collateral_indices) > 1 for a in by_lens.values())


async def test_lens_groups_and_stable_debt(devnet: Devnet) -> None:
    """Stable-rate borrows fill the stable words; small groups must keep rows aligned."""
    w3 = devnet.w3
    pool = contract(devnet, aave("protocol/pool/Pool.sol/Pool.json"), devnet.info.aave_v3.pool)
    configurator = contract(
        devnet, aave("protocol/pool/PoolConfigurator.sol/PoolConfigurator.json"),
        devnet.info.aave_v3.pool_configurator,
    )
    token = tokens(devnet)["USDC"]
    admin = Deployer(w3, w3.to_checksum_address(devnet.info.accounts.deployer))
    admin.send(configurator.functions.setReserveStableRateBorrowing(token.address, True))
    # Not USDC-collateral accounts: Aave refuses a stable borrow against the same asset.
    borrowers = [p.address for p in PLANS if "USDC" not in p.collateral_usd][:3]
    rpc(w3, "anvil_autoImpersonateAccount", True)
    try:
        for user in borrowers:
            rpc(w3, "anvil_setBalance", user, hex(10**20))
            Deployer(w3, user).send(pool.functions.borrow(token.address, 10**6, 1, 0, user))
    finally:
        rpc(w3, "anvil_autoImpersonateAccount", False)
    async with HttpRpc(devnet.info.rpc_url) as chain:
        block = int(await chain.call("eth_blockNumber", []), 16)
        market = await _market(chain, devnet, block)
        users: list[str] = [*borrowers, *USERS[:40], *NOBODY]
        tokens_ = [t for r in market.reserves
                   for t in (r.a_token, r.variable_debt_token, r.stable_debt_token)]
        rows = await lens.read_rows(chain, market.pool, tokens_, users, block, users_per_call=7)
        reference = await aave_market.read_accounts_per_call(chain, market, users, block)
    usdc = market.reserve(token.address)
    for who, row in zip(users, rows, strict=True):
        assert aave_market._account_from_row(market, who, row) == reference[who]
    stable = [reference[u].balances[usdc.asset] for u in users[:3]]
    assert all(s.stable_principal and s.stable_rate and s.stable_last_updated for s in stable)


class _NoOverrides:
    """A ChainReader whose node refuses state overrides, as some providers do."""

    def __init__(self, inner: HttpRpc) -> None:
        self.inner = inner
        self.chain_id = inner.chain_id
        self.refused = 0

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        return await self.inner.call(method, params)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if any(m == "eth_call" and len(p) > 2 for m, p in calls):
            self.refused += 1
            # geth's answer when it does not take a third eth_call parameter (what HttpRpc
            # raises for it: a NodeError, retryable, which must still fall back)
            raise NodeError("eth_call", {"code": -32602,
                                         "message": "too many arguments, want at most 2"})
        return await self.inner.batch(calls)

    async def eth_call(self, to: str, data: str, block: int | str = "latest") -> str:
        return await self.inner.eth_call(to, data, block)

    async def get_logs(self, log_filter: LogFilter, from_block: int,
                       to_block: int) -> list[Event]:
        return await self.inner.get_logs(log_filter, from_block, to_block)


async def test_read_accounts_falls_back_when_the_node_refuses_the_lens(devnet: Devnet) -> None:
    async with HttpRpc(devnet.info.rpc_url) as inner:
        chain = _NoOverrides(inner)
        block = int(await inner.call("eth_blockNumber", []), 16)
        market = await _market(inner, devnet, block)
        users = USERS[:25]
        accounts = await aave_market.read_accounts(chain, market, users, block)
        reference = await aave_market.read_accounts_per_call(inner, market, users, block)
    assert chain.refused == 1
    assert accounts == reference


@pytest.mark.parametrize("size", [0, 1])
def test_decode_rows_rejects_a_short_answer(size: int) -> None:
    words = lens.words_per_user(4)
    answer = "0x" + "00" * (32 * words * 2 - 32 * size)
    if size == 0:
        assert len(lens.decode_rows(answer, 2, 4)) == 2
    else:
        with pytest.raises(lens.LensError):
            lens.decode_rows(answer, 2, 4)


async def test_users_from_topics_equal_decoded_users(devnet: Devnet) -> None:
    """Cold start's fast user discovery equals decoding every log, on the devnet's logs."""
    async with HttpRpc(devnet.info.rpc_url) as chain:
        head = int(await chain.call("eth_blockNumber", []), 16)
        market = await _market(chain, devnet, head)
        logs = await chain.get_logs(LogFilter((market.pool,), USER_TOPICS), 0, head)
        logs += await chain.get_logs(
            LogFilter(tuple(r.a_token for r in market.reserves), (ev.TOPIC_BALANCE_TRANSFER,)),
            0, head,
        )
    expected = list(dict.fromkeys(u for e in logs for u in users_of(ev.decode(e))))
    assert len(expected) > 200
    assert discovery.users_in(logs, users_of) == expected
