"""`tollgate model add|price`, `route add|list|remove`, `alias add|remove|list` and
`key create --cap-fallback-price`, through click's CliRunner against real Redis and SQL."""
import json
import re
from dataclasses import dataclass

import pytest

from control_plane.accounts import api_keys as keys
from control_plane.hot import redis_keys


@dataclass(frozen=True)
class Saved:
    route: int  # the id of m's route to p1
    version: int  # its cost version's; ids are the database's (PostgreSQL does not reuse them across tests)


@pytest.fixture
def model(cli) -> Saved:
    """Providers p1 and p2 (OpenAI protocol), p3 (Anthropic's); model m at cost, its route to p1
    costing input $1, output $4 per 1M tokens."""
    for name, protocol in (("p1", "openai"), ("p2", "openai"), ("p3", "anthropic")):
        result = cli("provider", "add", name, "--protocol", protocol, "--base-url", "http://127.0.0.1:9/v1",
                     "--api-key", "sk-upstream")
        assert result.exit_code == 0, result.output
    result = cli("model", "add", "m", "--provider", "p1", "--input", "1", "--output", "4", "--retry-on", "503,429")
    assert result.exit_code == 0, result.output
    route_id, version = map(int, re.fullmatch(
        r"model m saved, charged at cost: route (\d+) p1/m, cost version (\d+) "
        r"\(input \$1\.00, output \$4\.00 per 1M tokens\)", result.stdout.strip()).groups())
    return Saved(route_id, version)


def document(redis_client, name="m"):
    return json.loads(redis_client.get(redis_keys.model(name)))


def test_model_add_publishes_an_at_cost_model_with_its_retry_statuses(redis_client, model):
    published = document(redis_client)
    assert (published["at_cost"], published["retry_on"], published["price"]["version"]) == (True, [429, 503], 0)
    assert [(route["id"], route["cost"]["version"], route["cost"]["output"]) for route in published["routes"]] == [
        (model.route, model.version, 4_000_000_000)]


def test_model_add_refuses_an_unknown_retry_status(cli, model):
    result = cli("model", "add", "m", "--provider", "p1", "--input", "1", "--output", "4", "--retry-on", "404")
    assert result.exit_code == 2
    assert "retried only on statuses among 429, 500, 502, 503, 504, 529 (got '404')" in result.stderr


def test_model_price_fixes_a_price_and_at_cost_undoes_it(cli, redis_client, model):
    result = cli("model", "price", "m", "--input", "2.5", "--output", "10")
    assert result.exit_code == 0, result.output
    # The price version after the route's cost version.
    assert result.stdout.strip() == (f"model m is charged a fixed price: price version {model.version + 1} "
                                     "(input $2.50, output $10.00 per 1M tokens)")
    assert (document(redis_client)["at_cost"], document(redis_client)["price"]["input"]) == (False, 2_500_000_000)
    result = cli("model", "add", "m", "--provider", "p1", "--input", "1", "--output", "4")
    assert "charged at cost (was a fixed price)" in result.stdout
    result = cli("model", "price", "m", "--at-cost")
    assert result.stdout.strip() == "model m is charged at cost: each request at its route's cost version"
    assert document(redis_client)["price"]["version"] == 0


@pytest.mark.parametrize("args", [["--at-cost", "--input", "1"], [], ["--input", "1"]])
def test_model_price_needs_either_at_cost_or_a_whole_price(cli, model, args):
    result = cli("model", "price", "m", *args)
    assert result.exit_code == 2
    assert "give either --at-cost" in result.stderr or "a price or cost needs its output price" in result.stderr


def test_route_add_list_and_remove(cli, redis_client, model):
    result = cli("route", "add", "m", "--provider", "p2", "--upstream-model", "m-2", "--priority", "1",
                 "--weight", "3", "--input", "2", "--output", "3")
    assert result.exit_code == 0, result.output
    second = int(result.stdout.split()[1])
    assert result.stdout.strip() == (f"route {second} of m saved: p2/m-2, priority 1, weight 3, cost version "
                                     f"{model.version + 1} (input $2.00, output $3.00 per 1M tokens)")
    # The holds' price: the dearer route per class, input $2 (p2) and output $4 (p1).
    assert (document(redis_client)["price"]["input"], document(redis_client)["price"]["output"]) == (
        2_000_000_000, 4_000_000_000)
    lines = cli("route", "list", "m").stdout.splitlines()
    assert [line.split() for line in lines] == [
        ["id", "provider", "upstream", "model", "priority", "weight", "input/1M", "output/1M", "state"],
        [str(model.route), "p1", "m", "0", "1", "$1.00", "$4.00", "healthy"],
        [str(second), "p2", "m-2", "1", "3", "$2.00", "$3.00", "healthy"]]

    result = cli("route", "remove", "m", str(second))
    assert (result.exit_code, result.stdout.strip()) == (0, f"route {second} of m removed")
    assert [route["id"] for route in document(redis_client)["routes"]] == [model.route]
    result = cli("route", "remove", "m", str(model.route))
    assert result.exit_code == 2
    assert f"route {model.route} is the only route of model m; add another first" in result.stderr


def test_route_add_refuses_a_provider_of_another_protocol(cli, model):
    result = cli("route", "add", "m", "--provider", "p3", "--input", "1", "--output", "1")
    assert result.exit_code == 2
    assert "model m is served over openai; provider p3 speaks anthropic" in result.stderr


def test_route_list_shows_each_nodes_view_of_a_route(cli, redis_client, model):
    # 4_102_444_800_000 ms: 2100-01-01T00:00:00Z; 1_796_000_000_000 ms: 20,787 days (to 2026-11-30)
    # and 3,200 s (00:53:20) after the epoch, in the past: that node's cooldown is over (half-open)
    redis_client.hset(redis_keys.route_health("node-a"), str(model.route),
                      json.dumps({"state": "cooling", "until_ms": 4_102_444_800_000, "fails": 3, "status": 503}))
    redis_client.hset(redis_keys.route_health("node-b"), str(model.route),
                      json.dumps({"state": "refused", "until_ms": 4_102_444_800_000, "fails": 1, "status": 401}))
    redis_client.hset(redis_keys.route_health("node-c"), "99999", json.dumps({"state": "cooling"}))
    redis_client.hset(redis_keys.route_health("node-d"), str(model.route),
                      json.dumps({"state": "cooling", "until_ms": 1_796_000_000_000, "fails": 3, "status": 529}))
    state = ("node-a: cooling until 2100-01-01T00:00:00.000Z (3 fails, last 503); "
             "node-b: refused (1 fails, last 401); node-d: half_open (3 fails, last 529)")
    assert cli("route", "list", "m").stdout.splitlines()[1].endswith(state)
    [item] = json.loads(cli("route", "list", "m", "--json").stdout)
    assert item == {
        "id": model.route, "provider": "p1", "upstream_model": "m", "priority": 0, "weight": 1,
        "cost_version": model.version,
        "cost": {"input": 1, "cached_input": 1, "cache_write": 1, "cache_write_1h": 1, "output": 4, "reasoning": 4},
        "cost_nano": {"input": 1_000_000_000, "cached_input": 1_000_000_000, "cache_write": 1_000_000_000,
                      "cache_write_1h": 1_000_000_000, "output": 4_000_000_000, "reasoning": 4_000_000_000},
        "state": state,
        "nodes": [{"node": "node-a", "state": "cooling", "until_ms": 4_102_444_800_000, "fails": 3, "status": 503},
                  {"node": "node-b", "state": "refused", "until_ms": 4_102_444_800_000, "fails": 1, "status": 401},
                  {"node": "node-d", "state": "half_open", "until_ms": 1_796_000_000_000, "fails": 3, "status": 529}]}


def test_route_list_of_an_unknown_model_is_status_2(cli):
    result = cli("route", "list", "nope")
    assert result.exit_code == 2
    assert "no model named 'nope'" in result.stderr


def test_alias_add_list_and_remove(cli, redis_client, model):
    result = cli("alias", "add", "nickname", "m")
    assert (result.exit_code, result.stdout.strip()) == (0, "alias nickname -> m saved")
    assert document(redis_client, "nickname") == document(redis_client)
    assert cli("alias", "list").stdout == "nickname -> m\n"
    assert json.loads(cli("alias", "list", "--json").stdout) == [{"alias": "nickname", "model": "m"}]
    result = cli("alias", "add", "m", "m")
    assert result.exit_code == 2
    assert "'m' is a model's name" in result.stderr
    result = cli("alias", "remove", "nickname")
    assert (result.exit_code, result.stdout.strip()) == (0, "alias nickname removed")
    assert redis_client.get(redis_keys.model("nickname")) is None
    assert redis_client.smembers(redis_keys.MODELS) == {"m"}
    assert cli("alias", "remove", "nickname").exit_code == 2


def test_key_create_with_capped_fallback_prices(cli, redis_client):
    cli("account", "create", "alice@example.com")
    result = cli("key", "create", "alice@example.com", "--cap-fallback-price")
    assert result.exit_code == 0, result.output
    assert "(no spend limit, fallback prices capped)" in result.stdout
    plaintext = result.stdout.strip().splitlines()[-1]
    assert redis_client.hget(redis_keys.apikey(keys.hash_key(plaintext)), "capfb") == "1"
    assert json.loads(cli("key", "list", "alice@example.com").stdout)[0]["cap_fallback_price"] is True
    plain = cli("key", "create", "alice@example.com").stdout.strip().splitlines()[-1]
    assert redis_client.hget(redis_keys.apikey(keys.hash_key(plain)), "capfb") is None
