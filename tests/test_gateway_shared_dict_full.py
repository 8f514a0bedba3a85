"""A full lease dict (nginx's shared dict of the local leases, TOLLGATE_LEASE_DICT) refuses a
request of a key it has no entries for: 503 gateway_unavailable in the protocol's shape, before
any of its hold is taken, so nothing is charged and nothing stays held. Keys it holds entries for
are still served."""
from __future__ import annotations

import hashlib

import pytest
from harness import Gateway
from helpers import headers_for, new_customer, post_json

from control_plane.hot import redis_keys

# The smallest dict nginx takes: this node's id and the entries of a few keys. Leases are never
# idle, so maintenance deletes no key's entries while the test fills the dict.
TINY = {"TOLLGATE_LEASE_DICT": "12k", "TOLLGATE_LEASE_IDLE_SECONDS": "3600"}
MOST_KEYS = 60  # far more than 12k holds

HELLO = [{"role": "user", "content": "Hi"}]
CHAT = ("openai", "/v1/chat/completions", {"model": "sandbox-chat", "max_tokens": 10, "messages": HELLO})
MESSAGES = ("anthropic", "/v1/messages", {"model": "sandbox-claude", "max_tokens": 10, "messages": HELLO})


def post(gateway, key, endpoint):
    protocol, path, body = endpoint
    return post_json(gateway, path, body, headers_for(protocol, key))


def hot_state(gateway, key):
    """The key's account and key hashes and its lease hash in Redis."""
    r = gateway.redis()
    kid, acct, shard = r.hmget(redis_keys.apikey(hashlib.sha256(key.encode()).hexdigest()), "id", "acct", "shard")
    return (r.hgetall(redis_keys.account(shard, acct)), r.hgetall(redis_keys.key_state(shard, kid)),
            r.hgetall(redis_keys.lease(shard, kid)))


@pytest.fixture
def full_dict(database_independent, tmp_path):
    """An instance whose lease dict is full, and a key it served before it filled."""
    gw = Gateway(tmp_path / "gw", extra_env=TINY).start()
    try:
        served = None
        for _ in range(MOST_KEYS):
            _email, key = new_customer(gw, "1")
            status, _headers, _body = post(gw, key, CHAT)
            if status == 503:
                break
            assert status == 200
            served = key
        else:
            pytest.fail(f"{MOST_KEYS} keys did not fill a {TINY['TOLLGATE_LEASE_DICT']} lease dict")
        assert served, "the dict refused the first key already"
        yield gw, served
    finally:
        gw.stop()


@pytest.mark.parametrize("endpoint", [CHAT, MESSAGES], ids=["openai", "anthropic"])
def test_a_new_key_is_refused_503_and_nothing_moves(full_dict, endpoint):
    gw, _served = full_dict
    email, key = new_customer(gw, "1")
    before = hot_state(gw, key)
    balance = gw.balance_nano(email)

    status, headers, body = post(gw, key, endpoint)

    assert status == 503
    assert headers["Content-Type"] == "application/json"
    if endpoint is CHAT:
        assert set(body) == {"error"}
        assert body["error"]["code"] == "gateway_unavailable"
        assert body["error"]["type"] == "api_error"
        assert "Nothing was charged" in body["error"]["message"]
    else:
        assert body["type"] == "error"
        assert body["error"]["type"] == "api_error"
        assert "Nothing was charged" in body["error"]["message"]
    account, key_state, lease = hot_state(gw, key)
    assert (account, key_state, lease) == before
    assert account["bal"] == str(balance) and account.get("held", "0") == "0"
    assert key_state.get("held", "0") == "0" and key_state.get("spent", "0") == "0"
    assert lease == {}
    gw.wait_drained()
    assert gw.balance_nano(email) == balance
    # Its one row says what the client got, and nothing was charged.
    assert [(row["status"], row["billing_basis"], row["cost_nano"], row["error_code"])
            for row in gw.usage_rows(key)] == [(503, "refused", 0, "gateway_unavailable")]


def test_a_key_the_dict_holds_is_still_served(full_dict):
    gw, served = full_dict
    for _ in range(2):
        status, _headers, body = post(gw, served, CHAT)
        assert status == 200, body
    gw.wait_drained()
    ok, report = gw.reconciled()
    assert ok, report
