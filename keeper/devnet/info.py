"""The shape of `devnet.json`: what a deployed devnet holds and where.

Later tools and tests read this file; its shape is part of the public
interface (see the README).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keeper.devnet.maker_info import MakerInfo
from keeper.errors import InputFileError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Accounts(_Frozen):
    deployer: str
    liquidator: str


class TokenInfo(_Frozen):
    address: str
    decimals: int


class AaveV3Info(_Frozen):
    pool: str
    addresses_provider: str
    oracle: str
    data_provider: str
    pool_configurator: str
    acl_manager: str


class AaveV36Info(AaveV3Info):
    """The devnet's second Aave market, v3.6 (aave-v3-origin): the v3.0 fields and more."""

    version: str  # the aave-v3-origin package version, e.g. "3.6.0"
    interest_rate_strategy: str  # v3.6 has one strategy contract for every reserve
    price_oracle_sentinel: str
    sequencer_oracle: str  # the sentinel's feed: answer 0 = up
    mock_stable_debt: str  # getReserveData's stableDebtTokenAddress, the same for every reserve
    tokens: dict[str, TokenInfo]  # every listed reserve (the devnet tokens plus WSTETH)
    price_sources: dict[str, str]  # symbol -> the source AaveOracle reads
    eac_proxies: dict[str, str]  # symbol -> Chainlink EACAggregatorProxy (switchable)
    ratio_adapters: dict[str, str]  # symbol -> RatioCappedAdapter (emits no AnswerUpdated)
    emode_categories: dict[int, str]  # id -> label
    grace_period_reserve: str  # symbol put in a liquidation grace period at deploy
    borrowers: dict[str, str]  # shape name -> the seeded borrower of that shape


class UniswapV2Info(_Frozen):
    factory: str
    router: str
    pairs: dict[str, str]


class UniswapV3Info(_Frozen):
    factory: str
    router: str  # SwapRouter
    quoter: str  # QuoterV2
    position_manager: str  # NonfungiblePositionManager (owns the devnet's positions)
    pools: dict[str, str]  # "WETH/USDC/500" -> pool


class MorphoMarketInfo(_Frozen):
    id: str
    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int


class MorphoBlueInfo(_Frozen):
    morpho: str
    markets: list[MorphoMarketInfo]


class FeedRuleInfo(_Frozen):
    """When a devnet feed is meant to post (a Chainlink feed's off-chain configuration):
    on a move of `deviation_bps` from its last answer, or after `heartbeat` seconds."""

    deviation_bps: int
    heartbeat: int


class OracleFeedInfo(_Frozen):
    """One OCR2 feed of the oracle network (keeper.devnet.oracles.market): the aggregator
    that emits `AnswerUpdated` and the proxy in front of it; for an SVR feed, the secondary
    pair the lending market reads too, updated privately through the builder."""

    aggregator: str
    proxy: str
    config_digest: str
    secondary_aggregator: str | None = None
    secondary_proxy: str | None = None
    secondary_config_digest: str | None = None
    svr_cutoff_seconds: float | None = None

    @property
    def read_by_market(self) -> str:
        """The aggregator whose answer the market reads (the secondary one for SVR)."""
        return self.secondary_aggregator or self.aggregator


class OracleNetworkInfo(_Frozen):
    """The oracle network pricing `markets` (`keeper devnet --builder --oracles`)."""

    feeds: dict[str, OracleFeedInfo]  # by token symbol
    markets: list[str]  # the Aave markets whose AaveOracle reads the network's proxies


class DevnetInfo(_Frozen):
    rpc_url: str
    ws_url: str
    chain_id: int
    block: int
    accounts: Accounts
    tokens: dict[str, TokenInfo]
    feeds: dict[str, str]
    aave_v3: AaveV3Info
    uniswap_v2: UniswapV2Info
    morpho_blue: MorphoBlueInfo
    uniswap_v3: UniswapV3Info | None = None  # absent from devnet files written before it
    aave_v3_6: AaveV36Info | None = None  # the v3.6 market; absent from older devnet files
    maker: MakerInfo | None = None  # the Maker profile (keeper devnet --maker) only
    # By token symbol, like `feeds`: what the prepared liquidations plan for.
    feed_rules: dict[str, FeedRuleInfo] = Field(default_factory=dict)
    oracle_network: OracleNetworkInfo | None = None  # OCR2 feeds, with --oracles only

    def aave_markets(self) -> dict[str, AaveV3Info]:
        """Every Aave market on the devnet by name: "aave_v3" (v3.0) and "aave_v3_6"."""
        markets: dict[str, AaveV3Info] = {"aave_v3": self.aave_v3}
        if self.aave_v3_6 is not None:
            markets["aave_v3_6"] = self.aave_v3_6
        return markets

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> DevnetInfo:
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise InputFileError(f"{path}: devnet file not found") from None
        except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputFileError(f"{path}: not a devnet file ({_first_problem(exc)})") from None


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "top level"
        return f"{where}: {err['msg']}"
    return str(exc).splitlines()[0]
