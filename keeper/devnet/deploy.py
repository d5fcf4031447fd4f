"""Deploy the whole devnet on a running anvil, and cache the result.

`deploy_devnet` puts tokens, feeds, Aave V3, Uniswap V2 and Morpho Blue on an
empty anvil, opens the borrower population, then adds Uniswap V3 and a second Aave
market, v3.6 (keeper/devnet/aave_origin.py), with its own borrowers. `start_devnet` starts anvil
from the cached state when one matches (keyed on the lock file, the deploy
code, our contracts and the population), so a second start takes well under
a second instead of a full deploy.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from keeper.anvil import Anvil
from keeper.devnet.aave import deploy_aave_v3
from keeper.devnet.aave_origin_seed import deploy_v36_market
from keeper.devnet.borrowers import (
    SeedTargets,
    plan_population,
    seed_population,
    token_amount,
)
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import Accounts, DevnetInfo, FeedRuleInfo, TokenInfo
from keeper.devnet.morpho import deploy_morpho_blue
from keeper.devnet.tokens import (
    DEFAULT_TOKENS,
    FEED_DEVIATION_BPS,
    FEED_HEARTBEAT_SECONDS,
    TokenSpec,
    deploy_feeds,
    deploy_tokens,
)
from keeper.devnet.uniswap import deploy_uniswap_v2
from keeper.devnet.uniswap_v3 import deploy_uniswap_v3
from keeper.paths import cache_dir, project_root

# anvil's well-known dev mnemonic ("test test … junk"): account 0 deploys, account 1 liquidates.
# Account 1's key is public; it is fine for a devnet and nowhere else.
DEPLOYER_INDEX = 0
LIQUIDATOR_INDEX = 1
TREASURY_INDEX = 2
LENDER_INDEX = 3
# Liquidity a lender supplies to every Aave V3 reserve, in USD, so borrowers can borrow.
AAVE_LIQUIDITY_USD = 250_000_000
# Loan-token liquidity supplied to each Morpho Blue market, in USD.
MORPHO_LIQUIDITY_USD = 150_000_000
# Working capital given to the liquidator, per token, in USD.
LIQUIDATOR_FUNDS_USD = 5_000_000
CACHE_FORMAT = 1
# anvil dev account 1's key, published with the mnemonic above: the devnet liquidator.
DEVNET_LIQUIDATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
# The modules whose code decides what the deployed state holds (the cache key hashes them).
STATE_SHAPING_MODULES = (
    "aave.py", "aave_origin.py", "aave_origin_artifacts.py", "aave_origin_seed.py",
    "artifacts.py", "borrowers.py", "deploy.py", "deployer.py",
    "info.py", "morpho.py", "tokens.py", "uniswap.py", "uniswap_v3.py",
)


@dataclass(frozen=True)
class DevnetSpec:
    """What to build: the population size and seed."""

    borrowers: int = 300
    seed: int = 7
    tokens: tuple[TokenSpec, ...] = DEFAULT_TOKENS


def deploy_devnet(anvil: Anvil, spec: DevnetSpec) -> DevnetInfo:
    """Deploy everything on an empty anvil and return its devnet.json description."""
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    accounts = w3.eth.accounts
    deployer = Deployer(w3, accounts[DEPLOYER_INDEX])
    liquidator = accounts[LIQUIDATOR_INDEX]
    specs = {s.symbol: s for s in spec.tokens}

    tokens = deploy_tokens(deployer, spec.tokens)
    feeds = deploy_feeds(deployer, spec.tokens)
    aave = deploy_aave_v3(deployer, tokens, feeds, treasury=accounts[TREASURY_INDEX])
    uniswap = deploy_uniswap_v2(deployer, tokens, spec.tokens)
    morpho = deploy_morpho_blue(
        deployer, tokens, feeds, spec.tokens, supply_usd=Decimal(MORPHO_LIQUIDITY_USD)
    )

    _fund_liquidator(deployer, tokens, specs, liquidator)
    _supply_aave_liquidity(deployer, tokens, specs, aave.pool, accounts[LENDER_INDEX])
    plans = plan_population(spec.borrowers, spec.seed)
    markets = {
        m.collateral_token: (
            m.loan_token, m.collateral_token, m.oracle, m.irm, m.lltv
        )
        for m in morpho.info.markets
    }
    by_address = {str(c.address): s for s, c in tokens.items()}
    seed_population(
        w3,
        plans,
        aave.risk_params(morpho_lltv_wad=morpho.info.markets[0].lltv),
        SeedTargets(
            tokens=tokens,
            specs=specs,
            aave_pool=aave.pool,
            morpho=morpho.morpho,
            morpho_markets={by_address[k]: v for k, v in markets.items()},
        ),
    )
    # Last, so every address and balance deployed before it is what it was without it.
    uniswap_v3 = deploy_uniswap_v3(deployer, tokens, spec.tokens)
    # The Aave v3.6 market, after Uniswap V3 for the same reason.
    aave_v3_6, v36_pairs = deploy_v36_market(
        deployer, tokens, feeds, specs,
        treasury=accounts[TREASURY_INDEX], lender=accounts[LENDER_INDEX], liquidator=liquidator,
        morpho=morpho.morpho, uniswap_factory=uniswap.factory,
        liquidity_usd=Decimal(AAVE_LIQUIDITY_USD), liquidator_usd=Decimal(LIQUIDATOR_FUNDS_USD),
    )
    return DevnetInfo(
        rpc_url=anvil.rpc_url,
        ws_url=anvil.ws_url,
        chain_id=w3.eth.chain_id,
        block=w3.eth.block_number,
        accounts=Accounts(deployer=accounts[DEPLOYER_INDEX], liquidator=liquidator),
        tokens={
            s: TokenInfo(address=c.address, decimals=specs[s].decimals) for s, c in tokens.items()
        },
        feeds={s: c.address for s, c in feeds.items()},
        feed_rules={s: FeedRuleInfo(deviation_bps=FEED_DEVIATION_BPS,
                                    heartbeat=FEED_HEARTBEAT_SECONDS) for s in feeds},
        aave_v3=aave.info,
        # The v3.6 market's WSTETH/WETH pair is in the same factory, so it is listed here too.
        uniswap_v2=uniswap.info.model_copy(update={"pairs": {**uniswap.info.pairs, **v36_pairs}}),
        morpho_blue=morpho.info,
        uniswap_v3=uniswap_v3.info,
        aave_v3_6=aave_v3_6,
    )


def _fund_liquidator(
    deployer: Deployer,
    tokens: Mapping[str, Contract],
    specs: Mapping[str, TokenSpec],
    liquidator: ChecksumAddress,
) -> None:
    for symbol, token in tokens.items():
        amount = token_amount(Decimal(LIQUIDATOR_FUNDS_USD), specs[symbol])
        deployer.send(token.functions.mint(liquidator, amount))


def _supply_aave_liquidity(
    deployer: Deployer,
    tokens: Mapping[str, Contract],
    specs: Mapping[str, TokenSpec],
    pool: Contract,
    lender: ChecksumAddress,
) -> None:
    for symbol, token in tokens.items():
        amount = token_amount(Decimal(AAVE_LIQUIDITY_USD), specs[symbol])
        deployer.send(token.functions.mint(lender, amount))
        deployer.send(token.functions.approve(pool.address, amount), sender=lender)
        deployer.send(pool.functions.supply(token.address, amount, lender, 0), sender=lender)


def cache_key(spec: DevnetSpec) -> str:
    """Changes whenever anything that shapes the deployed state changes."""
    root = project_root()
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{spec!r}".encode())
    inputs = [root / "package-lock.json"]
    inputs += [root / "keeper" / "devnet" / name for name in STATE_SHAPING_MODULES]
    inputs += sorted((root / "contracts" / "devnet").glob("*.sol"))
    for path in inputs:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _cache_paths(spec: DevnetSpec) -> tuple[Path, Path]:
    folder = cache_dir() / "devnet"
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(spec)
    return folder / f"{key}.state.json", folder / f"{key}.devnet.json"


def start_devnet(
    spec: DevnetSpec, *, port: int = 0, block_time: float | None = None, use_cache: bool = True
) -> tuple[Anvil, DevnetInfo, bool]:
    """Start anvil with the deployed devnet. Returns (anvil, info, from_cache).

    The caller owns the returned anvil and must stop it; on any failure here
    anvil is stopped before the error propagates.
    """
    state_path, info_path = _cache_paths(spec)
    if use_cache and state_path.is_file() and info_path.is_file():
        anvil = Anvil(load_state=state_path, port=port, block_time=block_time).start()
        cached = DevnetInfo.read(info_path)
        info = cached.model_copy(update={"rpc_url": anvil.rpc_url, "ws_url": anvil.ws_url})
        return anvil, info, True
    anvil = Anvil(port=port, block_time=None).start()
    try:
        info = deploy_devnet(anvil, spec)
        dumped = anvil.rpc("anvil_dumpState")
        state = gzip.decompress(bytes.fromhex(str(dumped).removeprefix("0x")))
        tmp = state_path.with_suffix(".tmp")
        tmp.write_bytes(state)
        tmp.replace(state_path)
        info.write(info_path)
        # Restart from the state just dumped, as a cached start does: interval mining is a
        # start-up flag, and a node that deployed keeps the deploy's whole block history,
        # which a loaded state does not (the archive replay's tape test recorded a
        # different run from a node holding it), so a cold and a warm start give one chain.
        anvil.stop()
        anvil = Anvil(load_state=state_path, port=port, block_time=block_time).start()
        info = info.model_copy(update={"rpc_url": anvil.rpc_url, "ws_url": anvil.ws_url})
    except BaseException:
        anvil.stop()
        raise
    return anvil, info, False


