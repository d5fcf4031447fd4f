"""The devnet's second Aave market, v3.6 (aave-v3-origin 3.6.0), on the session devnet.

What the deploy promises, read back from the chain: the market and its reserves as
configured, e-mode bitmaps with an LT-0 collateral, the seeded borrower shapes (through
getUserAccountData), a liquidation straight through the pool, the v3.3 dust rule, a
grace period that blocks a liquidation, a deficit, the price-oracle sentinel, a price
source that moves without an event, and a Chainlink proxy whose aggregator switches.
Each test runs in the `devnet` fixture's snapshot, reverted afterwards.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import RPCEndpoint

from keeper.devnet.aave_origin import (
    EMODES,
    GRACE_PERIOD_RESERVE,
    MAX_GRACE_PERIOD,
    RESERVES,
    WSTETH_RATIO,
    end_grace_period,
    start_grace_period,
)
from keeper.devnet.aave_origin_artifacts import (
    configurator_artifact,
    eac_aggregator_proxy,
    origin_artifacts,
    pool_artifact,
)
from keeper.devnet.aave_origin_seed import SHAPES, population_plans
from keeper.devnet.info import AaveV36Info
from keeper.devnet.tokens import devnet_contracts, mintable_erc20, price_feed, to_feed_answer
from keeper.devnet.uniswap import pair_artifact
from tests.conftest import Devnet
from tests.integration.helpers import MAX_UINT, WAD, contract, deployer, liquidator, set_price

BASE = 10**8  # AaveOracle's USD base unit


def _info(devnet: Devnet) -> AaveV36Info:
    info = devnet.info.aave_v3_6
    assert info is not None, "the devnet has no v3.6 market"
    return info


def _pool(devnet: Devnet) -> Contract:
    return contract(devnet, pool_artifact(), _info(devnet).pool)


def _token(devnet: Devnet, symbol: str) -> Contract:
    return contract(devnet, mintable_erc20(), _info(devnet).tokens[symbol].address)


def _selector(signature: str) -> str:
    return "0x" + keccak(signature.encode())[:4].hex()


def _revert_data(devnet: Devnet, sender: str, call: Any) -> str | None:
    """eth_call of a contract call: None if it passes, else the revert data (hex)."""
    tx = {"from": sender, "to": call.address, "data": call._encode_transaction_data()}
    reply = devnet.w3.provider.make_request(RPCEndpoint("eth_call"), [tx, "latest"])
    if "error" not in reply:
        return None
    data = reply["error"].get("data")
    return str(data) if data is not None else str(reply["error"])


def _account(devnet: Devnet, user: str) -> tuple[int, int, int, int, int, int]:
    result = _pool(devnet).functions.getUserAccountData(Web3.to_checksum_address(user)).call()
    collateral, debt, borrows, lt, ltv, health = (int(v) for v in result)
    return collateral, debt, borrows, lt, ltv, health


def _liquidate(
    devnet: Devnet, collateral: str, debt: str, user: str, amount: int = MAX_UINT
) -> Any:
    """liquidationCall from the devnet liquidator, sent (it must not revert); the receipt."""
    me = liquidator(devnet)
    send = deployer(devnet).send
    send(_token(devnet, debt).functions.approve(_info(devnet).pool, MAX_UINT), sender=me)
    pool = _pool(devnet)
    info = _info(devnet)
    call = pool.functions.liquidationCall(
        info.tokens[collateral].address,
        info.tokens[debt].address,
        Web3.to_checksum_address(user),
        amount,
        False,
    )
    return send(call, sender=me)


def _bit(ids: list[int]) -> int:
    return sum(1 << i for i in ids)


def test_market_and_reserves_as_configured(devnet: Devnet) -> None:
    info = _info(devnet)
    w3 = devnet.w3
    arts = origin_artifacts()
    pool = _pool(devnet)
    assert pool.functions.POOL_REVISION().call() == 10
    assert info.version == "3.6.0"
    assert devnet.info.aave_markets() == {"aave_v3": devnet.info.aave_v3, "aave_v3_6": info}
    listed = [a.lower() for a in pool.functions.getReservesList().call()]
    assert listed == [info.tokens[s].address.lower() for s in RESERVES]
    # The same token contracts as the v3.0 market, plus WSTETH.
    for symbol in ("WETH", "WBTC", "USDC", "DAI"):
        assert info.tokens[symbol].address == devnet.info.tokens[symbol].address

    data = contract(devnet, arts["AaveProtocolDataProvider"], info.data_provider)
    oracle = contract(devnet, arts["AaveOracle"], info.oracle)
    provider = contract(devnet, arts["PoolAddressesProvider"], info.addresses_provider)
    ids: dict[str, int] = {}
    for symbol, params in RESERVES.items():
        asset = Web3.to_checksum_address(info.tokens[symbol].address)
        conf = data.functions.getReserveConfigurationData(asset).call()
        # (decimals, ltv, lt, bonus, reserve factor, collateral, borrowing, stable, active, frozen)
        expected = [params.ltv, params.liquidation_threshold, params.liquidation_bonus]
        assert list(conf[1:5]) == [*expected, params.reserve_factor], symbol
        assert conf[6] == (symbol != "WSTETH") and conf[8] and not conf[9], symbol
        assert data.functions.getLiquidationProtocolFee(asset).call() == 1_000
        assert oracle.functions.getSourceOfAsset(asset).call() == info.price_sources[symbol]
        reserve = pool.functions.getReserveData(asset).call()
        ids[symbol] = reserve[7]
        # Stable debt is gone: one MOCK_STABLE_DEBT address stands in for every reserve.
        assert reserve[9] == info.mock_stable_debt, symbol
        assert reserve[11] == info.interest_rate_strategy
    assert provider.functions.getAddress(b"MOCK_STABLE_DEBT".ljust(32, b"\0")).call() == (
        info.mock_stable_debt
    )
    mock = contract(devnet, mintable_erc20(), info.mock_stable_debt)
    assert mock.functions.totalSupply().call() == 0
    assert mock.functions.balanceOf(info.pool).call() == 0
    assert provider.functions.getPriceOracleSentinel().call() == info.price_oracle_sentinel

    for members in EMODES:
        c = members.category
        ltv, lt, bonus = pool.functions.getEModeCategoryCollateralConfig(c.id).call()
        assert (ltv, lt, bonus) == (c.ltv, c.liquidation_threshold, c.liquidation_bonus)
        assert pool.functions.getEModeCategoryLabel(c.id).call() == c.label
        assert pool.functions.getEModeCategoryCollateralBitmap(c.id).call() == _bit(
            [ids[s] for s in members.collateral]
        )
        assert pool.functions.getEModeCategoryBorrowableBitmap(c.id).call() == _bit(
            [ids[s] for s in members.borrowable]
        )
        assert pool.functions.getEModeCategoryLtvzeroBitmap(c.id).call() == _bit(
            [ids[s] for s in members.ltvzero]
        )
    assert any(m.ltvzero for m in EMODES)
    # WSTETH's exit: a WSTETH/WETH pair in the devnet's Uniswap V2 factory at 1.2 WETH.
    pair = contract(devnet, pair_artifact(), devnet.info.uniswap_v2.pairs["WSTETH/WETH"])
    r0, r1, _ = pair.functions.getReserves().call()
    wsteth_first = pair.functions.token0().call() == info.tokens["WSTETH"].address
    weth_per_wsteth = Decimal(r1 if wsteth_first else r0) / Decimal(r0 if wsteth_first else r1)
    assert abs(weth_per_wsteth / Decimal("1.2") - 1) < Decimal("1e-6")
    # A grace period was set on the grace reserve at deploy (it may have lapsed by now).
    grace_asset = Web3.to_checksum_address(info.tokens[GRACE_PERIOD_RESERVE].address)
    assert pool.functions.getLiquidationGracePeriod(grace_asset).call() > 0
    assert w3.eth.get_code(Web3.to_checksum_address(info.sequencer_oracle))


def test_seeded_borrowers_have_their_shapes(devnet: Devnet) -> None:
    info = _info(devnet)
    pool = _pool(devnet)
    assert set(info.borrowers) == {s.name for s in SHAPES}
    for shape in SHAPES:
        user = Web3.to_checksum_address(info.borrowers[shape.name])
        collateral, debt, _borrows, lt, ltv, health = _account(devnet, user)
        usd = sum(shape.collateral_usd.values(), Decimal(0))
        # Interest and the WSTETH ratio's growth since the deploy move these a little.
        assert abs(Decimal(collateral) / BASE / usd - 1) < Decimal("0.05"), shape.name
        assert debt > 0, shape.name
        assert abs(Decimal(health) / WAD / shape.target_health - 1) < Decimal("0.05"), shape.name
        assert pool.functions.getUserEMode(user).call() == shape.emode, shape.name
        if shape.name.startswith("under_2k"):
            assert collateral < 2_000 * BASE
        if shape.name == "over_2k":
            assert collateral > 2_000 * BASE and debt > 2_000 * BASE
        if shape.name == "one_reserve_under_2k":
            # Over $2k in all, but the DAI reserve alone is under $2k (DAI at $1, 18 decimals).
            a_dai = pool.functions.getReserveData(info.tokens["DAI"].address).call()[8]
            held = contract(devnet, mintable_erc20(), a_dai).functions.balanceOf(user).call()
            assert held < 2_000 * 10**18 and collateral > 2_000 * BASE
        if shape.name == "emode_lt0_collateral":
            # LT 0 outside e-mode, yet counted at the e-mode's LT inside it (v3.6).
            assert lt == 9_300
        if shape.name == "emode_non_member_collateral":
            # DAI at the e-mode's 95 %, WETH (not in the bitmap) at its own 83 %.
            assert 8_300 < lt < 9_500
        if shape.name == "emode_ltvzero":
            # WETH is on e-mode 3's ltvzero bitmap: it counts at the LT, not at the LTV.
            assert lt == 8_800 and 4_000 < ltv < 4_500
        if shape.name == "multi_debt":
            config = pool.functions.getUserConfiguration(user).call()[0]
            borrowed = [i for i in range(len(RESERVES)) if config >> (2 * i) & 1]
            assert len(borrowed) == 2
    opened = [p for p in population_plans() if _account(devnet, p.address)[1] > 0]
    assert len(opened) == len(population_plans()) > 20
    sizes = [_account(devnet, p.address)[0] for p in population_plans()]
    assert min(sizes) < 2_000 * BASE < max(sizes)


def test_liquidation_through_the_pool_and_the_dust_rule(devnet: Devnet) -> None:
    info = _info(devnet)
    # -7.5 %: both WETH/USDC shapes (HF 1.04 at deploy) go to ~0.96, under 1 and above 0.95.
    set_price(devnet, "WETH", Decimal("1850"))
    small, large = info.borrowers["under_2k"], info.borrowers["over_2k"]
    assert _account(devnet, small)[5] < WAD and _account(devnet, large)[5] < WAD
    pool = _pool(devnet)
    usdc = info.tokens["USDC"].address
    weth = info.tokens["WETH"].address
    me = liquidator(devnet)
    deployer(devnet).send(_token(devnet, "USDC").functions.approve(info.pool, MAX_UINT), sender=me)
    # Under $2k a half repay would leave dust: the pool refuses it (v3.3+ MustNotLeaveDust).
    half = pool.functions.getUserAccountData(small).call()[1] // 2 // 100  # base -> USDC units
    refused = _revert_data(
        devnet, me, pool.functions.liquidationCall(weth, usdc, small, half, False)
    )
    assert refused is not None and refused.startswith(_selector("MustNotLeaveDust()"))
    # All of it passes, and clears the debt.
    receipt = _liquidate(devnet, "WETH", "USDC", small)
    assert receipt["status"] == 1
    assert _account(devnet, small)[1] == 0
    # Over $2k with HF > 0.95: at most half of the position's debt is repaid.
    debt_before = _account(devnet, large)[1]
    _liquidate(devnet, "WETH", "USDC", large)
    debt_after = _account(devnet, large)[1]
    assert debt_after > 0 and abs(debt_after * 2 - debt_before) <= debt_before // 100


def test_grace_period_blocks_a_liquidation(devnet: Devnet) -> None:
    info = _info(devnet)
    send = deployer(devnet)
    configurator = contract(devnet, configurator_artifact(), info.pool_configurator)
    wbtc = info.tokens[GRACE_PERIOD_RESERVE].address
    # The deploy's grace period is wall-clock bound: start one now, not to depend on it.
    start_grace_period(send, configurator, wbtc, MAX_GRACE_PERIOD)
    set_price(devnet, "WBTC", Decimal("24000"))
    user = info.borrowers["grace_period"]
    assert _account(devnet, user)[5] < WAD
    pool = _pool(devnet)
    me = liquidator(devnet)
    send.send(_token(devnet, "USDC").functions.approve(info.pool, MAX_UINT), sender=me)
    call = pool.functions.liquidationCall(wbtc, info.tokens["USDC"].address, user, MAX_UINT, False)
    refused = _revert_data(devnet, me, call)
    assert refused is not None
    assert refused.startswith(_selector("LiquidationGraceSentinelCheckFailed()"))
    snapshot = devnet.rpc("evm_snapshot")
    devnet.rpc("evm_increaseTime", MAX_GRACE_PERIOD + 1)
    devnet.rpc("evm_mine")
    assert _liquidate(devnet, "WBTC", "USDC", user)["status"] == 1
    # Ending it by hand (what a test does for a deterministic start) has the same effect.
    assert devnet.rpc("evm_revert", snapshot) is True
    assert _revert_data(devnet, me, call) is not None
    end_grace_period(send, configurator, wbtc)
    assert pool.functions.getLiquidationGracePeriod(wbtc).call() == 0
    assert _liquidate(devnet, "WBTC", "USDC", user)["status"] == 1


def test_sentinel_blocks_liquidations_above_095_while_the_sequencer_is_down(
    devnet: Devnet,
) -> None:
    info = _info(devnet)
    send = deployer(devnet)
    sequencer = contract(devnet, origin_artifacts()["SequencerOracle"], info.sequencer_oracle)
    latest = devnet.w3.eth.get_block("latest")["timestamp"]
    send.send(sequencer.functions.setAnswer(True, latest))
    set_price(devnet, "WETH", Decimal("1850"))  # HF just under 1, above 0.95
    user = info.borrowers["over_2k"]
    assert Decimal("0.95") * WAD < _account(devnet, user)[5] < WAD
    pool = _pool(devnet)
    me = liquidator(devnet)
    send.send(_token(devnet, "USDC").functions.approve(info.pool, MAX_UINT), sender=me)
    call = pool.functions.liquidationCall(
        info.tokens["WETH"].address, info.tokens["USDC"].address, user, MAX_UINT, False
    )
    refused = _revert_data(devnet, me, call)
    assert refused is not None and refused.startswith(_selector("PriceOracleSentinelCheckFailed()"))


def test_deficit_when_collateral_runs_out(devnet: Devnet) -> None:
    info = _info(devnet)
    adapter = contract(
        devnet, devnet_contracts()["RatioCappedAdapter"], info.ratio_adapters["WSTETH"]
    )
    # The ratio halves (a depeg): WSTETH collateral is worth half, and no event says so.
    receipt = deployer(devnet).send(adapter.functions.setRatio(WSTETH_RATIO // 2, 0))
    assert receipt["logs"] == []
    user = info.borrowers["deficit"]
    collateral, debt, *_ = _account(devnet, user)
    assert collateral < debt
    receipt = _liquidate(devnet, "WSTETH", "WETH", user)
    topic = keccak(text="DeficitCreated(address,address,uint256)")
    deficits = [log for log in receipt["logs"] if log["topics"][0] == topic]
    assert len(deficits) == 1
    assert _account(devnet, user)[:2] == (0, 0)


def test_adapter_price_moves_without_an_event(devnet: Devnet) -> None:
    info = _info(devnet)
    oracle = contract(devnet, origin_artifacts()["AaveOracle"], info.oracle)
    wsteth = Web3.to_checksum_address(info.tokens["WSTETH"].address)
    adapter = Web3.to_checksum_address(info.ratio_adapters["WSTETH"])
    before = oracle.functions.getAssetPrice(wsteth).call()
    start = devnet.w3.eth.block_number
    devnet.rpc("evm_increaseTime", 30 * 86_400)
    devnet.rpc("evm_mine")
    after = oracle.functions.getAssetPrice(wsteth).call()
    # ~3.5 %/year for 30 days: the price grew, and the adapter has never logged anything.
    assert before < after < before * 1_004 // 1_000
    assert devnet.w3.eth.get_logs({"address": adapter, "fromBlock": 0, "toBlock": "latest"}) == []
    # The base feed moves it too, though the event names the feed, not the adapter.
    set_price(devnet, "WETH", Decimal("1000"))
    moved = oracle.functions.getAssetPrice(wsteth).call()
    # The ratio keeps growing (~1.1e-9 per second) between the two blocks, so halving is
    # checked to a millionth, which allows for minutes of block time and nothing else.
    assert abs(moved * 2 - after) <= after // 1_000_000
    logs = devnet.w3.eth.get_logs({"address": adapter, "fromBlock": start, "toBlock": "latest"})
    assert logs == []


def test_chainlink_proxy_switches_aggregator(devnet: Devnet) -> None:
    info = _info(devnet)
    send = deployer(devnet)
    proxy = contract(devnet, eac_aggregator_proxy(), info.eac_proxies["WETH"])
    oracle = contract(devnet, origin_artifacts()["AaveOracle"], info.oracle)
    weth: ChecksumAddress = Web3.to_checksum_address(info.tokens["WETH"].address)
    assert proxy.functions.aggregator().call() == devnet.info.feeds["WETH"]
    assert oracle.functions.getAssetPrice(weth).call() == to_feed_answer(Decimal("2000"))
    fresh = send.deploy(price_feed(), 8, "WETH / USD (new)", to_feed_answer(Decimal("2600")))
    send.send(proxy.functions.proposeAggregator(fresh.address))
    send.send(proxy.functions.confirmAggregator(fresh.address))
    assert proxy.functions.aggregator().call() == fresh.address
    assert oracle.functions.getAssetPrice(weth).call() == to_feed_answer(Decimal("2600"))
    # The v3.0 market still reads the old feed directly.
    v30 = contract(devnet, origin_artifacts()["AaveOracle"], devnet.info.aave_v3.oracle)
    assert v30.functions.getAssetPrice(weth).call() == to_feed_answer(Decimal("2000"))


@pytest.mark.parametrize("name", ["emode_lt0_collateral", "emode_mixed"])
def test_lt0_collateral_is_liquidated_inside_emode(devnet: Devnet, name: str) -> None:
    info = _info(devnet)
    adapter = contract(
        devnet, devnet_contracts()["RatioCappedAdapter"], info.ratio_adapters["WSTETH"]
    )
    deployer(devnet).send(adapter.functions.setRatio(WSTETH_RATIO * 90 // 100, 0))
    user = info.borrowers[name]
    assert _account(devnet, user)[5] < WAD
    before = _account(devnet, user)[1]
    assert _liquidate(devnet, "WSTETH", "WETH", user)["status"] == 1
    assert _account(devnet, user)[1] < before
