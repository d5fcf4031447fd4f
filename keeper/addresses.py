"""Start-up checks of every configured address: is there code, and is it the contract the
key says it is?

A key that names an externally owned account, or the wrong contract, used to surface deep
inside a strategy (`internal error: InsufficientDataBytes`, or a bare `execution reverted`).
Each address key in the config is typed `Annotated[Address, Interface(what, call)]`
(keeper/config_sections.py, and each strategy's own section): before anything else is
read, `check_addresses` asks the chain for each one's code and makes the one view call of
its interface, and the first failure is one `ConfigError` line naming the dotted key.
The engine knows no protocol: what each key must be is declared beside the key.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_utils.abi import function_signature_to_4byte_selector
from pydantic import AfterValidator, BaseModel

from keeper.config_sections import Interface
from keeper.errors import ConfigError, Reverted


class Caller(Protocol):
    """The one JSON-RPC call this needs (HttpRpc, FailoverRpc)."""

    async def call(self, method: str, params: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class AddressKey:
    """One configured address: its dotted key, value, and the interface it must have."""

    key: str  # "strategies.aave_v3.addresses_provider"
    address: str
    interface: Interface | None  # None: an address with no declared interface (code only)


def address_keys(config: BaseModel, prefix: str = "") -> Iterator[AddressKey]:
    """Every address in `config` (nested sections, tuples of sections), in field order."""
    for name, info in type(config).model_fields.items():
        value = getattr(config, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            if getattr(value, "enabled", True) is not False:  # a disabled strategy is not read
                yield from address_keys(value, key + ".")
        elif isinstance(value, tuple | list) and value and isinstance(value[0], BaseModel):
            for index, item in enumerate(value):
                yield from address_keys(item, f"{key}[{index}].")
        elif isinstance(value, str):
            interface, is_address = _marks([*info.metadata, info.annotation])
            if interface is not None or is_address:
                yield AddressKey(key, value, interface)
    extra = config.model_extra or {}
    for name, value in extra.items():  # none in practice: every section forbids extras
        if isinstance(value, BaseModel):
            yield from address_keys(value, f"{prefix}{name}.")


def _marks(items: Sequence[Any]) -> tuple[Interface | None, bool]:
    """The `Interface` among annotations (searching unions and `Annotated`), and whether
    one of them is the `Address` type (its checksum validator)."""
    interface: Interface | None = None
    is_address = False
    stack = list(items)
    while stack:
        item = stack.pop()
        if isinstance(item, Interface):
            interface = item
        elif isinstance(item, AfterValidator) and getattr(item.func, "__name__", "") == "_checksum":
            is_address = True
        else:
            stack.extend(getattr(item, "__metadata__", ()))
            stack.extend(typing.get_args(item))
    return interface, is_address


async def check_addresses(rpc: Caller, config: BaseModel, chain_id: int) -> None:
    """Raise one `ConfigError` line for the first address key with no code at `latest` or
    whose interface call fails; every key is checked concurrently."""
    keys = list(address_keys(config))
    problems = await asyncio.gather(*(_problem(rpc, k, chain_id) for k in keys))
    for problem in problems:
        if problem is not None:
            raise ConfigError(problem)


async def _problem(rpc: Caller, entry: AddressKey, chain_id: int) -> str | None:
    address = entry.address.lower()
    code = await rpc.call("eth_getCode", [address, "latest"])
    if not isinstance(code, str) or len(code) <= 2:
        return (f"{entry.key} {entry.address} has no contract code on chain {chain_id} "
                f"(an account, or a contract on another chain?)"
                + (f"; it should be {entry.interface.what}" if entry.interface else ""))
    interface = entry.interface
    if interface is None:
        return None
    data = "0x" + function_signature_to_4byte_selector(interface.call).hex() + interface.args
    try:
        answer = await rpc.call("eth_call", [{"to": address, "data": data}, "latest"])
    except Reverted:
        return (f"{entry.key} {entry.address} is not {interface.what} "
                f"({interface.call} reverted)")
    if not isinstance(answer, str) or len(answer.removeprefix("0x")) < 64:
        return (f"{entry.key} {entry.address} is not {interface.what} "
                f"({interface.call} gave no answer)")
    return None
