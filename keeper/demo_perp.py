"""The Perp v2 devnet profile as `keeper demo --perp` drives it (keeper.demo_profiles).

The profile starts the Perp devnet (`keeper devnet --perp`: the default devnet plus Perp v2
"Curie", cached under its own key) and remembers what its perp.json says, by RPC URL, so the
demo can configure `[strategies.perp_v2]` from the devnet it was handed. A Perp market's mark
does not follow a feed on its own (the median of the vAMM's 15-second price, its 30-minute
TWAP and the index plus a premium), so after each crash step posts the feeds, `follow_step`
trades each market's vAMM to its index's new price from the profile's whale and lets 16 s of
chain time pass (keeper.devnet.perp_drive: what `keeper devnet perp-move` does after posting
the index).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

from keeper.anvil import Anvil
from keeper.chain.http import HttpRpc
from keeper.devnet.crash import CrashStep
from keeper.devnet.deploy import DevnetSpec
from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.info import DevnetInfo
from keeper.devnet.perp import PerpInfo, attach, sqrt_price_x96
from keeper.devnet.perp_drive import (
    MAX_UINT,
    PRICE_LIMIT_INTERVAL,
    SETTLE_SECONDS,
    next_trade,
    trade_to,
)
from keeper.devnet.perp_seed import start_perp_devnet

# The keeper's margin cap in the demo: the liquidator holds $1M in the Vault on the devnet.
DEMO_MAX_MARGIN_USD = 500_000

# What each started Perp devnet's perp.json says, by its RPC URL (a process may start several).
_STARTED: dict[str, PerpInfo] = {}


def start_perp(spec: DevnetSpec) -> tuple[Anvil, DevnetInfo, bool]:
    """The Perp devnet profile: (anvil, devnet info, from cache); its PerpInfo remembered."""
    anvil, devnet, info, cached = start_perp_devnet(spec)
    _STARTED[devnet.rpc_url] = info
    return anvil, devnet, cached


def perp_info(devnet: DevnetInfo) -> PerpInfo | None:
    """The Perp profile's info for a devnet started by `start_perp`; None otherwise."""
    return _STARTED.get(devnet.rpc_url)


def perp_section(devnet: DevnetInfo) -> dict[str, object] | None:
    """`[strategies.perp_v2]` for a devnet started by `start_perp`, as `keeper devnet --perp
    --write-config` writes it, with the demo's margin cap; None for any other devnet."""
    info = perp_info(devnet)
    if info is None:
        return None
    return {"clearing_house": info.clearing_house, "market_registry": info.market_registry,
            "max_margin_usd": DEMO_MAX_MARGIN_USD}


def follow_step(w3: Web3, devnet: DevnetInfo, step: CrashStep) -> None:
    """After `step` posted the feeds: each Perp market whose index token the step prices is
    traded to that price on its vAMM, then one block `SETTLE_SECONDS` later, when the mark has
    followed. Nothing for a devnet without Perp."""
    info = perp_info(devnet)
    if info is None:
        return
    contracts = attach(w3, info)
    deployer = Deployer(w3, w3.eth.accounts[0])
    whale = Web3.to_checksum_address(info.whale)
    rpc(w3, "anvil_impersonateAccount", whale)  # impersonation is not in a dumped state
    moved = False
    for symbol, market in sorted(info.markets.items()):
        usd = step.prices.get(market.underlying)
        if usd is not None and usd > 0:
            moved = bool(trade_to(deployer, contracts, whale, symbol, Decimal(usd))) or moved
    if moved:
        rpc(w3, "evm_increaseTime", SETTLE_SECONDS)
        rpc(w3, "evm_mine")


def _selector(signature: str) -> str:
    return "0x" + function_signature_to_4byte_selector(signature).hex()


OPEN_POSITION = _selector(
    "openPosition((address,bool,bool,uint256,uint256,uint256,uint160,bytes32))")
SLOT0, LIQUIDITY = _selector("slot0()"), _selector("liquidity()")
TRADE_GAS = 3_000_000  # an openPosition crossing 900 ticks: ~1M on the devnet
WHALE_GAS_MONEY = 1000 * 10**18

# Mines one block `seconds` after the last one; its number.
MineAfter = Callable[[int], Awaitable[int]]


async def follow_step_replayed(
    rpc: HttpRpc, devnet: DevnetInfo, step: CrashStep, mine_after: MineAfter,
) -> int | None:
    """`follow_step` for a replay that mines its own blocks (automine off: the price-path
    backtest): each trade is sent from the impersonated whale and mined `PRICE_LIMIT_INTERVAL`
    after the one before, then one block `SETTLE_SECONDS` later; that block's number (None
    when there is no Perp or nothing moved)."""
    info = perp_info(devnet)
    if info is None:
        return None
    whale = Web3.to_checksum_address(info.whale)
    await rpc.call("anvil_impersonateAccount", [whale])
    await rpc.call("anvil_setBalance", [whale, hex(WHALE_GAS_MONEY)])
    last = None
    for _symbol, market in sorted(info.markets.items()):
        usd = step.prices.get(market.underlying)
        if usd is None or usd <= 0:
            continue
        target = sqrt_price_x96(Decimal(usd))
        while True:
            (now,) = decode(["uint160"], bytes.fromhex(
                (await rpc.eth_call(market.pool, SLOT0))[2:66]))
            (liquidity,) = decode(["uint128"], bytes.fromhex(
                (await rpc.eth_call(market.pool, LIQUIDITY))[2:]))
            trade = next_trade(int(now), int(liquidity), target)
            if trade is None:
                break
            down, amount, limit = trade
            params = (market.base_token, down, True, amount, 0, MAX_UINT, limit, b"\0" * 32)
            data = OPEN_POSITION + encode(
                ["(address,bool,bool,uint256,uint256,uint256,uint160,bytes32)"], [params]).hex()
            await rpc.call("eth_sendTransaction", [{"from": whale, "to": info.clearing_house,
                                                    "data": data, "gas": hex(TRADE_GAS)}])
            last = await mine_after(PRICE_LIMIT_INTERVAL)
    if last is None:
        return None
    return await mine_after(SETTLE_SECONDS)


def perp_kind(key: str) -> str | None:
    """The Perp action a journal key is for ("liquidate", "cancel", "close", "withdraw");
    None for another strategy's key. Keys are "<chain>:perp_v2:<account>:<base>:<kind>:..."."""
    parts = key.split(":")
    return parts[4] if len(parts) > 4 and parts[1] == "perp_v2" else None


def perp_summary(keys: list[str]) -> str:
    """One line counting the confirmed Perp actions among `keys`; "" when there are none."""
    kinds = [k for k in map(perp_kind, keys) if k is not None]
    if not kinds:
        return ""
    counts = {k: kinds.count(k) for k in ("liquidate", "cancel", "close", "withdraw")}
    return ("Perp v2: {liquidate} liquidations, {cancel} order cancels, {close} positions "
            "closed, {withdraw} profit withdrawals".format(**counts))
