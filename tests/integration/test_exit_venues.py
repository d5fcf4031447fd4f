"""`[[dex.venues]]` on the devnet: a keeper built from the config ranks exits over Uniswap V2
and V3 (keeper.dex.venue.Venues); a V3 exit it predicts is what the real SwapRouter pays.

After WETH drops, the engine's ranking at the drop block prices some liquidations'
collateral on V3 pools; selling that leg's exact input through SwapRouter.exactInputSingle
at the same state returns exactly the ranked output (nothing else moved the pool).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from web3 import Web3

from keeper.config import load_config
from keeper.devnet.tokens import post_price
from keeper.devnet.uniswap_v3 import router_artifact
from keeper.dex.uniswap_v2 import PairBook
from keeper.dex.uniswap_v3 import V3Book
from keeper.dex.venue import Venues
from keeper.errors import ConfigError
from keeper.run import keeper_from_config
from tests.conftest import Devnet
from tests.integration.helpers import SPECS, contract, deployer, fresh_accounts, tokens

NO_DEADLINE = 2**64


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


async def test_v3_venues_with_the_flash_executor_are_refused(
    devnet: Devnet, tmp_path: Path
) -> None:
    path = venues_toml(devnet, tmp_path, f'flash_executor = "{"0x" + "12" * 20}"\n')
    with pytest.raises(ConfigError, match=r"dex\.venues"):
        await keeper_from_config(load_config(path), send=False)


def test_a_venue_kind_must_be_known(devnet: Devnet, tmp_path: Path) -> None:
    path = venues_toml(devnet, tmp_path)
    path.write_text(path.read_text().replace('kind = "uniswap_v3"', 'kind = "curve"'))
    with pytest.raises(ConfigError, match="kind"):
        load_config(path)
