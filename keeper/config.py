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

The section models are in keeper/config_sections.py and the one-line messages in
keeper/config_messages.py; this module re-exports their public names, so
`from keeper.config import KeeperConfig, Address, Section, ...` is the one import.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, create_model
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from keeper import plugins, secrets
from keeper.config_messages import (
    ENV_PREFIX,
    describe_env_error,
    describe_error,
    describe_validation_error,
)
from keeper.config_sections import (
    AccountConfig,
    Address,
    AlertsConfig,
    BreakersConfig,
    ChainConfig,
    DexConfig,
    ExecutionConfig,
    HttpEndpoint,
    Interface,
    MonitoringConfig,
    Section,
    StrategiesConfig,
)
from keeper.errors import ConfigError
from keeper.ha.config import HaConfig
from keeper.intake.config import IntakeConfig

__all__ = [
    "DEFAULT_PATH",
    "ENGINE_KEYS",
    "ENV_PREFIX",
    "AccountConfig",
    "Address",
    "AlertsConfig",
    "BreakersConfig",
    "ChainConfig",
    "DexConfig",
    "ExecutionConfig",
    "HttpEndpoint",
    "Interface",
    "KeeperConfig",
    "MonitoringConfig",
    "Section",
    "StrategiesConfig",
    "describe_error",
    "load_config",
    "read_toml",
]

DEFAULT_PATH = Path("keeper.toml")
_RELATIVE_PATH_KEYS = (
    ("account", "keystore"),
    ("account", "password_file"),
    ("execution", "journal"),
)

ENGINE_KEYS = (("execution", "quote_token"), ("dex", "uniswap_v2_factory"))
"""Keys that are optional for `check-config` but required to run the engine."""


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
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    strategies: StrategiesConfig = Field(default_factory=StrategiesConfig)
    ha: HaConfig | None = None
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    _source: Path | None = PrivateAttr(default=None)
    _chains: dict[str, KeeperConfig] = PrivateAttr(default_factory=dict)

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

    @property
    def source(self) -> Path | None:
        """The TOML file this config was read from."""
        return self._source

    @property
    def chains(self) -> dict[str, KeeperConfig]:
        """With `[chains.<name>]` tables (keeper/chains.py), each chain's whole config by
        name (this one is the first); empty for a file with one `[chain]`."""
        return dict(self._chains)

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
        for builder in data["execution"].get("builders", []):  # a relay URL may hold a key
            builder["url"] = secrets.redact_url(builder["url"])
        return data


def load_config(path: Path | str | None = None) -> KeeperConfig:
    """Read, layer and validate the config; every problem is one `ConfigError` line."""
    secrets.register_env_secrets()
    path = Path(path) if path is not None else DEFAULT_PATH
    text, data = read_toml(path)
    if "chains" in data:  # several chains in one daemon: each validated as a whole config
        from keeper.chains import load_chains  # noqa: PLC0415 (it builds on this module)

        return load_chains(path, text, data)
    return validate_config(data, path, text)


def validate_config(
    data: dict[str, Any], path: Path, text: str,
    relocate: Callable[[tuple[int | str, ...]], tuple[int | str, ...]] | None = None,
) -> KeeperConfig:
    """`data` (the file's tables) layered under the environment and validated; `relocate`
    maps a key's location to where the file holds it (a `[chains.<name>]` table's keys)."""
    _refuse_file_key(data, path)
    _resolve_paths(data, path.parent)
    env = _env_keys()
    names = sorted(
        set(_table(data.get("strategies")))
        | {k[1] for k in env if len(k) > 1 and k[0] == "strategies"}
    )
    plugin_of = _plugins_of(data, env)
    _check_env_strategies(set(_table(data.get("strategies"))), plugin_of)
    model = _with_strategies(names, plugin_of)
    check_env_names(model)
    try:
        config = model(**data)
    except ValidationError as exc:
        if relocate is not None:
            first = exc.errors()[0]
            first["loc"] = relocate(first["loc"])
            more = len(exc.errors()) - 1
            raise ConfigError(secrets.redact(
                describe_error(first, path, text, env)
                + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""))
            ) from None
        raise ConfigError(describe_validation_error(exc, path, text, env)) from None
    except SettingsError as exc:
        raise ConfigError(describe_env_error(exc)) from None
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
    for key, env in (("searcher_key", secrets.SEARCHER_KEY_ENV),
                     ("lane_keys", secrets.LANE_KEYS_ENV)):
        if isinstance(account, dict) and key in account:
            for value in account[key] if isinstance(account[key], list) else [account[key]]:
                secrets.register_secret(value if isinstance(value, str) else None)
            raise ConfigError(f"{path}: account.{key} must not be in the config file; set "
                              f"the {env} environment variable")


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


def check_env_names(model: type[BaseModel]) -> None:
    """A `ConfigError` for the first variable shaped like a setting (`KEEPER_<SECTION>__<KEY>`)
    that names no key of `model`: pydantic-settings would silently ignore a misspelt
    section (`KEEPER_EXECUTON__MODE=live`). Other `KEEPER_*` variables (KEEPER_CONFIG,
    KEEPER_HOME, ...) have no `__` and are not settings."""
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or "__" not in upper:
            continue
        parts = upper[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] == "chains":
            raise ConfigError(  # not a typo of KEEPER_CHAIN__...: a table the file alone holds
                f"environment {name}: [chains.<name>] tables are read from the file only; a "
                f"KEEPER_* setting applies to every chain ({ENV_PREFIX}"
                f"{'__'.join(parts[2:]).upper() or '<SECTION>__<KEY>'})"
            )
        current: type[BaseModel] = model
        for depth, part in enumerate(parts):
            fields = current.model_fields
            if part not in fields:
                dotted = ".".join(parts[: depth + 1])
                close = difflib.get_close_matches(part, list(fields), n=1)
                hint = ""
                if close:
                    fixed = [*parts[:depth], close[0], *parts[depth + 1 :]]
                    hint = f"; did you mean {ENV_PREFIX}{'__'.join(fixed).upper()}?"
                raise ConfigError(
                    f"environment {name}: unknown key {dotted} (no such setting{hint})"
                )
            sub = _model_of(fields[part].annotation)
            if sub is None:
                break
            current = sub


def _check_env_strategies(in_file: set[str], plugin_of: dict[str, str]) -> None:
    """A `ConfigError` naming the variable when `KEEPER_STRATEGIES__<NAME>__...` names a
    strategy that is neither in the file nor an installed plugin (a misspelt name): the
    plugin loader's own line would blame the file's [strategies]."""
    installed = plugins.installed()
    for name in sorted(os.environ):
        parts = name.lower().removeprefix(ENV_PREFIX.lower()).split("__")
        if not name.upper().startswith(ENV_PREFIX) or len(parts) < 2 or parts[0] != "strategies":
            continue
        strategy = parts[1]
        if strategy in in_file or strategy in plugin_of or strategy in installed:
            continue
        close = difflib.get_close_matches(strategy, sorted({*installed, *in_file}), n=1)
        fixed = "__".join(["strategies", *close[:1], *parts[2:]]).upper()
        hint = f"; did you mean {ENV_PREFIX}{fixed}?" if close else ""
        raise ConfigError(
            f"environment {name}: unknown strategy {strategy} (not in the file's [strategies] "
            f"and no such plugin; installed: {', '.join(installed) or 'none'}{hint})"
        )


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a field's annotation (`Model` or `Model | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _plugins_of(data: dict[str, Any], env: set[tuple[str, ...]]) -> dict[str, str]:
    """Strategy section name -> the plugin it names with `plugin = "..."`, when it names one.

    A section runs the plugin of its own name unless it says otherwise, so one plugin can
    run several instances: `[strategies.aave_v3_6]` with `plugin = "aave_v3"` is a second
    Aave market beside `[strategies.aave_v3]`.
    """
    out: dict[str, str] = {}
    for name, section in _table(data.get("strategies")).items():
        if isinstance(section, dict) and isinstance(section.get("plugin"), str):
            out[name] = section["plugin"]
    wanted = {key for key in env if len(key) == 3 and key[0] == "strategies" and key[2] == "plugin"}
    for variable, value in os.environ.items():
        key = tuple(variable.lower().removeprefix(ENV_PREFIX.lower()).split("__"))
        if variable.lower().startswith(ENV_PREFIX.lower()) and key in wanted:
            out[key[1]] = value
    return out


def _instance_model(model: type[BaseModel], plugin: str) -> type[BaseModel]:
    """`model` plus the `plugin` key naming the plugin (an instance's section)."""
    named: Any = typing.Literal[plugin]  # a Literal built at run time: mypy cannot type it
    instance: type[BaseModel] = create_model(model.__name__, __base__=model, plugin=(named, plugin))
    return instance


def _with_strategies(
    names: list[str], plugin_of: dict[str, str] | None = None
) -> type[KeeperConfig]:
    """KeeperConfig whose `strategies` has one optional field per configured section."""
    if not names:
        return KeeperConfig
    entries = plugins.installed()
    fields: dict[str, Any] = {}
    for name in names:
        plugin_name = (plugin_of or {}).get(name)
        plugin = plugins.load(plugin_name or name, entries)
        model = plugin.config_model
        if plugin_name is not None:
            model = _instance_model(model, plugin.name)
        fields[name] = (model | None, None)
    strategies = create_model("Strategies", __base__=StrategiesConfig, **fields)
    return create_model(
        "KeeperConfig",
        __base__=KeeperConfig,
        strategies=(strategies, Field(default_factory=strategies)),
    )
