"""Intake before the block: a feed's next answer read from its oracle transaction while
that transaction is still pending (the public pool) or only announced (a builder's
MEV-Share hint stream), so the keeper answers in the same block as the update.

`answers` decodes an OCR2 `transmit` (a pending transaction, or a hint's calldata) into
a `PendingAnswer`; `sources` are where they come from (`eth_subscribe
newPendingTransactions` with full transactions, polling the pool with `txpool_content`,
the hint stream's server-sent events); `react` hands each new answer to the prepared
liquidations (keeper/prepared.py), the same path a mined `AnswerUpdated` log takes, with
the oracle transaction as the target of a backrun. docs/execution.md describes it.
"""
