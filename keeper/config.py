"""The keeper's configuration: a TOML file layered under `KEEPER_*` environment variables.

`load_config(path)` reads the TOML file (default `keeper.toml`), lets the
environment override it (`KEEPER_` prefix, `__` between nested keys, e.g.
`KEEPER_EXECUTION__MODE=live`), and validates everything at once. Each
`[strategies.<name>]` section is validated by the model of the plugin with that
entry-point name (see `keeper.plugins`). Unknown keys anywhere are errors.
Every problem becomes one `ConfigError` line naming the file (with the line)
or the environment variable, and the dotted key.

The private key is accepted only from `KEEPER_ACCOUNT__PRIVATE_KEY`; a key in
the file is refused. Relative paths in the file are relative to the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_checksum_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from keeper import plugins, secrets
from keeper.breakers import BreakerLimits
from keeper.errors import ConfigError

DEFAULT_PATH = Path("keeper.toml")
ENV_PREFIX = "KEEPER_"
_HEX_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_RELATIVE_PATH_KEYS = (
    ("account", "keystore"),
    ("account", "password_file"),
    ("execution", "journal"),
)

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


class Section(BaseModel):
    """Base of every config section: immutable, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpEndpoint(Section):
    """One HTTP RPC endpoint and its own rate limit."""

    url: str
    requests_per_second: float | None = Field(default=None, gt=0)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url


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

    @model_validator(mode="after")
    def _one_source(self) -> Self:
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

    def load(self) -> LocalAccount | None:
        """The signing account (decrypting the keystore), or None if none is configured."""
        if self.private_key is not None:
            return secrets.account_from_key(self.private_key)
        if self.keystore is not None and self.password_file is not None:
            return secrets.account_from_keystore(self.keystore, self.password_file)
        return None


class ExecutionConfig(Section):
    """`[execution]`: how transactions are sent and when they are worth sending."""

    mode: Literal["live", "dry-run"] = "dry-run"
    quote_token: Address | None = None
    """The wrapped native token (WETH on Ethereum) in which profit and gas are counted."""
    min_profit_quote: Decimal = Field(default=Decimal("0.002"), ge=0)
    """Least expected net profit worth sending, in whole quote-token units."""
    max_fee_per_gas_gwei: Decimal = Field(default=Decimal("100"), gt=0)
    priority_fee_gwei: Decimal = Field(default=Decimal("1"), ge=0)
    journal: Path = Path("keeper-journal.sqlite")
    flash_executor: Address | None = None
    """A FlashLiquidator owned by the account (`keeper deploy-executor`): liquidations are
    then funded by flash loans, and the account needs no debt asset."""
    batch_max: int = Field(default=5, ge=1, le=20)
    """Most liquidations of one debt token sent in one flash-executor transaction (one base
    cost, one loan, one nonce; all or nothing). 1 sends each liquidation alone."""

    @model_validator(mode="after")
    def _fees(self) -> Self:
        if self.priority_fee_gwei > self.max_fee_per_gas_gwei:
            raise ValueError("priority_fee_gwei must not exceed max_fee_per_gas_gwei")
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


class DexConfig(Section):
    """`[dex]`: where collateral is priced and swapped back (Uniswap V2 pairs for now)."""

    uniswap_v2_factory: Address | None = None


ENGINE_KEYS = (("execution", "quote_token"), ("dex", "uniswap_v2_factory"))
"""Keys that are optional for `check-config` but required to run the engine."""


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


class KeeperConfig(BaseSettings):
    """The whole validated configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    chain: ChainConfig
    account: AccountConfig = Field(default_factory=AccountConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    dex: DexConfig = Field(default_factory=DexConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    breakers: BreakersConfig = Field(default_factory=BreakersConfig)
    strategies: StrategiesConfig = Field(default_factory=StrategiesConfig)
    _source: Path | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's data arrives as init arguments; the environment wins over it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _live_needs_key(self) -> Self:
        if self.execution.mode == "live" and not self.account.configured:
            raise ValueError(
                f"execution.mode = 'live' needs an account: set {secrets.PRIVATE_KEY_ENV} "
                "or account.keystore and account.password_file"
            )
        return self

    @property
    def source(self) -> Path | None:
        """The TOML file this config was read from."""
        return self._source

    def require_engine_keys(self, command: str) -> None:
        """Raise one `ConfigError` line naming the first `ENGINE_KEYS` entry that is unset."""
        for table, key in ENGINE_KEYS:
            if getattr(getattr(self, table), key) is None:
                where = str(self._source) if self._source is not None else "config"
                raise ConfigError(
                    f"{where}: missing required key {table}.{key} (needed by "
                    f"'keeper {command}'; see config.example.toml)"
                )

    def masked(self) -> dict[str, Any]:
        """A JSON-ready dict for display: secrets as `**********`, RPC URLs masked."""
        data: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        chain = data["chain"]
        for endpoint in chain["http_urls"]:
            endpoint["url"] = secrets.redact_url(endpoint["url"])
        if "ws_url" in chain:
            chain["ws_url"] = secrets.redact_url(chain["ws_url"])
        return data


def load_config(path: Path | str | None = None) -> KeeperConfig:
    """Read, layer and validate the config; every problem is one `ConfigError` line."""
    secrets.register_env_secrets()
    path = Path(path) if path is not None else DEFAULT_PATH
    text, data = read_toml(path)
    _refuse_file_key(data, path)
    _resolve_paths(data, path.parent)
    env = _env_keys()
    names = sorted(
        set(_table(data.get("strategies")))
        | {k[1] for k in env if len(k) > 1 and k[0] == "strategies"}
    )
    model = _with_strategies(names)
    try:
        config = model(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, text, env)) from None
    except SettingsError as exc:
        raise ConfigError(_describe_env_error(exc)) from None
    config._source = path
    return config


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and parsed TOML; missing, unreadable and malformed files are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {path} (pass --config PATH, or copy config.example.toml)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if message.endswith("(at end of document)"):
            last = len(text.splitlines()) or 1
            message = message.replace("(at end of document)", f"(at line {last}, end of file)")
        at = re.search(r"\(at line (\d+)", message)
        where = f"{path}:{at.group(1)}" if at else str(path)
        raise ConfigError(f"{where}: invalid TOML: {message}") from None
    return text, data


def _refuse_file_key(data: dict[str, Any], path: Path) -> None:
    account = data.get("account")
    if isinstance(account, dict) and "private_key" in account:
        if isinstance(account["private_key"], str):
            secrets.register_secret(account["private_key"])
        raise ConfigError(
            f"{path}: account.private_key must not be in the config file; set the "
            f"{secrets.PRIVATE_KEY_ENV} environment variable or use account.keystore "
            "with account.password_file"
        )


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for table, key in _RELATIVE_PATH_KEYS:
        section = data.get(table)
        if isinstance(section, dict) and isinstance(section.get(key), str):
            value = Path(section[key]).expanduser()
            section[key] = str(value if value.is_absolute() else base / value)


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _env_keys() -> set[tuple[str, ...]]:
    """Dotted keys set through the environment, e.g. ('execution', 'mode')."""
    prefix = ENV_PREFIX.lower()
    return {
        tuple(name.lower()[len(prefix) :].split("__"))
        for name in os.environ
        if name.lower().startswith(prefix)
    }


def _with_strategies(names: list[str]) -> type[KeeperConfig]:
    """KeeperConfig whose `strategies` has one optional field per configured plugin."""
    if not names:
        return KeeperConfig
    entries = plugins.installed()
    fields: dict[str, Any] = {}
    for name in names:
        plugin = plugins.load(name, entries)
        fields[name] = (plugin.config_model | None, None)
    strategies = create_model("Strategies", __base__=StrategiesConfig, **fields)
    return create_model(
        "KeeperConfig",
        __base__=KeeperConfig,
        strategies=(strategies, Field(default_factory=strategies)),
    )


def _describe(exc: ValidationError, path: Path, text: str, env: set[tuple[str, ...]]) -> str:
    errors = exc.errors()
    message = describe_error(errors[0], path, text, env)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return secrets.redact(message)


def _describe_env_error(exc: SettingsError) -> str:
    """pydantic-settings could not parse a variable (a list or table that is not JSON)."""
    field = re.search(r'field "(\w+)"', str(exc))
    prefix = ENV_PREFIX + (field.group(1).upper() if field else "")
    names = sorted(n.upper() for n in os.environ if n.upper().startswith(prefix))
    return secrets.redact(
        f"environment {', '.join(names) or prefix}: cannot parse the value; lists and tables "
        f"must be JSON, e.g. {ENV_PREFIX}CHAIN__HTTP_URLS='[\"https://rpc.example\"]'"
    )


def describe_error(error: ErrorDetails, path: Path, text: str, env: set[tuple[str, ...]]) -> str:
    """One line for one pydantic error: where (file:line or env var), dotted key, problem."""
    loc = error["loc"]
    keys = tuple(str(part) for part in _keys(loc))
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    from_env = next((k for k in sorted(env, key=len) if keys[: len(k)] == k and k), None)
    if from_env is not None:
        where = "environment " + ENV_PREFIX + "__".join(from_env).upper()
    else:
        line = _line_of(text, keys)
        where = f"{path}:{line}" if line else str(path)
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key {dotted}"
    if kind == "missing":
        return f"{where}: missing required key {dotted}"
    msg = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = ""
    if keys[:1] != ("account",) and isinstance(value, str | int | float | bool):
        text_value = repr(secrets.redact(value) if isinstance(value, str) else value)
        shown = f" (got {text_value[:60]}{'...' if len(text_value) > 60 else ''})"
    return f"{where}: {dotted or 'config'}: {msg}{shown}"


def _keys(loc: tuple[int | str, ...]) -> Iterator[int | str]:
    for part in loc:
        if isinstance(part, int):
            return
        yield part


def _line_of(text: str, keys: tuple[str, ...]) -> int | None:
    """Best-effort 1-based line of a dotted key in the TOML text (None if not found)."""
    if not keys:
        return None
    lines = text.splitlines()
    for depth in range(len(keys) - 1, -1, -1):
        table, key = keys[:depth], keys[depth]
        start = 0
        if table:
            header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, table)) + r"\s*\]")
            start = next((i + 1 for i, line in enumerate(lines) if header.match(line)), -1)
            if start < 0:
                continue
        assignment = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        own_header = re.compile(
            r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, (*table, key))) + r"\s*\]"
        )
        in_table = True  # still inside `table` (top level: before the first header)
        for i in range(start, len(lines)):
            if own_header.match(lines[i]) or (in_table and assignment.match(lines[i])):
                return i + 1
            if lines[i].lstrip().startswith("["):
                if table:
                    break
                in_table = False
    return None
