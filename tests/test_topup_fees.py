"""The card top-up fee (TOLLGATE_TOPUP_FEE_PERCENT): the checkout charges credit plus fee, the signed
webhook splits the paid total back, credits the credit (with its tier bonus), posts the fee as its
own ledger transaction and invoices both; with no fee set nothing changes."""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from helpers import redis_balance, sql_balance
from sqlalchemy import select

from control_plane import db
from control_plane import settings as settings_module
from control_plane.app import create_app
from control_plane.billing import invoices, profiles, topup_fees
from control_plane.deposits import payments
from control_plane.models import LedgerAccount, LedgerEntry, LedgerTransaction

SECRET = "whsec_fee_secret"
TEMPLATE = "https://pay.example.com/checkout?ref={account_id}&cents={amount_cents}&usd={amount_usd}"


def fee_settings(tollgate_env, percent: str | None):
    return settings_module.load({**tollgate_env, "TOLLGATE_PAYMENT_WEBHOOK_SECRET": SECRET,
                                 "TOLLGATE_PAYMENT_CHECKOUT_URL": TEMPLATE, "TOLLGATE_TAX_RULES": "DE:19,*:0",
                                 **({"TOLLGATE_TOPUP_FEE_PERCENT": percent} if percent else {})})


@pytest.fixture
def with_fee(tollgate_env):
    return fee_settings(tollgate_env, "3")


def client_for(settings):
    return create_app({"TESTING": True, "TOLLGATE_SETTINGS": settings}).test_client()


def paid(client, account_id: int, cents: int, event_id: str = "evt_fee"):
    body = json.dumps({"id": event_id, "type": "checkout.session.completed", "data": {"object": {
        "client_reference_id": str(account_id), "amount_total": cents, "currency": "usd",
        "payment_status": "paid"}}}).encode()
    timestamp = int(time.time())
    return client.post("/api/v1/webhooks/payments", data=body, headers={
        "Stripe-Signature": f"t={timestamp},v1={payments.sign(SECRET, timestamp, body)}"})


def legs(settings, key: str) -> tuple[LedgerTransaction, dict[str, int]]:
    with db.read_session(settings) as session:
        transaction = session.scalar(select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key))
        return transaction, dict(session.execute(
            select(LedgerAccount.code, LedgerEntry.amount).join(LedgerEntry)
            .where(LedgerEntry.transaction_id == transaction.id)).all())


def test_a_paid_total_is_split_into_credit_and_a_fee_transaction(with_fee, redis_client, customer):
    before = sql_balance(with_fee, customer.account.id)
    response = paid(client_for(with_fee), customer.account.id, 10_300)  # $100 credit + $3 fee
    assert response.get_json() == {"received": True, "credited": True}
    assert sql_balance(with_fee, customer.account.id) == before + 105_000_000_000  # $100 + its 5 % bonus
    assert redis_balance(with_fee, redis_client, customer.account.id) == before + 105_000_000_000
    _deposit, deposit_legs = legs(with_fee, "payment:evt_fee")
    assert deposit_legs == {f"wallet:{customer.account.id}": 100_000_000_000, "system:deposits": -100_000_000_000}
    fee, fee_legs = legs(with_fee, "fee:payment:evt_fee")
    assert (fee.kind, fee.account_id, fee.published, fee.description) == (
        "fee", customer.account.id, True, "Card top-up fee 3% on $100.00")
    assert fee_legs == {"system:fees": 3_000_000_000, "system:deposits": -3_000_000_000}


def test_a_replayed_event_posts_no_second_fee(with_fee, customer):
    client = client_for(with_fee)
    paid(client, customer.account.id, 10_300)
    assert paid(client, customer.account.id, 10_300).get_json() == {"received": True, "credited": False}
    with db.read_session(with_fee) as session:
        assert len(list(session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "fee")))) == 1


def test_the_invoice_of_a_card_top_up_has_its_fee_line_and_total_paid(with_fee, customer):
    with db.session_scope(with_fee) as session:
        profiles.save(session, customer.account.id, legal_name="Kunde GmbH", address="", country="DE", tax_id="",
                      invoice_email="")
    paid(client_for(with_fee), customer.account.id, 10_300)  # the webhook issues it at once
    with db.read_session(with_fee) as session:
        [invoice] = [row for row in invoices.for_account(session, customer.account.id) if row.transaction_id ==
                     legs(with_fee, "payment:evt_fee")[0].id]
        document = invoices.document(invoice)
    assert document.lines == [
        {"kind": "credit", "description": "Prepaid API credit (payment on account)", "amount_nano": 105_000_000_000},
        {"kind": "discount", "description": "Top-up bonus 5%", "amount_nano": -5_000_000_000},
        {"kind": "fee", "description": "Card top-up fee 3%", "amount_nano": 3_000_000_000}]
    assert (document.total_nano, document.net_nano, document.tax_nano) == (
        103_000_000_000, 86_554_621_849, 16_445_378_151)
    assert document.payment == {"method": "card", "reference": "evt_fee"}


def test_the_checkout_url_charges_the_credit_and_its_fee(with_fee, customer):
    response = client_for(with_fee).post("/api/v1/checkout", json={"amount": "25.50"},
                                         headers={"Authorization": f"Bearer {customer.plaintext}"})
    assert response.status_code == 200
    answer = json.loads(response.get_data(as_text=True), parse_float=Decimal)
    # 3 % of 2550 cents is 76.5: rounded half-up, 77.
    assert answer == {"url": f"https://pay.example.com/checkout?ref={customer.account.id}&cents=2627&usd=26.27",
                      "amount": Decimal("25.5"), "amount_nano": 25_500_000_000, "fee": Decimal("0.77"),
                      "fee_nano": 770_000_000, "total": Decimal("26.27"), "total_nano": 26_270_000_000}


def test_a_checkout_whose_total_with_the_fee_is_over_the_limit_is_refused(with_fee, customer):
    response = client_for(with_fee).post("/api/v1/checkout", json={"amount": "1000000"},
                                         headers={"Authorization": f"Bearer {customer.plaintext}"})
    assert response.status_code == 400
    assert "with the card top-up fee of 3%" in response.get_json()["error"]["message"]


def test_without_a_fee_the_whole_total_is_credited_and_no_fee_posted(tollgate_env, customer):
    settings = fee_settings(tollgate_env, None)
    before = sql_balance(settings, customer.account.id)
    client = client_for(settings)
    paid(client, customer.account.id, 2_599)
    assert sql_balance(settings, customer.account.id) == before + 25_990_000_000
    with db.read_session(settings) as session:
        assert session.scalar(select(LedgerTransaction).where(LedgerTransaction.kind == "fee")) is None
    answer = client.post("/api/v1/checkout", json={"amount": "25.5"},
                         headers={"Authorization": f"Bearer {customer.plaintext}"}).get_json()
    assert (answer["url"].split("?")[1], answer["fee_nano"], answer["total_nano"]) == (
        f"ref={customer.account.id}&cents=2550&usd=25.50", 0, 25_500_000_000)


@pytest.mark.parametrize("percent", ["0", "1", "2.9", "3", "7.5", "33.3333", "100"])
def test_the_webhook_splits_back_exactly_what_the_checkout_charged(percent):
    rate = Decimal(percent)
    for credit in (*range(1, 3000), 99_999_999, 100_000_000):
        fee = topup_fees.fee_cents(credit, rate)
        assert topup_fees.split_cents(credit + fee, rate) == (credit, fee)


def test_fee_rounding_is_half_up_to_the_cent():
    assert topup_fees.fee_cents(2550, Decimal(3)) == 77  # 76.5
    assert topup_fees.fee_cents(2549, Decimal(3)) == 76  # 76.47
    assert topup_fees.split_cents(2627, Decimal(3)) == (2550, 77)


def test_the_consoles_card_checkout_charges_the_credit_and_its_fee(with_fee, make_customer):
    from console_client import PASSWORD, ConsoleClient

    from control_plane.accounts import passwords
    from control_plane.models import Account, utcnow

    customer = make_customer("fees@example.com", None)
    with db.session_scope(with_fee) as session:
        account = session.get(Account, customer.account.id)
        account.password_hash, account.email_verified_at = passwords.hash_password(PASSWORD), utcnow()
        email = account.email
    client = ConsoleClient(app=create_app({"TESTING": True, "TOLLGATE_SETTINGS": with_fee}))
    try:
        client.log_in(email, PASSWORD)
        page = client.get("/console/topup").text
        assert "A card top-up fee of 3% is charged on top of it." in " ".join(page.split())
        response = client.post_form("/console/topup/checkout", {"amount": "25.50"}, follow=False)
        # $25.50 of credit and 3% of it, 76.5 cents rounded half-up to 77: 2,627 cents in all.
        assert response.status_code == 303
        assert response.headers["Location"] == (f"https://pay.example.com/checkout?ref={customer.account.id}"
                                                "&cents=2627&usd=26.27")
    finally:
        client.close()
