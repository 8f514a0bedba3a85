"""Held price changes in the admin console (/admin/prices/held) and the admin API's price endpoints
(/api/admin/v1/prices/…): approve, reject, sync — in-process against real SQL and Redis."""
from __future__ import annotations

import html
import json
import re
from decimal import Decimal

import pytest
from admin_client import make_admin_key, signed_in_admin
from sqlalchemy import select
from test_price_sync import (  # noqa: F401 (the catalog, price_server and providers fixtures)
    LITELLM,
    add_model,
    catalog_fixture,
    cost_of,
    holds_of,
    price_server_fixture,
    providers_fixture,
    published,
    route_of,
    snapshot,
    sync,
)

from control_plane import db
from control_plane.models import AuditEntry

HELD = "/admin/prices/held"


@pytest.fixture
def held(settings, cli, catalog):
    """The LiteLLM fixture applied: gpt-4o changed, mini's +200% held; the hold."""
    result = sync(cli, str(LITELLM), "--apply")
    assert result.exit_code == 0, result.output
    [hold] = holds_of(settings)
    return hold


@pytest.fixture
def admin_client(settings, app):
    return signed_in_admin(settings, app=app)


def text_of(page: str) -> str:
    """The page's text, tags dropped and whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def section(page: str, hold_id: int) -> str:
    found = re.search(rf'<section class="card price-hold" id="hold-{hold_id}".*?</section>', page, re.DOTALL)
    assert found, page
    return text_of(found.group(0))


# The page -------------------------------------------------------------------------------------------


def test_pending_holds_show_the_route_every_class_now_and_proposed_and_the_reason(settings, admin_client, held):
    response = admin_client.get(HELD)
    assert response.status_code == 200
    route = route_of(settings, "mini").id
    shown = section(response.text, held.id)
    assert f"Route {route}: mini via openai/mini" in shown
    assert "Why it was held: input rises +200% (more than 50%); output rises +200% (more than 50%)" in shown
    assert f"From {LITELLM}, held " in shown and f"compared with cost version {held.current_version_id}" in shown
    # Every class as charged: one without its own price follows its fallback's change.
    assert ("Class Now (USD per 1M tokens) Proposed (USD per 1M tokens) Change "
            "input $0.05 $0.15 +200% "
            "cached input $0.05 (as input) $0.075 +50% "
            "cache write $0.05 (as input) $0.15 (as input) +200% "
            "cache write 1h $0.05 (as cache write) $0.15 (as cache write) +200% "
            "output $0.20 $0.60 +200% "
            "reasoning $0.20 (as output) $0.60 (as output) +200%") in shown
    assert "Approve and apply" in shown and "Reject" in shown
    assert 'aria-current="page">Models and routes' in response.text
    assert "No held price change was decided yet." in text_of(response.text)


def test_approve_and_apply_makes_a_new_cost_version_approved_by_the_admin(settings, admin_client, redis_client, held):
    response = admin_client.post_form(f"{HELD}/{held.id}/approve", {})
    assert response.status_code == 200
    version = cost_of(settings, "mini")
    assert f"Approved: route {held.route_id} now costs cost version {version.id}." in text_of(response.text)
    assert (version.input, version.cached_input, version.output) == (150_000_000, 75_000_000, 600_000_000)
    assert (version.source, version.created_by) == (f"sync {LITELLM} (approved by {admin_client.email})",
                                                    f"admin {admin_client.email}")
    [hold] = holds_of(settings)
    assert (hold.state, hold.decided_by) == ("approved", f"admin {admin_client.email}")
    assert published(redis_client, "mini")["routes"][0]["cost"]["version"] == version.id
    with db.session_scope(settings) as session:
        entries = {entry.entity: entry for entry in session.scalars(
            select(AuditEntry).where(AuditEntry.actor == f"admin {admin_client.email}",
                                     AuditEntry.entity.in_(("price_version", "price_hold"))))}
    assert entries["price_version"].reason == f"sync {LITELLM} (approved by {admin_client.email})"
    assert json.loads(entries["price_hold"].after) == {"state": "approved", "decided_by": f"admin {admin_client.email}",
                                                       "decided_at": json.loads(entries["price_hold"].after)[
                                                           "decided_at"]}
    # Decided: no longer pending, listed among the recently decided.
    page = text_of(admin_client.get(HELD).text)
    assert "No price changes are waiting for approval." in page
    assert (f"{held.id} {held.route_id}: mini via openai/mini approved admin {admin_client.email}") in page
    assert "input $0.05 → $0.15; cached input $0.05 (as input) → $0.075; output $0.20 → $0.60" in page


def test_reject_leaves_the_cost_as_it_is(settings, admin_client, redis_client, held):
    before = snapshot(settings, redis_client)[1]
    version = cost_of(settings, "mini")
    response = admin_client.post_form(f"{HELD}/{held.id}/reject", {})
    assert f"Rejected: route {held.route_id}'s cost stays as it is." in text_of(response.text)
    assert cost_of(settings, "mini").id == version.id
    assert snapshot(settings, redis_client)[1] == before  # nothing republished
    [hold] = holds_of(settings)
    assert (hold.state, hold.decided_by) == ("rejected", f"admin {admin_client.email}")
    response = admin_client.post_form(f"{HELD}/{held.id}/approve", {})
    assert f"Not applied: held price change {held.id} was rejected already (by admin {admin_client.email})." in \
        text_of(response.text)


def test_a_stale_hold_offers_only_reject(settings, cli, admin_client, held):
    add_model(cli, "mini", "openai", None, "--input", "0.06", "--output", "0.20")
    page = admin_client.get(HELD).text
    shown = section(page, held.id)
    assert "The route's cost changed after this was held, so it can no longer be applied." in shown
    assert "Approve and apply" not in shown and "Reject" in shown
    response = admin_client.post_form(f"{HELD}/{held.id}/approve", {})
    assert f"Not applied: route {held.route_id}'s cost changed after price change {held.id} was held" in \
        text_of(response.text)
    assert cost_of(settings, "mini").input == 60_000_000


def test_an_unknown_hold_is_a_404_page(admin_client, held):
    response = admin_client.post_form(f"{HELD}/999999/approve", {})
    assert response.status_code == 404 and "There is no held price change 999999." in response.text


def test_a_post_without_the_csrf_token_is_refused(settings, admin_client, held):
    response = admin_client.post_form(f"{HELD}/{held.id}/approve", {}, csrf=False)
    assert response.status_code == 403
    assert holds_of(settings)[0].state == "pending"


# The admin API --------------------------------------------------------------------------------------


def api(client, settings, method: str, path: str, body=None, key: str | None = None):
    key = key or make_admin_key(settings)
    response = client.open(f"/api/admin/v1{path}", method=method, headers={"Authorization": f"Bearer {key}"},
                           data=None if body is None else (body if isinstance(body, str) else json.dumps(body)),
                           content_type="application/json")
    return response.status_code, json.loads(response.get_data(), parse_float=Decimal)


def test_api_lists_held_changes_with_every_class(settings, client, held):
    status, body = api(client, settings, "GET", "/prices/held")
    assert status == 200
    [item] = body["data"]
    assert (item["id"], item["model"], item["provider"], item["state"], item["stale"], item["source"]) == (
        held.id, "mini", "openai", "pending", False, str(LITELLM))
    assert item["classes"][0] == {
        "field": "input", "current": Decimal("0.05"), "current_nano": 50_000_000, "proposed": Decimal("0.15"),
        "proposed_nano": 150_000_000, "current_charged": Decimal("0.05"), "current_charged_nano": 50_000_000,
        "proposed_charged": Decimal("0.15"), "proposed_charged_nano": 150_000_000, "change_percent": Decimal("200.0")}
    assert api(client, settings, "GET", "/prices/held?state=decided")[1] == {"data": []}
    status, body = api(client, settings, "GET", "/prices/held?state=old")
    assert (status, body["error"]["code"]) == (400, "invalid_parameter")


def test_api_approves_a_held_change(settings, client, redis_client, held):
    key = make_admin_key(settings)
    status, body = api(client, settings, "POST", f"/prices/held/{held.id}/approve", key=key)
    assert status == 200, body
    version = cost_of(settings, "mini")
    assert (body["state"], body["cost_version_id"], body["published"]) == ("approved", version.id, True)
    assert body["decided_by"].startswith("admin key ") and version.source.startswith(f"sync {LITELLM} (approved by ")
    assert published(redis_client, "mini")["routes"][0]["cost"]["version"] == version.id
    status, body = api(client, settings, "POST", f"/prices/held/{held.id}/approve", key=key)
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    assert body["error"]["message"].startswith(f"Held price change {held.id} was approved already")


def test_api_rejects_a_held_change_and_answers_404_for_an_unknown_one(settings, client, held):
    status, body = api(client, settings, "POST", f"/prices/held/{held.id}/reject")
    assert (status, body["state"]) == (200, "rejected")
    status, body = api(client, settings, "POST", "/prices/held/999999/reject")
    assert (status, body["error"]["code"], body["error"]["message"]) == (404, "not_found",
                                                                         "No held price change 999999.")


def test_a_read_only_key_may_list_but_not_decide(settings, client, held):
    key = make_admin_key(settings, read_only=True)
    assert api(client, settings, "GET", "/prices/held", key=key)[0] == 200
    status, body = api(client, settings, "POST", f"/prices/held/{held.id}/approve", key=key)
    assert (status, body["error"]["code"]) == (403, "admin_key_read_only")
    assert holds_of(settings)[0].state == "pending"


def test_api_sync_returns_the_diff_and_applies_only_when_asked(settings, client, redis_client, catalog,
                                                               price_server):
    url = price_server.serve("/prices.json", LITELLM.read_bytes())
    before = snapshot(settings, redis_client)
    status, body = api(client, settings, "POST", "/prices/sync", {"source": url, "format": "litellm"})
    assert status == 200, body
    assert (body["applied"], body["counts"]["changed"], body["counts"]["held"]) == (False, 1, 1)
    gpt = next(item for item in body["routes"] if item["model"] == "gpt-4o")
    assert [(item["field"], item["current"], item["proposed"], item["change_percent"]) for item in gpt["classes"]] == [
        ("input", Decimal(2), Decimal("2.5"), Decimal("25.0")), ("cached_input", Decimal(1), Decimal("1.25"),
                                                                  Decimal("25.0")),
        ("output", Decimal(8), Decimal(10), Decimal("25.0"))]
    assert snapshot(settings, redis_client)[0]["price_versions"] == before[0]["price_versions"]
    status, body = api(client, settings, "POST", "/prices/sync",
                       {"source": url, "format": "litellm", "apply": True, "add_new": True, "provider": "openai"})
    assert status == 200, body
    assert (body["applied"], body["published"], body["counts"]["models_added"]) == (True, True, 3)
    version = cost_of(settings, "gpt-4o")
    assert version.output == 10_000_000_000 and version.source == f"sync {url}"
    assert version.created_by.startswith("admin key ")


@pytest.mark.parametrize(("body", "message"), [
    ({"source": str(LITELLM), "format": "litellm"}, "'source' must be the price list's http(s) URL."),
    ({"source": "http://127.0.0.1:9/x.json", "format": "csv"}, "'format' must be 'litellm' or 'openrouter'."),
    ({"source": "http://127.0.0.1:9/x.json", "apply": "yes"}, "'apply' must be true or false."),
    ("[1, 2]", ('The body must be a JSON object, e.g. {"source": "https://openrouter.ai/api/v1/models", '
                '"format": "openrouter", "apply": false}.')),
    ({"source": "http://127.0.0.1:9/x.json", "add_new": True},
     "'provider' must be the name of the provider that serves the models add_new adds."),
    ({"source": "http://127.0.0.1:9/x.json", "add_new": True, "provider": "nobody"},
     "No provider named 'nobody' (add it with `tollgate provider add`)."),
])
def test_api_sync_refuses_a_bad_request(settings, client, catalog, body, message):
    status, answer = api(client, settings, "POST", "/prices/sync", body)
    assert status == 400 and answer["error"]["message"] == message


def test_api_sync_from_a_failing_list_changes_nothing(settings, client, redis_client, catalog, price_server):
    url = price_server.serve("/prices.json", b"not json")
    key = make_admin_key(settings)
    before = snapshot(settings, redis_client)
    status, body = api(client, settings, "POST", "/prices/sync", {"source": url, "apply": True}, key=key)
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    assert body["error"]["message"] == f"The price list could not be read, so nothing changed: {url} is not JSON: " \
                                       "Expecting value: line 1 column 1 (char 0)."
    assert snapshot(settings, redis_client) == before
