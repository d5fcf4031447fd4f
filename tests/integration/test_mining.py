"""Sent transactions on the devnet: vanished ones re-sent, stuck ones bumped, lost ones seen,
and an earlier run's journaled transaction recovered after a crash before its broadcast.

The transactions are ERC-20 `approve` calls from a fresh dev account (they need no
balance and emit a log of the called contract, as a liquidation does). Mining is paused
(automine off) so a transaction can be dropped from the pool, held below the base fee, or
replaced, before a block is mined by the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr

from keeper.chain.http import HttpRpc
from keeper.execution.executor import Executor
from keeper.execution.fees import FeePolicy
from keeper.execution.journal import Journal
from keeper.execution.mining import MiningWatch, Pending
from keeper.types import Call, Opportunity, TxIntent
from tests.conftest import Devnet
from tests.factories import candidate
from tests.integration.helpers import FRESH_ACCOUNT_INDEXES, tokens

MNEMONIC = "test test test test test test test test test test test junk"
GWEI = 10**9
APPROVE = "0x095ea7b3"
TIMEOUT = 30.0


@pytest.fixture
def paused(devnet: Devnet) -> Iterator[Devnet]:
    devnet.rpc("evm_setAutomine", False)
    try:
        yield devnet
    finally:
        devnet.rpc("anvil_dropAllTransactions")
        devnet.rpc("evm_setAutomine", True)


def _account() -> LocalAccount:
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(
        MNEMONIC, account_path=f"m/44'/60'/0'/0/{FRESH_ACCOUNT_INDEXES[1]}")
    return account


def _approve_data(amount: int) -> str:
    return APPROVE + encode(["address", "uint256"], ["0x" + "77" * 20, amount]).hex()


def _opportunity(token: str, key: str) -> Opportunity:
    return Opportunity(
        strategy="aave_v3", key=key, account="0x" + "b0" * 20, collateral=token, debt=token,
        debt_to_cover=1, collateral_received=1, gross_value=10**16, slippage=0,
        gas_limit=100_000, gas_cost=10**15, net_profit=10**16, quote_token=token,
        health_factor=9 * 10**17, block=1, candidate=candidate(),
    )


async def _until_in_pool(chain: HttpRpc, tx_hash: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while await chain.call("eth_getTransactionByHash", [tx_hash]) is None:
        assert time.monotonic() < deadline, f"{tx_hash} never came back to the pool"
        await asyncio.sleep(0.01)


async def _sign(account: LocalAccount, chain: HttpRpc, to: str, data: str, *, nonce: int,
                fees: tuple[int, int]) -> tuple[str, str]:
    signed = account.sign_transaction({
        "type": 2, "chainId": chain.chain_id, "nonce": nonce, "to": HexStr(to),
        "data": HexStr(data),
        "value": 0, "gas": 100_000, "maxFeePerGas": fees[0], "maxPriorityFeePerGas": fees[1],
    })
    return "0x" + bytes(signed.hash).hex(), "0x" + bytes(signed.raw_transaction).hex()


async def test_a_vanished_transaction_is_sent_again(paused: Devnet, journal: Journal) -> None:
    account, token = _account(), tokens(paused)["WETH"].address
    async with HttpRpc(paused.info.rpc_url) as chain:
        watch = MiningWatch(chain, account.address.lower(), journal,
                            FeePolicy(100 * GWEI, GWEI), check_every=0.05)
        tx_hash, raw = await _sign(account, chain, token, _approve_data(1), nonce=0,
                                   fees=(100 * GWEI, GWEI))
        await chain.call("eth_sendRawTransaction", [raw])
        assert await chain.call("anvil_dropTransaction", [tx_hash]) is not None
        pending = Pending(None, 0, (100 * GWEI, GWEI), 100_000, 10**18, [tx_hash],
                          {tx_hash: raw})
        watching = asyncio.create_task(watch.mined(pending, None))
        await _until_in_pool(chain, tx_hash)  # the watch put it back
        await chain.call("evm_mine", [])
        mined = await asyncio.wait_for(watching, TIMEOUT)
    assert mined.tx_hash == tx_hash and mined.receipt is not None
    assert pending.resent >= 1 and int(mined.receipt["status"], 16) == 1


async def test_a_stuck_transaction_is_replaced_with_higher_fees(
    paused: Devnet, journal: Journal
) -> None:
    """Sent with a max fee under the next base fee, it cannot be mined; after
    `bump_after_blocks` blocks the watch replaces it (both fees +12.5 % at least, under the
    cap), the replacement is mined, and the journal records the old one as replaced."""
    account, token = _account(), tokens(paused)["WETH"].address
    async with HttpRpc(paused.info.rpc_url) as chain:
        opp = _opportunity(token, "test:stuck")
        assert journal.claim(opp, chain.chain_id)
        base = int((await chain.call("eth_getBlockByNumber", ["latest", False]))
                   ["baseFeePerGas"], 16)
        low = (base + GWEI, GWEI)
        tx_hash, raw = await _sign(account, chain, token, _approve_data(2), nonce=0, fees=low)
        journal.record_signed(opp.key, 0, tx_hash, raw, *low)
        await chain.call("eth_sendRawTransaction", [raw])
        journal.mark_sent(opp.key, tx_hash)
        watch = MiningWatch(chain, account.address.lower(), journal,
                            FeePolicy(1000 * GWEI, GWEI), bump_after_blocks=2, check_every=0.05)
        pending = Pending(opp.key, 0, low, 100_000, 10**18, [tx_hash], {tx_hash: raw})

        async def sign(nonce: int, fees: tuple[int, int]) -> tuple[str, str]:
            return await _sign(account, chain, token, _approve_data(2), nonce=nonce,
                               fees=fees)

        watching = asyncio.create_task(watch.mined(pending, sign))
        # Blocks whose base fee is above the original max fee: the original cannot land.
        deadline = time.monotonic() + TIMEOUT
        while pending.bumped == 0:
            assert time.monotonic() < deadline, "never bumped"
            await chain.call("anvil_setNextBlockBaseFeePerGas", [hex(base + 5 * GWEI)])
            await chain.call("evm_mine", [])
            await asyncio.sleep(0.06)
        await chain.call("evm_mine", [])
        mined = await asyncio.wait_for(watching, TIMEOUT)
        assert mined.receipt is not None and mined.tx_hash == pending.hashes[-1] != tx_hash
        assert pending.fees[0] * 8 >= low[0] * 9 and pending.fees[1] * 8 >= low[1] * 9
        journal.mark_confirmed(opp.key, mined.tx_hash, int(mined.receipt["blockNumber"], 16),
                               int(mined.receipt["gasUsed"], 16), 0)
        record = journal.get(opp.key)
    assert record is not None and record.status == "confirmed"
    assert {t.tx_hash: t.status for t in record.transactions}[tx_hash] == "replaced"


async def test_a_nonce_taken_by_another_transaction_is_lost(
    paused: Devnet, journal: Journal
) -> None:
    account, token = _account(), tokens(paused)["WETH"].address
    async with HttpRpc(paused.info.rpc_url) as chain:
        ours, raw = await _sign(account, chain, token, _approve_data(3), nonce=0,
                                fees=(50 * GWEI, GWEI))
        await chain.call("eth_sendRawTransaction", [raw])
        _theirs, other = await _sign(account, chain, token, _approve_data(4), nonce=0,
                                     fees=(100 * GWEI, 10 * GWEI))
        await chain.call("eth_sendRawTransaction", [other])  # a manual cancel, say
        await chain.call("evm_mine", [])
        watch = MiningWatch(chain, account.address.lower(), journal,
                            FeePolicy(100 * GWEI, GWEI), check_every=0.05)
        mined = await asyncio.wait_for(
            watch.mined(Pending(None, 0, (50 * GWEI, GWEI), 100_000, 0, [ours], {ours: raw}),
                        None), TIMEOUT)
    assert mined.receipt is None and mined.tx_hash is None


async def test_a_transaction_journaled_before_a_crash_is_recovered(
    devnet: Devnet, tmp_path: Path
) -> None:
    """The first run signed and journaled a transaction, then died before broadcasting it.
    The next run's executor finds it in the journal, broadcasts the very same bytes (same
    hash: nothing is signed twice), and records the confirmation; the nonce stream goes
    on after it."""
    account, token = _account(), tokens(devnet)["WETH"].address
    path = tmp_path / "journal.sqlite"
    async with HttpRpc(devnet.info.rpc_url) as chain:
        with Journal(path) as journal:
            opp = _opportunity(token, "test:crashed")
            assert journal.claim(opp, chain.chain_id)
            tx_hash, raw = await _sign(account, chain, token, _approve_data(5), nonce=0,
                                       fees=(100 * GWEI, GWEI))
            journal.record_signed(opp.key, 0, tx_hash, raw, 100 * GWEI, GWEI)
            # ... and the process died here: never sent.
        assert await chain.call("eth_getTransactionByHash", [tx_hash]) is None
        with Journal(path) as journal:
            executor = Executor(chain, account, journal, FeePolicy(100 * GWEI, GWEI),
                                appraise=lambda c, d, got, paid, gas: -gas)
            await executor.start()
            assert executor.nonces.next_nonce == 1  # past the journaled one
            jobs = executor.recovery()
            assert [(s, a) for s, a, _ in jobs] == [("aave_v3", opp.account)]
            outcome = await asyncio.wait_for(jobs[0][2], TIMEOUT)
            record = journal.get(opp.key)
    assert outcome.status == "confirmed" and outcome.tx_hash == tx_hash
    assert record is not None and record.status == "confirmed"
    assert len(record.transactions) == 1  # the same bytes, never re-signed
    assert replace(opp).key == record.key


async def test_nonce_too_low_skips_ahead_and_the_retry_lands(
    devnet: Devnet, tmp_path: Path
) -> None:
    """Another sender on the same account (an operator, say) used the nonce the executor
    was about to use: the node refuses it as "nonce too low", the executor skips to the
    chain's nonce instead of reusing it, and the retried intent lands with the next one."""
    account, token = _account(), tokens(devnet)["WETH"].address
    async with HttpRpc(devnet.info.rpc_url) as chain:
        with Journal(tmp_path / "journal.sqlite") as journal:
            executor = Executor(chain, account, journal, FeePolicy(100 * GWEI, GWEI),
                                appraise=lambda c, d, got, paid, gas: -gas)
            await executor.start()
            assert executor.nonces.next_nonce == 0
            behind, raw = await _sign(account, chain, token, _approve_data(6), nonce=0,
                                      fees=(100 * GWEI, GWEI))
            await chain.call("eth_sendRawTransaction", [raw])  # nonce 0, behind its back
            # Automine answers a send before it mines it: until then the node would call
            # ours a replacement ("underpriced"), not "nonce too low".
            deadline = time.monotonic() + TIMEOUT
            while await chain.call("eth_getTransactionReceipt", [behind]) is None:
                assert time.monotonic() < deadline, "the other sender's transaction never mined"
                await asyncio.sleep(0.01)
            opp = replace(_opportunity(token, "test:nonce"), block=0)
            intent = TxIntent(opp, Call(token, _approve_data(7)), 100_000, None)
            first = await executor.execute(intent, base_fee=10)
            assert first.status == "send-failed" and first.reason.startswith("nonce-low")
            assert executor.nonces.next_nonce == 1
            second = await executor.execute(intent, base_fee=10)  # dropped: claimed again
            assert second.status == "confirmed", second
            tx = await chain.call("eth_getTransactionByHash", [second.tx_hash])
    assert int(tx["nonce"], 16) == 1



async def test_a_vanished_transaction_no_longer_worth_it_is_cancelled(
    paused: Devnet, journal: Journal
) -> None:
    """Its block was orphaned (or the pool evicted it) and the position is no longer
    liquidatable: it is not sent again; a zero-value transfer to itself takes its nonce,
    so the sends behind it are not held up, and the stale call never lands."""
    account, erc20 = _account(), tokens(paused)["WETH"]
    token = erc20.address
    async with HttpRpc(paused.info.rpc_url) as chain:
        fees = (100 * GWEI, GWEI)
        tx_hash, raw = await _sign(account, chain, token, _approve_data(9), nonce=0, fees=fees)
        await chain.call("eth_sendRawTransaction", [raw])
        assert await chain.call("anvil_dropTransaction", [tx_hash]) is not None
        watch = MiningWatch(chain, account.address.lower(), journal,
                            FeePolicy(1000 * GWEI, GWEI), check_every=0.05)
        pending = Pending(None, 0, fees, 100_000, 10**18, [tx_hash], {tx_hash: raw})

        async def stale(nonce: int, fees: tuple[int, int]) -> tuple[str, str]:
            raise AssertionError("a stale liquidation must not be re-signed")

        async def cancel(nonce: int, fees: tuple[int, int]) -> tuple[str, str]:
            signed = account.sign_transaction({
                "type": 2, "chainId": chain.chain_id, "nonce": nonce, "to": account.address,
                "value": 0, "gas": 21_000, "maxFeePerGas": fees[0],
                "maxPriorityFeePerGas": fees[1]})
            return "0x" + bytes(signed.hash).hex(), "0x" + bytes(signed.raw_transaction).hex()

        watching = asyncio.create_task(watch.mined(pending, stale, lambda: False, cancel))
        deadline = time.monotonic() + TIMEOUT
        while not pending.cancels:
            assert time.monotonic() < deadline, "never cancelled"
            await asyncio.sleep(0.01)
        await chain.call("evm_mine", [])
        mined = await asyncio.wait_for(watching, TIMEOUT)
    assert mined.tx_hash in pending.cancels and mined.receipt is not None
    assert pending.resent == 0  # never re-sent blindly
    assert erc20.functions.allowance(account.address, "0x" + "77" * 20).call() == 0
