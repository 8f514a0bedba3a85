"""API errors in OpenAI's shape: {"error": {"message", "type", "code"}}."""
from __future__ import annotations

import json

from flask import jsonify

from ..settings import REPO_ROOT


def error_response(status: int, message: str, error_type: str, code: str):
    response = jsonify({"error": {"message": message, "type": error_type, "code": code}})
    response.status_code = status
    return response


class ApiError(Exception):
    def __init__(self, status: int, message: str, error_type: str, code: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code

    def response(self):
        return error_response(self.status, self.message, self.error_type, self.code)


# The one error catalogue, shared with the hot path (lua/tollgate/errors.lua).
CATALOGUE = json.loads((REPO_ROOT / "errors.json").read_text())


def _catalogued(code: str) -> ApiError:
    """The catalogue's error `code` (one without placeholders) in OpenAI's shape."""
    entry = CATALOGUE[code]
    return ApiError(entry["status"], entry["message"], entry["openai_type"], code)


def missing_key() -> ApiError:
    return _catalogued("missing_api_key")


def invalid_key() -> ApiError:
    """Unknown, revoked, or of a disabled account: one answer, which tells a guesser nothing."""
    return _catalogued("invalid_api_key")


def bad_parameter(name: str, requirement: str) -> ApiError:
    return ApiError(400, f"'{name}' must be {requirement}.", "invalid_request_error", "invalid_parameter")


def forbidden() -> ApiError:
    return ApiError(403, "This endpoint is for admin accounts; use an admin account's key.",
                    "permission_error", "forbidden")
