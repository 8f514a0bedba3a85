"""The usage classes are defined once a side (lua/tollgate/usage_classes.lua,
control_plane/usage_classes.py): both tables, docs/internals.md's and the SQL columns agree."""
from __future__ import annotations

import re
from pathlib import Path

from control_plane import models
from control_plane.usage_classes import PRICE_FIELDS, RECORD_FIELDS, USAGE_CLASSES

REPO = Path(__file__).resolve().parent.parent
LUA_CLASS = re.compile(r'^\s*\{ field = "(\w+)", price = "(\w+)", side = "(input|output)", meaning = "([^"]+)" \},$')
DOCS_ROW = re.compile(r"^\| ([^|]+) \| `(\w+)` \| `(\w+)` \| (?:`(\w+)`|— \(required\)) \|$")


def _lua_table() -> list[tuple[str, str, str, str]]:
    text = (REPO / "lua" / "tollgate" / "usage_classes.lua").read_text()
    body = text[text.index("return {") + len("return {"):text.rindex("}")]
    rows = [line for line in body.splitlines() if line.strip()]
    parsed = [LUA_CLASS.match(line) for line in rows]
    assert all(parsed), f"a line of usage_classes.lua is not in the one-class-a-line form: {rows}"
    return [match.groups() for match in parsed]


def _docs_table() -> list[tuple[str, str, str, str | None]]:
    text = (REPO / "docs" / "internals.md").read_text()
    section = text[text.index("## Usage classes"):]
    section = section[:section.index("\n## ", 1)]
    return [match.groups() for line in section.splitlines() if (match := DOCS_ROW.match(line))]


def test_the_lua_and_python_tables_name_the_same_classes_in_the_same_order():
    lua = _lua_table()
    assert [(field, price, meaning) for field, price, _side, meaning in lua] == [
        (usage.field, usage.price, usage.description) for usage in USAGE_CLASSES]


def test_the_input_and_output_sides_are_the_classes_held_at_input_and_output_prices():
    sides = {field: side for field, _price, side, _meaning in _lua_table()}
    assert sides == {"in": "input", "cr": "input", "cw": "input", "cw1h": "input", "out": "output", "rsn": "output"}


def test_docs_internals_lists_every_class_with_its_fields_and_default_price():
    assert _docs_table() == [
        (usage.description, usage.field, usage.price, usage.default) for usage in USAGE_CLASSES]


def test_the_classes_are_the_six_of_the_record_format():
    assert RECORD_FIELDS == ("in", "cr", "cw", "cw1h", "out", "rsn")
    assert PRICE_FIELDS == ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")


def test_a_default_price_is_a_class_listed_before():
    seen = set()
    for usage in USAGE_CLASSES:
        assert usage.default is None or usage.default in seen
        seen.add(usage.price)


def test_sql_has_a_price_column_and_a_token_column_for_each_class():
    price_columns = set(models.PriceVersion.__table__.columns.keys())
    usage_columns = set(models.Usage.__table__.columns.keys())
    for usage in USAGE_CLASSES:
        assert usage.price in price_columns
        assert usage.column in usage_columns
    assert {name for name in usage_columns if name.endswith("_tokens")} == {usage.column for usage in USAGE_CLASSES}
