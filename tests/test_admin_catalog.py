"""The Models and routes pages, `tollgate model list` and the admin API's models, routes, aliases
and prices: literal prices, costs and margins per class, routes in the order tried with their
health per gateway node, every price version with its source and author, the audit log's rows,
and bad input answered with a clear 400 or 404. Pages in-process; Redis and SQL real."""
from __future__ import annotations

import html
import json
import re
import time

import pytest
from admin_client import make_admin_key, signed_in_admin
from sqlalchemy import select

from control_plane import db
from control_plane.catalog import upstreams
from control_plane.hot import redis_keys
from control_plane.models import AuditEntry, PriceVersion
from control_plane.money import usd_to_nano

CLASSES = ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")


@pytest.fixture
def providers(settings):
    """Providers p1, p2 (OpenAI's protocol) and p3 (Anthropic's), all at 127.0.0.1:9."""
    with db.session_scope(settings) as session:
        for name, protocol in (("p1", "openai"), ("p2", "openai"), ("p3", "anthropic")):
            upstreams.upsert_provider(session, settings, name, protocol, "http://127.0.0.1:9/v1", "sk-upstream-key")


@pytest.fixture
def admin(app, settings, providers):
    return signed_in_admin(settings, app=app)


def add_model(admin, name: str = "m", provider: str = "p1", **fields):
    """The Add a model form: input $2.40, output $12.00 per 1M unless given."""
    prices = {"input": "2.40", "output": "12.00", **{field: fields.pop(field) for field in CLASSES if field in fields}}
    return admin.post_form("/admin/models", {"name": name, "provider": provider, "upstream_model": "",
                                             "max_output": "", "price_source_id": "", **prices, **fields})


def route_fields(provider: str, **fields) -> dict:
    prices = {f"route-{field}": fields.pop(field) for field in CLASSES if field in fields}
    return {"route-provider": provider, **prices, **{f"route-{name}": value for name, value in fields.items()}}


def set_price(admin, name: str = "m", charging: str = "fixed", **prices):
    return admin.post_form(f"/admin/models/{name}/price", {"price-charging": charging,
                                                           **{f"price-{field}": v for field, v in prices.items()}})


def flash(response) -> str:
    found = re.search(r'<p class="flash (?:success|error)"[^>]*>(.*?)</p>', response.text, re.DOTALL)
    return html.unescape(found.group(1)) if found else ""


def text(fragment: str) -> str:
    """A page fragment as it reads: tags dropped, whitespace collapsed."""
    spaced = re.sub(r"</?(?:br|p|div|dt|dd|li|tr|td|th|h1|h2)\b[^>]*>", " ", fragment)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", spaced)).split())


def cells(page: str, row_id: str) -> list[str]:
    """The text of each cell of the row with this id."""
    row = re.search(rf'<tr id="{re.escape(row_id)}">(.*?)</tr>', page, re.DOTALL).group(1)
    return [text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]


def document(redis_client, name: str = "m") -> dict | None:
    text = redis_client.get(redis_keys.model(name))
    return None if text is None else json.loads(text)


def only_route(settings, name: str = "m") -> int:
    with db.read_session(settings) as session:
        [route] = upstreams.routes_of(session, upstreams.require_model(session, name).id)
        return route.id


def audit(settings, entity: str) -> list[AuditEntry]:
    with db.read_session(settings) as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.entity == entity).order_by(AuditEntry.id)))
        session.expunge_all()
        return rows


# Pages -------------------------------------------------------------------------------------------


def test_adding_a_model_publishes_it_at_cost(admin, settings, redis_client):
    response = add_model(admin, price_source_id="anthropic/claude-x", max_output="4096")
    assert response.status_code == 200 and flash(response) == "Model m is added, charged at cost."
    route_id = only_route(settings)
    assert cells(response.text, f"route-{route_id}")[:6] == [str(route_id), "p1", "m", "0", "1", "anthropic/claude-x"]
    assert "Max output 4,096 tokens" in text(response.text)
    published = document(redis_client)
    assert (published["at_cost"], published["max_output"], published["routes"][0]["cost"]["input"]) == (
        True, 4096, 2_400_000_000)
    listing = admin.get("/admin/models").text
    assert cells(listing, "model-m") == ["m", "none", "at cost", "1 of 1", "$2.40", "$12.00", "served"]
    [version] = audit(settings, "price_version")
    assert (version.action, version.actor) == ("create", f"admin {admin.email}")
    assert json.loads(version.after)["source"] == "admin console"


@pytest.mark.parametrize(("fields", "error"), [
    ({"input": ""}, "Required: USD per 1M tokens, e.g. 2.50."),
    ({"output": "1.2.3"}, "USD per 1M tokens from 0 to $10000.00, with at most 9 decimals, e.g. 2.50."),
    ({"cached_input": "0.0000000001"}, "with at most 9 decimals"),
    ({"input": "-1"}, "USD per 1M tokens from 0 to $10000.00"),
    ({"input": "1e999999999"}, "USD per 1M tokens from 0 to $10000.00"),
    ({"name": "two words"}, "1-100 letters, digits and ._:/@+- (no spaces)."),
    ({"provider": "nope"}, "Not a valid choice."),
    ({"max_output": "0"}, "Number must be between 1 and 100000000."),
    ({"max_output": "lots"}, "Not a valid integer value."),
])
def test_the_add_model_form_refuses_bad_input(admin, settings, fields, error):
    response = add_model(admin, **fields)
    assert response.status_code == 400 and error in html.unescape(response.text), error
    with db.read_session(settings) as session:
        assert upstreams.models(session) == []


def test_adding_a_model_of_the_other_protocol_to_an_existing_name_is_refused(admin, settings):
    add_model(admin)
    response = add_model(admin, provider="p3")
    assert response.status_code == 400 and "A model of this name exists" in response.text
    with db.session_scope(settings) as session:
        upstreams.add_alias(session, "nick", "m")
    response = add_model(admin, name="nick")
    assert response.status_code == 400
    assert "&#39;nick&#39; is an alias of model m; a model needs a name no alias has." in response.text


def test_customer_price_against_cost_and_the_margin_per_class(admin, settings, redis_client):
    add_model(admin)
    response = set_price(admin, input="3.00", output="15", cached_input="0.30")
    assert flash(response) == "Model m is charged a fixed price: the prices given."
    route_id = only_route(settings)
    page = response.text
    # input $3.00 − $2.40; cached $0.30 − $2.40 (the cost's cached price defaults to its input price).
    assert cells(page, f"margin-{route_id}-input")[-4:] == ["input", "$3.00", "$2.40", "$0.60"]
    assert cells(page, f"margin-{route_id}-cached_input") == ["cached", "$0.30", "$2.40", "-$2.10"]
    assert cells(page, f"margin-{route_id}-output") == ["output", "$15.00", "$12.00", "$3.00"]
    assert cells(page, f"margin-{route_id}-reasoning") == ["reasoning", "$15.00", "$12.00", "$3.00"]
    assert 'class="num status-error">-$2.10' in page
    assert cells(admin.get("/admin/models").text, "model-m")[2:6] == ["fixed price", "1 of 1", "$3.00", "$15.00"]
    published = document(redis_client)
    assert (published["at_cost"], published["price"]["input"], published["price"]["cached_input"]) == (
        False, 3_000_000_000, 300_000_000)
    # The form shows the current fixed price again.
    assert 'name="price-input" type="text" value="3.00"' in page

    response = set_price(admin, charging="at_cost")
    assert flash(response) == "Model m is charged at cost: each request at its route's cost."
    assert cells(response.text, f"margin-{route_id}-input")[-4:] == ["input", "$2.40", "$2.40", "$0.00"]
    assert document(redis_client)["price"]["version"] == 0
    changes = [json.loads(row.after) for row in audit(settings, "model") if row.action == "update"]
    assert changes == [{"at_cost": False}, {"at_cost": True}]
    assert {row.actor for row in audit(settings, "model")} == {f"admin {admin.email}"}


def test_price_versions_list_their_source_and_author(admin, settings, cli):
    add_model(admin)
    set_price(admin, input="3", output="15")
    assert cli("route", "add", "m", "--provider", "p1", "--upstream-model", "m", "--input", "2", "--output",
               "10").exit_code == 0
    page = admin.get("/admin/models/m").text
    with db.read_session(settings) as session:
        versions = list(session.scalars(select(PriceVersion).order_by(PriceVersion.id)))
    first_cost, price, second_cost = versions
    route_id = only_route(settings)
    row = cells(page, f"price-version-{second_cost.id}")
    assert row[:2] == [str(second_cost.id), f"cost of route {route_id} p1/m"]
    assert (row[3], row[4], row[5:]) == ("cli", second_cost.created_by, ["$2.00", "$2.00 default", "$2.00 default",
                                                                         "$2.00 default", "$10.00", "$10.00 default"])
    assert second_cost.created_by.startswith("cli ")
    row = cells(page, f"price-version-{price.id}")
    assert row[1] + row[3] + row[4] == f"customer priceadmin consoleadmin {admin.email}"
    assert row[5] == "$3.00" and row[9] == "$15.00"
    row = cells(page, f"price-version-{first_cost.id}")
    assert (row[3], row[4], row[5]) == ("admin console", f"admin {admin.email}", "$2.40")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row[2])
    # Newest first.
    assert page.index(f"price-version-{second_cost.id}") < page.index(f"price-version-{first_cost.id}")


def test_routes_are_added_updated_shown_in_order_and_removed(admin, settings, redis_client):
    add_model(admin)
    first = only_route(settings)
    response = admin.post_form("/admin/models/m/routes", route_fields(
        "p2", upstream_model="m-two", priority="1", weight="3", input="2", output="9", price_source_id="m-two-src"))
    assert response.status_code == 200
    second = int(re.fullmatch(r"Route (\d+) \(p2/m-two\) is saved\.", flash(response)).group(1))
    page = response.text
    assert page.index(f'id="route-{first}"') < page.index(f'id="route-{second}"')
    assert cells(page, f"route-{second}")[:7] == [
        str(second), "p2", "m-two", "1", "3", "m-two-src",
        "input $2.00 cached $2.00 cache write $2.00 cache write 1h $2.00 output $9.00 reasoning $9.00 cost version "
        + str(document(redis_client)["routes"][1]["cost"]["version"])]
    assert [route["id"] for route in document(redis_client)["routes"]] == [first, second]
    # The same provider and upstream model: an update (a new weight, the same cost).
    admin.post_form("/admin/models/m/routes", route_fields("p2", upstream_model="m-two", weight="5", input="2",
                                                           output="9"))
    assert [(route["id"], route["weight"]) for route in document(redis_client)["routes"]] == [(first, 1), (second, 5)]
    route_audit = [row for row in audit(settings, "route") if row.entity_id == str(second)]
    assert [(row.action, row.before and json.loads(row.before)) for row in route_audit] == [
        ("create", None), ("update", {"weight": 3})]
    response = admin.post_form(f"/admin/models/m/routes/{first}/remove", {})
    assert flash(response) == f"Route {first} is removed; its cost versions stay in the history."
    assert f'id="route-{first}"' not in response.text and "its only route" in response.text
    assert f"cost of route {first} (removed)" in text(response.text)
    assert [route["id"] for route in document(redis_client)["routes"]] == [second]
    response = admin.post_form(f"/admin/models/m/routes/{second}/remove", {})
    assert flash(response) == f"Route {second} is the only route of model m; add another first."
    assert [route["id"] for route in document(redis_client)["routes"]] == [second]


@pytest.mark.parametrize(("fields", "error"), [
    ({"weight": "0"}, "Number must be between 1 and 1000."),
    ({"priority": "1001"}, "Number must be between 0 and 1000."),
    ({"output": ""}, "Required: USD per 1M tokens, e.g. 2.50."),
    ({"provider": "p3"}, "Model m is served over openai; provider p3 speaks anthropic."),
    ({"upstream_model": "tab\there"}, "An upstream model name is 1 to 200 printable characters"),
])
def test_the_route_form_refuses_bad_input(admin, settings, fields, error):
    add_model(admin)
    response = admin.post_form("/admin/models/m/routes", route_fields(
        **{"provider": "p2", "input": "1", "output": "2", **fields}))
    assert response.status_code == 400 and error in html.unescape(response.text)
    with db.read_session(settings) as session:
        assert len(upstreams.routes_of(session, upstreams.require_model(session, "m").id)) == 1


def test_the_price_form_needs_a_whole_fixed_price(admin, settings):
    add_model(admin)
    response = set_price(admin, input="3")
    assert response.status_code == 400 and "Required: USD per 1M tokens, e.g. 2.50." in response.text
    response = admin.post_form("/admin/models/m/price", {})
    assert response.status_code == 400 and "Choose at cost or a fixed price." in response.text
    with db.read_session(settings) as session:
        assert upstreams.require_model(session, "m").at_cost


def test_aliases_are_added_and_removed(admin, settings, redis_client):
    add_model(admin)
    response = admin.post_form("/admin/models/m/aliases", {"alias": "m-latest"})
    assert flash(response) == "Customers may call m as m-latest too."
    assert document(redis_client, "m-latest")["name"] == "m" and "m-latest" in redis_client.smembers(redis_keys.MODELS)
    assert cells(admin.get("/admin/models").text, "model-m")[1] == "m-latest"
    response = admin.post_form("/admin/models/m/aliases", {"alias": "m"})
    assert response.status_code == 400 and "&#39;m&#39; is a model&#39;s name; an alias needs a name no model has." \
        in response.text
    response = admin.post_form("/admin/aliases/m-latest/remove", {})
    assert flash(response) == "Alias m-latest is removed: customers calling it get 404 within a second."
    assert document(redis_client, "m-latest") is None and "m-latest" not in redis_client.smembers(redis_keys.MODELS)
    assert [row.action for row in audit(settings, "alias")] == ["create", "delete"]
    assert admin.post_form("/admin/aliases/m-latest/remove", {}).status_code == 404


def test_health_per_gateway_node(admin, settings, redis_client):
    add_model(admin)
    route_id = only_route(settings)
    assert cells(admin.get("/admin/models/m").text, f"route-{route_id}")[7] == "healthy"
    until = int(time.time() * 1000) + 60_000
    redis_client.hset(redis_keys.route_health("node-a"), str(route_id),
                      json.dumps({"state": "cooling", "until_ms": until, "fails": 3, "status": 503}))
    redis_client.hset(redis_keys.route_health("node-b"), str(route_id),
                      json.dumps({"state": "refused", "fails": 1, "status": 401}))
    health = cells(admin.get("/admin/models/m").text, f"route-{route_id}")[7]
    assert re.fullmatch(r"node-a: cooling until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(3 fails, last 503\) "
                        r"node-b: refused \(1 fails, last 401\)", health), health


def test_a_disabled_providers_route_is_marked(admin, settings):
    add_model(admin)
    admin.post_form("/admin/models/m/routes", route_fields("p2", input="1", output="2", priority="1"))
    admin.post_form("/admin/providers/p1/disable", {})
    page = admin.get("/admin/models/m").text
    assert cells(page, f"route-{only_route_to(settings, 'p1')}")[1] == "p1 disabled: not used"
    assert "State served by 1 of its 2 route(s)" in text(page)
    assert cells(admin.get("/admin/models").text, "model-m")[3:6] == ["1 of 2", "$1.00", "$2.00"]


def only_route_to(settings, provider: str) -> int:
    with db.read_session(settings) as session:
        return upstreams.routes_via(session, upstreams.require_provider(session, provider).id)[0].id


def test_a_model_name_with_a_slash_has_its_page(admin, settings):
    response = add_model(admin, name="openai/gpt-4o")
    assert response.status_code == 200 and "<h1>Model <span class=\"mono\">openai/gpt-4o</span></h1>" in response.text
    response = admin.post_form("/admin/models/openai/gpt-4o/aliases", {"alias": "gpt-4o"})
    assert flash(response) == "Customers may call openai/gpt-4o as gpt-4o too."


def test_unknown_models_and_routes_are_404_pages(admin, settings):
    assert admin.get("/admin/models/nope").status_code == 404
    assert admin.post_form("/admin/models/nope/routes", route_fields("p1", input="1", output="1")).status_code == 404
    add_model(admin)
    response = admin.post_form("/admin/models/m/routes/999999/remove", {})
    assert response.status_code == 404 and "Model “m” has no route 999999." in response.text


# The CLI -----------------------------------------------------------------------------------------


def test_model_list(cli, settings, providers):
    with db.session_scope(settings) as session:
        upstreams.upsert_model(session, "cheap", "p1", {"input": usd_to_nano("1"), "output": usd_to_nano("2")})
        upstreams.upsert_route(session, "cheap", "p2", {"input": usd_to_nano("3"), "output": usd_to_nano("2")},
                               priority=1)
        upstreams.upsert_model(session, "fixed", "p1", {"input": usd_to_nano("2.40"), "output": usd_to_nano("12")})
        upstreams.set_price(session, "fixed", {"input": usd_to_nano("3"), "output": usd_to_nano("15")})
        upstreams.add_alias(session, "fixed-latest", "fixed")
    result = cli("model", "list")
    assert result.exit_code == 0
    assert [line.split() for line in result.stdout.splitlines()] == [
        ["name", "charging", "routes", "input/1M", "output/1M", "aliases"],
        ["cheap", "at", "cost", "2/2", "$1.00-$3.00", "$2.00", "-"],
        ["fixed", "fixed", "price", "1/1", "$3.00", "$15.00", "fixed-latest"]]
    assert cli("provider", "disable", "p2").exit_code == 0
    assert cli("model", "list").stdout.splitlines()[1].split()[3:5] == ["1/2", "$1.00"]
    items = json.loads(cli("model", "list", "--json").stdout)
    fixed = items[1]
    assert (fixed["name"], fixed["charging"], fixed["aliases"], fixed["price"]["input"], fixed["price_nano"]["output"]) \
        == ("fixed", "fixed price", ["fixed-latest"], 3, 15_000_000_000)
    assert [(cost["provider"], cost["served"], cost["cost_nano"]["input"]) for cost in items[0]["route_costs"]] == [
        ("p1", True, 1_000_000_000), ("p2", False, 3_000_000_000)]
    assert items[0]["price"] is None and items[0]["served_route_count"] == 1


# The admin API -----------------------------------------------------------------------------------


@pytest.fixture
def api(client, settings, providers):
    keys = {False: make_admin_key(settings), True: make_admin_key(settings, read_only=True)}

    def call(method: str, path: str, body=None, read_only: bool = False, raw: bytes | None = None):
        response = client.open(f"/api/admin/v1{path}", method=method, data=raw if raw is not None else (
            None if body is None else json.dumps(body)), content_type="application/json",
            headers={"Authorization": f"Bearer {keys[read_only]}"})
        return response.status_code, response.get_json()

    return call


def test_api_adds_a_model_and_shows_its_routes_margins_and_versions(api, settings, redis_client):
    status, body = api("POST", "/models", raw=b'{"name": "m", "provider": "p1", "prices": {"input": 2.40, '
                                              b'"output": "12"}, "price_source_id": "src/m", "max_output": 4096}')
    assert status == 201 and body["live"] is True
    [route] = body["routes"]
    assert (route["provider"], route["price_source_id"], route["cost_nano"]["input"], route["margin_nano"]["input"],
            route["health"]) == ("p1", "src/m", 2_400_000_000, 0, [])
    assert document(redis_client)["max_output"] == 4096
    status, body = api("PUT", "/models/m/price", raw=b'{"prices": {"input": "3.00", "output": 15}}')
    assert status == 200 and (body["at_cost"], body["charging"]) == (False, "fixed price")
    [route] = body["routes"]
    assert (route["price_nano"]["input"], route["cost_nano"]["input"], route["margin_nano"]["input"]) == (
        3_000_000_000, 2_400_000_000, 600_000_000)
    status, shown = api("GET", "/models/m", read_only=True)
    assert status == 200
    versions = shown["price_versions"]
    assert [(version["kind"], version["source"]) for version in versions] == [("price", "admin api"),
                                                                               ("cost", "admin api")]
    assert all(version["created_by"].startswith("admin key ") for version in versions)
    assert versions[1]["defaulted"] == ["cached_input", "cache_write", "cache_write_1h", "reasoning"]
    status, listed = api("GET", "/models", read_only=True)
    assert [item["name"] for item in listed["data"]] == ["m"] and listed["data"][0]["price_nano"]["input"] == 3 * 10**9


def test_api_a_money_json_is_exact(client, api, settings):
    api("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": "0.000000001", "output": "12"}})
    response = client.get("/api/admin/v1/models/m", headers={"Authorization": f"Bearer {make_admin_key(settings)}"})
    assert '"input": 0.000000001' in response.get_data(as_text=True)


def test_api_routes_aliases_and_at_cost(api, settings, redis_client):
    api("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": "1", "output": "2"}})
    status, body = api("POST", "/models/m/routes", {"provider": "p2", "upstream_model": "m2", "priority": 1,
                                                     "weight": 2, "prices": {"input": "3", "output": "4"}})
    assert status == 200 and [(r["provider"], r["priority"], r["weight"]) for r in body["routes"]] == [
        ("p1", 0, 1), ("p2", 1, 2)]
    first, second = (route["id"] for route in body["routes"])
    status, body = api("DELETE", f"/models/m/routes/{first}")
    assert status == 200 and [route["id"] for route in body["routes"]] == [second]
    assert [route["id"] for route in document(redis_client)["routes"]] == [second]
    status, answer = api("DELETE", f"/models/m/routes/{second}")
    assert (status, answer["error"]["message"]) == (400, (f"Route {second} is the only route of model m; add another "
                                                         "first."))
    status, answer = api("DELETE", f"/models/m/routes/{first}")
    assert (status, answer["error"]["code"], answer["error"]["message"]) == (404, "not_found",
                                                                             f"Model m has no route {first}.")
    status, body = api("POST", "/aliases", {"alias": "m-latest", "model": "m"})
    assert (status, body) == (201, {"alias": "m-latest", "model": "m", "live": True})
    assert document(redis_client, "m-latest")["name"] == "m"
    status, body = api("DELETE", "/aliases/m-latest")
    assert status == 200 and document(redis_client, "m-latest") is None
    status, answer = api("DELETE", "/aliases/m-latest")
    assert (status, answer["error"]["message"]) == (404, "No alias named 'm-latest'.")
    status, body = api("PUT", "/models/m/price", {"at_cost": True})
    assert status == 200 and body["at_cost"] is True


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": 1.5, "output": "2"}}, None, None),
    ("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": "1"}}, 400,
     "A price or cost needs its output price."),
    ("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": "x", "output": "2"}}, 400,
     "'prices.input' must be USD per 1M tokens as a string such as \"2.40\" or an exact number (at most 9 decimals)."),
    ("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": True, "output": "2"}}, 400,
     "'prices.input' must be USD per 1M tokens as a string such as \"2.40\" or an exact number (at most 9 decimals)."),
    ("POST", "/models", {"name": "m", "provider": "p1", "prices": {"inputs": "1", "output": "2"}}, 400,
     "'prices.inputs' must be one of input, cached_input, cache_write, cache_write_1h, output, reasoning."),
    ("POST", "/models", {"name": "m", "provider": "nope", "prices": {"input": "1", "output": "2"}}, 400,
     "No provider named 'nope' (add it with `tollgate provider add`)."),
    ("POST", "/models", {"name": "m", "provider": "p1", "prices": "cheap"}, 400,
     "'prices' must be an object of USD per 1M tokens by class, e.g. {\"input\": \"3.00\", \"output\": \"15\"}."),
    ("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": "1", "output": "2"}, "max_output": "9"},
     400, "'max_output' must be an integer."),
    ("POST", "/models/nope/routes", {"provider": "p1", "prices": {"input": "1", "output": "2"}}, 404,
     "No model named 'nope'."),
    ("PUT", "/models/nope/price", {"at_cost": True}, 404, "No model named 'nope'."),
    ("GET", "/models/nope", None, 404, "No model named 'nope'."),
    ("POST", "/aliases", {"alias": "a", "model": "nope"}, 404, "No model named 'nope'."),
])
def test_api_bad_input_is_a_clear_400_or_404(api, method, path, body, status, message):
    got, answer = api(method, path, body)
    if status is None:  # a JSON number that is not an integer: exact, never a float
        assert got == 201 and answer["routes"][0]["cost_nano"]["input"] == 1_500_000_000
        return
    assert (got, answer["error"]["message"]) == (status, message)


@pytest.mark.parametrize("body", [{}, {"at_cost": True, "prices": {"input": "1", "output": "2"}}, {"at_cost": False}])
def test_api_price_needs_either_at_cost_or_prices(api, body):
    api("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": "1", "output": "2"}})
    status, answer = api("PUT", "/models/m/price", body)
    assert (status, answer["error"]["code"], answer["error"]["message"]) == (
        400, "invalid_request", 'Give either "at_cost": true or the model\'s "prices".')


def test_api_read_only_keys_read_but_do_not_change_models(api, settings):
    api("POST", "/models", {"name": "m", "provider": "p1", "prices": {"input": "1", "output": "2"}})
    for method, path, body in (("POST", "/models", {"name": "x", "provider": "p1", "prices": {}}),
                               ("PUT", "/models/m/price", {"at_cost": True}), ("DELETE", "/aliases/a", None),
                               ("POST", "/models/m/routes", {}), ("POST", "/aliases", {})):
        status, answer = api(method, path, body, read_only=True)
        assert (status, answer["error"]["code"]) == (403, "admin_key_read_only")
    assert api("GET", "/models/m", read_only=True)[0] == 200


def test_api_customer_keys_are_refused(client, customer, providers):
    for method, path in (("GET", "/models"), ("GET", "/providers"), ("POST", "/models"), ("POST", "/providers/p1/test")):
        response = client.open(f"/api/admin/v1{path}", method=method, json={},
                               headers={"Authorization": f"Bearer {customer.plaintext}"})
        assert (response.status_code, response.get_json()["error"]["code"]) == (401, "admin_key_required")
