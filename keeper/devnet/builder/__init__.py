"""The devnet block builder: a devnet component (not part of the daemon) that fronts an
anvil that never mines by itself, takes public transactions, bundles (`eth_sendBundle`,
`mev_sendBundle`) and private transactions signed with `X-Flashbots-Signature`, streams
MEV-Share-style hints, and mines one block per interval ordered by what each bundle pays
the builder. Two endpoints with separate bundle pools are merged each block.

Modules: txs (raw transactions, the signature header), bundles (parsing, pools, merge),
chain (anvil JSON-RPC, one simulation step), block (the block-building algorithm), hints
(the SSE stream), server (the JSON-RPC endpoints), run (start/stop). docs/devnet.md
describes it for users.
"""

from keeper.devnet.builder.run import (
    DEFAULT_COINBASE,
    BuilderService,
    BuilderThread,
    builder_anvil,
    restart_for_builder,
    running_builder,
)
from keeper.devnet.builder.txs import SIGNATURE_HEADER, sign_body, verify_signature

__all__ = [
    "DEFAULT_COINBASE",
    "SIGNATURE_HEADER",
    "BuilderService",
    "BuilderThread",
    "builder_anvil",
    "restart_for_builder",
    "running_builder",
    "sign_body",
    "verify_signature",
]
