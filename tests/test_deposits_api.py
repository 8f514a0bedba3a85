"""Top-up endpoints: the signed card webhook, checkout links and the deposit list."""
import json
import threading
import time

import pytest
from helpers import redis_balance, sql_balance
from sqlalchemy import select

from control_plane import db
from control_plane import settings as settings_module
from control_plane.app import create_app
from control_plane.billing import ledger
from control_plane.deposits import ledger as deposits
from control_plane.deposits import payments
from control_plane.models import LedgerTransaction

SECRET = "whsec_test_secret"
WEBHOOK = "/api/v1/webhooks/payments"
TEMPLATE = "https://pay.example.com/checkout?ref={account_id}&cents={amount_cents}&usd={amount_usd}"


@pytest.fixture
def pay_settings(tollgate_env):
    return settings_module.load({**tollgate_env, "TOLLGATE_PAYMENT_WEBHOOK_SECRET": SECRET,
                                 "TOLLGATE_PAYMENT_CHECKOUT_URL": TEMPLATE})


@pytest.fixture
def pay_client(pay_settings):
    return create_app({"TESTING": True, "TOLLGATE_SETTINGS": pay_settings}).test_client()


def _event(account_id, cents=2500, event_id="evt_1", kind="checkout.session.completed", currency="usd"):
    return json.dumps({"id": event_id, "type": kind, "data": {"object": {
        "id": "cs_1", "client_reference_id": str(account_id), "amount_total": cents, "currency": currency,
        "payment_status": "paid"}}}).encode()


def _post(client, body, timestamp=None, secret=SECRET, signatures=None):
    timestamp = int(time.time()) if timestamp is None else timestamp
    signatures = signatures or [payments.sign(secret, timestamp, body)]
    header = f"t={timestamp}," + ",".join(f"v1={value}" for value in signatures)
    return client.post(WEBHOOK, data=body, headers={"Stripe-Signature": header, "Content-Type": "application/json"})


def test_completed_checkout_credits_the_account_once_and_publishes(pay_settings, pay_client, redis_client, customer):
    before = sql_balance(pay_settings, customer.account.id)
    response = _post(pay_client, _event(customer.account.id, cents=2599))
    assert response.status_code == 200
    assert response.get_json() == {"received": True, "credited": True}
    assert sql_balance(pay_settings, customer.account.id) == before + 25_990_000_000
    assert redis_balance(pay_settings, redis_client, customer.account.id) == before + 25_990_000_000
    with db.session_scope(pay_settings) as session:
        keys = set(session.scalars(select(LedgerTransaction.idempotency_key)))
    assert "payment:evt_1" in keys


def test_replayed_event_is_acknowledged_without_a_second_credit(pay_settings, pay_client, customer):
    before = sql_balance(pay_settings, customer.account.id)
    body = _event(customer.account.id)
    assert _post(pay_client, body).get_json()["credited"] is True
    replay = _post(pay_client, body)
    assert replay.status_code == 200
    assert replay.get_json() == {"received": True, "credited": False}
    assert sql_balance(pay_settings, customer.account.id) == before + 25 * 10**9


def test_concurrent_deliveries_of_one_event_credit_once(pay_settings, pay_client, customer):
    before = sql_balance(pay_settings, customer.account.id)
    body = _event(customer.account.id, cents=10_000, event_id="evt_race")
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(_post(pay_client, body).status_code)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 5
    assert sql_balance(pay_settings, customer.account.id) == before + 105 * 10**9  # $100 + 5 % bonus


def test_card_topup_gets_the_tier_bonus_as_its_own_transaction(pay_settings, pay_client, customer):
    _post(pay_client, _event(customer.account.id, cents=5000, event_id="evt_b"))
    with db.session_scope(pay_settings) as session:
        bonus = session.scalar(
            select(LedgerTransaction).where(LedgerTransaction.idempotency_key == "bonus:payment:evt_b"))
        assert bonus.kind == "bonus"
        assert ledger.account_balance(session, customer.account.id) == (10 + 50 + 1) * 10**9


def test_bad_signature_is_400_and_credits_nothing(pay_settings, pay_client, customer):
    before = sql_balance(pay_settings, customer.account.id)
    response = _post(pay_client, _event(customer.account.id), secret="whsec_wrong")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_signature"
    assert sql_balance(pay_settings, customer.account.id) == before


def test_tampered_body_is_400(pay_client, customer):
    timestamp = int(time.time())
    signature = payments.sign(SECRET, timestamp, _event(customer.account.id, cents=100))
    response = _post(pay_client, _event(customer.account.id, cents=100_000), timestamp, signatures=[signature])
    assert response.status_code == 400


def test_missing_or_malformed_signature_header_is_400(pay_client, customer):
    assert pay_client.post(WEBHOOK, data=_event(customer.account.id)).status_code == 400
    response = pay_client.post(WEBHOOK, data=_event(customer.account.id), headers={"Stripe-Signature": "v1=abc"})
    assert response.status_code == 400


def test_stale_timestamp_is_400_even_with_a_valid_signature(pay_settings, pay_client, customer):
    before = sql_balance(pay_settings, customer.account.id)
    response = _post(pay_client, _event(customer.account.id), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert "tolerance" in response.get_json()["error"]["message"]
    assert sql_balance(pay_settings, customer.account.id) == before


def test_timestamp_within_tolerance_is_accepted():
    body = b"{}"
    assert payments.verify(SECRET, f"t=1000,v1={payments.sign(SECRET, 1000, body)}", body, now=1300) == 1000
    with pytest.raises(payments.SignatureError, match="tolerance"):
        payments.verify(SECRET, f"t=1000,v1={payments.sign(SECRET, 1000, body)}", body, now=1301)


def test_any_one_of_several_v1_signatures_suffices(pay_client, customer):
    timestamp = int(time.time())
    body = _event(customer.account.id, event_id="evt_roll")
    signatures = ["00" * 32, payments.sign(SECRET, timestamp, body)]
    assert _post(pay_client, body, timestamp, signatures=signatures).get_json()["credited"] is True


def test_other_event_types_are_acknowledged_without_credit(pay_settings, pay_client, customer):
    before = sql_balance(pay_settings, customer.account.id)
    response = _post(pay_client, _event(customer.account.id, kind="checkout.session.expired"))
    assert response.status_code == 200 and response.get_json()["credited"] is False
    assert sql_balance(pay_settings, customer.account.id) == before


def test_non_usd_or_unknown_account_is_400(pay_client, customer):
    assert _post(pay_client, _event(customer.account.id, currency="eur")).status_code == 400
    assert _post(pay_client, _event(999_999, event_id="evt_x")).status_code == 400


def test_webhook_without_secret_is_503(client, customer):
    assert _post(client, _event(customer.account.id)).status_code == 503


def test_checkout_returns_the_configured_url(pay_client, customer):
    response = pay_client.post("/api/v1/checkout", json={"amount": "25.5"},
                               headers={"Authorization": f"Bearer {customer.plaintext}"})
    assert response.status_code == 200
    assert response.get_json()["url"] == \
        f"https://pay.example.com/checkout?ref={customer.account.id}&cents=2550&usd=25.50"


@pytest.mark.parametrize("amount", ["9.99", "10.001", "-20", "abc", None, True])
def test_checkout_refuses_bad_amounts(pay_client, customer, amount):
    response = pay_client.post("/api/v1/checkout", json={"amount": amount},
                               headers={"Authorization": f"Bearer {customer.plaintext}"})
    assert response.status_code == 400


def test_checkout_needs_an_api_key(pay_client):
    assert pay_client.post("/api/v1/checkout", json={"amount": "20"}).status_code == 401


def test_deposits_list_shows_own_deposits_newest_first(pay_settings, pay_client, customer, make_customer):
    other = make_customer("other@example.com")
    with db.session_scope(pay_settings) as session:
        for tx, owner in (("01", customer), ("02", customer), ("03", other)):
            deposits.record_deposit(session, chain="polygon", tx_hash=tx, log_index=0, account_id=owner.account.id,
                                    token_contract="0xc2132d05d31c914a87c6611c10748aeb04b58e8f",
                                    amount=12_500_000, block_number=7, block_hash="0x" + "a" * 64)
    response = pay_client.get("/api/v1/deposits", headers={"Authorization": f"Bearer {customer.plaintext}"})
    assert response.status_code == 200
    document = response.get_json()
    assert [item["tx_hash"] for item in document["data"]] == ["0x02", "0x01"]
    assert document["data"][0]["amount_nano"] == 12_500_000_000
    assert document["data"][0]["status"] == "seen"
    assert document["addresses"] == {}  # no xpubs configured


def test_deposits_list_needs_an_api_key(client):
    assert client.get("/api/v1/deposits").status_code == 401


def test_deposits_list_shows_the_accounts_addresses_when_xpubs_are_set(tollgate_env, customer):
    from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins

    from control_plane.deposits import addresses

    seed = Bip39SeedGenerator("abandon " * 11 + "about").Generate()
    xpub = {coin: Bip44.FromSeed(seed, coin).Purpose().Coin().Account(0).PublicKey().ToExtended()
            for coin in (Bip44Coins.ETHEREUM, Bip44Coins.TRON)}
    loaded = settings_module.load({**tollgate_env, "TOLLGATE_XPUB_EVM": xpub[Bip44Coins.ETHEREUM],
                                   "TOLLGATE_XPUB_TRON": xpub[Bip44Coins.TRON]})
    client = create_app({"TESTING": True, "TOLLGATE_SETTINGS": loaded}).test_client()
    for _ in range(2):  # stored on the first request, read back on the second
        response = client.get("/api/v1/deposits", headers={"Authorization": f"Bearer {customer.plaintext}"})
        evm = addresses.derive(xpub[Bip44Coins.ETHEREUM], "evm", customer.account.id)
        tron = addresses.derive(xpub[Bip44Coins.TRON], "tron", customer.account.id)
        assert response.get_json()["addresses"] == {"tron": tron, "bsc": evm, "polygon": evm}
