"""API errors in OpenAI's shape: {"error": {"message", "type", "code"}}."""
from __future__ import annotations

from flask import jsonify


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


KEY_HINT = (
    "Use your Tollgate key (it starts with sk-tg-), not an OpenAI, Anthropic or other provider key, "
    "and check it for stray spaces, quotes or line breaks."
)


def missing_key() -> ApiError:
    return ApiError(401, f"No API key provided: send 'Authorization: Bearer sk-tg-…'. {KEY_HINT}",
                    "invalid_request_error", "missing_api_key")


def invalid_key() -> ApiError:
    return ApiError(401, f"Incorrect API key provided. {KEY_HINT}", "invalid_request_error", "invalid_api_key")


def revoked_key() -> ApiError:
    return ApiError(401, "This API key has been revoked or its account disabled; use another key.",
                    "invalid_request_error", "invalid_api_key")


def bad_parameter(name: str, requirement: str) -> ApiError:
    return ApiError(400, f"'{name}' must be {requirement}.", "invalid_request_error", "invalid_parameter")


def forbidden() -> ApiError:
    return ApiError(403, "This endpoint is for admin accounts; use an admin account's key.",
                    "permission_error", "forbidden")
