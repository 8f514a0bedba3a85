"""Invoices and credit notes (billing/invoices.py), on SQLite and PostgreSQL: one per payment in a
gapless series, tax contained in what was paid (DE:19 here), reverse charge, the tax snapshot,
credit notes referring to their invoices, and immutability in the ORM and in the database."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.billing import invoices, ledger, profiles, refunds
from control_plane.deposits import ledger as deposit_ledger
from control_plane.models import Invoice, utcnow

TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
BSC_USDT = "0x55d398326f99059ff775485246999027b3197955"
ISSUER = {"name": "Tollgate Ops GmbH", "address": "Hauptstr. 1\n10115 Berlin", "country": "DE",
          "tax_id": "DE999999999", "email": "billing@tollgate.test"}
REVERSE_NOTE = "Reverse charge: VAT to be accounted for by the recipient."


@pytest.fixture
def tax_settings(tollgate_env):
    return settings_module.load({
        **tollgate_env, "TOLLGATE_TAX_RULES": "DE:19,AT:20,*:0", "TOLLGATE_TAX_REVERSE_CHARGE": "AT,FR",
        "TOLLGATE_TAX_REVERSE_CHARGE_NOTE": REVERSE_NOTE,
        **{f"TOLLGATE_INVOICE_ISSUER_{field.upper()}": value.replace("\n", "\\n") for field, value in ISSUER.items()}})


def year() -> int:
    return utcnow().year


def new_account(settings, email: str, **profile) -> int:
    with db.session_scope(settings) as session:
        account_id = accounts.create_account(session, email).id
        if profile:
            profiles.save(session, account_id, **{"legal_name": "", "address": "", "country": "", "tax_id": "",
                                                   "invoice_email": "", **profile})
    return account_id


def usdt_deposit(settings, account_id: int, base_units: int, tx: str = "ab", chain: str = "tron",
                 contract: str = TRON_USDT) -> int:
    """A confirmed on-chain deposit, credited and published as a watcher does; its transaction id."""
    with db.session_scope(settings) as session:
        deposit = deposit_ledger.record_deposit(
            session, chain=chain, tx_hash=tx * 32, log_index=0, account_id=account_id, token_contract=contract,
            amount=base_units, block_number=100, block_hash="b" * 64, status="confirmed")
        posted = [transaction.id for transaction in deposit_ledger.credit_deposit(session, settings, deposit)]
        payment_id = deposit.transaction_id
    deposit_ledger.publish(settings, posted)
    return payment_id


def card_payment(settings, account_id: int, amount_nano: int, event_id: str = "evt_1") -> int:
    with db.session_scope(settings) as session:
        posted = deposit_ledger.credit_topup(session, settings, account_id, amount_nano, f"payment:{event_id}",
                                             "Card top-up")
        ids = [transaction.id for transaction in posted]
    deposit_ledger.publish(settings, ids)
    return ids[0]


def issued(settings, account_id: int) -> list[invoices.InvoiceDocument]:
    """The account's documents, oldest first."""
    with db.read_session(settings) as session:
        return [invoices.document(row) for row in reversed(invoices.for_account(session, account_id))]


def test_a_usdt_deposit_with_a_bonus_is_invoiced_with_the_tax_it_contains(tax_settings):
    account_id = new_account(tax_settings, "berlin@example.com", legal_name="Kunde GmbH",
                             address="Torstr. 5\n10119 Berlin", country="de", tax_id="DE123456789")
    payment_id = usdt_deposit(tax_settings, account_id, 100_000_000)  # 100 USDT: the 5 % tier
    assert invoices.issue_pending_now(tax_settings) == 1
    [invoice] = issued(tax_settings, account_id)
    assert invoice.number == f"TG-{year()}-000001" and invoice.kind == "invoice"
    assert invoice.transaction_id == payment_id and invoice.refers_to is None
    assert invoice.lines == [
        {"kind": "credit", "description": "Prepaid API credit (payment on account)", "amount_nano": 105_000_000_000},
        {"kind": "discount", "description": "Top-up bonus 5%", "amount_nano": -5_000_000_000}]
    assert (invoice.total_nano, invoice.net_nano, invoice.tax_nano) == (100_000_000_000, 84_033_613_445,
                                                                          15_966_386_555)
    assert (invoice.tax_rate, invoice.reverse_charge, invoice.note) == (Decimal(19), False, "")
    assert invoice.payment == {"method": "usdt", "chain": "tron", "tx_hash": "ab" * 32, "rate": "1 USDT = 1 USD",
                               "amount": "100"}
    assert invoice.issuer == ISSUER
    assert invoice.customer == {"name": "Kunde GmbH", "address": "Torstr. 5\n10119 Berlin", "country": "DE",
                                "tax_id": "DE123456789", "email": "berlin@example.com"}
    assert (invoice.currency, invoice.time_zone) == ("USD", "UTC")
    assert invoices.issue_pending_now(tax_settings) == 0  # once per payment


def test_an_18_decimal_deposit_states_the_exact_token_amount(tax_settings):
    account_id = new_account(tax_settings, "bsc@example.com")
    usdt_deposit(tax_settings, account_id, 12_345_678_901_234_567_891, tx="cd", chain="bsc", contract=BSC_USDT)
    invoices.issue_pending_now(tax_settings)
    [invoice] = issued(tax_settings, account_id)
    assert invoice.payment["amount"] == "12.345678901234567891"
    # No profile: the '*' rate (0), the account's e-mail; the credited nano-USD (dust truncated) is the total.
    assert (invoice.total_nano, invoice.net_nano, invoice.tax_nano, invoice.tax_rate) == (
        12_345_678_901, 12_345_678_901, 0, Decimal(0))
    assert invoice.customer == {"name": "", "address": "", "country": "", "tax_id": "", "email": "bsc@example.com"}
    assert invoice.lines == [{"kind": "credit", "description": "Prepaid API credit (payment on account)",
                              "amount_nano": 12_345_678_901}]


def test_a_business_in_a_reverse_charge_country_pays_no_tax_and_gets_the_note(tax_settings):
    business = new_account(tax_settings, "wien@example.com", legal_name="Firma", country="AT", tax_id="ATU12345678",
                           invoice_email="rechnungen@example.com")
    consumer = new_account(tax_settings, "privat@example.com", country="AT")
    card_payment(tax_settings, business, 20_000_000_000, "evt_b")
    card_payment(tax_settings, consumer, 20_000_000_000, "evt_c")
    invoices.issue_pending_now(tax_settings)
    [to_business] = issued(tax_settings, business)
    assert (to_business.tax_rate, to_business.reverse_charge, to_business.note) == (Decimal(0), True, REVERSE_NOTE)
    assert (to_business.net_nano, to_business.tax_nano, to_business.total_nano) == (
        20_000_000_000, 0, 20_000_000_000)
    assert to_business.customer["email"] == "rechnungen@example.com"
    assert to_business.payment == {"method": "card", "reference": "evt_b"}
    [to_consumer] = issued(tax_settings, consumer)  # no tax id: AT's 20 %
    assert (to_consumer.tax_rate, to_consumer.reverse_charge, to_consumer.note) == (Decimal(20), False, "")
    assert (to_consumer.net_nano, to_consumer.tax_nano) == (16_666_666_667, 3_333_333_333)
    assert [to_business.number, to_consumer.number] == [f"TG-{year()}-000001", f"TG-{year()}-000002"]


def test_an_issued_invoice_keeps_its_snapshot_when_the_profile_changes(tax_settings):
    account_id = new_account(tax_settings, "moves@example.com", legal_name="Old Name", country="DE")
    card_payment(tax_settings, account_id, 50_000_000_000, "evt_1")
    invoices.issue_pending_now(tax_settings)
    with db.session_scope(tax_settings) as session:
        profiles.save(session, account_id, legal_name="New Name", address="Elsewhere 1", country="SG", tax_id="",
                      invoice_email="")
    card_payment(tax_settings, account_id, 50_000_000_000, "evt_2")
    invoices.issue_pending_now(tax_settings)
    first, second = issued(tax_settings, account_id)
    assert (first.customer["name"], first.customer["country"], first.tax_rate) == ("Old Name", "DE", Decimal(19))
    assert (first.net_nano, first.tax_nano) == (42_016_806_723, 7_983_193_277)
    assert (second.customer["name"], second.customer["address"], second.tax_rate) == (
        "New Name", "Elsewhere 1", Decimal(0))


def test_a_refund_issues_a_credit_note_referring_to_the_invoice(tax_settings):
    account_id = new_account(tax_settings, "refund@example.com", legal_name="Kunde", country="DE")
    payment_id = card_payment(tax_settings, account_id, 40_000_000_000)
    card_payment(tax_settings, account_id, 10_000_000_000, "evt_2")
    refunds.refund(tax_settings, account_id, payment_id, 10_000_000_000, "customer asked", 0)
    first, second, note = issued(tax_settings, account_id)  # both invoices first, in ledger order
    assert [first.number, second.number] == [f"TG-{year()}-000001", f"TG-{year()}-000002"]
    assert first.transaction_id == payment_id
    assert (note.kind, note.number, note.refers_to) == ("credit_note", f"TG-CN-{year()}-000001", first.number)
    assert note.lines == [{"kind": "refund", "description": f"Refund of prepaid API credit (invoice {first.number})",
                           "amount_nano": -10_000_000_000}]
    assert (note.total_nano, note.net_nano, note.tax_nano, note.tax_rate) == (
        -10_000_000_000, -8_403_361_345, -1_596_638_655, Decimal(19))
    assert note.payment == {"method": "card", "reference": "evt_1", "invoice": first.number}
    with db.read_session(tax_settings) as session:
        row = invoices.by_number(session, note.number)
        assert row.invoice_id == invoices.by_number(session, first.number).id


def test_a_credit_note_keeps_the_rate_of_its_invoice(tax_settings):
    account_id = new_account(tax_settings, "rate@example.com", country="DE")
    payment_id = card_payment(tax_settings, account_id, 30_000_000_000)
    invoices.issue_pending_now(tax_settings)
    with db.session_scope(tax_settings) as session:
        profiles.save(session, account_id, legal_name="Now in Singapore", address="", country="SG", tax_id="",
                      invoice_email="")
    refunds.refund(tax_settings, account_id, payment_id, 30_000_000_000, "closing the account", 0)
    _invoice, note = issued(tax_settings, account_id)
    assert (note.tax_rate, note.net_nano, note.tax_nano) == (Decimal(19), -25_210_084_034, -4_789_915_966)
    assert note.customer["name"] == "Now in Singapore"  # the parties as they stand at its issue


def test_numbers_are_gapless_in_ledger_order_and_each_series_counts_alone(tax_settings):
    account_id = new_account(tax_settings, "many@example.com")
    ids = [card_payment(tax_settings, account_id, 10_000_000_000, f"evt_{n}") for n in range(3)]
    invoices.issue_pending_now(tax_settings)
    refunds.refund(tax_settings, account_id, ids[1], 1_000_000_000, "partly", 0)
    refunds.refund(tax_settings, account_id, ids[1], 2_000_000_000, "partly again", 1)
    documents = issued(tax_settings, account_id)
    assert [(doc.number, doc.transaction_id if doc.kind == "invoice" else doc.refers_to) for doc in documents] == [
        (f"TG-{year()}-000001", ids[0]), (f"TG-{year()}-000002", ids[1]), (f"TG-{year()}-000003", ids[2]),
        (f"TG-CN-{year()}-000001", f"TG-{year()}-000002"), (f"TG-CN-{year()}-000002", f"TG-{year()}-000002")]


def test_a_deposit_posted_by_other_means_is_invoiced_with_its_key(tax_settings):
    account_id = new_account(tax_settings, "legacy@example.com")
    with db.session_scope(tax_settings) as session:
        ledger.credit(session, "deposit", account_id, 7_000_000_000, "bank:2024-01", "Bank transfer")
    invoices.issue_pending_now(tax_settings)
    [invoice] = issued(tax_settings, account_id)
    assert invoice.payment == {"method": "other", "reference": "bank:2024-01"}
    assert invoice.total_nano == 7_000_000_000


def _one_invoice(settings) -> int:
    account_id = new_account(settings, "fixed@example.com")
    card_payment(settings, account_id, 10_000_000_000)
    invoices.issue_pending_now(settings)
    with db.read_session(settings) as session:
        return invoices.for_account(session, account_id)[0].id


def test_the_orm_refuses_to_change_or_delete_an_invoice(tax_settings):
    invoice_id = _one_invoice(tax_settings)
    with pytest.raises(invoices.InvoiceIsImmutable), db.session_scope(tax_settings) as session:
        session.get(Invoice, invoice_id).total_nano = 1
    with pytest.raises(invoices.InvoiceIsImmutable), db.session_scope(tax_settings) as session:
        session.delete(session.get(Invoice, invoice_id))
    for statement in (update(Invoice).values(total_nano=1), delete(Invoice)):
        with pytest.raises(invoices.InvoiceIsImmutable), db.session_scope(tax_settings) as session:
            session.execute(statement)
    with db.read_session(tax_settings) as session:
        assert session.get(Invoice, invoice_id).total_nano == 10_000_000_000


@pytest.mark.parametrize("sql", ["UPDATE invoices SET total_nano = 1", "DELETE FROM invoices"])
def test_the_database_refuses_to_change_or_delete_an_invoice(tax_settings, sql):
    invoice_id = _one_invoice(tax_settings)
    with pytest.raises(DBAPIError, match="an issued invoice cannot be changed"), \
            db.engine_for(tax_settings.database_url).begin() as connection:
        connection.execute(text(sql))
    with db.read_session(tax_settings) as session:
        assert session.get(Invoice, invoice_id).total_nano == 10_000_000_000
