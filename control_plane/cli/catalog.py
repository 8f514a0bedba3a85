"""`tollgate provider|model|route|alias`: the upstream providers, the models customers can call,
the routes that serve them and the aliases they are called by.

The list commands print a table for people, or with --json what the admin API answers
(api/admin_catalog.py's items). Exit status: 0 done, 2 a mistake (an unknown name, a bad
price), 1 Redis or the database unreachable; `provider test` also exits 1 when the provider
did not answer with a 2xx."""
from __future__ import annotations

from datetime import UTC, datetime

import click
import redis

from .. import db, exact_json
from ..api import admin_catalog
from ..catalog import pricing, provider_check, upstreams
from ..hot import publish, route_health
from ..models import PROTOCOLS, RETRY_STATUSES, Model, PriceVersion, Provider, utc_timestamp
from ..money import format_usd, nano_to_decimal
from ..settings import Settings
from ..usage_classes import PRICE_FIELDS, USAGE_CLASSES
from .common import REPUBLISH_HINT, USD, UserMistake, publish_after


@click.group()
def provider() -> None:
    """Upstream providers."""


@provider.command("add")
@click.argument("name")
@click.option("--protocol", type=click.Choice(PROTOCOLS), required=True)
@click.option("--base-url", required=True, help="e.g. https://api.openai.com/v1")
@click.option("--api-key", prompt=True, hide_input=True, help="Asked for when left out (so not in shell history).")
@click.pass_obj
def provider_add(settings: Settings, name: str, protocol: str, base_url: str, api_key: str) -> None:
    """Add a provider, or update the one with this name."""
    with db.session_scope(settings) as session:
        saved = upstreams.upsert_provider(session, settings, name, protocol, base_url, api_key)
    publish_after(settings, lambda _session: publish.publish_provider(settings, saved), REPUBLISH_HINT)
    click.echo(f"provider {saved.name} saved ({saved.protocol}, {saved.base_url})")


@provider.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array (the admin API's items) instead of a table.")
@click.pass_obj
def provider_list(settings: Settings, as_json: bool) -> None:
    """Every provider: protocol, base URL, its key's last four characters (never the key), whether
    it is enabled, and the routes that use it."""
    with db.session_scope(settings) as session:
        items = [admin_catalog.provider_item(session, settings, saved) for saved in upstreams.providers(session)]
    if as_json:
        click.echo(exact_json.dumps(items))
        return
    _table([("name", "protocol", "base URL", "key", "state", "routes")] + [
        (item["name"], item["protocol"], item["base_url"], item["key"],
         "enabled" if item["enabled"] else f"disabled since {item['disabled_at']}",
         ", ".join(f"{route['model']} ({route['id']})" for route in item["routes"]) or "none")
        for item in items])


def _switch(settings: Settings, name: str, enabled: bool) -> None:
    with db.session_scope(settings) as session:
        saved = upstreams.set_provider_enabled(session, name, enabled)
        routes = len(upstreams.routes_via(session, saved.id))
    unserved: list[str] = []
    publish_after(settings, lambda session: unserved.extend(
        publish.publish_provider_change(session, settings, session.get(Provider, saved.id))), REPUBLISH_HINT)
    if enabled:
        click.echo(f"provider {name} enabled: the gateway uses its {routes} route(s) again within 1 s")
        return
    click.echo(f"provider {name} disabled: the gateway stops using its {routes} route(s) within 1 s")
    if unserved:
        click.echo(f"not served until a provider of theirs is enabled (they answer 404 model_not_found): "
                   f"{', '.join(unserved)}")


@provider.command("disable")
@click.argument("name")
@click.pass_obj
def provider_disable(settings: Settings, name: str) -> None:
    """Stop routing requests to NAME (its routes and key stay; `provider enable` undoes it). A
    model left without a route to an enabled provider is not served."""
    _switch(settings, name, enabled=False)


@provider.command("enable")
@click.argument("name")
@click.pass_obj
def provider_enable(settings: Settings, name: str) -> None:
    """Route requests to a disabled provider NAME again."""
    _switch(settings, name, enabled=True)


@provider.command("test")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="A JSON object instead of a line.")
@click.pass_obj
def provider_test(settings: Settings, name: str, as_json: bool) -> None:
    """One real call to NAME with its key (its model list, free): the answer's status and latency.
    Exits 0 when it answered with a 2xx, 1 otherwise (another status, or no answer)."""
    with db.session_scope(settings) as session:
        saved = upstreams.require_provider(session, name)
    result = provider_check.check(settings, saved)
    click.echo(exact_json.dumps(result.as_dict()) if as_json else f"provider {name}: GET {result.url}: "
               f"{result.summary()}")
    if not result.ok:
        click.get_current_context().exit(1)


def _table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, the last one left as it is."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)] + [0]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def price_options(required: bool = True):
    """--input, --cached-input, … : one USD-per-1M-tokens option per usage class, named by its price
    field; those without a default price are required (unless `required` is False, for a command
    where prices are one choice of several)."""

    def decorate(command):
        for usage in reversed(USAGE_CLASSES):
            when_unset = "" if usage.default is None else f"; default: the {usage.default.replace('_', ' ')} price"
            command = click.option(f"--{usage.price.replace('_', '-')}", usage.price, type=USD,
                                   required=required and usage.default is None,
                                   help=f"USD per 1M tokens: {usage.description}{when_unset}.")(command)
        return command

    return decorate


def _per_million(version: PriceVersion) -> str:
    return f"input {format_usd(version.input)}, output {format_usd(version.output)} per 1M tokens"


def _publish_model(settings: Settings, model_id: int) -> None:
    served: list[bool] = []
    publish_after(settings, lambda session: served.append(
        publish.publish_model(session, settings, session.get(Model, model_id))), REPUBLISH_HINT)
    if served == [False]:
        click.echo("note: every route of this model goes to a disabled provider, so it is not served (404 "
                   "model_not_found) until one is enabled (`tollgate provider enable`)")


@click.group()
def model() -> None:
    """Models customers can call."""


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array (the admin API's items) instead of a table.")
@click.pass_obj
def model_list(settings: Settings, as_json: bool) -> None:
    """Every model: how it is charged, its routes (those the gateway may use / all), aliases, and
    its current prices per 1M tokens (a model at cost: the range of its served routes' costs)."""
    with db.session_scope(settings) as session:
        items = [admin_catalog.model_summary(session, saved) for saved in upstreams.models(session)]
    if as_json:
        click.echo(exact_json.dumps(items))
        return
    _table([("name", "charging", "routes", "input/1M", "output/1M", "aliases")] + [
        (item["name"], item["charging"], f"{item['served_route_count']}/{item['route_count']}"
         + ("" if item["served"] else " (not served)"), *_current_prices(item, ("input", "output")),
         ", ".join(item["aliases"]) or "-")
        for item in items])


def _current_prices(item: dict, fields: tuple[str, ...]) -> list[str]:
    ranges = [admin_catalog.price_range(item, field) for field in fields]
    return ["-" if found is None else format_usd(found[0]) if found[0] == found[1]
            else f"{format_usd(found[0])}-{format_usd(found[1])}" for found in ranges]


@model.command("add")
@click.argument("name")
@click.option("--provider", "provider_name", required=True)
@click.option("--upstream-model",
              help="The provider's name for it (default: NAME, or the model's route's to PROVIDER).")
@price_options()
@click.option("--max-output", type=click.IntRange(min=1), help="Most output tokens a request may ask for.")
@click.option("--max-input", type=click.IntRange(min=1),
              help="The context window in tokens: what a request whose input the provider fetches or keeps "
                   "(media by URL, files, earlier responses, server tools) is held at (default 200000).")
@click.option("--retry-on", help="The provider statuses on which a request tries the model's next route, "
                                 f"comma-separated, among {','.join(map(str, RETRY_STATUSES))} (default: all of "
                                 "them; '' for none).")
@click.option("--price-source-id", help="This route's id in the price list `tollgate prices sync` reads (e.g. "
                                       "'claude-sonnet-4-20250514' in LiteLLM's, 'anthropic/claude-sonnet-4' in "
                                       "OpenRouter's); '' clears it.")
@click.pass_obj
def model_add(settings: Settings, name: str, provider_name: str, upstream_model: str | None,
              max_output: int | None, max_input: int | None, retry_on: str | None, price_source_id: str | None,
              **prices: int | None) -> None:
    """Add a model charged at the cost of its route to PROVIDER, whose cost the prices are, or update it
    (a cost change adds a new cost version; a model with a fixed price is charged at cost again)."""
    with db.session_scope(settings) as session:
        existing = upstreams.find_model(session, name)
        was_fixed = existing is not None and not existing.at_cost
        saved = upstreams.upsert_model(session, name, provider_name, prices, upstream_model, max_output, max_input,
                                       retry_on, price_source_id)
        route = upstreams.route_to(session, saved, upstreams.require_provider(session, provider_name), upstream_model)
        cost = upstreams.current_cost(session, route.id)
    _publish_model(settings, saved.id)
    click.echo(f"model {saved.name} saved, charged at cost{' (was a fixed price)' if was_fixed else ''}: route "
               f"{route.id} {provider_name}/{route.upstream_model}, cost version {cost.id} ({_per_million(cost)})")


@model.command("price")
@click.argument("name")
@click.option("--at-cost", is_flag=True, help="Charge each request the cost of the route that served it.")
@price_options(required=False)
@click.pass_obj
def model_price(settings: Settings, name: str, at_cost: bool, **prices: int | None) -> None:
    """Charge the model at cost, or a fixed customer price: the prices given (a change adds a new
    price version), whichever route serves the request."""
    if at_cost == any(price is not None for price in prices.values()):
        raise UserMistake("give either --at-cost or the model's prices (--input, --output, …)")
    with db.session_scope(settings) as session:
        saved = upstreams.set_price(session, name, None if at_cost else prices)
        version = None if at_cost else upstreams.current_price(session, saved.id)
    _publish_model(settings, saved.id)
    if version is None:
        click.echo(f"model {name} is charged at cost: each request at its route's cost version")
    else:
        click.echo(f"model {name} is charged a fixed price: price version {version.id} ({_per_million(version)})")


@click.group()
def route() -> None:
    """The providers that serve a model, tried by priority, shared by weight."""


@route.command("add")
@click.argument("model_name", metavar="MODEL")
@click.option("--provider", "provider_name", required=True)
@click.option("--upstream-model", help="The provider's name for the model (default: MODEL).")
@click.option("--priority", type=click.IntRange(0, upstreams.MAX_ROUTE_WEIGHT),
              help="Lower is tried first (a new route: 0).")
@click.option("--weight", type=click.IntRange(1, upstreams.MAX_ROUTE_WEIGHT),
              help="Its share of the requests among routes of the same priority (a new route: 1).")
@price_options()
@click.option("--price-source-id", help="This route's id in the price list `tollgate prices sync` reads (e.g. "
                                       "'claude-sonnet-4-20250514' in LiteLLM's, 'anthropic/claude-sonnet-4' in "
                                       "OpenRouter's); '' clears it.")
@click.pass_obj
def route_add(settings: Settings, model_name: str, provider_name: str, upstream_model: str | None,
              priority: int | None, weight: int | None, price_source_id: str | None, **prices: int | None) -> None:
    """Add a route to MODEL, or update it; the prices are what the provider charges for it (a
    change adds a new cost version)."""
    with db.session_scope(settings) as session:
        saved = upstreams.upsert_route(session, model_name, provider_name, prices, upstream_model, priority, weight,
                                       price_source_id)
        cost = upstreams.current_cost(session, saved.id)
    _publish_model(settings, saved.model_id)
    click.echo(f"route {saved.id} of {model_name} saved: {provider_name}/{saved.upstream_model}, priority "
               f"{saved.priority}, weight {saved.weight}, cost version {cost.id} ({_per_million(cost)})")


@route.command("list")
@click.argument("model_name", metavar="MODEL")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, with every price of each cost.")
@click.pass_obj
def route_list(settings: Settings, model_name: str, as_json: bool) -> None:
    """MODEL's routes in the order they are tried, their cost, and their state on each gateway node
    that does not see them healthy."""
    with db.session_scope(settings) as session:
        model_id = upstreams.require_model(session, model_name).id
        listed = [(route, upstreams.current_cost(session, route.id))
                  for route in upstreams.routes_of(session, model_id)]
        providers = {route.id: route.provider.name for route, _cost in listed}
    try:
        views = route_health.route_views(settings, [route.id for route, _cost in listed])
    except redis.RedisError:
        views = None  # the catalog is still worth showing
    items = [_route_item(route, providers[route.id], cost, None if views is None else views[route.id])
             for route, cost in listed]
    if as_json:
        click.echo(exact_json.dumps(items))
        return
    rows = [("id", "provider", "upstream model", "priority", "weight", "input/1M", "output/1M", "state")]
    rows += [(str(item["id"]), item["provider"], item["upstream_model"], str(item["priority"]), str(item["weight"]),
              format_usd(item["cost_nano"]["input"]), format_usd(item["cost_nano"]["output"]), item["state"])
             for item in items]
    _table(rows)


def _route_item(route, provider: str, cost: PriceVersion, views: list[route_health.NodeView] | None) -> dict:
    resolved = pricing.resolve(cost)
    return {
        "id": route.id, "provider": provider, "upstream_model": route.upstream_model, "priority": route.priority,
        "weight": route.weight, "cost_version": cost.id,
        "cost": {field: nano_to_decimal(resolved[field]) for field in PRICE_FIELDS}, "cost_nano": resolved,
        "state": _state_text(views),
        "nodes": None if views is None else [
            {"node": view.node, "state": view.state, "until_ms": view.until_ms, "fails": view.fails,
             "status": view.status} for view in views],
    }


def _state_text(views: list[route_health.NodeView] | None) -> str:
    """'healthy', or per node that does not see it so: 'node-a: cooling until 2026-12-02T10:00:01.000Z
    (3 fails, last 503); node-b: refused (…)'."""
    if views is None:
        return "unknown (Redis did not answer)"
    if not views:
        return "healthy"
    texts = []
    for view in views:
        text = f"{view.node}: {view.state}"
        if view.state == "cooling" and isinstance(view.until_ms, int):
            text += f" until {utc_timestamp(datetime.fromtimestamp(view.until_ms / 1000, UTC))}"
        if view.fails is not None:
            text += f" ({view.fails} fails, last {view.status})"
        texts.append(text)
    return "; ".join(texts)


@route.command("remove")
@click.argument("model_name", metavar="MODEL")
@click.argument("route_id", type=int)
@click.pass_obj
def route_remove(settings: Settings, model_name: str, route_id: int) -> None:
    """Stop serving MODEL through one of its routes (not its last one)."""
    with db.session_scope(settings) as session:
        removed = upstreams.remove_route(session, model_name, route_id)
    _publish_model(settings, removed.model_id)
    click.echo(f"route {route_id} of {model_name} removed")


@click.group()
def alias() -> None:
    """Other names customers may call a model by."""


@alias.command("add")
@click.argument("name", metavar="ALIAS")
@click.argument("model_name", metavar="MODEL")
@click.pass_obj
def alias_add(settings: Settings, name: str, model_name: str) -> None:
    """Let customers call MODEL as ALIAS (an alias that exists is pointed at MODEL)."""
    with db.session_scope(settings) as session:
        saved = upstreams.add_alias(session, name, model_name)
    _publish_model(settings, saved.model_id)
    click.echo(f"alias {name} -> {model_name} saved")


@alias.command("remove")
@click.argument("name", metavar="ALIAS")
@click.pass_obj
def alias_remove(settings: Settings, name: str) -> None:
    with db.session_scope(settings) as session:
        upstreams.remove_alias(session, name)
    publish_after(settings, lambda _session: publish.unpublish_alias(settings, name), REPUBLISH_HINT)
    click.echo(f"alias {name} removed")


@alias.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of lines.")
@click.pass_obj
def alias_list(settings: Settings, as_json: bool) -> None:
    """Every alias and the model it names."""
    with db.session_scope(settings) as session:
        listed = [{"alias": item.name, "model": item.model.name} for item in upstreams.aliases(session)]
    if as_json:
        click.echo(exact_json.dumps(listed))
        return
    for item in listed:
        click.echo(f"{item['alias']} -> {item['model']}")
