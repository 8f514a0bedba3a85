"""Transactions /console/transactions: the account's ledger rows, newest first."""
from __future__ import annotations
