"""Tollgate control plane: accounts, keys, the ledger, the usage worker and the operator CLI."""
