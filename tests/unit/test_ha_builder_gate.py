"""An `[ha]` replica's gate on the builder client (keeper/execution/builders.py `send_gate`,
set by keeper/ha/replica.py): a replica that does not lead sends no bundle to any builder,
and the client's contract holds (one failed reply per builder, never an exception); a
simulation (`eth_callBundle`) is not a send and is not gated."""

from __future__ import annotations

import socket

from eth_account import Account

from keeper.execution.builders import BuilderClient, BuilderEndpoint


def closed_port() -> int:
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refuse() -> None:
    raise RuntimeError("not the leader (the lease is not held): not broadcast")


async def test_a_replica_that_does_not_lead_sends_no_bundle() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    client = BuilderClient([BuilderEndpoint("a", url), BuilderEndpoint("b", url)],
                           Account.create(), timeout=1.0)
    try:
        client.send_gate = refuse
        replies = await client.send_bundle(["0x02"], 10)
        assert [(r.builder, r.ok) for r in replies] == [("a", False), ("b", False)]
        assert all(r.error == "not sent: not the leader (the lease is not held): not broadcast"
                   for r in replies)
        (per,) = await client.send_many([("mev_sendBundle", [{}])])
        assert all(r.error.startswith("not sent: not the leader") for r in per)
        # The gate lets a simulation through, and a leader's bundle: they reach the network
        # (nothing listens there: a connection error, not the gate's refusal).
        simulated = await client.call_bundle(["0x02"], 10)
        assert all(not r.ok and "ClientConnectorError" in r.error for r in simulated), simulated
        client.send_gate = lambda: None
        replies = await client.send_bundle(["0x02"], 10)
        assert all(not r.ok and "ClientConnectorError" in r.error for r in replies), replies
    finally:
        await client.close()
