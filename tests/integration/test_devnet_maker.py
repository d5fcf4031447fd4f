"""The Maker devnet profile: the package's addresses on the devnet's chain id, the seeded
vaults and pools, and Maker's price following the devnet's WETH feed."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from web3 import Web3

from keeper import secrets
from keeper.cli import main
from keeper.devnet import maker as mcd
from keeper.devnet.cli import devnet_config
from keeper.devnet.crash import CrashStep, apply_step
from keeper.devnet.maker_keeper import maker_keeper_artifact
from keeper.devnet.maker_seed import RAY, WAD, ilk_id
from keeper.log import reset_logging
from tests.conftest import Devnet
from tests.integration.helpers import clear_keeper_env


def test_addresses_vaults_and_pools(maker: Devnet) -> None:
    info = maker.info.maker
    assert info is not None and maker.info.chain_id == 31337
    names = mcd.addresses()
    assert info.vat == names["MCD_VAT"] and info.dog == names["MCD_DOG"]
    assert info.ilks["ETH-A"].auction == names["MCD_FLIP_ETH_A"]
    assert info.ilks["ETH-B"].auction == names["MCD_CLIP_ETH_B"]
    vat = mcd.contract(maker.w3, "Vat", info.vat)
    assert {v.ilk for v in info.vaults} == {"ETH-A", "ETH-B", "ETH-C"}
    for vault in info.vaults:
        ink, art = vat.functions.urns(ilk_id(vault.ilk), vault.urn).call()
        _art, rate, spot, _line, _dust = vat.functions.ilks(ilk_id(vault.ilk)).call()
        assert art > 0 and abs(ink * spot / (art * rate) - vault.opened_at) < 1e-6
    for key in ("MCD_WETH/WETH", "MCD_DAI/DAI", "MCD_DAI/WETH"):
        assert maker.info.uniswap_v2.pairs[key] == info.pairs[key]
    dai = mcd.contract(maker.w3, "Dai", info.dai)
    assert dai.functions.balanceOf(maker.info.accounts.liquidator).call() > 0


def test_crash_step_moves_pip_and_spot(maker: Devnet) -> None:
    info = maker.info.maker
    assert info is not None
    spotter = mcd.contract(maker.w3, "Spotter", info.spot)
    vat = mcd.contract(maker.w3, "Vat", info.vat)
    apply_step(maker.w3, maker.info, CrashStep(0, "t", {"WETH": Decimal("1500")}, None))
    for name in ("ETH-A", "ETH-B", "ETH-C"):
        _pip, mat = spotter.functions.ilks(ilk_id(name)).call()
        spot = vat.functions.ilks(ilk_id(name)).call()[2]
        # Spotter.poke: spot = val * 1e9 / par / mat (rdiv twice, par = 1 RAY).
        assert spot == (1500 * WAD * 10**9 * RAY // RAY) * RAY // mat
    # The nearest ETH-B vault is now unsafe: ink * spot < art * rate.
    nearest = next(v for v in info.vaults if v.ilk == "ETH-B" and v.opened_at < 1.05)
    ink, art = vat.functions.urns(ilk_id("ETH-B"), nearest.urn).call()
    rate, spot = vat.functions.ilks(ilk_id("ETH-B")).call()[1:3]
    assert ink * spot < art * rate


def test_written_config_checks_scans_and_draws_the_curve(
    maker: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keeper devnet --maker --write-config`'s config: check-config verifies every Maker
    address, `scan` lists every seeded vault, `risk` draws their curve, and after a drop to
    $1,700 `scan` ranks Dog barks and (flip_exit_pair written) Cat bites of ETH-A."""
    info = maker.info.maker
    assert info is not None and info.keeper_contract is not None
    keeper = maker.w3.eth.contract(address=Web3.to_checksum_address(info.keeper_contract),
                                   abi=maker_keeper_artifact().abi)
    assert keeper.functions.owner().call() == maker.info.accounts.liquidator
    clear_keeper_env(monkeypatch)
    path = tmp_path / "keeper.toml"
    path.write_text(devnet_config(maker.info, journal=str(tmp_path / "journal.sqlite")))
    try:
        checked = CliRunner().invoke(main, ["check-config", "--config", str(path)])
        assert checked.exit_code == 0, checked.output
        scanned = CliRunner().invoke(main, ["scan", "--json", "--config", str(path)])
        assert scanned.exit_code == 0, scanned.output
        vaults = {p["account"].lower() for p in json.loads(scanned.stdout)["positions"]
                  if p["strategy"] == "maker"}
        assert vaults >= {v.urn.lower() for v in info.vaults}
        risk = CliRunner().invoke(main, ["risk", "--json", "--config", str(path)])
        assert risk.exit_code == 0, risk.output
        assert '"maker"' in risk.stdout
        assert f'flip_exit_pair = "{info.pairs["MCD_WETH/MCD_DAI"]}"' in path.read_text()
        apply_step(maker.w3, maker.info, CrashStep(0, "t", {"WETH": Decimal("1700")}, None))
        scanned = CliRunner().invoke(main, ["scan", "--json", "--config", str(path)])
        assert scanned.exit_code == 0, scanned.output
        # Keys are "<chain>:maker:<urn>:bark:<ilk>:..." and "<chain>:maker:<urn>:flip:bite:...".
        opportunities = json.loads(scanned.stdout)["opportunities"]
        kinds = {":".join(o["key"].split(":")[3:5]) for o in opportunities
                 if o["strategy"] == "maker"}
        assert {"bark:ETH-B", "flip:bite"} <= kinds, kinds
    finally:
        reset_logging()
        secrets.clear_secrets()
