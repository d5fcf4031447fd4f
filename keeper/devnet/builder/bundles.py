"""Bundles as the devnet builder keeps them: parsed from `eth_sendBundle`, `mev_sendBundle`
and private transactions, pooled per endpoint, merged each block.

- `eth_sendBundle` [{txs, blockNumber, minTimestamp?, maxTimestamp?, revertingTxHashes?,
  replacementUuid?}]: one target block; a later bundle with the same replacementUuid from
  the same signer replaces the earlier one (`eth_cancelBundle` removes it).
- `mev_sendBundle` [{version, inclusion: {block, maxBlock?}, body: [{hash} | {tx,
  canRevert}], validity?, privacy?: {hints?, builders?}}]: a `{hash}` item is a private
  transaction (or the transactions of a hinted bundle) the builder already holds, placed
  where it stands in the body, so `[{hash: T}, {tx: B}]` puts the backrun B right after T.
- a private transaction (`eth_sendPrivateTransaction`, or `mev_sendPrivateTransaction`)
  is a one-transaction bundle valid until its maxBlockNumber (default: 25 blocks, as
  Flashbots).

A bundle's hash is keccak256 of its transactions' hashes concatenated (Flashbots'
eth_sendBundle hash); the same bundle sent to both endpoints has one hash, so the merge
simulates and includes it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from eth_utils.crypto import keccak

from keeper.devnet.builder.txs import RawTx, decode_raw

PRIVATE_TX_BLOCKS = 25
MEV_SHARE_VERSIONS = ("v0.1", "beta-1")


class BundleError(ValueError):
    """Bad bundle parameters; the JSON-RPC answer is an invalid-params error."""


@dataclass(frozen=True)
class BundleTx:
    """One transaction of a bundle and whether it may revert without dropping the bundle."""

    tx: RawTx
    can_revert: bool = False


@dataclass
class Bundle:
    """A bundle, valid for blocks first_block..last_block, from the endpoints that got it."""

    hash: str
    txs: list[BundleTx]
    first_block: int
    last_block: int
    signer: str
    kind: str  # "eth_sendBundle" | "mev_sendBundle" | "private"
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    replacement_uuid: str | None = None
    hints: frozenset[str] = frozenset()
    endpoints: set[int] = field(default_factory=set)

    def valid_at(self, number: int, timestamp: int) -> bool:
        if not self.first_block <= number <= self.last_block:
            return False
        if self.min_timestamp is not None and timestamp < self.min_timestamp:
            return False
        return self.max_timestamp is None or timestamp <= self.max_timestamp


def bundle_hash(txs: Iterable[BundleTx]) -> str:
    return "0x" + keccak(b"".join(bytes.fromhex(t.tx.hash[2:]) for t in txs)).hex()


def _quantity(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.startswith("0x") else int(value)
        except ValueError:
            pass
    raise BundleError(f"{name} must be a number or a hex quantity, not {value!r}")


def _object(params: list[Any], method: str) -> dict[str, Any]:
    if not params or not isinstance(params[0], dict):
        raise BundleError(f"{method} takes one object parameter")
    return params[0]


def _decode(raw: object) -> RawTx:
    if not isinstance(raw, str):
        raise BundleError("a transaction must be a hex string")
    try:
        return decode_raw(raw)
    except ValueError as exc:
        raise BundleError(str(exc)) from None


def _optional(obj: Mapping[str, Any], key: str) -> int | None:
    return None if obj.get(key) in (None, 0, "0x0") else _quantity(obj[key], key)


def parse_eth_bundle(params: list[Any], signer: str) -> Bundle:
    """An `eth_sendBundle` (or `eth_callBundle`) parameter object as a Bundle."""
    obj = _object(params, "eth_sendBundle")
    raws = obj.get("txs")
    if not isinstance(raws, list) or not raws:
        raise BundleError("txs must be a non-empty list of signed transactions")
    if "blockNumber" not in obj:
        raise BundleError("blockNumber is required")
    block = _quantity(obj["blockNumber"], "blockNumber")
    reverting = {str(h).lower() for h in obj.get("revertingTxHashes") or []}
    txs = [BundleTx(tx, tx.hash in reverting) for tx in map(_decode, raws)]
    uuid = obj.get("replacementUuid") or obj.get("uuid")
    return Bundle(
        hash=bundle_hash(txs), txs=txs, first_block=block, last_block=block, signer=signer,
        kind="eth_sendBundle", min_timestamp=_optional(obj, "minTimestamp"),
        max_timestamp=_optional(obj, "maxTimestamp"),
        replacement_uuid=str(uuid) if uuid else None,
    )


def parse_mev_bundle(
    params: list[Any], signer: str, known: Callable[[str], list[BundleTx] | None]
) -> Bundle:
    """A `mev_sendBundle` parameter object; `known(hash)` gives the transactions a `{hash}`
    body item stands for (a private transaction or a hinted bundle), None if unknown."""
    obj = _object(params, "mev_sendBundle")
    if obj.get("version", "v0.1") not in MEV_SHARE_VERSIONS:
        raise BundleError(f"version must be one of {', '.join(MEV_SHARE_VERSIONS)}")
    inclusion = obj.get("inclusion")
    if not isinstance(inclusion, dict) or "block" not in inclusion:
        raise BundleError("inclusion.block is required")
    first = _quantity(inclusion["block"], "inclusion.block")
    last = _quantity(inclusion.get("maxBlock", first), "inclusion.maxBlock")
    if last < first:
        raise BundleError("inclusion.maxBlock is before inclusion.block")
    body = obj.get("body")
    if not isinstance(body, list) or not body:
        raise BundleError("body must be a non-empty list")
    txs: list[BundleTx] = []
    for item in body:
        if not isinstance(item, dict):
            raise BundleError("each body item is {hash} or {tx, canRevert}")
        if "hash" in item:
            found = known(str(item["hash"]).lower())
            if found is None:
                raise BundleError(f"unknown hash {item['hash']}: not a pending private "
                                  "transaction or hinted bundle of this builder")
            txs.extend(found)
        elif "tx" in item:
            txs.append(BundleTx(_decode(item["tx"]), bool(item.get("canRevert", False))))
        else:
            raise BundleError("nested bundles are not supported by the devnet builder")
    hints = (obj.get("privacy") or {}).get("hints") or []
    return Bundle(
        hash=bundle_hash(txs), txs=txs, first_block=first, last_block=last, signer=signer,
        kind="mev_sendBundle", hints=frozenset(str(h) for h in hints),
    )


def parse_private_tx(params: list[Any], signer: str, next_block: int) -> Bundle:
    """`eth_sendPrivateTransaction` [{tx, maxBlockNumber?, preferences?: {privacy: {hints}}}].
    Without preferences the hints are MEV-Share's defaults (hash and logs)."""
    obj = _object(params, "eth_sendPrivateTransaction")
    tx = _decode(obj.get("tx"))
    last = _optional(obj, "maxBlockNumber") or next_block + PRIVATE_TX_BLOCKS - 1
    privacy = ((obj.get("preferences") or {}).get("privacy")) or {}
    hints = privacy.get("hints", ["hash", "default_logs"])
    txs = [BundleTx(tx)]
    return Bundle(
        hash=tx.hash, txs=txs, first_block=next_block, last_block=last, signer=signer,
        kind="private", hints=frozenset(str(h) for h in hints),
    )


class BundlePool:
    """One endpoint's bundles, by hash (an eth_sendBundle by hash and first block), with
    replacementUuid bookkeeping."""

    def __init__(self, endpoint: int) -> None:
        self.endpoint = endpoint
        self.bundles: dict[str, Bundle] = {}
        self._by_uuid: dict[tuple[str, str], str] = {}

    def add(self, bundle: Bundle) -> None:
        bundle.endpoints.add(self.endpoint)
        # The same eth_sendBundle sent for blocks N, N+1, N+2 (one request each, as searchers
        # do) is three entries, as at a relay; one of them at most is valid for a block.
        entry = f"{bundle.hash}@{bundle.first_block}" if bundle.kind == "eth_sendBundle" \
            else bundle.hash
        if bundle.replacement_uuid:
            key = (bundle.signer.lower(), bundle.replacement_uuid)
            old = self._by_uuid.pop(key, None)
            if old is not None:
                self.bundles.pop(old, None)
            self._by_uuid[key] = entry
        self.bundles[entry] = bundle

    def cancel(self, signer: str, uuid: str) -> bool:
        old = self._by_uuid.pop((signer.lower(), uuid), None)
        return old is not None and self.bundles.pop(old, None) is not None

    def prune(self, next_block: int, gone: set[str]) -> None:
        """Drop bundles that expired before `next_block` or hold a transaction in `gone`
        (a transaction already mined can never be part of a later block)."""
        for h, b in list(self.bundles.items()):
            if b.last_block < next_block or any(t.tx.hash in gone for t in b.txs):
                del self.bundles[h]
        live = set(self.bundles)
        self._by_uuid = {k: v for k, v in self._by_uuid.items() if v in live}


def merged(pools: Iterable[BundlePool], number: int, timestamp: int) -> list[Bundle]:
    """Every pool's bundles valid for block `number` at `timestamp`, one per hash, with
    the endpoints that sent it."""
    out: dict[str, Bundle] = {}
    for pool in pools:
        for b in pool.bundles.values():
            if not b.valid_at(number, timestamp):
                continue
            if b.hash in out:
                out[b.hash].endpoints |= b.endpoints
            else:
                out[b.hash] = replace(b, endpoints=set(b.endpoints))
    return list(out.values())
