"""What crosses the gateway at the HTTP level: requests nginx itself rejects are answered in the
protocol's JSON error shape (sent as exact bytes over a raw socket), only the allowed client
headers reach the provider, and only the allowed provider headers reach the client."""
from __future__ import annotations

import http.client
import json
import time
import uuid

import pytest
from helpers import CACHE_SECONDS, UPSTREAM_KEY, exchange, new_customer, tg
from simulator import module_simulator  # noqa: F401 (the module's `sim` fixture)

# nginx-level behaviour: the same whatever database the instance uses.
pytestmark = pytest.mark.usefixtures("database_independent")

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def post_head(path: str, *lines: bytes, method: bytes = b"POST", version: bytes = b"HTTP/1.1") -> bytes:
    """A request head for `path` with the given header lines and an empty body."""
    head = [method + b" " + path.encode() + b" " + version, b"Host: 127.0.0.1", *lines,
            b"Content-Length: 0", b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n"


def error_of(body: bytes, protocol: str) -> dict:
    """The error object of a body in the protocol's shape (which it must be)."""
    parsed = json.loads(body)
    if protocol == "anthropic":
        assert parsed["type"] == "error"
        assert set(parsed["error"]) == {"type", "message"}
    else:
        assert set(parsed) == {"error"}
        assert set(parsed["error"]) == {"message", "type", "param", "code"}
    assert parsed["error"]["message"]
    return parsed["error"]


# (request bytes, status, catalogue code, protocol): each is rejected by nginx before any Lua runs.
NGINX_REJECTS = {
    "duplicate Authorization": (post_head(CHAT, b"Authorization: Bearer a", b"Authorization: Bearer b"),
                                400, "bad_request", "openai"),
    "duplicate Authorization, Anthropic path": (
        post_head(MESSAGES, b"Authorization: Bearer a", b"Authorization: Bearer b"), 400, "bad_request", "anthropic"),
    "duplicate Host": (post_head(CHAT, b"Host: evil.example"), 400, "bad_request", "openai"),
    "duplicate Content-Length": (post_head(CHAT, b"Content-Length: 5"), 400, "bad_request", "openai"),
    "NUL in a header": (post_head(CHAT, b"X-Note: a\x00b"), 400, "bad_request", "openai"),
    "CR in a header": (post_head(MESSAGES, b"X-Note: a\rb"), 400, "bad_request", "anthropic"),
    "lowercase method": (post_head(CHAT, method=b"post"), 400, "bad_request", "openai"),
    "lowercase method, Anthropic path": (post_head(MESSAGES, method=b"post"), 400, "bad_request", "anthropic"),
    "%00 in the path": (post_head("/v1/messages%00"), 400, "bad_request", "anthropic"),
    "not HTTP": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "bad_request", "openai"),
    "Transfer-Encoding on HTTP/1.0": (post_head(CHAT, b"Transfer-Encoding: chunked", version=b"HTTP/1.0"),
                                      400, "bad_request", "openai"),
    "header over 8 KB": (post_head(MESSAGES, b"X-Big: " + b"a" * 9000), 431, "headers_too_large", "anthropic"),
    "headers over 32 KB together": (post_head(CHAT, *(b"X-Part-%d: %s" % (i, b"a" * 7000) for i in range(5))),
                                    431, "headers_too_large", "openai"),
    "URI over 8 KB": (post_head(MESSAGES + "?q=" + "a" * 9000), 414, "uri_too_long", "anthropic"),
    "TE: xchunked": (post_head(CHAT, b"TE: trailers", b"Transfer-Encoding: xchunked"),
                     501, "transfer_encoding_not_supported", "openai"),
    "TRACE": (post_head(MESSAGES, method=b"TRACE"), 405, "method_not_supported", "anthropic"),
    "HTTP/2.0 request line": (post_head(CHAT, version=b"HTTP/2.0"), 505, "http_version_not_supported", "openai"),
    "the error location asked from outside": (post_head("/_tollgate/error", method=b"GET"),
                                              404, "path_not_found", "openai"),
}


@pytest.mark.parametrize("case", NGINX_REJECTS)
def test_a_request_nginx_rejects_is_answered_in_the_protocols_json_shape(gateway, case):
    raw, status, code, protocol = NGINX_REJECTS[case]
    got, headers, body = exchange(gateway, raw)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"]
    error = error_of(body, protocol)
    if protocol == "openai":
        assert error["code"] == code
    else:
        assert error["type"] == "invalid_request_error"


def test_trace_is_told_which_method_was_refused(gateway):
    _, _, body = exchange(gateway, post_head(CHAT, method=b"TRACE"))
    assert "TRACE" in error_of(body, "openai")["message"]


def test_a_rejected_request_is_logged_with_the_method_and_path_it_sent(gateway):
    _, headers, _ = exchange(gateway, post_head(MESSAGES + "?beta=true", method=b"TRACE"))
    rid = headers["x-request-id"]
    log = gateway.home / "log" / "access.log"
    deadline = time.monotonic() + 5  # the access log is flushed every second
    while rid not in log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.2)
    line = next(line for line in log.read_text(errors="replace").splitlines() if rid in line)
    assert '"TRACE /v1/messages" 405' in line


def test_control_plane_unreachable_is_503_in_json(gateway):
    sock = gateway.home / "run" / "gunicorn.sock"
    moved = sock.with_name("gunicorn.sock.moved")
    sock.rename(moved)
    try:
        status, headers, body = exchange(gateway, post_head("/api/v1/balance", method=b"GET"))
    finally:
        moved.rename(sock)
    assert status == 503
    assert headers["content-type"] == "application/json"
    error = error_of(body, "openai")
    assert error["code"] == "control_plane_unavailable"
    assert headers["x-request-id"] in error["message"]


# -- headers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(gateway, sim):
    """An OpenAI-protocol and an Anthropic-protocol model served by the simulator."""
    suffix = uuid.uuid4().hex[:6]
    names = {"openai": f"edge-chat-{suffix}", "anthropic": f"edge-claude-{suffix}"}
    for protocol, base in (("openai", sim.url + "/v1"), ("anthropic", sim.url)):
        provider = f"edge-{protocol}-{suffix}"
        tg(gateway, "provider", "add", provider, "--protocol", protocol, "--base-url", base,
           "--api-key", UPSTREAM_KEY)
        tg(gateway, "model", "add", names[protocol], "--provider", provider, "--input", "1", "--output", "2")
    time.sleep(CACHE_SECONDS)
    return names


@pytest.fixture
def key(gateway):
    return new_customer(gateway)[1]


def call(gateway, path: str, body: dict, headers: list[tuple[str, str]]):
    """(status, headers as (name, value) pairs, body bytes) over http.client, headers sent as given."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        data = json.dumps(body).encode()
        for name, value in [*headers, ("Content-Length", str(len(data)))]:
            conn.putheader(name, value)
        conn.endheaders(data)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def chat(model: str, stream: bool = False) -> dict:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    return {**body, "stream": True} if stream else body


ALLOWED_CLIENT_HEADERS = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json"),
    ("User-Agent", "OpenAI/Python 1.0"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "prompt-caching-2024-07-31"),
    ("OpenAI-Beta", "assistants=v2"),
    ("Idempotency-Key", "idem-123"),
]
FORBIDDEN_CLIENT_HEADERS = [
    ("Cookie", "session=abc"),
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("Forwarded", "for=203.0.113.9"),
    ("X-Real-IP", "203.0.113.9"),
    ("Via", "1.1 client-proxy"),
    ("OpenAI-Organization", "org-client"),
    ("OpenAI-Project", "proj-client"),
    ("anthropic-workspace-id", "wrkspc-client"),
    ("X-Stainless-OS", "Linux"),
    ("X-Stainless-Retry-Count", "0"),
    ("Accept-Encoding", "gzip"),
    ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
    ("Origin", "https://evil.example"),
]
JUNK_CLIENT_HEADERS = [(f"X-Junk-{i}", f"v{i}") for i in range(200)]


@pytest.mark.parametrize("protocol,path,credential", [
    ("openai", CHAT, "Authorization"), ("anthropic", MESSAGES, "x-api-key")])
def test_only_the_allowed_client_headers_reach_the_provider(gateway, sim, models, key, protocol, path, credential):
    value = f"Bearer {key}" if credential == "Authorization" else key
    status, _, _ = call(gateway, path, chat(models[protocol]),
                        [(credential, value), *ALLOWED_CLIENT_HEADERS, *FORBIDDEN_CLIENT_HEADERS,
                         *JUNK_CLIENT_HEADERS])
    assert status == 200
    got = sim.last_request.headers
    provider_credential = ("Authorization", f"Bearer {UPSTREAM_KEY}") if protocol == "openai" \
        else ("x-api-key", UPSTREAM_KEY)
    expected = {"host", "content-length", provider_credential[0].lower(),
                *(name.lower() for name, _ in ALLOWED_CLIENT_HEADERS)}
    assert {name.lower() for name in got.keys()} == expected
    assert got[provider_credential[0]] == provider_credential[1]
    for name, value in ALLOWED_CLIENT_HEADERS:
        assert got[name] == value
    assert key not in str(got)


def test_a_client_header_not_sent_is_not_sent_on(gateway, sim, models, key):
    status, _, _ = call(gateway, CHAT, chat(models["openai"]),
                        [("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")])
    assert status == 200
    assert {name.lower() for name in sim.last_request.headers.keys()} == {
        "host", "content-length", "authorization", "content-type"}


PROVIDER_ONLY_HEADERS = [
    ("Set-Cookie", "__cf_bm=abc; path=/; HttpOnly"),
    ("Set-Cookie", "_cfuvid=def; path=/"),
    ("openai-organization", "org-operator"),
    ("openai-project", "proj-operator"),
    ("anthropic-organization-id", "org-operator"),
    ("anthropic-ratelimit-requests-limit", "4000"),
    ("anthropic-ratelimit-tokens-remaining", "399000"),
    ("x-ratelimit-limit-requests", "5000"),
    ("cf-ray", "8f0c0ffee-AMS"),
    ("cf-cache-status", "DYNAMIC"),
    ("Server", "cloudflare"),
    ("Via", "1.1 google"),
    ("alt-svc", 'h3=":443"; ma=86400'),
    ("strict-transport-security", "max-age=31536000"),
    ("access-control-expose-headers", "X-Request-ID"),
    ("x-envoy-upstream-service-time", "120"),
    ("x_under_score", "1"),
    *((f"x-junk-{i}", "v") for i in range(150)),
]
PROVIDER_KEPT_HEADERS = [
    ("retry-after", "1"),
    ("retry-after-ms", "1000"),
    ("x-should-retry", "false"),
    ("openai-version", "2020-10-01"),
    ("openai-processing-ms", "321"),
    ("request-id", "req_provider_1"),
    ("cache-control", "no-cache"),
]


def provider_answer_headers(headers):
    return {name.lower() for name, _ in headers} - {"date", "server", "connection", "transfer-encoding"}


@pytest.mark.parametrize("protocol,path,fixture,stream", [
    ("openai", CHAT, "openai_chat", False), ("openai", CHAT, "openai_chat_stream", True),
    ("anthropic", MESSAGES, "anthropic_message", False), ("anthropic", MESSAGES, "anthropic_stream", True)])
def test_only_the_allowed_provider_headers_reach_the_client(gateway, sim, models, key, protocol, path,
                                                             fixture, stream):
    sim.enqueue(fixture, headers=[*PROVIDER_ONLY_HEADERS, *PROVIDER_KEPT_HEADERS])
    credential = ("Authorization", f"Bearer {key}") if protocol == "openai" else ("x-api-key", key)
    status, headers, _ = call(gateway, path, chat(models[protocol], stream),
                              [credential, ("Content-Type", "application/json")])
    assert status == 200
    received = provider_answer_headers(headers)
    assert received - {"content-length"} == {"content-type", "x-request-id", "x-upstream-request-id",
                                             *(name for name, _ in PROVIDER_KEPT_HEADERS)}
    values = dict(headers)
    for name, value in PROVIDER_KEPT_HEADERS:
        assert values[name] == value
    assert "cloudflare" not in str(headers)


def test_the_clients_connection_is_kept_alive_across_metered_requests(gateway, sim, models, key):
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        ports = []
        for _ in range(2):
            conn.request("POST", CHAT, body=json.dumps(chat(models["openai"])),
                         headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            assert not resp.will_close
            ports.append(conn.sock.getsockname()[1])
        assert ports[0] == ports[1]
    finally:
        conn.close()


def test_a_provider_error_answer_keeps_its_retry_headers_and_loses_its_cookies(gateway, sim, models, key):
    sim.enqueue("errors/openai_rate_limit", status=429,
                headers=[("retry-after", "7"), ("Set-Cookie", "__cf_bm=abc"), ("openai-organization", "org-op")])
    status, headers, body = call(gateway, CHAT, chat(models["openai"]),
                                 [("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")])
    assert status == 429
    names = provider_answer_headers(headers)
    assert "retry-after" in names
    assert not names & {"set-cookie", "openai-organization"}
    assert json.loads(body)["error"]


def test_the_gateways_rate_limit_headers_replace_the_providers(gateway, sim, models):
    _, limited = new_customer(gateway, "10", "--rpm", "100")
    sim.enqueue("openai_chat", headers={"x-ratelimit-limit-requests": "5000",
                                        "x-ratelimit-remaining-tokens": "149000"})
    status, headers, _ = call(gateway, CHAT, chat(models["openai"]),
                              [("Authorization", f"Bearer {limited}"), ("Content-Type", "application/json")])
    assert status == 200
    values = dict((name.lower(), value) for name, value in headers)
    assert values["x-ratelimit-limit-requests"] == "100"
    assert "x-ratelimit-remaining-tokens" not in values
