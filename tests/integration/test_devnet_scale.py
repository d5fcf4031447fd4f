"""The BorrowerFactory opens real Aave V3 positions at the health factors the plans aim at.

A small population (40 positions, two factory transactions) is opened on the test devnet
the way `keeper.devnet.scale` builds its 10k and 100k devnets: collateral feeds raised
while opening, then put back. Every clone must then hold a real position whose on-chain
health factor is the plan's target (or above it, where the borrow limit capped the debt),
and the keeper's lens must read the clones exactly as the per-call path does.
"""

from __future__ import annotations

from eth_abi.abi import decode
from eth_utils.abi import function_signature_to_4byte_selector

from keeper.chain.http import HttpRpc
from keeper.devnet.scale import (
    OPEN_PRICE_FACTOR,
    deploy_factory,
    encode_positions,
    open_positions,
    plan_aave_positions,
    post_prices,
)
from keeper.devnet.tokens import DEFAULT_TOKENS
from strategies.aave_v3 import events as ev
from strategies.aave_v3 import market as aave_market
from tests.conftest import Devnet

ACCOUNT_DATA = "0x" + function_signature_to_4byte_selector("getUserAccountData(address)").hex()
COUNT = 40


async def test_factory_positions_sit_at_their_targets(devnet: Devnet) -> None:
    url, info = devnet.anvil.rpc_url, devnet.info
    latest = devnet.rpc("eth_getBlockByNumber", "latest", False)
    assert isinstance(latest, dict)
    plans = plan_aave_positions(COUNT, seed=3)
    tokens = {s: t.address for s, t in info.tokens.items()}
    positions = encode_positions(plans, tokens, {s.symbol: s for s in DEFAULT_TOKENS})
    try:
        factory = deploy_factory(url, info, positions)
        post_prices(url, info, OPEN_PRICE_FACTOR)
        sent, first, last = open_positions(url, info, factory, positions, per_tx=COUNT // 2)
        post_prices(url, info, {})
        logs = devnet.rpc("eth_getLogs", {"fromBlock": hex(first), "toBlock": hex(last),
                                          "address": info.aave_v3.pool,
                                          "topics": [ev.TOPIC_SUPPLY]})
        assert isinstance(logs, list)
        # Supply's onBehalfOf, in creation order: the clones, one per position.
        users = list(dict.fromkeys("0x" + str(log["topics"][2])[26:] for log in logs))
        head = int(str(devnet.rpc("eth_blockNumber")), 16)
        on_target = 0
        for user, plan in zip(users, plans, strict=True):
            answer = devnet.rpc("eth_call", {"to": info.aave_v3.pool,
                                             "data": ACCOUNT_DATA + "00" * 12 + user[2:]},
                                hex(head))
            health = decode(["uint256"] * 6, bytes.fromhex(str(answer)[2:]))[5] / 1e18
            target = float(plan.target_health)
            assert health >= target * (1 - 1e-4), (user, plan.kind, health, target)
            on_target += abs(health - target) < target * 1e-4
        assert sent == 2
        assert on_target >= COUNT * 0.75  # the rest: capped by the borrow limit, above it
        async with HttpRpc(info.rpc_url) as chain:
            market = await aave_market.discover(chain, info.aave_v3.addresses_provider, head)
            by_lens = await aave_market.read_accounts(chain, market, users, head)
            reference = await aave_market.read_accounts_per_call(chain, market, users, head)
        assert by_lens == reference
        assert all(a.config.is_borrowing_any for a in by_lens.values())
    finally:
        devnet.rpc("evm_setBlockGasLimit", latest["gasLimit"])  # not part of the snapshot
