"""The devnet oracle network: when each feed transmits, and how (public, or SVR's two paths).

Chainlink data feeds post a new answer when the off-chain median moves by the feed's
deviation threshold from the answer on chain, or when the heartbeat has passed since the
last update, whichever comes first (docs.chain.link, "Data Feeds": deviation threshold and
heartbeat). `FeedPolicy.due` is that rule. Every transmission here is an OCR2 `transmit` from
one of the configured transmitters, signed like a node's (keeper.devnet.oracles.report), sent
as a raw transaction so that it sits in the pool, decodable, until it is mined.

An SVR-style feed (Chainlink Smart Value Recapture) sends each update twice: first privately
to a block builder (its `eth_sendPrivateTransaction` endpoint, where liquidators bid to
backrun it) for the *secondary* aggregator, the one the lending protocol reads; then, after a
cut-off delay, publicly to the *primary* aggregator, which everyone else reads. Chainlink
does this with one dual aggregator; the devnet uses two MedianAggregators (one per path).
"""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account

from keeper.anvil import rpc_call
from keeper.devnet.builder.txs import SIGNATURE_HEADER, sign_body
from keeper.devnet.oracles.keys import FAULTY, ORDER_FLOW_KEY, OracleKeys
from keeper.devnet.oracles.report import Observation, SignedReport, build_report, sign_report
from keeper.errors import DevnetError

TRANSMIT_GAS = 600_000  # a 4-observation transmit uses ~150k; a fixed limit skips estimation
PRIORITY_FEE = 10**9
# Per-oracle spread around the reference price, in basis points: sorted, the median
# (index n / 2) is the reference itself, so the feed answers the price it was given.
SPREAD_BPS = (-1, 0, 0, 1)

PrivateSender = Callable[[str], str]  # raw transaction (0x-hex) -> transaction hash
# What the builder's hint stream shows of an SVR update: everything a backrunner needs to
# price it (the "announced on the hint stream with its calldata").
SVR_HINTS = ("hash", "calldata", "contract_address", "function_selector", "logs")


@dataclass(frozen=True)
class FeedPolicy:
    """When a feed transmits: deviation threshold (basis points) or heartbeat (seconds)."""

    deviation_bps: int = 50
    heartbeat: float = 3600.0

    def due(self, last_answer: int | None, last_time: float | None, value: int, now: float) -> bool:
        """True when `value` deviates enough from `last_answer`, or the heartbeat has passed."""
        if last_answer is None or last_time is None:
            return True
        if now - last_time >= self.heartbeat:
            return True
        return abs(value - last_answer) * 10_000 >= self.deviation_bps * abs(last_answer)


@dataclass
class OcrFeed:
    """One aggregator's transmission state: its config digest, epoch and last answer sent."""

    aggregator: str
    config_digest: bytes
    policy: FeedPolicy = field(default_factory=FeedPolicy)
    epoch: int = 0
    last_answer: int | None = None
    last_time: float | None = None

    def due(self, value: int, now: float) -> bool:
        return self.policy.due(self.last_answer, self.last_time, value, now)


def observe(price: int, oracles: Sequence[OracleKeys], timestamp: int) -> list[Observation]:
    """Every oracle's observation of `price` (SPREAD_BPS around it; the median is `price`)."""
    spread = [SPREAD_BPS[i % len(SPREAD_BPS)] for i in range(len(oracles))]
    return [
        Observation(oracle=o.index, value=price + price * bps // 10_000, timestamp=timestamp)
        for o, bps in zip(oracles, sorted(spread), strict=True)
    ]


class OracleNetwork:
    """The devnet's oracles: sign reports and send `transmit` from their transmitters."""

    def __init__(self, rpc_url: str, oracles: Sequence[OracleKeys], chain_id: int) -> None:
        self.rpc_url = rpc_url
        self.oracles = list(oracles)
        self.chain_id = chain_id
        self._nonces: dict[str, int] = {}
        self._turn = itertools.count()

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc_call(self.rpc_url, method, params, timeout=30.0)

    def signed_report(self, feed: OcrFeed, price: int, timestamp: int) -> SignedReport:
        """The next report for `feed` (a new epoch, round 1), signed by f + 1 oracles in turn."""
        feed.epoch += 1
        report = build_report(observe(price, self.oracles, timestamp))
        first = feed.epoch % len(self.oracles)
        signers = [self.oracles[(first + k) % len(self.oracles)] for k in range(FAULTY + 1)]
        return sign_report(report, feed.config_digest, feed.epoch, 1, signers=signers)

    def signed_transmit(self, feed: OcrFeed, report: SignedReport) -> str:
        """A raw EIP-1559 `transmit` transaction from the next transmitter in turn (0x-hex)."""
        oracle = self.oracles[next(self._turn) % len(self.oracles)]
        sender = oracle.transmitter
        if sender not in self._nonces:
            self._nonces[sender] = int(self.rpc("eth_getTransactionCount", sender, "pending"), 16)
        nonce = self._nonces[sender]
        self._nonces[sender] = nonce + 1
        base_fee = int(self.rpc("eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
        tx = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": feed.aggregator,
            "data": "0x" + report.calldata().hex(),
            "gas": TRANSMIT_GAS,
            "maxFeePerGas": 2 * base_fee + PRIORITY_FEE,
            "maxPriorityFeePerGas": PRIORITY_FEE,
            "value": 0,
        }
        signed = Account.sign_transaction(tx, oracle.transmitter_key)
        return "0x" + bytes(signed.raw_transaction).hex()

    def send_public(self, feed: OcrFeed, price: int, now: float) -> str:
        """Transmit `price` to `feed` through the public pool; returns the transaction hash."""
        raw = self.signed_transmit(feed, self.signed_report(feed, price, int(now)))
        tx_hash = str(self.rpc("eth_sendRawTransaction", raw))
        feed.last_answer, feed.last_time = price, now
        return tx_hash

    def update(self, feed: OcrFeed, price: int, now: float) -> str | None:
        """Transmit publicly if the feed's deviation or heartbeat says so; the hash, or None."""
        if not feed.due(price, now):
            return None
        return self.send_public(feed, price, now)


def private_sender(
    builder_url: str,
    *,
    signing_key: bytes = ORDER_FLOW_KEY,
    hints: Sequence[str] = SVR_HINTS,
) -> PrivateSender:
    """Send a raw transaction to a builder's `eth_sendPrivateTransaction` (Flashbots' form,
    the body signed in the X-Flashbots-Signature header), announced with `hints`."""
    key = "0x" + signing_key.hex()

    def send(raw: str) -> str:
        params = [{"tx": raw, "preferences": {"privacy": {"hints": list(hints)}}}]
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendPrivateTransaction"}
        body = json.dumps({**payload, "params": params}).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(body, key)}
        request = urllib.request.Request(builder_url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise DevnetError(f"eth_sendPrivateTransaction: {reply['error'].get('message')}")
        return str(reply["result"])

    return send


@dataclass
class SvrUpdate:
    """One SVR update: sent privately at `sent`, due publicly at `public_at`."""

    price: int
    private_hash: str
    public_at: float
    public_hash: str | None = None


class SvrFeed:
    """An SVR-style feed: each update privately to the secondary, publicly later to the primary.

    `send_private` takes the raw secondary transmit (keeper.devnet.oracles.network's
    `private_sender(url)` for a builder); the public copy goes to the primary aggregator once
    `cutoff` seconds have passed (`tick`). The deviation/heartbeat decision is taken on the
    secondary, the answer the lending protocol reads.
    """

    def __init__(
        self,
        network: OracleNetwork,
        primary: OcrFeed,
        secondary: OcrFeed,
        send_private: PrivateSender,
        cutoff: float = 2.0,
    ) -> None:
        self.network = network
        self.primary = primary
        self.secondary = secondary
        self.send_private = send_private
        self.cutoff = cutoff
        self.pending: list[SvrUpdate] = []

    def update(self, price: int, now: float) -> SvrUpdate | None:
        """Send `price` privately if due; its public copy waits for `tick` after the cut-off."""
        if not self.secondary.due(price, now):
            return None
        report = self.network.signed_report(self.secondary, price, int(now))
        private_hash = self.send_private(self.network.signed_transmit(self.secondary, report))
        self.secondary.last_answer, self.secondary.last_time = price, now
        update = SvrUpdate(price=price, private_hash=private_hash, public_at=now + self.cutoff)
        self.pending.append(update)
        return update

    def tick(self, now: float) -> list[SvrUpdate]:
        """Send every update whose cut-off has passed to the primary, publicly; those sent."""
        sent = [u for u in self.pending if u.public_at <= now]
        self.pending = [u for u in self.pending if u.public_at > now]
        for update in sent:
            update.public_hash = self.network.send_public(self.primary, update.price, now)
        return sent
