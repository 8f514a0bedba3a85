"""Routing through the real gateway: several simulated providers behind one model, fallback
before the first byte, cooldown and half-open, aliases, at-cost and fixed prices — each request
billed exactly once, at the price promised. Routing is the hot path's alone: its tests run against
the SQLite instance; those of the charges and of many requests at once against each database."""
from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from harness import Gateway, wait_for
from helpers import balance_nano, bearer, new_customer, only_row, post_raw, request_json, rows_of, tokens_of
from simulator import Simulator, answer, default_answer

# Route costs, USD per 1M tokens (reasoning at the output price, cache writes at the input price).
CHEAP = ("--input", "1", "--cached-input", "0.5", "--output", "2")
DEAR = ("--input", "3", "--cached-input", "1", "--output", "6")

# The openai_chat fixture's usage: 5,561 input, 6,784 cached, 809 output, 1,536 reasoning tokens.
CHAT_TOKENS = {"in": 5561, "cr": 6784, "cw": 0, "cw1h": 0, "out": 809, "rsn": 1536}
# 5,561 × 3,000 + 6,784 × 1,000 + 809 × 6,000 + 1,536 × 6,000 = 37,537,000
CHAT_DEAR = 37_537_000
# 5,561 × 1,000 + 6,784 × 500 + 809 × 2,000 + 1,536 × 2,000 = 13,643,000
CHAT_CHEAP = 13_643_000
# The openai_chat_stream fixture's usage: 318 input, 1,024 cached, 87 output.
STREAM_TOKENS = {"in": 318, "cr": 1024, "cw": 0, "cw1h": 0, "out": 87, "rsn": 0}
# 318 × 3,000 + 1,024 × 1,000 + 87 × 6,000 = 2,500,000
STREAM_DEAR = 2_500_000

HI = [{"role": "user", "content": "Hi"}]
# A provider's error answer (OpenAI's shape).
PROVIDER_ERROR = json.dumps({"error": {"message": "The provider says no.", "type": "server_error", "param": None,
                                       "code": None}}).encode()


def failing(status: int, headers: dict | None = None):
    """The provider's error answer with `status`."""
    return answer(body=PROVIDER_ERROR, status=status, headers=headers)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def add_provider(gw: Gateway, sim: Simulator | None, key: str, url: str | None = None) -> str:
    name = unique("p")
    gw.cli("provider", "add", name, "--protocol", "openai", "--base-url", (url or sim.url) + "/v1", "--api-key", key)
    return name


def two_route_model(gw: Gateway, first: Simulator, second: Simulator, first_url: str | None = None,
                    weights: tuple[int, int] | None = None) -> str:
    """A model served by `first` (cheap, upstream id up-first) and then `second` (dear, up-second;
    the same priority as the first, with `weights`, else the next priority)."""
    model = unique("m")
    gw.cli("model", "add", model, "--provider", add_provider(gw, first, "key-first", first_url),
           "--upstream-model", "up-first", *CHEAP)
    placement = ("--priority", "0", "--weight", str(weights[1])) if weights else ("--priority", "1")
    gw.cli("route", "add", model, "--provider", add_provider(gw, second, "key-second"),
           "--upstream-model", "up-second", *placement, *DEAR)
    if weights:
        first_route = route_list(gw, model)[0]
        gw.cli("route", "remove", model, str(first_route["id"]))
        gw.cli("route", "add", model, "--provider", first_route["provider"], "--upstream-model", "up-first",
               "--priority", "0", "--weight", str(weights[0]), *CHEAP)
    # No wait for the gateway's config cache: nginx has never looked these names up.
    return model


def first_route_answering(gw: Gateway, sims, status: int, *key_args: str) -> tuple[str, str, int]:
    """A two-route model whose first route answers the next request `status`, and a fresh key
    (`tollgate key create` options `key_args`): (model, key, its balance)."""
    first, second = sims
    model = two_route_model(gw, first, second)
    first.enqueue(body=PROVIDER_ERROR, status=status)
    _email, key = new_customer(gw, "10", *key_args)
    return model, key, balance_nano(gw, key)


def route_list(gw: Gateway, model: str) -> list[dict]:
    return json.loads(gw.cli("route", "list", model, "--json").stdout)


def node_states(gw: Gateway, model: str) -> list[list[str]]:
    """Each route's state on each node that does not see it healthy."""
    return [[node["state"] for node in item["nodes"]] for item in route_list(gw, model)]


def chat(gw: Gateway, key: str, model: str, stream: bool = False, **extra):
    body = {"model": model, "messages": HI, **extra}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return post_raw(gw, "/v1/chat/completions", body, {**bearer(key), "Content-Type": "application/json"})


def sql_usage(gw: Gateway, request_id: str) -> dict:
    engine = sa.create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT * FROM usage WHERE request_id = :rid"),
                                     {"rid": request_id}).mappings().one())
    finally:
        engine.dispose()


@pytest.fixture
def sims():
    with Simulator() as first, Simulator() as second:
        yield first, second


RETRIED = [429, 500, 502, 503, 504, 529]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("failure", [*RETRIED, "refused"])
def test_a_failing_first_route_falls_back_and_bills_the_route_that_served(gateway, sims, failure, stream,
                                                                         database_independent):
    first, second = sims
    model = two_route_model(gateway, first, second, first.url_unreachable if failure == "refused" else None)
    if failure != "refused":
        first.enqueue(body=PROVIDER_ERROR, status=failure)
    second.enqueue("openai_chat_stream" if stream else "openai_chat")
    _email, key = new_customer(gateway)
    before = balance_nano(gateway, key)

    status, _headers, body = chat(gateway, key, model, stream)

    assert status == 200, body
    row = only_row(gateway, key)
    tokens, cost = (STREAM_TOKENS, STREAM_DEAR) if stream else (CHAT_TOKENS, CHAT_DEAR)
    assert (tokens_of(row), row["cost_nano"], row["billing_basis"]) == (tokens, cost, "provider")
    assert (row["provider"], row["upstream_model"], row["attempts"]) == (route_list(gateway, model)[1]["provider"],
                                                                         "up-second", 2)
    assert row["failed_statuses"] == [502 if failure == "refused" else failure]
    assert balance_nano(gateway, key) == before - cost
    sent = second.last_request
    assert sent.headers["Authorization"] == "Bearer key-second" and sent.json()["model"] == "up-second"
    if failure != "refused":
        assert first.last_request.headers["Authorization"] == "Bearer key-first"
        assert first.last_request.json()["model"] == "up-first"


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_a_client_error_is_not_retried_and_costs_nothing(gateway, sims, status, database_independent):
    model, key, before = first_route_answering(gateway, sims, status)
    second = sims[1]
    answer_status, _headers, body = chat(gateway, key, model)
    assert answer_status == status  # the provider's own answer
    assert json.loads(body)["error"]
    row = only_row(gateway, key)
    assert (row["cost_nano"], row["attempts"], row["failed_statuses"]) == (0, 1, [])
    assert second.requests == []
    assert balance_nano(gateway, key) == before


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_provider_key_is_a_clear_502_and_marks_the_route(gateway, sims, status, database_independent):
    model, key, before = first_route_answering(gateway, sims, status)
    second = sims[1]
    answer_status, _headers, body = chat(gateway, key, model)
    assert answer_status == 502
    error = json.loads(body)["error"]
    assert error["code"] == "provider_credentials_refused"
    assert "Your Tollgate key is fine" in error["message"] and f"answered {status}" in error["message"]
    assert second.requests == []
    assert only_row(gateway, key)["cost_nano"] == 0 and balance_nano(gateway, key) == before
    wait_for(lambda: node_states(gateway, model)[0] == ["refused"], 10, "the route shown refused")


def test_no_fallback_once_a_byte_reached_the_client(gateway, sims, database_independent):
    first, second = sims
    model = two_route_model(gateway, first, second)
    first.enqueue("openai_chat_stream", chunking=[64] * 40, cut_after=3)
    _email, key = new_customer(gateway)
    status, _headers, _body = chat(gateway, key, model, stream=True)
    assert status == 200
    row = only_row(gateway, key)
    assert (row["billing_basis"], row["attempts"], row["upstream_model"]) == ("estimated", 1, "up-first")
    assert second.requests == []


def test_every_route_failing_answers_the_last_failure_and_charges_nothing(gateway, sims, database_independent):
    first, second = sims
    model = two_route_model(gateway, first, second)
    first.enqueue(body=PROVIDER_ERROR, status=503)
    second.enqueue("errors/openai_rate_limit", status=429, headers={"retry-after": "7"})
    _email, key = new_customer(gateway)
    before = balance_nano(gateway, key)
    status, headers, body = chat(gateway, key, model)
    assert status == 429 and headers["Retry-After"] == "7"
    assert json.loads(body)["error"]["code"] == "provider_rate_limited"
    row = only_row(gateway, key)
    assert (row["cost_nano"], row["attempts"], row["failed_statuses"]) == (0, 2, [503, 429])
    assert balance_nano(gateway, key) == before


def test_weights_share_requests_three_to_one(gateway, sims, database_independent):
    first, second = sims
    model = two_route_model(gateway, first, second, weights=(3, 1))
    _email, key = new_customer(gateway, "100")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: chat(gateway, key, model)[0], range(400)))
    assert statuses == [200] * 400
    # Binomial(400, 3/4): mean 300, standard deviation √(400 × 3/4 × 1/4) ≈ 8.7; within 5 of them
    # (257..343) but once in ~3.5 million runs by chance.
    assert 257 <= len(first.requests) <= 343, len(first.requests)
    assert len(first.requests) + len(second.requests) == 400


def test_an_alias_is_served_and_billed_as_its_model(gateway, sims, database_independent):
    first, second = sims
    model = two_route_model(gateway, first, second)
    alias = unique("alias")
    gateway.cli("alias", "add", alias, model)
    first.enqueue("openai_chat")
    _email, key = new_customer(gateway)
    status, _headers, _body = chat(gateway, key, alias)
    assert status == 200
    row = only_row(gateway, key)
    assert (row["model"], row["requested_model"], row["cost_nano"]) == (model, alias, CHAT_CHEAP)
    status, _headers, listed = request_json(gateway, "GET", "/v1/models", bearer(key))
    assert status == 200
    names = [m["id"] for m in listed["data"]]
    assert alias in names and model in names


def test_a_fixed_price_model_charges_its_price_and_records_the_route_cost(gateway, sims):
    model, key, before = first_route_answering(gateway, sims, 503)
    gateway.cli("model", "price", model, "--input", "10", "--cached-input", "5", "--output", "20")
    sims[1].enqueue("openai_chat")
    assert chat(gateway, key, model)[0] == 200
    row = only_row(gateway, key)
    # 5,561 × 10,000 + 6,784 × 5,000 + 809 × 20,000 + 1,536 × 20,000 = 136,430,000
    assert row["cost_nano"] == 136_430_000
    assert balance_nano(gateway, key) == before - 136_430_000
    assert sql_usage(gateway, row["request_id"])["provider_cost_nano"] == CHAT_DEAR


def test_a_key_capping_fallbacks_pays_at_most_the_first_routes_price(gateway, sims):
    model, key, before = first_route_answering(gateway, sims, 503, "--cap-fallback-price")
    sims[1].enqueue("openai_chat")
    assert chat(gateway, key, model)[0] == 200
    row = only_row(gateway, key)
    assert (row["cost_nano"], row["upstream_model"]) == (CHAT_CHEAP, "up-second")
    assert balance_nano(gateway, key) == before - CHAT_CHEAP
    assert sql_usage(gateway, row["request_id"])["provider_cost_nano"] == CHAT_DEAR


def test_exactly_one_record_per_request_while_a_route_fails_half_its_requests(gateway, sims):
    first, second = sims
    model = two_route_model(gateway, first, second, weights=(1, 1))
    flips = iter(range(10**6))
    first.answer_with(lambda request: failing(503) if next(flips) % 2 else default_answer(request))
    _email, key = new_customer(gateway, "100")
    before = balance_nano(gateway, key)
    with ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(lambda _: chat(gateway, key, model)[0], range(100)))
    assert statuses == [200] * 100
    rows = rows_of(gateway, key, 100, 60)
    assert len({row["request_id"] for row in rows}) == 100
    charged = sum(row["cost_nano"] for row in rows)
    assert balance_nano(gateway, key) == before - charged
    assert all(row["cost_nano"] == (CHAT_CHEAP if row["upstream_model"] == "up-first" else CHAT_DEAR) for row in rows)
    gateway.wait_drained()
    ok, report = gateway.reconciled()
    assert ok, report


# The instance of the tests below: 2 failures within 30 s cool a route for 3 s; 2 attempts at
# most; an answer within 1 s. Each test has models and routes of its own, so their health is too.
TUNED = {"TOLLGATE_ROUTE_FAILS": "2", "TOLLGATE_ROUTE_FAIL_WINDOW_SECONDS": "30",
         "TOLLGATE_ROUTE_COOLDOWN_SECONDS": "3", "TOLLGATE_MAX_ATTEMPTS": "2", "TOLLGATE_UPSTREAM_READ_TIMEOUT": "1"}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A running instance with the TUNED settings (SQLite: the tests using it are the hot path's)."""
    gw = Gateway(tmp_path_factory.mktemp("tuned") / "gw", None, extra_env=TUNED).start()
    yield gw
    gw.stop()


def test_a_failing_route_cools_then_one_request_tries_it(database_independent, tuned):
    gw = tuned
    with Simulator() as first, Simulator() as second:
        model = two_route_model(gw, first, second)
        first.answer_with(lambda request: failing(503))
        _email, key = new_customer(gw, "100")
        assert [chat(gw, key, model)[0] for _ in range(2)] == [200, 200]
        assert len(first.requests) == 2  # two failures: cooling now
        wait_for(lambda: node_states(gw, model)[0] == ["cooling"], 10, "the route shown cooling")
        assert [chat(gw, key, model)[0] for _ in range(5)] == [200] * 5
        assert len(first.requests) == 2  # skipped while it cools
        time.sleep(3.2)
        assert node_states(gw, model)[0] == ["half_open"]
        first.answer_with(None)  # answers again
        assert chat(gw, key, model)[0] == 200  # half-open: this one tries it, and it answers
        assert len(first.requests) == 3
        assert [chat(gw, key, model)[0] for _ in range(4)] == [200] * 4
        assert len(first.requests) == 7  # healthy again: it takes all traffic (priority 0)
        wait_for(lambda: route_list(gw, model)[0]["state"] == "healthy", 10, "the route shown healthy")


@pytest.mark.parametrize("retry_after, cools", [("30", True), ("1e308", True), ("nan", False), ("-5", False)])
def test_retry_after_cools_the_route_at_least_that_long(database_independent, tuned, retry_after, cools):
    gw = tuned
    with Simulator() as first, Simulator() as second:
        model = two_route_model(gw, first, second)
        first.enqueue("errors/openai_rate_limit", status=429, headers={"retry-after": retry_after})
        _email, key = new_customer(gw, "100")
        assert chat(gw, key, model)[0] == 200
        if not cools:  # not a number of seconds: one failure of two, the route still serves
            assert chat(gw, key, model)[0] == 200
            assert (len(first.requests), len(second.requests)) == (2, 1)
            return
        assert [chat(gw, key, model)[0] for _ in range(3)] == [200] * 3
        time.sleep(3.5)  # longer than the cooldown, shorter than Retry-After
        assert chat(gw, key, model)[0] == 200
        assert (len(first.requests), len(second.requests)) == (1, 5)
        [[view]] = [item["nodes"] for item in route_list(gw, model)[:1]]
        assert view["state"] == "cooling" and view["until_ms"] <= time.time() * 1000 + 3_600_000  # an hour at most


def test_max_attempts_bounds_the_routes_tried(database_independent, tuned):
    gw = tuned
    with Simulator() as first, Simulator() as second, Simulator() as third:
        model = two_route_model(gw, first, second)
        gw.cli("route", "add", model, "--provider", add_provider(gw, third, "key-third"), "--priority", "2", *DEAR)
        first.enqueue(body=PROVIDER_ERROR, status=500)
        second.enqueue(body=PROVIDER_ERROR, status=503)
        _email, key = new_customer(gw)
        status, _headers, body = chat(gw, key, model)
        assert status == 502 and json.loads(body)["error"]["code"] == "provider_error"
        assert third.requests == []
        row = only_row(gw, key)
        assert (row["attempts"], row["failed_statuses"], row["cost_nano"]) == (2, [500, 503], 0)


def test_a_route_that_does_not_answer_in_time_falls_back(database_independent, tuned):
    gw = tuned
    with Simulator() as first, Simulator() as second:
        model = two_route_model(gw, first, second)
        first.enqueue_hang()
        second.enqueue("openai_chat")
        _email, key = new_customer(gw)
        assert chat(gw, key, model)[0] == 200
        row = only_row(gw, key)
        assert (row["upstream_model"], row["attempts"], row["failed_statuses"], row["cost_nano"]) == (
            "up-second", 2, [504], CHAT_DEAR)
