"""Parity of the Maker strategy with the chain across a crash.

For every seeded vault: the book's ink, art and the ilk's rate and spot equal Vat.urns /
Vat.ilks, and its safety equals `ink * spot < art * rate` read on chain; for every unsafe
vault Dog.bark's outcome (an `eth_call` as the keeper contract) equals math.bark_plan's
(success or the same revert reason); after the barks, the Dog's Dirt and every Clipper
sale equal the chain's; and block by block while the auctions run, Clipper.getStatus's
(needsRedo, price) equals Clipper.status mirrored from the ilk's calculator, on ETH-B's
LinearDecrease and ETH-C's StairstepExponentialDecrease. The liquidation curve (`keeper
risk`) at a 15 % drop, taken before the crash, names as many liquidatable vaults as the
crash to $1,700 (-15 %) leaves unsafe.
"""

from __future__ import annotations

from decimal import Decimal

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError

from keeper.chain.follower import block_ref
from keeper.chain.http import HttpRpc
from keeper.devnet import maker as mcd
from keeper.devnet.crash import CrashStep, apply_step
from keeper.devnet.maker_keeper import maker_keeper_artifact
from strategies.maker import math
from strategies.maker.book import ilk_word
from strategies.maker.strategy import MakerStrategy
from tests.conftest import Devnet
from tests.integration.maker_helpers import feed, keeper_contract, strategy


def _ilk(name: str) -> bytes:
    return bytes.fromhex(ilk_word(name)[2:])


def _vault_parity(devnet: Devnet, book: MakerStrategy) -> int:
    """Assert the book equals the Vat for every seeded vault; the number unsafe."""
    info = devnet.info.maker
    assert info is not None
    vat = mcd.contract(devnet.w3, "Vat", info.vat)
    unsafe = 0
    for name in ("ETH-A", "ETH-B", "ETH-C"):
        art_total, rate, spot, line, dust = vat.functions.ilks(_ilk(name)).call()
        state = book.book.ilks[name]
        assert (state.Art, state.rate, state.spot, state.line, state.dust) == (
            art_total, rate, spot, line, dust), name
    for vault in info.vaults:
        ink, art = vat.functions.urns(_ilk(vault.ilk), vault.urn).call()
        mine = book.book.urn(vault.ilk, vault.urn)
        assert (mine.ink, mine.art) == (ink, art), vault
        _a, rate, spot, _l, _d = vat.functions.ilks(_ilk(vault.ilk)).call()
        assert book.book.is_unsafe(vault.ilk, vault.urn) == (ink * spot < art * rate)
        unsafe += ink * spot < art * rate
    return unsafe


def _sent(devnet: Devnet, tx_hash: HexBytes) -> None:
    """Wait for the receipt (automine can answer before it exists); it must succeed."""
    assert devnet.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)["status"] == 1


def _step(devnet: Devnet, seconds: int) -> None:
    devnet.rpc("evm_increaseTime", seconds)
    devnet.rpc("evm_mine")


async def test_vaults_barks_and_auction_prices_match_the_chain(maker: Devnet) -> None:
    info = maker.info.maker
    assert info is not None
    contract = keeper_contract(maker)
    chain = await HttpRpc.open(maker.info.rpc_url, timeout=60)
    try:
        mine = strategy(maker, contract)
        head = block_ref(await chain.call("eth_getBlockByNumber", ["latest", False]))
        await mine.sync(chain, head)
        assert _vault_parity(maker, mine) == 0
        # A Jug drip (rate moves by a fold note) and the crash: pip, Spotter.poke (file spot).
        _step(maker, 86_400)
        jug = mcd.contract(maker.w3, "Jug", info.jug)
        sender = Web3.to_checksum_address(maker.info.accounts.liquidator)
        for name in ("ETH-B", "ETH-C"):
            _sent(maker, jug.functions.drip(_ilk(name)).transact({"from": sender}))
        dripped = maker.w3.eth.block_number
        await feed(chain, mine, head.number + 1, dripped)
        # The risk view's curve (CurveSource) at the crash's 15 % drop, before it happens.
        curve = {p.drop_pct: p for p in mine.liquidation_curve(head, [0, 15])}
        assert curve[0].liquidatable == 0 and curve[15].positions == 18
        apply_step(maker.w3, maker.info, CrashStep(0, "t", {"WETH": Decimal("1700")}, None))
        await feed(chain, mine, dripped + 1, maker.w3.eth.block_number)
        unsafe = _vault_parity(maker, mine)
        assert unsafe >= 6, unsafe
        watched = sum(len(mine.book.unsafe(name)) for name in ("ETH-B", "ETH-C"))
        assert curve[15].liquidatable == watched, (curve[15], watched)

        # Dog.bark as the keeper contract, for every unsafe Dog-liquidated vault, in order.
        dog = mcd.contract(maker.w3, "Dog", info.dog)
        keeper = maker.w3.eth.contract(address=Web3.to_checksum_address(contract),
                                       abi=maker_keeper_artifact().abi)
        outcomes: dict[str, int] = {}
        for name in ("ETH-B", "ETH-C"):
            for urn, vault in mine.book.unsafe(name):
                assert mine.clips is not None
                state = mine.book.ilks[name]
                plan = math.bark_plan(vault.ink, vault.art, state.rate, state.spot,
                                      dust=state.dust, dog=mine.clips.dog_ilk(name))
                call = dog.functions.bark(_ilk(name), Web3.to_checksum_address(urn), contract)
                try:
                    call.call({"from": contract})
                    chain_says = "ok"
                except ContractLogicError as exc:
                    chain_says = str(exc.message).removeprefix("execution reverted: ")
                expected = plan if isinstance(plan, str) else "ok"
                assert chain_says == expected, (name, urn, chain_says, expected)
                outcomes[expected] = outcomes.get(expected, 0) + 1
                if expected == "ok":
                    start = maker.w3.eth.block_number + 1
                    _sent(maker, keeper.functions.bark(info.dog, _ilk(name),
                          Web3.to_checksum_address(urn)).transact({"from": sender}))
                    await feed(chain, mine, start, maker.w3.eth.block_number)
        # ETH-C's hole (1,000 DAI) fills: the rest are refused, with Dog's own reason.
        assert outcomes.get("ok", 0) >= 3 and len(outcomes) >= 2, outcomes
        assert mine.clips is not None
        assert mine.clips.Dirt == dog.functions.Dirt().call()
        # Clipper prices block by block over 40 minutes, both calculators, and redo's need.
        checked = 0
        for _ in range(16):
            _step(maker, 150)
            block = block_ref(await chain.call("eth_getBlockByNumber", ["latest", False]))
            for name in ("ETH-B", "ETH-C"):
                ilk = mine.clips.ilks[name]
                clip = mcd.contract(maker.w3, "Clipper", info.ilks[name].auction)
                for sale in ilk.sales.values():
                    _pos, tab, lot, usr, tic, top = clip.functions.sales(sale.id).call()
                    assert (sale.tab, sale.lot, sale.usr, sale.tic, sale.top) == (
                        tab, lot, usr.lower(), tic, top)
                    needs_redo, price, _lot, _tab = clip.functions.getStatus(sale.id).call(
                        block_identifier=block.number)
                    assert math.status(ilk.params, sale.tic, sale.top, block.timestamp) == (
                        needs_redo, price)
                    checked += 1
        assert checked >= 16 * 3, checked
        print(f"\nmaker parity: {unsafe} unsafe vaults after the crash, bark outcomes {outcomes}"
              f", {checked} Clipper prices checked")
    finally:
        await chain.aclose()
