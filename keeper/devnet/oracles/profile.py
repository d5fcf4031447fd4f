"""The oracle-network devnet profile: OCR2 feeds for the devnet's tokens, one of them SVR.

A separate profile, not part of the default devnet (whose feeds stay PriceFeed.sol for now):
`deploy_oracle_network` deploys, on any anvil, one MedianAggregator behind an
EACAggregatorProxy per token, and for an SVR token a second (secondary) aggregator and proxy,
the one a lending protocol on the profile reads, as Chainlink's `secondaryProxyAddress`.
`OracleDevnet.post` moves a feed (deviation/heartbeat decide whether it transmits),
`tick` sends SVR updates whose cut-off has passed publicly, and `serve` does both on a
timer from a price source.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from keeper.devnet.deployer import Deployer
from keeper.devnet.oracles.contracts import DeployedFeed, deploy_feed
from keeper.devnet.oracles.keys import FAULTY, devnet_oracles
from keeper.devnet.oracles.network import (
    FeedPolicy,
    OcrFeed,
    OracleNetwork,
    PrivateSender,
    SvrFeed,
)
from keeper.devnet.tokens import (
    DEFAULT_TOKENS,
    FEED_DECIMALS,
    FEED_DEVIATION_BPS,
    FEED_HEARTBEAT_SECONDS,
    to_feed_answer,
)
from keeper.errors import DevnetError

SVR_CUTOFF_SECONDS = 2.0  # the private copy's head start before the public one


@dataclass(frozen=True)
class OracleFeedSpec:
    """One feed of the profile: its token, first price, posting rule and whether it is SVR."""

    symbol: str
    usd_price: Decimal
    deviation_bps: int = FEED_DEVIATION_BPS
    heartbeat: float = FEED_HEARTBEAT_SECONDS
    svr: bool = False

    @property
    def policy(self) -> FeedPolicy:
        return FeedPolicy(self.deviation_bps, self.heartbeat)


# The default devnet's tokens at their starting prices; WETH's feed is the SVR one.
DEFAULT_ORACLE_FEEDS: tuple[OracleFeedSpec, ...] = tuple(
    OracleFeedSpec(t.symbol, t.usd_price, svr=t.symbol == "WETH") for t in DEFAULT_TOKENS
)


@dataclass
class OracleDevnet:
    """The deployed profile: the network, its public feeds, its SVR feeds and their proxies."""

    network: OracleNetwork
    deployed: dict[str, DeployedFeed]  # primary aggregator and proxy, every token
    feeds: dict[str, OcrFeed]
    svr: dict[str, SvrFeed] = field(default_factory=dict)
    secondary: dict[str, DeployedFeed] = field(default_factory=dict)

    def proxy_read_by_protocol(self, symbol: str) -> str:
        """The proxy a lending protocol reads: the secondary one for an SVR feed."""
        chosen = self.secondary.get(symbol) or self.deployed[symbol]
        return str(chosen.proxy.address)

    def post(self, symbol: str, usd: Decimal, now: float) -> str | None:
        """Move `symbol`'s feed if its rule says so: a transaction hash (SVR: the private one)."""
        answer = to_feed_answer(usd)
        if symbol in self.svr:
            update = self.svr[symbol].update(answer, now)
            return None if update is None else update.private_hash
        return self.network.update(self.feeds[symbol], answer, now)

    def tick(self, now: float) -> list[str]:
        """Send the SVR updates whose cut-off has passed to their primaries; their hashes."""
        return [str(u.public_hash) for svr in self.svr.values() for u in svr.tick(now)]

    async def serve(
        self,
        prices: Callable[[], Mapping[str, Decimal]],
        interval: float = 1.0,
        rounds: int | None = None,
    ) -> None:
        """Every `interval` seconds: post each price from `prices()`, then `tick` (blocking
        RPC runs in a thread). Stops after `rounds` rounds, or when cancelled."""
        done = 0
        while rounds is None or done < rounds:
            now = time.time()
            for symbol, usd in prices().items():
                await asyncio.to_thread(self.post, symbol, usd, now)
            await asyncio.to_thread(self.tick, now)
            done += 1
            if rounds is None or done < rounds:
                await asyncio.sleep(interval)

    def describe(self) -> dict[str, Any]:
        """The profile as JSON: addresses, oracle set, posting rules, SVR cut-offs."""
        feeds: dict[str, Any] = {}
        for symbol, deployed in self.deployed.items():
            feed = self.feeds[symbol]
            entry: dict[str, Any] = {
                "aggregator": deployed.aggregator.address,
                "proxy": deployed.proxy.address,
                "deviation_bps": feed.policy.deviation_bps,
                "heartbeat_seconds": feed.policy.heartbeat,
            }
            if symbol in self.secondary:
                entry["secondary_aggregator"] = self.secondary[symbol].aggregator.address
                entry["secondary_proxy"] = self.secondary[symbol].proxy.address
                entry["svr_cutoff_seconds"] = self.svr[symbol].cutoff
            feeds[symbol] = entry
        oracles = self.network.oracles
        return {
            "feeds": feeds,
            "oracles": {
                "f": FAULTY,
                "signers": [o.signer for o in oracles],
                "transmitters": [o.transmitter for o in oracles],
            },
        }


def deploy_oracle_network(
    deployer: Deployer,
    rpc_url: str,
    specs: Sequence[OracleFeedSpec] = DEFAULT_ORACLE_FEEDS,
    *,
    send_private: PrivateSender | None = None,
    cutoff: float = SVR_CUTOFF_SECONDS,
    chain_id: int = 31337,
) -> OracleDevnet:
    """Deploy the profile's feeds on the anvil at `rpc_url` and post each first price.

    `send_private` delivers an SVR feed's private copy (keeper.devnet.oracles.network's
    `private_sender(builder_url)`); it is required when a spec is SVR.
    """
    if send_private is None and any(s.svr for s in specs):
        raise DevnetError("an SVR feed needs a private sender (the builder's endpoint)")
    oracles = devnet_oracles()
    devnet = OracleDevnet(network=OracleNetwork(rpc_url, oracles, chain_id), deployed={}, feeds={})
    for spec in specs:
        description = f"{spec.symbol} / USD"
        deployed = deploy_feed(deployer, oracles, FEED_DECIMALS, description)
        devnet.deployed[spec.symbol] = deployed
        feed = OcrFeed(deployed.aggregator.address, deployed.config_digest, spec.policy)
        devnet.feeds[spec.symbol] = feed
        if spec.svr and send_private is not None:
            second = deploy_feed(deployer, oracles, FEED_DECIMALS, f"{description} (SVR)")
            devnet.secondary[spec.symbol] = second
            secondary = OcrFeed(second.aggregator.address, second.config_digest, spec.policy)
            devnet.svr[spec.symbol] = SvrFeed(
                devnet.network, feed, secondary, send_private, cutoff=cutoff
            )
        # The first answer goes to both aggregators at once: nothing to recapture at genesis.
        now = time.time()
        answer = to_feed_answer(spec.usd_price)
        devnet.network.send_public(feed, answer, now)
        if spec.symbol in devnet.svr:
            devnet.network.send_public(devnet.svr[spec.symbol].secondary, answer, now)
    return devnet
