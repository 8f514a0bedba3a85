"""The Deposits page (/admin/deposits): every on-chain deposit and a rescan from a block."""
