"""A send that ran out of gas is a revert of ours, not a race lost to the market.

`outlived` asks whether the call would have succeeded at the block it was ranked at. It
must ask with the gas limit the send carried: a cross-margin Perp liquidation once ran out
of gas (2.60M used of a 2.60M limit), and asked without a limit the same call succeeded at
its ranked block, so the executor recorded the out-of-gas as "no longer liquidatable"
and hid a fault of its own sizing.
"""

from __future__ import annotations

from keeper.chain.http import HttpRpc
from keeper.execution.races import outlived
from tests.conftest import Devnet
from tests.integration.helpers import liquidator, tokens


async def test_a_call_valid_where_ranked_but_short_of_gas_is_not_outlived(
    devnet: Devnet,
) -> None:
    me = liquidator(devnet)
    weth = tokens(devnet)["WETH"]
    # A transfer of 1 wei to the deployer: valid, and about 35k gas with its storage writes.
    data = weth.encode_abi("transfer", [devnet.info.accounts.deployer, 1])
    async with HttpRpc(devnet.info.rpc_url) as chain:
        block = int(str(await chain.call("eth_blockNumber", [])), 16)
        ample = await outlived(chain, sender=me, to=weth.address, data=data,
                               ranked_at=block, gas_limit=200_000)
        short = await outlived(chain, sender=me, to=weth.address, data=data,
                               ranked_at=block, gas_limit=22_000)
        unlimited = await outlived(chain, sender=me, to=weth.address, data=data,
                                   ranked_at=block)
    assert ample and unlimited
    assert not short
