"""Routes, price modes and aliases in the catalog, and the model documents published for them
(docs/internals.md, tg:model:<name>)."""
import json

import pytest
from sqlalchemy import func, select

from control_plane import db
from control_plane.accounts import api_keys as keys
from control_plane.catalog import upstreams as catalog
from control_plane.errors import ServiceError
from control_plane.hot import publish, redis_keys
from control_plane.models import Model, PriceVersion
from control_plane.money import usd_to_nano
from control_plane.ops import demo

# Route costs, USD per 1M tokens. Resolved (defaults applied), in nano-USD per 1M:
# route 1 (p1): input 1e9, cached_input 1e9, cache_write 1e9, cache_write_1h 1e9, output 4e9, reasoning 4e9;
# route 2 (p2): input 2e9, cached_input 0.1e9, cache_write 2e9, cache_write_1h 2e9, output 3e9, reasoning 5e9.
P1_COST = {"input": usd_to_nano("1"), "output": usd_to_nano("4")}
P2_COST = {"input": usd_to_nano("2"), "cached_input": usd_to_nano("0.10"), "output": usd_to_nano("3"),
           "reasoning": usd_to_nano("5")}
P1_RESOLVED = {"input": 1_000_000_000, "cached_input": 1_000_000_000, "cache_write": 1_000_000_000,
               "cache_write_1h": 1_000_000_000, "output": 4_000_000_000, "reasoning": 4_000_000_000}
P2_RESOLVED = {"input": 2_000_000_000, "cached_input": 100_000_000, "cache_write": 2_000_000_000,
               "cache_write_1h": 2_000_000_000, "output": 3_000_000_000, "reasoning": 5_000_000_000}
ALL_RETRY_STATUSES = [429, 500, 502, 503, 504, 529]


@pytest.fixture
def providers(settings):
    """Providers p1 and p2 (OpenAI protocol) and p3 (Anthropic's)."""
    with db.session_scope(settings) as session:
        for name, protocol in (("p1", "openai"), ("p2", "openai"), ("p3", "anthropic")):
            catalog.upsert_provider(session, settings, name, protocol, "http://127.0.0.1:9/v1", "upstream-secret")


@pytest.fixture
def two_routes(settings, providers):
    """Model m charged at cost: route 1 to p1 (upstream m), route 2 to p2 (upstream m-2, priority 1,
    weight 3). Returns (route 1 id, route 2 id)."""
    with db.session_scope(settings) as session:
        catalog.upsert_model(session, "m", "p1", P1_COST)
        second = catalog.upsert_route(session, "m", "p2", P2_COST, "m-2", priority=1, weight=3)
        first = catalog.routes_of(session, second.model_id)[0]
        return first.id, second.id


def published(settings, redis_client, name="m"):
    with db.session_scope(settings) as session:
        publish.publish_model(session, settings, catalog.require_model(session, "m"))
    return json.loads(redis_client.get(redis_keys.model(name)))


def cost_version(settings, route_id) -> int:
    with db.session_scope(settings) as session:
        return catalog.current_cost(session, route_id).id


def test_an_at_cost_model_holds_at_the_dearest_route_per_usage_class(settings, redis_client, two_routes):
    first, second = two_routes
    # Per class the greater of the two resolved costs: input 2e9 (p2), cached 1e9 (p1), cache writes 2e9 (p2),
    # output 4e9 (p1), reasoning 5e9 (p2).
    assert published(settings, redis_client) == {
        "name": "m", "max_output": 16384, "max_input": 200000, "at_cost": True,
        "price": {"version": 0, "input": 2_000_000_000, "cached_input": 1_000_000_000,
                  "cache_write": 2_000_000_000, "cache_write_1h": 2_000_000_000, "output": 4_000_000_000,
                  "reasoning": 5_000_000_000},
        "retry_on": ALL_RETRY_STATUSES,
        "routes": [
            {"id": first, "provider": "p1", "upstream_model": "m", "priority": 0, "weight": 1,
             "cost": {"version": cost_version(settings, first), **P1_RESOLVED}},
            {"id": second, "provider": "p2", "upstream_model": "m-2", "priority": 1, "weight": 3,
             "cost": {"version": cost_version(settings, second), **P2_RESOLVED}},
        ]}
    assert redis_client.smembers(redis_keys.MODELS) == {"m"}


def test_a_fixed_price_model_publishes_its_customer_price_and_its_routes_costs(settings, redis_client, two_routes):
    with db.session_scope(settings) as session:
        catalog.set_price(session, "m", {"input": usd_to_nano("5"), "output": usd_to_nano("10")})
        version = catalog.current_price(session, catalog.require_model(session, "m").id).id
    document = published(settings, redis_client)
    assert (document["at_cost"], document["price"]) == (False, {
        "version": version, "input": 5_000_000_000, "cached_input": 5_000_000_000, "cache_write": 5_000_000_000,
        "cache_write_1h": 5_000_000_000, "output": 10_000_000_000, "reasoning": 10_000_000_000})
    assert [route["cost"]["input"] for route in document["routes"]] == [1_000_000_000, 2_000_000_000]

    with db.session_scope(settings) as session:  # the same prices again: no new version
        catalog.set_price(session, "m", {"input": usd_to_nano("5"), "output": usd_to_nano("10")})
        assert catalog.current_price(session, catalog.require_model(session, "m").id).id == version
        catalog.set_price(session, "m", None)
    assert published(settings, redis_client)["price"]["version"] == 0


def test_model_add_makes_a_fixed_price_model_charged_at_cost_again(settings, two_routes):
    with db.session_scope(settings) as session:
        catalog.set_price(session, "m", {"input": 1, "output": 1})
        catalog.upsert_model(session, "m", "p1", P1_COST)
        assert catalog.require_model(session, "m").at_cost is True


def test_a_cost_change_adds_a_cost_version_and_the_same_cost_does_not(settings, two_routes):
    first, _second = two_routes
    before = cost_version(settings, first)
    with db.session_scope(settings) as session:
        catalog.upsert_model(session, "m", "p1", P1_COST)
    assert cost_version(settings, first) == before
    with db.session_scope(settings) as session:
        catalog.upsert_model(session, "m", "p1", {**P1_COST, "output": usd_to_nano("4.5")})
    assert cost_version(settings, first) > before


def test_model_add_updates_the_route_to_the_provider_or_adds_one(settings, providers):
    with db.session_scope(settings) as session:
        model = catalog.upsert_model(session, "m", "p1", P1_COST, upstream_model="m-up")
        catalog.upsert_model(session, "m", "p1", P2_COST)  # no upstream named: the route to p1, still m-up
        catalog.upsert_model(session, "m", "p2", P2_COST)  # no route to p2 yet: one to p2/m
        routes = [(route.provider.name, route.upstream_model) for route in catalog.routes_of(session, model.id)]
        assert routes == [("p1", "m-up"), ("p2", "m")]
        catalog.upsert_model(session, "m", "p1", P1_COST, upstream_model="m-other")
        with pytest.raises(ServiceError, match="model m has 2 routes to p1; name the upstream model"):
            catalog.upsert_model(session, "m", "p1", P1_COST)


def test_a_route_speaks_the_protocol_of_the_models_other_routes(settings, two_routes):
    with db.session_scope(settings) as session, pytest.raises(
            ServiceError, match="model m is served over openai; provider p3 speaks anthropic"):
        catalog.upsert_route(session, "m", "p3", P1_COST)


@pytest.mark.parametrize(("priority", "weight", "message"), [
    (None, 0, "weight is from 1 to 1000"), (None, 1001, "weight is from 1 to 1000"),
    (-1, None, "priority is from 0 to 1000"), (1001, None, "priority is from 0 to 1000")])
def test_route_priority_and_weight_are_bounded(settings, two_routes, priority, weight, message):
    with db.session_scope(settings) as session, pytest.raises(ServiceError, match=message):
        catalog.upsert_route(session, "m", "p2", P2_COST, "m-2", priority, weight)


def test_upstream_model_names_are_printable(settings, providers):
    with db.session_scope(settings) as session, pytest.raises(ServiceError, match="printable"):
        catalog.upsert_model(session, "m", "p1", P1_COST, upstream_model="a\tb")


def test_removing_a_route_republishes_without_it_and_keeps_its_costs(settings, redis_client, two_routes):
    first, second = two_routes
    with db.session_scope(settings) as session:
        catalog.remove_route(session, "m", second)
        with pytest.raises(ServiceError, match=f"route {first} is the only route of model m"):
            catalog.remove_route(session, "m", first)
        with pytest.raises(ServiceError, match="model m has no route 99999"):
            catalog.remove_route(session, "m", 99999)
        assert session.scalar(select(func.count()).select_from(PriceVersion)) == 2
    assert [route["id"] for route in published(settings, redis_client)["routes"]] == [first]


def test_route_ids_are_not_reused_after_a_removal(settings, two_routes):
    _first, second = two_routes
    with db.session_scope(settings) as session:
        catalog.remove_route(session, "m", second)
        assert catalog.upsert_route(session, "m", "p2", P2_COST, "m-2").id > second


def test_a_model_without_routes_is_not_published(settings):
    with db.session_scope(settings) as session:
        session.add(Model(name="bare", max_output=1, max_input=1))
        session.flush()
        with pytest.raises(ServiceError, match="model bare has no route"):
            publish.publish_model(session, settings, catalog.require_model(session, "bare"))


@pytest.mark.parametrize(("given", "stored", "published_as"), [
    ("503, 429", "429,503", [429, 503]), ("529,529", "529", [529]), ("", "", [])])
def test_retry_on_is_a_subset_of_the_retry_statuses(settings, redis_client, providers, given, stored, published_as):
    with db.session_scope(settings) as session:
        assert catalog.upsert_model(session, "m", "p1", P1_COST, retry_on=given).retry_on == stored
    assert published(settings, redis_client)["retry_on"] == published_as


@pytest.mark.parametrize("given", ["404", "429,abc", "5030"])
def test_retry_on_refuses_other_statuses(settings, providers, given):
    with db.session_scope(settings) as session, pytest.raises(
            ServiceError, match="retried only on statuses among 429, 500, 502, 503, 504, 529"):
        catalog.upsert_model(session, "m", "p1", P1_COST, retry_on=given)


def test_an_alias_is_published_as_a_copy_of_its_models_document(settings, redis_client, two_routes):
    with db.session_scope(settings) as session:
        catalog.add_alias(session, "nickname", "m")
    document = published(settings, redis_client)
    assert json.loads(redis_client.get(redis_keys.model("nickname"))) == document
    assert document["name"] == "m"
    assert redis_client.smembers(redis_keys.MODELS) == {"m", "nickname"}
    with db.session_scope(settings) as session:
        catalog.remove_alias(session, "nickname")
    publish.unpublish_alias(settings, "nickname")
    assert redis_client.get(redis_keys.model("nickname")) is None
    assert redis_client.smembers(redis_keys.MODELS) == {"m"}


def test_an_alias_added_again_points_at_the_new_model(settings, two_routes):
    with db.session_scope(settings) as session:
        catalog.upsert_model(session, "other", "p1", P1_COST)
        catalog.add_alias(session, "nickname", "m")
        catalog.add_alias(session, "nickname", "other")
        assert [(alias.name, alias.model.name) for alias in catalog.aliases(session)] == [("nickname", "other")]


def test_alias_and_model_names_never_clash(settings, two_routes):
    with db.session_scope(settings) as session:
        catalog.add_alias(session, "nickname", "m")
        with pytest.raises(ServiceError, match="'m' is a model's name; an alias needs a name no model has"):
            catalog.add_alias(session, "m", "m")
        with pytest.raises(ServiceError, match="'nickname' is an alias of model m; a model needs a name no alias"):
            catalog.upsert_model(session, "nickname", "p1", P1_COST)
        with pytest.raises(ServiceError, match="no model named 'nope'"):
            catalog.add_alias(session, "x", "nope")
        with pytest.raises(ServiceError, match="no alias named 'nope'"):
            catalog.remove_alias(session, "nope")


def test_a_key_that_caps_fallback_prices_is_published_with_capfb(settings, redis_client, customer):
    name = redis_keys.apikey(customer.key.key_hash)
    assert redis_client.hget(name, "capfb") is None
    with db.session_scope(settings) as session:
        capped, _plaintext = keys.create_key(session, customer.account, "capped", cap_fallback_price=True)
    with db.session_scope(settings) as session:
        publish.publish_key(session, settings, capped)
    assert redis_client.hget(redis_keys.apikey(capped.key_hash), "capfb") == "1"


def test_demo_aliases_leave_an_operators_own_names_alone(settings, providers):
    with db.session_scope(settings) as session:
        catalog.upsert_model(session, "gpt-4o", "p1", P1_COST)  # the operator's own model of that name
        demo.ensure_demo(session, settings, "http://127.0.0.1:9")
        demo.ensure_demo(session, settings, "http://127.0.0.1:9")
        listed = [(alias.name, alias.model.name) for alias in catalog.aliases(session)]
    assert listed == [("claude-haiku-4-5", "sandbox-claude"), ("claude-opus-4-8", "sandbox-claude"),
                      ("claude-sonnet-4-6", "sandbox-claude"), ("gpt-5.5", "sandbox-chat")]
