"""The Providers page, `tollgate provider list|disable|enable|test` and the admin API's providers:
a key shown only as its last four characters (never in a page, an answer, the CLI's output or the
audit log; encrypted in SQL), disabling that takes a provider's routes out of the published models,
and the Test button's one real call, against simulated providers that answer 200, 401 or 500 and
one that cannot be reached. Pages in-process; Redis and SQL real."""
from __future__ import annotations

import json
import re

import pytest
from admin_client import make_admin_key, signed_in_admin
from simulator import Simulator
from sqlalchemy import select

from control_plane import crypto, db
from control_plane.catalog import upstreams
from control_plane.hot import redis_keys
from control_plane.models import AuditEntry, Provider
from control_plane.money import usd_to_nano

KEY = "sk-upstream-secret-key-7f3a"  # its last four: 7f3a
NEW_KEY = "sk-upstream-rotated-key-91bc"
LISTING = json.dumps({"object": "list", "data": [{"id": "up-a", "object": "model"},
                                                  {"id": "up-b", "object": "model"}]}).encode()
ERROR = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error",
                              "code": "invalid_api_key"}}).encode()


@pytest.fixture
def sim():
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def admin(app, settings):
    return signed_in_admin(settings, app=app)


def add_via_page(admin, name: str, base_url: str, key: str = KEY, protocol: str = "openai"):
    return admin.post_form("/admin/providers", {"name": name, "protocol": protocol, "base_url": base_url,
                                                "api_key": key})


def stored(settings, name: str) -> Provider:
    with db.read_session(settings) as session:
        provider = upstreams.find_provider(session, name)
        session.expunge(provider)
        return provider


def audit_rows(settings, entity: str, entity_id) -> list[AuditEntry]:
    with db.read_session(settings) as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.entity == entity,
                                                             AuditEntry.entity_id == str(entity_id))
                                    .order_by(AuditEntry.id)))
        session.expunge_all()
        return rows


def all_audit_text(settings) -> str:
    with db.read_session(settings) as session:
        return " ".join(f"{row.before} {row.after} {row.reason}" for row in session.scalars(select(AuditEntry)))


def two_route_model(settings, first: str = "p1", second: str = "p2", url: str = "http://127.0.0.1:9/v1") -> None:
    """Model m at cost: route to `first` (priority 0, input $1, output $4 per 1M) then to `second`
    (priority 1, input $2, output $3), published."""
    from control_plane.hot import publish

    with db.session_scope(settings) as session:
        for name in (first, second):
            publish.publish_provider(settings, upstreams.upsert_provider(session, settings, name, "openai", url, KEY))
        upstreams.upsert_model(session, "m", first, {"input": usd_to_nano("1"), "output": usd_to_nano("4")})
        upstreams.upsert_route(session, "m", second, {"input": usd_to_nano("2"), "output": usd_to_nano("3")},
                               priority=1)
        publish.publish_model(session, settings, upstreams.require_model(session, "m"))


def published(redis_client, name: str = "m") -> dict | None:
    text = redis_client.get(redis_keys.model(name))
    return None if text is None else json.loads(text)


# The page ----------------------------------------------------------------------------------------


def test_an_added_provider_shows_only_its_keys_last_four(admin, settings, redis_client):
    response = add_via_page(admin, "openai-main", "https://127.0.0.1:8443/v1")
    assert response.status_code == 200 and "Provider openai-main is added" in response.text
    row = re.search(r'<tr id="provider-openai-main">.*?</tr>', response.text, re.DOTALL).group(0)
    assert "https://127.0.0.1:8443/v1" in row and "…7f3a" in row and "enabled" in row
    assert KEY not in response.text and KEY[:-4] not in response.text
    for page in ("/admin/providers", "/admin/providers/openai-main"):
        assert KEY not in admin.get(page).text and "…7f3a" in admin.get(page).text
    provider = stored(settings, "openai-main")
    assert KEY not in provider.api_key_encrypted and crypto.decrypt(settings, provider.api_key_encrypted) == KEY
    assert json.loads(redis_client.get(redis_keys.provider("openai-main")))["port"] == 8443
    [created] = audit_rows(settings, "provider", provider.id)
    assert (created.action, created.actor, created.before) == ("create", f"admin {admin.email}", None)
    after = json.loads(created.after)
    assert (after["name"], after["base_url"], after["api_key_encrypted"]) == (
        "openai-main", "https://127.0.0.1:8443/v1", "[redacted]")
    assert KEY not in all_audit_text(settings)


def test_a_short_key_shows_no_characters(admin, settings):
    add_via_page(admin, "tiny", "http://127.0.0.1:9/v1", key="abcd12345")
    page = admin.get("/admin/providers").text
    assert re.search(r'<td class="mono key-hint">…</td>', page) and "2345" not in page


@pytest.mark.parametrize(("fields", "error"), [
    ({"name": ""}, "This field is required."),
    ({"name": "has space"}, "1-100 letters, digits and ._:/@+- (no spaces)."),
    ({"base_url": "ftp://example.com"}, "A base URL needs http:// or https:// and a host"),
    ({"base_url": "https://user:pw@example.com/v1"}, "A base URL has no query, fragment or credentials"),
    ({"api_key": ""}, "This field is required."),
    ({"protocol": "grpc"}, "Not a valid choice."),
])
def test_the_add_form_refuses_bad_input_with_field_errors(admin, settings, fields, error):
    response = add_via_page(admin, **{"name": "p", "base_url": "http://127.0.0.1:9/v1", "key": KEY,
                                      **{("key" if field == "api_key" else field): value
                                         for field, value in fields.items()}})
    assert response.status_code == 400 and error in response.text
    assert KEY not in response.text  # a password field is not filled in again
    with db.read_session(settings) as session:
        assert upstreams.providers(session) == []


def test_adding_a_name_that_exists_is_refused_not_overwritten(admin, settings):
    add_via_page(admin, "p", "http://127.0.0.1:9/v1")
    response = add_via_page(admin, "p", "http://localhost:9/elsewhere/v1", key=NEW_KEY)
    assert response.status_code == 400 and "A provider of this name exists" in response.text
    provider = stored(settings, "p")
    assert provider.base_url == "http://127.0.0.1:9/v1"
    assert crypto.decrypt(settings, provider.api_key_encrypted) == KEY


def test_editing_keeps_the_key_when_left_blank_and_replaces_it_when_given(admin, settings, redis_client):
    add_via_page(admin, "p", "http://127.0.0.1:9/v1")
    provider_id = stored(settings, "p").id
    response = admin.post_form("/admin/providers/p", {"base_url": "http://localhost:9/eu/v1", "api_key": ""})
    assert response.status_code == 200 and "Provider p is saved." in response.text
    provider = stored(settings, "p")
    assert provider.base_url == "http://localhost:9/eu/v1"
    assert crypto.decrypt(settings, provider.api_key_encrypted) == KEY
    assert json.loads(redis_client.get(redis_keys.provider("p")))["base_path"] == "/eu/v1"
    edited = audit_rows(settings, "provider", provider_id)[-1]
    assert (edited.action, edited.actor) == ("update", f"admin {admin.email}")
    assert (json.loads(edited.before), json.loads(edited.after)) == (
        {"base_url": "http://127.0.0.1:9/v1"}, {"base_url": "http://localhost:9/eu/v1"})

    response = admin.post_form("/admin/providers/p", {"base_url": "http://localhost:9/eu/v1", "api_key": NEW_KEY})
    assert "with its new key" in response.text and "…91bc" in response.text and NEW_KEY not in response.text
    assert crypto.decrypt(settings, stored(settings, "p").api_key_encrypted) == NEW_KEY
    rotated = audit_rows(settings, "provider", provider_id)[-1]
    assert (json.loads(rotated.before), json.loads(rotated.after)) == (
        {"api_key_encrypted": "[redacted]"}, {"api_key_encrypted": "[redacted]"})
    assert KEY not in all_audit_text(settings) and NEW_KEY not in all_audit_text(settings)


def test_the_edit_form_refuses_a_bad_base_url(admin, settings):
    add_via_page(admin, "p", "http://127.0.0.1:9/v1")
    response = admin.post_form("/admin/providers/p", {"base_url": "not a url", "api_key": NEW_KEY})
    assert response.status_code == 400 and "A base URL needs http:// or https://" in response.text
    assert NEW_KEY not in response.text
    assert stored(settings, "p").base_url == "http://127.0.0.1:9/v1"


def test_an_unknown_provider_is_a_404_page(admin):
    for response in (admin.get("/admin/providers/nope"), admin.post_form("/admin/providers/nope/disable", {}),
                     admin.post_form("/admin/providers/nope/test", {})):
        assert response.status_code == 404 and "There is no provider named “nope”." in response.text


def test_disabling_takes_its_routes_out_of_the_published_model(admin, settings, redis_client):
    two_route_model(settings)
    assert [route["provider"] for route in published(redis_client)["routes"]] == ["p1", "p2"]
    response = admin.post_form("/admin/providers/p1/disable", {})
    assert response.status_code == 200
    assert "Provider p1 is disabled: the gateway stops using its routes within a second." in response.text
    row = re.search(r'<tr id="provider-p1">.*?</tr>', response.text, re.DOTALL).group(0)
    assert "disabled" in row and "Enable p1" in row
    document = published(redis_client)
    assert [route["provider"] for route in document["routes"]] == ["p2"]
    # Holds are priced at the routes left: p2's input $2, output $3.
    assert (document["price"]["input"], document["price"]["output"]) == (2_000_000_000, 3_000_000_000)
    provider = stored(settings, "p1")
    assert provider.disabled_at is not None
    disabled = audit_rows(settings, "provider", provider.id)[-1]
    assert (disabled.action, disabled.actor, json.loads(disabled.before)) == (
        "update", f"admin {admin.email}", {"disabled_at": None})
    assert json.loads(disabled.after)["disabled_at"].endswith("Z")

    response = admin.post_form("/admin/providers/p1/enable", {})
    assert "Provider p1 is enabled" in response.text
    assert [route["provider"] for route in published(redis_client)["routes"]] == ["p1", "p2"]
    assert stored(settings, "p1").disabled_at is None


def test_a_model_left_without_an_enabled_provider_is_withdrawn(admin, settings, redis_client):
    two_route_model(settings)
    with db.session_scope(settings) as session:
        upstreams.add_alias(session, "m-alias", "m")
    admin.post_form("/admin/providers/p1/disable", {})
    response = admin.post_form("/admin/providers/p2/disable", {})
    assert ("Not served until one of their providers is enabled (customers get 404 model_not_found): m."
            in response.text)
    assert published(redis_client) is None and published(redis_client, "m-alias") is None
    assert not {"m", "m-alias"} & redis_client.smembers(redis_keys.MODELS)
    models_page = admin.get("/admin/models").text
    assert "not served" in re.search(r'<tr id="model-m">.*?</tr>', models_page, re.DOTALL).group(0)
    admin.post_form("/admin/providers/p2/enable", {})
    assert [route["provider"] for route in published(redis_client)["routes"]] == ["p2"]
    assert published(redis_client, "m-alias")["name"] == "m"


# The Test button ---------------------------------------------------------------------------------


def test_the_test_button_shows_a_200_and_its_latency(admin, settings, sim):
    sim.enqueue(body=LISTING)
    add_via_page(admin, "sim", sim.url + "/v1")
    response = admin.post_form("/admin/providers/sim/test", {})
    assert response.status_code == 200
    message = re.search(r'<p class="flash success"[^>]*>(.*?)</p>', response.text).group(1)
    assert re.fullmatch(rf"Test of sim \(GET {sim.url}/v1/models\): HTTP 200 OK in \d+ ms \(lists 2 models\)\.",
                        message), message
    request = sim.last_request
    assert (request.method, request.path, request.headers["Authorization"]) == ("GET", "/v1/models", f"Bearer {KEY}")
    assert KEY not in response.text


@pytest.mark.parametrize(("status", "shown"), [(401, "HTTP 401 Unauthorized"), (500, "HTTP 500 Internal Server Error")])
def test_the_test_button_shows_a_refusal(admin, sim, status, shown):
    sim.enqueue(body=ERROR, status=status)  # the body quotes the key: it is never shown
    add_via_page(admin, "sim", sim.url + "/v1")
    response = admin.post_form("/admin/providers/sim/test", {})
    message = re.search(r'<p class="flash error"[^>]*>(.*?)</p>', response.text).group(1)
    assert re.fullmatch(rf"Test of sim \(GET {sim.url}/v1/models\): {shown} in \d+ ms\.", message), message
    assert KEY not in response.text


def test_the_test_button_shows_why_an_unreachable_provider_did_not_answer(admin, sim):
    add_via_page(admin, "gone", sim.url_unreachable + "/v1")
    response = admin.post_form("/admin/providers/gone/test", {})
    assert re.search(r"Test of gone \(GET http://127\.0\.0\.1:\d+/v1/models\): no answer after \d+ ms: "
                     r"connection refused\.", response.text), response.text


def test_an_anthropic_provider_is_tested_with_its_own_headers(admin, sim):
    sim.enqueue(body=LISTING)
    add_via_page(admin, "claude", sim.url, protocol="anthropic")
    response = admin.post_form("/admin/providers/claude/test", {})
    assert "HTTP 200 OK" in response.text
    request = sim.last_request
    assert (request.path, request.headers["x-api-key"], request.headers["anthropic-version"]) == (
        "/v1/models", KEY, "2023-06-01")
    assert "Authorization" not in request.headers


def test_a_redirect_is_reported_not_followed(admin, sim):
    sim.enqueue(body=b"{}", status=307, headers={"location": "http://127.0.0.1:9/elsewhere"})
    add_via_page(admin, "moved", sim.url + "/v1")
    response = admin.post_form("/admin/providers/moved/test", {})
    assert "HTTP 307 Temporary Redirect" in response.text and len(sim.requests) == 1


# The CLI ---------------------------------------------------------------------------------------


def test_provider_list_shows_the_last_four_only(cli, settings):
    two_route_model(settings)
    cli("provider", "disable", "p2")
    result = cli("provider", "list")
    assert result.exit_code == 0 and KEY not in result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "protocol", "base", "URL", "key", "state", "routes"]
    assert re.fullmatch(r"p1\s+openai\s+http://127\.0\.0\.1:9/v1\s+…7f3a\s+enabled\s+m \(\d+\)", lines[1])
    assert re.fullmatch(r"p2\s+openai\s+http://127\.0\.0\.1:9/v1\s+…7f3a\s+disabled since \S+Z\s+m \(\d+\)", lines[2])
    items = json.loads(cli("provider", "list", "--json").stdout)
    assert [(item["name"], item["key"], item["enabled"], [route["model"] for route in item["routes"]])
            for item in items] == [("p1", "…7f3a", True, ["m"]), ("p2", "…7f3a", False, ["m"])]
    assert KEY not in cli("provider", "list", "--json").stdout


def test_provider_disable_and_enable_republish(cli, settings, redis_client):
    two_route_model(settings)
    result = cli("provider", "disable", "p1")
    assert (result.exit_code, result.stdout) == (0, ("provider p1 disabled: the gateway stops using its 1 route(s) "
                                                    "within 1 s\n"))
    assert [route["provider"] for route in published(redis_client)["routes"]] == ["p2"]
    result = cli("provider", "disable", "p2")
    assert result.stdout.splitlines()[-1] == ("not served until a provider of theirs is enabled (they answer 404 "
                                              "model_not_found): m")
    assert published(redis_client) is None
    assert audit_rows(settings, "provider", stored(settings, "p2").id)[-1].actor.startswith("cli ")
    result = cli("provider", "enable", "p1")
    assert (result.exit_code, result.stdout) == (0, ("provider p1 enabled: the gateway uses its 1 route(s) again "
                                                    "within 1 s\n"))
    assert [route["provider"] for route in published(redis_client)["routes"]] == ["p1"]
    assert cli("provider", "disable", "nope").exit_code == 2


def test_provider_test_exits_0_on_a_2xx_and_1_otherwise(cli, sim):
    cli("provider", "add", "sim", "--protocol", "openai", "--base-url", sim.url + "/v1", "--api-key", KEY)
    sim.enqueue(body=LISTING)
    result = cli("provider", "test", "sim")
    assert result.exit_code == 0 and re.fullmatch(
        rf"provider sim: GET {sim.url}/v1/models: HTTP 200 OK in \d+ ms \(lists 2 models\)\n", result.stdout)
    sim.enqueue(body=ERROR, status=401)
    result = cli("provider", "test", "sim", "--json")
    answer = json.loads(result.stdout)
    assert result.exit_code == 1 and KEY not in result.stdout
    assert (answer["ok"], answer["status"], answer["error"], answer["url"]) == (False, 401, None, f"{sim.url}/v1/models")
    assert isinstance(answer["latency_ms"], int)
    cli("provider", "add", "gone", "--protocol", "openai", "--base-url", sim.url_unreachable, "--api-key", KEY)
    result = cli("provider", "test", "gone", "--json")
    assert result.exit_code == 1
    assert (json.loads(result.stdout)["status"], json.loads(result.stdout)["error"]) == (None, "connection refused")
    result = cli("provider", "test", "nope")
    assert result.exit_code == 2 and "no provider named 'nope'" in result.stderr


# The admin API ----------------------------------------------------------------------------------


@pytest.fixture
def api(client, settings):
    """call(method, path, body=None, read_only=False) with an admin key: (status, JSON)."""
    keys = {False: make_admin_key(settings), True: make_admin_key(settings, read_only=True)}

    def call(method: str, path: str, body=None, read_only: bool = False, raw: bytes | None = None):
        response = client.open(f"/api/admin/v1{path}", method=method, data=raw if raw is not None else (
            None if body is None else json.dumps(body)), content_type="application/json",
            headers={"Authorization": f"Bearer {keys[read_only]}"})
        return response.status_code, response.get_json()

    return call


def test_api_adds_updates_and_lists_providers_without_their_keys(api, settings, redis_client):
    status, body = api("POST", "/providers", {"name": "p", "protocol": "anthropic",
                                              "base_url": "http://127.0.0.1:9", "api_key": KEY})
    assert status == 201 and (body["name"], body["protocol"], body["key"], body["enabled"], body["live"]) == (
        "p", "anthropic", "…7f3a", True, True)
    assert KEY not in json.dumps(body)
    provider_id = body["id"]
    assert audit_rows(settings, "provider", provider_id)[0].actor.startswith("admin key ")
    # An update: the key left out is kept.
    status, body = api("POST", "/providers", {"name": "p", "base_url": "http://localhost:9"})
    assert (status, body["base_url"], body["protocol"], body["key"]) == (200, "http://localhost:9", "anthropic",
                                                                          "…7f3a")
    assert crypto.decrypt(settings, stored(settings, "p").api_key_encrypted) == KEY
    status, listed = api("GET", "/providers", read_only=True)
    assert status == 200 and [item["name"] for item in listed["data"]] == ["p"] and KEY not in json.dumps(listed)


@pytest.mark.parametrize(("body", "detail"), [
    ({"name": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9"},
     "A new provider needs its API key ('p' has none yet)."),
    ({"name": "p", "protocol": "grpc", "base_url": "http://127.0.0.1:9", "api_key": KEY},
     "Protocol must be one of openai, anthropic, got 'grpc'."),
    ({"name": "p", "protocol": "openai", "base_url": "127.0.0.1:9", "api_key": KEY},
     "A base URL needs http:// or https:// and a host, got '127.0.0.1:9'."),
    ({"name": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9", "api_key": 12},
     "'api_key' must be a string."),
    ({"protocol": "openai"}, "'name' must be a string (required)."),
    ({"name": "p", "secret": "x"}, ("'secret' must be one of name, protocol, base_url, api_key (not a field of this "
                                   "request).")),
])
def test_api_refuses_a_bad_provider_with_a_400(api, body, detail):
    status, answer = api("POST", "/providers", body)
    assert (status, answer["error"]["code"], answer["error"]["message"]) == (400, "invalid_parameter", detail)


def test_api_refuses_a_body_that_is_not_an_object(api):
    status, answer = api("POST", "/providers", raw=b"[1, 2")
    assert (status, answer["error"]["code"]) == (400, "invalid_request")
    assert answer["error"]["message"].startswith("The body must be a JSON object, e.g. {")


def test_api_disables_enables_and_tests(api, settings, redis_client, sim):
    two_route_model(settings, url=sim.url + "/v1")
    status, body = api("POST", "/providers/p1/disable")
    assert (status, body["enabled"], body["models_not_served"], body["live"]) == (200, False, [], True)
    assert [route["provider"] for route in published(redis_client)["routes"]] == ["p2"]
    status, body = api("POST", "/providers/p2/disable")
    assert body["models_not_served"] == ["m"] and published(redis_client) is None
    status, body = api("POST", "/providers/p1/enable")
    assert (status, body["enabled"]) == (200, True)
    sim.enqueue(body=LISTING)
    status, body = api("POST", "/providers/p1/test")
    assert (status, body["ok"], body["status"], body["models"]) == (200, True, 200, 2)
    sim.enqueue(body=ERROR, status=500)
    status, body = api("POST", "/providers/p1/test")
    assert (status, body["ok"], body["status"], body["summary"].split(" in ")[0]) == (
        200, False, 500, "HTTP 500 Internal Server Error")
    assert KEY not in json.dumps(body)


def test_api_unknown_providers_are_404_and_read_only_keys_change_nothing(api, settings):
    for path in ("/providers/nope/disable", "/providers/nope/enable", "/providers/nope/test"):
        status, answer = api("POST", path)
        assert (status, answer["error"]["code"], answer["error"]["message"]) == (
            404, "not_found", "No provider named 'nope'.")
    status, answer = api("POST", "/providers", {"name": "p", "protocol": "openai", "base_url": "http://127.0.0.1:9",
                                                "api_key": KEY}, read_only=True)
    assert (status, answer["error"]["code"]) == (403, "admin_key_read_only")
    with db.read_session(settings) as session:
        assert upstreams.providers(session) == []
