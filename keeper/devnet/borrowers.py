"""A deterministic, varied borrower population for the devnet, on Aave V3 and Morpho Blue.

`plan_population` is pure: the same (count, seed) always gives the same plans.
The mix: single- and multi-collateral Aave accounts, stablecoin e-mode users,
short-ETH accounts (stable collateral, WETH debt), Morpho Blue borrowers in
each market; sizes from small retail to whales (log-uniform); and a health
factor at open drawn so that many sit within a few percent of liquidation.

`seed_population` opens the plans on chain through the real contracts, sending
as each borrower with anvil's impersonation (borrowers need no keys).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction

from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.tokens import TokenSpec
from keeper.errors import DevnetError

Protocol = Literal["aave_v3", "morpho_blue"]
MAX_UINT = 2**256 - 1


@dataclass(frozen=True)
class BorrowerPlan:
    """One account to open: USD amounts per asset, and the health factor aimed at."""

    address: ChecksumAddress
    protocol: Protocol
    kind: str
    collateral_usd: Mapping[str, Decimal]
    debt_usd: Mapping[str, Decimal]
    target_health: Decimal
    emode: int = 0


@dataclass(frozen=True)
class RiskParams:
    """What sizing needs from the protocols: LTV/LT per asset (bps) and Morpho's LLTV (wad)."""

    aave_ltv_bps: Mapping[str, int]
    aave_lt_bps: Mapping[str, int]
    emode_ltv_bps: int
    emode_lt_bps: int
    morpho_lltv_wad: int


def borrower_address(seed: int, index: int) -> ChecksumAddress:
    digest = keccak(f"keeper-devnet-borrower:{seed}:{index}".encode())
    return Web3.to_checksum_address(digest[12:])


def _target_health(rng: random.Random) -> Decimal:
    # Most accounts sit close to the line: that is where a crash bites first.
    roll = rng.random()
    if roll < 0.55:
        value = rng.uniform(1.01, 1.12)
    elif roll < 0.85:
        value = rng.uniform(1.12, 1.45)
    else:
        value = rng.uniform(1.45, 3.0)
    return Decimal(str(round(value, 4)))


def _size_usd(rng: random.Random) -> Decimal:
    # Log-uniform from $500 to $2M, plus a few whales.
    if rng.random() < 0.04:
        return Decimal(round(rng.uniform(3e6, 8e6)))
    return Decimal(round(math.exp(rng.uniform(math.log(500), math.log(2e6)))))


def plan_population(count: int, seed: int) -> list[BorrowerPlan]:
    """Deterministic plans for `count` borrowers: about 70% Aave V3, 30% Morpho Blue."""
    rng = random.Random(seed)
    plans: list[BorrowerPlan] = []
    aave_kinds = (
        ("weth-usdc", 0.30),
        ("wbtc-usdc", 0.15),
        ("weth-dai", 0.12),
        ("multi", 0.18),
        ("emode-stable", 0.12),
        ("short-eth", 0.13),
    )
    for index in range(count):
        address = borrower_address(seed, index)
        size = _size_usd(rng)
        health = _target_health(rng)
        if index % 10 >= 7:
            collateral = "WETH" if rng.random() < 0.6 else "WBTC"
            plans.append(
                BorrowerPlan(
                    address, "morpho_blue", f"{collateral.lower()}-usdc", {collateral: size},
                    {"USDC": Decimal(0)}, health,
                )
            )
            continue
        kind = rng.choices([k for k, _ in aave_kinds], [w for _, w in aave_kinds])[0]
        coll: dict[str, Decimal]
        debt: dict[str, Decimal]
        emode = 0
        if kind == "weth-usdc":
            coll, debt = {"WETH": size}, {"USDC": Decimal(0)}
        elif kind == "wbtc-usdc":
            coll, debt = {"WBTC": size}, {"USDC": Decimal(0)}
        elif kind == "weth-dai":
            coll, debt = {"WETH": size}, {"DAI": Decimal(0)}
        elif kind == "multi":
            split = Decimal(str(round(rng.uniform(0.3, 0.7), 2)))
            coll = {"WETH": size * split, "WBTC": size * (1 - split)}
            debt = {"USDC": Decimal(0), "DAI": Decimal(0)}
        elif kind == "emode-stable":
            coll, debt, emode = {"DAI": size}, {"USDC": Decimal(0)}, 1
        else:
            coll, debt = {"USDC": size}, {"WETH": Decimal(0)}
        plans.append(BorrowerPlan(address, "aave_v3", kind, coll, debt, health, emode))
    return plans


def size_debts(plan: BorrowerPlan, risk: RiskParams) -> dict[str, Decimal]:
    """USD debt per asset that gives `target_health`, capped below the borrow limit (LTV)."""
    if plan.protocol == "morpho_blue":
        lltv = Decimal(risk.morpho_lltv_wad) / Decimal(10**18)
        collateral = sum(plan.collateral_usd.values(), Decimal(0))
        total = min(collateral * lltv / plan.target_health, collateral * lltv * Decimal("0.995"))
    else:
        if plan.emode:
            lt = sum(v * risk.emode_lt_bps for v in plan.collateral_usd.values()) / 10_000
            ltv = sum(v * risk.emode_ltv_bps for v in plan.collateral_usd.values()) / 10_000
        else:
            lt = sum(v * risk.aave_lt_bps[s] for s, v in plan.collateral_usd.items()) / 10_000
            ltv = sum(v * risk.aave_ltv_bps[s] for s, v in plan.collateral_usd.items()) / 10_000
        total = min(Decimal(lt) / plan.target_health, Decimal(ltv) * Decimal("0.995"))
    share = total / len(plan.debt_usd)
    return {symbol: share for symbol in plan.debt_usd}


def token_amount(usd: Decimal, spec: TokenSpec) -> int:
    return int(usd / spec.usd_price * Decimal(10**spec.decimals))


@dataclass(frozen=True)
class SeedTargets:
    """The deployed contracts the population is opened on."""

    tokens: Mapping[str, Contract]
    specs: Mapping[str, TokenSpec]
    aave_pool: Contract
    morpho: Contract
    morpho_markets: Mapping[str, tuple[Any, ...]]  # collateral symbol -> MarketParams tuple


def seed_population(w3: Web3, plans: Sequence[BorrowerPlan], risk: RiskParams,
                    targets: SeedTargets) -> None:
    """Open every plan on chain. Raises DevnetError naming the borrower if a step reverts."""
    rpc(w3, "anvil_autoImpersonateAccount", True)
    try:
        for plan in plans:
            rpc(w3, "anvil_setBalance", plan.address, hex(10**20))
            try:
                if plan.protocol == "aave_v3":
                    _open_aave(plan, risk, targets)
                else:
                    _open_morpho(plan, risk, targets)
            except DevnetError as exc:
                raise DevnetError(f"seeding borrower {plan.address} ({plan.kind}): {exc}") from None
    finally:
        rpc(w3, "anvil_autoImpersonateAccount", False)


def _send(call: ContractFunction, sender: ChecksumAddress) -> None:
    Deployer(call.w3, sender).send(call)


def _fund(targets: SeedTargets, symbol: str, to: ChecksumAddress, amount: int,
          spender: str) -> None:
    token = targets.tokens[symbol]
    _send(token.functions.mint(to, amount), to)
    _send(token.functions.approve(spender, MAX_UINT), to)


def _open_aave(plan: BorrowerPlan, risk: RiskParams, targets: SeedTargets) -> None:
    pool, who = targets.aave_pool, plan.address
    for symbol, usd in plan.collateral_usd.items():
        amount = token_amount(usd, targets.specs[symbol])
        _fund(targets, symbol, who, amount, pool.address)
        _send(pool.functions.supply(targets.tokens[symbol].address, amount, who, 0), who)
    if plan.emode:
        _send(pool.functions.setUserEMode(plan.emode), who)
    for symbol, usd in size_debts(plan, risk).items():
        amount = token_amount(usd, targets.specs[symbol])
        if amount > 0:
            _send(pool.functions.borrow(targets.tokens[symbol].address, amount, 2, 0, who), who)


def _open_morpho(plan: BorrowerPlan, risk: RiskParams, targets: SeedTargets) -> None:
    morpho, who = targets.morpho, plan.address
    (collateral, usd), = plan.collateral_usd.items()
    params = targets.morpho_markets[collateral]
    amount = token_amount(usd, targets.specs[collateral])
    _fund(targets, collateral, who, amount, morpho.address)
    _send(morpho.functions.supplyCollateral(params, amount, who, b""), who)
    for symbol, debt in size_debts(plan, risk).items():
        borrow = token_amount(debt, targets.specs[symbol])
        if borrow > 0:
            _send(morpho.functions.borrow(params, borrow, 0, who, who), who)
