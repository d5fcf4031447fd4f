"""Tests for strategies.aave_v3.reserve_config: bitmap decoding of reserve and user configs.

The encoder below is written from the documented bit layout (start bit, width), independently
of the masks copied into the module; the masks are also checked against the Solidity source.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from strategies.aave_v3 import reserve_config as rc
from strategies.aave_v3.reserve_config import (
    InvalidReserveIndexError,
    ReserveConfig,
    UserConfig,
    decode_reserve_configuration,
    decode_user_configuration,
    get_caps,
    get_flags,
    get_params,
    is_borrowing,
    is_using_as_collateral,
)

UINT256_MAX = 2**256 - 1

# name -> (start bit, width) from ReserveConfiguration.sol's layout comment.
LAYOUT: dict[str, tuple[int, int]] = {
    "ltv": (0, 16),
    "liquidation_threshold": (16, 16),
    "liquidation_bonus": (32, 16),
    "decimals": (48, 8),
    "active": (56, 1),
    "frozen": (57, 1),
    "borrowing_enabled": (58, 1),
    "stable_borrowing_enabled": (59, 1),
    "paused": (60, 1),
    "borrowable_in_isolation": (61, 1),
    "siloed_borrowing": (62, 1),
    "flash_loan_enabled": (63, 1),
    "reserve_factor": (64, 16),
    "borrow_cap": (80, 36),
    "supply_cap": (116, 36),
    "liquidation_protocol_fee": (152, 16),
    "emode_category": (168, 8),
    "unbacked_mint_cap": (176, 36),
    "debt_ceiling": (212, 40),
}

MASKS: dict[str, int] = {
    "ltv": rc.LTV_MASK,
    "liquidation_threshold": rc.LIQUIDATION_THRESHOLD_MASK,
    "liquidation_bonus": rc.LIQUIDATION_BONUS_MASK,
    "decimals": rc.DECIMALS_MASK,
    "active": rc.ACTIVE_MASK,
    "frozen": rc.FROZEN_MASK,
    "borrowing_enabled": rc.BORROWING_MASK,
    "stable_borrowing_enabled": rc.STABLE_BORROWING_MASK,
    "paused": rc.PAUSED_MASK,
    "borrowable_in_isolation": rc.BORROWABLE_IN_ISOLATION_MASK,
    "siloed_borrowing": rc.SILOED_BORROWING_MASK,
    "flash_loan_enabled": rc.FLASHLOAN_ENABLED_MASK,
    "reserve_factor": rc.RESERVE_FACTOR_MASK,
    "borrow_cap": rc.BORROW_CAP_MASK,
    "supply_cap": rc.SUPPLY_CAP_MASK,
    "liquidation_protocol_fee": rc.LIQUIDATION_PROTOCOL_FEE_MASK,
    "emode_category": rc.EMODE_CATEGORY_MASK,
    "unbacked_mint_cap": rc.UNBACKED_MINT_CAP_MASK,
    "debt_ceiling": rc.DEBT_CEILING_MASK,
}

SOL = Path(__file__).resolve().parents[2] / (
    "node_modules/@aave/core-v3/contracts/protocol/libraries/configuration/ReserveConfiguration.sol"
)


def encode(**fields: int | bool) -> int:
    data = 0
    for name, value in fields.items():
        start, width = LAYOUT[name]
        assert 0 <= int(value) < 2**width
        data |= int(value) << start
    return data


def decoded_fields(config: ReserveConfig) -> dict[str, int | bool]:
    return {name: getattr(config, name) for name in LAYOUT}


def test_masks_cover_exactly_their_field() -> None:
    for name, mask in MASKS.items():
        start, width = LAYOUT[name]
        assert mask ^ UINT256_MAX == ((1 << width) - 1) << start, name


@pytest.mark.skipif(not SOL.exists(), reason="@aave/core-v3 sources not installed")
def test_masks_and_positions_equal_the_solidity_source() -> None:
    source = SOL.read_text()
    masks = dict(re.findall(r"uint256 internal constant (\w+_MASK) =\s+(0x[0-9A-F]+);", source))
    assert len(masks) == 19
    for name, literal in masks.items():
        assert getattr(rc, name) == int(literal, 16), name
    positions = re.findall(r"uint256 internal constant (\w+_START_BIT_POSITION) = (\d+);", source)
    assert len(positions) == 18
    for name, value in positions:
        assert getattr(rc, name) == int(value), name


def test_decode_hand_built_weth_like_config() -> None:
    # ltv 8050 (0x1F72), threshold 8300 (0x206C), bonus 10500 (0x2904), decimals 18 (0x12),
    # flags byte 0x85 = active (56) + borrowing (58) + flash loans (63), reserve factor 1500
    # (0x05DC), borrow cap 1_400_000 (0x155CC0) at bit 80, supply cap 1_800_000 (0x1B7740)
    # at bit 116, protocol fee 1000 (0x03E8) at bit 152, eMode category 1 at bit 168.
    data = (
        0x05DC_85_12_2904_206C_1F72 | 0x155CC0 << 80 | 0x1B7740 << 116 | 0x03E8 << 152 | 0x01 << 168
    )
    config = decode_reserve_configuration(data)
    assert config == ReserveConfig(
        data=data,
        ltv=8050,
        liquidation_threshold=8300,
        liquidation_bonus=10500,
        decimals=18,
        active=True,
        frozen=False,
        borrowing_enabled=True,
        stable_borrowing_enabled=False,
        paused=False,
        borrowable_in_isolation=False,
        siloed_borrowing=False,
        flash_loan_enabled=True,
        reserve_factor=1500,
        borrow_cap=1_400_000,
        supply_cap=1_800_000,
        liquidation_protocol_fee=1000,
        emode_category=1,
        unbacked_mint_cap=0,
        debt_ceiling=0,
    )
    assert get_params(data) == (8050, 8300, 10500, 18, 1500, 1)
    assert get_flags(data) == (True, False, True, False, False)
    assert get_caps(data) == (1_400_000, 1_800_000)
    assert get_params(data).decimals == 18
    assert rc.get_liquidation_protocol_fee(data) == 1000
    assert rc.get_emode_category(data) == 1


def test_each_flag_alone() -> None:
    flags = [name for name, (_, width) in LAYOUT.items() if width == 1]
    assert len(flags) == 8
    for name in flags:
        config = decode_reserve_configuration(encode(**{name: True}))
        assert {f for f in flags if getattr(config, f)} == {name}
        assert (config.ltv, config.decimals, config.debt_ceiling) == (0, 0, 0)


def test_all_ones_gives_max_valid_values() -> None:
    config = decode_reserve_configuration(UINT256_MAX)
    assert (config.ltv, config.liquidation_threshold, config.liquidation_bonus) == (
        65535,
        65535,
        65535,
    )
    assert config.decimals == 255
    assert config.reserve_factor == config.liquidation_protocol_fee == 65535
    assert config.borrow_cap == config.supply_cap == config.unbacked_mint_cap == 68719476735
    assert config.emode_category == 255
    assert config.debt_ceiling == 1099511627775
    assert get_flags(UINT256_MAX) == (True,) * 5
    assert config.borrowable_in_isolation and config.siloed_borrowing and config.flash_loan_enabled


def test_zero_config_and_top_unused_bits() -> None:
    zero = decode_reserve_configuration(0)
    assert all(not value for value in decoded_fields(zero).values())
    top = decode_reserve_configuration(0xF << 252)  # bits 252..255 belong to no field
    assert decoded_fields(top) == decoded_fields(zero)


def test_random_round_trip() -> None:
    rng = random.Random("reserve-config")
    for _ in range(2000):
        fields: dict[str, int | bool] = {
            name: (rng.random() < 0.5) if width == 1 else rng.getrandbits(width)
            for name, (_, width) in LAYOUT.items()
        }
        data = encode(**fields)
        config = ReserveConfig.decode(data)
        assert decoded_fields(config) == fields
        assert config.data == data


def test_invalid_data_rejected() -> None:
    with pytest.raises(ValueError):
        decode_reserve_configuration(-1)
    with pytest.raises(ValueError):
        rc.get_ltv(2**256)


def test_config_is_frozen() -> None:
    config = decode_reserve_configuration(0)
    with pytest.raises(AttributeError):
        config.ltv = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- user configuration


def test_user_configuration_bits() -> None:
    # reserve 0: borrowing (bit 0) and collateral (bit 1); reserve 3: collateral (bit 7);
    # reserve 5: borrowing (bit 10); reserve 127: both (bits 254, 255).
    data = 0b11 | 1 << 7 | 1 << 10 | 0b11 << 254
    assert is_borrowing(data, 0) and is_using_as_collateral(data, 0)
    assert is_using_as_collateral(data, 3) and not is_borrowing(data, 3)
    assert is_borrowing(data, 5) and not is_using_as_collateral(data, 5)
    assert not is_borrowing(data, 4) and not is_using_as_collateral(data, 4)
    assert is_borrowing(data, 127) and is_using_as_collateral(data, 127)
    user = decode_user_configuration(data)
    assert user.collateral_indices == (0, 3, 127)
    assert user.borrowing_indices == (0, 5, 127)
    assert user.is_using_as_collateral_or_borrowing(3)
    assert not user.is_using_as_collateral_or_borrowing(4)
    assert not user.is_empty
    assert user.is_borrowing_any and user.is_using_as_collateral_any
    assert not user.is_borrowing_one and not user.is_using_as_collateral_one


def test_user_configuration_single_and_empty() -> None:
    one = UserConfig.decode(1 << 7)  # only reserve 3 as collateral
    assert one.is_using_as_collateral_one and one.is_using_as_collateral_any
    assert not one.is_borrowing_any and not one.is_borrowing_one
    assert one.is_using_as_collateral(3) and not one.is_borrowing(3)
    empty = UserConfig.decode(0)
    assert empty.is_empty
    assert empty.collateral_indices == empty.borrowing_indices == ()


def test_user_configuration_random_against_bit_formula() -> None:
    rng = random.Random("user-config")
    for _ in range(200):
        data = rng.getrandbits(256)
        user = UserConfig.decode(data)
        for index in range(128):
            assert user.is_borrowing(index) == bool(data >> (2 * index) & 1)
            assert user.is_using_as_collateral(index) == bool(data >> (2 * index + 1) & 1)
        assert len(user.collateral_indices) == bin(data & rc.USER_COLLATERAL_MASK).count("1")


def test_user_configuration_invalid_index() -> None:
    with pytest.raises(InvalidReserveIndexError):
        is_borrowing(1, 128)
    with pytest.raises(InvalidReserveIndexError):
        is_using_as_collateral(1, -1)
    with pytest.raises(ValueError):
        UserConfig.decode(2**256)
