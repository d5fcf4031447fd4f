"""`keeper devnet`: run the local devnet, and move its price feeds by hand."""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import FrameType

import click
import structlog
from rich.console import Console
from rich.table import Table
from web3 import Web3

from keeper.anvil import Anvil
from keeper.devnet.builder import DEFAULT_COINBASE, BuilderThread, restart_for_builder
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY, DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.maker_profile import maker_config_section, start_maker_devnet
from keeper.devnet.maker_seed import follow_price
from keeper.devnet.oracles.market import post_everywhere, start_oracle_devnet
from keeper.devnet.perp import PerpInfo
from keeper.devnet.perp_cli import perp_move, write_perp_outputs
from keeper.devnet.perp_seed import start_perp_devnet
from keeper.devnet.scale import start_scaled_devnet
from keeper.devnet.tokens import post_price
from keeper.errors import ConfigError, InputFileError, RpcUnavailable

log = structlog.get_logger(__name__)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def wait_until_interrupted(anvil: Anvil) -> None:
    """Block until Ctrl-C or SIGTERM (or anvil dies); the caller's finally stops anvil."""
    while anvil.poll() is None:
        time.sleep(0.2)
    log.error("anvil exited on its own", returncode=anvil.poll())


def print_summary(console: Console, info: DevnetInfo, seconds: float, cached: bool) -> None:
    table = Table(title="keeper devnet", show_header=False, box=None)
    table.add_row("RPC", info.rpc_url)
    table.add_row("WebSocket", info.ws_url)
    table.add_row("chain id / block", f"{info.chain_id} / {info.block}")
    table.add_row("start", f"{seconds:.2f} s ({'cached state' if cached else 'cold deploy'})")
    table.add_row("Aave V3 pool", info.aave_v3.pool)
    table.add_row("Aave V3 addresses provider", info.aave_v3.addresses_provider)
    if info.aave_v3_6 is not None:
        table.add_row("Aave v3.6 pool", info.aave_v3_6.pool)
        table.add_row("Aave v3.6 addresses provider", info.aave_v3_6.addresses_provider)
    table.add_row("Morpho Blue", info.morpho_blue.morpho)
    if info.maker is not None:
        table.add_row("Maker Vat / Dog / Cat", f"{info.maker.vat} / {info.maker.dog} / "
                      f"{info.maker.cat}")
        table.add_row("Maker vaults", f"{len(info.maker.vaults)} on {', '.join(info.maker.ilks)}")
    table.add_row("Uniswap V2 factory", info.uniswap_v2.factory)
    table.add_row("Uniswap V2 router", info.uniswap_v2.router)
    if info.uniswap_v3 is not None:
        table.add_row("Uniswap V3 factory", info.uniswap_v3.factory)
        table.add_row("Uniswap V3 QuoterV2", info.uniswap_v3.quoter)
    table.add_row("WETH (quote token)", info.tokens["WETH"].address)
    for symbol, feed in info.feeds.items():
        table.add_row(f"feed {symbol}/USD", feed)
    table.add_row("liquidator", f"{info.accounts.liquidator} (anvil dev account 1)")
    console.print(table)


def devnet_config(info: DevnetInfo, journal: str = "keeper-journal.sqlite") -> str:
    """A keeper.toml for this devnet: every market it holds (Aave V3, and v3.6 when deployed;
    Morpho Blue) and every venue (Uniswap V2, and V3 when deployed), sending live as anvil's
    dev account 1."""
    venues = ""
    if info.uniswap_v3 is not None:
        venues = (
            "\n[[dex.venues]]\n"
            'kind = "uniswap_v3"\n'
            f'factory = "{info.uniswap_v3.factory}"\n'
            f'quoter = "{info.uniswap_v3.quoter}"\n'
        )
    return (
        "# keeper.toml for the local devnet (written by `keeper devnet --write-config`).\n"
        "# Sends live to the devnet as anvil's dev account 1; its key is public and only\n"
        "# for this devnet: export KEEPER_ACCOUNT__PRIVATE_KEY=" + DEVNET_LIQUIDATOR_KEY + "\n"
        "# Every key is in docs/configuration.md.\n\n"
        "[chain]\n"
        f"chain_id = {info.chain_id}\n"
        f'http_urls = ["{info.rpc_url}"]\n'
        f'ws_url = "{info.ws_url}"\n\n'
        "[execution]\n"
        'mode = "live"\n'
        + ('submitter = "bundle"\n' if info.oracle_network is not None else "")
        + f'quote_token = "{info.tokens["WETH"].address}"  # WETH\n'
        f'journal = "{journal}"\n\n'
        "[dex]\n"
        f'uniswap_v2_factory = "{info.uniswap_v2.factory}"\n'
        f"{venues}\n"
        "[strategies.aave_v3]\n"
        f'addresses_provider = "{info.aave_v3.addresses_provider}"\n\n'
        "[strategies.morpho_blue]\n"
        f'morpho = "{info.morpho_blue.morpho}"\n'
        + "".join(
            f'\n[strategies.{name}]  # a second Aave market, run by the aave_v3 plugin\n'
            'plugin = "aave_v3"\n'
            f'addresses_provider = "{market.addresses_provider}"\n'
            for name, market in info.aave_markets().items() if name != "aave_v3")
        + maker_config_section(info)
        + _auction_config(info)
    )


def _auction_config(info: DevnetInfo) -> str:
    """With the oracle network (--oracles): bundles to the builder, the intake on its hint
    stream and pool, and the network's feeds prepared for (docs/auction.md)."""
    network = info.oracle_network
    if network is None:
        return ""
    feeds = "".join(
        f'\n[[execution.feeds]]  # {symbol}: the aggregator the market reads\n'
        f'address = "{feed.read_by_market}"\n'
        f"deviation_bps = {info.feed_rules[symbol].deviation_bps}\n"
        f"heartbeat_seconds = {info.feed_rules[symbol].heartbeat}\n"
        for symbol, feed in network.feeds.items() if symbol in info.feed_rules)
    return (
        "\n# The oracle network prices aave_v3: answer its pending and hinted updates with\n"
        "# backrun bundles to the devnet builder (docs/auction.md).\n"
        f"{feeds}\n"
        "[[execution.builders]]\n"
        'name = "devnet-builder"\n'
        f'url = "{info.rpc_url}"\n\n'
        "[intake]\n"
        'pending = "poll"\n'
        f'hint_urls = ["{info.rpc_url}/events"]\n'
    )


def write_devnet_config(info: DevnetInfo, path: Path) -> None:
    """Write `devnet_config(info)` to `path` (atomically; one line if the folder is not
    writable). A journal next to it."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(devnet_config(info))
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"--write-config {path}: cannot write it ({exc.strerror})") from None


def how_to_run(path: Path, out: Path = Path("devnet.json")) -> str:
    """What to type next, printed after --write-config (`out`: where devnet.json went, which
    `devnet price` reads)."""
    where = "" if out == Path("devnet.json") else f" --devnet-file {out}"
    return (
        f"wrote {path}: every market and venue of this devnet. "
        "In another terminal:\n"
        f"  export KEEPER_ACCOUNT__PRIVATE_KEY={DEVNET_LIQUIDATOR_KEY}"
        "   # anvil dev account 1: public, devnet only\n"
        f"  keeper run --config {path}\n"
        f"  keeper devnet price{where} WETH 1500   # in a third one: crash the price"
    )


@click.group(invoke_without_command=True)
@click.option("--borrowers", default=DevnetSpec().borrowers, show_default=True,
              type=click.IntRange(0, 100_000),
              help="Borrowers to open across Aave V3 and Morpho Blue.")
@click.option("--seed", default=7, show_default=True, type=int, help="Population seed.")
@click.option("--out", "out", default="devnet.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Where to write devnet.json.")
@click.option("--port", default=8545, show_default=True, type=click.IntRange(0, 65535),
              help="RPC port (0 picks a free one).")
@click.option("--block-time", type=click.FloatRange(min=0.1), default=None,
              help="Mine a block every N seconds (default: a block per transaction).")
@click.option("--no-cache", is_flag=True, help="Deploy from scratch even if a cached state exists.")
@click.option("--scale-borrowers", type=click.IntRange(1, 1_000_000), default=None,
              help="Add N factory-made Aave V3 positions to the default devnet "
                   "(keeper.devnet.scale; cached like the devnet).")
@click.option("--write-config", "write_config", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a keeper config for every market of this devnet "
                   "(e.g. keeper.toml) and print how to run it.")
@click.option("--builder", is_flag=True,
              help="Put the devnet block builder in front of anvil (keeper.devnet.builder): "
                   "bundles, private transactions and hints on --port and --port + 1; "
                   "blocks every --builder-interval seconds. See docs/devnet.md.")
@click.option("--builder-interval", type=click.FloatRange(min=0.1), default=1.0,
              show_default=True, help="Seconds between the builder's blocks.")
@click.option("--oracles", is_flag=True,
              help="With --builder: the Aave V3 market reads the OCR2 oracle network "
                   "(keeper.devnet.oracles.market; WETH's feed SVR-style, its update sent "
                   "privately to the builder). See docs/devnet.md.")
@click.option("--maker", is_flag=True,
              help="Add Maker MCD (@makerdao/testchain 1.1.33-beta5 replayed: Vat, Cat/Flip, "
                   "Dog/Clip), seeded vaults and exit pools (keeper.devnet.maker_profile; "
                   "cached). See docs/devnet.md.")
@click.option("--perp", is_flag=True,
              help="Add Perpetual Protocol v2 (Curie 2.8.4): vETH and vBTC on the devnet's "
                   "feeds, makers and leveraged traders (keeper.devnet.perp_seed; cached); "
                   "writes perp.json beside --out. See docs/devnet.md.")
@click.pass_context
def devnet(  # noqa: PLR0917 (click passes options positionally)
    ctx: click.Context, borrowers: int, seed: int, out: Path, port: int,
    block_time: float | None, no_cache: bool, scale_borrowers: int | None,
    write_config: Path | None, builder: bool, builder_interval: float, oracles: bool = False,
    maker: bool = False, perp: bool = False,
) -> None:
    """Start anvil with real Aave V3, Uniswap V2 and V3, and Morpho Blue; Ctrl-C stops it."""
    if ctx.invoked_subcommand is not None:
        return
    if write_config is not None and not _writable_folder(write_config):
        raise ConfigError(f"--write-config {write_config}: its folder does not exist or "
                          "is not writable")
    if builder and (block_time is not None or scale_borrowers is not None):
        raise ConfigError("--builder mines its own blocks: no --block-time or --scale-borrowers")
    if maker and (oracles or scale_borrowers is not None):
        raise ConfigError("--maker is its own profile: no --oracles or --scale-borrowers")
    if perp and (maker or oracles or builder or scale_borrowers is not None
                 or block_time is not None):
        raise ConfigError("--perp is its own profile (automine): no --maker, --oracles, "
                          "--builder, --scale-borrowers or --block-time")
    if oracles and not builder:
        raise ConfigError("--oracles needs --builder (an SVR update goes privately to it)")
    console = Console(stderr=True)
    started = time.monotonic()
    perp_info: PerpInfo | None = None
    # SIGTERM behaves like Ctrl-C from the very start, so a stop during deploy cleans up too.
    # SIGINT is set explicitly: a shell's background job starts with it ignored.
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with console.status("starting the devnet (the first start deploys and takes longer)…"):
            if scale_borrowers is not None:
                if block_time is not None:
                    raise ConfigError("--scale-borrowers runs with automine (no --block-time)")
                anvil, info, _report, cached = start_scaled_devnet(
                    scale_borrowers, port=port, use_cache=not no_cache)
            elif oracles:
                anvil, info, cached = start_oracle_devnet(use_cache=not no_cache)
            elif perp:
                anvil, info, perp_info, cached = start_perp_devnet(
                    DevnetSpec(borrowers=borrowers, seed=seed), port=port,
                    use_cache=not no_cache)
            elif maker:
                anvil, info, cached = start_maker_devnet(
                    DevnetSpec(borrowers=borrowers, seed=seed),
                    port=0 if builder else port, block_time=block_time,
                    use_cache=not no_cache)
            else:
                anvil, info, cached = start_devnet(
                    DevnetSpec(borrowers=borrowers, seed=seed),
                    port=0 if builder else port, block_time=block_time,
                    use_cache=not no_cache,
                )
        block_builder = None
        try:
            if builder:
                anvil, block_builder, info = _with_builder(anvil, info, port, builder_interval)
            info.write(out)
            print_summary(console, info, time.monotonic() - started, cached)
            if block_builder is not None:
                console.print(builder_summary(block_builder, anvil), highlight=False)
            if write_config is not None:
                write_devnet_config(info, write_config)
            if perp_info is not None:
                console.print(f"wrote {write_perp_outputs(perp_info, out, write_config)} "
                              "(Perp v2: keeper devnet perp-move vETH 1800 moves a market)")
            if write_config is not None:
                console.print(how_to_run(write_config, out), highlight=False, soft_wrap=True)
            console.print(f"wrote {out}; Ctrl-C stops the devnet")
            wait_until_interrupted(anvil)
        except KeyboardInterrupt:
            console.print("stopping the devnet")
        finally:
            if block_builder is not None:
                block_builder.stop()
            anvil.stop()
    except KeyboardInterrupt:
        console.print("interrupted while starting; anvil stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _with_builder(
    anvil: Anvil, info: DevnetInfo, port: int, interval: float
) -> tuple[Anvil, BuilderThread, DevnetInfo]:
    """Restart the devnet's state on a builder anvil (no automine), the builder in front on
    `port` and `port + 1` (free ones for 0); devnet.json's RPC is the builder's first
    endpoint (reads pass through), its WebSocket anvil's (heads and logs)."""
    anvil = restart_for_builder(anvil)
    try:
        ports = (port, port + 1) if port else (0, 0)
        thread = BuilderThread(anvil.rpc_url, ports=ports, interval=interval).start()
    except BaseException:
        anvil.stop()
        raise
    info = info.model_copy(update={"rpc_url": thread.urls[0], "ws_url": anvil.ws_url})
    return anvil, thread, info


def builder_summary(thread: BuilderThread, anvil: Anvil) -> str:
    """What `keeper devnet --builder` prints about the builder."""
    interval = thread.service.interval if thread.service is not None else 0.0
    return (
        f"block builder: a block every {interval:g} s, coinbase {DEFAULT_COINBASE}\n"
        f"  endpoint 0 (JSON-RPC, bundles): {thread.urls[0]}\n"
        f"  endpoint 1 (its own bundle pool): {thread.urls[1]}\n"
        f"  hints (server-sent events): {thread.events_url}\n"
        f"  anvil behind it (no automine): {anvil.rpc_url}"
    )


def _writable_folder(path: Path) -> bool:
    folder = path.parent if str(path.parent) else Path()
    return folder.is_dir() and os.access(folder, os.W_OK)


@devnet.command("price")
@click.argument("symbol")
@click.argument("usd")
@click.option("--devnet-file", default="devnet.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The devnet.json to read.")
@click.option("--rpc", default=None, help="RPC URL (default: the one in devnet.json).")
def price(symbol: str, usd: str, devnet_file: Path, rpc: str | None) -> None:
    """Post a new price on the devnet feed for SYMBOL (emits AnswerUpdated)."""
    try:
        value = Decimal(usd)
    except InvalidOperation:
        raise ConfigError(f"price {usd!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"price {usd} must be positive")
    info = DevnetInfo.read(devnet_file)
    feed = info.feeds.get(symbol.upper())
    if feed is None:
        raise InputFileError(
            f"{devnet_file}: no feed for {symbol!r}; known: {', '.join(sorted(info.feeds))}"
        )
    url = rpc or info.rpc_url
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 5}))
    if not w3.is_connected():
        raise RpcUnavailable(f"cannot reach the devnet RPC at {url}")
    if info.oracle_network is not None and symbol.upper() in info.oracle_network.feeds:
        blocks = post_everywhere(info, url, symbol.upper(), value)
        where = ", ".join(f"{what} in block {block}" for what, block in blocks.items())
        click.echo(f"{symbol.upper()}/USD = {value}: {where}")
        return
    receipt = post_price(w3, feed, value, info.accounts.deployer)
    click.echo(f"{symbol.upper()}/USD = {value} in block {receipt['blockNumber']}")
    if info.maker is not None and symbol.upper() == info.maker.price_symbol:
        block = follow_price(w3, info.maker, value)  # Maker's pip and Spotter follow the feed
        click.echo(f"Maker ETH pip and spot poked in block {block}")


devnet.add_command(perp_move)
