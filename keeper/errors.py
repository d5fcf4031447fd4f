"""The keeper's error tree: every exception class of keeper/ and strategies/ derives from
`KeeperError`. The classes defined here are the tree's trunk; the leaves that belong to one
module live there (the module is named in brackets).

KeeperError
├── FatalError              stop: the input or an invariant is wrong; retrying cannot help
│   ├── ConfigError         bad config file, key, value, keystore or password (CLI exit 2)
│   ├── ChainMismatch       the RPC serves another chain than `chain.chain_id` (CLI exit 2)
│   ├── InputFileError      a malformed file given on the command line (CLI exit 2)
│   ├── DevnetError         the local devnet could not be started or deployed
│   ├── OneLineUsageError   a bad option or argument (keeper.cli; also a click.ClickException,
│   │                       so click reports it, as one line, exit 2)
│   ├── BacktestUsageError  a bad `keeper backtest` option (keeper.backtest.cli)
│   ├── BacktestError       a block or transaction cannot be replayed (keeper.backtest.history)
│   ├── UniswapV2Error      the mirrored pair code would revert (keeper.dex.uniswap_v2)
│   ├── UniswapV3Error      the mirrored pool math would revert (keeper.dex.v3_math)
│   ├── UniswapV3Error      the mirrored pool or quoter code would revert (keeper.dex.v3_math)
│   ├── FlashPlanError      no flash plan for an opportunity (keeper.execution.flash)
│   ├── ForkError           the dry-run fork cannot be started or moved (keeper.execution.fork)
│   ├── ExecutorDeployError the FlashLiquidator's deploy failed (keeper.deploy_executor)
│   └── JournalStateError   a journal transition the state does not allow
│                           (keeper.execution.journal)
├── RetryableError          the same call may succeed later (the engine retries the block);
│   │                       failover moves on to the next endpoint on any of these
│   ├── RpcUnavailable      transport: no connection, timeout, HTTP 5xx or 429 (at start-up
│   │                       the CLI exits 2; `keeper run` exits 75, to be restarted)
│   ├── MalformedAnswer     the endpoint answered, but not a JSON-RPC answer to what was
│   │                       asked: a body that is not JSON or is empty, a batch answer that is
│   │                       not a list, a batch item missing, an item with a wrong id, an item
│   │                       with neither result nor error
│   ├── NodeError           (also an RpcError, below) the node answered an error object that
│   │                       is not a revert: a lagging node, header not found, rate limit, ...
│   └── SubscriptionRefused the node refused `eth_subscribe` (keeper.chain.ws; the socket
│                           reconnects)
├── RpcError                an error object a node answered (.method, .code, .message, .data);
│   │                       a base class only: what is raised is one of its subclasses
│   ├── NodeError           (above) retryable, and failover moves on
│   ├── Reverted            the call's execution failed (eth_call, eth_estimateGas): an
│   │                       answer, the same on every endpoint, never retried
│   └── SendRefused         eth_sendRawTransaction refused, with the refusal's kind
│                           (keeper.execution.sender; classified by keeper.execution.mining)
├── StrategyError           a strategy's book, decoder, screen, lens or math found its state
│   │                       inconsistent: the engine benches that strategy and re-syncs it
│   ├── BookError           (strategies.aave_v3.book, strategies.morpho_blue.book)
│   ├── EventDecodeError    (strategies.aave_v3.events, strategies.morpho_blue.events)
│   ├── ScreenError         (strategies.aave_v3.screen)
│   ├── LensError           (strategies.aave_v3.lens)
│   ├── InvalidReserveIndexError  (strategies.aave_v3.reserve_config; also a ValueError)
│   ├── AaveMathError       the mirrored contract math would revert (strategies.aave_v3.math_lib,
│   │   │                   re-exported by strategies.aave_v3.math; also an ArithmeticError)
│   │   ├── MathOverflowError
│   │   ├── MathUnderflowError
│   │   └── MathDivisionByZeroError
│   ├── MorphoMathError     (strategies.morpho_blue.math; also an ArithmeticError)
│   └── MorphoFlashLegError a Morpho flash leg Morpho or the plan would reject
│                           (strategies.morpho_blue.flash_leg)
└── _Taken                  private control flow of keeper.execution.journal (rolls a batch
                            of claims back); never leaves that module

`from keeper.chain.http import RpcError` keeps working: keeper.chain.http re-exports the RPC
classes. Which error object is a `Reverted` and which a `NodeError` is decided in one place,
`keeper.chain.http.answer_error`.

Every message is one line that names the key, file, URL or JSON-RPC method at fault, and
never contains a secret.
"""

from __future__ import annotations

from typing import Any


class KeeperError(Exception):
    """Root of every error the keeper raises on purpose."""


class FatalError(KeeperError):
    """An error that retrying cannot fix."""


class ConfigError(FatalError):
    """The configuration (file, environment, keystore) is invalid."""


class ChainMismatch(FatalError):
    """The endpoint reports a chain id other than the configured one."""


class InputFileError(FatalError):
    """A file named on the command line is missing or malformed."""


class DevnetError(FatalError):
    """The local devnet could not be started, deployed or driven."""


class RetryableError(KeeperError):
    """A transient failure; the caller may try again (with backoff), or another endpoint."""


class RpcUnavailable(RetryableError):
    """An RPC endpoint could not be reached or did not answer in time."""


class MalformedAnswer(RetryableError):
    """An endpoint answered something that is not a JSON-RPC answer to the request."""


class RpcError(KeeperError):
    """The node answered a call with a JSON-RPC error object (a base class: see the tree)."""

    def __init__(self, method: str, error: Any) -> None:
        # Imported here: keeper.secrets imports this module (for ConfigError).
        from keeper.secrets import redact  # noqa: PLC0415

        self.method = method
        self.code: Any = error.get("code") if isinstance(error, dict) else None
        message = error.get("message", error) if isinstance(error, dict) else error
        self.message = redact(str(message))
        self.data: Any = error.get("data") if isinstance(error, dict) else None
        super().__init__(f"{method}: RPC error {self.code}: {self.message}")


class NodeError(RetryableError, RpcError):
    """The node answered an error that is not a revert (lagging, rate-limited, ...)."""


class Reverted(RpcError):
    """The call's execution reverted (or failed in the EVM): an answer, not a failure."""


class StrategyError(KeeperError):
    """A strategy found its own state inconsistent; the engine re-syncs that strategy."""
