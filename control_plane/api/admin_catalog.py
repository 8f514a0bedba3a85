"""/api/admin/v1: providers, models, routes, aliases and prices (catalog/upstreams.py, as the CLI
and the admin console change them, each change published to Redis once committed).

- `GET /providers`; `POST /providers` `{"name", "protocol", "base_url", "api_key"}` adds a provider
  or updates the one of that name (`api_key` is write-only: left out, an existing provider keeps
  its key; only "…" and its last four characters are ever answered); `POST /providers/<name>/disable`
  and `/enable`; `POST /providers/<name>/test` (one real call: catalog/provider_check.py).
- `GET /models`; `GET /models/<name>` (its routes with cost, margin and health per gateway node,
  every price version); `POST /models` `{"name", "provider", "upstream_model", "prices",
  "max_output", "max_input", "retry_on", "price_source_id"}`; `POST /models/<name>/routes`
  `{"provider", "upstream_model", "prices", "priority", "weight", "price_source_id"}`;
  `DELETE /models/<name>/routes/<id>`; `PUT /models/<name>/price` `{"at_cost": true}` or
  `{"prices": {…}}`; `POST /aliases` `{"alias", "model"}`; `DELETE /aliases/<name>`.

Prices are USD per 1M tokens by usage class (input, cached_input, cache_write, cache_write_1h,
output, reasoning), as strings ("2.40") or exact JSON numbers, never read through a float;
answered as exact numbers with their `_nano` twins. The item builders here are also what
`tollgate provider list --json` and `model list --json` print, and what the console pages show.
"""
from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal

import redis
from sqlalchemy.orm import Session

from .. import db, logs
from ..catalog import pricing, provider_check, upstreams
from ..errors import ServiceError
from ..hot import publish, route_health
from ..models import Model, PriceVersion, Provider, Route, utc_timestamp
from ..money import nano_to_decimal, usd_to_nano
from ..settings import Settings
from ..usage_classes import PRICE_FIELDS
from . import context
from .admin import admin_v1
from .errors import ApiError, bad_parameter

# Items ---------------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str | None:
    return moment and utc_timestamp(moment)


def _money(name: str, prices: dict[str, int] | None) -> dict:
    """{name: {field: exact USD}, name_nano: {field: nano-USD}} per 1M tokens (None when unknown)."""
    if prices is None:
        return {name: None, f"{name}_nano": None}
    return {name: {field: nano_to_decimal(prices[field]) for field in PRICE_FIELDS}, f"{name}_nano": dict(prices)}


def provider_item(session: Session, settings: Settings, provider: Provider) -> dict:
    """A provider as every admin surface shows it: its key only as "…" and its last four."""
    return {
        "id": provider.id, "name": provider.name, "protocol": provider.protocol, "base_url": provider.base_url,
        "key": upstreams.key_hint(settings, provider), "enabled": provider.disabled_at is None,
        "disabled_at": _when(provider.disabled_at), "created_at": _when(provider.created_at),
        "routes": [{"id": route.id, "model": route.model.name, "upstream_model": route.upstream_model}
                   for route in upstreams.routes_via(session, provider.id)],
    }


def price_version_item(version: PriceVersion) -> dict:
    """A customer price version (route_id None) or a route's cost version: its prices as charged
    (defaults resolved; `defaulted` names the classes that fell back), where they came from and
    who made them."""
    return {"id": version.id, "kind": "price" if version.route_id is None else "cost", "route_id": version.route_id,
            "created_at": _when(version.created_at), "source": version.source, "created_by": version.created_by,
            **_money("prices", pricing.resolve(version)),
            "defaulted": [field for field in PRICE_FIELDS if getattr(version, field) is None]}


def model_summary(session: Session, model: Model) -> dict:
    """What the model list shows: how it is charged, its routes (how many the gateway may use),
    aliases, and its current customer price, or for a model at cost each route's current cost."""
    routes = upstreams.routes_of(session, model.id)
    price = None if model.at_cost else upstreams.current_price(session, model.id)
    served = [route for route in routes if upstreams.is_served(route)]
    return {
        "id": model.id, "name": model.name, "at_cost": model.at_cost,
        "charging": "at cost" if model.at_cost else "fixed price",
        "served": bool(served), "route_count": len(routes), "served_route_count": len(served),
        "aliases": [alias.name for alias in upstreams.aliases(session, model.id)],
        "price_version": price and price.id, **_money("price", price and pricing.resolve(price)),
        "route_costs": [_route_cost(session, route) for route in routes],
    }


def price_range(summary: dict, field: str) -> tuple[int, int] | None:
    """What a request pays per 1M tokens of the class, from a model_summary: its fixed price (low
    = high), or at cost the lowest and highest current cost of its served routes (of all its
    routes when none is served); None when there is none."""
    if summary["price_nano"] is not None:
        return summary["price_nano"][field], summary["price_nano"][field]
    costs = [route["cost_nano"] for route in summary["route_costs"] if route["cost_nano"]]
    served = [route["cost_nano"] for route in summary["route_costs"] if route["cost_nano"] and route["served"]]
    prices = [cost[field] for cost in served or costs]
    return (min(prices), max(prices)) if prices else None


def _route_cost(session: Session, route: Route) -> dict:
    cost = upstreams.current_cost(session, route.id)
    return {"route": route.id, "provider": route.provider.name, "served": upstreams.is_served(route),
            "cost_version": cost and cost.id, **_money("cost", cost and pricing.resolve(cost))}


def model_detail(session: Session, settings: Settings, model: Model) -> dict:
    """Everything the model's page shows: its summary, limits, its routes in the order tried
    (provider, priority, weight, price source, cost, the customer's price and the margin per
    class, health per gateway node: None when Redis does not answer) and every price version."""
    routes = upstreams.routes_of(session, model.id)
    price = None if model.at_cost else upstreams.current_price(session, model.id)
    try:
        views = route_health.route_views(settings, [route.id for route in routes])
    except redis.RedisError:
        views = None  # the catalogue is still worth showing
    return {
        **model_summary(session, model), "max_output": model.max_output, "max_input": model.max_input,
        "retry_on": upstreams.retry_statuses(model),
        "routes": [_route_item(session, route, price, None if views is None else views[route.id], model.at_cost)
                   for route in routes],
        "price_versions": [price_version_item(version) for version in upstreams.price_versions(session, model.id)],
    }


def _route_item(session: Session, route: Route, price: PriceVersion | None,
                views: list[route_health.NodeView] | None, at_cost: bool) -> dict:
    cost = upstreams.current_cost(session, route.id)
    resolved = cost and pricing.resolve(cost)
    charged = resolved if at_cost else (price and pricing.resolve(price))
    margin = None if cost is None or (price is None and not at_cost) else upstreams.margin(price, cost)
    return {
        "id": route.id, "provider": route.provider.name, "provider_enabled": upstreams.is_served(route),
        "upstream_model": route.upstream_model, "priority": route.priority, "weight": route.weight,
        "price_source_id": route.price_source_id, "cost_version": cost and cost.id, **_money("cost", resolved),
        **_money("price", charged), **_money("margin", margin),
        "health": None if views is None else [_node_item(view) for view in views],
    }


def _node_item(view: route_health.NodeView) -> dict:
    until = view.until_ms if isinstance(view.until_ms, int) else None
    return {"node": view.node, "state": view.state, "until_ms": until,
            "until": None if until is None else utc_timestamp(datetime.fromtimestamp(until / 1000, UTC)),
            "fails": view.fails, "status": view.status}


def publish_live(settings: Settings, publish_change) -> str | None:
    """Run publish_change(session) after a committed change; None once Redis has it, else why
    not (the change is saved; `tollgate publish` makes it live)."""
    try:
        with db.session_scope(settings) as session:
            publish_change(session)
    except (redis.RedisError, ServiceError) as exc:
        return logs.error_summary(exc)
    return None


# Bodies --------------------------------------------------------------------------------------


def _text(body: dict, name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise bad_parameter(name, "a string" + (" (required)" if required else ""))
    return value


def _whole(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad_parameter(name, "an integer")
    return value


def parse_prices(raw, name: str = "prices") -> dict[str, int | None]:
    """{"input": "3.00", "output": 15, …} as nano-USD per 1M tokens per price field (absent or
    null: the class's default); exact, never through a float."""
    if not isinstance(raw, dict):
        raise bad_parameter(name, 'an object of USD per 1M tokens by class, e.g. {"input": "3.00", "output": "15"}')
    unknown = sorted(set(raw) - set(PRICE_FIELDS))
    if unknown:
        raise bad_parameter(f"{name}.{unknown[0]}", f"one of {', '.join(PRICE_FIELDS)}")
    prices = {}
    for field in PRICE_FIELDS:
        value = raw.get(field)
        if value is not None:
            wrong = bad_parameter(f"{name}.{field}", 'USD per 1M tokens as a string such as "2.40" or an exact '
                                                     "number (at most 9 decimals)")
            if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
                raise wrong
            try:
                value = usd_to_nano(value)
            except (ValueError, ArithmeticError):
                raise wrong from None
        prices[field] = value
    return prices


def _catalogue_error(exc: ServiceError) -> ApiError:
    text = str(exc)
    return ApiError("invalid_parameter", detail=text[0].upper() + text[1:] + ("" if text.endswith(".") else "."))


def _require(found, what: str, name):
    if found is None:
        raise ApiError("not_found", detail=f"No {what} named {name!r}.")
    return found


def _answer(item: dict, problem: str | None, status: int = 200):
    """An item after a change, with `live`: whether the gateway has it yet."""
    return {**item, "live": problem is None, **({"not_live": problem} if problem else {})}, status


def _after_change(build):
    """build(session) in a session that sees the change just committed (the request's own read
    session may still hold what it read before)."""
    with closing(db.read_session(context.settings())) as session:
        return build(session)


# Providers -----------------------------------------------------------------------------------

PROVIDER_FIELDS = ("name", "protocol", "base_url", "api_key")


@admin_v1.get("/providers")
def provider_list():
    session, settings = context.session(), context.settings()
    return {"data": [provider_item(session, settings, provider) for provider in upstreams.providers(session)]}


@admin_v1.post("/providers")
def provider_save():
    body = context.json_object('{"name": "openai", "protocol": "openai", "base_url": "https://api.openai.com/v1", '
                 '"api_key": "sk-…"}', PROVIDER_FIELDS)
    name = _text(body, "name", required=True).strip()
    settings = context.settings()
    existing = upstreams.find_provider(context.session(), name)
    protocol = _text(body, "protocol", required=existing is None) or existing.protocol
    base_url = _text(body, "base_url", required=existing is None) or existing.base_url
    try:
        with db.session_scope(settings) as session:
            saved = upstreams.upsert_provider(session, settings, name, protocol, base_url, _text(body, "api_key"))
    except ServiceError as exc:
        raise _catalogue_error(exc) from None
    problem = publish_live(settings, lambda _session: publish.publish_provider(settings, saved))
    item = _after_change(lambda session: provider_item(session, settings, session.get(Provider, saved.id)))
    return _answer(item, problem, 200 if existing else 201)


def _switch(name: str, enabled: bool):
    settings = context.settings()
    _require(upstreams.find_provider(context.session(), name), "provider", name)
    with db.session_scope(settings) as session:
        saved = upstreams.set_provider_enabled(session, name, enabled)
    unserved: list[str] = []
    problem = publish_live(settings, lambda session: unserved.extend(
        publish.publish_provider_change(session, settings, session.get(Provider, saved.id))))
    item = _after_change(lambda session: provider_item(session, settings, session.get(Provider, saved.id)))
    return _answer({**item, "models_not_served": unserved}, problem)


@admin_v1.post("/providers/<path:name>/disable")
def provider_disable(name: str):
    """Its routes leave the models' documents: the gateway stops using them within 1 s."""
    return _switch(name, enabled=False)


@admin_v1.post("/providers/<path:name>/enable")
def provider_enable(name: str):
    return _switch(name, enabled=True)


@admin_v1.post("/providers/<path:name>/test")
def provider_test(name: str):
    """One real call with the provider's key: its status and latency (200 whatever it answered;
    `ok` says whether it was a 2xx)."""
    provider = _require(upstreams.find_provider(context.session(), name), "provider", name)
    return provider_check.check(context.settings(), provider).as_dict()


# Models, routes, aliases, prices -------------------------------------------------------------

MODEL_FIELDS = ("name", "provider", "upstream_model", "prices", "max_output", "max_input", "retry_on",
                "price_source_id")
ROUTE_FIELDS = ("provider", "upstream_model", "prices", "priority", "weight", "price_source_id")
PRICE_REQUEST_FIELDS = ("at_cost", "prices")


def _model(name: str) -> Model:
    return _require(upstreams.find_model(context.session(), name), "model", name)


def _publish_model(settings: Settings, model_id: int) -> str | None:
    return publish_live(settings, lambda session: publish.publish_model(session, settings, session.get(Model, model_id)))


def _detail_answer(model_id: int, problem: str | None, status: int = 200):
    item = _after_change(lambda session: model_detail(session, context.settings(), session.get(Model, model_id)))
    return _answer(item, problem, status)


@admin_v1.get("/models")
def model_list():
    session = context.session()
    return {"data": [model_summary(session, model) for model in upstreams.models(session)]}


@admin_v1.get("/models/<path:name>")
def model_show(name: str):
    return model_detail(context.session(), context.settings(), _model(name))


@admin_v1.post("/models")
def model_add():
    """A model charged at cost with its route to `provider` (or an update of it; see
    upstreams.upsert_model): 201 when it is new."""
    body = context.json_object('{"name": "gpt-4o", "provider": "openai", "prices": {"input": "2.50", "output": "10"}}',
                               MODEL_FIELDS)
    name = _text(body, "name", required=True).strip()
    existed = upstreams.find_model(context.session(), name) is not None
    settings = context.settings()
    try:
        with db.session_scope(settings) as session:
            saved = upstreams.upsert_model(
                session, name, _text(body, "provider", required=True), parse_prices(body.get("prices")),
                _text(body, "upstream_model"), _whole(body, "max_output"), _whole(body, "max_input"),
                _text(body, "retry_on"), _text(body, "price_source_id"))
    except ServiceError as exc:
        raise _catalogue_error(exc) from None
    return _detail_answer(saved.id, _publish_model(settings, saved.id), 200 if existed else 201)


@admin_v1.post("/models/<path:name>/routes")
def route_save(name: str):
    """Add the model's route to (provider, upstream_model), or update it."""
    model = _model(name)
    body = context.json_object('{"provider": "openai", "upstream_model": "gpt-4o", "priority": 1, "weight": 1, '
                 '"prices": {"input": "2.50", "output": "10"}}', ROUTE_FIELDS)
    settings = context.settings()
    try:
        with db.session_scope(settings) as session:
            upstreams.upsert_route(session, model.name, _text(body, "provider", required=True),
                                   parse_prices(body.get("prices")), _text(body, "upstream_model"),
                                   _whole(body, "priority"), _whole(body, "weight"), _text(body, "price_source_id"))
    except ServiceError as exc:
        raise _catalogue_error(exc) from None
    return _detail_answer(model.id, _publish_model(settings, model.id))


@admin_v1.delete("/models/<path:name>/routes/<int:route_id>")
def route_remove(name: str, route_id: int):
    """Never the model's last route (400)."""
    model = _model(name)
    route = context.session().get(Route, route_id)
    if route is None or route.model_id != model.id:
        raise ApiError("not_found", detail=f"Model {model.name} has no route {route_id}.")
    settings = context.settings()
    try:
        with db.session_scope(settings) as session:
            upstreams.remove_route(session, model.name, route_id)
    except ServiceError as exc:
        raise _catalogue_error(exc) from None
    return _detail_answer(model.id, _publish_model(settings, model.id))


@admin_v1.put("/models/<path:name>/price")
def model_price(name: str):
    """`{"at_cost": true}`: each request at its route's cost; `{"prices": {…}}`: a fixed customer
    price (a new price version when it differs from the current one)."""
    model = _model(name)
    body = context.json_object('{"prices": {"input": "3.00", "output": "15"}} or {"at_cost": true}',
                               PRICE_REQUEST_FIELDS)
    if (body.get("at_cost") is True) == ("prices" in body) or body.get("at_cost") not in (None, True):
        raise ApiError("invalid_request", detail='Give either "at_cost": true or the model\'s "prices".')
    prices = None if body.get("at_cost") else parse_prices(body["prices"])
    settings = context.settings()
    try:
        with db.session_scope(settings) as session:
            upstreams.set_price(session, model.name, prices)
    except ServiceError as exc:
        raise _catalogue_error(exc) from None
    return _detail_answer(model.id, _publish_model(settings, model.id))


@admin_v1.post("/aliases")
def alias_add():
    """Let customers call `model` as `alias` too (an alias that exists is pointed at it)."""
    body = context.json_object('{"alias": "gpt-latest", "model": "gpt-4o"}', ("alias", "model"))
    alias, model_name = _text(body, "alias", required=True).strip(), _text(body, "model", required=True)
    model = _model(model_name)
    settings = context.settings()
    try:
        with db.session_scope(settings) as session:
            upstreams.add_alias(session, alias, model.name)
    except ServiceError as exc:
        raise _catalogue_error(exc) from None
    problem = _publish_model(settings, model.id)
    return _answer({"alias": alias, "model": model.name}, problem, 201)


@admin_v1.delete("/aliases/<path:name>")
def alias_remove(name: str):
    alias = _require(upstreams.find_alias(context.session(), name), "alias", name)
    model_name = alias.model.name
    settings = context.settings()
    with db.session_scope(settings) as session:
        upstreams.remove_alias(session, name)
    problem = publish_live(settings, lambda _session: publish.unpublish_alias(settings, name))
    return _answer({"alias": name, "model": model_name, "removed": True}, problem)
