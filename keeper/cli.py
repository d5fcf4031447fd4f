"""The `keeper` console script: global options, the error wrapper and `check-config`.

Every command runs inside `KeeperGroup.invoke`, which turns a `KeeperError`
into one `keeper: error: ...` line on stderr and exit code 2 (75 for `run` when its
RPC does not answer at start: a supervisor restarts that), Ctrl-C into a
quiet exit 130, and any other exception into one `keeper: internal error`
line and exit 1 (`--debug` adds the traceback); a task group's failure is judged by
the one error inside it. Every line is redacted.

A command gets the loaded config with `@pass_config` (first argument) or
`current_config()`; `--config` is read lazily, so commands that need no
config (e.g. `devnet`) never touch it. Sub-groups in other modules are listed
in `LAZY_COMMANDS` and imported on first use, so they may import this module.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import sys
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

import click
import structlog
from rich.console import Console

from keeper import __version__
from keeper.config import DEFAULT_PATH, KeeperConfig, load_config
from keeper.errors import ChainMismatch, FatalError, KeeperError, RetryableError, RpcUnavailable
from keeper.log import LEVELS, LogFormat, configure_logging
from keeper.secrets import redact, redact_url, register_env_secrets

P = ParamSpec("P")
R = TypeVar("R")

RPC_TIMEOUT = 5.0
LAZY_COMMANDS = {
    "backtest": "keeper.backtest.cli:backtest",
    "devnet": "keeper.devnet.cli:devnet",
    "demo": "keeper.demo:demo",
    "deploy-executor": "keeper.deploy_executor:deploy_executor",
    "journal": "keeper.journal_report:journal",
    "record": "keeper.backtest.record:record",
    "risk": "keeper.risk:risk",
    "run": "keeper.run:run",
    "scan": "keeper.scan:scan",
}
"""Commands defined elsewhere: name -> "module:attribute", imported when first used."""

log = structlog.get_logger()


@dataclass
class AppState:
    """What the global options decided; `ctx.obj` of every command."""

    config_path: Path = DEFAULT_PATH
    debug: bool = False
    _config: KeeperConfig | None = field(default=None, repr=False)

    def config(self, path: Path | None = None) -> KeeperConfig:
        """The validated config (read once), from `path` or the global `--config`."""
        if path is not None and path != self.config_path:
            self.config_path, self._config = path, None
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def current_config() -> KeeperConfig:
    """The loaded config of the running command (loads it on first use)."""
    return click.get_current_context().ensure_object(AppState).config()


def pass_config(command: Callable[Concatenate[KeeperConfig, P], R]) -> Callable[P, R]:
    """Decorator: call the command with the loaded `KeeperConfig` as first argument."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return command(current_config(), *args, **kwargs)

    return wrapper


def _fail(message: str, code: int) -> NoReturn:
    click.echo(redact(" ".join(message.split())), err=True)
    raise click.exceptions.Exit(code)


class OneLineUsageError(click.ClickException, FatalError):
    """A bad option or argument, reported as one line (click's own shows the usage block)."""

    exit_code = 2

    def __init__(self, error: click.UsageError) -> None:
        where = error.ctx.command_path if error.ctx is not None else "keeper"
        super().__init__(f"{error.format_message()} (see '{where} --help')")

    def show(self, file: Any = None) -> None:
        click.echo(redact(f"keeper: error: {' '.join(self.format_message().split())}"), err=True)


class KeeperGroup(click.Group):
    """A click group that owns error reporting for all its (sub)commands."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise OneLineUsageError(exc) from None
        except BrokenPipeError:  # `keeper --help | head`: help is printed while parsing
            _quiet_broken_pipe()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return _sole_error(super().invoke, ctx)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except click.UsageError as exc:
            raise OneLineUsageError(exc) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except KeeperError as exc:
            if ctx.params.get("debug"):
                click.echo(redact(traceback.format_exc()), err=True, nl=False)
            _fail(f"keeper: error: {exc}", _exit_code(ctx, exc))
        except Exception as exc:
            if ctx.params.get("debug"):
                click.echo(redact(traceback.format_exc()), err=True, nl=False)
                _fail(f"keeper: internal error: {type(exc).__name__}: {exc}", 1)
            _fail(
                f"keeper: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for the traceback)",
                1,
            )

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            command = _import_command(LAZY_COMMANDS[cmd_name])
            self.add_command(command, cmd_name)
        if command is not None:
            _accept_config_option(command)
        return command


def _sole_error(invoke: Callable[[click.Context], Any], ctx: click.Context) -> Any:
    """`invoke(ctx)`; a task group's failure raised as the sole error in it (its own line)."""
    try:
        return invoke(ctx)
    except BaseExceptionGroup as group:
        sole: BaseException = group
        while isinstance(sole, BaseExceptionGroup) and len(sole.exceptions) == 1:
            sole = sole.exceptions[0]
        if isinstance(sole, BaseExceptionGroup):
            raise  # several errors: the group's line names it
        raise sole from group


EXIT_TEMPFAIL = 75
"""`keeper run` could not reach its chain at start (sysexits' EX_TEMPFAIL): a supervisor
restarts it, as it does not after exit 2 (bad input, which a restart cannot fix)."""


def _exit_code(ctx: click.Context, error: KeeperError) -> int:
    """2 for a `KeeperError`, except a daemon whose RPC failed at start: no endpoint
    answering while the node reboots is no reason for systemd to give up on it."""
    if ctx.invoked_subcommand == "run" and isinstance(error, RetryableError):
        return EXIT_TEMPFAIL
    return 2


def _quiet_broken_pipe() -> NoReturn:
    """stdout's reader went away (`keeper check-config | head`): end quietly, as Unix tools
    do (exit 141 = 128 + SIGPIPE). stdout is pointed at /dev/null first, so the
    interpreter's last flush cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass  # not a real file (a test runner's buffer): nothing will flush it
    finally:
        os.close(devnull)
    raise click.exceptions.Exit(141)


def _rich_broken_pipe(_console: Console) -> None:
    _quiet_broken_pipe()


# rich's consoles (scan, risk, journal, backtest tables) end a broken pipe with SystemExit(1)
# of their own; `on_broken_pipe` is rich's documented hook for another ending: the same one.
Console.on_broken_pipe = _rich_broken_pipe  # type: ignore[method-assign,assignment]


def _set_config_path(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        state = ctx.ensure_object(AppState)
        state.config_path, state._config = value, None


CONFIG_HELP = "TOML config file (default keeper.toml; also accepted before the command)."


def _accept_config_option(command: click.Command) -> None:
    """Give `command` (and a group's sub-commands) the global `--config` as its own option,
    so `keeper run --config x.toml` works and `keeper run --help` shows it."""
    if not any("--config" in p.opts for p in command.params):
        command.params.append(click.Option(
            ["--config", "_config_path"], type=click.Path(path_type=Path, dir_okay=False),
            default=None, expose_value=False, is_eager=True, callback=_set_config_path,
            help=CONFIG_HELP))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_config_option(sub)
        _accept_config_in_lazy_commands(command)


def _accept_config_in_lazy_commands(group: click.Group) -> None:
    """A group that finds a command only when it is named (`keeper backtest sweep`) holds
    none of them in `commands` beforehand: each gets `--config` as the group finds it."""
    if isinstance(group, KeeperGroup) or "get_command" in vars(group):
        return  # KeeperGroup does this itself; an instance already wrapped
    find = group.get_command

    def get_command(ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = find(ctx, cmd_name)
        if command is not None:
            _accept_config_option(command)
        return command

    vars(group)["get_command"] = get_command  # the instance's own, ahead of its class's


def _import_command(target: str) -> click.Command:
    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


@click.group(cls=KeeperGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_PATH,
    show_default=True,
    envvar="KEEPER_CONFIG",
    help="TOML config file (KEEPER_* environment variables override it).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
    help="auto: console on a terminal, JSON lines otherwise.",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(__version__, prog_name="keeper")
@click.pass_context
def main(
    ctx: click.Context, config_path: Path, log_format: LogFormat, log_level: str, debug: bool
) -> None:
    """keeper: a liquidation bot for EVM lending markets."""
    register_env_secrets()
    configure_logging(log_format, log_level)
    ctx.obj = AppState(config_path=config_path, debug=debug)


@main.command("check-config")
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--offline", is_flag=True, help="Do not contact the RPC endpoints.")
@click.pass_obj
def check_config(state: AppState, path: Path | None, offline: bool) -> None:
    """Validate the config (PATH or --config) and print it with secrets masked.

    Unless --offline, each HTTP endpoint must answer eth_chainId with chain.chain_id. With
    `[chains.<name>]` tables, every chain is checked and printed (its whole config).
    """
    config = state.config(path)
    for name, each in (config.chains or {"": config}).items():
        account = each.account.load()
        if not offline:
            for endpoint in each.chain.http_urls:
                check_chain_id(endpoint.url, each.chain.chain_id)
            asyncio.run(_check_addresses(each))
        click.echo(f"# config: {each.source}" + (f", chain {name}" if name else ""))
        click.echo(f"# account: {account.address if account else 'none configured'}")
        checked = "not checked (--offline)" if offline else "chain id verified; contracts verified"
        click.echo(f"# rpc: {checked}")
        click.echo(redact(render_toml(each.masked())))


async def _check_addresses(config: KeeperConfig) -> None:
    """Every configured address has code and its interface (keeper/addresses.py)."""
    from keeper.addresses import check_addresses  # noqa: PLC0415 (keeps the CLI's import light)
    from keeper.chain.http import HttpRpc  # noqa: PLC0415

    endpoint = config.chain.http_urls[0]
    rpc = HttpRpc(endpoint.url, timeout=RPC_TIMEOUT)
    try:
        await check_addresses(rpc, config, config.chain.chain_id)
    finally:
        await rpc.aclose()


def check_chain_id(url: str, expected: int, timeout: float = RPC_TIMEOUT) -> None:
    """Raise RpcUnavailable or ChainMismatch unless `url` answers eth_chainId == expected."""
    shown = redact_url(url)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.loads(response.read())
        chain_id = int(reply["result"], 16)
    except urllib.error.HTTPError as exc:
        raise RpcUnavailable(f"RPC {shown} answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise RpcUnavailable(f"RPC {shown} is unreachable: {exc.reason}") from None
    except TimeoutError:
        raise RpcUnavailable(f"RPC {shown} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise RpcUnavailable(f"RPC {shown} is unreachable: {exc}") from None
    except (ValueError, KeyError, TypeError):
        raise RpcUnavailable(f"RPC {shown} gave no valid eth_chainId answer") from None
    if chain_id != expected:
        raise ChainMismatch(
            f"RPC {shown} serves chain id {chain_id}, but chain.chain_id is {expected}"
        )
    log.debug("rpc_ok", url=shown, chain_id=chain_id)


def render_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for the masked config (scalars, lists and nested tables)."""
    return "\n\n".join(_toml_blocks(data, ()))


def _toml_blocks(data: Mapping[str, Any], prefix: tuple[str, ...]) -> list[str]:
    scalars = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not _is_table(v)]
    blocks = [f"[{'.'.join(prefix)}]", *scalars] if prefix else scalars
    out = (
        ["\n".join(blocks)]
        if scalars or (prefix and not any(map(_is_table, data.values())))
        else []
    )
    for key, value in data.items():
        if _is_table(value):
            out += _toml_blocks(value, (*prefix, key))
    return out


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


if __name__ == "__main__":
    main()
