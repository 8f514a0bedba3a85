"""Upstream providers and the models customers call, with their price history."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import crypto
from ..errors import ServiceError
from ..models import PROTOCOLS, Model, PriceVersion, Provider
from ..money import MAX_PRICE_NANO, MAX_TOKENS, format_usd
from ..settings import Settings
from ..usage_classes import PRICE_FIELDS, REQUIRED_PRICES

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}")
DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_MAX_OUTPUT = 16384
DEFAULT_MAX_INPUT = 200_000


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
    session: Session, settings: Settings, name: str, protocol: str, base_url: str, api_key: str
) -> Provider:
    _check_name("provider", name)
    if protocol not in PROTOCOLS:
        raise ServiceError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    parse_base_url(base_url)
    api_key = api_key.strip()
    if not api_key:
        raise ServiceError("the provider's API key is empty")
    provider = find_provider(session, name)
    if provider is None:
        provider = Provider(name=name)
        session.add(provider)
    provider.protocol = protocol
    provider.base_url = base_url.strip().rstrip("/")
    if _stored_api_key(settings, provider) != api_key:
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


def current_price(session: Session, model_id: int) -> PriceVersion | None:
    return session.scalar(
        select(PriceVersion).where(PriceVersion.model_id == model_id).order_by(PriceVersion.id.desc()).limit(1)
    )


def upsert_model(
    session: Session,
    name: str,
    provider_name: str,
    prices: dict[str, int | None],
    upstream_model: str | None = None,
    max_output: int | None = None,
    max_input: int | None = None,
) -> Model:
    """Create or update a model. `prices` are nano-USD per 1M tokens by price field; input and
    output are required, the rest may be None (defaults of docs/internals.md). A new price
    version is added only when the prices differ from the current one. upstream_model,
    max_output and max_input (the context window) of None keep the current value (a new model:
    its own name, 16384, 200,000)."""
    _check_name("model", name)
    provider = find_provider(session, provider_name)
    if provider is None:
        raise ServiceError(f"no provider named {provider_name!r} (add it with `tollgate provider add`)")
    _check_prices(prices)
    for what, tokens in (("max output", max_output), ("max input", max_input)):
        if tokens is not None and not 1 <= tokens <= MAX_TOKENS:
            raise ServiceError(f"{what} must be from 1 to {MAX_TOKENS:,} tokens")
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None:
        model = Model(name=name, upstream_model=name, max_output=DEFAULT_MAX_OUTPUT, max_input=DEFAULT_MAX_INPUT)
        session.add(model)
    model.provider_id = provider.id
    model.upstream_model = upstream_model or model.upstream_model
    model.max_output = max_output or model.max_output
    model.max_input = max_input or model.max_input
    session.flush()
    current = current_price(session, model.id)
    if current is None or any(getattr(current, field) != prices.get(field) for field in PRICE_FIELDS):
        session.add(PriceVersion(model_id=model.id, **{field: prices.get(field) for field in PRICE_FIELDS}))
        session.flush()
    return model


def _check_prices(prices: dict[str, int | None]) -> None:
    unknown = prices.keys() - set(PRICE_FIELDS)
    if unknown:
        raise ValueError(f"unknown price fields: {', '.join(sorted(unknown))}")
    for required in REQUIRED_PRICES:
        if prices.get(required) is None:
            raise ServiceError(f"a model needs an {required} price")
    for field, price in prices.items():
        if price is not None and not 0 <= price <= MAX_PRICE_NANO:
            raise ServiceError(f"the {field} price must be from $0 to {format_usd(MAX_PRICE_NANO)} per 1M tokens")
