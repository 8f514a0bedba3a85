"""Usage records as the hot path appends them to tg:{s<n>}:usage (docs/internals.md)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import NamedTuple

from .. import money, usage_classes
from ..models import Usage

# The record's values, in the order the hot path packs them (tab-separated) into the stream
# entry's one field `r` and into the usage journal: lua/tollgate/record.lua FIELDS.
RECORD_FIELDS = ("rid", "ts", "acct", "key", "model", "umodel", "provider", "pv", "ep", "stream", "status",
                 "basis", *usage_classes.RECORD_FIELDS, "cost", "ms", "ttfb", "node", "hold", "over",
                 "asked", "route", "cv", "pcost", "tries", "failed", "ecode", "emsg")
# The values of records packed before the errors of failed requests (no error code or message),
# before routes (asked = model, no route or cost version, provider cost 0, one attempt, none
# failed), and before `hold` and `over` too (hold = cost, over = 0).
OLDER_FIELD_COUNTS = (30, 24, 22)
# "refused": the gateway refused the request after authenticating its key, before holding
# anything (no provider was asked); "none": admitted, nothing to bill (e.g. the provider failed).
BASES = ("provider", "drained", "estimated", "invalid", "none", "refused")
MAX_NANO = 2**53  # cost, hold, overage and provider cost of one record
MAX_TRIES = 10  # provider attempts of one request
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last moment a datetime holds
INT32_MAX = 2**31 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# (record field, usage column) of each usage class's token count
TOKEN_COLUMNS = tuple((usage.field, usage.column) for usage in usage_classes.USAGE_CLASSES)


class UsageRecord(NamedTuple):  # a tuple: the drain makes one per record, and tuples are made fast
    request_id: str
    ts_ms: int
    account_id: int
    key_id: int
    model: str
    upstream_model: str
    provider: str
    price_version_id: int | None  # the charge's: the customer price, or at cost the route's cost version
    endpoint: str
    stream: bool
    status: int
    billing_basis: str
    tokens: dict[str, int]  # by record field: in, cr, cw, cw1h, out, rsn
    cost_nano: int  # charged
    hold_nano: int  # held for the request: the most it may be charged
    overage_nano: int  # the provider-reported cost above the hold, not charged (the operator's loss)
    latency_ms: int | None
    ttfb_ms: int | None
    node: str
    requested_model: str  # as the client asked: the model's name or an alias
    route_id: int | None
    cost_version_id: int | None
    provider_cost_nano: int  # the provider's price of the tokens at the cost version, uncapped
    attempts: int
    failed_statuses: str  # of the failed attempts, comma-separated ('' for none)
    error_code: str  # the gateway's catalogue code, or the provider's error code or type ('' for none)
    error_message: str  # the error message the client got ('' for none)

    def row_values(self, transaction_id: int | None) -> dict:
        """The usage row's column values."""
        row = dict(zip(SAME_NAMED, _same_named(self)))
        row["created_at"] = EPOCH + timedelta(milliseconds=self.ts_ms)
        row["transaction_id"] = transaction_id
        tokens = self.tokens
        for field, column in TOKEN_COLUMNS:
            row[column] = tokens[field]
        return row


# The record's values that are usage columns of the same name (all but ts_ms and tokens).
SAME_NAMED = tuple(name for name in UsageRecord._fields if name not in ("ts_ms", "tokens"))
_same_named = attrgetter(*SAME_NAMED)


def unpack(packed: str) -> dict[str, str]:
    """The named values of a packed record; ValueError when the count is wrong."""
    values = packed.split("\t")
    if len(values) != len(RECORD_FIELDS) and len(values) not in OLDER_FIELD_COUNTS:
        raise ValueError(f"packed record has {len(values)} values, expected {len(RECORD_FIELDS)} "
                         f"(or {' or '.join(map(str, OLDER_FIELD_COUNTS))} of the older layouts)")
    return dict(zip(RECORD_FIELDS, values))


def lines_of(fields: dict[str, str]) -> list[str]:
    """The packed records of a stream entry, in order: its field `r` holds a settlement batch's
    records, one per line; an entry with one field per value holds one record, packed here."""
    if "r" in fields:
        return fields["r"].split("\n")
    return [pack(fields)]


def pack(fields: dict[str, str]) -> str:
    """A record's named values packed as the hot path packs them (absent ones empty)."""
    return "\t".join(fields.get(name, "") for name in RECORD_FIELDS)


def valid_records(fields: dict[str, str]) -> Iterator[UsageRecord]:
    """The records of a stream entry that parse; the others are skipped (the worker quarantines
    them)."""
    for packed in lines_of(fields):
        try:
            yield parse_packed(packed)
        except ValueError:
            continue


def parse(fields: dict[str, str]) -> UsageRecord:
    """A record from its named values; ValueError names the first bad field."""
    return parse_packed(pack(fields))


def parse_packed(packed: str) -> UsageRecord:
    """One packed record (tab-separated RECORD_FIELDS values, or an older layout's) as a record;
    ValueError names the first bad field.

    The drain parses every record, so a well-formed one is read in one pass: _WELL_FORMED checks
    every value's shape at once (digits and how many, lengths, the basis, the failed statuses; at
    C speed). Anything else is checked value by value (_checked), which says what is wrong, or
    reads the rare integer as long as its bound: the two agree on every record
    (tests/test_usage_records.py)."""
    missing = len(RECORD_FIELDS) - 1 - packed.count("\t")
    match = _WELL_FORMED.fullmatch(packed + "\t" * missing if missing in _OLDER_MISSING else packed)
    if match is None:
        return _checked(unpack(packed))
    values = match.groups()
    rid, ts, acct, key, model, umodel, provider, pv, ep, stream, status, basis = values[:_TOKENS_AT]
    (cost, ms, ttfb, node, hold, over, asked, route, cv, pcost, tries, failed, ecode,
     emsg) = values[_TOKENS_END:]
    basis = basis or "none"
    refused = basis == "refused"
    cost = int(cost)
    tokens = dict(zip(usage_classes.RECORD_FIELDS, [int(count or 0) for count in values[_TOKENS_AT:_TOKENS_END]]))
    record = UsageRecord(
        rid, int(ts), int(acct), int(key), model, umodel, provider, int(pv) if pv else None, ep, stream == "1",
        int(status), basis, tokens, cost, int(hold) if hold else cost, int(over or 0),
        int(ms) if ms else None, int(ttfb) if ttfb else None, node, asked or model, int(route or 0) or None,
        int(cv or 0) or None, int(pcost or 0), int(tries) if tries else 1, failed,
        ecode[:_TEXT_LIMITS["ecode"]], emsg[:_TEXT_LIMITS["emsg"]])
    if (not model and not refused) or record.attempts < (0 if refused else 1):
        return _checked(unpack(packed))
    return record


def _checked(fields: dict[str, str]) -> UsageRecord:
    """A record from its named values, checked one by one; ValueError names the first bad field."""
    cost = _count(fields, "cost", MAX_NANO)
    basis = _basis(fields)
    refused = basis == "refused"
    model = _text(fields, "model", required=not refused)  # a refused request may name none
    return UsageRecord(
        request_id=_text(fields, "rid", required=True),
        ts_ms=_count(fields, "ts", MAX_TS_MS),
        account_id=_count(fields, "acct", INT32_MAX),
        key_id=_count(fields, "key", INT32_MAX),
        model=model,
        upstream_model=_text(fields, "umodel"),
        provider=_text(fields, "provider"),
        price_version_id=_count(fields, "pv", INT32_MAX, optional=True),
        endpoint=_text(fields, "ep"),
        stream=fields.get("stream") == "1",
        status=_count(fields, "status", INT32_MAX),
        billing_basis=basis,
        tokens={field: _count(fields, field, money.MAX_TOKENS, default=0) for field in usage_classes.RECORD_FIELDS},
        cost_nano=cost,
        hold_nano=_count(fields, "hold", MAX_NANO, default=cost),
        overage_nano=_count(fields, "over", MAX_NANO, default=0),
        latency_ms=_count(fields, "ms", INT32_MAX, optional=True),
        ttfb_ms=_count(fields, "ttfb", INT32_MAX, optional=True),
        node=_text(fields, "node"),
        requested_model=_text(fields, "asked") or model,
        route_id=_count(fields, "route", INT32_MAX, default=0) or None,
        cost_version_id=_count(fields, "cv", INT32_MAX, default=0) or None,
        provider_cost_nano=_count(fields, "pcost", MAX_NANO, default=0),
        attempts=_count(fields, "tries", MAX_TRIES, default=1, minimum=0 if refused else 1),
        failed_statuses=_statuses(fields),
        error_code=_text(fields, "ecode", cut=True),
        error_message=_text(fields, "emsg", cut=True),
    )


def identity_of(packed: str) -> dict[str, str | int | None]:
    """What can be read of a packed record that may not parse: its request_id, account_id, key_id
    and cost_nano, each None when unreadable (all of them when the values do not count right)."""
    try:
        fields = unpack(packed)
    except ValueError:
        fields = {}
    return {column: _readable(read, fields) for column, read in _IDENTITY}


def _readable(read, fields):
    try:
        return read(fields)
    except ValueError:
        return None


# The longest value each text field's Usage column takes (read once: the ORM attributes are slow
# to walk per record).
_TEXT_LIMITS = {name: Usage.__table__.c[column].type.length for name, column in (
    ("rid", "request_id"), ("model", "model"), ("umodel", "upstream_model"), ("provider", "provider"),
    ("ep", "endpoint"), ("node", "node"), ("asked", "requested_model"), ("ecode", "error_code"),
    ("emsg", "error_message"))}


_TOKENS_AT = RECORD_FIELDS.index(usage_classes.RECORD_FIELDS[0])  # the token counts' place in a record
_TOKENS_END = _TOKENS_AT + len(usage_classes.RECORD_FIELDS)
_OLDER_MISSING = {len(RECORD_FIELDS) - count for count in OLDER_FIELD_COUNTS}


def _text_shape(name: str, required: bool = False) -> str:
    """A text value of up to its column's length without tab or NUL, one or more if required."""
    return f"([^\\t\\x00]{{{int(required)},{_TEXT_LIMITS[name]}}})"


def _digits(maximum: int, required: bool = False) -> str:
    """An integer with fewer digits than `maximum` (so below it; a longer one, or one with
    leading zeros that make it as long, is left to _checked), one or more digits if required."""
    return f"([0-9]{{{int(required)},{len(str(maximum)) - 1}}})"


# Each value's shape in a well-formed record: what _checked accepts but for a missing model or
# attempt (parse_packed checks those after) and the integers of as many digits as their bound.
_SHAPES = {
    **{name: _digits(INT32_MAX, required=True) for name in ("acct", "key", "status")},
    **{name: _digits(INT32_MAX) for name in ("pv", "ms", "ttfb", "route", "cv")},
    **{name: _digits(money.MAX_TOKENS) for name in usage_classes.RECORD_FIELDS},
    **{name: _digits(MAX_NANO) for name in ("hold", "over", "pcost")},
    "ts": _digits(MAX_TS_MS, required=True),
    "cost": _digits(MAX_NANO, required=True),
    "tries": _digits(MAX_TRIES),
    **{name: _text_shape(name) for name in ("model", "umodel", "provider", "ep", "node", "asked")},
    "rid": _text_shape("rid", required=True),
    "stream": "([^\\t]*)",
    "basis": f"({'|'.join(BASES)}|)",
    "failed": f"((?:[1-5][0-9][0-9](?:,[1-5][0-9][0-9]){{0,{MAX_TRIES - 1}}})?)",
    **dict.fromkeys(("ecode", "emsg"), "([^\\t\\x00]*)"),  # cut to the column, not refused
}
_WELL_FORMED = re.compile("\t".join(_SHAPES[name] for name in RECORD_FIELDS))


def _text(fields, name, required=False, cut=False) -> str:
    """A text field that fits its Usage column (PostgreSQL's text takes no NUL): one that is
    longer is refused, or cut to the column when `cut` (an error's code and message, which the
    hot path already cuts)."""
    value = fields.get(name, "")
    if required and not value:
        raise ValueError(f"{name}: missing")
    if "\0" in value:
        raise ValueError(f"{name}: contains a NUL character")
    limit = _TEXT_LIMITS[name]
    if len(value) > limit:
        if not cut:
            raise ValueError(f"{name}: longer than {limit} characters")
        value = value[:limit]
    return value


def _basis(fields) -> str:
    """billing_basis: one of BASES (absent or empty: none)."""
    basis = fields.get("basis") or "none"
    if basis not in BASES:
        raise ValueError(f"basis: not one of {', '.join(BASES)}")
    return basis


def _statuses(fields) -> str:
    """failed: at most MAX_TRIES HTTP statuses (100 to 599), comma-separated ('' for none)."""
    failed = fields.get("failed", "")
    statuses = failed.split(",") if failed else []
    if len(statuses) > MAX_TRIES or not all(
            status.isascii() and status.isdigit() and len(status) == 3 and 100 <= int(status) <= 599
            for status in statuses):
        raise ValueError(f"failed: not up to {MAX_TRIES} comma-separated statuses from 100 to 599")
    return failed


def _count(fields, name, maximum, default=None, optional=False, minimum=0) -> int | None:
    """A non-negative integer field. Absent or empty: `default`, None if optional, else an error."""
    raw = fields.get(name, "")
    if raw == "":
        if default is not None or optional:
            return default
        raise ValueError(f"{name}: missing")
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        raise ValueError(f"{name}: not an integer from {minimum} to {maximum}")
    return int(raw)


# Usage quarantine column -> how to read it from a record's named values.
_IDENTITY = (
    ("request_id", lambda fields: _text(fields, "rid", required=True)),
    ("account_id", lambda fields: _count(fields, "acct", INT32_MAX)),
    ("key_id", lambda fields: _count(fields, "key", INT32_MAX)),
    ("cost_nano", lambda fields: _count(fields, "cost", MAX_NANO)),
)
