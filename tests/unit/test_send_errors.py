"""keeper.execution.mining.classify_send_error: node refusals and the reaction each gets."""

from __future__ import annotations

import pytest

from keeper.execution.mining import classify_send_error


@pytest.mark.parametrize(
    ("message", "refusal"),
    [
        ("already known", "known"),
        ("Known transaction: 0xabc", "known"),
        ("nonce too low", "nonce-low"),
        ("nonce too low: next nonce 7, tx nonce 5", "nonce-low"),
        ("Nonce has already been used", "nonce-low"),
        ("replacement transaction underpriced", "underpriced"),
        ("transaction underpriced", "underpriced"),
        ("max fee per gas less than block base fee", "underpriced"),
        ("insufficient funds for gas * price + value", "funds"),
        ("execution reverted", "other"),
    ],
)
def test_refusals_are_classified(message: str, refusal: str) -> None:
    assert classify_send_error(message) == refusal
