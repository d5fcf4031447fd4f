"""Seed the replayed Maker deployment: its price from a devnet feed, exit pools, vaults.

- **Price.** ETH-A, ETH-B and ETH-C share one pip (`PIP_ETH`, a DSValue owned by the
  package's deployer). `follow_price` pokes it with a devnet feed's price and calls
  `Spotter.poke` for each ilk, which is what moves a vault's `spot`; `keeper devnet price
  WETH ...` and the crash paths call it whenever they post the WETH feed.
- **Limits.** The package's Line (6M DAI) is raised so the pools below fit; ETH-B's
  `Dog.ilks.hole` is raised to 50k DAI so a crash fills several auctions, while ETH-C
  keeps the package's 1,000 DAI, so its `hole` fills and the rest wait (a logged reason).
- **Exit pools.** Uniswap V2 pairs in the devnet's factory: MCD_WETH/WETH (Maker's WETH9
  against the devnet's WETH, 1:1), MCD_DAI/DAI (1:1), MCD_DAI/WETH at the feed price, and
  MCD_WETH/MCD_DAI (an auction's collateral straight into the DAI that pays for it).
  Their DAI comes from `Vat.suck` (system debt, as the auctions' incentives do).
- **Vaults.** Owners derived from a seed open vaults on the three ilks at ratios from
  1.02x to 3x the ilk's liquidation ratio (`MakerVaultInfo.opened_at`).
- **The liquidator** gets Maker DAI (ERC-20) to take with.
"""

from __future__ import annotations

import random
from decimal import Decimal

from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.maker import PACKAGE_VERSION, contract
from keeper.devnet.maker_info import MakerIlkInfo, MakerInfo, MakerVaultInfo
from keeper.devnet.uniswap import pair_artifact

WAD = 10**18
RAY = 10**27
RAD = 10**45
ETH_ILKS = ("ETH-A", "ETH-B", "ETH-C")
LINE_RAD = 10**9 * RAD  # system and per-ilk debt ceilings (the pools' DAI fits under it)
ETH_B_HOLE_RAD = 50_000 * RAD
POOL_DAI = 10_000_000  # Maker DAI on each side of the DAI pools
POOL_WETH = 5_000  # Maker WETH in MCD_WETH/WETH
LIQUIDATOR_DAI = 1_000_000
# Collateral value over debt, in units of the ilk's liquidation ratio: several just above it.
VAULT_RATIOS = (1.02, 1.04, 1.07, 1.1, 1.15, 1.25, 1.5, 2.0, 3.0)
VAULTS_PER_ILK = 9


def ilk_id(name: str) -> bytes:
    """An ilk's bytes32 id ("ETH-A" left-aligned, zero-padded)."""
    return name.encode().ljust(32, b"\0")


def follow_price(w3: Web3, maker: MakerInfo, usd: Decimal) -> int:
    """Poke the ETH pip with `usd` and `Spotter.poke` every ETH ilk; the last block.

    The pip's owner is impersonated (a devnet has no oracle committee); `Spotter.poke` is
    public and emits `Poke(ilk, val, spot)`, which the keeper's vault book follows.
    """
    owner = Web3.to_checksum_address(maker.pip_owner)
    deployer = Deployer(w3, owner)
    wad = int(usd * WAD)
    rpc(w3, "anvil_impersonateAccount", owner)
    try:
        pips = {info.pip for name, info in maker.ilks.items() if name in ETH_ILKS}
        for pip in sorted(pips):
            deployer.send(contract(w3, "DSValue", pip).functions.poke(wad.to_bytes(32, "big")))
        spot = contract(w3, "Spotter", maker.spot)
        block = 0
        for name in ETH_ILKS:
            block = deployer.send(spot.functions.poke(ilk_id(name)))["blockNumber"]
    finally:
        rpc(w3, "anvil_stopImpersonatingAccount", owner)
    return int(block)


def maker_info(names: dict[str, ChecksumAddress], w3: Web3) -> MakerInfo:
    """MakerInfo for the replayed deployment (vaults and pairs filled in by `seed_maker`)."""
    ilks: dict[str, MakerIlkInfo] = {}
    for name in ETH_ILKS:
        key = name.replace("-", "_")
        join = names[f"MCD_JOIN_{key}"]
        gem = str(contract(w3, "GemJoin", join).functions.gem().call())
        if name == "ETH-A":
            ilks[name] = MakerIlkInfo(join=join, gem=gem, pip=names["PIP_ETH"], engine="flip",
                                      auction=names[f"MCD_FLIP_{key}"])
        else:
            calc = names[f"MCD_CLIP_CALC_{key}"]
            ilks[name] = MakerIlkInfo(
                join=join, gem=gem, pip=names["PIP_ETH"], engine="clip",
                auction=names[f"MCD_CLIP_{key}"], calc=calc,
                calc_kind="linear" if name == "ETH-B" else "stairstep")
    return MakerInfo(
        version=PACKAGE_VERSION, vat=names["MCD_VAT"], dog=names["MCD_DOG"],
        cat=names["MCD_CAT"], spot=names["MCD_SPOT"], jug=names["MCD_JUG"],
        vow=names["MCD_VOW"], dai=names["MCD_DAI"], dai_join=names["MCD_JOIN_DAI"],
        weth=names["ETH"], pause_proxy=names["MCD_PAUSE_PROXY"], pip_owner=names["DEPLOYER"],
        price_symbol="WETH", ilks=ilks, pairs={}, vaults=[],
    )


class _Seeder:
    """Sends the seeding transactions as whichever account each one needs (impersonated)."""

    def __init__(self, w3: Web3, maker: MakerInfo) -> None:
        self.w3 = w3
        self.maker = maker
        self.send = Deployer(w3, Web3.to_checksum_address(maker.pause_proxy)).send
        self.vat = contract(w3, "Vat", maker.vat)
        self.weth = contract(w3, "WETH9", maker.weth)
        self.dai = contract(w3, "Dai", maker.dai)
        self.dai_join = contract(w3, "DaiJoin", maker.dai_join)
        self.proxy = Web3.to_checksum_address(maker.pause_proxy)

    def raise_limits(self) -> None:
        rpc(self.w3, "anvil_setBalance", self.proxy, hex(10**22))  # a contract: gas to send
        self.send(self.vat.functions.file(b"Line".ljust(32, b"\0"), LINE_RAD), sender=self.proxy)
        for name in ETH_ILKS:
            what = b"line".ljust(32, b"\0")
            self.send(self.vat.functions.file(ilk_id(name), what, LINE_RAD), sender=self.proxy)
        dog = contract(self.w3, "Dog", self.maker.dog)
        hole = b"hole".ljust(32, b"\0")
        self.send(dog.functions.file(ilk_id("ETH-B"), hole, ETH_B_HOLE_RAD), sender=self.proxy)

    def mint_dai(self, to: ChecksumAddress, amount: int) -> None:
        """`amount` Maker DAI (wad) to `to`: Vat.suck to the proxy, then DaiJoin.exit."""
        self.send(self.vat.functions.suck(self.maker.vow, self.proxy, amount * RAY),
                  sender=self.proxy)
        self.send(self.vat.functions.hope(self.dai_join.address), sender=self.proxy)
        self.send(self.dai_join.functions.exit(to, amount), sender=self.proxy)

    def mint_weth(self, to: ChecksumAddress, amount: int) -> None:
        rpc(self.w3, "anvil_setBalance", to, hex(amount + 10**22))
        self.send(self.weth.functions.deposit(), sender=to, value=amount)

    def open_vault(self, owner: ChecksumAddress, name: str, ink: int, ratio: float) -> None:
        """Join `ink` WETH to the ilk and draw DAI so that ink * spot / (art * rate) = ratio
        (spot already divides by the liquidation ratio)."""
        ilk = self.maker.ilks[name]
        join = contract(self.w3, "GemJoin", ilk.join)
        self.mint_weth(owner, ink)
        self.send(self.weth.functions.approve(join.address, ink), sender=owner)
        self.send(join.functions.join(owner, ink), sender=owner)
        _art, rate, spot, _line, _dust = self.vat.functions.ilks(ilk_id(name)).call()
        dart = int(Decimal(ink * spot) / Decimal(rate) / Decimal(str(ratio)))
        self.send(self.vat.functions.frob(ilk_id(name), owner, owner, owner, ink, dart),
                  sender=owner)


def _owner(seed: int, index: int) -> ChecksumAddress:
    return Web3.to_checksum_address(keccak(text=f"maker-vault-{seed}-{index}")[12:])


def seed_maker(
    deployer: Deployer, maker: MakerInfo, *, factory: Contract, tokens: dict[str, Contract],
    weth_usd: Decimal, liquidator: ChecksumAddress, seed: int = 7,
) -> MakerInfo:
    """Limits, price, exit pools, vaults and the liquidator's DAI; the completed MakerInfo."""
    w3 = deployer.w3
    seeder = _Seeder(w3, maker)
    rpc(w3, "anvil_autoImpersonateAccount", True)
    try:
        seeder.raise_limits()
        follow_price(w3, maker, weth_usd)
        pairs = _exit_pools(deployer, seeder, factory, tokens, weth_usd)
        seeder.mint_dai(liquidator, LIQUIDATOR_DAI * WAD)
        rng = random.Random(seed)
        vaults: list[MakerVaultInfo] = []
        for name in ETH_ILKS:
            for ratio in VAULT_RATIOS[:VAULTS_PER_ILK]:
                owner = _owner(seed, len(vaults))
                # 0.2 to 3 ETH: small enough that an ilk's hole holds a few auctions at once.
                ink = rng.randint(20, 300) * WAD // 100
                seeder.open_vault(owner, name, ink, ratio)
                vaults.append(MakerVaultInfo(ilk=name, urn=owner, opened_at=ratio))
    finally:
        rpc(w3, "anvil_autoImpersonateAccount", False)
    return maker.model_copy(update={"pairs": pairs, "vaults": vaults})


def _exit_pools(
    deployer: Deployer, seeder: _Seeder, factory: Contract, tokens: dict[str, Contract],
    weth_usd: Decimal,
) -> dict[str, str]:
    """The three exit pairs, minted by the devnet deployer (LP tokens stay with it)."""
    me = deployer.sender
    seeder.mint_dai(me, 3 * POOL_DAI * WAD)
    weth_for_dai = int(Decimal(POOL_DAI) / weth_usd * WAD)
    seeder.mint_weth(me, POOL_WETH * WAD + weth_for_dai)
    # (key, token a, amount a, token b, amount b, b is a devnet token that can be minted)
    plan = (
        ("MCD_WETH/WETH", seeder.weth, POOL_WETH * WAD, tokens["WETH"], POOL_WETH * WAD, True),
        ("MCD_DAI/DAI", seeder.dai, POOL_DAI * WAD, tokens["DAI"], POOL_DAI * WAD, True),
        ("MCD_DAI/WETH", seeder.dai, POOL_DAI * WAD, tokens["WETH"], weth_for_dai, True),
        # The direct exit of an auction's collateral into the DAI that pays for it.
        ("MCD_WETH/MCD_DAI", seeder.weth, weth_for_dai, seeder.dai, POOL_DAI * WAD, False),
    )
    pairs: dict[str, str] = {}
    for key, token_a, amount_a, token_b, amount_b, mintable in plan:
        deployer.send(factory.functions.createPair(token_a.address, token_b.address))
        address = factory.functions.getPair(token_a.address, token_b.address).call()
        pair = deployer.at(pair_artifact(), address)
        deployer.send(token_a.functions.transfer(pair.address, amount_a))
        fund = token_b.functions.mint if mintable else token_b.functions.transfer
        deployer.send(fund(pair.address, amount_b))
        deployer.send(pair.functions.mint(me))
        pairs[key] = str(address)
    return pairs
