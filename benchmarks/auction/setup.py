"""Set-up of one auction run: the oracle devnet behind the builder, the bots' accounts,
executors and configs.

Everything that needs many transactions (funding the competitor, deploying each keeper's
flash executor) runs on the automining anvil first; the state then moves behind the
builder (`restart_for_builder`), whose blocks come once a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from eth_account import Account
from web3 import Web3

from benchmarks.race.harness import MNEMONIC, fund
from keeper.anvil import Anvil
from keeper.deploy_executor import compile_flash_liquidator, deploy_flash_liquidator
from keeper.devnet.builder import BuilderThread, restart_for_builder
from keeper.devnet.deploy import DEVNET_LIQUIDATOR_KEY
from keeper.devnet.deployer import Deployer, rpc
from keeper.devnet.info import DevnetInfo
from keeper.devnet.oracles.market import start_oracle_devnet
from keeper.devnet.tokens import DEFAULT_TOKENS

GWEI = 10**9
LANES = 64  # extra signing accounts per keeper (nonce lanes), each an executor operator:
# a backrun holds one lane per liquidation until it is mined or expires, and a crash step
# opens 30-40 at once, right after the last one (24 ran out: "every nonce lane holds a
# bundle" refused 40 sends in a six-step run)
RIVAL_INDEX = 6  # the second keeper: an anvil dev account the devnet never touches
BARE_INDEX = 7  # the bare loop's pre-signed transaction and header
CAPITAL_USD = Decimal(100_000_000)  # the competitor's (and keeper's) token balance
EXECUTOR_FLOAT = 10**6 * 10**18  # ether each executor pays bids from (devnet only)


def dev_key(index: int) -> str:
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(account.key).hex()


def searcher_key(name: str) -> str:
    """A bot's bundle-signing identity (X-Flashbots-Signature): holds nothing; named so
    the builder's arrivals tell the bots apart."""
    return "0x" + Web3.keccak(text=f"keeper auction benchmark searcher {name}").hex()[-64:]


@dataclass
class Bot:
    """A keeper instance of the run."""

    name: str
    key: str
    bid_share: Decimal
    executor: str | None = None

    @property
    def address(self) -> str:
        return str(Account.from_key(self.key).address).lower()

    @property
    def searcher(self) -> str:
        return str(Account.from_key(searcher_key(self.name)).address).lower()

    @property
    def lane_keys(self) -> list[str]:
        """The bot's nonce lanes besides its own account (devnet-only keys)."""
        return ["0x" + Web3.keccak(text=f"keeper auction benchmark lane {self.name} {i}")
                .hex()[-64:] for i in range(LANES)]


@dataclass
class Stage:
    """The running devnet: anvil (no automine) and the builder in front of it."""

    anvil: Anvil
    builder: BuilderThread
    info: DevnetInfo  # rpc_url: the builder's endpoint 0; ws_url: anvil's

    def stop(self) -> None:
        self.builder.stop()
        self.anvil.stop()


def stage(bots: list[Bot], competitor: str | None, *, interval: float = 1.0) -> Stage:
    """The oracle devnet from its cache, the competitor funded (as the keeper), each
    keeper's flash executor deployed, then the builder in front."""
    anvil, info, _cached = start_oracle_devnet()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 60}))
        if competitor is not None:
            keeper = Account.from_key(DEVNET_LIQUIDATOR_KEY).address.lower()
            fund(w3, info, keeper, competitor, CAPITAL_USD)
        for bot in bots:
            deployed = deploy_flash_liquidator(
                w3, bot.address, Account.from_key(bot.key), aave_pool=info.aave_v3.pool,
                morpho=info.morpho_blue.morpho, max_fee_per_gas=5000 * GWEI, priority_fee=GWEI)
            bot.executor = deployed.address
            _lanes(w3, bot, deployed.address)
            # The devnet's WETH is a plain mintable ERC-20, not WETH9: the executor cannot
            # unwrap the bid out of the profit, so it pays it from an ether float it holds
            # (FlashLiquidator._payBid), here set directly; the profit stays in WETH.
            rpc(w3, "anvil_setBalance", deployed.address, hex(EXECUTOR_FLOAT))
        anvil = restart_for_builder(anvil)
    except BaseException:
        anvil.stop()
        raise
    try:
        builder = BuilderThread(anvil.rpc_url, interval=interval).start()
    except BaseException:
        anvil.stop()
        raise
    info = info.model_copy(update={"rpc_url": builder.urls[0], "ws_url": anvil.ws_url})
    return Stage(anvil, builder, info)


def _lanes(w3: Web3, bot: Bot, executor: str) -> None:
    """Fund each lane with gas and make it an operator of the bot's flash executor."""
    owner = Web3.to_checksum_address(bot.address)
    contract = w3.eth.contract(address=Web3.to_checksum_address(executor),
                               abi=compile_flash_liquidator().abi)
    deployer = Deployer(w3, owner)
    for key in bot.lane_keys:
        lane = Web3.to_checksum_address(Account.from_key(key).address)
        rpc(w3, "anvil_setBalance", lane, hex(100 * 10**18))
        deployer.send(contract.functions.setOperator(lane, True))


def keeper_config(info: DevnetInfo, bot: Bot, workdir: Path, *, builders: list[str],
                  monitoring_port: int, bundle_blocks: int = 3, bundles: bool = True) -> Path:
    """A keeper daemon's config for the auction: the v3.0 Aave market alone (the one the
    oracle network prices), its flash executor paying the bid to the builder, bundles to
    both builder endpoints, the intake on the hint stream and the builder's pool, and the
    prepared levels on the feeds the market reads. `bundles` False: the public path
    (eth_sendRawTransaction), for comparison."""
    network = info.oracle_network
    assert network is not None
    weth = info.tokens["WETH"].address
    min_profit = Decimal(5) / next(t.usd_price for t in DEFAULT_TOKENS if t.symbol == "WETH")
    feeds = "".join(
        f'[[execution.feeds]]\naddress = "{feed.read_by_market}"\n'
        f"deviation_bps = {info.feed_rules[s].deviation_bps}\n"
        f"heartbeat_seconds = {info.feed_rules[s].heartbeat}\n\n"
        for s, feed in network.feeds.items() if s in info.feed_rules)
    endpoints = "".join(f'[[execution.builders]]\nname = "devnet-{i}"\nurl = "{url}"\n\n'
                        for i, url in enumerate(builders))
    path = workdir / f"{bot.name}.toml"
    path.write_text(
        f'[chain]\nchain_id = {info.chain_id}\nhttp_urls = ["{info.rpc_url}"]\n'
        f'ws_url = "{info.ws_url}"\nblock_time_seconds = 1\n\n'
        f'[execution]\nmode = "live"\nquote_token = "{weth}"\n'
        f'min_profit_quote = "{min_profit}"\nmax_fee_per_gas_gwei = "5000"\n'
        f'priority_fee_gwei = "1"\nbid_share = "{bot.bid_share}"\n'
        f'journal = "{workdir / (bot.name + "-journal.sqlite")}"\n'
        f'flash_executor = "{bot.executor}"\n'
        + (f'submitter = "bundle"\nbundle_blocks = {bundle_blocks}\n\n{endpoints}'
           if bundles else "\n")
        + f"{feeds}"
        f'[intake]\npending = "poll"\npoll_interval_ms = 5\n'
        f'hint_urls = ["{info.rpc_url}/events"]\n\n'
        f'[monitoring]\nenabled = true\nhost = "127.0.0.1"\nport = {monitoring_port}\n\n'
        '[breakers]\nmax_gas_per_hour_eth = "1000"\n\n'
        f'[dex]\nuniswap_v2_factory = "{info.uniswap_v2.factory}"\n\n'
        f'[strategies.aave_v3]\naddresses_provider = "{info.aave_v3.addresses_provider}"\n')
    return path

