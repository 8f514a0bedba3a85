"""Prices as charged: a price version with the defaults of docs/internals.md resolved.

The hot path's twin is lua/tollgate/cost.lua; both must give the same integer for every record.
"""
from __future__ import annotations

from .. import money
from ..models import PriceVersion

PRICE_FIELDS = tuple(price for _field, price in money.USAGE_CLASSES)

# price field -> the price it falls back to when unset (resolved in this order).
DEFAULTS = (
    ("cached_input", "input"),
    ("cache_write", "input"),
    ("cache_write_1h", "cache_write"),
    ("reasoning", "output"),
)


def resolve(version: PriceVersion) -> dict[str, int]:
    """Every price field as an integer nano-USD per 1M tokens, defaults applied."""
    prices = {field: getattr(version, field) for field in PRICE_FIELDS}
    for field, fallback in DEFAULTS:
        if prices[field] is None:
            prices[field] = prices[fallback]
    return prices


def cost_nano(tokens: dict[str, int], version: PriceVersion) -> int:
    """Cost of a usage record's token counts (keyed by record field: in, cr, …)."""
    return money.cost_nano(tokens, resolve(version))
