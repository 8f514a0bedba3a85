"""/api/v1 for customers: balance, transactions, usage; their shapes, paging and key errors."""

import json

import pytest

from control_plane import db
from control_plane.accounts import accounts
from control_plane.accounts import api_keys as keys
from control_plane.billing import ledger
from control_plane.hot import redis_keys
from control_plane.hot.usage_records import parse
from control_plane.models import Usage
from control_plane.settings import REPO_ROOT


def auth(customer, pad=""):
    return {"Authorization": f"{pad}Bearer {customer.plaintext}{pad}"}


def test_balance_is_the_live_redis_balance_as_an_exact_number(settings, client, redis_client, customer):
    redis_client.hset(redis_keys.account(customer.shard(settings), customer.account.id), "bal", 42_500_123_456)
    response = client.get("/api/v1/balance", headers=auth(customer))
    assert response.status_code == 200
    assert response.get_data(as_text=True).strip() == (
        '{"balance": 42.500123456, "balance_nano": 42500123456, "currency": "USD"}')


def test_balance_falls_back_to_sql_without_a_redis_balance(settings, client, redis_client, customer):
    redis_client.delete(redis_keys.account(customer.shard(settings), customer.account.id))
    assert client.get("/api/v1/balance", headers=auth(customer)).json["balance_nano"] == 10_000_000_000


def test_key_with_surrounding_whitespace_is_accepted(client, customer):
    assert client.get("/api/v1/balance", headers=auth(customer, pad="  \t")).status_code == 200


def test_x_api_key_header_is_accepted(client, customer):
    response = client.get("/api/v1/balance", headers={"x-api-key": f" {customer.plaintext}\t"})
    assert (response.status_code, response.json["balance_nano"]) == (200, 10_000_000_000)


def test_bearer_is_taken_before_x_api_key(client, customer):
    headers = {"Authorization": f"Bearer {customer.plaintext}", "x-api-key": "sk-tg-wrong"}
    assert client.get("/api/v1/balance", headers=headers).status_code == 200


ERRORS = json.loads((REPO_ROOT / "errors.json").read_text())


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer"}, "missing_api_key"),
    ({"x-api-key": "  "}, "missing_api_key"),
    ({"Authorization": "Bearer sk-tg-wrong"}, "invalid_api_key"),
    ({"Authorization": "Bearer sk-proj-an-openai-key"}, "invalid_api_key"),
    ({"x-api-key": "sk-tg-wrong"}, "invalid_api_key"),
])
def test_missing_or_wrong_key_is_401_with_the_catalogue_message(client, customer, headers, code):
    response = client.get("/api/v1/balance", headers=headers)
    assert response.status_code == 401
    assert response.json == {"error": {"message": ERRORS[code]["message"], "type": "invalid_request_error",
                                       "param": None, "code": code}}


def test_revoked_and_unknown_keys_get_one_answer(settings, client, customer):
    unknown = client.get("/api/v1/balance", headers={"Authorization": "Bearer sk-tg-unknown"})
    with db.session_scope(settings) as session:
        keys.revoke_key(session, customer.key.id)
    revoked = client.get("/api/v1/balance", headers=auth(customer))
    assert (revoked.status_code, revoked.get_data()) == (401, unknown.get_data())
    assert revoked.json["error"]["message"].startswith("Invalid API key.")


def test_transactions_are_listed_newest_first(settings, client, customer):
    with db.session_scope(settings) as session:
        ledger.adjust(session, customer.account.id, -250_000_000, "refund of a duplicate charge")
    body = client.get("/api/v1/transactions", headers=auth(customer)).json
    assert [(t["type"], t["amount_nano"], t["description"]) for t in body["transactions"]] == [
        ("adjustment", -250_000_000, "refund of a duplicate charge"),
        ("deposit", 10_000_000_000, "Test deposit"),
    ]
    assert body["has_more"] is False and body["next_before"] is None
    first = body["transactions"][0]
    assert set(first) == {"id", "type", "amount", "amount_nano", "description", "created_at"}
    assert first["created_at"].endswith("Z")


def test_transaction_amount_is_an_exact_json_number(client, customer):
    text = client.get("/api/v1/transactions", headers=auth(customer)).get_data(as_text=True)
    assert '"amount": 10, "amount_nano": 10000000000' in text


def test_transactions_page_with_before(settings, client, customer):
    with db.session_scope(settings) as session:
        for n in range(1, 5):
            ledger.adjust(session, customer.account.id, n, f"adjustment {n}")
    first = client.get("/api/v1/transactions?limit=2", headers=auth(customer)).json
    assert [t["description"] for t in first["transactions"]] == ["adjustment 4", "adjustment 3"]
    assert first["has_more"] is True
    second = client.get(f"/api/v1/transactions?limit=2&before={first['next_before']}", headers=auth(customer)).json
    assert [t["description"] for t in second["transactions"]] == ["adjustment 2", "adjustment 1"]
    third = client.get(f"/api/v1/transactions?limit=2&before={second['next_before']}", headers=auth(customer)).json
    assert [t["description"] for t in third["transactions"]] == ["Test deposit"]
    assert third["has_more"] is False


def test_other_accounts_transactions_are_not_listed(settings, client, make_customer):
    alice, bob = make_customer("alice@example.com", "1"), make_customer("bob@example.com", "2")
    listed = client.get("/api/v1/transactions", headers=auth(bob)).json["transactions"]
    assert [t["amount_nano"] for t in listed] == [2_000_000_000]
    assert alice.account.id != bob.account.id


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "before=-1", "before=99999999999999999999"])
def test_bad_paging_parameters_are_400(client, customer, query):
    response = client.get(f"/api/v1/usage?{query}", headers=auth(customer))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_parameter"


def _usage(settings, customer, rid, ts):
    fields = {"rid": rid, "ts": str(ts), "acct": str(customer.account.id), "key": str(customer.key.id),
              "model": "test-chat", "umodel": "up", "provider": "test", "ep": "chat.completions", "stream": "0",
              "status": "200", "basis": "provider", "in": "10", "cr": "2", "cw": "3", "cw1h": "4", "out": "5",
              "rsn": "6", "cost": "123456", "ms": "900", "ttfb": "100", "node": "n1", "hold": "123456",
              "over": "7890"}
    with db.session_scope(settings) as session:
        session.add(Usage(**parse(fields).row_values(None)))


def test_usage_has_the_documented_shape(settings, client, customer):
    _usage(settings, customer, "req-1", 1_700_000_000_123)
    body = client.get("/api/v1/usage", headers=auth(customer)).json
    assert body["has_more"] is False and body["next_before"] is None
    assert body["data"] == [{
        "created_at": "2023-11-14T22:13:20.123Z", "request_id": "req-1", "key_id": customer.key.id, "model": "test-chat",
        "requested_model": "test-chat", "upstream_model": "up", "provider": "test", "endpoint": "chat.completions", "stream": False,
        "status": 200, "error_code": "", "error_message": "", "billing_basis": "provider",
        "tokens": {"input": 10, "cached_input": 2, "cache_write": 3, "cache_write_1h": 4, "output": 5,
                   "reasoning": 6},
        "cost": 0.000123456, "cost_nano": 123456, "hold_nano": 123456, "price_version": None, "latency_ms": 900,
        "ttfb_ms": 100, "attempts": 1, "failed_statuses": [],
    }]


def test_usage_of_an_admin_account_carries_the_overage(settings, client, customer):
    with db.session_scope(settings) as session:
        accounts.require_by_email(session, customer.account.email).is_admin = True
    _usage(settings, customer, "req-1", 1_700_000_000_123)
    [item] = client.get("/api/v1/usage", headers=auth(customer)).json["data"]
    assert (item["cost_nano"], item["hold_nano"], item["overage_nano"]) == (123456, 123456, 7890)


def test_usage_cost_is_an_exact_json_number(settings, client, customer):
    _usage(settings, customer, "req-1", 1_700_000_000_000)
    assert '"cost": 0.000123456,' in client.get("/api/v1/usage", headers=auth(customer)).get_data(as_text=True)


def test_usage_pages_newest_first(settings, client, customer):
    for n in range(3):
        _usage(settings, customer, f"req-{n}", 1_700_000_000_000 + n)
    first = client.get("/api/v1/usage?limit=2", headers=auth(customer)).json
    assert [u["request_id"] for u in first["data"]] == ["req-2", "req-1"]
    rest = client.get(f"/api/v1/usage?limit=2&before={first['next_before']}", headers=auth(customer)).json
    assert [u["request_id"] for u in rest["data"]] == ["req-0"] and rest["has_more"] is False


def test_unknown_api_path_is_404_in_openai_shape(client):
    response = client.get("/api/v1/nope")
    assert response.status_code == 404
    assert response.json["error"]["type"] == "invalid_request_error"


def test_healthz_reports_database_and_redis(client):
    response = client.get("/api/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok", "database": "ok", "redis": "ok"})


def test_a_path_the_control_plane_does_not_serve_is_a_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "path_not_found"


def test_a_console_page_that_does_not_exist_is_an_html_404(client):
    response = client.get("/console/nothing-here")
    assert response.status_code == 404
    assert response.mimetype == "text/html" and "Not found" in response.get_data(as_text=True)
