"""Invoice numbers under concurrency, on SQLite and PostgreSQL: threads crediting payments, refunding
some and issuing at once still give each series the numbers 1..N exactly, and each payment and
refund one document."""
from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select

from control_plane import db
from control_plane.accounts import accounts
from control_plane.billing import invoices, refunds
from control_plane.deposits import ledger as deposit_ledger
from control_plane.models import Invoice, InvoiceSeries, LedgerTransaction, utcnow

THREADS = 8
PAYMENTS_EACH = 5


def test_concurrent_credits_refunds_and_issuers_number_gaplessly_once_each(settings):
    with db.session_scope(settings) as session:
        account_ids = [accounts.create_account(session, f"buyer{n}@example.com").id for n in range(THREADS)]
    start = threading.Barrier(THREADS + 1)
    failures = []

    def buyer(account_id: int) -> None:
        try:
            start.wait()
            for n in range(PAYMENTS_EACH):
                with db.session_scope(settings) as session:
                    posted = deposit_ledger.credit_topup(session, settings, account_id, 20_000_000_000,
                                                         f"payment:evt_{account_id}_{n}", "Card top-up")
                    ids = [transaction.id for transaction in posted]
                deposit_ledger.publish(settings, ids)
                invoices.issue_pending_now(settings)
                if n % 2:  # refunds issue their credit notes themselves
                    refunds.refund(settings, account_id, ids[0], 1_000_000_000, "partial refund", 0)
        except Exception as exc:  # noqa: BLE001 (reported by the test)
            failures.append(exc)

    def issuer() -> None:
        try:
            start.wait()
            for _ in range(PAYMENTS_EACH * 2):
                invoices.issue_pending_now(settings)
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=buyer, args=(account_id,)) for account_id in account_ids]
    threads.append(threading.Thread(target=issuer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    invoices.issue_pending_now(settings)

    with db.read_session(settings) as session:
        rows = list(session.scalars(select(Invoice)))
        payments = set(session.scalars(select(LedgerTransaction.id).where(LedgerTransaction.kind == "deposit")))
        refunded = set(session.scalars(select(LedgerTransaction.id).where(LedgerTransaction.kind == "refund")))
    year = utcnow().year
    by_prefix = Counter(row.prefix for row in rows)
    assert by_prefix == {f"TG-{year}-": THREADS * PAYMENTS_EACH, f"TG-CN-{year}-": THREADS * (PAYMENTS_EACH // 2)}
    for prefix, count in by_prefix.items():
        assert sorted(row.sequence for row in rows if row.prefix == prefix) == list(range(1, count + 1))
    assert sorted(row.transaction_id for row in rows if row.kind == "invoice") == sorted(payments)
    assert sorted(row.transaction_id for row in rows if row.kind == "credit_note") == sorted(refunded)
    with db.read_session(settings) as session:
        assert dict(session.execute(select(InvoiceSeries.prefix, InvoiceSeries.last_number)).all()) == by_prefix
