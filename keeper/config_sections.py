"""The sections of the keeper's configuration (`[chain]`, `[account]`, `[execution]`, ...).

Each section is an immutable pydantic model whose unknown keys are errors (`Section`);
`Address` validates and checksums an address. A strategy plugin's own section derives from
`Section` too. The whole configuration, its loading and its messages are in keeper/config.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_checksum_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from keeper import secrets
from keeper.breakers import BreakerLimits

_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

M = TypeVar("M", bound=BaseModel)


def _checksum(value: str) -> str:
    if not _HEX_ADDRESS.match(value):
        raise ValueError("must be a 20-byte hex address (0x followed by 40 hex digits)")
    mixed_case = value[2:] != value[2:].lower() and value[2:] != value[2:].upper()
    if mixed_case and not is_checksum_address(value):
        raise ValueError("has a bad EIP-55 checksum (a typo?); check the address")
    return str(to_checksum_address(value))


Address = Annotated[str, AfterValidator(_checksum)]
"""A 20-byte hex address, normalized to its EIP-55 checksum form."""


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return url


HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""An http:// or https:// URL (an RPC endpoint, a builder)."""


@dataclass(frozen=True)
class Interface:
    """What contract an address key must name, checked at start-up (keeper/addresses.py):
    `call` (a view function's signature, no arguments unless `args` holds their ABI
    encoding) must answer at least one word. `Annotated[Address, Interface(...)]`."""

    what: str  # "an ERC-20 token", named in the error line
    call: str  # "decimals()"
    args: str = ""  # hex, the ABI-encoded arguments of `call`


class Section(BaseModel):
    """Base of every config section: immutable, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpEndpoint(Section):
    """One HTTP RPC endpoint and its own rate limit."""

    url: HttpUrl
    requests_per_second: float | None = Field(default=None, gt=0)


class ChainConfig(Section):
    """`[chain]`: which chain and how to reach it."""

    chain_id: int = Field(gt=0)
    ws_url: str | None = None
    http_urls: list[HttpEndpoint] = Field(min_length=1)
    requests_per_second: float | None = Field(default=None, gt=0)
    request_timeout_seconds: float = Field(default=20.0, gt=0)
    """How long one HTTP request (a batch counts as one) may take before it is resent to
    the next endpoint (a cold start sends batches of up to 1,000 calls)."""
    block_time_seconds: float = Field(default=12.0, gt=0)
    """The chain's block time: an endpoint whose head has not moved for max(3 of these,
    1 s) while another's has is failed over."""

    @model_validator(mode="before")
    @classmethod
    def _endpoints(cls, data: Any) -> Any:
        """Plain URL strings become endpoints; the section's rate limit is their default."""
        if not isinstance(data, dict) or not isinstance(data.get("http_urls"), list):
            return data
        default = data.get("requests_per_second")
        endpoints: list[Any] = []
        for item in data["http_urls"]:
            endpoint = {"url": item} if isinstance(item, str) else item
            if isinstance(endpoint, dict) and default is not None:
                endpoint = {"requests_per_second": default, **endpoint}
            endpoints.append(endpoint)
        return {**data, "http_urls": endpoints}

    @field_validator("ws_url")
    @classmethod
    def _ws(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return url


class AccountConfig(Section):
    """`[account]`: the key comes from the environment, or from a keystore and password file."""

    private_key: SecretStr | None = None
    keystore: Path | None = None
    password_file: Path | None = None
    searcher_key: SecretStr | None = None
    """The identity that signs bundle requests (X-Flashbots-Signature; it holds no funds and
    signs no transaction). Environment only. None: a new random identity each start."""
    lane_keys: list[SecretStr] = Field(default_factory=list)
    """Extra signing accounts, one nonce lane each (bundle mode), as a JSON list in the
    environment only; each must be an operator of the flash executor."""

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        for key in (self.searcher_key, *self.lane_keys):
            secrets.register_secret(key)
        # Checked here, not only when bundle mode signs with them: a bad one is check-config's
        # line too, and a raised ConfigError passes through pydantic as it is.
        if self.searcher_key is not None:
            secrets.check_key(self.searcher_key, secrets.SEARCHER_KEY_ENV)
        for index, key in enumerate(self.lane_keys):
            secrets.check_key(key, f"{secrets.LANE_KEYS_ENV}[{index}]")
        if self.private_key is not None:
            secrets.register_secret(self.private_key)
            if self.keystore is not None:
                raise ValueError(
                    f"set either {secrets.PRIVATE_KEY_ENV} or account.keystore, not both"
                )
        if self.keystore is not None and self.password_file is None:
            raise ValueError("account.keystore needs account.password_file")
        if self.password_file is not None and self.keystore is None:
            raise ValueError("account.password_file is set but account.keystore is not")
        return self

    @property
    def configured(self) -> bool:
        return self.private_key is not None or self.keystore is not None

    def searcher(self) -> LocalAccount:
        """The bundle requests' signing identity (a fresh random one when none is set)."""
        if self.searcher_key is None:
            made: LocalAccount = Account.create()
            secrets.register_secret(bytes(made.key))
            return made
        return secrets.account_from_key(self.searcher_key, secrets.SEARCHER_KEY_ENV)

    def lanes(self) -> list[LocalAccount]:
        """The nonce lanes' accounts besides the main one (lanes 1, 2, ...)."""
        return [secrets.account_from_key(key, secrets.LANE_KEYS_ENV) for key in self.lane_keys]

    def load(self) -> LocalAccount | None:
        """The signing account (decrypting the keystore), or None if none is configured."""
        if self.private_key is not None:
            return secrets.account_from_key(self.private_key)
        if self.keystore is not None and self.password_file is not None:
            return secrets.account_from_keystore(self.keystore, self.password_file)
        return None


class BuilderConfig(Section):
    """One `[[execution.builders]]` entry: a block builder or relay taking bundles."""

    name: str = Field(min_length=1)
    url: HttpUrl


class FeedRuleConfig(Section):
    """One `[[execution.feeds]]` entry: when a price feed posts a new answer (its off-chain
    configuration: Chainlink's data-feeds pages list each feed's deviation and heartbeat)."""

    address: Annotated[
        Address, Interface("a Chainlink-style price feed aggregator", "latestAnswer()")]
    """The contract that emits the feed's `AnswerUpdated` (a proxy's current aggregator)."""
    deviation_bps: int = Field(ge=1, le=5_000)
    heartbeat_seconds: int = Field(default=3600, ge=1)


class ExecutionConfig(Section):
    """`[execution]`: how transactions are sent and when they are worth sending."""

    mode: Literal["live", "dry-run"] = "dry-run"
    quote_token: Annotated[Address, Interface("an ERC-20 token", "decimals()")] | None = None
    """The wrapped native token (WETH on Ethereum) in which profit and gas are counted."""
    min_profit_quote: Decimal = Field(default=Decimal("0.002"), ge=0)
    """Least expected net profit worth sending, in whole quote-token units."""
    max_fee_per_gas_gwei: Decimal = Field(default=Decimal("100"), gt=0)
    priority_fee_gwei: Decimal = Field(default=Decimal("1"), ge=0)
    journal: Path = Path("keeper-journal.sqlite")
    flash_executor: Annotated[Address, Interface("a FlashLiquidator", "owner()")] | None = None
    """A FlashLiquidator owned by the account (`keeper deploy-executor`): liquidations are
    then funded by flash loans, and the account needs no debt asset."""
    simulate: Literal["alongside", "before"] = "alongside"
    """When each send's simulation (`eth_estimateGas` at the ranked block) runs:
    "alongside" signs and broadcasts without waiting for it (the gas limit is the ranked or
    learned figure with its margin; a failure before the broadcast drops the send, one
    after it is logged and the send withdrawn if still pending); "before" waits for it
    and never sends what fails it."""
    batch_max: int = Field(default=5, ge=1, le=20)
    """Most liquidations of one debt token sent in one flash-executor transaction (one base
    cost, one loan, one nonce; all or nothing). 1 sends each liquidation alone."""
    bid_share: Decimal = Field(default=Decimal("0.25"), ge=0, le=1)
    """Share of a liquidation's expected profit (before the tip) offered as its priority
    fee, at least `priority_fee_gwei`, at most the fee cap; ranking counts it as a cost.
    In blocks ordered by fee it decides who liquidates first; 0 pays the fixed tip."""
    bid_share_by_strategy: dict[str, Decimal] = Field(default_factory=dict)
    """Per-strategy overrides of `bid_share`, e.g. `{ morpho_blue = 0.5 }`."""
    feeds: list[FeedRuleConfig] = Field(default_factory=list)
    """Price feeds whose next answer is prepared for: after each block, the liquidations it
    would open 1 .. `prepared_levels` deviations away (each way; a quarter of a deviation
    apart between 1 and 2) are sized and ranked, and
    sent the moment the feed's log arrives (before its block is processed)."""
    prepared_levels: int = Field(default=8, ge=0, le=32)
    send_deadline_blocks: Decimal = Field(default=Decimal("0.95"), ge=0)
    """A public send valued at a head is not issued later than this many block times
    (`chain.block_time_seconds`) after the head was sealed (read from when it was heard
    and from the chain's rhythm, keeper/execution/staleness.py): the next block is most likely
    mined without it, and it would land behind what that block posted, unheard (a feed's
    rise). It is left to the next step's ranking. 0: no deadline. Bundles have none."""
    submitter: Literal["public", "bundle"] = "public"
    """How liquidations reach a block: "public" broadcasts them (eth_sendRawTransaction);
    "bundle" sends each as a private bundle to every `builders` entry, the bid paid to
    block.coinbase by the flash executor (docs/execution.md)."""
    builders: list[BuilderConfig] = Field(default_factory=list)
    bundle_blocks: int = Field(default=3, ge=1, le=25)
    """A bundle targets the next block and this many - 1 after it; one not included by then
    is sent again (same bytes) while its position is still liquidatable."""

    @model_validator(mode="after")
    def _fees(self) -> Self:
        if self.priority_fee_gwei > self.max_fee_per_gas_gwei:
            raise ValueError("priority_fee_gwei must not exceed max_fee_per_gas_gwei")
        for name, share in self.bid_share_by_strategy.items():
            if not 0 <= share <= 1:
                raise ValueError(f"bid_share_by_strategy.{name} must be within [0, 1]")
        if self.submitter == "bundle" and not self.builders:
            raise ValueError('submitter = "bundle" needs at least one [[execution.builders]]')
        names = [b.name for b in self.builders]
        if len(set(names)) != len(names):
            raise ValueError("each [[execution.builders]] entry needs its own name")
        return self


class MonitoringConfig(Section):
    """`[monitoring]`: the HTTP server of /metrics (Prometheus) and /health."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9469, ge=0, le=65535)
    """0 picks a free port (the bound one is logged)."""
    stall_seconds: float = Field(default=60, gt=0)
    """/health is failing when no new head arrived for this long."""
    max_head_lag_seconds: float | None = Field(default=None, gt=0)
    """/health is failing when the newest head's timestamp is this far behind the clock."""
    status_every_blocks: int = Field(default=50, ge=0)
    """The daemon logs a status line (head, tracked, at risk, in flight, this run's PnL)
    every this many blocks; 0: never."""


AlertKind = Literal["breaker_tripped", "stalled_head", "low_balance", "liquidation_confirmed"]
ALERT_KINDS: tuple[AlertKind, ...] = ("breaker_tripped", "stalled_head", "low_balance",
                                      "liquidation_confirmed")


class AlertsConfig(Section):
    """`[alerts]`: optional webhooks that get a JSON POST per alert (keeper/alerts.py).
    The URLs are secrets: never logged, masked by `check-config`."""

    webhook_urls: list[SecretStr] = Field(default_factory=list)
    events: tuple[AlertKind, ...] = ALERT_KINDS
    """Which alerts to send (default: all four)."""
    timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("webhook_urls")
    @classmethod
    def _urls(cls, urls: list[SecretStr]) -> list[SecretStr]:
        for url in urls:
            secrets.register_secret(url)
            if not url.get_secret_value().startswith(("http://", "https://")):
                raise ValueError("each webhook URL must start with http:// or https://")
        return urls


class BreakersConfig(Section):
    """`[breakers]`: when to halt sending (the keeper keeps watching); 0 disables one."""

    max_consecutive_reverts: int = Field(default=3, ge=0)
    max_gas_per_hour_eth: Decimal = Field(default=Decimal("1"), ge=0)
    """Gas paid in the last hour (wall clock), in whole native tokens."""
    min_balance_eth: Decimal = Field(default=Decimal("0.05"), ge=0)
    """The sending account's native balance floor, in whole native tokens."""

    def limits(self) -> BreakerLimits:
        return BreakerLimits.from_eth(
            self.max_consecutive_reverts or None,
            self.max_gas_per_hour_eth or None,
            self.min_balance_eth or None,
        )


class VenueConfig(Section):
    """One `[[dex.venues]]` entry: a venue beside the Uniswap V2 pairs, by kind."""

    kind: Literal["uniswap_v3"]
    factory: Annotated[Address, Interface("a Uniswap V3 factory", "feeAmountTickSpacing(uint24)",
                                          f"{3000:064x}")]
    # Not read by the keeper (its quotes are local); for checks.
    quoter: Annotated[Address, Interface("a Uniswap V3 QuoterV2", "factory()")] | None = None
    fee_tiers: tuple[int, ...] = (100, 500, 3000, 10000)

    @field_validator("fee_tiers")
    @classmethod
    def _tiers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 0 < fee < 1_000_000 for fee in value):
            raise ValueError("must list fees in pips, each between 1 and 999999")
        return value


class DexConfig(Section):
    """`[dex]`: where collateral is priced and swapped back: the Uniswap V2 pairs of
    `uniswap_v2_factory`, and the venues of `[[dex.venues]]` (keeper.dex.venue)."""

    uniswap_v2_factory: Annotated[
        Address, Interface("a Uniswap V2 factory", "allPairsLength()")] | None = None
    venues: tuple[VenueConfig, ...] = ()


class StrategiesConfig(Section):
    """`[strategies]`: one field per configured plugin, added when the config is loaded."""

    def sections(self) -> dict[str, BaseModel]:
        """Each configured strategy's validated section, by plugin name."""
        return {name: value for name, value in self if isinstance(value, BaseModel)}

    def section(self, name: str, model: type[M]) -> M | None:
        """The section of strategy `name` as `model`, or None if it is not configured."""
        value = getattr(self, name, None)
        if value is None:
            return None
        if not isinstance(value, model):
            raise TypeError(f"strategies.{name} is a {type(value).__name__}, not {model.__name__}")
        return value
