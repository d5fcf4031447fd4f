"""liquidationCall's outcome as an Aave pool answers an eth_call of it, against the local
prediction, at the sizes the ranking proposes (the parity tests of both markets).

The pool's answer comes from `debug_traceCall` with the call tracer's logs, at the
checkpoint's state with the next block's timestamp (`blockOverrides`): the same simulation
as an `eth_call`, with the logs that carry the outcome (LiquidationCall's repaid and
seized amounts, the collateral aToken's transfer to the treasury, DeficitCreated). Nothing
is mined, so the checkpoint's state goes on unchanged.

The sizes: for each candidate, the size `keeper.ranking.best_size` picks on the devnet's
Uniswap V2 pairs (when it can value the candidate), and the ends and middle of every
interval ranking may search (`accepted_sizes`: [1, max_repay] on v3.0, the dust rule's
ranges on v3.6). Where the mirror raises (the pool would revert), the call must revert
with the reason it names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak
from web3 import Web3

from keeper.chain.http import HttpRpc
from keeper.devnet.deployer import Deployer, rpc
from keeper.dex.venue import Venue
from keeper.ranking import accepted_sizes, best_size
from keeper.types import Candidate
from strategies.aave_v3 import events as ev
from strategies.aave_v3.math_lib import AaveMathError
from strategies.aave_v3.math_v36 import LiquidationRevert
from tests.conftest import Devnet

TOPIC_DEFICIT = "0x" + keccak(text="DeficitCreated(address,address,uint256)").hex()
TOPIC_TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
LIQUIDATION_CALL = function_signature_to_4byte_selector(
    "liquidationCall(address,address,address,uint256,bool)")
ERROR_STRING = "08c379a0"  # Error(string)
PANIC = "4e487b71"  # Panic(uint256)
GAS_PRICE = 10**9  # 1 gwei: the gas cost ranking subtracts (the devnet's base fee is lower)

# (debt repaid, collateral seized, protocol fee, deficit): what `predict` returns at a size,
# raising AaveMathError (LiquidationRevert with the pool's reason) where the pool reverts.
Outcome = tuple[int, int, int, int]
Predict = Callable[[int], Outcome]


def _logs(frame: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from frame.get("logs") or ()
    for call in frame.get("calls") or ():
        yield from _logs(call)


def outcome_of(logs: Sequence[dict[str, Any]], user: str, collateral_a_token: str) -> Outcome:
    """(repaid, seized, fee, deficits summed) from a liquidationCall's logs."""
    repaid = seized = fee = deficit = 0
    user_word = "0x" + "0" * 24 + user.lower().removeprefix("0x")
    for log in logs:
        topics = [str(t).lower() for t in log["topics"]]
        data = bytes.fromhex(str(log["data"]).removeprefix("0x"))
        if topics[0] == ev.TOPIC_LIQUIDATION_CALL:
            repaid, seized = decode(["uint256", "uint256", "address", "bool"], data)[:2]
        elif topics[0] == TOPIC_DEFICIT:
            deficit += decode(["uint256"], data)[0]
        elif (topics[0] == TOPIC_TRANSFER and str(log["address"]).lower() == collateral_a_token
              and topics[1] == user_word and int(topics[2], 16) != 0):
            fee = decode(["uint256"], data)[0]  # the aTokens sent to the treasury
    return repaid, seized, fee, deficit


async def traced_call(
    client: HttpRpc, *, pool: str, sender: str, pair: tuple[str, str, str], size: int,
    block: int, now: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """(logs, None), or ([], revert data) when the call reverts: liquidationCall(collateral,
    debt, user = `pair`, size, receiveAToken = false) from `sender`, on the state of `block`
    at time `now`."""
    data = LIQUIDATION_CALL + encode(
        ["address", "address", "address", "uint256", "bool"], [*pair, size, False])
    frame = await client.call("debug_traceCall", [
        {"from": sender.lower(), "to": pool.lower(), "data": "0x" + data.hex()}, hex(block),
        {"tracer": "callTracer", "tracerConfig": {"withLog": True},
         "blockOverrides": {"time": hex(now)}}])
    if frame.get("error"):
        return [], str(frame.get("output") or "0x")
    return list(_logs(frame)), None


def _revert_marker(exc: AaveMathError) -> str:
    """What the revert data must hold for the mirror's exception: an Errors.sol custom error
    (v3.6), an Error(string) code (v3.0), or a Panic (checked arithmetic)."""
    if isinstance(exc, LiquidationRevert):
        if exc.reason.isdigit():
            return ERROR_STRING + encode(["string"], [exc.reason]).hex()
        return keccak(text=f"{exc.reason}()").hex()[:8]
    return PANIC


def sizes_to_check(candidate: Candidate, dex: Venue, quote: str) -> tuple[list[int], int | None]:
    """(the ends and middle of each interval ranking may search plus its pick, its pick)."""
    sizes = {s for lo, hi in accepted_sizes(candidate) for s in (lo, (lo + hi) // 2, hi)}
    found = best_size(candidate, dex, quote, candidate.gas_limit * GAS_PRICE,
                      gas_price=GAS_PRICE)
    picked = found[0].repay if found is not None else None
    if picked is not None:
        sizes.add(picked)
    return sorted(sizes), picked


async def check_outcomes(
    client: HttpRpc, *, pool: str, sender: str, offers: Sequence[tuple[Candidate, Predict]],
    a_tokens: dict[str, str], block: int, now: int, dex: Venue, quote: str, where: str,
) -> Counter[str]:
    """Every offer's prediction equals the pool's answer at each size to check; counts of
    sizes checked, ranked picks among them, predicted reverts and deficits."""
    counts: Counter[str] = Counter()
    for candidate, predict in offers:
        sizes, picked = sizes_to_check(candidate, dex, quote)
        counts["ranked"] += picked is not None
        for size in sizes:
            what = (f"{where}: {candidate.account} {candidate.collateral_symbol}/"
                    f"{candidate.debt_symbol} size {size}")
            try:
                predicted: Outcome | None = predict(size)
            except AaveMathError as exc:
                predicted, marker = None, _revert_marker(exc)
                why = exc.reason if isinstance(exc, LiquidationRevert) else "panic"
            logs, reverted = await traced_call(
                client, pool=pool, sender=sender, size=size, block=block, now=now,
                pair=(candidate.collateral, candidate.debt, candidate.account))
            if predicted is None:
                assert reverted is not None, f"{what}: the pool took it, predicted {marker}"
                assert marker in reverted, f"{what}: reverted {reverted}, predicted {marker}"
                counts[f"reverts {why}"] += 1
                continue
            assert reverted is None, f"{what}: reverted {reverted}, predicted {predicted}"
            got = outcome_of(logs, candidate.account, a_tokens[candidate.collateral])
            assert got == predicted, f"{what}: pool {got} != predicted {predicted}"
            assert (candidate.actual_repay(size), candidate.seize(size)) == predicted[:2], what
            counts["sizes"] += 1
            counts["deficits"] += predicted[3] > 0
    counts["candidates"] += len(offers)
    return counts


def send_as(devnet: Devnet, fn: Any, sender: str) -> bool:
    """Send as `sender` (impersonated); False if it reverts (a random action may)."""
    rpc(devnet.w3, "anvil_impersonateAccount", sender)
    try:
        Deployer(devnet.w3, Web3.to_checksum_address(sender)).send(fn)
    except Exception:
        return False
    return True
