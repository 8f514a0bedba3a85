"""The public /models page: every model and alias with its current price per 1M tokens.

Always the newest price version, read from SQL at each view. A fixed-price model shows its
customer price per usage class. A model charged at cost is charged the cost of the route that
served each request, so the page shows, per class, the range of its routes' current costs (one
figure when they agree): what a request may cost, whichever route serves it.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import g, render_template
from sqlalchemy import select

from ..catalog import pricing, upstreams
from ..models import Model
from ..money import format_usd
from ..usage_classes import USAGE_CLASSES
from . import public
from .sessions import current_account, read_session


@dataclass(frozen=True)
class PriceRow:
    name: str
    alias_of: str | None
    at_cost: bool
    routes: int
    prices: list[str]  # per usage class, in USAGE_CLASSES order: "$0.15" or "$0.10–$0.15"


@public.get("/models")
def models_page():
    session = read_session()
    g.account = current_account(session)  # the menu of a signed-in customer
    rows = []
    for model in session.scalars(select(Model).order_by(Model.name)):
        prices = _prices(session, model)
        if prices is None:
            continue  # not callable yet: no route, or no price
        routes = len(upstreams.routes_of(session, model.id))
        rows.append(PriceRow(model.name, None, model.at_cost, routes, prices))
        rows += [PriceRow(alias.name, model.name, model.at_cost, routes, prices)
                 for alias in upstreams.aliases(session, model.id)]
    return render_template("console/models.html", nav="models", rows=rows, classes=USAGE_CLASSES)


def _prices(session, model: Model) -> list[str] | None:
    """The model's prices per 1M tokens per usage class, exact: its customer price version, or
    for a model charged at cost the range of its routes' current costs."""
    if not model.at_cost:
        version = upstreams.current_price(session, model.id)
        if version is None or not upstreams.routes_of(session, model.id):
            return None
        resolved = pricing.resolve(version)
        return [format_usd(resolved[usage.price]) for usage in USAGE_CLASSES]
    costs = [pricing.resolve(cost) for route in upstreams.routes_of(session, model.id)
             if (cost := upstreams.current_cost(session, route.id)) is not None]
    if not costs:
        return None
    return [_range([cost[usage.price] for cost in costs]) for usage in USAGE_CLASSES]


def _range(prices: list[int]) -> str:
    low, high = min(prices), max(prices)
    return format_usd(low) if low == high else f"{format_usd(low)}–{format_usd(high)}"
