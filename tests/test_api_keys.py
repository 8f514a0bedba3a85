"""/api/v1/keys against the shared instance: list, create, revoke and rotate a key with a key of the
account, exact money, the plaintext only in the create and rotate answers, and another account's
key ids answered as unknown ones."""
import time

import pytest
from helpers import bearer, new_customer, request_json

CHAT = {"model": "sandbox-chat", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
# The gateway caches a key's look-up for 1 s: a revoked or rotated secret is refused within 2 s.
REFUSED_WITHIN = 2.0


def refused_within(gateway, key: str, seconds: float = REFUSED_WITHIN) -> int:
    """The status of the key's chat request once it is refused (401), polled for `seconds`; the
    last status if it never was."""
    deadline = time.monotonic() + seconds
    while True:
        status = gateway.chat(key, CHAT)
        if status == 401 or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def keys_api(gateway, key: str, method: str = "GET", path: str = "", body=None):
    """(status, JSON) of /api/v1/keys<path> with the key."""
    status, _headers, document = request_json(gateway, method, "/api/v1/keys" + path, bearer(key), body)
    return status, document


@pytest.fixture
def api_customer(gateway):
    """A fresh account with $10 and a key: (email, key)."""
    return new_customer(gateway)


def test_list_shows_only_the_accounts_keys_without_secrets(gateway, api_customer):
    email, key = api_customer
    new_customer(gateway)  # another account's keys are not listed
    gateway.create_key(email, "2.5", "--name", "second", "--rpm", "30")
    status, document = keys_api(gateway, key)
    assert status == 200
    assert document["has_more"] is False
    listed = document["data"]
    assert [item["name"] for item in listed] == ["second", ""]  # newest first
    second = listed[0]
    assert (second["limit"], second["limit_nano"], second["rpm"], second["tpm"]) == (2.5, 2_500_000_000, 30, None)
    assert (second["spent_nano"], second["models"], second["expires_at"], second["status"]) == (0, None, None, "active")
    assert all("key" not in item for item in listed)
    assert key.startswith(listed[1]["prefix"])


def test_create_answers_the_key_once_with_its_exact_limits(gateway, api_customer):
    _email, key = api_customer
    body = {"name": "ci", "limit": "5.000000001", "rpm": 60, "tpm": 10000, "models": ["sandbox-chat", "gpt-4o"],
            "expires_at": "2099-01-31T12:30"}
    status, created = keys_api(gateway, key, "POST", body=body)
    assert status == 201, created
    assert created["key"].startswith("sk-tg-") and created["key"].startswith(created["prefix"])
    assert (created["limit_nano"], str(created["limit"])) == (5_000_000_001, "5.000000001")
    assert (created["rpm"], created["tpm"], created["models"]) == (60, 10000, ["gpt-4o", "sandbox-chat"])
    assert (created["expires_at"], created["live"]) == ("2099-01-31T12:30:00.000Z", True)
    assert gateway.chat(created["key"], CHAT) == 200
    _status, document = keys_api(gateway, key)
    assert [item["id"] for item in document["data"] if "key" in item] == []
    assert created["id"] in [item["id"] for item in document["data"]]


def test_a_key_may_call_only_its_allowed_models(gateway, api_customer):
    _email, key = api_customer
    _status, created = keys_api(gateway, key, "POST", body={"models": ["gpt-4o"]})
    assert gateway.chat(created["key"], {**CHAT, "model": "gpt-4o"}) == 200
    assert gateway.chat(created["key"], {**CHAT, "model": "sandbox-reasoner"}) == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"limit": "abc"}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": True}, "limit"),
    ({"rpm": 0}, "rpm"),
    ({"tpm": "100"}, "tpm"),
    ({"models": ["no-such-model"]}, "models"),
    ({"models": []}, "models"),
    ({"models": "sandbox-chat"}, "models"),
    ({"expires_at": "2001-01-01"}, "expires_at"),
    ({"expires_at": "tomorrow"}, "expires_at"),
    ({"name": "x" * 201}, "name"),
    ({"colour": "blue"}, "colour"),
])
def test_a_bad_field_is_invalid_parameter_naming_it(gateway, api_customer, body, field):
    status, document = keys_api(gateway, api_customer[1], "POST", body=body)
    assert status == 400, document
    assert document["error"]["code"] == "invalid_parameter"
    assert f"'{field}'" in document["error"]["message"]


def test_a_body_that_is_not_an_object_is_invalid_request(gateway, api_customer):
    for body in (b"{not json", b"[1, 2]"):
        status, document = keys_api(gateway, api_customer[1], "POST", body=body)
        assert (status, document["error"]["code"]) == (400, "invalid_request")


def test_revoke_refuses_the_key_within_two_seconds(gateway, api_customer):
    _email, key = api_customer
    _status, created = keys_api(gateway, key, "POST", body={"name": "short-lived"})
    assert gateway.chat(created["key"], CHAT) == 200
    status, revoked = keys_api(gateway, key, "DELETE", f"/{created['id']}")
    assert (status, revoked["status"], "key" in revoked) == (200, "revoked", False)
    assert revoked["revoked_at"] is not None
    assert refused_within(gateway, created["key"]) == 401
    assert gateway.chat(key, CHAT) == 200


def test_rotate_gives_a_new_secret_and_the_old_one_is_refused_within_two_seconds(gateway, api_customer):
    _email, key = api_customer
    _status, created = keys_api(gateway, key, "POST", body={"name": "rotating", "limit": "3"})
    assert gateway.chat(created["key"], CHAT) == 200
    gateway.wait_drained()  # settled (batches flush after the request ends), so its spend is counted
    status, rotated = keys_api(gateway, key, "POST", f"/{created['id']}/rotate")
    assert status == 200, rotated
    assert rotated["key"] != created["key"] and rotated["key"].startswith(rotated["prefix"])
    assert (rotated["id"], rotated["limit_nano"], rotated["name"]) == (created["id"], 3_000_000_000, "rotating")
    assert rotated["rotated_at"] is not None
    assert rotated["spent_nano"] > 0  # the spend of the old secret stays with the key
    assert refused_within(gateway, created["key"]) == 401
    assert gateway.chat(rotated["key"], CHAT) == 200


def test_a_revoked_key_cannot_be_rotated(gateway, api_customer):
    _email, key = api_customer
    _status, created = keys_api(gateway, key, "POST", body={})
    keys_api(gateway, key, "DELETE", f"/{created['id']}")
    status, document = keys_api(gateway, key, "POST", f"/{created['id']}/rotate")
    assert (status, document["error"]["code"]) == (400, "invalid_request")


def test_another_accounts_key_is_not_found_as_an_unknown_one_is(gateway, api_customer):
    _email, key = api_customer
    _other_email, other_key = new_customer(gateway)
    _status, theirs = keys_api(gateway, other_key)
    their_id = theirs["data"][0]["id"]
    unknown_id = 2**62
    for method, suffix in (("DELETE", ""), ("POST", "/rotate")):
        answers = {}
        for key_id in (their_id, unknown_id):
            status, document = keys_api(gateway, key, method, f"/{key_id}{suffix}")
            answers[key_id] = (status, document["error"]["code"],
                               document["error"]["message"].replace(str(key_id), "<id>"))
        assert answers[their_id] == answers[unknown_id] == (
            404, "key_not_found", "This account has no key with id <id>. List your keys with GET /api/v1/keys.")
    assert gateway.chat(other_key, CHAT) == 200  # untouched


def test_keys_need_an_active_key(gateway, api_customer):
    _email, key = api_customer
    assert keys_api(gateway, "sk-tg-not-a-key")[0] == 401
    _status, created = keys_api(gateway, key, "POST", body={})
    keys_api(gateway, key, "DELETE", f"/{created['id']}")
    assert keys_api(gateway, created["key"])[0] == 401


def test_the_cli_creates_keys_with_models_and_expiry_and_rotates_them(gateway, api_customer):
    email, key = api_customer
    made = gateway.create_key(email, None, "--models", "gpt-4o, sandbox-chat", "--expires", "2099-06-30T08:15")
    _status, listed = keys_api(gateway, key)
    item = next(entry for entry in listed["data"] if made.startswith(entry["prefix"]))
    assert (item["models"], item["expires_at"]) == (["gpt-4o", "sandbox-chat"], "2099-06-30T08:15:00.000Z")
    rotated = gateway.cli("key", "rotate", str(item["id"])).stdout.strip().splitlines()[-1]
    assert rotated.startswith("sk-tg-") and rotated != made
    assert refused_within(gateway, made) == 401
    assert gateway.chat(rotated, CHAT) == 200
    for args, message in ((("--models", "nope"), "no model or alias is named 'nope'"),
                          (("--expires", "2001-01-01"), "the expiry must be in the future"),
                          (("--expires", "someday"), "YYYY-MM-DD")):
        refused = gateway.cli("key", "create", email, *args, check=False)
        assert refused.returncode != 0 and message in refused.stdout + refused.stderr
    assert gateway.cli("key", "rotate", "999999999", check=False).returncode == 2
