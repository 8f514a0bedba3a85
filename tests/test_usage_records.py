"""Reading packed usage records: the well-formed fast path of parse_packed reads every record
exactly as the value-by-value check (_checked) does, and refuses exactly what it refuses, with its
reason."""
import pytest

from control_plane.hot import usage_records
from control_plane.hot.usage_records import RECORD_FIELDS, parse_packed

RECORD = {
    "rid": "req-1", "ts": "1700000000123", "acct": "12", "key": "34", "model": "test-chat",
    "umodel": "test-chat-upstream", "provider": "test", "pv": "5", "ep": "chat.completions", "stream": "1",
    "status": "200", "basis": "provider", "in": "25", "cr": "3", "cw": "2", "cw1h": "1", "out": "24", "rsn": "7",
    "cost": "1234", "ms": "850", "ttfb": "120", "node": "node-a", "hold": "100000", "over": "0",
    "asked": "test-alias", "route": "3", "cv": "4", "pcost": "1000", "tries": "2", "failed": "503",
    "ecode": "", "emsg": "",
}
# Values that probe each shape: empty, zero, leading zeros, the bounds and one past them, signs,
# spaces, non-ASCII digits, NUL, long text, the statuses' edges.
PROBES = ("", "0", "1", "007", "10", "+5", "-1", " 5", "5 ", "1_000", "٣", "x", "a\0b", "1" * 20,
          str(2**31 - 1), str(2**31), str(2**53), str(2**53 + 1), "100000000", "100000001",
          "253402300799999", "253402300800000", "x" * 64, "x" * 65, "x" * 100, "x" * 101, "x" * 200,
          "x" * 201, "x" * 600, "099", "100", "599", "600", "503,429", "503,", ",503", "503,,429",
          ",".join(["500"] * 10), ",".join(["500"] * 11), "provider", "refused", "none", "estimated", "bogus")


def _checked(packed: str):
    """What the value-by-value check makes of a packed record: the record, or its error."""
    try:
        return usage_records._checked(usage_records.unpack(packed))
    except ValueError as exc:
        return str(exc)


def _parsed(packed: str):
    try:
        return parse_packed(packed)
    except ValueError as exc:
        return str(exc)


@pytest.mark.parametrize("field", RECORD_FIELDS)
def test_every_value_of_every_field_reads_as_the_value_by_value_check_reads_it(field):
    for probe in PROBES:
        for basis in ("provider", "refused"):
            packed = "\t".join({**RECORD, "basis": basis, field: probe}[name] for name in RECORD_FIELDS)
            assert _parsed(packed) == _checked(packed), (field, probe, basis)


@pytest.mark.parametrize("count", [len(RECORD_FIELDS), *usage_records.OLDER_FIELD_COUNTS, 3, 31, 33])
def test_every_layout_reads_as_the_value_by_value_check_reads_it(count):
    packed = "\t".join(RECORD[name] for name in RECORD_FIELDS[:count])
    if count > len(RECORD_FIELDS):
        packed += "\tx" * (count - len(RECORD_FIELDS))
    assert _parsed(packed) == _checked(packed)


def test_a_well_formed_record_reads_every_value():
    record = parse_packed("\t".join(RECORD[name] for name in RECORD_FIELDS))
    assert record.tokens == {"in": 25, "cr": 3, "cw": 2, "cw1h": 1, "out": 24, "rsn": 7}
    assert (record.request_id, record.ts_ms, record.account_id, record.key_id, record.price_version_id) == (
        "req-1", 1700000000123, 12, 34, 5)
    assert (record.cost_nano, record.hold_nano, record.provider_cost_nano, record.attempts,
            record.failed_statuses, record.requested_model, record.stream) == (
        1234, 100000, 1000, 2, "503", "test-alias", True)
    assert record.row_values(9)["created_at"].isoformat() == "2023-11-14T22:13:20.123000+00:00"


def test_an_error_message_longer_than_its_column_is_cut_not_refused():
    packed = "\t".join({**RECORD, "ecode": "c" * 100, "emsg": "m" * 600}[name] for name in RECORD_FIELDS)
    record = parse_packed(packed)
    assert (len(record.error_code), len(record.error_message)) == (64, 500)
