"""The providers page's "Test" button and `tollgate provider test`: one real call to a provider
with its key, to see that the base URL answers and the key is taken before customers' requests
go there.

The call is the provider's model list, `GET {base_url}/models` (OpenAI's protocol) or
`GET {base_url}/v1/models` (Anthropic's: its base URL has no /v1, as the gateway appends
/v1/messages): free, with no side effects, and authenticated as a request through the gateway
is (`Authorization: Bearer <key>`, or `x-api-key` with an `anthropic-version`). What it shows:
the answer's HTTP status and how long the status took, or why no answer came. Never the key: it
is sent only in its header, no redirect is followed (which would carry it to another host), and
no part of the answer's body is shown, which may quote it.
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import requests

from .. import crypto
from ..models import Provider
from ..settings import Settings

CONNECT_TIMEOUT = 5  # seconds to connect, then to each read
READ_TIMEOUT = 10
LISTING_LIMIT = 1_000_000  # bytes of a 2xx answer read to count the models it lists
ANTHROPIC_VERSION = "2023-06-01"
PATHS = {"openai": "/models", "anthropic": "/v1/models"}


@dataclass(frozen=True)
class CheckResult:
    """One test call: `status` None when no answer came (then `error` says why)."""

    provider: str
    url: str
    status: int | None
    latency_ms: int
    error: str | None = None
    models: int | None = None  # how many models a 2xx answer lists, if it is a listing

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def summary(self) -> str:
        """'HTTP 200 OK in 35 ms (lists 12 models)', or 'no answer after 5012 ms: …'."""
        if self.status is None:
            return f"no answer after {self.latency_ms} ms: {self.error}"
        try:
            phrase = f" {HTTPStatus(self.status).phrase}"
        except ValueError:
            phrase = ""
        listed = "" if self.models is None else f" (lists {self.models} model{'' if self.models == 1 else 's'})"
        return f"HTTP {self.status}{phrase} in {self.latency_ms} ms{listed}"

    def as_dict(self) -> dict:
        return {"provider": self.provider, "url": self.url, "ok": self.ok, "status": self.status,
                "latency_ms": self.latency_ms, "error": self.error, "models": self.models,
                "summary": self.summary()}


def check(settings: Settings, provider: Provider) -> CheckResult:
    """Call the provider's model list once with its key (see the module's docstring)."""
    url = provider.base_url + PATHS[provider.protocol]
    try:
        key = crypto.decrypt(settings, provider.api_key_encrypted)
    except crypto.SecretError:
        return CheckResult(provider.name, url, None, 0, "its key cannot be read (saved with another installation "
                                                        "secret): enter the key again")
    headers = _auth_headers(provider.protocol, key)
    started = time.monotonic()
    with requests.Session() as http:
        http.trust_env = False  # as nginx calls it: no proxy from the environment, no .netrc credentials
        try:
            with http.get(url, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False,
                          stream=True) as answer:
                latency_ms = _ms_since(started)
                models = _listed_models(answer) if 200 <= answer.status_code < 300 else None
                return CheckResult(provider.name, url, answer.status_code, latency_ms, models=models)
        except requests.RequestException as exc:
            return CheckResult(provider.name, url, None, _ms_since(started), _why(exc).replace(key, "[key]"))


def _auth_headers(protocol: str, key: str) -> dict[str, str]:
    if protocol == "anthropic":
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION, "Accept": "application/json"}
    return {"Authorization": f"Bearer {key}", "Accept": "application/json"}


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _listed_models(answer: requests.Response) -> int | None:
    """The length of the `data` array both protocols answer a model list with; None if the answer
    is not such a list (or is larger than LISTING_LIMIT)."""
    body = answer.raw.read(LISTING_LIMIT + 1, decode_content=True)
    if len(body) > LISTING_LIMIT:
        return None
    try:
        listing = json.loads(body)
    except ValueError:
        return None
    data = listing.get("data") if isinstance(listing, dict) else None
    return len(data) if isinstance(data, list) else None


def _why(exc: requests.RequestException) -> str:
    """A short reason: 'connection refused', 'no connection within 5 s', 'cannot resolve …'."""
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {CONNECT_TIMEOUT} s"
    if isinstance(exc, requests.ReadTimeout):
        return f"no answer within {READ_TIMEOUT} s of connecting"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed: {_root(exc)}"
    root = _root(exc)
    if isinstance(root, socket.gaierror):
        return f"cannot resolve {urlsplit(exc.request.url).hostname}: {root.strerror}"
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    if isinstance(root, OSError) and root.strerror:
        return root.strerror[0].lower() + root.strerror[1:]
    return str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__


def _root(exc: BaseException) -> BaseException:
    """The innermost cause (urllib3 wraps the socket's error in its own, twice)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = exc.__cause__ or exc.__context__
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if inner is None and hasattr(exc, "reason") and isinstance(exc.reason, BaseException):
            inner = exc.reason
        if inner is None:
            return exc
        exc = inner
    return exc
