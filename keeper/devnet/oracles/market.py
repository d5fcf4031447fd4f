"""A lending market priced by the oracle network: the default devnet's Aave V3 (v3.0) market
switched to the OCR2 feeds, WETH's SVR-style, for `keeper devnet --builder --oracles`.

`deploy_market_oracles` deploys the network (keeper.devnet.oracles.profile) on the default
devnet and points the v3.0 market's AaveOracle at its proxies (`setAssetSources`, as the
market's asset listing admin): WETH at the SVR feed's *secondary* proxy, the one the private
copy updates through the builder; WBTC, USDC and DAI at their public feeds' proxies. The
devnet's other markets (Aave v3.6, Morpho Blue, whose FeedOracle reads its feeds immutably)
keep the PriceFeed.sol feeds. `start_oracle_devnet` caches the result like the devnet
(its own key: the devnet's plus this profile's code and contracts), and `attach` rebuilds
the network's sending side for a running devnet from devnet.json and the chain, so
`keeper devnet price` (another process) posts the next round with the right epoch.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from web3 import Web3

from keeper.anvil import Anvil, rpc_call
from keeper.devnet.deploy import DevnetSpec, cache_key, start_devnet
from keeper.devnet.deployer import Deployer
from keeper.devnet.info import DevnetInfo, OracleFeedInfo, OracleNetworkInfo
from keeper.devnet.oracles.keys import devnet_oracles
from keeper.devnet.oracles.network import (
    FeedPolicy,
    OcrFeed,
    OracleNetwork,
    SvrFeed,
    private_sender,
)
from keeper.devnet.oracles.profile import (
    DEFAULT_ORACLE_FEEDS,
    SVR_CUTOFF_SECONDS,
    OracleDevnet,
    deploy_oracle_network,
)
from keeper.devnet.tokens import (
    FEED_DEVIATION_BPS,
    FEED_HEARTBEAT_SECONDS,
    post_price,
    to_feed_answer,
)
from keeper.errors import DevnetError
from keeper.paths import cache_dir, project_root

MARKET = "aave_v3"  # the market the network prices
PROFILE_FORMAT = 1  # bump when what the profile deploys changes outside the hashed files
_HASHED = ("market.py", "profile.py", "contracts.py", "network.py", "report.py", "keys.py")
# AaveOracle.setAssetSources(address[],address[]) (Aave V3 core 1.19 AaveOracle.sol).
_SET_SOURCES_ABI = [{
    "type": "function", "name": "setAssetSources", "stateMutability": "nonpayable",
    "inputs": [{"name": "assets", "type": "address[]"}, {"name": "sources", "type": "address[]"}],
    "outputs": [],
}]
# The aggregator's round count (MedianAggregator.latestRound): one per report it accepted.
_LATEST_ROUND = "0x668a0f02"
_LATEST_ANSWER = "0x50d25bcd"
_LATEST_TIMESTAMP = "0x8205bf6a"


def _deploy_time_private(raw: str) -> str:
    raise DevnetError("the oracle network sends privately only behind the builder")


def deploy_market_oracles(rpc_url: str, info: DevnetInfo) -> OracleNetworkInfo:
    """Deploy the oracle network on the devnet at `rpc_url` (automining) and switch the
    v3.0 market's AaveOracle to it; the network's addresses for devnet.json."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
    deployer = Deployer(w3, Web3.to_checksum_address(info.accounts.deployer))
    devnet = deploy_oracle_network(deployer, rpc_url, DEFAULT_ORACLE_FEEDS,
                                   send_private=_deploy_time_private,
                                   cutoff=SVR_CUTOFF_SECONDS, chain_id=info.chain_id)
    # Each first round is still in anvil's pool until a block includes it.
    rpc_call(rpc_url, "evm_mine", ())
    symbols = [s for s in devnet.deployed if s in info.tokens]
    oracle = w3.eth.contract(address=Web3.to_checksum_address(info.aave_v3.oracle),
                             abi=_SET_SOURCES_ABI)
    deployer.send(oracle.functions.setAssetSources(
        [Web3.to_checksum_address(info.tokens[s].address) for s in symbols],
        [Web3.to_checksum_address(devnet.proxy_read_by_protocol(s)) for s in symbols]))
    feeds: dict[str, OracleFeedInfo] = {}
    for symbol, deployed in devnet.deployed.items():
        second = devnet.secondary.get(symbol)
        feeds[symbol] = OracleFeedInfo(
            aggregator=deployed.aggregator.address, proxy=deployed.proxy.address,
            config_digest="0x" + deployed.config_digest.hex(),
            secondary_aggregator=None if second is None else second.aggregator.address,
            secondary_proxy=None if second is None else second.proxy.address,
            secondary_config_digest=None if second is None else "0x" + second.config_digest.hex(),
            svr_cutoff_seconds=None if second is None else devnet.svr[symbol].cutoff)
    return OracleNetworkInfo(feeds=feeds, markets=[MARKET])


def oracle_cache_key() -> str:
    """The devnet's key plus this profile's code and the OCR2 contract."""
    digest = hashlib.sha256(f"{PROFILE_FORMAT}:{cache_key(DevnetSpec())}".encode())
    here = project_root() / "keeper" / "devnet" / "oracles"
    for name in _HASHED:
        digest.update((here / name).read_bytes())
    for path in sorted((project_root() / "contracts" / "devnet" / "ocr2").glob("*.sol")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _paths() -> tuple[Path, Path]:
    folder = cache_dir() / "devnet"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"ocr2-{oracle_cache_key()}"
    return stem.with_suffix(".state.json"), stem.with_suffix(".devnet.json")


def start_oracle_devnet(*, port: int = 0, use_cache: bool = True) -> tuple[Anvil, DevnetInfo, bool]:
    """An automining anvil with the default devnet whose v3.0 market reads the oracle
    network; (anvil, info, from_cache). The caller owns anvil."""
    state_path, info_path = _paths()
    if use_cache and state_path.is_file() and info_path.is_file():
        anvil = Anvil(load_state=state_path, port=port).start()
        info = DevnetInfo.read(info_path).model_copy(
            update={"rpc_url": anvil.rpc_url, "ws_url": anvil.ws_url})
        return anvil, info, True
    anvil, base, _cached = start_devnet(DevnetSpec(), port=port, use_cache=use_cache)
    try:
        network = deploy_market_oracles(anvil.rpc_url, base)
        head = int(rpc_call(anvil.rpc_url, "eth_blockNumber", ()), 16)
        info = base.model_copy(update={"oracle_network": network, "block": head})
        dumped = rpc_call(anvil.rpc_url, "anvil_dumpState", (), timeout=120)
        tmp = state_path.with_suffix(".tmp")
        tmp.write_bytes(gzip.decompress(bytes.fromhex(str(dumped).removeprefix("0x"))))
        tmp.replace(state_path)
        info.write(info_path)
    except BaseException:
        anvil.stop()
        raise
    return anvil, info, False


def _word(rpc_url: str, to: str, selector: str) -> int:
    reply = rpc_call(rpc_url, "eth_call", ({"to": to, "data": selector}, "latest"))
    return int(str(reply), 16)


def _ocr_feed(rpc_url: str, aggregator: str, digest: str, policy: FeedPolicy) -> OcrFeed:
    """An aggregator's sending state from the chain: its next report's epoch follows the
    rounds it accepted (the network starts each report a new epoch), its last answer."""
    rounds = _word(rpc_url, aggregator, _LATEST_ROUND)
    answer = _word(rpc_url, aggregator, _LATEST_ANSWER) if rounds else None
    stamp = float(_word(rpc_url, aggregator, _LATEST_TIMESTAMP)) if rounds else None
    return OcrFeed(aggregator, bytes.fromhex(digest.removeprefix("0x")), policy,
                   epoch=rounds, last_answer=answer, last_time=stamp)


def attach(info: DevnetInfo, rpc_url: str, builder_url: str | None = None,
           *, policy: FeedPolicy | None = None) -> OracleDevnet:
    """The oracle network of a running devnet (devnet.json's `oracle_network`), sending
    through `rpc_url`; an SVR feed's private copy goes to `builder_url` (default: the same)."""
    network_info = info.oracle_network
    if network_info is None:
        raise DevnetError("this devnet has no oracle network (start it with --oracles)")
    chosen = policy or FeedPolicy(FEED_DEVIATION_BPS, FEED_HEARTBEAT_SECONDS)
    network = OracleNetwork(rpc_url, devnet_oracles(), info.chain_id)
    devnet = OracleDevnet(network=network, deployed={}, feeds={})
    for symbol, feed in network_info.feeds.items():
        devnet.feeds[symbol] = _ocr_feed(rpc_url, feed.aggregator, feed.config_digest, chosen)
        if feed.secondary_aggregator and feed.secondary_config_digest:
            secondary = _ocr_feed(rpc_url, feed.secondary_aggregator,
                                  feed.secondary_config_digest, chosen)
            devnet.svr[symbol] = SvrFeed(
                network, devnet.feeds[symbol], secondary, private_sender(builder_url or rpc_url),
                cutoff=feed.svr_cutoff_seconds or SVR_CUTOFF_SECONDS)
    return devnet


def post_round(devnet: OracleDevnet, symbol: str, usd: Decimal, now: float | None = None) -> str:
    """Transmit `usd` on `symbol`'s feed now, whatever its deviation rule says (a devnet
    operator's round, like `keeper devnet price` on a PriceFeed): the transaction hash
    (an SVR feed's private one; its public copy follows from `tick` after the cut-off)."""
    moment = time.time() if now is None else now
    answer = to_feed_answer(usd)
    if symbol in devnet.svr:
        svr = devnet.svr[symbol]
        svr.secondary.last_time = None  # forces `due`: the operator asked for this round
        update = svr.update(answer, moment)
        if update is None:
            raise DevnetError(f"{symbol}: the SVR feed did not transmit")
        return update.private_hash
    return devnet.network.send_public(devnet.feeds[symbol], answer, moment)


def wait_mined(rpc_url: str, hashes: list[str], timeout: float = 30.0) -> dict[str, int]:
    """Block numbers of `hashes` once each is mined; DevnetError after `timeout`."""
    deadline = time.monotonic() + timeout
    found: dict[str, int] = {}
    while len(found) < len(hashes):
        for tx_hash in hashes:
            if tx_hash not in found:
                receipt: Mapping[str, Any] | None = rpc_call(
                    rpc_url, "eth_getTransactionReceipt", (tx_hash,))
                if receipt:
                    found[tx_hash] = int(str(receipt["blockNumber"]), 16)
        if len(found) < len(hashes):
            if time.monotonic() > deadline:
                raise DevnetError(f"oracle transactions not mined in {timeout:g} s")
            time.sleep(0.05)
    return found


def post_everywhere(info: DevnetInfo, rpc_url: str, symbol: str, usd: Decimal) -> dict[str, int]:
    """`keeper devnet price` on an oracle devnet: the OCR2 round (SVR: private, then public
    after the cut-off) and the PriceFeed.sol round the other markets read; waits until all
    are mined and returns their blocks by what they were."""
    devnet = attach(info, rpc_url)
    sent = {"ocr2": post_round(devnet, symbol, usd)}
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    if symbol in info.feeds:
        receipt = post_price(w3, info.feeds[symbol], usd, info.accounts.deployer)
        legacy = int(receipt["blockNumber"])
    blocks = {"ocr2": wait_mined(rpc_url, [sent["ocr2"]])[sent["ocr2"]]}
    if symbol in devnet.svr:
        pending = devnet.svr[symbol].pending
        time.sleep(max(0.0, max((u.public_at for u in pending), default=0.0) - time.time()))
        public = [str(u.public_hash) for u in devnet.svr[symbol].tick(time.time())]
        blocks["ocr2 public"] = max(wait_mined(rpc_url, public).values(), default=0)
    if symbol in info.feeds:
        blocks["feed"] = legacy
    return blocks
