"""Prices as charged: a price version with the defaults of docs/internals.md resolved.

The hot path's twin is lua/tollgate/cost.lua; both must give the same integer for every record.
"""
from __future__ import annotations

from .. import money
from ..models import PriceVersion
from ..usage_classes import PRICE_FIELDS, USAGE_CLASSES


def resolve(version: PriceVersion) -> dict[str, int]:
    """Every price field as an integer nano-USD per 1M tokens, defaults applied."""
    prices = {field: getattr(version, field) for field in PRICE_FIELDS}
    # In table order: a class falls back only to one listed before it (cache_write_1h to
    # cache_write, which may itself have fallen back to input).
    for usage in USAGE_CLASSES:
        if prices[usage.price] is None:
            prices[usage.price] = prices[usage.default]
    return prices


def cost_nano(tokens: dict[str, int], version: PriceVersion) -> int:
    """Cost of a usage record's token counts (keyed by record field: in, cr, …)."""
    return money.cost_nano(tokens, resolve(version))
