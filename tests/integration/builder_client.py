"""A plain JSON-RPC client for the devnet builder's conformance tests: signed POSTs with the
X-Flashbots-Signature header, signed transactions from anvil's dev accounts, the SSE
stream read in a thread. Nothing here goes through the keeper.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from eth_account import Account
from eth_utils.address import to_checksum_address

from keeper.devnet.builder import SIGNATURE_HEADER, sign_body

# anvil's dev accounts 0-4 (the public "test test ... junk" mnemonic): devnet only.
DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
]
# The searcher's header key: signs requests, holds no ETH (as Flashbots recommends).
SEARCHER_KEY = "0x" + "5e" * 32
GWEI = 10**9
# Runtime code set with anvil_setCode: PAYER forwards msg.value to block.coinbase
# (CALL(gas, COINBASE, CALLVALUE, 0, 0, 0, 0)); REVERTER always reverts; EMITTER logs 42.
PAYER = to_checksum_address("0x00000000000000000000000000000000000fee01")
PAYER_CODE = "0x600060006000600034415af15000"
REVERTER = to_checksum_address("0x00000000000000000000000000000000000fee02")
REVERTER_CODE = "0x60006000fd"
EMITTER = to_checksum_address("0x00000000000000000000000000000000000fee03")
EMITTER_CODE = "0x602a60005260206000a000"
# BURNER loops until less than 10,000 gas is left: a transaction uses about its gas limit.
BURNER = to_checksum_address("0x00000000000000000000000000000000000fee04")
BURNER_CODE = "0x5b6127105a10600c576000565b00"


def post(url: str, payload: Any, *, key: str | None = SEARCHER_KEY,
         header: str | None = None) -> Any:
    """POST `payload`; signed with `key` unless `header` gives the header's exact value."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[SIGNATURE_HEADER] = header
    elif key is not None:
        headers[SIGNATURE_HEADER] = sign_body(body, key)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def call(url: str, method: str, *params: Any, key: str | None = SEARCHER_KEY) -> Any:
    """The result of `method`; AssertionError with the message if it answered an error."""
    reply = post(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                 key=key)
    assert "error" not in reply, f"{method}: {reply['error']}"
    return reply["result"]


class Client:
    """Transactions from dev accounts, and the builder's reads, at one endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.accounts = [Account.from_key(k) for k in DEV_KEYS]

    def __call__(self, method: str, *params: Any) -> Any:
        return call(self.url, method, *params)

    def next_block(self) -> int:
        return int(self("eth_blockNumber"), 16) + 1

    def nonce(self, who: int) -> int:
        return int(self("eth_getTransactionCount", self.accounts[who].address, "latest"), 16)

    def tx(self, who: int, to: str, *, value: int = 0, data: str = "0x", tip_gwei: float = 1,
           nonce: int | None = None, gas: int = 100_000) -> tuple[str, str]:
        """A signed EIP-1559 transaction from dev account `who`: (raw hex, hash)."""
        signed = self.accounts[who].sign_transaction({
            "type": 2, "chainId": 31337, "to": to, "value": value, "data": data, "gas": gas,
            "nonce": self.nonce(who) if nonce is None else nonce,
            "maxFeePerGas": 200 * GWEI, "maxPriorityFeePerGas": int(tip_gwei * GWEI),
        })
        return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()

    def build(self) -> dict[str, Any]:
        report = self("builder_buildBlock")
        assert isinstance(report, dict)
        assert not report["mismatch"], report["mismatch"]
        return report

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        found = self("eth_getTransactionReceipt", tx_hash)
        assert found is None or isinstance(found, dict)
        return found

    def bundle_fate(self, report: dict[str, Any], bundle_hash: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [
            b for b in report["bundles"] if b["bundleHash"] == bundle_hash]
        assert len(found) == 1, f"{bundle_hash} is {len(found)} times in {report['bundles']}"
        return found[0]


class EventStream:
    """GET /events; `next()` reads lines until the next event (socket timeout: 10 s)."""

    def __init__(self, url: str) -> None:
        self._response = urllib.request.urlopen(url, timeout=10)
        first = self._response.readline()
        assert first.startswith(b":ping"), first  # subscribed from here on

    def next(self) -> dict[str, Any]:
        while True:
            line = self._response.readline()
            assert line, "the event stream ended"
            if line.startswith(b"data: "):
                event = json.loads(line[len(b"data: "):])
                assert isinstance(event, dict)
                return event

    def close(self) -> None:
        self._response.close()
