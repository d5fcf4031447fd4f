"""What a volley learns from simulations answered after their sends: applied at once in the
daemon, held until `apply_learned` in a replay (so the same inputs sign the same
transactions whatever answers first); and `settled`, which a replay waits on, counts the
judgments still to come and the withdrawals not yet made."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from keeper.chain.http import RpcError
from keeper.execution.mining import Pending
from keeper.execution.volley import Volley, gas_limit_ahead, shape
from keeper.types import Call, TxIntent
from tests.unit.test_prepared_levels import _opps

INTENT = TxIntent(_opps(1)[0], Call("0x" + "aa" * 20, "0x1234"), 300_000, "0x" + "bb" * 20)


class _Logger:
    def warning(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs

    def info(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs


def _pending() -> Pending:
    return Pending("k", 7, (2, 1), 300_000, 10**18)


async def _judge(volley: Volley, answer: int | Exception, sent: Pending) -> None:
    simulation: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    if isinstance(answer, Exception):
        simulation.set_exception(answer)
    else:
        simulation.set_result(answer)
    await volley._judge(INTENT, cast("asyncio.Task[int]", simulation), cast(Any, _Logger()),
                        sent)


def test_the_daemon_uses_an_estimate_as_soon_as_its_simulation_answers() -> None:
    volley = Volley(cast(Any, None))
    asyncio.run(_judge(volley, 400_000, _pending()))
    assert volley.estimates[shape(INTENT)] == 400_000
    assert gas_limit_ahead(INTENT, volley.estimates[shape(INTENT)]) == 520_000


def test_a_replay_holds_what_it_learns_until_its_block_is_settled() -> None:
    volley = Volley(cast(Any, None))
    volley.hold_learned = True
    asyncio.run(_judge(volley, 400_000, _pending()))
    asyncio.run(_judge(volley, 350_000, _pending()))  # less than held: nothing new
    assert volley.estimates == {}  # later waves of the same block sign as before
    volley.apply_learned()
    assert volley.estimates == {shape(INTENT): 400_000}
    asyncio.run(_judge(volley, 380_000, _pending()))
    volley.apply_learned()
    assert volley.estimates == {shape(INTENT): 400_000}  # the largest seen stays


def test_settled_waits_for_judgments_and_for_the_withdrawals_they_ask() -> None:
    async def scenario() -> None:
        volley = Volley(cast(Any, None))
        assert volley.settled
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        volley._judging.add(answer)  # a judgment under way, as `_follow` registers one
        answer.add_done_callback(volley._judging.discard)
        assert not volley.settled
        answer.set_result(None)
        await asyncio.sleep(0)  # its done callback runs
        assert volley.settled
        sent = _pending()
        await _judge(volley, RpcError(3, "execution reverted"), sent)
        assert sent.withdraw and volley.failed_after_send == 1
        assert not volley.settled  # the no-op replacing it is not in the pool yet
        sent.withdraw = False  # the mining watch sent it (or the send was mined)
        assert volley.settled

    asyncio.run(scenario())
