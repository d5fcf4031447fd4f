"""Shared fixtures: one anvil per test session, started from the cached devnet state.

The first session on a machine deploys the devnet (and caches it under
.cache/devnet); later sessions load the cached state in well under a second.
Each test that asks for `devnet` runs between `evm_snapshot` and `evm_revert`,
so tests cannot see each other's transactions. Anvil is always stopped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from web3 import Web3

from keeper.anvil import Anvil, rpc_call
from keeper.devnet.borrowers import BorrowerPlan, plan_population
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.info import DevnetInfo

# Shared with `keeper devnet`'s defaults, so the demo and the tests reuse one cached state.
TEST_SPEC = DevnetSpec()
RPC_TIMEOUT = 60.0
INTEGRATION = Path(__file__).parent / "integration"


def seeded_borrowers(protocol: str) -> list[BorrowerPlan]:
    """The test devnet's seeded borrowers on one protocol ("aave_v3" or "morpho_blue")."""
    plans = plan_population(TEST_SPEC.borrowers, TEST_SPEC.seed)
    return [p for p in plans if p.protocol == protocol]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.anvil)


@dataclass
class Devnet:
    """A running devnet: its process, its devnet.json description and a web3 client."""

    anvil: Anvil
    info: DevnetInfo
    w3: Web3

    def rpc(self, method: str, *params: object) -> object:
        # A generous timeout: on a loaded 2-core machine anvil can take seconds to answer.
        return rpc_call(self.anvil.rpc_url, method, params, timeout=RPC_TIMEOUT)


@pytest.fixture(scope="session", autouse=True)
def _own_account_locks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's account locks (keeper/lock.py: $XDG_RUNTIME_DIR/keeper) in a folder of
    its own, inherited by the daemons the tests start: every devnet signs as the same
    liquidator on chain 31337, so two test sessions on one machine (or a keeper run beside
    them) otherwise refuse each other's daemons ("in use by another keeper")."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of the session (the pgserver wheel's binaries, on a free port;
    keeper/ha/local_pg.py), stopped and deleted at the end: its DSN. Only the tests of
    `[ha]` ask for it; each works in a schema of its own."""
    from keeper.ha.local_pg import LocalPostgres  # noqa: PLC0415 (the ha extra)

    with LocalPostgres() as server:
        yield server.dsn


class AnvilRpc(Protocol):
    """Anything a test talks to anvil through (Devnet, test_perp_v2's PerpNet)."""

    def rpc(self, method: str, *params: object) -> object: ...


N = TypeVar("N", bound=AnvilRpc)


@contextlib.contextmanager
def running(anvil: Anvil, info: DevnetInfo) -> Iterator[Devnet]:
    """A started devnet as a Devnet; anvil stopped on exit (every profile's session fixture)."""
    try:
        w3 = Web3(Web3.HTTPProvider(info.rpc_url, request_kwargs={"timeout": RPC_TIMEOUT}))
        yield Devnet(anvil, info, w3)
    finally:
        anvil.stop()


@contextlib.contextmanager
def rolled_back(net: N) -> Iterator[N]:
    """Run the body between evm_snapshot and evm_revert (evm_revert consumes the snapshot)."""
    snapshot = net.rpc("evm_snapshot")
    try:
        yield net
    finally:
        # What evm_revert leaves behind must not leak into the next test: transactions
        # still in the pool, and the next block's base fee (anvil keeps the fee history).
        net.rpc("anvil_dropAllTransactions")
        assert net.rpc("evm_revert", snapshot) is True
        latest = net.rpc("eth_getBlockByNumber", "latest", False)
        assert isinstance(latest, dict)
        net.rpc("anvil_setNextBlockBaseFeePerGas", latest["baseFeePerGas"])
        _stop_impersonating(net)


@pytest.fixture(scope="session")
def devnet_session() -> Iterator[Devnet]:
    anvil, info, _cached = start_devnet(TEST_SPEC)
    with running(anvil, info) as devnet:
        yield devnet


@pytest.fixture
def devnet(devnet_session: Devnet) -> Iterator[Devnet]:
    """The session devnet, rolled back after the test."""
    with rolled_back(devnet_session):
        yield devnet_session


def _stop_impersonating(devnet: AnvilRpc) -> None:
    """Impersonation is not state: evm_revert keeps it. An account anvil holds the key of
    (the deployer, the liquidator) left impersonated has every later eth_sendTransaction of
    it sent unsigned (r = s = 0), which breaks any test that rebuilds raw transactions
    (the archive backtest's history did, after the v3.6 parity test sent as the deployer)."""
    devnet.rpc("anvil_autoImpersonateAccount", False)
    accounts = devnet.rpc("eth_accounts")
    assert isinstance(accounts, list)
    for account in accounts:
        devnet.rpc("anvil_stopImpersonatingAccount", account)


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll until `condition()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Miner:
    """Mines a devnet block when asked, at most one per `every` seconds: a test that polls
    in a tight loop must not flood anvil while the daemon under test works."""

    def __init__(self, devnet: Devnet, every: float = 0.25) -> None:
        self.devnet = devnet
        self.every = every
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.devnet.rpc("evm_mine")
