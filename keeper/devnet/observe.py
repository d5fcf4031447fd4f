"""Read the devnet's positions as the chain sees them, for the demo's summary and for tests.

This is an observer, not the keeper's detection path: it asks the contracts
(`Pool.getUserAccountData`, Morpho's `position`/`market` and the market
oracle) in one JSON-RPC batch per protocol, so that what the demo prints and
what tests check is the chain's own verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from keeper.devnet.artifacts import aave
from keeper.devnet.info import DevnetInfo, MorphoMarketInfo
from keeper.devnet.morpho import morpho_abi
from keeper.devnet.tokens import devnet_contracts

WAD = 10**18
ORACLE_PRICE_SCALE = 10**36
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1


@dataclass(frozen=True)
class AaveAccount:
    address: str
    collateral_base: int
    debt_base: int
    health_factor: int

    @property
    def liquidatable(self) -> bool:
        return self.debt_base > 0 and self.health_factor < WAD


@dataclass(frozen=True)
class MorphoPosition:
    address: str
    market: str
    collateral: int
    borrowed: int
    max_borrow: int

    @property
    def liquidatable(self) -> bool:
        return self.borrowed > self.max_borrow


def aave_accounts(w3: Web3, info: DevnetInfo, addresses: Sequence[str]) -> list[AaveAccount]:
    """`getUserAccountData` for every address, in one batch."""
    pool = w3.eth.contract(
        address=Web3.to_checksum_address(info.aave_v3.pool),
        abi=aave("protocol/pool/Pool.sol/Pool.json").abi,
    )
    with w3.batch_requests() as batch:
        for address in addresses:
            batch.add(pool.functions.getUserAccountData(Web3.to_checksum_address(address)))
        results: list[Any] = batch.execute()
    return [
        AaveAccount(address, int(r[0]), int(r[1]), int(r[5]))
        for address, r in zip(addresses, results, strict=True)
    ]


def _to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    # SharesMathLib.toAssetsUp: mulDivUp(shares, totalAssets + 1, totalShares + 1e6)
    denominator = total_shares + VIRTUAL_SHARES
    return (shares * (total_assets + VIRTUAL_ASSETS) + denominator - 1) // denominator


def morpho_positions(
    w3: Web3, info: DevnetInfo, borrowers: Sequence[str]
) -> list[MorphoPosition]:
    """Each borrower's position in each market, valued at the market's last accrual."""
    morpho = w3.eth.contract(address=Web3.to_checksum_address(info.morpho_blue.morpho),
                             abi=morpho_abi())
    oracle_abi = devnet_contracts()["FeedOracle"].abi
    markets: list[MorphoMarketInfo] = info.morpho_blue.markets
    with w3.batch_requests() as batch:
        for market in markets:
            batch.add(morpho.functions.market(market.id))
            oracle = w3.eth.contract(address=Web3.to_checksum_address(market.oracle),
                                     abi=oracle_abi)
            batch.add(oracle.functions.price())
        for market in markets:
            for borrower in borrowers:
                batch.add(morpho.functions.position(market.id,
                                                    Web3.to_checksum_address(borrower)))
        results: list[Any] = batch.execute()
    out: list[MorphoPosition] = []
    cursor = 2 * len(markets)
    for index, market in enumerate(markets):
        state, price = results[2 * index], int(results[2 * index + 1])
        total_borrow_assets, total_borrow_shares = int(state[2]), int(state[3])
        for borrower in borrowers:
            _supply_shares, borrow_shares, collateral = results[cursor]
            cursor += 1
            if int(borrow_shares) == 0:
                continue
            borrowed = _to_assets_up(int(borrow_shares), total_borrow_assets, total_borrow_shares)
            # maxBorrow = collateral.mulDivDown(price, ORACLE_PRICE_SCALE).wMulDown(lltv)
            max_borrow = int(collateral) * price // ORACLE_PRICE_SCALE * market.lltv // WAD
            out.append(MorphoPosition(borrower, market.id, int(collateral), borrowed, max_borrow))
    return out
