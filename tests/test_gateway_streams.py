"""Golden provider answers through the real gateway, split at every byte and at random, billed to
the nano-dollar from the provider's own usage; and what happens when the client leaves, the
provider cuts the stream, answers an error, or never answers."""
from __future__ import annotations

import json
import random
import socket
import time
import uuid
import zlib
from decimal import Decimal

import pytest
from harness import Gateway
from helpers import (
    ANTHROPIC_VERSION,
    CACHE_SECONDS,
    UPSTREAM_KEY,
    api_get,
    balance_nano,
    new_customer,
    post_raw,
    rows_of,
    tg,
    tokens_of,
)
from simulator import (
    FIXTURES,
    fixture_path,
    iter_fixtures,
    module_simulator,  # noqa: F401 (the module's `sim` fixture)
)

ANTHROPIC_BETA = "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
PRICE_FLAGS = (("input", "--input"), ("output", "--output"), ("cached_input", "--cached-input"),
               ("cache_write", "--cache-write"), ("cache_write_1h", "--cache-write-1h"),
               ("reasoning", "--reasoning"))


def sidecar(name: str) -> dict:
    path = fixture_path(name)
    return json.loads(path.with_name(path.name.rsplit(".", 1)[0] + ".expected.json").read_text())


GOLDEN = [n.rsplit(".", 1)[0] for n in iter_fixtures()
          if (FIXTURES / (n.rsplit(".", 1)[0] + ".expected.json")).is_file()]


def endpoint_of(name: str, expected: dict) -> str:
    if expected["format"] == "anthropic":
        return "/v1/messages"
    if expected["format"] == "responses":
        return "/v1/responses"
    if "embeddings" in name:
        return "/v1/embeddings"
    if "completions" in name:
        return "/v1/completions"
    return "/v1/chat/completions"


# The golden answers were recorded with long prompts (up to ~25,000 input tokens) and answers (up
# to 2,345 output tokens): a request must hold at least that much for its charge to be the exact
# cost rather than capped at the hold (every body byte is held as an input token).
PROMPT = "Bonjour, 世界 🌍 " + "The ledger balances. " * 1600
MAX_OUTPUT = 4096


def request_body(path: str, model: str, stream: bool) -> dict:
    if path == "/v1/messages":
        body = {"model": model, "max_tokens": MAX_OUTPUT, "messages": [{"role": "user", "content": PROMPT}]}
    elif path == "/v1/responses":
        body = {"model": model, "max_output_tokens": MAX_OUTPUT, "input": PROMPT}
    elif path == "/v1/embeddings":
        return {"model": model, "input": PROMPT, "dimensions": 8}
    elif path == "/v1/completions":
        body = {"model": model, "max_tokens": MAX_OUTPUT, "prompt": PROMPT}
    else:
        body = {"model": model, "max_tokens": MAX_OUTPUT, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
        if path in ("/v1/chat/completions", "/v1/completions"):
            body["stream_options"] = {"include_usage": True}
    return body


def client_headers(path: str, key: str) -> dict:
    if path.startswith("/v1/messages"):
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION, "anthropic-beta": ANTHROPIC_BETA,
                "Content-Type": "application/json"}
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def usd_per_million(nano_per_million: int) -> str:
    """The CLI's price text for a price in nano-USD per million tokens, exactly."""
    return format(Decimal(nano_per_million) / Decimal(10**9), "f")


def add_model(gateway, name: str, provider: str, price: dict) -> None:
    args = ["model", "add", name, "--provider", provider]
    for field, flag in PRICE_FLAGS:
        args += [flag, usd_per_million(price[field])]
    tg(gateway, *args)


def worst_case_hold(raw_len: int, max_output: int, price: dict) -> int:
    """cost.worst_case of lua/tollgate/cost.lua: every request byte a token at the dearest input
    price, max_output tokens at the dearer output price, rounded up."""
    in_price = max(price["input"], price["cached_input"], price["cache_write"], price["cache_write_1h"])
    out_price = max(price["output"], price["reasoning"])
    total = raw_len * in_price + max_output * out_price
    return -(-total // 1_000_000)


def random_chunking(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 97) for _ in range(400)]


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden(gateway, sim):
    """Providers at the simulator and one model per golden fixture, priced as its sidecar."""
    suffix = uuid.uuid4().hex[:6]
    providers = {"openai": f"sim-openai-{suffix}", "anthropic": f"sim-anthropic-{suffix}"}
    tg(gateway, "provider", "add", providers["openai"], "--protocol", "openai",
                "--base-url", sim.url + "/v1", "--api-key", UPSTREAM_KEY)
    tg(gateway, "provider", "add", providers["anthropic"], "--protocol", "anthropic",
                "--base-url", sim.url, "--api-key", UPSTREAM_KEY)
    models = {}
    for name in GOLDEN:
        expected = sidecar(name)
        protocol = "anthropic" if expected["format"] == "anthropic" else "openai"
        model = f"golden-{name.replace('_', '-')}-{suffix}"
        add_model(gateway, model, providers[protocol], expected["price"])
        models[name] = model
    time.sleep(CACHE_SECONDS)
    return models


# -- golden fixtures ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", GOLDEN)
def test_golden_answer_is_billed_exactly_at_every_chunking(gateway, sim, golden, name):
    expected = sidecar(name)
    path = endpoint_of(name, expected)
    _, key = new_customer(gateway)
    before = balance_nano(gateway, key)
    chunkings = ["bytes", random_chunking(zlib.crc32(name.encode())), random_chunking(7 + len(name))]
    fixture_bytes = fixture_path(name).read_bytes()
    for chunking in chunkings:
        sim.enqueue(name, chunking=chunking)
        body = request_body(path, golden[name], expected["stream"])
        status, _, data = post_raw(gateway, path, body, client_headers(path, key))
        assert status == 200, data[:500]
        assert data == fixture_bytes, f"the client did not get the provider's answer unchanged ({chunking!r})"

    rows = rows_of(gateway, key, len(chunkings))
    for row in rows:
        assert tokens_of(row) == expected["usage"]
        assert row["cost_nano"] == expected["cost"]
        assert row["billing_basis"] == "provider"
        assert row["stream"] is expected["stream"]
    assert balance_nano(gateway, key) == before - len(chunkings) * expected["cost"]


@pytest.mark.usefixtures("database_independent")
def test_openai_provider_gets_the_provider_key_never_the_clients(gateway, sim, golden):
    _, key = new_customer(gateway)
    sim.enqueue("openai_chat")
    status, _, _ = post_raw(gateway, "/v1/chat/completions",
                            request_body("/v1/chat/completions", golden["openai_chat"], False),
                            {**client_headers("/v1/chat/completions", key),
                             "OpenAI-Organization": "org-client", "x-api-key": key})
    assert status == 200
    got = sim.last_request
    assert got.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert got.headers.get("x-api-key") is None
    assert got.headers.get("OpenAI-Organization") is None
    assert key not in str(got.headers)
    assert got.path == "/v1/chat/completions"


@pytest.mark.parametrize("answer,status", [("openai_chat", 200), ("errors/openai_rate_limit", 429)])
@pytest.mark.usefixtures("database_independent")
def test_the_providers_request_id_is_sent_on_beside_the_gateways(gateway, sim, golden, answer, status):
    _, key = new_customer(gateway)
    sim.enqueue(answer, status=status)
    got, headers, _ = post_raw(gateway, "/v1/chat/completions",
                               request_body("/v1/chat/completions", golden["openai_chat"], False),
                               client_headers("/v1/chat/completions", key))
    assert got == status
    assert headers["x-upstream-request-id"].startswith("req_sim_")
    assert len(headers["x-request-id"]) == 32


@pytest.mark.usefixtures("database_independent")
def test_anthropic_provider_gets_the_provider_key_and_the_anthropic_headers(gateway, sim, golden):
    _, key = new_customer(gateway)
    sim.enqueue("anthropic_message")
    status, _, _ = post_raw(gateway, "/v1/messages",
                            request_body("/v1/messages", golden["anthropic_message"], False),
                            {**client_headers("/v1/messages", key), "Authorization": f"Bearer {key}"})
    assert status == 200
    got = sim.last_request
    assert got.headers["x-api-key"] == UPSTREAM_KEY
    assert got.headers.get("Authorization") is None
    assert got.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert got.headers["anthropic-beta"] == ANTHROPIC_BETA
    assert key not in str(got.headers)
    assert got.path == "/v1/messages"


# -- disconnects and broken streams -------------------------------------------------------------

def _raw_request(gateway, path: str, body: dict, headers: dict) -> bytes:
    data = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{gateway.port}", f"Content-Length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


@pytest.mark.parametrize("name", ["openai_chat_stream", "anthropic_stream"])
def test_client_gone_mid_stream_is_billed_from_the_drained_usage(gateway, sim, golden, name):
    expected = sidecar(name)
    path = endpoint_of(name, expected)
    _, key = new_customer(gateway)
    before = balance_nano(gateway, key)
    size = len(fixture_path(name).read_bytes())
    sim.enqueue(name, chunking=[size // 20 + 1], delay=0.1)  # ~2 s upstream

    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    sock.sendall(_raw_request(gateway, path, request_body(path, golden[name], True), client_headers(path, key)))
    got = b""
    while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < 100:
        piece = sock.recv(4096)
        assert piece, got
        got += piece
    assert got.startswith(b"HTTP/1.1 200")
    sock.close()

    row = rows_of(gateway, key, 1)[0]
    assert row["billing_basis"] == "drained"
    assert tokens_of(row) == expected["usage"]
    assert row["cost_nano"] == expected["cost"]
    assert balance_nano(gateway, key) == before - expected["cost"]


@pytest.mark.parametrize("name", ["openai_chat_stream", "anthropic_stream", "openai_responses_stream"])
def test_stream_cut_before_usage_is_billed_an_estimate_within_the_hold(gateway, sim, golden, name):
    expected = sidecar(name)
    path = endpoint_of(name, expected)
    _, key = new_customer(gateway)
    before = balance_nano(gateway, key)
    fixture_bytes = fixture_path(name).read_bytes()
    # Inside the stream, before the last usage report (OpenAI's last chunk, Anthropic's message_delta).
    marker = {"openai_chat_stream": b'"choices":[]', "anthropic_stream": b"event: message_delta",
              "openai_responses_stream": b"event: response.completed"}[name]
    cut = fixture_bytes.rindex(marker) - 40
    sim.enqueue(name, chunking=[64], cut_after=cut)
    body = request_body(path, golden[name], True)
    status, _, data = post_raw(gateway, path, body, client_headers(path, key))
    assert status == 200
    assert len(data) <= cut

    row = rows_of(gateway, key, 1)[0]
    hold = worst_case_hold(len(json.dumps(body).encode()), MAX_OUTPUT, expected["price"])
    assert row["billing_basis"] == "estimated"
    assert 0 < row["cost_nano"] <= hold
    assert balance_nano(gateway, key) == before - row["cost_nano"]


def _assert_nothing_charged(gateway, email, key, before):
    gateway.wait_drained()
    time.sleep(0.3)
    gateway.wait_drained()
    assert balance_nano(gateway, key) == before
    assert all(row["cost_nano"] == 0 for row in api_get(gateway, key, "/api/v1/usage")["data"])


def test_openai_upstream_429_reaches_the_client_unchanged_and_charges_nothing(gateway, sim, golden):
    email, key = new_customer(gateway)
    before = balance_nano(gateway, key)
    error_body = (FIXTURES / "errors" / "openai_rate_limit.json").read_bytes()
    sim.enqueue("errors/openai_rate_limit", status=429, headers={"retry-after": "1"})
    status, headers, data = post_raw(gateway, "/v1/chat/completions",
                                     request_body("/v1/chat/completions", golden["openai_chat_stream"], True),
                                     client_headers("/v1/chat/completions", key))
    assert status == 429
    assert data == error_body
    assert headers.get("retry-after") == "1"
    _assert_nothing_charged(gateway, email, key, before)


def test_anthropic_upstream_529_overloaded_reaches_the_client_unchanged_and_charges_nothing(gateway, sim, golden):
    email, key = new_customer(gateway)
    before = balance_nano(gateway, key)
    error_body = (FIXTURES / "errors" / "anthropic_overloaded.json").read_bytes()
    sim.enqueue("errors/anthropic_overloaded", status=529)
    status, _, data = post_raw(gateway, "/v1/messages",
                               request_body("/v1/messages", golden["anthropic_stream"], True),
                               client_headers("/v1/messages", key))
    assert status == 529
    assert data == error_body
    _assert_nothing_charged(gateway, email, key, before)


# -- provider timeout: an instance with a 2 s read timeout ---------------------------------------

@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory, sim):
    gw = Gateway(tmp_path_factory.mktemp("gateway-timeout"),
                 extra_env={"TOLLGATE_UPSTREAM_READ_TIMEOUT": "2"}).start()
    tg(gw, "provider", "add", "hang-openai", "--protocol", "openai", "--base-url", sim.url + "/v1",
           "--api-key", UPSTREAM_KEY)
    tg(gw, "provider", "add", "hang-anthropic", "--protocol", "anthropic", "--base-url", sim.url,
           "--api-key", UPSTREAM_KEY)
    tg(gw, "model", "add", "hang-chat", "--provider", "hang-openai", "--input", "1", "--output", "2")
    tg(gw, "model", "add", "hang-claude", "--provider", "hang-anthropic", "--input", "3", "--output", "15")
    time.sleep(CACHE_SECONDS)
    yield gw
    gw.stop()


@pytest.mark.parametrize("path,model", [("/v1/chat/completions", "hang-chat"), ("/v1/messages", "hang-claude")])
def test_provider_timeout_is_504_in_the_protocols_shape_and_charges_nothing(slow_gateway, sim, path, model):
    email, key = new_customer(slow_gateway)
    before = balance_nano(slow_gateway, key)
    sim.enqueue_hang()
    started = time.monotonic()
    status, headers, data = post_raw(slow_gateway, path, request_body(path, model, False),
                                     client_headers(path, key), timeout=15)
    assert status == 504
    assert 1.5 < time.monotonic() - started < 10
    body = json.loads(data)
    if path == "/v1/messages":
        assert body["type"] == "error"
        assert body["error"]["type"] == "timeout_error"
        message = body["error"]["message"]
    else:
        assert body["error"]["code"] == "provider_timeout"
        message = body["error"]["message"]
    assert "did not answer in time" in message
    assert headers["x-request-id"] in message
    _assert_nothing_charged(slow_gateway, email, key, before)
