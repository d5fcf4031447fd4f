"""Oracle transactions seen before they are mined: decoding Chainlink OCR2 `transmit` calls."""
