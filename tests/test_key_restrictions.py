"""Keys with allowed models, an expiry, and a new secret (issue 13, the console's Keys page), as
nginx enforces them: set in SQL and published (control_plane.hot.publish), live within the key
cache's second. A model the key may not use is `model_not_found` (the asked name or its model's
must be listed) and is left out of /v1/models; a key past its expiry is `api_key_expired`; after a
rotation the old secret is refused and the new one spends against the same limit."""
from __future__ import annotations

import json
import urllib.error
from datetime import UTC, datetime, timedelta

import pytest
from console_client import settings_of
from harness import wait_for
from helpers import api_get, headers_for, key_hot_state, new_customer, post_raw, usage_in_sql
from sqlalchemy import select

from control_plane import db
from control_plane.accounts import api_keys
from control_plane.hot import publish
from control_plane.models import ApiKey

PATH = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
MODEL = {"openai": "sandbox-chat", "anthropic": "sandbox-claude"}
CACHE_DEADLINE = 2  # seconds: the gateway caches a key for 1 s


def restrict(gateway, key: str, **columns) -> None:
    """Sets the key's ApiKey columns in SQL and publishes it, as the console and the CLI do."""
    settings = settings_of(gateway)
    with db.session_scope(settings) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == api_keys.hash_key(key)))
        for name, value in columns.items():
            setattr(row, name, value)
        session.flush()
        publish.publish_key(session, settings, row)


def call(gateway, key: str, model: str, protocol: str = "openai") -> tuple[int, dict]:
    """(status, decoded answer) of a small request for `model`."""
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
    status, _, answer = post_raw(gateway, PATH[protocol], body, headers_for(protocol, key))
    return status, json.loads(answer)


def answers(gateway, key: str, model: str, status: int, protocol: str = "openai") -> tuple[dict, int]:
    """Polls with the request until it answers `status` (a published change lands within the
    cache's second; until then each nginx worker may still answer from its cache): that answer,
    and how many requests were served (200) before it."""
    seen = {"served": 0}

    def landed():
        got, seen["answer"] = call(gateway, key, model, protocol)
        seen["served"] += got == 200
        return got == status

    wait_for(landed, CACHE_DEADLINE, f"{model} to answer {status}")
    return seen["answer"], seen["served"]


def models_status(gateway, key: str) -> int:
    """The status GET /v1/models answers the key: a check of the key alone, which adds no usage."""
    try:
        api_get(gateway, key, "/v1/models")
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def model_ids(gateway, key: str) -> list[str]:
    return sorted(model["id"] for model in api_get(gateway, key, "/v1/models")["data"])


# -- allowed models ---------------------------------------------------------------------------------

def test_a_key_may_use_only_its_models(gateway):
    _, key = new_customer(gateway)
    restrict(gateway, key, allowed_models=json.dumps(["sandbox-chat"]))  # before its first use: none cached
    status, answer = call(gateway, key, "sandbox-claude", "anthropic")
    assert (status, answer["type"], answer["error"]["type"]) == (404, "error", "not_found_error")
    assert "your key may not use it" in answer["error"]["message"]
    assert call(gateway, key, "sandbox-chat")[0] == 200
    assert call(gateway, key, "gpt-4o")[0] == 200  # an alias of sandbox-chat: its model is listed
    rows = usage_in_sql(gateway, key, 3)
    assert sorted((row.status, row.requested_model, row.error_code, row.billing_basis) for row in rows) == [
        (200, "gpt-4o", "", "provider"), (200, "sandbox-chat", "", "provider"),
        (404, "sandbox-claude", "model_not_found", "refused")]


def test_a_listed_alias_allows_the_alias_but_not_its_model_by_name(gateway):
    _, key = new_customer(gateway)
    restrict(gateway, key, allowed_models=json.dumps(["claude-haiku-4-5"]))
    assert call(gateway, key, "sandbox-claude", "anthropic")[0] == 404
    assert call(gateway, key, "claude-haiku-4-5", "anthropic")[0] == 200


def test_models_lists_only_what_the_key_may_use(gateway):
    _, key = new_customer(gateway)
    restrict(gateway, key, allowed_models=json.dumps(["sandbox-chat", "claude-haiku-4-5"]))
    wait_for(lambda: model_ids(gateway, key) == ["claude-haiku-4-5", "gpt-4o", "gpt-5.5", "sandbox-chat"],
             CACHE_DEADLINE, "the key's models")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        api_get(gateway, key, "/v1/models/sandbox-claude")
    assert api_get(gateway, key, "/v1/models/claude-haiku-4-5")["id"] == "claude-haiku-4-5"


def test_a_key_whose_restriction_is_lifted_may_use_every_model_again(gateway):
    _, key = new_customer(gateway)
    restrict(gateway, key, allowed_models=json.dumps(["sandbox-chat"]))
    answers(gateway, key, "sandbox-claude", 404, "anthropic")
    restrict(gateway, key, allowed_models=None)
    answers(gateway, key, "sandbox-claude", 200, "anthropic")


# -- expiry -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_a_key_past_its_expiry_is_refused_in_the_protocols_shape(gateway, protocol):
    _, key = new_customer(gateway)
    assert call(gateway, key, MODEL[protocol], protocol)[0] == 200
    restrict(gateway, key, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    answer, served = answers(gateway, key, MODEL[protocol], 401, protocol)
    if protocol == "anthropic":
        assert (answer["type"], answer["error"]["type"]) == ("error", "authentication_error")
    else:
        assert (answer["error"]["code"], answer["error"]["type"]) == ("api_key_expired", "invalid_request_error")
    assert answer["error"]["message"].startswith("This API key has expired.")
    usage_in_sql(gateway, key, 1 + served)  # a key refused at authentication adds no row


def test_a_key_before_its_expiry_works(gateway):
    _, key = new_customer(gateway)
    restrict(gateway, key, expires_at=datetime.now(UTC) + timedelta(days=1))
    assert call(gateway, key, "sandbox-chat")[0] == 200


def test_models_refuses_an_expired_key(gateway):
    _, key = new_customer(gateway)
    restrict(gateway, key, expires_at=datetime.now(UTC) - timedelta(days=1))
    assert models_status(gateway, key) == 401  # never used: no cache to wait for


# -- rotation ---------------------------------------------------------------------------------------

def test_after_a_rotation_the_old_secret_is_refused_and_the_new_one_keeps_the_spend_and_limit(gateway):
    _, old = new_customer(gateway, "10", limit_usd="1")
    assert call(gateway, old, "sandbox-chat")[0] == 200
    [first] = usage_in_sql(gateway, old, 1)
    before = key_hot_state(gateway, old)
    assert (before["limit"], before["spent"]) == ("1000000000", str(first.cost_nano))
    settings = settings_of(gateway)
    with db.session_scope(settings) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.key_hash == api_keys.hash_key(old)))
        new, old_hash = api_keys.rotate_key(session, row)
        publish.rotate_key(session, settings, row, old_hash)
    answer, served = answers(gateway, old, "sandbox-chat", 401)
    assert answer["error"]["code"] == "invalid_api_key"
    assert call(gateway, new, "sandbox-chat")[0] == 200
    rows = usage_in_sql(gateway, new, 2 + served)  # the same key: its history goes on
    assert rows[0].id == first.id
    after = key_hot_state(gateway, new)
    assert (after["limit"], after["spent"]) == ("1000000000", str(sum(row.cost_nano for row in rows)))
