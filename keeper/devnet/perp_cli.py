"""`keeper devnet --perp` and `keeper devnet perp-move`: the Perp v2 profile from the CLI.

`--perp` starts the Perp profile (keeper/devnet/perp_seed.py) instead of the default devnet,
writes `perp.json` beside `devnet.json`, and adds a `[strategies.perp_v2]` section to the
config `--write-config` writes. `perp-move SYMBOL USD` moves one market the way its mark
price follows: the index (the devnet feed `keeper devnet price` also moves), the vAMM, and
16 seconds of time (keeper/devnet/perp_drive.py).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
from pydantic import ValidationError
from web3 import Web3

from keeper.devnet.deployer import Deployer
from keeper.devnet.info import DevnetInfo
from keeper.devnet.perp import PerpInfo, attach
from keeper.devnet.perp_drive import move_market
from keeper.devnet.perp_seed import read_perp_info, write_perp_info
from keeper.errors import ConfigError, DevnetError, InputFileError


def perp_file_beside(devnet_file: Path) -> Path:
    """Where `--perp` writes perp.json: next to devnet.json."""
    return devnet_file.with_name("perp.json")


def write_perp_outputs(info: PerpInfo, devnet_file: Path, config: Path | None) -> Path:
    """Write perp.json beside `devnet_file`, and append the strategy to `config` if given."""
    path = perp_file_beside(devnet_file)
    write_perp_info(info, path)
    if config is not None:
        with config.open("a") as out:
            out.write(perp_config_section(info))
    return path


def perp_config_section(info: PerpInfo) -> str:
    """The `[strategies.perp_v2]` section for this profile."""
    return (
        "\n[strategies.perp_v2]\n"
        f'clearing_house = "{info.clearing_house}"\n'
        f'market_registry = "{info.market_registry}"\n'
        "max_margin_usd = 500000   # the devnet liquidator holds $1M in the Vault\n"
    )


def _read(path: Path) -> PerpInfo:
    try:
        return read_perp_info(path)
    except FileNotFoundError:
        raise InputFileError(f"{path}: perp file not found (start `keeper devnet --perp`)") \
            from None
    except (ValidationError, ValueError) as exc:
        raise InputFileError(f"{path}: not a perp file ({str(exc).splitlines()[0]})") from None


@click.command("perp-move")
@click.argument("symbol")
@click.argument("usd")
@click.option("--devnet-file", default="devnet.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--perp-file", default="perp.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rpc", default=None, help="RPC URL (default: the one in devnet.json).")
def perp_move(symbol: str, usd: str, devnet_file: Path, perp_file: Path, rpc: str | None) -> None:
    """Move a Perp market (vETH, vBTC) to USD: index, vAMM trades, then 16 s for the mark."""
    try:
        price = Decimal(usd)
    except InvalidOperation:
        raise ConfigError(f"perp-move: {usd!r} is not a price") from None
    if not price > 0:
        raise ConfigError(f"perp-move: the price must be positive, not {usd}")
    devnet = DevnetInfo.read(devnet_file)
    info = _read(perp_file)
    if symbol not in info.markets:
        raise ConfigError(f"perp-move: no market {symbol!r} (markets: "
                          f"{', '.join(sorted(info.markets))})")
    w3 = Web3(Web3.HTTPProvider(rpc or devnet.rpc_url))
    if not w3.is_connected():
        raise DevnetError(f"perp-move: no node at {rpc or devnet.rpc_url}")
    deployer = Deployer(w3, Web3.to_checksum_address(devnet.accounts.deployer))
    move = move_market(deployer, attach(w3, info), info, symbol, price)
    click.echo(f"{symbol} at {price} USD: index block {move.feed_block}, trades in "
               f"{len(move.trade_blocks)} block(s), mark settled at block {move.settle_block}")
