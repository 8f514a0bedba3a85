"""JSON whose money amounts are exact numbers: Decimal values are written digit for digit
(42.5, 0.000123456; see money.nano_to_decimal), never through a float. Floats are refused outright."""
from __future__ import annotations

import json
from decimal import Decimal


def dumps(value) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a JSON number: {value}")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("floats are not written; use integers or Decimal")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(key))}: {dumps(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    return json.dumps(value)
