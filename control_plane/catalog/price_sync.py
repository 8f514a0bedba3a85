"""Routes' costs kept in step with a machine-readable price list: LiteLLM's
model_prices_and_context_window.json or OpenRouter's GET /api/v1/models.

A route takes part when it names its entry in the list (Route.price_source_id). A sync reads the
list (decimal arithmetic throughout: USD per token × 10^15 is nano-USD per 1M tokens), compares
each named entry with the route's current cost version and, with `apply`, makes the changes new
cost versions (their source "sync <list>", so the audit log shows where they came from) — except
a change that trips a guardrail: a price rising more than settings.price_sync_max_rise_percent,
becoming $0, or a class the route prices losing its price. Such a change is held (a PriceHold,
one pending per route) for an admin to approve or reject. A list that cannot be loaded or read
changes nothing. New models are added only when asked (`add_new`); nothing is ever deleted.

Who made a change is the audit actor of the caller (the CLI's user, the admin, `system` for
`tollgate up`'s periodic sync); the versions' source comes from the actor's channel (audit.py),
so the sync acts through the channel "sync <list>".
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path

import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .. import audit, db, logs
from ..errors import ServiceError
from ..hot import publish
from ..models import Model, PriceHold, PriceVersion, Route, utc_timestamp, utcnow
from ..money import MAX_PRICE_NANO, MAX_TOKENS, format_usd, nano_to_decimal
from ..settings import Settings
from ..usage_classes import PRICE_FIELDS, REQUIRED_PRICES, USAGE_CLASSES
from . import pricing, upstreams

log = logging.getLogger(__name__)

FORMATS = ("litellm", "openrouter")
TIMEOUT_SECONDS = 30  # for each read of the answer, and for the whole download
MAX_BYTES = 32 * 1024 * 1024  # LiteLLM's list is about 1.5 MB, OpenRouter's about 1 MB
SCALE = 15  # USD per token → nano-USD (10^9) per 1M tokens (10^6)
LONGEST_SOURCE = 400  # of the list's name as stored; the columns hold 500 with "sync … (approved by …)"

# Each format's fields, USD per token, by our price field.
LITELLM_FIELDS = {
    "input": "input_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
    "output": "output_cost_per_token",
    "reasoning": "output_cost_per_reasoning_token",
}
OPENROUTER_FIELDS = {
    "input": "prompt",
    "cached_input": "input_cache_read",
    "cache_write": "input_cache_write",
    "output": "completion",
    "reasoning": "internal_reasoning",
}
LITELLM_SPEC = "sample_spec"  # LiteLLM's description of its fields, not a model
OPENROUTER_VARIABLE = Decimal(-1)  # OpenRouter's price of a router entry whose price depends on the model it picks

FALLBACK = {usage.price: usage.default for usage in USAGE_CLASSES}


class SourceError(ServiceError):
    """The price list could not be loaded or read: nothing changes."""


class HoldNotFound(ServiceError):
    pass


# Reading a price list -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One model of the list: its price of every class (nano-USD per 1M tokens, None where the
    list gives none) and, when the list says, its context window and most output tokens."""

    id: str
    prices: dict[str, int | None]
    max_input: int | None = None
    max_output: int | None = None
    notes: tuple[str, ...] = ()  # values rounded to 1 nano-USD per 1M tokens

    @property
    def free(self) -> bool:
        """Priced $0 for every class: how lists show a model not priced per token (LiteLLM's
        per-query and per-image entries, OpenRouter's free variants)."""
        return not any(self.prices.values())


@dataclass(frozen=True)
class PriceList:
    source: str
    format: str
    entries: dict[str, Entry]
    unusable: dict[str, str]  # entry id → why it gives no price (a bad value, no input price, …)


def read_price_list(source: str, fmt: str) -> PriceList:
    return parse(load(source), fmt, source)


def load(source: str) -> bytes:
    """The list's bytes from an http(s) URL or a file, at most MAX_BYTES."""
    source = source.strip()
    if source.startswith(("http://", "https://")):
        return _download(source)
    if "://" in source:
        raise SourceError(f"a price list is an http(s) URL or a file path, not {source!r}")
    path = Path(source).expanduser()
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SourceError(f"{source} is larger than {MAX_BYTES:,} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {source}: {exc.strerror or exc}") from None


def _download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "tollgate-price-sync"})
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            body = bytearray()
            while chunk := answer.read(65536):
                body += chunk
                if len(body) > MAX_BYTES:
                    raise SourceError(f"{url} answered more than {MAX_BYTES:,} bytes")
                if time.monotonic() > deadline:
                    raise SourceError(f"{url} did not answer within {TIMEOUT_SECONDS} s")
            return bytes(body)
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise SourceError(f"{url} could not be reached: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # a timeout, a reset, an invalid URL
        raise SourceError(f"{url} could not be read: {logs.error_summary(exc)}") from None


def parse(raw: bytes, fmt: str, source: str = "the price list") -> PriceList:
    """The list's entries. Numbers are read as Decimals (never floats); a document that is not
    JSON, or not in the format's shape, is a SourceError."""
    if fmt not in FORMATS:
        raise ServiceError(f"a price list's format is one of {', '.join(FORMATS)}, not {fmt!r}")
    try:
        document = json.loads(raw, parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SourceError(f"{source} is not JSON: {exc}") from None
    items = _litellm_items(document, source) if fmt == "litellm" else _openrouter_items(document, source)
    entries, unusable = {}, {}
    for entry_id, values, limits in items:
        try:
            entries[entry_id] = _entry(entry_id, values, limits, fmt)
        except ValueError as exc:
            unusable[entry_id] = str(exc)
    if not entries and not unusable:
        raise SourceError(f"{source} has no model entries: is it {fmt}'s format?")
    return PriceList(source, fmt, entries, unusable)


def _litellm_items(document, source: str):
    """(id, {price field: value}, (max input, max output)) of each entry of LiteLLM's object."""
    if not isinstance(document, dict):
        raise SourceError(f"{source} is not LiteLLM's price list: that is a JSON object keyed by model id")
    for entry_id, spec in document.items():
        if entry_id == LITELLM_SPEC or not isinstance(spec, dict):
            continue
        values = {ours: spec.get(theirs) for ours, theirs in LITELLM_FIELDS.items()}
        yield entry_id, values, (spec.get("max_input_tokens"), spec.get("max_output_tokens"))


def _openrouter_items(document, source: str):
    """The same of each model of OpenRouter's {"data": [{"id", "pricing", …}]}."""
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise SourceError(f'{source} is not OpenRouter\'s model list: that is a JSON object with a "data" array')
    for model in data:
        if not isinstance(model, dict) or not isinstance(model.get("id"), str) or not isinstance(
                model.get("pricing"), dict):
            continue
        pricing = model["pricing"]
        values = {ours: pricing.get(theirs) for ours, theirs in OPENROUTER_FIELDS.items()}
        top = model.get("top_provider") if isinstance(model.get("top_provider"), dict) else {}
        yield model["id"], values, (model.get("context_length"), top.get("max_completion_tokens"))


def _entry(entry_id: str, values: dict, limits: tuple, fmt: str) -> Entry:
    """The entry's prices in nano-USD per 1M tokens; ValueError when it gives none we can use."""
    if fmt == "openrouter" and any(_is_variable(value) for value in values.values()):
        raise ValueError("its price varies with the model the router picks (-1)")
    prices, notes = {}, []
    for price_field in PRICE_FIELDS:
        value = values.get(price_field)
        if value is None:
            prices[price_field] = None
            continue
        name = (LITELLM_FIELDS if fmt == "litellm" else OPENROUTER_FIELDS)[price_field]
        try:
            prices[price_field], rounded = usd_per_token_to_nano(value)
        except ValueError as exc:
            raise ValueError(f"{name} {exc}") from None
        if rounded:
            notes.append(f"{name} {value} rounded to {format_usd(prices[price_field])} per 1M tokens")
    if fmt == "openrouter":
        _unpriced_zeros(prices)
    for required in REQUIRED_PRICES:
        if prices[required] is None:
            raise ValueError(f"it has no {required} price")
    return Entry(entry_id, prices, _tokens(limits[0]), _tokens(limits[1]), tuple(notes))


def _unpriced_zeros(prices: dict[str, int | None]) -> None:
    """OpenRouter lists "0" for a class it does not price apart (reasoning billed as output,
    no cache on the model): such a class is priced as its fallback, not at $0."""
    for usage in USAGE_CLASSES:
        fallback = usage.default and prices[usage.default]
        if prices[usage.price] == 0 and fallback:
            prices[usage.price] = None


def _is_variable(value) -> bool:
    number = _number(value)
    return number is not None and number.is_finite() and number == OPENROUTER_VARIABLE


def _number(value) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def usd_per_token_to_nano(value) -> tuple[int, bool]:
    """USD per token (a JSON number read as a Decimal, or decimal text) → (nano-USD per 1M tokens,
    whether it had to be rounded, half-even, to a whole nano-USD). ValueError: not a usable price."""
    number = _number(value)
    if number is None:
        raise ValueError(f"is not a number ({value!r})")
    if not number.is_finite():
        raise ValueError(f"is not a finite number ({value})")
    if number < 0:
        raise ValueError(f"is negative ({value})")
    sign, digits, exponent = number.as_tuple()
    exact = Decimal((sign, digits, exponent + SCALE))  # × 10^15, exactly, whatever the precision
    if exact > MAX_PRICE_NANO:
        raise ValueError(f"({value}) is above the most a price may be, {format_usd(MAX_PRICE_NANO)} per 1M tokens")
    nano = exact.to_integral_value(rounding=ROUND_HALF_EVEN)
    return int(nano), nano != exact


def _tokens(value) -> int | None:
    """A token limit the list gives, when it is a whole number we can take."""
    if isinstance(value, Decimal) and value == value.to_integral_value() and 1 <= value <= MAX_TOKENS:
        return int(value)
    return None


# Comparing ------------------------------------------------------------------------------------


def resolved(prices: dict[str, int | None]) -> dict[str, int]:
    """Every class's price as charged: an unset one at its fallback's (by catalog/pricing.py, of a
    version never saved)."""
    return pricing.resolve(PriceVersion(**prices))


def prices_of(version: PriceVersion | None) -> dict[str, int | None]:
    return {price_field: None if version is None else getattr(version, price_field) for price_field in PRICE_FIELDS}


@dataclass(frozen=True)
class ClassChange:
    """One class's price now and as proposed: as stored (None: its fallback's) and as charged."""

    field: str
    current: int | None
    proposed: int | None
    current_charged: int
    proposed_charged: int

    @property
    def percent(self) -> Decimal | None:
        """The change of the charged price in percent (one decimal); None from $0."""
        if self.current_charged == 0:
            return None
        change = Decimal(self.proposed_charged - self.current_charged) * 100 / self.current_charged
        return change.quantize(Decimal("0.1"))

    def percent_text(self) -> str:
        if self.current_charged == self.proposed_charged:
            return "±0%"
        if self.percent is None:
            return "from $0"
        text = format(self.percent.normalize() if self.percent == self.percent.to_integral_value() else self.percent,
                      "f")
        return f"{'+' if self.percent > 0 else ''}{text}%"

    def as_dict(self) -> dict:
        return {"field": self.field, **_money("current", self.current), **_money("proposed", self.proposed),
                **_money("current_charged", self.current_charged), **_money("proposed_charged", self.proposed_charged),
                "change_percent": self.percent}


def _money(name: str, nano: int | None) -> dict:
    return {name: None if nano is None else nano_to_decimal(nano), f"{name}_nano": nano}


def all_classes(current: dict[str, int | None], proposed: dict[str, int | None]) -> list[ClassChange]:
    """Every class now and as proposed, in table order (the console shows a held change whole)."""
    now, then = resolved(current), resolved(proposed)
    return [ClassChange(price_field, current[price_field], proposed[price_field], now[price_field], then[price_field])
            for price_field in PRICE_FIELDS]


def class_changes(current: dict[str, int | None], proposed: dict[str, int | None]) -> list[ClassChange]:
    """The classes whose own price changes (one without its own price before and after follows
    its fallback, which is listed if it changes)."""
    return [change for change in all_classes(current, proposed) if change.current != change.proposed]


def guardrails(changes: list[ClassChange], max_rise_percent: int) -> list[str]:
    """Why the change must wait for an admin: each class that would lose its price, become $0,
    or rise by more than max_rise_percent (a rise from $0 is more than any)."""
    reasons = []
    for change in changes:
        if change.current is not None and change.proposed is None:
            reasons.append(f"{change.field} loses its price ({format_usd(change.current)})")
        elif change.proposed_charged == 0 and change.current_charged > 0:
            reasons.append(f"{change.field} becomes $0 (from {format_usd(change.current_charged)})")
        elif change.proposed_charged > change.current_charged and (
                (change.proposed_charged - change.current_charged) * 100 > change.current_charged * max_rise_percent):
            reasons.append(f"{change.field} rises {change.percent_text()} (more than {max_rise_percent}%)")
    return reasons


# Syncing --------------------------------------------------------------------------------------

# A route's outcome: its cost as the list has it already; changed (a new cost version); held for an
# admin; held already (the same change waits); its entry not in the list; its entry unusable.
ROUTE_STATUSES = ("unchanged", "changed", "held", "already_held", "missing", "unusable")


@dataclass
class RouteSync:
    route_id: int
    model: str
    provider: str
    upstream_model: str
    price_source_id: str
    status: str = "unchanged"
    current_version_id: int | None = None
    proposed: dict[str, int | None] | None = None
    changes: list[ClassChange] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # the guardrails it tripped
    notes: list[str] = field(default_factory=list)  # rounded values, why its entry is unusable
    hold_id: int | None = None
    cost_version_id: int | None = None  # the new cost version, once applied
    model_id: int = 0

    def as_dict(self) -> dict:
        return {"route_id": self.route_id, "model": self.model, "provider": self.provider,
                "upstream_model": self.upstream_model, "price_source_id": self.price_source_id,
                "status": self.status, "current_version_id": self.current_version_id,
                "cost_version_id": self.cost_version_id, "hold_id": self.hold_id, "reasons": self.reasons,
                "notes": self.notes, "classes": [change.as_dict() for change in self.changes]}


@dataclass
class NewModel:
    entry: Entry
    added: bool = False  # with apply: added; without: would be
    reason: str = ""  # why not
    cost_version_id: int | None = None
    model_id: int = 0

    def as_dict(self) -> dict:
        prices = self.entry.prices
        return {"model": self.entry.id, "added": self.added, "reason": self.reason, "notes": list(self.entry.notes),
                "cost_version_id": self.cost_version_id,
                "prices": {name: None if nano is None else nano_to_decimal(nano) for name, nano in prices.items()},
                "prices_nano": prices, "max_input": self.entry.max_input,
                "max_output": self.entry.max_output}


@dataclass
class SyncReport:
    source: str
    format: str
    applied: bool
    entries: int
    unusable: int
    routes: list[RouteSync] = field(default_factory=list)
    new_models: list[NewModel] = field(default_factory=list)
    provider: str | None = None
    publish_error: str | None = None  # committed, but Redis did not take it

    @property
    def changed_model_ids(self) -> list[int]:
        changed = {route.model_id for route in self.routes if route.status == "changed"}
        changed |= {new.model_id for new in self.new_models if new.added}
        return sorted(changed - {0})

    def counts(self) -> dict[str, int]:
        counts = {status: sum(route.status == status for route in self.routes) for status in ROUTE_STATUSES}
        counts["models_added"] = sum(new.added for new in self.new_models)
        return counts

    def summary(self) -> str:
        """One line: 'price sync from URL (litellm): 2 changed, 1 held, 0 held already, 5 unchanged, …'."""
        counts = self.counts()
        changed, held = ("changed", "held") if self.applied else ("to change", "to hold")
        parts = [f"{counts['changed']} {changed}", f"{counts['held']} {held}", f"{counts['already_held']} held already",
                 f"{counts['unchanged']} unchanged", f"{counts['missing']} not in the list",
                 f"{counts['unusable']} without a usable price"]
        if self.new_models:
            parts.append(f"{counts['models_added']} models {'added' if self.applied else 'to add'}")
        mode = "" if self.applied else ", dry run: nothing changed"
        return f"price sync from {self.source} ({self.format}{mode}): routes {', '.join(parts)}"

    def as_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "applied": self.applied, "entries": self.entries,
                "unusable_entries": self.unusable, "counts": self.counts(),
                "routes": [route.as_dict() for route in self.routes],
                "new_models": [new.as_dict() for new in self.new_models], "provider": self.provider,
                "published": self.applied and self.publish_error is None, "publish_error": self.publish_error}


def source_label(source: str) -> str:
    source = source.strip()
    return source if len(source) <= LONGEST_SOURCE else source[: LONGEST_SOURCE - 1] + "…"


def sync(settings: Settings, source: str, fmt: str, apply: bool = False, add_new: bool = False,
         provider: str | None = None) -> SyncReport:
    """Compare every route that names an entry of the list with it; with `apply`, change, hold
    and add (with `add_new`, entries no route names become models charged at cost on
    `provider`), commit, and publish the changed models. Raises SourceError (nothing changed)
    when the list cannot be loaded or read, ServiceError for a mistake in the arguments."""
    if add_new and not provider:
        raise ServiceError("adding new models (--add-new) needs the provider that serves them (--provider)")
    if fmt not in FORMATS:
        raise ServiceError(f"a price list's format is one of {', '.join(FORMATS)}, not {fmt!r}")
    if provider:
        with _session(settings, writing=False) as session:
            upstreams.require_provider(session, provider)
    price_list = read_price_list(source, fmt)
    label = source_label(source)
    report = SyncReport(label, fmt, apply, len(price_list.entries), len(price_list.unusable), provider=provider)
    with _session(settings, apply) as session:
        report.routes = _compare_routes(session, settings, price_list, lock=apply)
        if add_new:
            report.new_models = _new_models(session, price_list)
        if apply:
            with audit.acting_as(_through(f"sync {label}")), audit.because(f"sync {label}"):
                _apply(session, report, label)
    if apply:
        report.publish_error = publish_models(settings, report.changed_model_ids)
    return report


@contextlib.contextmanager
def _session(settings: Settings, writing: bool):
    """A transaction to write in, or a read-only session (a dry run takes no write lock)."""
    if writing:
        with db.session_scope(settings) as session:
            yield session
        return
    with contextlib.closing(db.read_session(settings)) as session:
        yield session


def _through(channel: str) -> audit.Actor:
    """The caller, acting through `channel` (the source of the price versions it makes)."""
    return dataclasses.replace(audit.current(), channel=channel)


def _compare_routes(session: Session, settings: Settings, price_list: PriceList, lock: bool) -> list[RouteSync]:
    statement = select(Route).where(Route.price_source_id.is_not(None)).order_by(Route.id)
    if lock:  # two syncs at once (two nodes' workers) take turns
        statement = statement.with_for_update()
    compared = []
    for route in session.scalars(statement):
        item = RouteSync(route.id, route.model.name, route.provider.name, route.upstream_model, route.price_source_id,
                         model_id=route.model_id)
        current = upstreams.current_cost(session, route.id)
        item.current_version_id = current.id if current else None
        entry = price_list.entries.get(route.price_source_id)
        if entry is None:
            reason = price_list.unusable.get(route.price_source_id)
            item.status = "missing" if reason is None else "unusable"
            item.notes = [] if reason is None else [f"{route.price_source_id}: {reason}"]
        else:
            item.proposed, item.notes = entry.prices, list(entry.notes)
            item.changes = class_changes(prices_of(current), entry.prices)
            item.reasons = guardrails(item.changes, settings.price_sync_max_rise_percent)
            item.status = "unchanged" if not item.changes else "held" if item.reasons else "changed"
            hold = pending_hold(session, route.id) if item.status == "held" else None
            if hold is not None and json.loads(hold.proposed) == entry.prices and (
                    hold.current_version_id == item.current_version_id):
                item.status, item.hold_id = "already_held", hold.id
        compared.append(item)
    return compared


def _new_models(session: Session, price_list: PriceList) -> list[NewModel]:
    """The list's entries no route names, each with why it would not be added."""
    named = set(session.scalars(select(Route.price_source_id).where(Route.price_source_id.is_not(None))))
    found = []
    for entry in price_list.entries.values():
        if entry.id in named:
            continue
        new = NewModel(entry)
        if entry.free:
            new.reason = "priced $0 for every class: not priced per token"
        elif not upstreams.NAME.fullmatch(entry.id):
            new.reason = "not a model name (1-100 letters, digits and ._:/@+-)"
        elif upstreams.find_model(session, entry.id) or upstreams.find_alias(session, entry.id):
            new.reason = "a model or alias of this name exists: give its route --price-source-id to sync it"
        else:
            new.added = True
        found.append(new)
    return found


def _apply(session: Session, report: SyncReport, label: str) -> None:
    for item in report.routes:
        if item.status == "changed":
            route = session.get(Route, item.route_id)
            saved = upstreams.upsert_route(session, route.model.name, route.provider.name, item.proposed,
                                           route.upstream_model, route.priority, route.weight)
            item.cost_version_id = upstreams.current_cost(session, saved.id).id
            _close_pending(session, item.route_id, "the price list no longer proposes it")
        elif item.status == "held":
            _hold(session, item, label)
        elif item.status == "unchanged":
            _close_pending(session, item.route_id, "the price list no longer proposes it")
    for new in report.new_models:
        if new.added:
            _add_model(session, new, report.provider)


def _proposal(prices: dict[str, int | None]) -> str:
    return json.dumps({price_field: prices[price_field] for price_field in PRICE_FIELDS})


def pending_hold(session: Session, route_id: int) -> PriceHold | None:
    return session.scalar(select(PriceHold).where(PriceHold.route_id == route_id, PriceHold.state == "pending")
                          .order_by(PriceHold.id.desc()).limit(1))


def _hold(session: Session, item: RouteSync, label: str) -> None:
    """One pending hold per route (the same change again is held already: _compare_routes): a
    different change replaces the pending hold's proposal."""
    hold = pending_hold(session, item.route_id)
    if hold is None:
        hold = PriceHold(route_id=item.route_id, state="pending")
        session.add(hold)
    hold.source, hold.proposed, hold.reason = label, _proposal(item.proposed), "; ".join(item.reasons)[:500]
    hold.current_version_id = item.current_version_id
    session.flush()
    item.hold_id = hold.id


def _close_pending(session: Session, route_id: int, why: str) -> None:
    """A pending hold the list no longer proposes is rejected, so no one approves it later."""
    hold = pending_hold(session, route_id)
    if hold is not None:
        with audit.because(why):
            _decide(session, hold, "rejected")


def _decide(session: Session, hold: PriceHold, state: str) -> None:
    hold.state, hold.decided_by, hold.decided_at = state, audit.current().name, utcnow()
    session.flush()


def _add_model(session: Session, new: NewModel, provider: str) -> None:
    """The entry as a model charged at cost, served by its route to `provider` under the entry's
    id; an entry the catalog refuses is reported, the others still added."""
    entry = new.entry
    try:
        with session.begin_nested():
            model = upstreams.upsert_model(session, entry.id, provider, entry.prices, upstream_model=entry.id,
                                           max_output=entry.max_output, max_input=entry.max_input,
                                           price_source_id=entry.id)
    except ServiceError as exc:
        new.added, new.reason = False, str(exc)
        return
    new.model_id = model.id
    new.cost_version_id = upstreams.current_cost(session, upstreams.routes_of(session, model.id)[0].id).id


def publish_models(settings: Settings, model_ids: list[int]) -> str | None:
    """Publish each model (after the commit); None, or why Redis did not take them."""
    if not model_ids:
        return None
    try:
        with db.session_scope(settings) as session:
            for model_id in model_ids:
                publish.publish_model(session, settings, session.get(Model, model_id))
    except (redis.RedisError, ServiceError) as exc:
        return logs.error_summary(exc)
    return None


# Held changes -----------------------------------------------------------------------------------


def require_hold(session: Session, hold_id: int) -> PriceHold:
    hold = session.get(PriceHold, hold_id)
    if hold is None:
        raise HoldNotFound(f"no held price change {hold_id}")
    return hold


def _require_pending(session: Session, hold_id: int) -> PriceHold:
    hold = require_hold(session, hold_id)
    session.refresh(hold, with_for_update=True)
    if hold.state != "pending":
        raise ServiceError(f"held price change {hold_id} was {hold.state} already (by {hold.decided_by})")
    return hold


def approve(session: Session, hold_id: int, approver: str) -> tuple[PriceHold, PriceVersion]:
    """Apply a held change as the route's new cost version (its source "sync <list> (approved by
    <approver>)"), if the route's cost is still the one it was compared with."""
    hold = _require_pending(session, hold_id)
    route = session.get(Route, hold.route_id)
    if route is None:
        raise ServiceError(f"route {hold.route_id} was removed; reject held price change {hold_id}")
    current = upstreams.current_cost(session, route.id)
    if (current.id if current else None) != hold.current_version_id:
        raise ServiceError(f"route {route.id}'s cost changed after price change {hold_id} was held (cost version "
                           f"{current.id if current else 'none'}, not {hold.current_version_id}); reject it — the "
                           "next sync proposes the list's prices again")
    with audit.acting_as(_through(f"sync {hold.source} (approved by {approver})"[:500])):
        upstreams.upsert_route(session, route.model.name, route.provider.name, json.loads(hold.proposed),
                               route.upstream_model, route.priority, route.weight)
        _decide(session, hold, "approved")
    return hold, upstreams.current_cost(session, route.id)


def reject(session: Session, hold_id: int) -> PriceHold:
    """Leave the route's cost as it is. (If the list keeps proposing the change, the next sync
    holds it again: clear the route's price source id to stop syncing it.)"""
    hold = _require_pending(session, hold_id)
    _decide(session, hold, "rejected")
    return hold


def holds(session: Session, pending: bool, limit: int = 50) -> list[PriceHold]:
    """Pending holds, oldest first; or the most recently decided ones, newest first."""
    statement = select(PriceHold)
    if pending:
        statement = statement.where(PriceHold.state == "pending").order_by(PriceHold.id)
    else:
        statement = statement.where(PriceHold.state != "pending").order_by(PriceHold.decided_at.desc(),
                                                                           PriceHold.id.desc())
    return list(session.scalars(statement.limit(limit)))


@dataclass(frozen=True)
class HoldView:
    """A hold as the console and the API show it: its route, and every class now and proposed."""

    hold: PriceHold
    route: Route | None
    classes: list[ClassChange]
    stale: bool  # pending, but the route's cost changed since (or the route is gone): it can only be rejected

    def as_dict(self) -> dict:
        hold, route = self.hold, self.route
        return {"id": hold.id, "state": hold.state, "route_id": hold.route_id,
                "model": route.model.name if route else None, "provider": route.provider.name if route else None,
                "upstream_model": route.upstream_model if route else None, "source": hold.source,
                "reason": hold.reason, "current_version_id": hold.current_version_id, "stale": self.stale,
                "created_at": utc_timestamp(hold.created_at), "decided_by": hold.decided_by,
                "decided_at": hold.decided_at and utc_timestamp(hold.decided_at),
                "classes": [change.as_dict() for change in self.classes]}


def hold_view(session: Session, hold: PriceHold) -> HoldView:
    route = session.get(Route, hold.route_id)
    compared = session.get(PriceVersion, hold.current_version_id) if hold.current_version_id else None
    current = upstreams.current_cost(session, route.id) if route else None
    stale = hold.state == "pending" and (route is None or (current.id if current else None) != hold.current_version_id)
    return HoldView(hold, route, all_classes(prices_of(compared), json.loads(hold.proposed)), stale)


# tollgate up ------------------------------------------------------------------------------------


def periodic_sync(settings: Settings) -> SyncReport | None:
    """`tollgate up`'s sync from settings.price_sync_source, as `system`, applying what passes the
    guardrails (the rest waits for an admin); one line in the log. A failing list, database or
    Redis is logged and changes nothing; this never raises."""
    source = settings.price_sync_source
    try:
        with audit.acting_as(audit.SYSTEM):
            report = sync(settings, source, settings.price_sync_format, apply=True)
    except (ServiceError, SQLAlchemyError, redis.RedisError) as exc:
        why = str(exc) if isinstance(exc, ServiceError) else logs.error_summary(exc)
        log.error("price sync from %s failed, nothing changed: %s", source, why)
        return None
    except Exception:  # a thread's last word: the next sync is due in price_sync_hours all the same
        log.exception("price sync from %s failed, nothing changed", source)
        return None
    log.info("%s", report.summary())
    if report.publish_error:
        log.error("price sync from %s: saved, but not live yet: %s", source, report.publish_error)
    return report
