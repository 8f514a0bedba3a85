"""Transactions /console/transactions: the account's ledger rows, newest first.

The same rows as /api/v1/transactions (billing/wallet_history.py): each transaction that moved the
account's wallet and the exact amount it moved, paged by keyset ("Newer"/"Older").
"""
from __future__ import annotations

from flask import g, render_template

from ..billing import wallet_history
from . import console
from .paging import below_above, keyset_page
from .sessions import login_required, read_session


@console.get("/transactions")
@login_required
def transactions():
    entries = below_above(wallet_history.wallet_entries(g.account.id), wallet_history.CURSOR)
    page = keyset_page(read_session(), entries, wallet_history.CURSOR)
    return render_template("console/transactions.html", nav="transactions", page=page)
