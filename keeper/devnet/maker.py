"""Replay Maker MCD (`@makerdao/testchain` 1.1.33-beta5) onto a running devnet anvil.

The npm package ships a ganache chain snapshot (`snapshots/default.tgz`): 695 transactions,
all from one deployer, that build the whole of MCD: a single Vat with ETH-A liquidated by
Cat + Flipper (liquidations 1.2) and ETH-B, ETH-C, LINK-A, YFI-A by Dog + Clipper
(liquidations 2.0). Its transactions are signed for chain id 1, so they are not replayed
raw: each is sent unsigned from the impersonated deployer (`anvil_impersonateAccount`)
with its original calldata, value and gas, in order. The deployer's nonces start from 0
on the devnet as they did on ganache, so every contract lands at the address the
package's `out/addresses-mcd.json` names, on any chain id. Block time advances by the
snapshot's own gaps (DSPause plans wait on it). One deploy (DssDeploy) exceeds 24 KB:
the anvil doing the replay needs `--disable-code-size-limit`; a state loaded afterwards
does not.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from keeper.devnet.deployer import mined_receipt, rpc
from keeper.errors import DevnetError
from keeper.paths import cache_dir, node_modules

PACKAGE = "@makerdao/testchain"
PACKAGE_VERSION = "1.1.33-beta5"
# The ETH a replay gives the deployer: the snapshot's gas at any devnet base fee.
DEPLOYER_ETH = 10**24


def package_dir() -> Path:
    """The installed testchain package; one clear error if it is not the pinned version."""
    root = node_modules() / "@makerdao" / "testchain"
    try:
        version = json.loads((root / "package.json").read_text())["version"]
    except FileNotFoundError:
        raise DevnetError(f"{PACKAGE} is not installed: run `npm ci` in the project root") from None
    if version != PACKAGE_VERSION:
        raise DevnetError(f"{PACKAGE} is {version}; the Maker devnet needs {PACKAGE_VERSION}")
    return root


def addresses() -> dict[str, ChecksumAddress]:
    """`out/addresses-mcd.json`: name (MCD_VAT, MCD_CLIP_ETH_B, PIP_ETH, ...) -> address."""
    raw = json.loads((package_dir() / "out" / "addresses-mcd.json").read_text())
    return {name: Web3.to_checksum_address(value) for name, value in raw.items()}


def abi(name: str) -> list[dict[str, Any]]:
    """The package's ABI of one MCD contract (`out/mcd/<name>.abi`)."""
    path = package_dir() / "out" / "mcd" / f"{name}.abi"
    try:
        loaded: list[dict[str, Any]] = json.loads(path.read_text())
    except FileNotFoundError:
        raise DevnetError(f"{PACKAGE}: no ABI for {name}") from None
    return loaded


def contract(w3: Web3, name: str, address: str) -> Contract:
    """A web3 contract for an MCD contract at `address` with the package's ABI `name`."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi(name))


def _snapshot() -> Path:
    """The snapshot unpacked once under .cache (keyed on the package version)."""
    folder = cache_dir() / "maker" / f"testchain-{PACKAGE_VERSION}"
    done = folder / ".unpacked"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(package_dir() / "snapshots" / "default.tgz") as archive:
            wanted = [m for m in archive.getmembers() if m.name.startswith("./!blocks!")]
            archive.extractall(folder, members=wanted, filter="data")
        done.write_text(PACKAGE_VERSION)
    return folder


def snapshot_transactions() -> list[tuple[int, Mapping[str, Any]]]:
    """Every stored transaction in chain order, with its block's timestamp."""
    snap = _snapshot()
    count = int((snap / "!blocks!length").read_text())
    out: list[tuple[int, Mapping[str, Any]]] = []
    for number in range(1, count):
        block = json.loads((snap / f"!blocks!{number}").read_text())
        timestamp = int(block["header"]["timestamp"], 16)
        out.extend((timestamp, tx) for tx in block["transactions"])
    return out


def replay_deployment(w3: Web3) -> dict[str, ChecksumAddress]:
    """Replay every snapshot transaction as the impersonated deployer; the addresses.

    Raises DevnetError if the deployer was used before on this chain (its contracts would
    land elsewhere), if a transaction reverts, or if the Vat is not where the package says.
    """
    names = addresses()
    deployer = names["DEPLOYER"]
    if w3.eth.get_transaction_count(deployer) != 0:
        raise DevnetError(f"Maker replay: the deployer {deployer} has sent before on this chain")
    rpc(w3, "anvil_setBalance", deployer, hex(DEPLOYER_ETH))
    rpc(w3, "anvil_impersonateAccount", deployer)
    try:
        previous: int | None = None
        for timestamp, tx in snapshot_transactions():
            if previous is not None and timestamp > previous:
                # The snapshot's gaps: DSPause's delays see the time they saw.
                rpc(w3, "evm_increaseTime", hex(timestamp - previous))
            previous = timestamp
            call: dict[str, Any] = {"from": deployer, "data": tx["data"], "gas": tx["gas"],
                                    "value": tx["value"] or "0x0"}
            if tx["to"]:
                call["to"] = tx["to"]
            receipt = mined_receipt(w3, rpc(w3, "eth_sendTransaction", call))
            if receipt["status"] != 1:
                raise DevnetError(f"Maker replay: snapshot transaction {tx['hash']} reverted")
    finally:
        rpc(w3, "anvil_stopImpersonatingAccount", deployer)
    if not w3.eth.get_code(names["MCD_VAT"]):
        raise DevnetError("Maker replay: no Vat at the package's MCD_VAT address")
    return names
