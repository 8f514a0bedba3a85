"""Upstream providers, the models customers call, the routes that serve them, their aliases,
and the price history of both: a fixed-price model's customer prices and each route's costs."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import crypto
from ..errors import ServiceError
from ..models import PROTOCOLS, RETRY_STATUSES, Alias, Model, PriceVersion, Provider, Route, utcnow
from ..money import MAX_PRICE_NANO, MAX_TOKENS, format_usd
from ..settings import Settings
from ..usage_classes import PRICE_FIELDS, REQUIRED_PRICES
from . import pricing

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")
DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_MAX_OUTPUT = 16384
DEFAULT_MAX_INPUT = 200_000
KEY_HINT_CHARS = 4  # a saved provider key shows only its last four characters
MAX_ROUTE_WEIGHT = 1000  # a route's weight is from 1 to this, its priority from 0 to this


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str


def parse_base_url(base_url: str) -> Endpoint:
    """'https://api.openai.com/v1' -> https, api.openai.com, 443, '/v1'."""
    try:
        parts = urlsplit(base_url.strip())
        port = parts.port
    except ValueError as exc:
        raise ServiceError(f"not a base URL: {base_url!r} ({exc})") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ServiceError(f"a base URL needs http:// or https:// and a host, got {base_url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ServiceError(f"a base URL has no query, fragment or credentials, got {base_url!r}")
    return Endpoint(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.path.rstrip("/"))


def _check_name(kind: str, name: str) -> None:
    if not NAME.fullmatch(name):
        raise ServiceError(f"a {kind} name is 1-100 letters, digits and ._:/@+- (got {name!r})")


def find_provider(session: Session, name: str) -> Provider | None:
    return session.scalar(select(Provider).where(Provider.name == name))


def upsert_provider(
    session: Session, settings: Settings, name: str, protocol: str, base_url: str, api_key: str | None
) -> Provider:
    """Add the provider, or update the one with this name. api_key None keeps an existing
    provider's key (the admin console's edit form left blank); it is stored encrypted only."""
    _check_name("provider", name)
    if protocol not in PROTOCOLS:
        raise ServiceError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    parse_base_url(base_url)
    provider = find_provider(session, name)
    if api_key is not None:
        api_key = api_key.strip()
        if not api_key:
            raise ServiceError("the provider's API key is empty")
    elif provider is None:
        raise ServiceError(f"a new provider needs its API key ({name!r} has none yet)")
    if provider is None:
        provider = Provider(name=name)
        session.add(provider)
    provider.protocol = protocol
    provider.base_url = base_url.strip().rstrip("/")
    if api_key is not None and _stored_api_key(settings, provider) != api_key:
        provider.api_key_encrypted = crypto.encrypt(settings, api_key)
    session.flush()
    return provider


def _stored_api_key(settings: Settings, provider: Provider) -> str | None:
    """The provider's current key, or None if there is none or it was sealed with a lost secret."""
    if provider.api_key_encrypted is None:
        return None
    try:
        return crypto.decrypt(settings, provider.api_key_encrypted)
    except crypto.SecretError:
        return None


def require_provider(session: Session, name: str) -> Provider:
    provider = find_provider(session, name)
    if provider is None:
        raise ServiceError(f"no provider named {name!r} (add it with `tollgate provider add`)")
    return provider


def providers(session: Session) -> list[Provider]:
    return list(session.scalars(select(Provider).order_by(Provider.name)))


def key_hint(settings: Settings, provider: Provider) -> str:
    """All that is ever shown of a provider's key once saved: "…" and its last KEY_HINT_CHARS
    characters, only when they are at most a third of it (a short key shows "…" alone)."""
    key = _stored_api_key(settings, provider)
    if key is None:
        return "(unreadable: saved with another installation secret; enter the key again)"
    return "…" + (key[-KEY_HINT_CHARS:] if len(key) >= 3 * KEY_HINT_CHARS else "")


def set_provider_enabled(session: Session, name: str, enabled: bool) -> Provider:
    """Enable the provider, or disable it: the models' documents leave its routes out (see
    hot/publish.py model_document), until it is enabled again. Its routes and key stay."""
    provider = require_provider(session, name)
    if enabled:
        provider.disabled_at = None
    elif provider.disabled_at is None:
        provider.disabled_at = utcnow()
    session.flush()
    return provider


def routes_via(session: Session, provider_id: int) -> list[Route]:
    """The routes to the provider, by model name and then in the order each model tries them."""
    return list(session.scalars(
        select(Route).join(Model, Route.model_id == Model.id).where(Route.provider_id == provider_id)
        .order_by(Model.name, Route.priority, Route.id)))


# Prices -------------------------------------------------------------------------------------


def current_price(session: Session, model_id: int) -> PriceVersion | None:
    """The model's current customer price (what a fixed-price model charges)."""
    return session.scalar(
        select(PriceVersion)
        .where(PriceVersion.model_id == model_id, PriceVersion.route_id.is_(None))
        .order_by(PriceVersion.id.desc())
        .limit(1)
    )


def current_cost(session: Session, route_id: int) -> PriceVersion | None:
    """The route's current cost version: what its provider charges."""
    return session.scalar(
        select(PriceVersion).where(PriceVersion.route_id == route_id).order_by(PriceVersion.id.desc()).limit(1)
    )


def price_versions(session: Session, model_id: int) -> list[PriceVersion]:
    """Every price version of the model, newest first: its customer prices (route_id None) and
    the cost versions of its routes, removed routes' included."""
    return list(session.scalars(
        select(PriceVersion).where(PriceVersion.model_id == model_id).order_by(PriceVersion.id.desc())))


def margin(customer_price: PriceVersion | None, cost: PriceVersion) -> dict[str, int]:
    """Per price field, what a request served at `cost` earns per 1M tokens: the customer price
    (a fixed-price model's current version) minus the cost, negative for a loss; 0 for a model
    charged at cost (customer_price None), which charges each request its route's cost."""
    if customer_price is None:
        return {field: 0 for field in PRICE_FIELDS}
    prices, costs = pricing.resolve(customer_price), pricing.resolve(cost)
    return {field: prices[field] - costs[field] for field in PRICE_FIELDS}


def _check_prices(prices: dict[str, int | None]) -> None:
    unknown = prices.keys() - set(PRICE_FIELDS)
    if unknown:
        raise ValueError(f"unknown price fields: {', '.join(sorted(unknown))}")
    for required in REQUIRED_PRICES:
        if prices.get(required) is None:
            raise ServiceError(f"a price or cost needs its {required} price")
    for field, price in prices.items():
        if price is not None and not 0 <= price <= MAX_PRICE_NANO:
            raise ServiceError(f"the {field} price must be from $0 to {format_usd(MAX_PRICE_NANO)} per 1M tokens")


def _new_version_if_changed(session: Session, current: PriceVersion | None, model_id: int, route_id: int | None,
                            prices: dict[str, int | None]) -> PriceVersion:
    """`current`, or a new version of these prices when they differ from it."""
    if current is not None and all(getattr(current, field) == prices.get(field) for field in PRICE_FIELDS):
        return current
    version = PriceVersion(model_id=model_id, route_id=route_id, **{field: prices.get(field) for field in PRICE_FIELDS})
    session.add(version)
    session.flush()
    return version


def set_price(session: Session, model_name: str, prices: dict[str, int | None] | None) -> Model:
    """Charge the model at the serving route's cost (prices None), or at these fixed customer
    prices (a new customer price version when they differ from the current one)."""
    model = require_model(session, model_name)
    if prices is not None:
        _check_prices(prices)
        _new_version_if_changed(session, current_price(session, model.id), model.id, None, prices)
    model.at_cost = prices is None
    session.flush()
    return model


# Models -------------------------------------------------------------------------------------


def models(session: Session) -> list[Model]:
    return list(session.scalars(select(Model).order_by(Model.name)))


def find_model(session: Session, name: str) -> Model | None:
    return session.scalar(select(Model).where(Model.name == name))


def require_model(session: Session, name: str) -> Model:
    model = find_model(session, name)
    if model is None:
        raise ServiceError(f"no model named {name!r} (add it with `tollgate model add`)")
    return model


def parse_retry_on(statuses: str) -> str:
    """'503, 429' -> '429,503': the statuses a model's request is retried on with its next route,
    each one of RETRY_STATUSES ('' for none)."""
    allowed = ", ".join(map(str, RETRY_STATUSES))
    parsed = set()
    for status in filter(None, (part.strip() for part in statuses.split(","))):
        if not status.isdigit() or int(status) not in RETRY_STATUSES:
            raise ServiceError(f"a model is retried only on statuses among {allowed} (got {status!r})")
        parsed.add(int(status))
    return ",".join(map(str, sorted(parsed)))


def retry_statuses(model: Model) -> list[int]:
    return [int(status) for status in model.retry_on.split(",") if status]


def upsert_model(
    session: Session,
    name: str,
    provider_name: str,
    prices: dict[str, int | None],
    upstream_model: str | None = None,
    max_output: int | None = None,
    max_input: int | None = None,
    retry_on: str | None = None,
    price_source_id: str | None = None,
) -> Model:
    """Create or update a model charged at cost, served by a route to the provider whose cost is
    `prices` (nano-USD per 1M tokens by price field; input and output are required, the rest may
    be None: the defaults of docs/internals.md). A new cost version is added only when they
    differ from the route's current one. The route is the model's route to (provider,
    upstream_model), added if the model has none; upstream_model None means the model's one
    route to the provider, or else the model's own name. max_output, max_input (the context
    window) and retry_on of None keep the current value (a new model: 16384, 200,000, every
    retry status). A fixed-price model becomes charged at cost again. price_source_id: the
    route's entry in a price list (`set_price_source`)."""
    _check_name("model", name)
    provider = require_provider(session, provider_name)
    _check_prices(prices)
    for what, tokens in (("max output", max_output), ("max input", max_input)):
        if tokens is not None and not 1 <= tokens <= MAX_TOKENS:
            raise ServiceError(f"{what} must be from 1 to {MAX_TOKENS:,} tokens")
    model = find_model(session, name)
    if model is None:
        _check_not_alias(session, name)
        model = Model(name=name, max_output=DEFAULT_MAX_OUTPUT, max_input=DEFAULT_MAX_INPUT)
        session.add(model)
    model.at_cost = True
    model.max_output = max_output or model.max_output
    model.max_input = max_input or model.max_input
    if retry_on is not None:
        model.retry_on = parse_retry_on(retry_on)
    session.flush()
    route = route_to(session, model, provider, upstream_model)
    _save_route(session, model, provider, route.upstream_model if route else upstream_model or name, prices,
                price_source_id=price_source_id)
    return model


def set_price_source(route: Route, price_source_id: str | None) -> None:
    """The id of the route's entry in a price list (`tollgate prices sync` matches it); "" clears
    it, None keeps it."""
    if price_source_id is None:
        return
    longest = Route.__table__.c.price_source_id.type.length
    if len(price_source_id) > longest or not price_source_id.isprintable():
        raise ServiceError(f"a price source id is at most {longest} printable characters")
    route.price_source_id = price_source_id.strip() or None


def route_to(session: Session, model: Model, provider: Provider, upstream_model: str | None) -> Route | None:
    """The model's route to (provider, upstream_model), or with upstream_model None its one route to
    the provider; None if it has none."""
    if upstream_model is not None:
        return find_route(session, model.id, provider.id, upstream_model)
    to_provider = [route for route in routes_of(session, model.id) if route.provider_id == provider.id]
    if len(to_provider) > 1:
        raise ServiceError(f"model {model.name} has {len(to_provider)} routes to {provider.name}; "
                           "name the upstream model of the one you mean")
    return to_provider[0] if to_provider else None


# Routes -------------------------------------------------------------------------------------


def routes_of(session: Session, model_id: int) -> list[Route]:
    """The model's routes in the order they are tried: priority, then age."""
    return list(session.scalars(select(Route).where(Route.model_id == model_id).order_by(Route.priority, Route.id)))


def is_served(route: Route) -> bool:
    """Whether the gateway may use the route: its provider is not disabled."""
    return route.provider.disabled_at is None


def find_route(session: Session, model_id: int, provider_id: int, upstream_model: str) -> Route | None:
    return session.scalar(select(Route).where(Route.model_id == model_id, Route.provider_id == provider_id,
                                              Route.upstream_model == upstream_model))


def upsert_route(
    session: Session,
    model_name: str,
    provider_name: str,
    prices: dict[str, int | None],
    upstream_model: str | None = None,
    priority: int | None = None,
    weight: int | None = None,
    price_source_id: str | None = None,
) -> Route:
    """Add the model's route to (provider, upstream_model: the model's name when None) or update
    it: its cost `prices` (a new cost version when they change), priority, weight and price
    source id (None keeps them; a new route: 0, 1 and none)."""
    model = require_model(session, model_name)
    provider = require_provider(session, provider_name)
    _check_prices(prices)
    if priority is not None and not 0 <= priority <= MAX_ROUTE_WEIGHT:
        raise ServiceError(f"a route's priority is from 0 to {MAX_ROUTE_WEIGHT}")
    if weight is not None and not 1 <= weight <= MAX_ROUTE_WEIGHT:
        raise ServiceError(f"a route's weight is from 1 to {MAX_ROUTE_WEIGHT}")
    return _save_route(session, model, provider, upstream_model or model.name, prices, priority, weight,
                       price_source_id)


def _save_route(session: Session, model: Model, provider: Provider, upstream_model: str,
                prices: dict[str, int | None], priority: int | None = None, weight: int | None = None,
                price_source_id: str | None = None) -> Route:
    """The model's route to (provider, upstream_model), added if it has none, at cost `prices`,
    with this priority, weight and price source id (None keeps them). A new route is flushed
    once, whole: its audit row shows what it was made with."""
    longest = Route.__table__.c.upstream_model.type.length
    if not 1 <= len(upstream_model) <= longest or not upstream_model.isprintable():
        raise ServiceError(f"an upstream model name is 1 to {longest} printable characters (got {upstream_model!r})")
    route = find_route(session, model.id, provider.id, upstream_model)
    if route is None:
        protocols = {route.provider.protocol for route in routes_of(session, model.id)} - {provider.protocol}
        if protocols:
            raise ServiceError(f"model {model.name} is served over {protocols.pop()}; provider {provider.name} "
                               f"speaks {provider.protocol}")
        route = Route(model_id=model.id, provider_id=provider.id, upstream_model=upstream_model, priority=0, weight=1)
        session.add(route)
    if priority is not None:
        route.priority = priority
    route.weight = weight or route.weight
    set_price_source(route, price_source_id)
    session.flush()
    _new_version_if_changed(session, current_cost(session, route.id), model.id, route.id, prices)
    return route


def remove_route(session: Session, model_name: str, route_id: int) -> Route:
    """Remove one of the model's routes (never its last: a model needs one). Its cost versions
    stay: usage rows and records not yet drained name them."""
    model = require_model(session, model_name)
    route = session.get(Route, route_id)
    if route is None or route.model_id != model.id:
        raise ServiceError(f"model {model_name} has no route {route_id} (see `tollgate route list {model_name}`)")
    if len(routes_of(session, model.id)) == 1:
        raise ServiceError(f"route {route_id} is the only route of model {model_name}; add another first")
    session.delete(route)
    session.flush()
    return route


# Aliases ------------------------------------------------------------------------------------


def find_alias(session: Session, name: str) -> Alias | None:
    return session.scalar(select(Alias).where(Alias.name == name))


def _check_not_alias(session: Session, name: str) -> None:
    alias = find_alias(session, name)
    if alias is not None:
        raise ServiceError(f"{name!r} is an alias of model {alias.model.name}; a model needs a name no alias has")


def add_alias(session: Session, name: str, model_name: str) -> Alias:
    """Let customers call the model by another name as well; an alias that exists is pointed at
    the model."""
    _check_name("alias", name)
    if find_model(session, name) is not None:
        raise ServiceError(f"{name!r} is a model's name; an alias needs a name no model has")
    model = require_model(session, model_name)
    alias = find_alias(session, name)
    if alias is None:
        alias = Alias(name=name)
        session.add(alias)
    alias.model = model
    session.flush()
    return alias


def remove_alias(session: Session, name: str) -> Alias:
    alias = find_alias(session, name)
    if alias is None:
        raise ServiceError(f"no alias named {name!r}")
    session.delete(alias)
    session.flush()
    return alias


def aliases(session: Session, model_id: int | None = None) -> list[Alias]:
    """Every alias (of one model when model_id is given), by name."""
    statement = select(Alias).order_by(Alias.name)
    if model_id is not None:
        statement = statement.where(Alias.model_id == model_id)
    return list(session.scalars(statement))
