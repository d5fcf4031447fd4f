"""`FlashRoute`: liquidations sent through the FlashLiquidator, funded by the cheapest lender.

With `execution.flash_executor` set, the keeper's account holds no debt asset:
each liquidation is one `execute(plan)` call on the executor contract, which
borrows the debt asset, liquidates, sells the seized collateral along the
exit the ranking priced (V2 pairs and V3 pools), repays the lender and sends
the surplus to the owner (the keeper's account). Per opportunity the route
picks the cheapest lender that holds enough of the debt asset:

1. Morpho Blue's flash loan (free), when the executor was deployed with Morpho;
2. the executor's own balance of the debt asset (free);
3. the cheapest of: Aave V3's `flashLoanSimple` (`FLASHLOAN_PREMIUM_TOTAL`), when
   the executor has the pool and the reserve has flash loans enabled; a Uniswap
   V2 flash swap (0.3 %, repaid in the same token) from the deepest pair of the
   debt asset; a Uniswap V3 pool's `flash` (its fee tier: 0.05 % beats V2's
   0.3 %) from a pool of the exit venues holding enough of it. A lending pool is
   locked while it lends, so none that an exit may swap through is used (nor,
   for a V2 pair, one the surplus sale may use: the fee moves its reserves; a V3
   flash's fee moves no price).

Whichever of them exists funds the plan: no V2 pair is required.

Liquidity is read once per block with candidates, in one batch (`refresh`):
the debt asset's balance of Morpho, of the Aave aToken, of the executor and of
every V3 pool holding it; the V2 pairs' reserves come from the DEX book. The
lenders' fees feed the ranking through `Candidate.fee`, so sizes are chosen net
of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from eth_abi.abi import decode, encode

from keeper.chain.http import HttpRpc
from keeper.dex.uniswap_v2 import PairBook
from keeper.dex.uniswap_v3 import V3Book
from keeper.dex.venue import Venue
from keeper.execution.flash import FlashPlan, Funding, encode_execute, uniswap_v3_flash_fee
from keeper.types import FlashLeg

log = structlog.get_logger(__name__)

BALANCE_OF = "0x70a08231"
_AAVE_POOL = "0x08a01675"  # AAVE_POOL()
_MORPHO = "0x3acb5624"  # MORPHO()
_PREMIUM_TOTAL = "0x074b2e43"  # FLASHLOAN_PREMIUM_TOTAL()
_GET_RESERVE_DATA = "0x35ea6a75"  # getReserveData(address)
_FLASHLOAN_ENABLED_BIT = 63  # ReserveConfiguration: FLASHLOAN_ENABLED_START_BIT_POSITION
_ZERO = "0x" + "00" * 20
# The exit swap may return this much less than ranked. The executor's own guard against a
# loss is the profit floor (`ProfitTooLow`); this bounds what a sandwich can take. At 0.5 %,
# a crash's flash sends selling into one pool reverted on `MinOut` now and then (an exit
# 0.87 % under its quote in tests/integration/test_engine_flash.py) while still profitable.
MIN_OUT_TOLERANCE_BPS = 150
UNISWAP_FEE = (1000, 997)
FLASH_GAS_OVERHEAD = 150_000  # first guess over a direct liquidation; replaced by receipts


def _word_address(answer: str) -> str:
    raw = answer.removeprefix("0x")
    return ("0x" + raw[-40:]).lower() if len(raw) >= 40 else _ZERO


def uniswap_fee(amount: int) -> int:
    """The extra a Uniswap V2 flash swap of `amount` costs, repaid in the same token."""
    return -(-amount * UNISWAP_FEE[0] // UNISWAP_FEE[1]) - amount


@dataclass
class Lenders:
    """What each lender can lend of one debt token at the current block."""

    morpho: int = 0
    aave: int = 0
    own: int = 0
    pair: str | None = None
    pair_reserve: int = 0
    v3: dict[str, int] = field(default_factory=dict)  # V3 pool -> its balance of the token


@dataclass(frozen=True, slots=True)
class FlashPool:
    """A Uniswap V3 pool that can lend its tokens with `flash` for its fee tier."""

    address: str
    token0: str
    token1: str
    fee_pips: int


def v3_flash_pools(exits: Venue | None) -> tuple[FlashPool, ...]:
    """The V3 pools of the exit venues (a `V3Book`, or those inside a `Venues`)."""
    books = getattr(exits, "venues", None) or ([exits] if exits is not None else [])
    return tuple(FlashPool(p.address, p.token0, p.token1, p.fee)
                 for book in books if isinstance(book, V3Book)
                 for p in book.by_address.values())


@dataclass
class FlashRoute:
    """The executor contract, its lenders, and this block's liquidity per debt token."""

    executor: str
    morpho: str | None
    aave_pool: str | None
    aave_premium_bps: int
    dex: PairBook
    quote_token: str = ""  # the surplus is sold into it (so its pair with the debt is busy)
    # Where exits are sold (pools an exit or a sale may touch are not lenders): the V2
    # pairs when None; and the V3 pools that may lend with `flash`.
    exits: Venue | None = None
    v3_pools: tuple[FlashPool, ...] = ()
    a_tokens: dict[str, str | None] = field(default_factory=dict)  # debt -> aToken if flashable
    liquidity: dict[str, Lenders] = field(default_factory=dict)
    gas: dict[str, int] = field(default_factory=dict)  # strategy -> gas used, from receipts
    # Gas a batch saves per liquidation beyond the first (at least the 21,000 base cost);
    # learned from batch receipts.
    batch_saving: int = 21_000
    # `_busy` by (debt, collaterals): the venues' pools do not move, and ranking asks for
    # the fee at every size it tries (this took two thirds of each ask). Cleared by refresh.
    busy_sets: dict[tuple[str, tuple[str, ...]], tuple[frozenset[str], frozenset[str]]] = \
        field(default_factory=dict, repr=False)

    @classmethod
    async def discover(
        cls, chain: HttpRpc, executor: str, dex: PairBook, quote_token: str,
        exits: Venue | None = None,
    ) -> FlashRoute:
        """Read the lenders the executor was deployed with (and Aave's premium); the V3
        pools of `exits` lend too."""
        executor = executor.lower()
        aave, morpho = await chain.batch([
            ("eth_call", [{"to": executor, "data": _AAVE_POOL}, "latest"]),
            ("eth_call", [{"to": executor, "data": _MORPHO}, "latest"]),
        ])
        aave_pool, morpho_address = _word_address(str(aave)), _word_address(str(morpho))
        premium = 0
        if int(aave_pool, 16):
            premium = int(await chain.eth_call(aave_pool, _PREMIUM_TOTAL), 16)
        route = cls(
            executor=executor,
            morpho=morpho_address if int(morpho_address, 16) else None,
            aave_pool=aave_pool if int(aave_pool, 16) else None,
            aave_premium_bps=premium, dex=dex, quote_token=quote_token.lower(),
            exits=exits, v3_pools=v3_flash_pools(exits),
        )
        log.info("flash executor", executor=executor, morpho=route.morpho,
                 aave_pool=route.aave_pool, aave_premium_bps=premium)
        return route

    async def refresh(self, chain: HttpRpc, debts: Sequence[str]) -> None:
        """Every lender's liquidity of each debt token, in one batch (aTokens looked up once)."""
        self.busy_sets.clear()
        unknown = [d for d in debts if d not in self.a_tokens]
        if unknown and self.aave_pool is not None:
            answers = await chain.batch([
                ("eth_call", [{"to": self.aave_pool,
                               "data": _GET_RESERVE_DATA + encode(["address"], [d]).hex()},
                              "latest"]) for d in unknown])
            for debt, answer in zip(unknown, answers, strict=True):
                self.a_tokens[debt] = _flashable_a_token(str(answer))
        for debt in unknown:
            self.a_tokens.setdefault(debt, None)
        calls: list[tuple[str, list[object]]] = []
        slots: list[tuple[str, str]] = []
        for debt in debts:
            holders = {"own": self.executor}
            if self.morpho is not None:
                holders["morpho"] = self.morpho
            a_token = self.a_tokens.get(debt)
            if a_token is not None:
                holders["aave"] = a_token
            holders.update({f"v3:{p.address}": p.address for p in self.v3_pools
                            if debt in (p.token0, p.token1)})
            for name, holder in holders.items():
                data = BALANCE_OF + encode(["address"], [holder]).hex()
                calls.append(("eth_call", [{"to": debt, "data": data}, "latest"]))
                slots.append((debt, name))
        answers = await chain.batch(calls) if calls else []
        self.liquidity = {debt: Lenders() for debt in debts}
        for (debt, name), answer in zip(slots, answers, strict=True):
            amount = int(str(answer), 16)
            if name.startswith("v3:"):
                self.liquidity[debt].v3[name.removeprefix("v3:")] = amount
            else:
                setattr(self.liquidity[debt], name, amount)

    def _busy(self, debt: str, collaterals: Sequence[str]
              ) -> tuple[frozenset[str], frozenset[str]]:
        """(pools an exit of these collaterals into `debt` may swap in, those and the
        pools the debt -> quote surplus sale may use): a lender among the first is locked
        when the exit needs it; a V2 pair among the second would take its fee into the
        reserves the sale was quoted on."""
        key = (debt, tuple(collaterals))
        known = self.busy_sets.get(key)
        if known is not None:
            return known
        venue: Venue = self.exits if self.exits is not None else self.dex
        exits = frozenset(p for c in collaterals for p in venue.pools(c, debt))
        sale = frozenset(venue.pools(debt, self.quote_token)) \
            if debt != self.quote_token else frozenset()
        self.busy_sets[key] = exits, exits | sale
        return exits, exits | sale

    def _flash_pair(self, debt: str, collaterals: str | Sequence[str]) -> tuple[str | None, int]:
        """The deepest V2 pair of `debt` that neither an exit swap of the collaterals nor
        the debt -> quote profit swap may use (a pair is locked while it lends)."""
        if isinstance(collaterals, str):
            collaterals = (collaterals,)
        busy = self._busy(debt, collaterals)[1]
        best: tuple[str | None, int] = (None, 0)
        for pair in self.dex.pairs.values():
            if pair.address in busy:
                continue
            if debt not in (pair.token0, pair.token1):
                continue
            reserve = pair.reserve0 if pair.token0 == debt else pair.reserve1
            if reserve > best[1]:
                best = (pair.address, reserve)
        return best

    def choose(
        self, debt: str, collateral: str | Sequence[str], amount: int
    ) -> tuple[Funding, int, str | None]:
        """(funding, fee in debt units, flash pair) of the cheapest lender that can lend it.

        `collateral`: the collateral (or, for a batch, every collateral) sold into `debt`."""
        lenders = self.liquidity.get(debt, Lenders())
        if self.morpho is not None and lenders.morpho >= amount:
            return Funding.MORPHO_FLASH_LOAN, 0, None
        if lenders.own >= amount:
            return Funding.OWN_BALANCE, 0, None
        aave_fee = amount * self.aave_premium_bps // 10_000  # FlashLoanLogic: percentMul, down
        collaterals = (collateral,) if isinstance(collateral, str) else collateral
        pair, reserve = self._flash_pair(debt, collaterals)
        options: list[tuple[int, Funding, str | None]] = []
        if self.a_tokens.get(debt) is not None and lenders.aave >= amount:
            options.append((aave_fee, Funding.AAVE_FLASH_LOAN, None))
        if pair is not None and reserve > amount:
            options.append((uniswap_fee(amount), Funding.UNISWAP_V2_FLASH_SWAP, pair))
        locked = self._busy(debt, collaterals)[0]
        for pool in self.v3_pools:
            if pool.address not in locked and lenders.v3.get(pool.address, 0) >= amount:
                options.append((uniswap_v3_flash_fee(amount, pool.fee_pips),
                                Funding.UNISWAP_V3_FLASH, pool.address))
        if not options:
            raise ValueError(f"no lender holds {amount} of {debt}")
        fee, funding, flash_pair = min(options, key=lambda o: (o[0], int(o[1])))
        return funding, fee, flash_pair

    def max_amount(self, debt: str, collateral: str) -> int:
        """The most of `debt` any single lender can provide now."""
        lenders = self.liquidity.get(debt, Lenders())
        pair_reserve = self._flash_pair(debt, collateral)[1]
        aave = lenders.aave if self.a_tokens.get(debt) is not None else 0
        morpho = lenders.morpho if self.morpho is not None else 0
        locked = self._busy(debt, (collateral,))[0]
        v3 = max((a for p, a in lenders.v3.items() if p not in locked), default=0)
        return max(morpho, lenders.own, aave, pair_reserve - 1, v3, 0)

    def fee(self, debt: str, collateral: str) -> Callable[[int], int]:
        """Debt units the cheapest lender charges for a repay of that size (for ranking)."""
        def fee(repay: int) -> int:
            try:
                return self.choose(debt, collateral, repay)[1]
            except ValueError:
                return repay  # no lender: make the size worthless rather than fail ranking
        return fee

    def gas_for(self, strategy: str, direct_gas: int) -> int:
        """Gas to rank a flash liquidation with: the last receipt's, or a first guess."""
        return self.gas.get(strategy, direct_gas + FLASH_GAS_OVERHEAD)

    def plan(
        self, leg: FlashLeg, *, debt: str, repay: int, min_profit: int,
        profit_pairs: Sequence[str] = (),
    ) -> FlashPlan:
        """The one-liquidation plan for `repay` of `debt` (`leg`, as its strategy encoded it),
        funded by the cheapest lender; the surplus is sold along `profit_pairs` and must
        reach `min_profit` of that token."""
        return self.plan_batch([leg], debt=debt, repays=[repay], min_profit=min_profit,
                               profit_pairs=profit_pairs)

    def plan_batch(
        self, legs: Sequence[FlashLeg], *, debt: str, repays: Sequence[int],
        min_profit: int, profit_pairs: Sequence[str] = (),
    ) -> FlashPlan:
        """Several liquidations of one debt token in one `execute` (`legs`, as their
        strategies encoded them): one lender lends the sum of their repays, and the summed
        surplus must reach `min_profit`."""
        total = sum(repays)
        funding, _fee, pair = self.choose(debt, [leg.collateral for leg in legs], total)
        return FlashPlan(
            funding=funding, debt_token=debt,
            flash_amount=0 if funding == Funding.OWN_BALANCE else total,
            liquidations=tuple(legs), min_profit=min_profit, flash_pair=pair,
            profit_pairs=tuple(profit_pairs),
        )

    def can_lend(self, debt: str, collaterals: Sequence[str], amount: int) -> bool:
        """Does some lender hold `amount` of `debt` for a batch selling these collaterals?"""
        try:
            self.choose(debt, collaterals, amount)
        except ValueError:
            return False
        return True

    def calldata(self, plan: FlashPlan) -> str:
        return encode_execute(plan)


def _flashable_a_token(answer: str) -> str | None:
    """The aToken of a `getReserveData` answer, if the reserve has flash loans enabled."""
    raw = bytes.fromhex(answer.removeprefix("0x"))
    if len(raw) < 15 * 32:
        return None
    words = decode(["uint256"] * 15, raw[: 15 * 32])
    configuration, a_token = int(words[0]), int(words[8])
    if not (configuration >> _FLASHLOAN_ENABLED_BIT) & 1 or a_token == 0:
        return None
    return "0x" + f"{a_token:040x}"


def min_out(amount_out: int) -> int:
    """The least the exit swap may return: the ranked quote less the tolerance."""
    return amount_out * (10_000 - MIN_OUT_TOLERANCE_BPS) // 10_000
