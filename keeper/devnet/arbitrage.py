"""A devnet arbitrageur: trades the devnet's Uniswap pools to the prices its feeds post.

On a live chain arbitrage keeps a pool within about its fee of the market, so a liquidator
that sells seized collateral on a DEX sells near the oracle's price. The devnet's pools
have nobody trading them: through a crash they stay at the deployed prices until the
keeper's own exits move them, and then stay where those left them. Both are artefacts (the
first makes every flash exit a windfall, the second makes later exits of the same
collateral look unprofitable, while a bot that holds the debt asset takes those positions).

`Arbitrageur.follow(prices)` brings every V2 pair and V3 pool whose two tokens have a USD
price to the ratio of those prices, with public transactions from its own account (anvil's
dev account 8, never used by the devnet): a V2 pair gets the input minted into it (the
devnet's tokens are publicly mintable) and `swap` for the output its invariant gives; a V3
pool is swapped through the SwapRouter with the target as `sqrtPriceLimitX96`, the input
minted to the arbitrageur first. Pools within `tolerance_bps` of the target are left alone.
The transactions are sent to `rpc_url` (the builder in builder mode) and land in the next
block; nothing waits for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, getcontext
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from keeper.devnet.deployer import rpc
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import mintable_erc20
from keeper.devnet.uniswap import pair_artifact
from keeper.devnet.uniswap_v3 import pool_artifact, router_artifact

ARBITRAGEUR_PATH = "m/44'/60'/0'/0/8"  # anvil dev account 8
MNEMONIC = "test test test test test test test test test test test junk"
MAX_UINT = 2**256 - 1
Q96 = 2**96
GAS = 12_000_000  # a V3 swap across many initialized ticks (a 27 % move: 3M was short)
V2_SWAP_GAS = 250_000
TOKEN_GAS = 120_000  # a mint or an approval

getcontext().prec = 60


class Arbitrageur:
    """Moves the devnet's pools to the feeds' prices (see the module docstring)."""

    def __init__(self, info: DevnetInfo, rpc_url: str, *, tolerance_bps: int = 20) -> None:
        Account.enable_unaudited_hdwallet_features()
        self.account: LocalAccount = Account.from_mnemonic(MNEMONIC,
                                                           account_path=ARBITRAGEUR_PATH)
        self.w3 = Web3(Web3.HTTPProvider(rpc_url))
        self.info = info
        self.tolerance_bps = tolerance_bps
        self._by_address = {t.address.lower(): s for s, t in info.tokens.items()}
        self._nonce: int | None = None
        self._approved: set[str] = set()  # tokens the router may take (and minted for it)
        self.sent = 0  # transactions sent, all steps

    def follow(self, prices: Mapping[str, Decimal]) -> int:
        """Trade every pool of two priced tokens to their price ratio; returns the
        transactions sent."""
        before = self.sent
        for pair in self.info.uniswap_v2.pairs.values():
            self._v2(pair, prices)
        if self.info.uniswap_v3 is not None:
            for pool in self.info.uniswap_v3.pools.values():
                self._v3(pool, prices)
        return self.sent - before

    # -- V2 -------------------------------------------------------------------------------

    def _v2(self, address: str, prices: Mapping[str, Decimal]) -> None:
        priced = self._priced(address, pair_artifact().abi, prices)
        if priced is None:
            return
        pair, token0, token1, target = priced
        r0, r1, _ = pair.functions.getReserves().call()
        if r0 == 0 or r1 == 0 or self._close(Decimal(r1) / Decimal(r0), target):
            return
        k = Decimal(r0) * Decimal(r1)
        want0 = int((k / target).sqrt())  # token0's reserve at the target price
        if want0 > r0:  # token0 is dear in the pool: sell token0 into it
            amount_in = (want0 - r0) * 1000 // 997 + 1
            out = amount_in * 997 * r1 // (r0 * 1000 + amount_in * 997)
            self._mint(token0, address, amount_in)
            self._send(pair.functions.swap(0, out, self.account.address, b""), V2_SWAP_GAS)
        else:
            want1 = int((k * target).sqrt())
            amount_in = (want1 - r1) * 1000 // 997 + 1
            out = amount_in * 997 * r0 // (r1 * 1000 + amount_in * 997)
            self._mint(token1, address, amount_in)
            self._send(pair.functions.swap(out, 0, self.account.address, b""), V2_SWAP_GAS)

    # -- V3 -------------------------------------------------------------------------------

    def _v3(self, address: str, prices: Mapping[str, Decimal]) -> None:
        v3 = self.info.uniswap_v3
        assert v3 is not None
        priced = self._priced(address, pool_artifact().abi, prices)
        if priced is None:
            return
        pool, token0, token1, target = priced
        sqrt_price = int(pool.functions.slot0().call()[0])
        current = (Decimal(sqrt_price) / Q96) ** 2
        if sqrt_price == 0 or self._close(current, target):
            return
        limit = int(target.sqrt() * Q96)
        zero_for_one = current > target  # token0 is dear: sell token0
        token_in, token_out = (token0, token1) if zero_for_one else (token1, token0)
        amount_in = 2**160  # more than any pool holds: the price limit stops the swap
        if token_in.lower() not in self._approved:  # minted once: far more than is used
            self._mint(token_in, self.account.address, 2**200)
            erc20 = self.w3.eth.contract(address=Web3.to_checksum_address(token_in),
                                         abi=mintable_erc20().abi)
            self._send(erc20.functions.approve(Web3.to_checksum_address(v3.router), MAX_UINT),
                       TOKEN_GAS)
            self._approved.add(token_in.lower())
        router = self.w3.eth.contract(address=Web3.to_checksum_address(v3.router),
                                      abi=router_artifact().abi)
        fee = int(pool.functions.fee().call())
        self._send(router.functions.exactInputSingle((
            Web3.to_checksum_address(token_in), Web3.to_checksum_address(token_out), fee,
            self.account.address, 2**63, amount_in, 0, limit)))

    # -- shared ---------------------------------------------------------------------------

    def _priced(self, address: str, abi: Any, prices: Mapping[str, Decimal],
                ) -> tuple[Any, str, str, Decimal] | None:
        """A pool (V2 pair or V3 pool: both have token0/token1), its tokens and the price
        it should have; None when a token has no price."""
        pool = self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
        token0, token1 = str(pool.functions.token0().call()), str(pool.functions.token1().call())
        target = self._target(token0, token1, prices)
        return None if target is None else (pool, token0, token1, target)

    def _target(self, token0: str, token1: str,
                prices: Mapping[str, Decimal]) -> Decimal | None:
        """The price of token0 in token1's smallest units per token0's, from USD prices."""
        s0, s1 = self._by_address.get(token0.lower()), self._by_address.get(token1.lower())
        if s0 is None or s1 is None or s0 not in prices or s1 not in prices:
            return None
        d0, d1 = self.info.tokens[s0].decimals, self.info.tokens[s1].decimals
        return prices[s0] / prices[s1] * Decimal(10) ** (d1 - d0)

    def _close(self, current: Decimal, target: Decimal) -> bool:
        return abs(current / target - 1) * 10_000 < self.tolerance_bps

    def _mint(self, token: str, to: str, amount: int) -> None:
        erc20 = self.w3.eth.contract(address=Web3.to_checksum_address(token),
                                     abi=mintable_erc20().abi)
        self._send(erc20.functions.mint(Web3.to_checksum_address(to), amount), TOKEN_GAS)

    def _send(self, call: Any, gas: int | None = None) -> None:
        """Sign and send `call` (its gas: `gas`, else its estimate with a margin)."""
        if self._nonce is None:
            self._nonce = int(rpc(self.w3, "eth_getTransactionCount", self.account.address,
                                  "pending"), 16)
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        if gas is None:
            try:  # a block has room for a few: never ask for more than the call needs
                gas = min(GAS, call.estimate_gas({"from": self.account.address}) * 3 // 2)
            except Exception:  # an earlier transaction of this step is not mined yet
                gas = GAS
        tx = call.build_transaction({
            "from": self.account.address, "nonce": self._nonce, "gas": gas, "chainId":
            self.info.chain_id, "maxFeePerGas": 2 * base + 10**9,
            "maxPriorityFeePerGas": 10**9})
        signed = self.account.sign_transaction(tx)
        rpc(self.w3, "eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
        self._nonce += 1
        self.sent += 1
