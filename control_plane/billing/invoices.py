"""Numbered invoices and credit notes, issued from the ledger.

Every credited payment (a `deposit` transaction: an on-chain deposit or a card checkout, a
payment on account) gets an invoice, and every refund of one (`refund:payment:…`) a credit note
referring to it. `issue_pending` issues those that have none yet, in ledger order (an invoice
before its credit notes); it runs right after a card payment's or a refund's commit
(`issue_pending_now`) and in the worker's housekeeping, which covers deposits the chain watchers
credit and payments made before invoicing existed.

An invoice of payment D (credit C, its tier bonus B under `bonus:<D key>`, its card fee F under
`fee:<D key>`) has the lines credit C + B, discount −B, fee F; its total C + F is what was paid.
Amounts are gross: payments are tax-inclusive, and the invoice states the tax in its total
(billing/tax.py). A credit note of refund R has the line −R, the rate of its invoice, and total −R.

Numbers: `<series prefix><sequence:06d>`, the prefix being TOLLGATE_INVOICE_SERIES (or
TOLLGATE_CREDIT_NOTE_SERIES) with {year} the issue year (UTC). The sequence is the series row's
last_number + 1, incremented in the SQL transaction that inserts the invoice, with the series rows
locked first (PostgreSQL; SQLite's writer lock serializes issuers already): concurrent issuers
take turns, so numbers are gapless and never shared, and a rolled-back issue gives its numbers
back. A payment has one invoice (transaction_id is unique): an issuer that loses a race rolls
back and tries again.

The issuer (TOLLGATE_INVOICE_ISSUER), the customer (billing profile and account e-mail, or the
profile's invoice e-mail) and the tax terms are copied in at issue time. Issued invoices are
immutable: the ORM refuses to change or delete one here, migration 0010's triggers in the database.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import event, exists, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Delete, Update

from .. import db
from ..deposits import tokens
from ..models import (
    Account,
    Deposit,
    Invoice,
    InvoiceSeries,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    utcnow,
)
from ..settings import Settings
from . import ledger, profiles, refunds, tax, topup_fees

log = logging.getLogger(__name__)

IMMUTABLE = "an issued invoice cannot be changed"
CARD_PREFIX = "payment:"  # a card checkout's deposit key: payment:<event id>
USDT_RATE = "1 USDT = 1 USD"
ATTEMPTS = 5  # of issue_pending_now, against concurrent issuers
# The percent in a bonus transaction's description (deposits/ledger.py) and a fee's (topup_fees).
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)%")


class InvoiceIsImmutable(Exception):
    pass


@dataclass(frozen=True)
class InvoiceDocument:
    """An issued invoice or credit note as its documents show it (JSON columns read)."""

    number: str
    kind: str  # invoice, credit_note
    issued_at: datetime
    paid_at: datetime  # the payment's or the refund's ledger time
    time_zone: str  # the account's, at issue: the document shows its dates in it
    currency: str
    issuer: dict  # name, address, country, tax_id, email
    customer: dict  # the same fields
    lines: list[dict]  # kind, description, amount_nano (gross; they sum to total_nano)
    tax_rate: Decimal  # percent
    reverse_charge: bool
    net_nano: int
    tax_nano: int
    total_nano: int  # negative on a credit note
    payment: dict  # method card (reference: the event id) or usdt (chain, tx_hash, rate, amount)
    note: str  # the reverse-charge note, or ""
    refers_to: str | None  # the number of the invoice a credit note corrects
    account_id: int
    transaction_id: int


def issue_pending(session: Session, settings: Settings) -> list[Invoice]:
    """Issue an invoice for every payment and a credit note for every payment refund that has
    none yet, in ledger order; the new ones. The caller commits (IntegrityError when a
    concurrent issuer got one first, at the turn of a year: roll back and call again)."""
    if not _pending(session):
        return []
    now = utcnow()
    prefixes = {"invoice": _prefix(settings.invoice_series, now),
                "credit_note": _prefix(settings.credit_note_series, now)}
    _lock_series(session, sorted(set(prefixes.values())))
    issued = []
    for transaction in _pending(session):  # again: an issuer we waited for may have issued some
        if transaction.kind == "deposit":
            values = _invoice(session, settings, transaction)
        else:
            values = _credit_note(session, settings, transaction)
            if values is None:
                continue
        prefix = prefixes[values["kind"]]
        sequence = session.execute(update(InvoiceSeries).where(InvoiceSeries.prefix == prefix)
                                   .values(last_number=InvoiceSeries.last_number + 1)
                                   .returning(InvoiceSeries.last_number)).scalar_one()
        invoice = Invoice(number=f"{prefix}{sequence:06d}", prefix=prefix, sequence=sequence, issued_at=now,
                          account_id=transaction.account_id, transaction_id=transaction.id,
                          paid_at=transaction.created_at, currency="USD", **values)
        session.add(invoice)
        session.flush()
        issued.append(invoice)
    return issued


def issue_pending_now(settings: Settings) -> int:
    """issue_pending in a transaction of its own, committed, tried again when a concurrent
    issuer won a race (a payment invoiced meanwhile, a deadlock); how many were issued."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with db.session_scope(settings) as session:
                return len(issue_pending(session, settings))
        except (IntegrityError, OperationalError) as exc:
            if attempt == ATTEMPTS:
                raise
            log.info("invoices: a concurrent issuer got there first (%s); trying again", type(exc).__name__)
    raise AssertionError("unreachable")


def for_account(session: Session, account_id: int) -> list[Invoice]:
    """The account's invoices and credit notes, newest first."""
    return list(session.scalars(select(Invoice).where(Invoice.account_id == account_id)
                                .order_by(Invoice.id.desc())))


def by_number(session: Session, number: str) -> Invoice | None:
    return session.scalar(select(Invoice).where(Invoice.number == number.strip()))


def document(invoice: Invoice) -> InvoiceDocument:
    payment = json.loads(invoice.payment)
    return InvoiceDocument(
        number=invoice.number, kind=invoice.kind, issued_at=invoice.issued_at, paid_at=invoice.paid_at,
        time_zone=invoice.time_zone, currency=invoice.currency, issuer=json.loads(invoice.issuer),
        customer=json.loads(invoice.customer), lines=json.loads(invoice.lines), tax_rate=Decimal(invoice.tax_rate),
        reverse_charge=invoice.reverse_charge, net_nano=invoice.net_nano, tax_nano=invoice.tax_nano,
        total_nano=invoice.total_nano, payment=payment, note=invoice.note,
        refers_to=payment.get("invoice") if invoice.kind == "credit_note" else None,
        account_id=invoice.account_id, transaction_id=invoice.transaction_id)


# Issuing ----------------------------------------------------------------------------------------


def _pending(session: Session) -> list[LedgerTransaction]:
    """Payments and payment refunds without an invoice, in ledger order. Both move
    system:deposits, whose entries (a few per payment) are read by index, not the whole ledger."""
    deposits = select(LedgerAccount.id).where(LedgerAccount.code == ledger.DEPOSITS).scalar_subquery()
    return list(session.scalars(
        select(LedgerTransaction)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerEntry.ledger_account_id == deposits,
               (LedgerTransaction.kind == "deposit")
               | ((LedgerTransaction.kind == "refund")
                  & LedgerTransaction.idempotency_key.startswith(refunds.REFUND_PREFIX)),
               ~exists().where(Invoice.transaction_id == LedgerTransaction.id))
        .order_by(LedgerTransaction.id)))


def _prefix(series: str, now: datetime) -> str:
    return series.replace("{year}", str(now.year))


def _lock_series(session: Session, prefixes: list[str]) -> None:
    """The series rows, made if missing and locked until the commit, in a fixed order (so two
    issuers cannot deadlock on them)."""
    session.execute(db.upsert(session, InvoiceSeries.__table__).values([
        {"prefix": prefix, "last_number": 0} for prefix in prefixes]).on_conflict_do_nothing())
    session.execute(select(InvoiceSeries.prefix).where(InvoiceSeries.prefix.in_(prefixes))
                    .order_by(InvoiceSeries.prefix).with_for_update())


def _invoice(session: Session, settings: Settings, payment: LedgerTransaction) -> dict:
    credit = _wallet_amount(session, payment)
    bonus_transaction = ledger.find(session, f"bonus:{payment.idempotency_key}")
    fee_transaction = ledger.find(session, topup_fees.fee_key(payment.idempotency_key))
    bonus = _wallet_amount(session, bonus_transaction) if bonus_transaction is not None else 0
    fee = _leg(session, fee_transaction, topup_fees.FEES) if fee_transaction is not None else 0
    lines = [_line("credit", "Prepaid API credit (payment on account)", credit + bonus)]
    if bonus:
        lines.append(_line("discount", _with_percent("Top-up bonus", bonus_transaction), -bonus))
    if fee:
        lines.append(_line("fee", _with_percent("Card top-up fee", fee_transaction), fee))
    terms = tax.terms(settings, profiles.get(session, payment.account_id))
    return _values(session, settings, "invoice", payment.account_id, lines, terms.rate, terms.reverse_charge,
                   terms.note, _payment(session, settings, payment))


def _credit_note(session: Session, settings: Settings, refund: LedgerTransaction) -> dict | None:
    """The credit note's values; None while the refunded payment has no invoice (the next run)."""
    payment_id = int(refund.idempotency_key.removeprefix(refunds.REFUND_PREFIX).split(":")[0])
    invoice = session.scalar(select(Invoice).where(Invoice.transaction_id == payment_id))
    if invoice is None:
        return None
    amount = -_wallet_amount(session, refund)
    lines = [_line("refund", f"Refund of prepaid API credit (invoice {invoice.number})", -amount)]
    payment = {**json.loads(invoice.payment), "invoice": invoice.number}
    return {**_values(session, settings, "credit_note", refund.account_id, lines, Decimal(invoice.tax_rate),
                      invoice.reverse_charge, invoice.note, payment), "invoice_id": invoice.id}


def _values(session: Session, settings: Settings, kind: str, account_id: int, lines: list[dict], rate: Decimal,
            reverse_charge: bool, note: str, payment: dict) -> dict:
    total = sum(line["amount_nano"] for line in lines)
    net, tax_nano = tax.split_inclusive(total, rate)
    account = session.get(Account, account_id)
    return {"kind": kind, "time_zone": account.time_zone, "issuer": _json(dataclasses.asdict(settings.invoice_issuer)),
            "customer": _json(_customer(session, account)), "lines": _json(lines), "tax_rate": str(rate),
            "reverse_charge": reverse_charge, "net_nano": net, "tax_nano": tax_nano, "total_nano": total,
            "payment": _json(payment), "note": note}


def _customer(session: Session, account: Account) -> dict:
    profile = profiles.get(session, account.id)
    if profile is None:
        return {"name": "", "address": "", "country": "", "tax_id": "", "email": account.email}
    return {"name": profile.legal_name, "address": profile.address, "country": profile.country,
            "tax_id": profile.tax_id, "email": profile.invoice_email or account.email}


def _payment(session: Session, settings: Settings, payment: LedgerTransaction) -> dict:
    """How it was paid: a card checkout (its event id), USDT (chain, tx hash, the token amount),
    or, for a deposit posted otherwise, its ledger key."""
    key = payment.idempotency_key
    if key.startswith(CARD_PREFIX):
        return {"method": "card", "reference": key.removeprefix(CARD_PREFIX)}
    deposit = session.scalar(select(Deposit).where(Deposit.transaction_id == payment.id))
    if deposit is None:
        return {"method": "other", "reference": key}
    return {"method": "usdt", "chain": deposit.chain, "tx_hash": deposit.tx_hash, "rate": USDT_RATE,
            "amount": _token_amount(settings, deposit)}


def _token_amount(settings: Settings, deposit: Deposit) -> str:
    """The USDT that arrived, exactly ("100.5"): base units by the token's decimals."""
    for token in (*tokens.accepted(settings), *tokens.USDT):
        if token.chain == deposit.chain and token.contract == deposit.token_contract:  # as recorded
            return _plain(Decimal(deposit.amount).scaleb(-token.decimals))
    return _plain(Decimal(deposit.amount_nano).scaleb(-tokens.NANO_DIGITS))


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _with_percent(label: str, transaction: LedgerTransaction) -> str:
    found = _PERCENT.search(transaction.description)
    return f"{label} {found.group(1)}%" if found else label


def _line(kind: str, description: str, amount_nano: int) -> dict:
    return {"kind": kind, "description": description, "amount_nano": amount_nano}


def _wallet_amount(session: Session, transaction: LedgerTransaction) -> int:
    return _leg(session, transaction, ledger.wallet(transaction.account_id))


def _leg(session: Session, transaction: LedgerTransaction, code: str) -> int:
    return session.execute(select(LedgerEntry.amount).join(LedgerAccount).where(
        LedgerEntry.transaction_id == transaction.id, LedgerAccount.code == code)).scalar_one()


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)


# Immutability -----------------------------------------------------------------------------------


@event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, _context, _instances) -> None:
    for row in (*session.dirty, *session.deleted):
        if isinstance(row, Invoice) and (row in session.deleted or session.is_modified(row)):
            raise InvoiceIsImmutable(IMMUTABLE)


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_changes(execute_state) -> None:
    statement = execute_state.statement
    if isinstance(statement, Update | Delete) and statement.table.name == Invoice.__tablename__:
        raise InvoiceIsImmutable(IMMUTABLE)
