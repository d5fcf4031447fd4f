"""Start-up checks of configured addresses (keeper/addresses.py) against a scripted node:
every address key is found (nested sections, lists of sections; not a disabled strategy's),
and the first without code or interface is one line naming its key."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_utils.abi import function_signature_to_4byte_selector
from pydantic import BaseModel

from keeper import plugins
from keeper.addresses import _marks, address_keys, check_addresses
from keeper.config import KeeperConfig, load_config
from keeper.errors import ConfigError, Reverted

QUOTE = "0x" + "11" * 20
FACTORY = "0x" + "22" * 20
V3 = "0x" + "33" * 20
FEED = "0x" + "44" * 20
PROVIDER = "0x" + "55" * 20
MORPHO = "0x" + "66" * 20
CONFIG = f"""\
[chain]
chain_id = 1
http_urls = ["http://127.0.0.1:9"]
[execution]
quote_token = "{QUOTE}"
[[execution.feeds]]
address = "{FEED}"
deviation_bps = 50
[dex]
uniswap_v2_factory = "{FACTORY}"
[[dex.venues]]
kind = "uniswap_v3"
factory = "{V3}"
[strategies.aave_v3]
addresses_provider = "{PROVIDER}"
[strategies.morpho_blue]
morpho = "{MORPHO}"
enabled = false
"""


class Node:
    """Answers eth_getCode and eth_call from a script: no code, reverts, or one word."""

    def __init__(self, no_code: Sequence[str] = (), reverts: Sequence[str] = ()) -> None:
        self.no_code = set(no_code)
        self.reverts = set(reverts)
        self.calls: list[tuple[str, str]] = []

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_getCode":
            self.calls.append((method, params[0]))
            return "0x" if params[0] in self.no_code else "0x6080"
        to, data = params[0]["to"], params[0]["data"]
        self.calls.append((method, data[:10]))
        if to in self.reverts:
            raise Reverted("eth_call", {"code": 3, "message": "execution reverted"})
        return "0x" + "00" * 31 + "12"


def config(tmp_path: Path) -> Any:
    path = tmp_path / "keeper.toml"
    path.write_text(CONFIG)
    return load_config(path)


def test_every_address_key_is_found(tmp_path: Path) -> None:
    keys = {k.key: k for k in address_keys(config(tmp_path))}
    assert set(keys) == {"execution.quote_token", "execution.feeds[0].address",
                         "dex.uniswap_v2_factory", "dex.venues[0].factory",
                         "strategies.aave_v3.addresses_provider"}  # morpho is disabled
    feed = keys["execution.feeds[0].address"].interface
    assert feed is not None and feed.call == "latestAnswer()"
    provider = keys["strategies.aave_v3.addresses_provider"].interface
    assert provider is not None and provider.call == "getPool()"


def test_all_good(tmp_path: Path) -> None:
    node = Node()
    asyncio.run(check_addresses(node, config(tmp_path), 1))
    selector = "0x" + function_signature_to_4byte_selector("getPool()").hex()
    assert ("eth_call", selector) in node.calls
    assert sum(method == "eth_getCode" for method, _ in node.calls) == 5


@pytest.mark.parametrize(("node", "words"), [
    (Node(no_code=[PROVIDER]),
     f"strategies.aave_v3.addresses_provider {PROVIDER} has no contract code on chain 1"),
    (Node(reverts=[V3]), f"dex.venues[0].factory {V3} is not a Uniswap V3 factory "
                         "(feeAmountTickSpacing(uint24) reverted)"),
    (Node(no_code=[FEED]), f"execution.feeds[0].address {FEED} has no contract code"),
    (Node(reverts=[FEED]), f"execution.feeds[0].address {FEED} is not a Chainlink-style price "
                           "feed aggregator (latestAnswer() reverted)"),
])
def test_a_wrong_address_is_one_line_naming_its_key(
    tmp_path: Path, node: Node, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        asyncio.run(check_addresses(node, config(tmp_path), 1))
    assert words in str(caught.value) and "\n" not in str(caught.value)


def _untyped_addresses(model: type[BaseModel], prefix: str) -> Iterator[str]:
    """Dotted keys of `model` (and the sections it nests) holding an address with no
    declared `Interface`."""
    for name, info in model.model_fields.items():
        interface, is_address = _marks([*info.metadata, info.annotation])
        if is_address and interface is None:
            yield prefix + name
        for arg in [info.annotation, *_nested_types(info.annotation)]:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from _untyped_addresses(arg, f"{prefix}{name}.")


def _nested_types(annotation: Any) -> Iterator[Any]:
    for arg in typing.get_args(annotation):
        yield arg
        yield from _nested_types(arg)


def test_every_address_key_declares_its_interface() -> None:
    """Start-up checks each address for the contract it should be, not only for code: every
    address key of the core sections and of each installed strategy names its interface."""
    models: list[tuple[type[BaseModel], str]] = [(KeeperConfig, "")]
    models += [(plugins.load(name).config_model, f"strategies.{name}.")
               for name in plugins.installed()]
    untyped = [key for model, prefix in models for key in _untyped_addresses(model, prefix)]
    assert untyped == []
