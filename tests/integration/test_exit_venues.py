"""`[[dex.venues]]` on the devnet: a keeper built from the config ranks exits over Uniswap V2
and V3 (keeper.dex.venue.Venues); a V3 exit it predicts is what the real SwapRouter pays.

After WETH drops, the engine's ranking at the drop block prices some liquidations'
collateral on V3 pools; selling that leg's exact input through SwapRouter.exactInputSingle
at the same state returns exactly the ranked output (nothing else moved the pool).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account
from eth_typing import HexStr
from eth_utils.crypto import keccak
from web3 import Web3

from keeper.config import load_config
from keeper.deploy_executor import deploy_flash_liquidator
from keeper.devnet.tokens import post_price
from keeper.devnet.uniswap_v3 import router_artifact
from keeper.dex.uniswap_v2 import PairBook
from keeper.dex.uniswap_v3 import V3Book
from keeper.dex.venue import Venues, legs_of
from keeper.errors import ConfigError
from keeper.execution.flash_route import min_out
from keeper.run import keeper_from_config
from keeper.types import SwapLeg
from tests.conftest import Devnet
from tests.integration.helpers import (
    FRESH_ACCOUNT_INDEXES,
    SPECS,
    contract,
    deployer,
    fresh_accounts,
    tokens,
)

NO_DEADLINE = 2**64
TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
MNEMONIC = "test test test test test test test test test test test junk"


def venues_toml(devnet: Devnet, tmp_path: Path, extra: str = "") -> Path:
    info = devnet.info
    assert info.uniswap_v3 is not None
    path = tmp_path / "keeper.toml"
    path.write_text(
        f'[chain]\nchain_id = {info.chain_id}\nhttp_urls = ["{info.rpc_url}"]\n\n'
        f'[execution]\nquote_token = "{info.tokens["WETH"].address}"\nmin_profit_quote = "0"\n'
        f'journal = "journal.sqlite"\n{extra}\n'
        f'[dex]\nuniswap_v2_factory = "{info.uniswap_v2.factory}"\n\n'
        f'[[dex.venues]]\nkind = "uniswap_v3"\nfactory = "{info.uniswap_v3.factory}"\n'
        f'quoter = "{info.uniswap_v3.quoter}"\nfee_tiers = [500, 3000, 10000]\n\n'
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n'
        f'\n[strategies.morpho_blue]\nmorpho = "{info.morpho_blue.morpho}"\n'
    )
    return path


async def test_ranked_v3_exit_is_what_the_router_pays(devnet: Devnet, tmp_path: Path) -> None:
    info = devnet.info
    assert info.uniswap_v3 is not None
    post_price(devnet.w3, info.feeds["WETH"], SPECS["WETH"].usd_price * Decimal("0.7"),
               info.accounts.deployer)
    keeper, fork = await keeper_from_config(load_config(venues_toml(devnet, tmp_path)),
                                            send=False)
    assert fork is None
    try:
        dex = keeper.engine.dex
        assert isinstance(dex, Venues)
        pairs, pools = dex.venues
        assert isinstance(pairs, PairBook) and isinstance(pools, V3Book)
        assert set(pools.by_address) == {a.lower() for a in info.uniswap_v3.pools.values()}
        head = await keeper.sync()
        ranked = await keeper.engine.evaluate(head)
    finally:
        await keeper.aclose()
    by_venue = {o.swap.venue for o in ranked if o.swap is not None}
    assert "uniswap_v3" in by_venue, by_venue
    leg = next(o.swap for o in ranked if o.swap is not None and o.swap.venue == "uniswap_v3")
    # Sell exactly that leg through the real router, at the state it was ranked on.
    (trader,) = fresh_accounts(devnet, 1)
    by_address = {c.address.lower(): c for c in tokens(devnet).values()}
    token_in = by_address[leg.token_in]
    router = contract(devnet, router_artifact(), info.uniswap_v3.router)
    send = deployer(devnet)
    send.send(token_in.functions.mint(trader, leg.amount_in))
    send.send(token_in.functions.approve(router.address, leg.amount_in), sender=trader)
    token_out = by_address[leg.token_out]
    before = token_out.functions.balanceOf(trader).call()
    send.send(router.functions.exactInputSingle((
        Web3.to_checksum_address(leg.token_in), Web3.to_checksum_address(leg.token_out),
        leg.fee, trader, NO_DEADLINE, leg.amount_in, leg.amount_out, 0)), sender=trader)
    assert token_out.functions.balanceOf(trader).call() - before == leg.amount_out


async def test_flash_liquidations_of_a_crash_sell_through_v3_as_ranked(
    devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keeper run`'s keeper with a flash executor and a V3 venue, on a crash: the exits the
    ranking routes through V3 pools are the ones the contract takes; none reverts (on its
    min-out or otherwise), and their exits return what was ranked: exactly, when nothing but
    the ranked swaps moved their pools. (The surplus is then sold into WETH on the debt/WETH
    V2 pair, which the prediction values at its mid price: realized profit is below the
    prediction by that sale's fee and impact, as with V2 exits.)"""
    Account.enable_unaudited_hdwallet_features()
    path = f"m/44'/60'/0'/0/{FRESH_ACCOUNT_INDEXES[-1]}"
    owner = Account.from_mnemonic(MNEMONIC, account_path=path)
    deployed = await asyncio.to_thread(
        deploy_flash_liquidator, devnet.w3, owner.address, owner,
        aave_pool=devnet.info.aave_v3.pool, morpho=devnet.info.morpho_blue.morpho,
        max_fee_per_gas=100 * 10**9, priority_fee=10**9)
    extra = (f'mode = "live"\nflash_executor = "{deployed.address}"\nbatch_max = 1\n'
             'max_fee_per_gas_gwei = "3000"\nbid_share = "0"\n')
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", "0x" + bytes(owner.key).hex())
    keeper, _ = await keeper_from_config(load_config(venues_toml(devnet, tmp_path, extra)),
                                         send=True)
    try:
        await keeper.sync()
        for symbol, factor in (("WETH", "0.7"), ("WBTC", "0.8")):
            post_price(devnet.w3, devnet.info.feeds[symbol],
                       SPECS[symbol].usd_price * Decimal(factor), devnet.info.accounts.deployer)
        async with asyncio.TaskGroup() as tasks:
            ranked = await keeper.step(tasks)
        outcomes = keeper.outcomes.recent
    finally:
        await keeper.aclose()
    by_key = {o.key: o for o in ranked}
    sent = [o for o in outcomes if o.key in by_key]
    assert sent and all(o.status == "confirmed" for o in sent), [
        (o.status, o.reason) for o in sent if o.status != "confirmed"]
    venues = {o.key: (by_key[o.key].swap or SwapLeg("", "", "", 0, 0)).venue for o in sent}
    routed = [o for o in sent if venues[o.key] in ("uniswap_v3", "route")]
    assert routed, venues
    exact = 0
    for outcome in routed:
        opp = by_key[outcome.key]
        assert opp.swap is not None
        last = legs_of(opp.swap)[-1]
        receipt = devnet.w3.eth.get_transaction_receipt(HexStr(outcome.tx_hash))
        received = sum(
            int(bytes(log["data"]).hex(), 16) for log in receipt["logs"]
            if log["address"].lower() == last.token_out
            and "0x" + bytes(log["topics"][0]).hex() == TRANSFER
            and "0x" + bytes(log["topics"][1]).hex()[-40:] == last.pair
            and "0x" + bytes(log["topics"][2]).hex()[-40:] == deployed.address.lower())
        # The exit returns what the ranking predicted; exactly so when the collateral seized
        # is the one ranked (an Aave liquidation of a fixed repay; Morpho's accrues interest
        # by the second) and no other swap of the run went through the exit's pools.
        assert received >= min_out(opp.debt_out), (opp.swap, received)
        exact += received == opp.debt_out
        print(f"{opp.strategy:<12} {venues[outcome.key]:<11} exit {received} "
              f"ranked {opp.debt_out} realized/predicted profit "
              f"{outcome.realized_profit / opp.net_profit:.4f}")
    assert exact > 0
    print(f"\n{len(sent)} flash liquidations, {len(routed)} through V3; realized "
          f"{sum(o.realized_profit for o in sent) / 1e18:.3f} WETH against "
          f"{sum(by_key[o.key].net_profit for o in sent) / 1e18:.3f} predicted")


def test_a_venue_kind_must_be_known(devnet: Devnet, tmp_path: Path) -> None:
    path = venues_toml(devnet, tmp_path)
    path.write_text(path.read_text().replace('kind = "uniswap_v3"', 'kind = "curve"'))
    with pytest.raises(ConfigError, match="kind"):
        load_config(path)
