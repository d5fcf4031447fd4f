"""The keeper's error tree.

KeeperError
├── FatalError            stop: the input or an invariant is wrong; retrying cannot help
│   ├── ConfigError       bad config file, key, value, keystore or password (CLI exit 2)
│   ├── ChainMismatch     the RPC serves another chain than `chain.chain_id` (CLI exit 2)
│   ├── InputFileError    a malformed file given on the command line (CLI exit 2)
│   └── DevnetError       the local devnet could not be started or deployed
└── RetryableError        transport trouble: the same call may succeed later
    └── RpcUnavailable    an endpoint did not answer (at start-up the CLI exits 2)

Every message is one line that names the key, file or URL at fault, and never
contains a secret.
"""

from __future__ import annotations


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
    """A transient failure; the caller may try again (with backoff)."""


class RpcUnavailable(RetryableError):
    """An RPC endpoint could not be reached or did not answer in time."""
