"""Usage records as the hot path appends them to tg:{s<n>}:usage (docs/internals.md)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from . import money
from .models import Usage

TOKEN_LABELS = {"in": "input", "cr": "cached", "cw": "cache write", "cw1h": "cache write 1h", "out": "output",
                "rsn": "reasoning"}
ALWAYS_DESCRIBED = ("in", "out")
# The record's values, in the order the hot path packs them (tab-separated) into the stream
# entry's one field `r` and into the usage journal: lua/tollgate/settle.lua FIELDS.
RECORD_FIELDS = ("rid", "ts", "acct", "key", "model", "umodel", "provider", "pv", "ep", "stream", "status",
                 "basis", "in", "cr", "cw", "cw1h", "out", "rsn", "cost", "ms", "ttfb", "node")
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    ts_ms: int
    account_id: int
    key_id: int
    model: str
    upstream_model: str
    provider: str
    price_version_id: int | None
    endpoint: str
    stream: bool
    status: int
    billing_basis: str
    tokens: dict[str, int]  # by record field: in, cr, cw, cw1h, out, rsn
    cost_nano: int
    latency_ms: int | None
    ttfb_ms: int | None
    node: str

    def description(self) -> str:
        """'sandbox-chat: 12 input, 3 cached, 40 output, 2 reasoning tokens'."""
        counts = [
            f"{self.tokens[field]} {TOKEN_LABELS[field]}"
            for field, _price in money.USAGE_CLASSES
            if self.tokens[field] or field in ALWAYS_DESCRIBED
        ]
        return f"{self.model}: {', '.join(counts)} tokens"

    def row_values(self, transaction_id: int | None) -> dict:
        """The usage row's column values."""
        return dict(
            request_id=self.request_id,
            account_id=self.account_id,
            key_id=self.key_id,
            model=self.model,
            upstream_model=self.upstream_model,
            provider=self.provider,
            price_version_id=self.price_version_id,
            endpoint=self.endpoint,
            stream=self.stream,
            status=self.status,
            billing_basis=self.billing_basis,
            cost_nano=self.cost_nano,
            latency_ms=self.latency_ms,
            ttfb_ms=self.ttfb_ms,
            node=self.node,
            created_at=datetime.fromtimestamp(self.ts_ms // 1000, UTC).replace(microsecond=self.ts_ms % 1000 * 1000),
            transaction_id=transaction_id,
            **{f"{price}_tokens": self.tokens[field] for field, price in money.USAGE_CLASSES},
        )


def unpack(packed: str) -> dict[str, str]:
    """The named values of a packed record; ValueError when the count is wrong."""
    values = packed.split("\t")
    if len(values) != len(RECORD_FIELDS):
        raise ValueError(f"packed record has {len(values)} values, expected {len(RECORD_FIELDS)}")
    return dict(zip(RECORD_FIELDS, values))


def records_of(fields: dict[str, str]) -> list[UsageRecord]:
    """The records of a stream entry: its field `r` holds a settlement batch's packed records, one
    per line; an entry with one field per value holds one record. ValueError names the first bad
    field."""
    if "r" in fields:
        return [parse_packed(line) for line in fields["r"].split("\n")]
    return [parse(fields)]


def parse_packed(packed: str) -> UsageRecord:
    """One packed record (tab-separated RECORD_FIELDS values) as a record."""
    return parse(unpack(packed))


def parse(fields: dict[str, str]) -> UsageRecord:
    """A record from its named values; ValueError names the first bad field."""
    return UsageRecord(
        request_id=_text(fields, "rid", required=True),
        ts_ms=_count(fields, "ts", INT64_MAX),
        account_id=_count(fields, "acct", INT32_MAX),
        key_id=_count(fields, "key", INT32_MAX),
        model=_text(fields, "model", required=True),
        upstream_model=_text(fields, "umodel"),
        provider=_text(fields, "provider"),
        price_version_id=_count(fields, "pv", INT32_MAX, optional=True),
        endpoint=_text(fields, "ep"),
        stream=fields.get("stream") == "1",
        status=_count(fields, "status", INT32_MAX),
        billing_basis=_text(fields, "basis") or "none",
        tokens={field: _count(fields, field, INT64_MAX, default=0) for field, _price in money.USAGE_CLASSES},
        cost_nano=_count(fields, "cost", INT64_MAX),
        latency_ms=_count(fields, "ms", INT32_MAX, optional=True),
        ttfb_ms=_count(fields, "ttfb", INT32_MAX, optional=True),
        node=_text(fields, "node"),
    )


# The longest value each text field's Usage column takes (read once: the ORM attributes are slow
# to walk per record).
_TEXT_LIMITS = {name: Usage.__table__.c[column].type.length for name, column in (
    ("rid", "request_id"), ("model", "model"), ("umodel", "upstream_model"), ("provider", "provider"),
    ("ep", "endpoint"), ("basis", "billing_basis"), ("node", "node"))}


def _text(fields, name, required=False) -> str:
    """A text field that fits its Usage column."""
    value = fields.get(name, "")
    if required and not value:
        raise ValueError(f"{name}: missing")
    limit = _TEXT_LIMITS[name]
    if len(value) > limit:
        raise ValueError(f"{name}: longer than {limit} characters")
    return value


def _count(fields, name, maximum, default=None, optional=False) -> int | None:
    """A non-negative integer field. Absent or empty: `default`, None if optional, else an error."""
    raw = fields.get(name, "")
    if raw == "":
        if default is not None or optional:
            return default
        raise ValueError(f"{name}: missing")
    if not (raw.isascii() and raw.isdigit()) or int(raw) > maximum:
        raise ValueError(f"{name}: not an integer from 0 to {maximum}")
    return int(raw)
