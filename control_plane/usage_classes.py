"""The usage classes a request is billed by, defined once on the control-plane side.

Disjoint: every token of a request is in exactly one. Each has its field in the usage record,
its price field (also its name in the API and its SQL columns: `<price>` in price_versions,
`<price>_tokens` in usage), its label in the pages, and the price it falls back to when a
price version leaves it unset. The hot path's twin is lua/tollgate/usage_classes.lua; both
follow docs/internals.md's table (tests/test_usage_classes.py holds the three together).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UsageClass:
    field: str  # in the usage record
    price: str  # price field, API name
    label: str  # on the pages: "12 input, 3 cached tokens", "Cached (USD per 1M tokens)"
    default: str | None  # the price field used when this one is unset; None: required
    description: str  # what it counts (docs, CLI help)

    @property
    def column(self) -> str:
        """The usage table's token column."""
        return f"{self.price}_tokens"


USAGE_CLASSES = (
    UsageClass("in", "input", "input", None, "uncached input"),
    UsageClass("cr", "cached_input", "cached", "input", "cache read"),
    UsageClass("cw", "cache_write", "cache write", "input", "cache write, 5 minutes (the default tier)"),
    UsageClass("cw1h", "cache_write_1h", "cache write 1h", "cache_write", "cache write, 1 hour"),
    UsageClass("out", "output", "output", None, "output, not reasoning"),
    UsageClass("rsn", "reasoning", "reasoning", "output", "reasoning"),
)
RECORD_FIELDS = tuple(usage_class.field for usage_class in USAGE_CLASSES)
PRICE_FIELDS = tuple(usage_class.price for usage_class in USAGE_CLASSES)
REQUIRED_PRICES = tuple(usage_class.price for usage_class in USAGE_CLASSES if usage_class.default is None)
