"""Money as integer nano-USD: parsing, exact JSON rendering, prices with defaults, rounding."""
from decimal import Decimal

import pytest

from control_plane import exact_json
from control_plane.catalog import pricing
from control_plane.models import PriceVersion
from control_plane.money import cost_nano, nano_to_decimal, usd_to_nano
from control_plane.usage_classes import PRICE_FIELDS


@pytest.mark.parametrize("text, nano", [
    ("42.5", 42_500_000_000),
    ("0.000000001", 1),
    ("1e-9", 1),
    (" 3 ", 3_000_000_000),
    ("-5", -5_000_000_000),
    ("0.075", 75_000_000),
])
def test_usd_text_parses_to_exact_nano(text, nano):
    assert usd_to_nano(text) == nano


@pytest.mark.parametrize("bad", ["0.0000000001", "abc", "", "NaN", "Infinity", 0.1])
def test_usd_parsing_refuses_sub_nano_non_numbers_and_floats(bad):
    with pytest.raises(ValueError):
        usd_to_nano(bad)


@pytest.mark.parametrize("nano, text", [
    (42_500_000_000, "42.5"),
    (123_456, "0.000123456"),
    (100_000_000_000, "100"),
    (0, "0"),
    (-1, "-0.000000001"),
    (9_223_372_036_854_775_807, "9223372036.854775807"),
])
def test_json_money_is_the_exact_number(nano, text):
    assert exact_json.dumps({"balance": nano_to_decimal(nano)}) == f'{{"balance": {text}}}'


def test_json_refuses_floats():
    with pytest.raises(TypeError):
        exact_json.dumps({"balance": 0.1})


def test_json_escapes_text():
    assert exact_json.dumps(["a\"b", None, True, {"k": [1]}]) == '["a\\"b", null, true, {"k": [1]}]'


def test_unset_prices_resolve_to_their_defaults():
    version = PriceVersion(id=1, input=3_000, cached_input=None, cache_write=3_750, cache_write_1h=None,
                           output=15_000, reasoning=None)
    assert pricing.resolve(version) == {"input": 3_000, "cached_input": 3_000, "cache_write": 3_750,
                                        "cache_write_1h": 3_750, "output": 15_000, "reasoning": 15_000}


def test_cache_write_defaults_chain_through_to_input():
    version = PriceVersion(input=7, cached_input=None, cache_write=None, cache_write_1h=None, output=9, reasoning=None)
    assert pricing.resolve(version)["cache_write_1h"] == 7


def test_cost_rounds_half_up_once():
    # 1 token at 0.5 nano-USD per token (500_000 per 1M) -> 0.5 -> 1; three such -> 1.5 -> 2.
    assert cost_nano({"in": 1}, {field: 500_000 for field in PRICE_FIELDS}) == 1
    assert cost_nano({"in": 1, "cr": 1, "out": 1}, {field: 500_000 for field in PRICE_FIELDS}) == 2


def test_decimal_values_stay_decimal_in_json():
    assert exact_json.dumps([Decimal("0.1")]) == "[0.1]"
