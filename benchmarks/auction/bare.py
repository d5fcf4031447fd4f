"""The bare loop: the least a bot can do between an oracle transaction and a bundle at the
builder, to compare the keeper's figure with. It reads the hint stream (and polls the
pool, as the keeper does, for public transmits to the watched feeds) and answers each one
with a pre-signed transaction in a `mev_sendBundle` backrun: no decoding of the report, no
strategy, no sizing; only the body is filled in and signed (the X-Flashbots-Signature
every bundle needs). Its bundle pays only a 1 gwei tip, so it never wins a contested
backrun; it is there for its arrival time at the builder (builder_arrivals).

    python -m benchmarks.auction.bare CONFIG.json
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account

from keeper.devnet.builder.txs import SIGNATURE_HEADER, sign_body


@dataclass(frozen=True)
class BareConfig:
    rpc_url: str  # the builder's endpoint
    events_url: str
    feeds: list[str]  # lower case: the aggregators whose transmits it answers
    key: str  # signs the pre-signed transaction and the header (devnet account)
    poll_interval: float = 0.005

    @classmethod
    def read(cls, path: Path) -> BareConfig:
        return cls(**json.loads(path.read_text()))


class Bare:
    """Pre-signed once; per target only the body's hash and block change."""

    def __init__(self, config: BareConfig, session: aiohttp.ClientSession) -> None:
        self.config, self.session = config, session
        self.block = 0  # the next block, refreshed off the critical path
        self.raw = ""
        self.answered: set[str] = set()

    async def rpc(self, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with self.session.post(self.config.rpc_url, json=body) as reply:
            return (await reply.json(content_type=None)).get("result")

    async def presign(self) -> None:
        account = Account.from_key(self.config.key)
        nonce = int(await self.rpc("eth_getTransactionCount", [account.address, "latest"]), 16)
        chain_id = int(await self.rpc("eth_chainId", []), 16)
        tx = {"type": 2, "chainId": chain_id, "nonce": nonce, "to": account.address,
              "value": 0, "gas": 21_000, "maxFeePerGas": 10**12,
              "maxPriorityFeePerGas": 10**9, "data": b""}
        self.raw = "0x" + bytes(Account.sign_transaction(tx, self.config.key)
                                .raw_transaction).hex()

    async def answer(self, target: str) -> None:
        if target in self.answered:
            return
        self.answered.add(target)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "mev_sendBundle", "params": [{
            "version": "v0.1", "inclusion": {"block": hex(self.block)},
            "body": [{"hash": target}, {"tx": self.raw, "canRevert": True}]}]}).encode()
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign_body(body, self.config.key)}
        async with self.session.post(self.config.rpc_url, data=body, headers=headers) as r:
            await r.read()

    async def heads(self) -> None:
        while True:
            self.block = int(await self.rpc("eth_blockNumber", []), 16) + 1
            await asyncio.sleep(0.1)

    async def hints(self) -> None:
        async with self.session.get(self.config.events_url) as reply:
            async for line in reply.content:
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    if any(str(t.get("to", "")).lower() in self.config.feeds
                           for t in event.get("txs") or ()):
                        await self.answer(str(event["hash"]))

    async def pool(self) -> None:
        while True:
            content = await self.rpc("txpool_content", [])
            for by_nonce in (content or {}).get("pending", {}).values():
                for tx in by_nonce.values():
                    if str(tx.get("to", "")).lower() in self.config.feeds:
                        await self.answer(str(tx["hash"]))
            await asyncio.sleep(self.config.poll_interval)


async def _main(config: BareConfig) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        bare = Bare(config, session)
        await bare.presign()
        await asyncio.gather(bare.heads(), bare.hints(), bare.pool())


def main() -> None:
    asyncio.run(_main(BareConfig.read(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
