"""The Maker devnet profile for tests: one anvil per module, rolled back per test.

`maker_devnet()` starts the cached profile (keeper/devnet/maker_profile.py; the first run
on a machine replays and seeds it, about 30 s) and stops it afterwards. Test modules ask
for the `maker` fixture (tests/integration/conftest.py), which is built from it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from keeper.devnet.maker_profile import start_maker_devnet
from tests.conftest import TEST_SPEC, Devnet, running


@contextlib.contextmanager
def maker_devnet() -> Iterator[Devnet]:
    """The default devnet plus Maker (info.maker set); anvil stopped on exit."""
    anvil, info, _cached = start_maker_devnet(TEST_SPEC)
    with running(anvil, info) as devnet:
        yield devnet
