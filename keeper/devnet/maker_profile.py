"""The Maker devnet profile: the default devnet plus Maker MCD, cached under its own key.

Not part of the default devnet (most tests do not need it): `start_maker_devnet` starts
anvil from the cached default devnet, replays `@makerdao/testchain` 1.1.33-beta5 on it
(keeper/devnet/maker.py), seeds prices, exit pools and vaults (keeper/devnet/maker_seed.py),
and caches the result under `.cache/devnet/maker-<key>`, the key hashing the default
devnet's key, the lock file and these modules. `keeper devnet --maker` runs it; its
`devnet.json` carries a `maker` section (keeper/devnet/maker_info.py).
"""

from __future__ import annotations

import gzip
import hashlib
from decimal import Decimal
from pathlib import Path

from web3 import Web3

from keeper.anvil import Anvil
from keeper.devnet.deploy import (
    DEPLOYER_INDEX,
    LIQUIDATOR_INDEX,
    DevnetSpec,
    _cache_paths,
    cache_key,
    start_devnet,
)
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import DevnetInfo
from keeper.devnet.maker import replay_deployment
from keeper.devnet.maker_keeper import deploy_maker_keeper
from keeper.devnet.maker_seed import maker_info, seed_maker
from keeper.devnet.tokens import mintable_erc20
from keeper.devnet.uniswap import factory_artifact
from keeper.paths import cache_dir, project_root

PROFILE_MODULES = ("maker.py", "maker_info.py", "maker_seed.py", "maker_profile.py",
                   "maker_keeper.py")
CACHE_FORMAT = 1
DEFAULT_SPEC = DevnetSpec()  # the default devnet's population, as the tests use it


def maker_cache_key(spec: DevnetSpec) -> str:
    """Changes with the default devnet's key, the lock file, MakerKeeper's source or this
    profile's code."""
    root = project_root()
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{cache_key(spec)}".encode())
    # The profile deploys MakerKeeper for the liquidator: its source is part of the state.
    for path in [root / "package-lock.json", root / "contracts" / "maker" / "MakerKeeper.sol",
                 *(root / "keeper" / "devnet" / name for name in PROFILE_MODULES)]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _paths(spec: DevnetSpec) -> tuple[Path, Path]:
    folder = cache_dir() / "devnet"
    folder.mkdir(parents=True, exist_ok=True)
    key = maker_cache_key(spec)
    return folder / f"maker-{key}.state.json", folder / f"maker-{key}.devnet.json"


def deploy_maker(anvil: Anvil, base: DevnetInfo, spec: DevnetSpec) -> DevnetInfo:
    """Replay and seed Maker on an anvil holding the default devnet `base`."""
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 60}))
    accounts = w3.eth.accounts
    deployer = Deployer(w3, accounts[DEPLOYER_INDEX])
    names = replay_deployment(w3)
    tokens = {s: deployer.at(mintable_erc20(), t.address) for s, t in base.tokens.items()}
    factory = deployer.at(factory_artifact(), base.uniswap_v2.factory)
    usd = next(t.usd_price for t in spec.tokens if t.symbol == "WETH")
    maker = seed_maker(deployer, maker_info(names, w3), factory=factory, tokens=tokens,
                       weth_usd=Decimal(usd), liquidator=accounts[LIQUIDATOR_INDEX],
                       seed=spec.seed)
    keeper = deploy_maker_keeper(w3, accounts[LIQUIDATOR_INDEX], vat=maker.vat,
                                 dai_join=maker.dai_join, dai=maker.dai)
    maker = maker.model_copy(update={"keeper_contract": str(keeper.address)})
    pairs = {**base.uniswap_v2.pairs, **maker.pairs}
    return base.model_copy(update={
        "block": w3.eth.block_number, "maker": maker,
        "uniswap_v2": base.uniswap_v2.model_copy(update={"pairs": pairs}),
    })


def start_maker_devnet(
    spec: DevnetSpec = DEFAULT_SPEC, *, port: int = 0, block_time: float | None = None,
    use_cache: bool = True,
) -> tuple[Anvil, DevnetInfo, bool]:
    """Anvil with the default devnet and Maker. Returns (anvil, info, from_cache); the
    caller owns anvil. A cold start replays and seeds (about 30 s), then caches."""
    state_path, info_path = _paths(spec)
    if use_cache and state_path.is_file() and info_path.is_file():
        anvil = Anvil(load_state=state_path, port=port, block_time=block_time).start()
        info = DevnetInfo.read(info_path)
        return anvil, info.model_copy(update={"rpc_url": anvil.rpc_url,
                                              "ws_url": anvil.ws_url}), True
    base_anvil, base, _cached = start_devnet(spec, use_cache=use_cache)
    base_anvil.stop()
    # DssDeploy's code is over 24 KB: only the replaying anvil lifts the limit.
    anvil = Anvil(load_state=_cache_paths(spec)[0], port=port,
                  args=["--disable-code-size-limit"]).start()
    try:
        info = deploy_maker(anvil, base, spec)
        dumped = anvil.rpc("anvil_dumpState")
        tmp = state_path.with_suffix(".tmp")
        tmp.write_bytes(gzip.decompress(bytes.fromhex(str(dumped).removeprefix("0x"))))
        tmp.replace(state_path)
        info.write(info_path)
        anvil.stop()
        anvil = Anvil(load_state=state_path, port=port, block_time=block_time).start()
    except BaseException:
        anvil.stop()
        raise
    return anvil, info.model_copy(update={"rpc_url": anvil.rpc_url, "ws_url": anvil.ws_url}), False


def maker_config_section(info: DevnetInfo) -> str:
    """`[strategies.maker]` for `keeper devnet --maker --write-config` (empty without Maker):
    every ilk, through the profile's MakerKeeper with the liquidator's DAI: the Dog/Clipper
    ilks (bark, take, redo) and the Cat/Flipper ilk, bitten and bid on with the bidding
    model priced on the MCD_WETH/MCD_DAI pair (`flip_exit_pair`)."""
    maker = info.maker
    if maker is None or maker.keeper_contract is None:
        return ""
    ilks = "".join(f'\n[strategies.maker.ilks.{name}]  # {ilk.engine}\njoin = "{ilk.join}"\n'
                   for name, ilk in maker.ilks.items() if ilk.engine in ("clip", "flip"))
    pair = maker.pairs["MCD_WETH/MCD_DAI"]
    return (
        "\n[strategies.maker]  # Maker MCD: Dog + Clipper (bark, take, redo) and Cat + "
        "Flipper (bite, tend, dent, deal)\n"
        f'vat = "{maker.vat}"\ndog = "{maker.dog}"\ncat = "{maker.cat}"\n'
        f'spot = "{maker.spot}"\njug = "{maker.jug}"\ndai = "{maker.dai}"\n'
        f'dai_join = "{maker.dai_join}"\nkeeper_contract = "{maker.keeper_contract}"\n'
        f'flip_exit_pair = "{pair}"  # Flipper bids are priced on it\n'
        f'# clip_exit_pair = "{pair}"  # sell inside the take\n'
        + ilks
    )
