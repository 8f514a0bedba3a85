"""The usage record's routing values (asked, route, cv, pcost, tries, failed): parsed, validated,
recorded in the usage row, and shown by /api/v1/usage (the provider's cost to admins only)."""
import pytest
from helpers import COST, drain_all, usage_entry, usage_record
from sqlalchemy import select

from control_plane import db
from control_plane.accounts import accounts
from control_plane.catalog import upstreams as catalog
from control_plane.hot import redis_keys
from control_plane.hot.usage_records import RECORD_FIELDS, parse_packed
from control_plane.models import Usage, UsageQuarantine
from control_plane.money import usd_to_nano


@pytest.fixture
def stream(settings, customer):
    return redis_keys.usage_stream(customer.shard(settings))


@pytest.fixture
def fixed_price(settings, price_version):
    """conftest's test-chat at a fixed customer price of input $0.20, output $0.80 per 1M tokens;
    its route still costs what price_version says. Returns the customer price version."""
    with db.session_scope(settings) as session:
        model = catalog.set_price(session, "test-chat", {"input": usd_to_nano("0.20"), "output": usd_to_nano("0.80")})
        return catalog.current_price(session, model.id)


def row(settings) -> Usage:
    with db.session_scope(settings) as session:
        return session.scalar(select(Usage))


def quarantine_reasons(settings) -> list[str]:
    with db.session_scope(settings) as session:
        return list(session.scalars(select(UsageQuarantine.reason).order_by(UsageQuarantine.id)))


def test_a_fallback_record_of_a_fixed_price_model_keeps_its_route_cost_and_attempts(
        settings, drain, stream, redis_client, customer, price_version, fixed_price):
    # Charged at the customer price: (1000 × 200e6 + 200 × 200e6 + 500 × 800e6 + 100 × 800e6) / 1e6 = 728,000;
    # the provider's cost at the route's version is helpers.COST, 525,000.
    record = usage_record(customer, fixed_price, "req-1", asked="gpt-4o", route=str(price_version.route_id),
                          cv=str(price_version.id), pcost=str(COST), cost="728000", hold="800000", tries="3", failed="503,429")
    redis_client.xadd(stream, usage_entry(record))
    assert drain_all(drain) == 1
    usage = row(settings)
    assert (usage.model, usage.requested_model, usage.price_version_id, usage.route_id, usage.cost_version_id) == (
        "test-chat", "gpt-4o", fixed_price.id, price_version.route_id, price_version.id)
    assert (usage.cost_nano, usage.provider_cost_nano, usage.attempts, usage.failed_statuses) == (
        728_000, 525_000, 3, "503,429")


@pytest.mark.parametrize("count", [24, 22])
def test_records_of_the_older_layouts_were_asked_for_their_model_at_one_attempt(customer, price_version, count):
    values = usage_record(customer, price_version, "req-old")
    record = parse_packed("\t".join(values[name] for name in RECORD_FIELDS[:count]))
    assert (record.requested_model, record.route_id, record.cost_version_id, record.provider_cost_nano,
            record.attempts, record.failed_statuses) == ("test-chat", None, None, 0, 1, "")


def test_route_and_cost_version_0_are_none(customer, price_version):
    record = parse_packed("\t".join(usage_record(customer, price_version, "req", route="0", cv="0")[name]
                                    for name in RECORD_FIELDS))
    assert (record.route_id, record.cost_version_id) == (None, None)


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("tries", "0", "tries: not an integer from 1 to 10"),
    ("tries", "11", "tries: not an integer from 1 to 10"),
    ("pcost", str(2**53 + 1), "pcost: not an integer from 0 to 9007199254740992"),
    ("route", "-1", "route: not an integer from 0 to 2147483647"),
    ("cv", "x", "cv: not an integer from 0 to 2147483647"),
    ("failed", "99", "failed: not up to 10 comma-separated statuses from 100 to 599"),
    ("failed", "600", "failed: not up to 10 comma-separated statuses from 100 to 599"),
    ("failed", "503,", "failed: not up to 10 comma-separated statuses from 100 to 599"),
    ("failed", ",".join(["503"] * 11), "failed: not up to 10 comma-separated statuses from 100 to 599"),
    ("asked", "m" * 201, "asked: longer than 200 characters"),
])
def test_routing_values_out_of_range_are_quarantined(settings, drain, stream, redis_client, customer, price_version,
                                                     field, value, reason):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-bad", **{field: value})))
    assert drain_all(drain) == 0
    assert quarantine_reasons(settings) == [reason]


def test_an_unknown_cost_version_is_quarantined(settings, drain, stream, redis_client, customer, price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-bad", cv="999999")))
    assert drain_all(drain) == 0
    assert quarantine_reasons(settings) == ["unknown cost version 999999"]


def usage_items(client, customer):
    headers = {"Authorization": f"Bearer {customer.plaintext}"}
    return client.get("/api/v1/usage", headers=headers).json["data"]


def test_api_usage_shows_the_asked_model_and_attempts_but_the_providers_cost_only_to_admins(
        settings, drain, stream, redis_client, client, customer, price_version):
    redis_client.xadd(stream, usage_entry(usage_record(customer, price_version, "req-1", asked="gpt-4o", tries="2",
                                                       failed="502")))
    drain_all(drain)
    [item] = usage_items(client, customer)
    assert (item["model"], item["requested_model"], item["provider"], item["upstream_model"], item["attempts"],
            item["failed_statuses"]) == ("test-chat", "gpt-4o", "test", "test-chat-upstream", 2, [502])
    assert not {"provider_cost_nano", "cost_version_id", "overage_nano"} & item.keys()

    with db.session_scope(settings) as session:
        accounts.require_by_email(session, customer.account.email).is_admin = True
    [item] = usage_items(client, customer)
    assert (item["provider_cost_nano"], item["cost_version_id"], item["overage_nano"]) == (
        COST, price_version.id, 0)
