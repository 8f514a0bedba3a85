"""API errors from the one error catalogue (errors.json), which the hot path answers from too
(lua/tollgate/errors.lua), in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
from __future__ import annotations

import json
import re

from flask import jsonify

from ..settings import REPO_ROOT

CATALOGUE = {code: entry for code, entry in json.loads((REPO_ROOT / "errors.json").read_text()).items()
             if not code.startswith("_")}

# A template is filled as errors.lua fills it: a placeholder without a value is "", and a quoted
# string keeps at most QUOTE_MAX characters ("…" marks the cut); the server's own sentence,
# `detail`, gets DETAIL_MAX.
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]+)\}")
QUOTE_MAX = 256
DETAIL_MAX = 1024


def render(template: str, variables: dict) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1)
        value = variables.get(name)
        if value is None:
            return ""
        if isinstance(value, str):
            most = DETAIL_MAX if name == "detail" else QUOTE_MAX
            return value if len(value) <= most else value[:most] + "…"
        return str(value)

    return PLACEHOLDER.sub(fill, template)


class ApiError(Exception):
    """The catalogue's error `code`, its message's placeholders filled from `variables`."""

    def __init__(self, code: str, **variables):
        if code not in CATALOGUE:
            raise KeyError(f"unknown error code {code!r}")
        super().__init__(code)
        self.code = code
        self.variables = variables

    def response(self):
        entry = CATALOGUE[self.code]
        response = jsonify({"error": {"message": render(entry["message"], self.variables),
                                      "type": entry["openai_type"], "param": None, "code": self.code}})
        response.status_code = entry["status"]
        return response


def bad_parameter(name: str, requirement: str) -> ApiError:
    return ApiError("invalid_parameter", detail=f"'{name}' must be {requirement}.")
