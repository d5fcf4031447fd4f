"""Decoders for Aave V3's configuration bitmaps (@aave/core-v3 1.19.3), pure Python.

`ReserveConfigurationMap.data` is decoded exactly as the getters of ReserveConfiguration.sol
do it: `(data & ~MASK) >> START_BIT_POSITION`, with the masks copied verbatim from the contract.
`UserConfigurationMap.data` holds two bits per reserve index i: bit 2i = borrowing, bit 2i+1 =
used as collateral (UserConfiguration.sol).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from keeper.errors import StrategyError

UINT256_MAX = 2**256 - 1

# fmt: off
LTV_MASK =                      0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0000
LIQUIDATION_THRESHOLD_MASK =    0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0000FFFF
LIQUIDATION_BONUS_MASK =        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0000FFFFFFFF
DECIMALS_MASK =                 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00FFFFFFFFFFFF
ACTIVE_MASK =                   0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFFFFFFFF
FROZEN_MASK =                   0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFDFFFFFFFFFFFFFF
BORROWING_MASK =                0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFBFFFFFFFFFFFFFF
STABLE_BORROWING_MASK =         0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF7FFFFFFFFFFFFFF
PAUSED_MASK =                   0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFFFFFFFFF
BORROWABLE_IN_ISOLATION_MASK =  0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFDFFFFFFFFFFFFFFF
SILOED_BORROWING_MASK =         0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFBFFFFFFFFFFFFFFF
FLASHLOAN_ENABLED_MASK =        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF7FFFFFFFFFFFFFFF
RESERVE_FACTOR_MASK =           0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF0000FFFFFFFFFFFFFFFF
BORROW_CAP_MASK =               0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF000000000FFFFFFFFFFFFFFFFFFFF
SUPPLY_CAP_MASK =               0xFFFFFFFFFFFFFFFFFFFFFFFFFF000000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFF
LIQUIDATION_PROTOCOL_FEE_MASK = 0xFFFFFFFFFFFFFFFFFFFFFF0000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF
EMODE_CATEGORY_MASK =           0xFFFFFFFFFFFFFFFFFFFF00FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF
UNBACKED_MINT_CAP_MASK =        0xFFFFFFFFFFF000000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF
DEBT_CEILING_MASK =             0xF0000000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF
# fmt: on

LIQUIDATION_THRESHOLD_START_BIT_POSITION = 16
LIQUIDATION_BONUS_START_BIT_POSITION = 32
RESERVE_DECIMALS_START_BIT_POSITION = 48
IS_ACTIVE_START_BIT_POSITION = 56
IS_FROZEN_START_BIT_POSITION = 57
BORROWING_ENABLED_START_BIT_POSITION = 58
STABLE_BORROWING_ENABLED_START_BIT_POSITION = 59
IS_PAUSED_START_BIT_POSITION = 60
BORROWABLE_IN_ISOLATION_START_BIT_POSITION = 61
SILOED_BORROWING_START_BIT_POSITION = 62
FLASHLOAN_ENABLED_START_BIT_POSITION = 63
RESERVE_FACTOR_START_BIT_POSITION = 64
BORROW_CAP_START_BIT_POSITION = 80
SUPPLY_CAP_START_BIT_POSITION = 116
LIQUIDATION_PROTOCOL_FEE_START_BIT_POSITION = 152
EMODE_CATEGORY_START_BIT_POSITION = 168
UNBACKED_MINT_CAP_START_BIT_POSITION = 176
DEBT_CEILING_START_BIT_POSITION = 212

DEBT_CEILING_DECIMALS = 2
MAX_RESERVES_COUNT = 128

# UserConfiguration.sol
USER_BORROWING_MASK = 0x5555555555555555555555555555555555555555555555555555555555555555
USER_COLLATERAL_MASK = 0xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA


class InvalidReserveIndexError(StrategyError, ValueError):
    """Mirrors the `require(reserveIndex < MAX_RESERVES_COUNT, INVALID_RESERVE_INDEX)` revert."""


def _check(data: int) -> int:
    if not 0 <= data <= UINT256_MAX:
        raise ValueError(f"data={data} is not a uint256")
    return data


def _field(data: int, mask: int, start: int = 0) -> int:
    """`(data & ~mask) >> start`, with ~ taken over 256 bits as in Solidity."""
    return (_check(data) & (mask ^ UINT256_MAX)) >> start


def _flag(data: int, mask: int) -> bool:
    """`(data & ~mask) != 0`."""
    return _field(data, mask) != 0


def get_ltv(data: int) -> int:
    """Mirrors ReserveConfiguration.getLtv (bps)."""
    return _field(data, LTV_MASK)


def get_liquidation_threshold(data: int) -> int:
    """Mirrors ReserveConfiguration.getLiquidationThreshold (bps)."""
    return _field(data, LIQUIDATION_THRESHOLD_MASK, LIQUIDATION_THRESHOLD_START_BIT_POSITION)


def get_liquidation_bonus(data: int) -> int:
    """Mirrors ReserveConfiguration.getLiquidationBonus (bps, 10000 + bonus, e.g. 10500)."""
    return _field(data, LIQUIDATION_BONUS_MASK, LIQUIDATION_BONUS_START_BIT_POSITION)


def get_decimals(data: int) -> int:
    """Mirrors ReserveConfiguration.getDecimals."""
    return _field(data, DECIMALS_MASK, RESERVE_DECIMALS_START_BIT_POSITION)


def get_active(data: int) -> bool:
    """Mirrors ReserveConfiguration.getActive."""
    return _flag(data, ACTIVE_MASK)


def get_frozen(data: int) -> bool:
    """Mirrors ReserveConfiguration.getFrozen."""
    return _flag(data, FROZEN_MASK)


def get_borrowing_enabled(data: int) -> bool:
    """Mirrors ReserveConfiguration.getBorrowingEnabled."""
    return _flag(data, BORROWING_MASK)


def get_stable_rate_borrowing_enabled(data: int) -> bool:
    """Mirrors ReserveConfiguration.getStableRateBorrowingEnabled."""
    return _flag(data, STABLE_BORROWING_MASK)


def get_paused(data: int) -> bool:
    """Mirrors ReserveConfiguration.getPaused."""
    return _flag(data, PAUSED_MASK)


def get_borrowable_in_isolation(data: int) -> bool:
    """Mirrors ReserveConfiguration.getBorrowableInIsolation."""
    return _flag(data, BORROWABLE_IN_ISOLATION_MASK)


def get_siloed_borrowing(data: int) -> bool:
    """Mirrors ReserveConfiguration.getSiloedBorrowing."""
    return _flag(data, SILOED_BORROWING_MASK)


def get_flash_loan_enabled(data: int) -> bool:
    """Mirrors ReserveConfiguration.getFlashLoanEnabled."""
    return _flag(data, FLASHLOAN_ENABLED_MASK)


def get_reserve_factor(data: int) -> int:
    """Mirrors ReserveConfiguration.getReserveFactor (bps)."""
    return _field(data, RESERVE_FACTOR_MASK, RESERVE_FACTOR_START_BIT_POSITION)


def get_borrow_cap(data: int) -> int:
    """Mirrors ReserveConfiguration.getBorrowCap (whole tokens, 0 = no cap)."""
    return _field(data, BORROW_CAP_MASK, BORROW_CAP_START_BIT_POSITION)


def get_supply_cap(data: int) -> int:
    """Mirrors ReserveConfiguration.getSupplyCap (whole tokens, 0 = no cap)."""
    return _field(data, SUPPLY_CAP_MASK, SUPPLY_CAP_START_BIT_POSITION)


def get_liquidation_protocol_fee(data: int) -> int:
    """Mirrors ReserveConfiguration.getLiquidationProtocolFee (bps of the bonus)."""
    return _field(data, LIQUIDATION_PROTOCOL_FEE_MASK, LIQUIDATION_PROTOCOL_FEE_START_BIT_POSITION)


def get_emode_category(data: int) -> int:
    """Mirrors ReserveConfiguration.getEModeCategory."""
    return _field(data, EMODE_CATEGORY_MASK, EMODE_CATEGORY_START_BIT_POSITION)


def get_unbacked_mint_cap(data: int) -> int:
    """Mirrors ReserveConfiguration.getUnbackedMintCap (whole tokens)."""
    return _field(data, UNBACKED_MINT_CAP_MASK, UNBACKED_MINT_CAP_START_BIT_POSITION)


def get_debt_ceiling(data: int) -> int:
    """Mirrors ReserveConfiguration.getDebtCeiling (DEBT_CEILING_DECIMALS = 2 decimals)."""
    return _field(data, DEBT_CEILING_MASK, DEBT_CEILING_START_BIT_POSITION)


class ReserveParams(NamedTuple):
    """ReserveConfiguration.getParams' 6-tuple, in its order."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    decimals: int
    reserve_factor: int
    emode_category: int


class ReserveFlags(NamedTuple):
    """ReserveConfiguration.getFlags' 5-tuple, in its order."""

    active: bool
    frozen: bool
    borrowing_enabled: bool
    stable_borrowing_enabled: bool
    paused: bool


class ReserveCaps(NamedTuple):
    """ReserveConfiguration.getCaps' 2-tuple, in its order."""

    borrow_cap: int
    supply_cap: int


def get_params(data: int) -> ReserveParams:
    """Mirrors ReserveConfiguration.getParams."""
    return ReserveParams(
        get_ltv(data),
        get_liquidation_threshold(data),
        get_liquidation_bonus(data),
        get_decimals(data),
        get_reserve_factor(data),
        get_emode_category(data),
    )


def get_flags(data: int) -> ReserveFlags:
    """Mirrors ReserveConfiguration.getFlags."""
    return ReserveFlags(
        get_active(data),
        get_frozen(data),
        get_borrowing_enabled(data),
        get_stable_rate_borrowing_enabled(data),
        get_paused(data),
    )


def get_caps(data: int) -> ReserveCaps:
    """Mirrors ReserveConfiguration.getCaps."""
    return ReserveCaps(get_borrow_cap(data), get_supply_cap(data))


@dataclass(frozen=True, slots=True)
class ReserveConfig:
    """Every field of a ReserveConfigurationMap, decoded; `data` keeps the raw bitmap."""

    data: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    decimals: int
    active: bool
    frozen: bool
    borrowing_enabled: bool
    stable_borrowing_enabled: bool
    paused: bool
    borrowable_in_isolation: bool
    siloed_borrowing: bool
    flash_loan_enabled: bool
    reserve_factor: int
    borrow_cap: int
    supply_cap: int
    liquidation_protocol_fee: int
    emode_category: int
    unbacked_mint_cap: int
    debt_ceiling: int

    @classmethod
    def decode(cls, data: int) -> ReserveConfig:
        """Decode `ReserveConfigurationMap.data` with the ReserveConfiguration getters."""
        return cls(
            data=_check(data),
            ltv=get_ltv(data),
            liquidation_threshold=get_liquidation_threshold(data),
            liquidation_bonus=get_liquidation_bonus(data),
            decimals=get_decimals(data),
            active=get_active(data),
            frozen=get_frozen(data),
            borrowing_enabled=get_borrowing_enabled(data),
            stable_borrowing_enabled=get_stable_rate_borrowing_enabled(data),
            paused=get_paused(data),
            borrowable_in_isolation=get_borrowable_in_isolation(data),
            siloed_borrowing=get_siloed_borrowing(data),
            flash_loan_enabled=get_flash_loan_enabled(data),
            reserve_factor=get_reserve_factor(data),
            borrow_cap=get_borrow_cap(data),
            supply_cap=get_supply_cap(data),
            liquidation_protocol_fee=get_liquidation_protocol_fee(data),
            emode_category=get_emode_category(data),
            unbacked_mint_cap=get_unbacked_mint_cap(data),
            debt_ceiling=get_debt_ceiling(data),
        )


def decode_reserve_configuration(data: int) -> ReserveConfig:
    """Decode a ReserveConfigurationMap (as returned by Pool.getConfiguration)."""
    return ReserveConfig.decode(data)


# --------------------------------------------------------------------------- UserConfiguration


def _check_index(reserve_index: int) -> int:
    if not 0 <= reserve_index < MAX_RESERVES_COUNT:
        raise InvalidReserveIndexError(f"reserve index {reserve_index} not in [0, 128)")
    return reserve_index


def is_borrowing(data: int, reserve_index: int) -> bool:
    """Mirrors UserConfiguration.isBorrowing: bit 2*reserveIndex."""
    return (_check(data) >> (_check_index(reserve_index) << 1)) & 1 != 0


def is_using_as_collateral(data: int, reserve_index: int) -> bool:
    """Mirrors UserConfiguration.isUsingAsCollateral: bit 2*reserveIndex + 1."""
    return (_check(data) >> ((_check_index(reserve_index) << 1) + 1)) & 1 != 0


def is_using_as_collateral_or_borrowing(data: int, reserve_index: int) -> bool:
    """Mirrors UserConfiguration.isUsingAsCollateralOrBorrowing."""
    return (_check(data) >> (_check_index(reserve_index) << 1)) & 3 != 0


@functools.lru_cache(maxsize=4096)
def _decode_user_config(data: int) -> UserConfig:
    # Few distinct bitmaps exist (the same reserves in use), and the result is immutable.
    return UserConfig._decode(data)


def _is_one(bits: int) -> bool:
    return bits != 0 and bits & (bits - 1) == 0


@dataclass(frozen=True, slots=True)
class UserConfig:
    """A decoded UserConfigurationMap: which reserve indexes are collateral / borrowed."""

    data: int
    collateral_indices: tuple[int, ...]
    borrowing_indices: tuple[int, ...]

    @classmethod
    def decode(cls, data: int) -> UserConfig:
        """Decode `UserConfigurationMap.data` (as returned by Pool.getUserConfiguration)."""
        return _decode_user_config(data)

    @classmethod
    def _decode(cls, data: int) -> UserConfig:
        _check(data)
        indexes = range(MAX_RESERVES_COUNT)
        return cls(
            data=data,
            collateral_indices=tuple(i for i in indexes if is_using_as_collateral(data, i)),
            borrowing_indices=tuple(i for i in indexes if is_borrowing(data, i)),
        )

    def is_using_as_collateral(self, reserve_index: int) -> bool:
        """Mirrors UserConfiguration.isUsingAsCollateral."""
        return is_using_as_collateral(self.data, reserve_index)

    def is_borrowing(self, reserve_index: int) -> bool:
        """Mirrors UserConfiguration.isBorrowing."""
        return is_borrowing(self.data, reserve_index)

    def is_using_as_collateral_or_borrowing(self, reserve_index: int) -> bool:
        """Mirrors UserConfiguration.isUsingAsCollateralOrBorrowing."""
        return is_using_as_collateral_or_borrowing(self.data, reserve_index)

    @property
    def is_empty(self) -> bool:
        """Mirrors UserConfiguration.isEmpty."""
        return self.data == 0

    @property
    def is_using_as_collateral_any(self) -> bool:
        """Mirrors UserConfiguration.isUsingAsCollateralAny."""
        return self.data & USER_COLLATERAL_MASK != 0

    @property
    def is_using_as_collateral_one(self) -> bool:
        """Mirrors UserConfiguration.isUsingAsCollateralOne."""
        return _is_one(self.data & USER_COLLATERAL_MASK)

    @property
    def is_borrowing_any(self) -> bool:
        """Mirrors UserConfiguration.isBorrowingAny."""
        return self.data & USER_BORROWING_MASK != 0

    @property
    def is_borrowing_one(self) -> bool:
        """Mirrors UserConfiguration.isBorrowingOne."""
        return _is_one(self.data & USER_BORROWING_MASK)


def decode_user_configuration(data: int) -> UserConfig:
    """Decode a UserConfigurationMap."""
    return UserConfig.decode(data)
