"""`tollgate prices sync` (catalog/price_sync.py): price lists in LiteLLM's and OpenRouter's formats,
read from files and from a local HTTP server, converted exactly to nano-USD per 1M tokens, each
route matched by its price source id; the diff, --apply, the guardrails that hold a change for an
admin, --add-new, and `tollgate up`'s periodic sync — against real SQL and Redis.

The helpers at the top (price lists, the HTTP server, snapshots) are shared with
test_price_sync_admin.py and test_price_sync_gateway.py."""
from __future__ import annotations

import json
import logging
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from control_plane import audit, db
from control_plane.catalog import price_sync, upstreams
from control_plane.cli.main import main
from control_plane.hot import redis_keys
from control_plane.models import AuditEntry, Base, Model, PriceHold, PriceVersion, Route
from control_plane.ops.worker import Worker

FIXTURES = Path(__file__).parent / "fixtures" / "prices"
LITELLM = FIXTURES / "litellm.json"
OPENROUTER = FIXTURES / "openrouter.json"
CLI_ACTOR = audit.cli_actor().name  # "cli <the OS user>"


# Price lists ------------------------------------------------------------------------------------


def litellm(**entries) -> dict:
    """The LiteLLM fixture with these entries replaced (a dict merged into the entry; None drops it)."""
    document = json.loads(LITELLM.read_text())
    for entry_id, change in entries.items():
        if change is None:
            document.pop(entry_id, None)
        else:
            document[entry_id] = {**document.get(entry_id, {}), **change}
    return document


def openrouter(**pricing) -> dict:
    """The OpenRouter fixture with these models' pricing replaced (None drops the model)."""
    document = json.loads(OPENROUTER.read_text())
    for model_id, change in pricing.items():
        found = [model for model in document["data"] if model["id"] == model_id]
        if change is None:
            document["data"] = [model for model in document["data"] if model["id"] != model_id]
        elif found:
            found[0]["pricing"] = {**found[0]["pricing"], **change}
        else:
            document["data"].append({"id": model_id, "pricing": change})
    return document


def write_list(tmp_path: Path, document, name: str = "prices.json") -> str:
    """The document as a file (text as is, anything else as JSON); its path."""
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


class PriceServer:
    """A local HTTP server answering GET <path> with pages[path] (status, body); 404 otherwise."""

    def __init__(self):
        self.pages: dict[str, tuple[int, bytes]] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                status, body = pages.get(self.path, (404, b'{"error": "not found"}'))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, path: str, document, status: int = 200) -> str:
        """Serve the document (a dict as JSON, text or bytes as they are) at path; its URL."""
        body = document if isinstance(document, bytes) else (
            document if isinstance(document, str) else json.dumps(document)).encode()
        self.pages[path] = (status, body)
        return self.url + path


@pytest.fixture(name="price_server")
def price_server_fixture():
    server = PriceServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


# The catalog the tests sync -----------------------------------------------------------------------


def add_model(cli, name: str, provider: str, source_id: str | None, *prices: str) -> None:
    args = ["model", "add", name, "--provider", provider, *prices]
    if source_id is not None:
        args += ["--price-source-id", source_id]
    result = cli(*args)
    assert result.exit_code == 0, result.output


@pytest.fixture(name="providers")
def providers_fixture(cli):
    for name, protocol in (("openai", "openai"), ("anthropic", "anthropic"), ("openrouter", "openai")):
        result = cli("provider", "add", name, "--protocol", protocol, "--base-url", "http://127.0.0.1:9/v1",
                     "--api-key", "sk-upstream")
        assert result.exit_code == 0, result.output


@pytest.fixture(name="catalog")
def catalog_fixture(cli, providers):
    """Four models charged at cost, each with one route, and what the LiteLLM fixture makes of them:
    gpt-4o ($2 in, $1 cached, $8 out; the list: $2.50, $1.25, $10, every class +25%: changed),
    claude (as the list has claude-sonnet-4-5: unchanged), mini ($0.05 in, $0.20 out; the list:
    $0.15, $0.075 cached, $0.60, +200%: held) and old (its entry is not in the list)."""
    add_model(cli, "gpt-4o", "openai", "gpt-4o", "--input", "2", "--cached-input", "1", "--output", "8")
    add_model(cli, "claude", "anthropic", "claude-sonnet-4-5", "--input", "3", "--cached-input", "0.30",
              "--cache-write", "3.75", "--cache-write-1h", "6", "--output", "15")
    add_model(cli, "mini", "openai", "gpt-4o-mini", "--input", "0.05", "--output", "0.20")
    add_model(cli, "old", "openai", "retired-model", "--input", "1", "--output", "2")


def route_of(settings, model: str) -> Route:
    with db.session_scope(settings) as session:
        return upstreams.routes_of(session, upstreams.require_model(session, model).id)[0]


def cost_of(settings, model: str) -> PriceVersion:
    with db.session_scope(settings) as session:
        route = upstreams.routes_of(session, upstreams.require_model(session, model).id)[0]
        return upstreams.current_cost(session, route.id)


def prices(version: PriceVersion) -> dict:
    return {field: getattr(version, field) for field in price_sync.PRICE_FIELDS}


def published(redis_client, model: str) -> dict:
    return json.loads(redis_client.get(redis_keys.model(model)))


def holds_of(settings) -> list[PriceHold]:
    with db.session_scope(settings) as session:
        return list(session.scalars(select(PriceHold).order_by(PriceHold.id)))


def snapshot(settings, redis_client) -> tuple[dict, dict]:
    """Every row of every table, and every Redis key's value."""
    with db.engine_for(settings.database_url).connect() as connection:
        tables = {table.name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
                  for table in Base.metadata.sorted_tables}
    values = {}
    for key in sorted(redis_client.keys("*")):
        kind = redis_client.type(key)
        values[key] = {"string": redis_client.get, "hash": redis_client.hgetall,
                       "set": lambda name: sorted(redis_client.smembers(name)),
                       "stream": lambda name: redis_client.xrange(name),
                       "zset": lambda name: redis_client.zrange(name, 0, -1, withscores=True),
                       "list": lambda name: redis_client.lrange(name, 0, -1)}[kind](key)
    return tables, values


def sync(cli, source: str, *args: str, fmt: str = "litellm"):
    return cli("prices", "sync", "--source", source, "--format", fmt, *args)


def sync_json(cli, source: str, *args: str, fmt: str = "litellm") -> dict:
    result = sync(cli, source, "--json", *args, fmt=fmt)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout, parse_float=Decimal)


def route_item(report: dict, model: str) -> dict:
    return next(item for item in report["routes"] if item["model"] == model)


# Exact conversion ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "nano"), [
    ("3e-06", 3_000_000_000),  # $3.00 per 1M tokens
    ("0.0000003", 300_000_000),  # $0.30
    (Decimal("1.25e-06"), 1_250_000_000),  # a JSON number, read as a Decimal
    ("0.00000003", 30_000_000),  # a float would make 29,999,999.999999996 of it
    ("0.000000015", 15_000_000),  # and 14,999,999.999999998 of this
    ("0", 0),
    ("0.01", 10_000_000_000_000),  # $10,000 per 1M: the most a price may be
])
def test_usd_per_token_converts_exactly_to_nano_usd_per_million(value, nano):
    assert price_sync.usd_per_token_to_nano(value) == (nano, False)


@pytest.mark.parametrize(("value", "nano"), [
    ("2.9999900000000002e-06", 2_999_990_000),
    ("1.5e-15", 2),  # half-even: 1.5 → 2
    ("2.5e-15", 2),  # 2.5 → 2
    ("3.5e-15", 4),
    ("1e-20", 0),
])
def test_a_value_finer_than_one_nano_per_million_is_rounded_half_even_and_flagged(value, nano):
    assert price_sync.usd_per_token_to_nano(value) == (nano, True)


@pytest.mark.parametrize(("value", "why"), [
    ("-1e-06", "is negative (-1e-06)"),
    (Decimal("NaN"), "is not a finite number (NaN)"),
    (Decimal("Infinity"), "is not a finite number (Infinity)"),
    ("sNaN", "is not a finite number (sNaN)"),
    ("three dollars", "is not a number ('three dollars')"),
    (True, "is not a number (True)"),
    ("0.010000000000000001", "(0.010000000000000001) is above the most a price may be, $10000.00 per 1M tokens"),
    ("1e999999", "(1e999999) is above the most a price may be, $10000.00 per 1M tokens"),
])
def test_a_value_that_is_no_price_is_refused(value, why):
    with pytest.raises(ValueError) as refused:
        price_sync.usd_per_token_to_nano(value)
    assert str(refused.value) == why


def test_litellm_fixture_reads_into_entries_with_exact_prices():
    price_list = price_sync.read_price_list(str(LITELLM), "litellm")
    assert "sample_spec" not in price_list.entries and "sample_spec" not in price_list.unusable
    assert price_list.entries["gpt-4o"] == price_sync.Entry(
        "gpt-4o", {"input": 2_500_000_000, "cached_input": 1_250_000_000, "cache_write": None, "cache_write_1h": None,
                   "output": 10_000_000_000, "reasoning": None}, max_input=128_000, max_output=16_384)
    assert price_list.entries["claude-sonnet-4-5"].prices == {
        "input": 3_000_000_000, "cached_input": 300_000_000, "cache_write": 3_750_000_000,
        "cache_write_1h": 6_000_000_000, "output": 15_000_000_000, "reasoning": None}
    assert price_list.entries["dashscope/qwen-plus"].prices["reasoning"] == 4_000_000_000
    assert price_list.entries["dashscope/qwen-plus"].prices["input"] == 400_000_000  # written 0.0000004
    assert price_list.entries["databricks/databricks-claude-sonnet-4"].notes == (
        "input_cost_per_token 0.0000029999900000000002 rounded to $2.99999 per 1M tokens",
        "output_cost_per_token 0.000015000020000000002 rounded to $15.00002 per 1M tokens")
    assert price_list.entries["cohere-rerank-v3.5"].free  # priced per query: $0 per token
    assert price_list.unusable == {"dall-e-3": "it has no input price",
                                   "legacy-negative": "input_cost_per_token is negative (-0.000001)"}


def test_openrouter_fixture_reads_prices_given_as_strings():
    price_list = price_sync.read_price_list(str(OPENROUTER), "openrouter")
    assert price_list.entries["anthropic/claude-sonnet-4.5"].prices == {
        "input": 3_000_000_000, "cached_input": 300_000_000, "cache_write": 3_750_000_000, "cache_write_1h": None,
        "output": 15_000_000_000, "reasoning": None}
    assert (price_list.entries["anthropic/claude-sonnet-4.5"].max_input,
            price_list.entries["anthropic/claude-sonnet-4.5"].max_output) == (1_000_000, 64_000)
    # "internal_reasoning": "0" and a cache at "0" are classes OpenRouter does not price apart: reasoning
    # is billed as output, a cache read as input — never at $0.
    assert price_list.entries["openai/gpt-4o"].prices["reasoning"] is None
    assert price_list.entries["qwen/qwen3-235b-a22b-thinking-2507"].prices == {
        "input": 130_000_000, "cached_input": None, "cache_write": None, "cache_write_1h": None,
        "output": 600_000_000, "reasoning": 800_000_000}
    assert price_list.entries["meta-llama/llama-3.3-70b-instruct:free"].free
    assert price_list.unusable == {"openrouter/auto": "its price varies with the model the router picks (-1)"}


@pytest.mark.parametrize(("fmt", "text", "message"), [
    ("litellm", "{not json", "is not JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
    ("litellm", '["gpt-4o"]', "is not LiteLLM's price list: that is a JSON object keyed by model id"),
    ("litellm", '{"sample_spec": {}}', "has no model entries: is it litellm's format?"),
    ("openrouter", '{"gpt-4o": {"input_cost_per_token": 1e-06}}',
     'is not OpenRouter\'s model list: that is a JSON object with a "data" array'),
    ("openrouter", '{"data": []}', "has no model entries: is it openrouter's format?"),
    ("litellm", b"\xff\xfe\x00{", "is not JSON"),
])
def test_a_document_not_in_the_format_is_a_source_error(fmt, text, message):
    with pytest.raises(price_sync.SourceError) as refused:
        price_sync.parse(text if isinstance(text, bytes) else text.encode(), fmt, "prices.json")
    assert str(refused.value).startswith("prices.json " + message)


def test_odd_strings_in_an_openrouter_list_make_only_their_entry_unusable():
    text = b'{"data": [{"id": "a", "pricing": {"prompt": "sNaN", "completion": "0.000001"}}, ' \
           b'{"id": "b", "pricing": {"prompt": "$0.000001", "completion": "0.000001"}}, ' \
           b'{"id": "c", "pricing": {"prompt": "0.000001", "completion": "0.000002"}}]}'
    price_list = price_sync.parse(text, "openrouter")
    assert price_list.unusable == {"a": "prompt is not a finite number (sNaN)",
                                   "b": "prompt is not a number ('$0.000001')"}
    assert price_list.entries["c"].prices["output"] == 2_000_000_000


def test_nan_and_infinity_in_a_list_make_only_their_entry_unusable():
    text = b'{"a": {"input_cost_per_token": NaN, "output_cost_per_token": 1e-06}, ' \
           b'"b": {"input_cost_per_token": 1e-06, "output_cost_per_token": Infinity}, ' \
           b'"c": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}'
    price_list = price_sync.parse(text, "litellm")
    assert price_list.unusable == {"a": "input_cost_per_token is not a finite number (NaN)",
                                   "b": "output_cost_per_token is not a finite number (Infinity)"}
    assert price_list.entries["c"].prices["output"] == 2_000_000_000


# The diff, dry run and --apply ----------------------------------------------------------------------


def test_dry_run_prints_the_diff_per_route_and_class_and_changes_nothing(settings, cli, redis_client, catalog):
    before = snapshot(settings, redis_client)
    result = sync(cli, str(LITELLM))
    assert result.exit_code == 0, result.output
    routes = {model: route_of(settings, model).id for model in ("gpt-4o", "claude", "mini", "old")}
    assert result.stdout.splitlines() == [
        f"price list {LITELLM} (litellm, 7 entries with prices): dry run, nothing changed (--apply applies it)",
        f"route {routes['gpt-4o']} of gpt-4o (openai/gpt-4o, entry gpt-4o): would change",
        "    input         $2.00 → $2.50   +25%",
        "    cached_input  $1.00 → $1.25   +25%",
        "    output        $8.00 → $10.00  +25%",
        f"route {routes['claude']} of claude (anthropic/claude, entry claude-sonnet-4-5): unchanged",
        (f"route {routes['mini']} of mini (openai/mini, entry gpt-4o-mini): would be held: input rises +200% (more "
         "than 50%); output rises +200% (more than 50%)"),
        "    input                    $0.05 → $0.15   +200%",
        "    cached_input  $0.05 (as input) → $0.075  +50%",
        "    output                   $0.20 → $0.60   +200%",
        f"route {routes['old']} of old (openai/old, entry retired-model): not in the list: left as it is",
        (f"price sync from {LITELLM} (litellm, dry run: nothing changed): routes 1 to change, 1 to hold, 0 held already, "
         "1 unchanged, 1 not in the list, 0 without a usable price"),
    ]
    assert snapshot(settings, redis_client) == before


def test_apply_makes_new_cost_versions_with_their_source_in_the_audit_log(settings, cli, redis_client, catalog):
    old = cost_of(settings, "gpt-4o")
    result = sync(cli, str(LITELLM), "--apply")
    assert result.exit_code == 0, result.output
    new = cost_of(settings, "gpt-4o")
    assert f"route {route_of(settings, 'gpt-4o').id} of gpt-4o (openai/gpt-4o, entry gpt-4o): changed: cost " \
           f"version {new.id}" in result.stdout
    assert new.id > old.id
    assert prices(new) == {"input": 2_500_000_000, "cached_input": 1_250_000_000, "cache_write": None,
                           "cache_write_1h": None, "output": 10_000_000_000, "reasoning": None}
    assert (new.source, new.created_by) == (f"sync {LITELLM}", CLI_ACTOR)
    with db.session_scope(settings) as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.entity == "price_version",
                                                        AuditEntry.entity_id == str(new.id)))
        assert (entry.action, entry.actor, entry.reason) == ("create", CLI_ACTOR, f"sync {LITELLM}")
        assert json.loads(entry.after)["output"] == 10_000_000_000
    # Published: the route's cost, and the at-cost model's hold price that follows it.
    document = published(redis_client, "gpt-4o")
    assert document["routes"][0]["cost"] == {"version": new.id, "input": 2_500_000_000, "cached_input": 1_250_000_000,
                                             "cache_write": 2_500_000_000, "cache_write_1h": 2_500_000_000,
                                             "output": 10_000_000_000, "reasoning": 10_000_000_000}
    assert (document["price"]["version"], document["price"]["output"]) == (0, 10_000_000_000)
    # The unchanged route kept its version; the one not in the list too; nothing was deleted.
    assert cost_of(settings, "claude").source == "cli"
    assert prices(cost_of(settings, "old"))["input"] == 1_000_000_000


def test_a_second_apply_changes_nothing_more(settings, cli, redis_client, catalog):
    sync(cli, str(LITELLM), "--apply")
    before = snapshot(settings, redis_client)
    report = sync_json(cli, str(LITELLM), "--apply")
    assert report["counts"] == {"unchanged": 2, "changed": 0, "held": 0, "already_held": 1, "missing": 1,
                                "unusable": 0, "models_added": 0}
    assert snapshot(settings, redis_client) == before


def test_json_diff_has_every_changed_class_exact(settings, cli, catalog):
    report = sync_json(cli, str(LITELLM))
    assert (report["applied"], report["entries"], report["unusable_entries"]) == (False, 7, 2)
    gpt = route_item(report, "gpt-4o")
    assert (gpt["status"], gpt["price_source_id"], gpt["reasons"]) == ("changed", "gpt-4o", [])
    assert gpt["classes"][0] == {
        "field": "input", "current": Decimal(2), "current_nano": 2_000_000_000, "proposed": Decimal("2.5"),
        "proposed_nano": 2_500_000_000, "current_charged": Decimal(2), "current_charged_nano": 2_000_000_000,
        "proposed_charged": Decimal("2.5"), "proposed_charged_nano": 2_500_000_000, "change_percent": Decimal("25.0")}
    mini = route_item(report, "mini")
    assert mini["status"] == "held" and mini["hold_id"] is None  # a dry run holds nothing
    assert [(item["field"], item["current_nano"], item["current_charged_nano"], item["proposed_nano"])
            for item in mini["classes"]] == [("input", 50_000_000, 50_000_000, 150_000_000),
                                             ("cached_input", None, 50_000_000, 75_000_000),
                                             ("output", 200_000_000, 200_000_000, 600_000_000)]
    assert route_item(report, "old")["status"] == "missing"


def test_a_route_without_a_price_source_id_is_not_synced(settings, cli, providers):
    add_model(cli, "gpt-4o", "openai", None, "--input", "1", "--output", "1")
    report = sync_json(cli, str(LITELLM), "--apply")
    assert report["routes"] == [] and prices(cost_of(settings, "gpt-4o"))["input"] == 1_000_000_000


def test_rounded_values_are_flagged_on_the_route_they_price(settings, cli, providers):
    add_model(cli, "dbx", "openai", "databricks/databricks-claude-sonnet-4", "--input", "3", "--output", "15")
    result = sync(cli, str(LITELLM), "--apply")
    assert result.exit_code == 0, result.output
    assert "    note: input_cost_per_token 0.0000029999900000000002 rounded to $2.99999 per 1M tokens" in \
        result.stdout.splitlines()
    assert (cost_of(settings, "dbx").input, cost_of(settings, "dbx").output) == (2_999_990_000, 15_000_020_000)


def test_an_unusable_entry_leaves_its_route_as_it_is(settings, cli, providers):
    add_model(cli, "neg", "openai", "legacy-negative", "--input", "1", "--output", "2")
    before = cost_of(settings, "neg")
    report = sync_json(cli, str(LITELLM), "--apply")
    assert (route_item(report, "neg")["status"], route_item(report, "neg")["notes"]) == (
        "unusable", ["legacy-negative: input_cost_per_token is negative (-0.000001)"])
    assert cost_of(settings, "neg").id == before.id


def test_openrouter_list_from_a_local_http_server(settings, cli, redis_client, providers, price_server):
    add_model(cli, "sonnet", "openrouter", "anthropic/claude-sonnet-4.5", "--input", "3", "--cached-input", "0.3",
              "--output", "12")
    add_model(cli, "auto", "openrouter", "openrouter/auto", "--input", "1", "--output", "1")
    url = price_server.serve("/api/v1/models", json.loads(OPENROUTER.read_text()))
    report = sync_json(cli, url, "--apply", fmt="openrouter")
    sonnet = route_item(report, "sonnet")
    assert (sonnet["status"], [item["field"] for item in sonnet["classes"]]) == ("changed", ["cache_write", "output"])
    assert prices(cost_of(settings, "sonnet")) == {
        "input": 3_000_000_000, "cached_input": 300_000_000, "cache_write": 3_750_000_000, "cache_write_1h": None,
        "output": 15_000_000_000, "reasoning": None}
    assert cost_of(settings, "sonnet").source == f"sync {url}"
    assert route_item(report, "auto")["status"] == "unusable"  # "-1": a router's variable price
    assert published(redis_client, "sonnet")["routes"][0]["cost"]["output"] == 15_000_000_000


def test_litellm_list_from_a_local_http_server(settings, cli, catalog, price_server):
    url = price_server.serve("/model_prices_and_context_window.json", LITELLM.read_bytes())
    report = sync_json(cli, url, "--apply")
    assert (report["source"], report["counts"]["changed"], report["counts"]["held"]) == (url, 1, 1)
    assert cost_of(settings, "gpt-4o").output == 10_000_000_000


# Guardrails ---------------------------------------------------------------------------------------


def test_a_rise_above_the_limit_is_held_whole_and_not_applied(settings, cli, redis_client, catalog):
    before = cost_of(settings, "mini")
    result = sync(cli, str(LITELLM), "--apply")
    assert result.exit_code == 0, result.output
    [hold] = holds_of(settings)
    assert (hold.route_id, hold.state, hold.source, hold.current_version_id) == (
        route_of(settings, "mini").id, "pending", str(LITELLM), before.id)
    assert hold.reason == "input rises +200% (more than 50%); output rises +200% (more than 50%)"
    # Every class, the one within the limit (cached +50%) too: the whole change waits.
    assert json.loads(hold.proposed) == {"input": 150_000_000, "cached_input": 75_000_000, "cache_write": None,
                                         "cache_write_1h": None, "output": 600_000_000, "reasoning": None}
    assert f"held for an admin (price hold {hold.id}): input rises +200%" in result.stdout
    assert cost_of(settings, "mini").id == before.id
    assert published(redis_client, "mini")["routes"][0]["cost"]["version"] == before.id
    with db.session_scope(settings) as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.entity == "price_hold"))
        assert (entry.action, entry.actor, entry.reason) == ("create", CLI_ACTOR, f"sync {LITELLM}")


def test_the_same_proposal_again_adds_no_second_hold(settings, cli, catalog):
    sync(cli, str(LITELLM), "--apply")
    report = sync_json(cli, str(LITELLM), "--apply")
    [hold] = holds_of(settings)
    assert (route_item(report, "mini")["status"], route_item(report, "mini")["hold_id"]) == ("already_held", hold.id)
    assert "held already" in sync(cli, str(LITELLM)).stdout  # a dry run sees it too


def test_a_different_proposal_replaces_the_pending_one(settings, cli, catalog, tmp_path):
    sync(cli, str(LITELLM), "--apply")
    dearer = write_list(tmp_path, litellm(**{"gpt-4o-mini": {"input_cost_per_token": 2e-07}}))
    sync(cli, dearer, "--apply")
    [hold] = holds_of(settings)
    assert (hold.state, json.loads(hold.proposed)["input"], hold.source) == ("pending", 200_000_000, dearer)
    assert hold.reason.startswith("input rises +300% (more than 50%)")


def test_a_hold_the_list_no_longer_proposes_is_closed(settings, cli, catalog, tmp_path):
    sync(cli, str(LITELLM), "--apply")
    # The list now has mini's current prices: nothing to change, and the pending hold is rejected.
    back = write_list(tmp_path, litellm(**{"gpt-4o-mini": {"input_cost_per_token": 5e-08,
                                                           "cache_read_input_token_cost": None,
                                                           "output_cost_per_token": 2e-07}}))
    report = sync_json(cli, back, "--apply")
    assert route_item(report, "mini")["status"] == "unchanged"
    [hold] = holds_of(settings)
    assert (hold.state, hold.decided_by) == ("rejected", CLI_ACTOR)


@pytest.mark.parametrize(("output", "status"), [("1.2e-05", "changed"), ("1.2000001e-05", "held")])
def test_a_rise_of_exactly_the_limit_is_applied(settings, cli, catalog, tmp_path, output, status):
    # gpt-4o's output $8 → $12 is +50% (the limit); a hair more is held.
    path = write_list(tmp_path, LITELLM.read_text().replace('"output_cost_per_token": 1e-05',
                                                            f'"output_cost_per_token": {output}'))
    assert route_item(sync_json(cli, path, "--apply"), "gpt-4o")["status"] == status


def sync_with(tollgate_env, *args: str, **env: str):
    """`tollgate prices sync args…` with these settings changed."""
    return CliRunner().invoke(main, ["prices", "sync", *args], env={**tollgate_env, **env})


def test_the_rise_limit_is_a_setting(settings, tollgate_env, catalog):
    result = sync_with(tollgate_env, "--source", str(LITELLM), "--apply", TOLLGATE_PRICE_SYNC_MAX_RISE_PERCENT="200")
    assert result.exit_code == 0, result.output
    assert cost_of(settings, "mini").input == 150_000_000 and holds_of(settings) == []


def test_the_source_and_format_default_to_the_settings(settings, tollgate_env, catalog):
    result = sync_with(tollgate_env, "--json", TOLLGATE_PRICE_SYNC_SOURCE=str(OPENROUTER),
                       TOLLGATE_PRICE_SYNC_FORMAT="openrouter")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format"] == "openrouter"


def test_a_change_redis_does_not_take_is_saved_and_says_so(settings, tollgate_env, catalog):
    result = sync_with(tollgate_env, "--source", str(LITELLM), "--apply", TOLLGATE_REDIS_URL="redis://127.0.0.1:9/0")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: saved, but not live yet: ConnectionError")
    assert result.stderr.rstrip().endswith("run `tollgate publish` once Redis answers")
    assert cost_of(settings, "gpt-4o").output == 10_000_000_000


def test_a_price_becoming_zero_is_held(settings, cli, catalog, tmp_path):
    path = write_list(tmp_path, litellm(**{"gpt-4o": {"cache_read_input_token_cost": 0.0}}))
    report = sync_json(cli, path, "--apply")
    gpt = route_item(report, "gpt-4o")
    assert (gpt["status"], gpt["reasons"]) == ("held", ["cached_input becomes $0 (from $1.00)"])
    assert cost_of(settings, "gpt-4o").cached_input == 1_000_000_000
    [hold] = [hold for hold in holds_of(settings) if hold.id == gpt["hold_id"]]
    assert json.loads(hold.proposed)["cached_input"] == 0


def test_a_whole_price_becoming_zero_is_held(settings, cli, catalog, tmp_path):
    path = write_list(tmp_path, litellm(**{"gpt-4o": {"input_cost_per_token": 0, "cache_read_input_token_cost": 0,
                                                      "output_cost_per_token": 0}}))
    gpt = route_item(sync_json(cli, path, "--apply"), "gpt-4o")
    assert gpt["reasons"] == ["input becomes $0 (from $2.00)", "cached_input becomes $0 (from $1.00)",
                              "output becomes $0 (from $8.00)"]
    assert cost_of(settings, "gpt-4o").input == 2_000_000_000


def test_a_class_losing_its_price_is_held(settings, cli, catalog, tmp_path):
    # claude prices its 1-hour cache writes; a list without that price would bill them as 5-minute ones.
    path = write_list(tmp_path, litellm(**{"claude-sonnet-4-5": {"cache_creation_input_token_cost_above_1hr": None}}))
    claude = route_item(sync_json(cli, path, "--apply"), "claude")
    assert (claude["status"], claude["reasons"]) == ("held", ["cache_write_1h loses its price ($6.00)"])
    assert cost_of(settings, "claude").cache_write_1h == 6_000_000_000


# A list that cannot be read -----------------------------------------------------------------------


@pytest.mark.parametrize(("page", "message"), [
    ((404, b'{"error": "not found"}'), "answered HTTP 404 Not Found"),
    ((500, b"oops"), "answered HTTP 500 Internal Server Error"),
    ((200, b"<html>maintenance</html>"), "is not JSON: Expecting value: line 1 column 1 (char 0)"),
    ((200, b'["gpt-4o"]'), "is not LiteLLM's price list"),
])
def test_a_list_that_fails_to_load_or_parse_changes_nothing_and_exits_1(settings, cli, redis_client, catalog,
                                                                          price_server, page, message):
    price_server.pages["/prices.json"] = page
    url = price_server.url + "/prices.json"
    before = snapshot(settings, redis_client)
    result = sync(cli, url, "--apply", "--add-new", "--provider", "openai")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {url} {message}") and result.stderr.rstrip().endswith("; nothing changed")
    assert snapshot(settings, redis_client) == before


def test_an_unreachable_url_or_a_missing_file_changes_nothing(settings, cli, redis_client, catalog, tmp_path):
    before = snapshot(settings, redis_client)
    result = sync(cli, "http://127.0.0.1:9/prices.json", "--apply")
    assert result.exit_code == 1 and "http://127.0.0.1:9/prices.json could not be reached" in result.stderr
    result = sync(cli, str(tmp_path / "none.json"), "--apply")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: cannot read {tmp_path / 'none.json'}: No such file or directory; " \
                                    "nothing changed"
    result = sync(cli, "ftp://example.com/prices.json", "--apply")
    assert result.exit_code == 1 and "an http(s) URL or a file path" in result.stderr
    assert snapshot(settings, redis_client) == before


def test_a_list_larger_than_the_cap_is_refused(cli, catalog, price_server, monkeypatch):
    monkeypatch.setattr(price_sync, "MAX_BYTES", 1000)
    url = price_server.serve("/big.json", LITELLM.read_bytes())
    result = sync(cli, url, "--apply")
    assert result.exit_code == 1 and f"{url} answered more than 1,000 bytes" in result.stderr


def test_mistakes_in_the_arguments_exit_2(cli, catalog):
    result = sync(cli, str(LITELLM), "--add-new")
    assert result.exit_code == 2 and "needs the provider that serves them (--provider)" in result.stderr
    result = sync(cli, str(LITELLM), "--add-new", "--provider", "nobody")
    assert result.exit_code == 2 and "no provider named 'nobody'" in result.stderr
    result = cli("prices", "sync", "--source", str(LITELLM), "--format", "csv")
    assert result.exit_code == 2
    result = cli("prices", "sync")
    assert result.exit_code == 2 and "give the price list with --source" in result.stderr


# New models ---------------------------------------------------------------------------------------


def test_new_entries_are_added_only_with_add_new(settings, cli, catalog):
    report = sync_json(cli, str(LITELLM), "--apply")
    assert report["new_models"] == []
    with db.session_scope(settings) as session:
        assert upstreams.find_model(session, "claude-sonnet-4-5") is None
        assert upstreams.find_model(session, "dashscope/qwen-plus") is None


def test_add_new_adds_priced_entries_at_cost_on_the_provider(settings, cli, redis_client, catalog):
    report = sync_json(cli, str(LITELLM), "--apply", "--add-new", "--provider", "openai")
    added = {item["model"]: item for item in report["new_models"]}
    assert {name for name, item in added.items() if item["added"]} == {
        "dashscope/qwen-plus", "databricks/databricks-claude-sonnet-4", "text-embedding-3-small"}
    assert added["cohere-rerank-v3.5"]["reason"] == "priced $0 for every class: not priced per token"
    # Entries named by routes are synced, not added; unusable ones are neither.
    assert not {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "dall-e-3", "legacy-negative"} & set(added)
    with db.session_scope(settings) as session:
        model = upstreams.find_model(session, "dashscope/qwen-plus")
        [route] = upstreams.routes_of(session, model.id)
        cost = upstreams.current_cost(session, route.id)
        assert (model.at_cost, model.max_input, model.max_output) == (True, 129_024, 16_384)
        assert (route.provider.name, route.upstream_model, route.price_source_id) == (
            "openai", "dashscope/qwen-plus", "dashscope/qwen-plus")
        assert prices(cost) == {"input": 400_000_000, "cached_input": None, "cache_write": None,
                                "cache_write_1h": None, "output": 1_200_000_000, "reasoning": 4_000_000_000}
        assert (cost.source, cost.created_by) == (f"sync {LITELLM}", CLI_ACTOR)
        embedding = upstreams.find_model(session, "text-embedding-3-small")
        assert (embedding.max_input, embedding.max_output) == (8191, upstreams.DEFAULT_MAX_OUTPUT)
    assert published(redis_client, "dashscope/qwen-plus")["routes"][0]["cost"]["reasoning"] == 4_000_000_000
    # The next sync finds them named by their routes: unchanged, not added again.
    again = sync_json(cli, str(LITELLM), "--apply", "--add-new", "--provider", "openai")
    assert route_item(again, "dashscope/qwen-plus")["status"] == "unchanged"
    assert not any(item["added"] for item in again["new_models"])


def test_add_new_without_apply_adds_nothing(settings, cli, redis_client, catalog):
    before = snapshot(settings, redis_client)
    result = sync(cli, str(LITELLM), "--add-new", "--provider", "openai")
    assert result.exit_code == 0, result.output
    assert "new model dashscope/qwen-plus on openai: would be added (input $0.40, output $1.20, reasoning $4.00 " \
           "per 1M tokens)" in result.stdout.splitlines()
    assert "new model cohere-rerank-v3.5: not added: priced $0 for every class: not priced per token" in \
        result.stdout.splitlines()
    assert snapshot(settings, redis_client) == before


def test_add_new_leaves_a_model_of_the_same_name_alone(settings, cli, providers):
    # A model priced by hand (its route names no entry) is not the list's to change.
    add_model(cli, "gpt-4o", "openai", None, "--input", "1", "--output", "1")
    result = cli("model", "price", "gpt-4o", "--input", "5", "--output", "5")
    assert result.exit_code == 0, result.output
    report = sync_json(cli, str(LITELLM), "--apply", "--add-new", "--provider", "openai")
    gpt = next(item for item in report["new_models"] if item["model"] == "gpt-4o")
    assert (gpt["added"], gpt["reason"]) == (
        False, "a model or alias of this name exists: give its route --price-source-id to sync it")
    with db.session_scope(settings) as session:
        model = upstreams.find_model(session, "gpt-4o")
        assert model.at_cost is False and len(upstreams.routes_of(session, model.id)) == 1


def test_add_new_skips_an_entry_whose_id_is_no_model_name(settings, cli, providers, tmp_path):
    path = write_list(tmp_path, {"gemini pro (preview)": {"input_cost_per_token": 1e-06,
                                                          "output_cost_per_token": 2e-06}})
    report = sync_json(cli, path, "--apply", "--add-new", "--provider", "openai")
    assert report["new_models"][0]["reason"] == "not a model name (1-100 letters, digits and ._:/@+-)"


# Held changes: approve and reject from the CLI --------------------------------------------------------


def test_approve_applies_the_held_change_as_a_new_cost_version(settings, cli, redis_client, catalog):
    sync(cli, str(LITELLM), "--apply")
    [hold] = holds_of(settings)
    result = cli("prices", "approve", str(hold.id))
    assert result.exit_code == 0, result.output
    version = cost_of(settings, "mini")
    assert result.stdout.strip() == f"price hold {hold.id} approved: route {hold.route_id} now costs cost version " \
                                    f"{version.id}"
    assert (version.input, version.cached_input, version.output) == (150_000_000, 75_000_000, 600_000_000)
    assert (version.source, version.created_by) == (f"sync {LITELLM} (approved by {CLI_ACTOR})", CLI_ACTOR)
    [hold] = holds_of(settings)
    assert (hold.state, hold.decided_by) == ("approved", CLI_ACTOR) and hold.decided_at is not None
    assert published(redis_client, "mini")["routes"][0]["cost"]["version"] == version.id
    result = cli("prices", "approve", str(hold.id))
    assert result.exit_code == 2 and f"price change {hold.id} was approved already" in result.stderr


def test_reject_leaves_the_cost_and_a_stale_hold_cannot_be_approved(settings, cli, catalog):
    sync(cli, str(LITELLM), "--apply")
    [hold] = holds_of(settings)
    before = cost_of(settings, "mini")
    # The route's cost changes by hand after the hold: approving would overwrite it blindly.
    add_model(cli, "mini", "openai", None, "--input", "0.06", "--output", "0.20")
    result = cli("prices", "approve", str(hold.id))
    assert result.exit_code == 2 and f"route {hold.route_id}'s cost changed after price change {hold.id} was held" \
        in result.stderr
    result = cli("prices", "held")
    assert f"price hold {hold.id} (pending, stale: reject it)" in result.stdout
    result = cli("prices", "reject", str(hold.id))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"price hold {hold.id} rejected: route {hold.route_id}'s cost stays as it is"
    assert cost_of(settings, "mini").input == 60_000_000 and cost_of(settings, "mini").id > before.id
    assert holds_of(settings)[0].state == "rejected"
    assert cli("prices", "reject", "999999").stderr.strip() == "Error: no held price change 999999"


def test_held_lists_pending_changes_as_json(settings, cli, catalog):
    sync(cli, str(LITELLM), "--apply")
    result = cli("prices", "held", "--json")
    [item] = json.loads(result.stdout, parse_float=Decimal)
    assert (item["model"], item["provider"], item["upstream_model"], item["state"], item["stale"]) == (
        "mini", "openai", "mini", "pending", False)
    assert [(change["field"], change["current_charged_nano"], change["proposed_charged_nano"])
            for change in item["classes"]] == [
        ("input", 50_000_000, 150_000_000), ("cached_input", 50_000_000, 75_000_000),
        ("cache_write", 50_000_000, 150_000_000), ("cache_write_1h", 50_000_000, 150_000_000),
        ("output", 200_000_000, 600_000_000), ("reasoning", 200_000_000, 600_000_000)]
    assert json.loads(cli("prices", "held", "--decided", "--json").stdout) == []


# tollgate up's periodic sync -------------------------------------------------------------------------


def periodic_settings(settings, source: str, fmt: str = "litellm"):
    from dataclasses import replace

    return replace(settings, price_sync_source=source, price_sync_format=fmt)


def test_periodic_sync_applies_as_system_and_holds_the_rest(settings, redis_client, catalog, price_server, caplog):
    url = price_server.serve("/prices.json", LITELLM.read_bytes())
    with caplog.at_level(logging.INFO, logger="control_plane.catalog.price_sync"):
        report = price_sync.periodic_sync(periodic_settings(settings, url))
    assert report.applied and report.counts()["changed"] == 1
    assert caplog.messages == [(f"price sync from {url} (litellm): routes 1 changed, 1 held, 0 held already, "
                                "1 unchanged, 1 not in the list, 0 without a usable price")]
    version = cost_of(settings, "gpt-4o")
    assert (version.output, version.source, version.created_by) == (10_000_000_000, f"sync {url}", "system")
    [hold] = holds_of(settings)
    assert hold.state == "pending"  # waits for an admin
    assert published(redis_client, "gpt-4o")["routes"][0]["cost"]["version"] == version.id
    with db.session_scope(settings) as session:
        assert session.scalar(select(AuditEntry.actor).where(AuditEntry.entity == "price_version",
                                                             AuditEntry.entity_id == str(version.id))) == "system"


def test_periodic_sync_from_a_failing_list_logs_an_error_and_changes_nothing(settings, redis_client, catalog,
                                                                            price_server, caplog):
    url = price_server.url + "/gone.json"
    before = snapshot(settings, redis_client)
    with caplog.at_level(logging.INFO, logger="control_plane.catalog.price_sync"):
        assert price_sync.periodic_sync(periodic_settings(settings, url)) is None
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("ERROR", f"price sync from {url} failed, nothing changed: {url} answered HTTP 404 Not Found")]
    assert snapshot(settings, redis_client) == before


def test_the_worker_runs_the_periodic_sync_when_a_source_is_set(settings, catalog, price_server):
    url = price_server.serve("/prices.json", LITELLM.read_bytes())
    worker = Worker(periodic_settings(settings, url), consumer="test-worker")
    worker.drain.ensure_groups()
    worker._run_due_tasks()
    worker.price_sync.join(timeout=30)
    assert cost_of(settings, "gpt-4o").source == f"sync {url}"
    first = worker.price_sync
    worker._run_due_tasks()  # not due again for price_sync_hours
    assert worker.price_sync is first
    assert Worker(settings, consumer="test-worker-2").price_sync is None  # no source: no sync


def test_models_listed_in_the_fixture_but_deleted_from_the_list_are_kept(settings, cli, catalog, tmp_path):
    path = write_list(tmp_path, litellm(**{"gpt-4o": None, "claude-sonnet-4-5": None}))
    report = sync_json(cli, path, "--apply")
    assert {route_item(report, model)["status"] for model in ("gpt-4o", "claude")} == {"missing"}
    with db.session_scope(settings) as session:
        assert {model.name for model in session.scalars(select(Model))} == {"gpt-4o", "claude", "mini", "old"}
    assert cost_of(settings, "gpt-4o").input == 2_000_000_000

