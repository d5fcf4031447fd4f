"""The Perp v2 devnet profile: its seeded accounts, and starting it from its own cache.

A separate profile (not in the default devnet): `start_perp_devnet` loads the default devnet
(from its cache), deploys Perp on it (keeper/devnet/perp.py), seeds the accounts below and
dumps the state under `.cache/devnet/perp-<key>` (the key hashes the default devnet's key and
this profile's modules), so the next start loads in about a second.

Accounts (addresses are keccak("keeper devnet perp <name>"), impersonated; devnet only):

- `maker`: deep liquidity on both markets from 0.6 to 1.6 times the price, $25M a side
  ($50M collateral);
- `maker_thin`: a narrow range (±5 %) around the ETH price on $9k of collateral: a fall
  through it leaves an impermanent long that makes it liquidatable with its orders still
  open, so `cancelAllExcessOrders` must come first;
- traders with leveraged longs and shorts on vETH and vBTC (3x to 9.8x), one cross-margin
  account long both markets, and `btc_long_9x_deficit`, which two steps of -9.5 % with
  nobody liquidating leave in a deficit larger than the insurance fund's capacity;
- `whale`: $1B of collateral, the account the devnet helper trades the vAMM with;
- the devnet liquidator (anvil account 1) with `LIQUIDATOR_MARGIN_USD` in the Vault.
The insurance fund holds `INSURANCE_FUND_USD` of USDC.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3

from keeper.anvil import Anvil, rpc_call
from keeper.devnet.deploy import LIQUIDATOR_INDEX, DevnetSpec, cache_key, start_devnet
from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.info import DevnetInfo
from keeper.devnet.perp import PerpContracts, PerpInfo, attach, deploy_perp, feed_usd
from keeper.devnet.perp_drive import trade_to
from keeper.paths import cache_dir, project_root

CACHE_FORMAT = 1
PERP_MODULES = ("perp.py", "perp_seed.py", "perp_drive.py")
USDC_UNIT = 10**6
LIQUIDATOR_MARGIN_USD = 1_000_000
INSURANCE_FUND_USD = 1_000
MAKER_SIDE_USD = 25_000_000  # each side of `maker`'s range, per market
WHALE_USD = 1_000_000_000
MAX_UINT = 2**256 - 1
TICK_SPACING = 60


@dataclass(frozen=True)
class TraderSpec:
    """A taker: collateral in USD and, per market, a signed leverage (negative: short)."""

    name: str
    collateral_usd: int
    legs: tuple[tuple[str, Decimal], ...]


TRADERS: tuple[TraderSpec, ...] = (
    *(TraderSpec(f"eth_long_{x}x", 10_000 + 2_500 * x, (("vETH", Decimal(x)),))
      for x in (3, 4, 5, 6, 7, 8, 9)),
    *(TraderSpec(f"eth_short_{x}x", 20_000, (("vETH", Decimal(-x)),)) for x in (3, 6, 9)),
    *(TraderSpec(f"btc_long_{x}x", 25_000, (("vBTC", Decimal(x)),)) for x in (4, 6, 8)),
    TraderSpec("btc_short_5x", 25_000, (("vBTC", Decimal(-5)),)),
    TraderSpec("cross_long_4x_4x", 30_000, (("vETH", Decimal(4)), ("vBTC", Decimal(4)))),
    TraderSpec("btc_long_9x_deficit", 100_000, (("vBTC", Decimal(9)),)),
)


def seeded_address(name: str) -> ChecksumAddress:
    """The profile's account `name`: an address nobody holds a key to (impersonated)."""
    return Web3.to_checksum_address(keccak(text=f"keeper devnet perp {name}")[12:])


def _tick(usd: Decimal) -> int:
    """The initializable tick (a multiple of the spacing) at or below `usd`."""
    raw = math.floor(math.log(float(usd), 1.0001))
    return raw - raw % TICK_SPACING


class _Seeder:
    def __init__(self, deployer: Deployer, contracts: PerpContracts) -> None:
        self.deployer = deployer
        self.c = contracts

    def account(self, name: str) -> ChecksumAddress:
        who = seeded_address(name)
        rpc(self.deployer.w3, "anvil_impersonateAccount", who)
        rpc(self.deployer.w3, "anvil_setBalance", who, hex(100 * 10**18))
        return who

    def deposit(self, who: ChecksumAddress, usd: int, *, mint: bool = True) -> None:
        amount = usd * USDC_UNIT
        send, usdc = self.deployer.send, self.c.usdc
        if mint:
            send(usdc.functions.mint(who, amount))
        send(usdc.functions.approve(self.c.vault.address, MAX_UINT), sender=who)
        send(self.c.vault.functions.deposit(usdc.address, amount), sender=who)

    def add_liquidity(self, who: ChecksumAddress, symbol: str, price: Decimal, *,
                      base: Decimal, low: Decimal, high: Decimal) -> None:
        params = (self.c.bases[symbol].address, int(base * 10**18),
                  int(base * price * 10**18), _tick(price * low), _tick(price * high),
                  0, 0, False, MAX_UINT)
        self.deployer.send(self.c.clearing_house.functions.addLiquidity(params), sender=who)

    def open(self, who: ChecksumAddress, symbol: str, notional_usd: Decimal, long: bool) -> None:
        amount = int(notional_usd * 10**18)
        # Long: exact input of quote; short: exact output of quote (the notional either way).
        params = (self.c.bases[symbol].address, not long, long, amount, 0, MAX_UINT, 0,
                  b"\0" * 32)
        self.deployer.send(self.c.clearing_house.functions.openPosition(params), sender=who)


def seed_perp(deployer: Deployer, devnet: DevnetInfo, info: PerpInfo) -> PerpInfo:
    """Open the profile's accounts; returns `info` with their addresses."""
    contracts = attach(deployer.w3, info)
    seeder = _Seeder(deployer, contracts)
    prices = {s: feed_usd(deployer.w3, m.feed) for s, m in info.markets.items()}
    maker, thin = seeder.account("maker"), seeder.account("maker_thin")
    seeder.deposit(maker, 50_000_000)
    for symbol, price in prices.items():
        seeder.add_liquidity(maker, symbol, price, base=Decimal(MAKER_SIDE_USD) / price,
                             low=Decimal("0.6"), high=Decimal("1.6"))
    seeder.deposit(thin, 9_000)
    seeder.add_liquidity(thin, "vETH", prices["vETH"], base=Decimal(20), low=Decimal("0.95"),
                         high=Decimal("1.05"))
    whale = seeder.account("whale")
    seeder.deposit(whale, WHALE_USD)
    traders: dict[str, str] = {}
    for spec in TRADERS:
        who = seeder.account(spec.name)
        seeder.deposit(who, spec.collateral_usd)
        for symbol, leverage in spec.legs:
            seeder.open(who, symbol, abs(leverage) * spec.collateral_usd, leverage > 0)
            # Back to the index, so the next trader opens at the same price.
            trade_to(deployer, contracts, whale, symbol, prices[symbol])
        traders[spec.name] = who
    liquidator = deployer.w3.eth.accounts[LIQUIDATOR_INDEX]
    seeder.deposit(liquidator, LIQUIDATOR_MARGIN_USD, mint=False)
    deployer.send(contracts.usdc.functions.mint(contracts.insurance_fund.address,
                                                INSURANCE_FUND_USD * USDC_UNIT))
    rpc(deployer.w3, "evm_increaseTime", 3600)  # TWAPs settle on the aligned pools
    rpc(deployer.w3, "evm_mine")
    return info.model_copy(update={
        "makers": {"maker": maker, "maker_thin": thin}, "traders": traders, "whale": whale,
        "liquidator": liquidator, "deploy_block": int(deployer.w3.eth.block_number),
    })


def perp_cache_key(spec: DevnetSpec) -> str:
    """Changes with the default devnet's state or with this profile's code."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{cache_key(spec)}".encode())
    for name in PERP_MODULES:
        digest.update((project_root() / "keeper" / "devnet" / name).read_bytes())
    return digest.hexdigest()[:20]


def _paths(spec: DevnetSpec) -> tuple[Path, Path, Path]:
    folder = cache_dir() / "devnet"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"perp-{perp_cache_key(spec)}"
    return (folder / f"{stem}.state.json", folder / f"{stem}.devnet.json",
            folder / f"{stem}.perp.json")


def read_perp_info(path: Path) -> PerpInfo:
    return PerpInfo.model_validate_json(path.read_text())


def write_perp_info(info: PerpInfo, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(info.model_dump_json(indent=2) + "\n")
    tmp.replace(path)


def _resume_clock(anvil: Anvil) -> None:
    """A loaded anvil stamps new blocks with the wall clock, but the profile's head is up to
    two hours ahead of it (the TWAP windows were waited out with evm_increaseTime): a block
    stamped earlier than its parent underflows Perp's and Uniswap's time arithmetic
    (SafeMath). Move anvil's clock past the head."""
    head = rpc_call(anvil.rpc_url, "eth_getBlockByNumber", ("latest", False))
    ahead = int(head["timestamp"], 16) - int(time.time())
    if ahead >= 0:
        rpc_call(anvil.rpc_url, "evm_increaseTime", (ahead + 1,))


def start_perp_devnet(
    spec: DevnetSpec | None = None, *, port: int = 0, use_cache: bool = True,
) -> tuple[Anvil, DevnetInfo, PerpInfo, bool]:
    """An automining anvil with the default devnet and Perp v2 seeded:
    (anvil, devnet info, perp info, from_cache). The caller owns anvil."""
    spec = spec or DevnetSpec()
    state_path, devnet_path, perp_path = _paths(spec)
    if use_cache and state_path.is_file() and devnet_path.is_file() and perp_path.is_file():
        anvil = Anvil(load_state=state_path, port=port).start()
        try:
            _resume_clock(anvil)
        except BaseException:
            anvil.stop()
            raise
        devnet = DevnetInfo.read(devnet_path).model_copy(
            update={"rpc_url": anvil.rpc_url, "ws_url": anvil.ws_url})
        return anvil, devnet, read_perp_info(perp_path), True
    anvil, base, _cached = start_devnet(spec, port=port, use_cache=use_cache)
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        deployer = Deployer(w3, w3.eth.accounts[0])
        info = seed_perp(deployer, base, deploy_perp(deployer, base))
        devnet = base.model_copy(update={"block": int(w3.eth.block_number)})
        dumped = rpc_call(anvil.rpc_url, "anvil_dumpState", (), timeout=120)
        tmp = state_path.with_suffix(".tmp")
        tmp.write_bytes(gzip.decompress(bytes.fromhex(str(dumped).removeprefix("0x"))))
        tmp.replace(state_path)
        devnet.write(devnet_path)
        write_perp_info(info, perp_path)
    except BaseException:
        anvil.stop()
        raise
    return anvil, devnet, info, False
