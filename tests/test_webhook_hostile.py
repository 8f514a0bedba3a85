"""The card webhook against hostile input: anything that is not a valid event is a 400 with a reason
in the API's error shape (never a 500) and credits nothing; valid events still credit once."""
import json
import time

import pytest
from helpers import sql_balance
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_deposits_api import (  # noqa: F401
    SECRET,
    WEBHOOK,
    _event,
    _post,
    pay_client,
    pay_settings,
)

from control_plane import db
from control_plane.billing import ledger
from control_plane.deposits import ledger as deposits
from control_plane.deposits import payments

COMPLETED = "checkout.session.completed"


def _signed_header(body: bytes, timestamp: str) -> str:
    return f"t={timestamp},v1={payments.sign(SECRET, int(timestamp), body)}"


def _post_with_header(client, body: bytes, header: str):
    return client.post(WEBHOOK, data=body, headers={"Stripe-Signature": header, "Content-Type": "application/json"})


def _refused(response, code: str) -> str:
    """The error message of a 400 in the API's shape with this code."""
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    return error["message"]


def _checkout(account_id, **fields) -> bytes:
    """A paid, completed $25.00 checkout for the account, with fields of data.object replaced."""
    document = json.loads(_event(account_id, event_id=f"evt_{time.monotonic_ns()}"))
    document["data"]["object"].update(fields)
    return json.dumps(document).encode()


@pytest.fixture
def unchanged_wallet(pay_settings, customer):
    """Asserts after the test that the customer's wallet did not move; yields the account id."""
    before = sql_balance(pay_settings, customer.account.id)
    yield customer.account.id
    assert sql_balance(pay_settings, customer.account.id) == before


# The cases reproduced as 500s on the old code, by name.

def test_non_ascii_timestamp_is_400(pay_client, unchanged_wallet):
    body = _event(unchanged_wallet)
    header = f"t=\u00b2,v1={payments.sign(SECRET, 2, body)}"  # '²': str.isdigit() says yes, int() says no
    assert "ASCII" in _refused(_post_with_header(pay_client, body, header), "invalid_signature")


def test_arabic_indic_timestamp_is_400(pay_client, unchanged_wallet):
    body = _event(unchanged_wallet)
    header = f"t=\u0661\u0662,v1={payments.sign(SECRET, 12, body)}"
    assert "ASCII" in _refused(_post_with_header(pay_client, body, header), "invalid_signature")


def test_timestamp_of_5000_digits_is_400(pay_client, unchanged_wallet):
    body = _event(unchanged_wallet)
    message = _refused(_post_with_header(pay_client, body, f"t={'9' * 5000},v1={'0' * 64}"), "invalid_signature")
    assert "at most 2048 characters" in message


def test_timestamp_of_11_digits_is_400(pay_client, unchanged_wallet):
    body = _event(unchanged_wallet)
    message = _refused(_post_with_header(pay_client, body, _signed_header(body, "1" * 11)), "invalid_signature")
    assert "malformed" in message


def test_amount_of_10_to_the_12_cents_is_400(pay_client, unchanged_wallet):
    response = _post(pay_client, _checkout(unchanged_wallet, amount_total=10**12))
    assert "from 1 to 100000000" in _refused(response, "not_credited")


def test_arabic_indic_digits_reference_is_400(pay_client, unchanged_wallet):
    response = _post(pay_client, _checkout(unchanged_wallet, client_reference_id="\u0661\u0662"))
    assert "ASCII digits" in _refused(response, "not_credited")


def test_30_digit_reference_is_400(pay_client, unchanged_wallet):
    response = _post(pay_client, _checkout(unchanged_wallet, client_reference_id="1" * 30))
    assert "ASCII digits" in _refused(response, "not_credited")


def test_data_that_is_a_string_is_400(pay_client, unchanged_wallet):
    body = json.dumps({"id": "evt_data", "type": COMPLETED, "data": "x"}).encode()
    assert "'data.object' must be an object" in _refused(_post(pay_client, body), "invalid_event")


# The bound, at its edge.

def test_a_checkout_of_one_million_dollars_is_credited(pay_settings, pay_client, customer):
    response = _post(pay_client, _checkout(customer.account.id, amount_total=100_000_000))
    assert response.get_json() == {"received": True, "credited": True}
    assert sql_balance(pay_settings, customer.account.id) == 1_050_010 * 10**9  # $10 + $1,000,000 + 5 % bonus


def test_a_checkout_of_one_cent_over_one_million_dollars_is_400(pay_client, unchanged_wallet):
    _refused(_post(pay_client, _checkout(unchanged_wallet, amount_total=100_000_001)), "not_credited")


# Every other kind of bad input.

@pytest.mark.parametrize("header", [
    "t=1,t=2,v1=" + "0" * 64,
    "t=,v1=" + "0" * 64,
    "t=-5,v1=" + "0" * 64,
    "t=1e9,v1=" + "0" * 64,
    "t=12",
    "t=12,v1=\u00e9" + "0" * 63,
    ",".join(["t=12"] + ["v1=" + "0" * 64] * 40),
], ids=["two-timestamps", "empty-timestamp", "negative", "exponent", "no-v1", "latin-1-in-v1", "over-2048-chars"])
def test_malformed_signature_header_is_400(pay_client, unchanged_wallet, header):
    _refused(_post_with_header(pay_client, _event(unchanged_wallet), header), "invalid_signature")


def test_the_valid_signature_among_too_many_is_400(pay_client, unchanged_wallet):
    body = _event(unchanged_wallet)
    header = _signed_header(body, str(int(time.time()))) + ",v1=" + ",v1=".join(["0" * 64] * 40)
    _refused(_post_with_header(pay_client, body, header), "invalid_signature")


@pytest.mark.parametrize("body", [
    b'{"id": "evt_\xff", "type": "x", "data": {"object": {}}}',
    json.dumps({"id": "evt_16", "type": "x", "data": {"object": {}}}).encode("utf-16"),
    b'{"id": "evt_1", ',
    b'{"id": "evt_1", "type": "x", "data": {"object": {"amount_total": ' + b"9" * 5000 + b"}}}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"id": "evt_1", "type": "x", "data": {"object": {"deep": ' + b"[" * 62 + b"]" * 62 + b"}}}",
    b"[]",
    b'"evt_1"',
    b"null",
], ids=["not-utf8", "utf16", "not-json", "5000-digit-integer", "nested-100000-deep",
        "nested-65-deep", "array", "string", "null"])
def test_a_body_that_is_not_a_json_object_is_400(pay_client, unchanged_wallet, body):
    _refused(_post(pay_client, body), "invalid_event")


@pytest.mark.parametrize("event", [
    {"type": COMPLETED, "data": {"object": {}}},
    {"id": 5, "type": COMPLETED, "data": {"object": {}}},
    {"id": "", "type": COMPLETED, "data": {"object": {}}},
    {"id": "evt 1", "type": COMPLETED, "data": {"object": {}}},
    {"id": "evt_\u00e9", "type": COMPLETED, "data": {"object": {}}},
    {"id": "e" * 151, "type": COMPLETED, "data": {"object": {}}},
    {"id": "evt_1", "data": {"object": {}}},
    {"id": "evt_1", "type": ["checkout.session.completed"], "data": {"object": {}}},
    {"id": "evt_1", "type": COMPLETED},
    {"id": "evt_1", "type": COMPLETED, "data": {}},
    {"id": "evt_1", "type": COMPLETED, "data": {"object": "cs_1"}},
    {"id": "evt_1", "type": "checkout.session.expired", "data": {"object": []}},
    {"id": "evt_1", "type": COMPLETED, "data": {"object": {"payment_status": 1}}},
], ids=["no-id", "numeric-id", "empty-id", "id-with-space", "non-ascii-id", "151-char-id", "no-type",
        "array-type", "no-data", "no-data-object", "string-data-object", "other-type-array-object",
        "numeric-payment-status"])
def test_an_event_of_the_wrong_shape_is_400(pay_client, unchanged_wallet, event):
    _refused(_post(pay_client, json.dumps(event).encode()), "invalid_event")


def test_a_body_over_1_mib_is_400(pay_client, unchanged_wallet):
    body = _checkout(unchanged_wallet, padding="x" * payments.MAX_BODY_BYTES)
    assert "over 1048576 bytes" in _refused(_post(pay_client, body), "invalid_event")


@pytest.mark.parametrize("fields", [
    {"amount_total": 0}, {"amount_total": -2500}, {"amount_total": 2500.0}, {"amount_total": "2500"},
    {"amount_total": True}, {"amount_total": None},
    {"client_reference_id": " 1"}, {"client_reference_id": "1a"}, {"client_reference_id": 1},
    {"client_reference_id": ""}, {"client_reference_id": "0"}, {"client_reference_id": str(2**31)},
    {"client_reference_id": "999999"},
    {"currency": "eur"}, {"currency": None}, {"currency": ["usd"]},
], ids=["zero", "negative", "float", "string-amount", "boolean-amount", "null-amount",
        "reference-with-space", "reference-with-letter", "numeric-reference", "empty-reference", "reference-zero",
        "reference-over-32-bits", "unknown-account", "eur", "no-currency", "array-currency"])
def test_a_checkout_that_cannot_be_credited_is_400(pay_client, unchanged_wallet, fields):
    _refused(_post(pay_client, _checkout(unchanged_wallet, **fields)), "not_credited")


def test_an_uppercase_currency_is_still_credited(pay_settings, pay_client, customer):
    response = _post(pay_client, _checkout(customer.account.id, currency="USD"))
    assert response.get_json() == {"received": True, "credited": True}
    assert sql_balance(pay_settings, customer.account.id) == 35 * 10**9


# Random bodies, signed correctly.

ABSENT = object()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


def _usually(common, *rare):
    """`common` 9 times in 10, else one of `rare`."""
    return st.sampled_from(range(10)).flatmap(lambda n: common if n else st.one_of(*rare))


def _field(valid):
    """Usually a value of the valid kind; else any JSON value, or no field at all."""
    return _usually(valid, json_values, st.just(ABSENT))


def _present(fields: dict) -> dict:
    return {name: value for name, value in fields.items() if value is not ABSENT}


def _events(account_id):
    checkout = st.fixed_dictionaries({
        "client_reference_id": _field(_usually(st.just(str(account_id)), st.text("0123456789\u0661", max_size=31))),
        "currency": _field(_usually(st.just("usd"), st.sampled_from(["USD", "eur"]))),
        "amount_total": _field(_usually(st.integers(1, payments.MAX_CHECKOUT_CENTS), st.integers(-10, 10**13))),
        "payment_status": _field(_usually(st.just("paid"), st.just("unpaid"))),
    }).map(_present)
    data = st.fixed_dictionaries({"object": _field(checkout)}).map(_present)
    envelope = st.fixed_dictionaries({
        "id": _field(st.from_regex(r"evt_[A-Za-z0-9]{1,4}", fullmatch=True)),
        "type": _field(_usually(st.just(COMPLETED), st.just("checkout.session.expired"))),
        "data": _field(data),
    }).map(_present)
    return _usually(envelope, json_values)


def _is_ascii_digits(value, max_length) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length and all("0" <= c <= "9" for c in value)


def _expected(document, account_id) -> str:
    """The webhook's contract for a signed body: 'invalid_event' or 'not_credited' (400s), 'ignored'
    or 'credit' (200s; a credit of an event id credited before is a replay, credited: false)."""
    if not isinstance(document, dict):
        return "invalid_event"
    event_id, data = document.get("id"), document.get("data")
    if not (isinstance(event_id, str) and 0 < len(event_id) <= 150 and all("!" <= c <= "~" for c in event_id)):
        return "invalid_event"
    if not isinstance(document.get("type"), str) or not isinstance(data, dict) \
            or not isinstance(data.get("object"), dict):
        return "invalid_event"
    if document["type"] != COMPLETED:
        return "ignored"
    checkout = data["object"]
    status = checkout.get("payment_status", "paid")
    if not isinstance(status, str):
        return "invalid_event"
    if status != "paid":
        return "ignored"
    reference, currency, cents = (checkout.get(name) for name in ("client_reference_id", "currency", "amount_total"))
    if _is_ascii_digits(reference, 10) and int(reference) == account_id and isinstance(currency, str) \
            and currency.lower() == "usd" and type(cents) is int and 0 < cents <= payments.MAX_CHECKOUT_CENTS:
        return "credit"
    return "not_credited"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_signed_random_events_get_200_only_when_valid_and_never_a_500(pay_settings, pay_client, customer, data):
    account_id = customer.account.id
    document = data.draw(_events(account_id))
    expected = _expected(document, account_id)
    if expected == "credit" and _credited_before(pay_settings, document["id"]):
        expected = "replay"
    event(expected)  # how often each outcome was tried: pytest --hypothesis-show-statistics
    before = sql_balance(pay_settings, account_id)
    response = _post(pay_client, json.dumps(document).encode())
    assert response.mimetype == "application/json" and response.get_json() is not None
    if expected in ("invalid_event", "not_credited"):
        assert _refused(response, expected)
    else:
        assert response.status_code == 200
        assert response.get_json() == {"received": True, "credited": expected == "credit"}
    topup = _topup(pay_settings, document) if expected == "credit" else 0
    assert sql_balance(pay_settings, account_id) == before + topup


def _credited_before(pay_settings, event_id) -> bool:
    with db.session_scope(pay_settings) as session:
        return ledger.find(session, f"payment:{event_id}") is not None


def _topup(pay_settings, document) -> int:
    """The deposit and its tier bonus, in nano-USD, that a valid checkout credits."""
    amount = document["data"]["object"]["amount_total"] * payments.NANO_PER_CENT
    return amount + deposits.bonus_nano(amount, deposits.bonus_percent(pay_settings, amount))
