"""The few ABI pieces the race needs: selectors, calldata, event topics, revert decoding.

Written with eth_abi against signatures copied from the protocols' sources
(node_modules/@aave/core-v3, node_modules/@morpho-org/morpho-blue, contracts/executor), so
the competitor and the verdict read the chain the way any peer bot would, without the
keeper's strategies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from keeper.paths import node_modules

WAD = 10**18
MAX_UINT = 2**256 - 1


def selector(signature: str) -> str:
    """`0x` + the first four bytes of keccak(signature)."""
    return "0x" + keccak(text=signature)[:4].hex()


def topic(signature: str) -> str:
    """An event's topic 0."""
    return "0x" + keccak(text=signature).hex()


def _types(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1: signature.rindex(")")]
    return [t for t in _split(inner) if t]


def _split(inner: str) -> list[str]:
    out, depth, current = [], 0, ""
    for char in inner:
        if char == "," and depth == 0:
            out.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    out.append(current)
    return out


def calldata(signature: str, *args: Any) -> str:
    """ABI-encoded call of `signature` (e.g. "balanceOf(address)") with `args`."""
    return selector(signature) + encode(_types(signature), list(args)).hex()


def words(data: str) -> list[int]:
    """A hex answer as 32-byte words (static return values)."""
    raw = bytes.fromhex(data.removeprefix("0x"))
    return [int.from_bytes(raw[i: i + 32], "big") for i in range(0, len(raw) - len(raw) % 32, 32)]


def address_word(word: int) -> str:
    return "0x" + f"{word:064x}"[-40:]


def topic_address(value: str) -> str:
    """A log topic (an indexed address) as a 0x address."""
    return "0x" + value.removeprefix("0x")[-40:].lower()


def address_topic(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


# ---------------------------------------------------------------- Aave V3 (core-v3 1.19.3)

GET_USER_ACCOUNT_DATA = "getUserAccountData(address)"
GET_RESERVES_LIST = "getReservesList()"
GET_RESERVE_DATA = "getReserveData(address)"
GET_USER_CONFIGURATION = "getUserConfiguration(address)"
GET_ASSET_PRICE = "getAssetPrice(address)"
BALANCE_OF = "balanceOf(address)"
DECIMALS = "decimals()"
APPROVE = "approve(address,uint256)"
LIQUIDATION_CALL = "liquidationCall(address,address,address,uint256,bool)"
AAVE_BORROW = topic("Borrow(address,address,address,uint256,uint8,uint256,uint16)")
LIQUIDATION_CALL_EVENT = topic(
    "LiquidationCall(address,address,address,uint256,uint256,address,bool)")
# getReserveData's ReserveData (v3.0): field 7 is the reserve id, 8-10 its tokens.
RESERVE_ID, RESERVE_ATOKEN, RESERVE_STABLE_DEBT, RESERVE_VARIABLE_DEBT = 7, 8, 9, 10
CLOSE_FACTOR_HF_THRESHOLD = 95 * WAD // 100

# ---------------------------------------------------------------- Morpho Blue

MARKET_PARAMS = "(address,address,address,address,uint256)"
MORPHO_LIQUIDATE = f"liquidate({MARKET_PARAMS},address,uint256,uint256,bytes)"
MORPHO_POSITION = "position(bytes32,address)"
MORPHO_MARKET = "market(bytes32)"
MORPHO_ID_TO_PARAMS = "idToMarketParams(bytes32)"
ORACLE_PRICE = "price()"
MORPHO_BORROW = topic("Borrow(bytes32,address,address,address,uint256,uint256)")
MORPHO_LIQUIDATE_EVENT = topic(
    "Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)")
ORACLE_PRICE_SCALE = 10**36
LIQUIDATION_CURSOR = 3 * WAD // 10
MAX_LIQUIDATION_INCENTIVE_FACTOR = 115 * WAD // 100
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1

# ---------------------------------------------------------------- revert data

ERROR_STRING = selector("Error(string)")
PANIC = selector("Panic(uint256)")
# FlashLiquidator's custom errors (contracts/executor/FlashLiquidator.sol).
CUSTOM_ERRORS = {
    selector(s): s for s in (
        "NotOwner()", "NotPendingOwner()", "ZeroAddress()", "UnexpectedCallback()",
        "BadInitiator()", "CallbackNotCalled()", "ProtocolNotSet()", "BadPlan()",
        "MinOut(uint256,uint256,uint256)", "ProfitTooLow(uint256,uint256)",
        "Loss(uint256,uint256)", "TokenCallFailed(address)",
    )
}
_AAVE_ERROR = re.compile(r"string public constant (\w+) = '(\d+)';")


@cache
def aave_error_names() -> dict[str, str]:
    """Aave's numeric error codes ('45') to their names (HEALTH_FACTOR_NOT_BELOW_THRESHOLD)."""
    path = node_modules() / "@aave" / "core-v3" / "contracts" / "protocol" / "libraries" \
        / "helpers" / "Errors.sol"
    try:
        text = path.read_text()
    except OSError:
        return {}
    return {code: name for name, code in _AAVE_ERROR.findall(text)}


def revert_reason(output: str | None, fallback: str = "") -> str:
    """Readable revert data: Error(string) (Aave codes named), Panic, a FlashLiquidator
    error, or the raw selector."""
    data = (output or "").lower()
    if data.startswith(ERROR_STRING) and len(data) > 10:
        (text,) = decode(["string"], bytes.fromhex(data[10:]))
        name = aave_error_names().get(str(text))
        return f"{text} ({name})" if name else str(text)
    if data.startswith(PANIC) and len(data) > 10:
        (code,) = decode(["uint256"], bytes.fromhex(data[10:]))
        return f"panic 0x{int(code):02x}" + (" (arithmetic over/underflow)" if code == 0x11 else "")
    if data[:10] in CUSTOM_ERRORS:
        return CUSTOM_ERRORS[data[:10]]
    if len(data) >= 10:
        return f"error {data[:10]}"
    return fallback or "no revert data"


def decode_args(signature: str, data: str) -> Sequence[Any]:
    """The arguments of a call to `signature` from its calldata (selector included)."""
    return decode(_types(signature), bytes.fromhex(data.removeprefix("0x")[8:]))
