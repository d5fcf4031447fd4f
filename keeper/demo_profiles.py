"""Devnet profiles `keeper demo` and the price-path backtest can add: `--maker` today.

A profile is a devnet of its own (the default devnet plus a protocol, cached under its own
key) with what the demo and the backtest need to drive it: how it starts, the strategy
section its devnet.json configures (`keeper.demo.devnet_strategies` adds it), the calls that
make the protocol's own price follow a posted feed, and how much chain time a crash step
stands for (auctions that run on the clock need the path's 10 minutes, not the 12 s of a
replayed block). `--perp` adds Perp v2 (keeper.demo_perp): after each step's feeds, its
vAMMs are traded to the new prices (`DemoProfile.after_step`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3

from keeper.anvil import Anvil
from keeper.demo_perp import follow_step, start_perp
from keeper.devnet.crash import CrashStep
from keeper.devnet.deploy import DevnetSpec
from keeper.devnet.info import DevnetInfo
from keeper.devnet.maker_profile import start_maker_devnet
from keeper.devnet.maker_seed import ETH_ILKS, WAD, ilk_id

StartDevnet = Callable[[DevnetSpec], tuple[Anvil, DevnetInfo, bool]]
# An unsigned transaction for eth_sendTransaction (its sender impersonated on the devnet).
TxRequest = dict[str, str]

# DSValue.poke(bytes32 wut) and Spotter.poke(bytes32 ilk) share the selector.
_POKE = "0x" + function_signature_to_4byte_selector("poke(bytes32)").hex()
PATH_STEP_SECONDS = 600  # the shipped price paths are 10-minute steps
POKE_GAS = 150_000  # DSValue.poke ~30k, Spotter.poke (pip.peek + Vat.file) ~60k on the devnet


@dataclass(frozen=True)
class DemoProfile:
    """A devnet profile as the demo and the backtest drive it."""

    name: str
    title: str  # what the demo's banner calls it
    start: StartDevnet
    # Chain time a crash step stands for (0: a step is just the next block).
    step_seconds: int
    # What follows a step's posted feeds on this devnet (Perp: its vAMMs trade there).
    after_step: Callable[[Web3, DevnetInfo, CrashStep], None] | None = None


def _start_maker(spec: DevnetSpec) -> tuple[Anvil, DevnetInfo, bool]:
    return start_maker_devnet(spec)


PROFILES: dict[str, DemoProfile] = {
    "maker": DemoProfile("maker", "Maker MCD: Dog/Clipper and Cat/Flipper auctions",
                         _start_maker, PATH_STEP_SECONDS),
    "perp": DemoProfile("perp", "Perp v2: cross-margin perpetuals on vAMMs", start_perp, 0,
                        after_step=follow_step),
}


def profile(name: str | None) -> DemoProfile | None:
    """The named profile (None for the default devnet alone)."""
    return None if name is None else PROFILES[name]


def maker_section(info: DevnetInfo) -> dict[str, object] | None:
    """`[strategies.maker]` off devnet.json, as `keeper devnet --maker --write-config` writes
    it: every ETH ilk through the profile's MakerKeeper, ETH-A's Flipper bids priced on the
    MCD_WETH/MCD_DAI pair. None without Maker."""
    maker = info.maker
    if maker is None or maker.keeper_contract is None:
        return None
    return {
        "vat": maker.vat, "dog": maker.dog, "cat": maker.cat, "spot": maker.spot,
        "jug": maker.jug, "dai": maker.dai, "dai_join": maker.dai_join,
        "keeper_contract": maker.keeper_contract,
        "ilks": {n: {"join": i.join} for n, i in maker.ilks.items()
                 if i.engine in ("clip", "flip")},
        "flip_exit_pair": maker.pairs["MCD_WETH/MCD_DAI"],
    }


def maker_price_txs(info: DevnetInfo, symbol: str, usd: Decimal) -> list[TxRequest]:
    """What `keeper.devnet.maker_seed.follow_price` sends, as unsigned transactions for a
    replay that mines its own blocks: the pip's owner pokes the ETH pip (DSValue.poke) and
    then Spotter.poke for each ETH ilk (in nonce order, so in that order in the block).
    Empty unless `symbol` is the feed Maker follows. The owner must be impersonated."""
    maker = info.maker
    if maker is None or symbol != maker.price_symbol:
        return []
    owner = maker.pip_owner
    pips = sorted({i.pip for n, i in maker.ilks.items() if n in ETH_ILKS})
    value = int(usd * WAD).to_bytes(32, "big")
    # The gas is given: estimated now, a Spotter.poke would not see the pip's new value.
    gas = hex(POKE_GAS)
    txs = [{"from": owner, "to": pip, "data": _POKE + value.hex(), "gas": gas} for pip in pips]
    txs += [{"from": owner, "to": maker.spot, "gas": gas,
             "data": _POKE + encode(["bytes32"], [ilk_id(n)]).hex()} for n in ETH_ILKS]
    return txs


def maker_action(key: str) -> str | None:
    """The Maker action a journal key is for ("bark", "take", "sell", "redo", "bite",
    "tend", "dent", "deal", "tick", "payout", "exit"); None for another strategy's key.
    Keys are "<chain>:maker:<account>:<kind>:..." and, for the Flipper side,
    "<chain>:maker:<account>:flip:<bite|payout|exit>:..." or
    "<chain>:maker:<account>:flip:<flipper>:<id>:<tend|dent|deal|tick>:...".
    """
    parts = key.split(":")
    if len(parts) < 5 or parts[1] != "maker":
        return None
    if parts[3] != "flip":
        return parts[3]
    if parts[4].startswith("0x") and len(parts) > 6:
        return parts[6]
    return parts[4]


KICKS = ("bark", "bite", "redo")
TAKES = ("take", "sell", "deal")


def maker_summary(keys: Iterable[str]) -> str:
    """One line counting the confirmed Maker actions among `keys`: kicks (bark, bite,
    redo), auction wins (take, sell, deal) and bids (tend, dent); "" when there are none."""
    counts = Counter(a for a in map(maker_action, keys) if a is not None)
    if not counts:
        return ""
    kicks = sum(counts[k] for k in KICKS)
    takes = sum(counts[k] for k in TAKES)
    bids = counts["tend"] + counts["dent"]
    detail = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    return f"Maker: {kicks} kicks, {takes} auctions taken or dealt, {bids} bids ({detail})"


def maker_symbols(info: DevnetInfo) -> dict[str, str]:
    """Maker's own tokens by address (lower-case), for reports: MCD_DAI and MCD_WETH."""
    maker = info.maker
    if maker is None:
        return {}
    return {maker.dai.lower(): "MCD_DAI", maker.weth.lower(): "MCD_WETH"}


def replay_setup(info: DevnetInfo) -> tuple[list[str], list[TxRequest]]:
    """What a replay that mines its own blocks does once before the path with Maker on:
    the accounts to impersonate (and fund with gas money: the pip's owner, which pokes the
    price), and the liquidator's approval of its MakerKeeper for Maker DAI (what the
    keeper's first take or bid would send; mid-step it would hold that step's sends)."""
    maker = info.maker
    if maker is None or maker.keeper_contract is None:
        return [], []
    approve = ("0x" + function_signature_to_4byte_selector("approve(address,uint256)").hex()
               + encode(["address", "uint256"], [maker.keeper_contract, 2**256 - 1]).hex())
    return [maker.pip_owner], [{"from": info.accounts.liquidator, "to": maker.dai,
                                "data": approve}]
