"""The Maker devnet profile for tests: one anvil per module, rolled back per test.

`maker_devnet()` starts the cached profile (keeper/devnet/maker_profile.py; the first run
on a machine replays and seeds it, about 30 s) and stops it afterwards. A test module
declares a module-scoped fixture from it and a per-test one with `rolled_back`:

    @pytest.fixture(scope="module")
    def maker_session() -> Iterator[Devnet]:
        with maker_devnet() as devnet:
            yield devnet

    @pytest.fixture
    def maker(maker_session: Devnet) -> Iterator[Devnet]:
        with rolled_back(maker_session):
            yield maker_session
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from web3 import Web3

from keeper.devnet.maker_profile import start_maker_devnet
from tests.conftest import TEST_SPEC, Devnet, _stop_impersonating


@contextlib.contextmanager
def maker_devnet() -> Iterator[Devnet]:
    """The default devnet plus Maker (info.maker set); anvil stopped on exit."""
    anvil, info, _cached = start_maker_devnet(TEST_SPEC)
    try:
        w3 = Web3(Web3.HTTPProvider(info.rpc_url, request_kwargs={"timeout": 60}))
        yield Devnet(anvil, info, w3)
    finally:
        anvil.stop()


@contextlib.contextmanager
def rolled_back(devnet: Devnet) -> Iterator[Devnet]:
    """Run the body between evm_snapshot and evm_revert (as tests/conftest.py's `devnet`)."""
    snapshot = devnet.rpc("evm_snapshot")
    try:
        yield devnet
    finally:
        devnet.rpc("anvil_dropAllTransactions")
        assert devnet.rpc("evm_revert", snapshot) is True
        latest = devnet.rpc("eth_getBlockByNumber", "latest", False)
        assert isinstance(latest, dict)
        devnet.rpc("anvil_setNextBlockBaseFeePerGas", latest["baseFeePerGas"])
        _stop_impersonating(devnet)
