"""Bundle mode from the configuration: which executor the daemon builds.

`execution.submitter = "public"` (the default) builds the public `Executor`;
`"bundle"` builds a `BundleExecutor` sending to every `[[execution.builders]]` entry, with
the header identity `KEEPER_ACCOUNT__SEARCHER_KEY` and the nonce lanes
`KEEPER_ACCOUNT__LANE_KEYS` (both from the environment only, registered as secrets). No
builder host is built in: pointing the keeper at Flashbots, other builders or a relay is
configuration alone.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount

from keeper.config import KeeperConfig
from keeper.execution.builders import BuilderClient, BuilderEndpoint
from keeper.execution.bundles import BundleSetup
from keeper.execution.bundles_executor import BundleExecutor
from keeper.execution.executor import Executor

__all__ = ["Executor", "bundle_setup", "make_executor"]  # run.py takes Executor from here


def bundle_setup(config: KeeperConfig) -> BundleSetup | None:
    """The builders, identity and lanes of bundle mode; None on the public path."""
    execution = config.execution
    if execution.submitter != "bundle":
        return None
    endpoints = [BuilderEndpoint(b.name, b.url) for b in execution.builders]
    client = BuilderClient(endpoints, config.account.searcher())
    return BundleSetup(client, lanes=config.account.lanes(), blocks=execution.bundle_blocks)


def make_executor(
    config: KeeperConfig, chain: Any, account: LocalAccount, *args: Any, **kwargs: Any,
) -> Executor:
    """`Executor(chain, account, *args, **kwargs)`, or in bundle mode a `BundleExecutor`
    with the configured builders and lanes."""
    setup = bundle_setup(config)
    if setup is None:
        return Executor(chain, account, *args, **kwargs)
    return BundleExecutor(chain, account, *args, bundles=setup, **kwargs)
