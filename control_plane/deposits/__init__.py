"""Top-ups: USDT deposits to watch-only addresses (TRON, BSC, Polygon) and card checkout, credited
to the ledger exactly once, with the minimum deposit and the volume bonus applied."""
