"""A hostile client through the real gateway (issue 10, the hot path's client side): integer parameters that are no integers or overflow the worst case, fan-out, duplicate and escaped
field names, streams that did not ask for usage, and what a 402 says the funds pay for.

Figures by hand from one price, $1 input and $2 output per 1M tokens: 1,000 nano-USD a request byte
(each byte held as an input token) and 2,000 an output token. Bodies are padded to exactly 200
bytes, so a hold is 200,000 + 2,000 × the output tokens held. The models produce at most 100,000
output tokens."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import CACHE_SECONDS, headers_for, only_row, post_raw, rows_of, sized
from simulator import (
    Answer,
    Request,
    Simulator,
    answer,
    anthropic_message,
    anthropic_sse,
    openai_chat,
    openai_chat_sse,
    usage,
)
from test_hostile_provider import add_models, assert_books_hold, customer

MAX_OUTPUT = 100_000
CREDIT = 10_000_000  # $0.01
CHAT, COMPLETIONS, RESPONSES, EMBEDDINGS, MESSAGES = (
    "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/messages")


def small_usage(request: Request) -> Answer:
    """Every answer reports 10 input and 20 output tokens (50,000 nano-USD), in its path's format."""
    stream = b'"stream":true' in request.body
    if request.path.endswith("/messages"):
        if stream:
            return answer(body=anthropic_sse(usage(input_tokens=10, output_tokens=0), [usage(output_tokens=20)]),
                          stream=True)
        return answer(body=anthropic_message(usage(input_tokens=10, output_tokens=20)))
    if request.path.endswith("/responses"):
        return answer(body=b'{"id":"resp_sim","object":"response","status":"completed","output":[],'
                           b'"usage":{"input_tokens":10,"output_tokens":20,"total_tokens":30}}')
    if stream:
        return answer(body=openai_chat_sse([usage(prompt_tokens=10, completion_tokens=20)]), stream=True)
    return answer(body=openai_chat(usage(prompt_tokens=10, completion_tokens=20)))


@pytest.fixture(scope="module")
def sim():
    s = Simulator().start()
    s.answer_with(small_usage)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gw(gateway, sim):
    """The shared instance, with `hc-chat` (OpenAI protocol) and `hc-claude` (Anthropic) at the
    simulator, each producing at most 100,000 output tokens."""
    add_models(gateway, sim, "hc", max_output=MAX_OUTPUT)
    return gateway


def body_for(path: str, fields: str, length: int = 200) -> bytes:
    """A request body for `path` of exactly `length` bytes with the raw JSON `fields` (members
    written as given, e.g. '"max_tokens":1e3'), or nothing extra when empty."""
    extra = "," + fields if fields else ""
    if path == MESSAGES:
        template = f'{{"model":"hc-claude"{extra},"messages":[{{"role":"user","content":"{{pad}}"}}]}}'
    elif path == COMPLETIONS:
        template = f'{{"model":"hc-chat"{extra},"prompt":"{{pad}}"}}'
    elif path in (RESPONSES, EMBEDDINGS):
        template = f'{{"model":"hc-chat"{extra},"input":"{{pad}}"}}'
    else:
        template = f'{{"model":"hc-chat"{extra},"messages":[{{"role":"user","content":"{{pad}}"}}]}}'
    return sized(template, length)


def send(gw, key: str, path: str, body: bytes):
    """(status, decoded body) of one request."""
    status, _, data = post_raw(gw, path, body, headers_for("anthropic" if path == MESSAGES else "openai", key))
    return status, json.loads(data)


def error_of(path: str, status: int, body: dict) -> tuple[str, str]:
    """(code or type, message) of an error answer, checking the protocol's shape."""
    if path == MESSAGES:
        assert body["type"] == "error", body
        return body["error"]["type"], body["error"]["message"]
    assert set(body) == {"error"} and body["error"]["param"] is None, body
    return body["error"]["code"], body["error"]["message"]


def assert_invalid_parameter(path: str, status: int, body: dict, names: str) -> None:
    """A 400 invalid_parameter in the protocol's shape whose message names `names`."""
    assert status == 400, body
    kind, message = error_of(path, status, body)
    if path == MESSAGES:
        assert kind == "invalid_request_error"
    else:
        assert kind == "invalid_parameter"
        assert body["error"]["type"] == "invalid_request_error"
    assert names in message, message


@pytest.fixture(scope="module")
def rich(gw):
    """An account with $1 and its key (holds of up to 100,000 output tokens fit)."""
    return customer(gw, "1")


# -- integer parameters ---------------------------------------------------------------------------------

# Each field the gateway decides on, on its endpoint, with the other members a valid request has.
INTEGER_FIELDS = [
    (CHAT, "max_tokens", ""),
    (CHAT, "max_completion_tokens", ""),
    (CHAT, "n", '"max_tokens":10'),
    (COMPLETIONS, "max_tokens", ""),
    (COMPLETIONS, "n", '"max_tokens":10'),
    (COMPLETIONS, "best_of", '"max_tokens":10'),
    (RESPONSES, "max_output_tokens", ""),
    (MESSAGES, "max_tokens", ""),
]
BAD_VALUES = [
    "1.5", "0", "-1", '"100"', "true", "false", "[100]", '{"v":100}', "1e308", "-1e308", "1e400",
    # Issue 10, defect 1: holds of a few cents' hundredths, or a negative one.
    "1e19", "9223372037", "4611686019",
]


@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("path, field, others", INTEGER_FIELDS, ids=[f"{p[4:]}-{f}" for p, f, _ in INTEGER_FIELDS])
@pytest.mark.usefixtures("database_independent")
def test_a_bad_integer_parameter_is_refused_with_invalid_parameter(gw, sim, rich, path, field, others, value):
    _, key = rich
    upstream = len(sim.requests)
    fields = ",".join(f for f in (others, f'"{field}":{value}') if f)
    status, body = send(gw, key, path, body_for(path, fields))
    assert_invalid_parameter(path, status, body, field)
    assert len(sim.requests) == upstream  # nothing went to the provider


@pytest.mark.parametrize("value", ["1000", "1e3", "1E3", "1000.0", "10000e-1"])
def test_an_integral_number_in_any_spelling_is_held_as_that_integer(gw, value):
    email, key = customer(gw)
    status, _ = send(gw, key, CHAT, body_for(CHAT, f'"max_tokens":{value}'))
    assert status == 200
    assert only_row(gw, key)["hold_nano"] == 2_200_000  # 200,000 + 1,000 × 2,000
    assert_books_hold(gw, email, key)


def test_null_is_absent_and_the_models_maximum_is_held(gw):
    email, key = customer(gw, "1")
    status, _ = send(gw, key, CHAT, body_for(CHAT, '"max_tokens":null'))
    assert status == 200
    assert only_row(gw, key)["hold_nano"] == 200_200_000  # 200,000 + 100,000 × 2,000
    assert_books_hold(gw, email, key)


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
@pytest.mark.usefixtures("database_independent")
def test_an_output_maximum_above_the_models_is_refused_naming_the_models_maximum(gw, rich, path):
    _, key = rich
    status, body = send(gw, key, path, body_for(path, '"max_tokens":100001'))
    assert_invalid_parameter(path, status, body, "max_tokens")
    assert "100000" in error_of(path, status, body)[1]


def test_an_output_maximum_equal_to_the_models_is_admitted(gw):
    email, key = customer(gw, "1")
    status, _ = send(gw, key, MESSAGES, body_for(MESSAGES, '"max_tokens":100000'))
    assert status == 200
    assert only_row(gw, key)["hold_nano"] == 200_200_000
    assert_books_hold(gw, email, key)


@pytest.mark.parametrize("fields, named", [
    ('"max_tokens":10,"n":129', "n"),
    ('"max_tokens":10,"best_of":21', "best_of"),
    ('"max_tokens":10,"n":3,"best_of":2', "best_of"),
])
@pytest.mark.usefixtures("database_independent")
def test_completions_fan_out_out_of_bounds_is_refused(gw, rich, fields, named):
    _, key = rich
    status, body = send(gw, key, COMPLETIONS, body_for(COMPLETIONS, fields))
    assert_invalid_parameter(COMPLETIONS, status, body, named)


@pytest.mark.usefixtures("database_independent")
def test_more_than_10_8_output_tokens_in_all_is_refused(gw, rich):
    _, key = rich
    # 8 prompts × 128 choices × 100,000 tokens = 102,400,000 output tokens
    body = sized('{"model":"hc-chat","max_tokens":100000,"n":128,'
                 '"prompt":["{pad}","b","c","d","e","f","g","h"]}', 200)
    status, answer_body = send(gw, key, COMPLETIONS, body)
    assert status == 400
    assert error_of(COMPLETIONS, status, answer_body)[0] == "invalid_parameter"


# -- the hold: the worst case with its fan-out ---------------------------------------------------------------

@pytest.mark.parametrize("path, body, hold", [
    (CHAT, body_for(CHAT, '"max_tokens":10,"n":128'), 2_760_000),                         # 128 × 10 tokens
    (CHAT, body_for(CHAT, '"max_tokens":10,"max_completion_tokens":20'), 240_000),        # the larger: 20
    (COMPLETIONS, sized('{"model":"hc-chat","max_tokens":10,"n":2,"best_of":3,"prompt":["{pad}","b","c"]}',
                        200), 380_000),                                                   # 3 × 3 × 10
    (COMPLETIONS, sized('{"model":"hc-chat","max_tokens":10,"prompt":[[1,2],[3]],"user":"{pad}"}', 200),
     240_000),                                                                            # 2 prompts × 10
    (COMPLETIONS, sized('{"model":"hc-chat","max_tokens":10,"prompt":[1,2,3],"user":"{pad}"}', 200),
     220_000),                                                                            # one token array
    (RESPONSES, body_for(RESPONSES, '"max_output_tokens":10'), 220_000),
    (EMBEDDINGS, body_for(EMBEDDINGS, ""), 200_000),                                      # no output
], ids=["chat-n", "chat-two-maximums", "completions-best-of-prompts", "completions-token-arrays",
        "completions-one-token-array", "responses", "embeddings"])
def test_the_hold_is_the_worst_case_times_the_fan_out(gw, path, body, hold):
    email, key = customer(gw, "1")
    assert send(gw, key, path, body)[0] == 200
    row = only_row(gw, key)
    assert row["hold_nano"] == hold
    assert row["cost_nano"] <= hold
    assert_books_hold(gw, email, key)


def test_a_paid_models_hold_is_at_least_one_nano(gw):
    gw.cli("model", "add", "hc-tiny", "--provider", "hc-openai", "--input", "0.000000001", "--output", "0",
           "--max-output", "100")
    time.sleep(CACHE_SECONDS)
    email, key = customer(gw)
    # 200 bytes at 1 nano-USD per 1M tokens: 0.0002 nano-USD, held as 1
    body = sized('{"model":"hc-tiny","messages":[{"role":"user","content":"{pad}"}]}', 200)
    assert send(gw, key, CHAT, body)[0] == 200
    assert only_row(gw, key)["hold_nano"] == 1
    assert_books_hold(gw, email, key)


# -- overflow values while requests are in flight --------------------------------------------------------------

def test_overflow_values_cannot_open_room_for_requests_that_do_not_fit(gw, sim):
    """Issue 10, defect 1: with a max_tokens of 4611686019 in flight (a negative hold), ten
    requests for 100,000 tokens that each alone got 402 were admitted; the balance ended at -$1.99."""
    email, key = customer(gw)
    big = body_for(CHAT, '"max_tokens":100000')  # holds 200,200,000 of the 10,000,000
    assert send(gw, key, CHAT, big)[0] == 402
    go = threading.Event()
    sim.enqueue(body=openai_chat(usage(prompt_tokens=10, completion_tokens=20)), wait=go)
    upstream = len(sim.requests)
    with ThreadPoolExecutor(10) as pool:
        in_flight = pool.submit(send, gw, key, CHAT, body_for(CHAT, '"max_tokens":1000'))
        deadline = time.monotonic() + 10
        while len(sim.requests) == upstream:  # until it is at the provider, its hold taken
            assert time.monotonic() < deadline, "the request did not reach the provider"
            time.sleep(0.02)
        for value in ("1e308", "1e19", "9223372037", "4611686019"):
            assert send(gw, key, CHAT, body_for(CHAT, f'"max_tokens":{value}'))[0] == 400
        statuses = list(pool.map(lambda _: send(gw, key, CHAT, big)[0], range(10)))
        go.set()
        assert in_flight.result()[0] == 200
    assert statuses == [402] * 10
    rows = rows_of(gw, key, 16)  # the one admitted, and a row of each of the 15 refused
    assert [row["billing_basis"] for row in rows].count("refused") == 15
    assert gw.balance_nano(email) == CREDIT - 50_000
    assert_books_hold(gw, email, key)


# -- n: 128 ---------------------------------------------------------------------------------------------------

def test_n_128_is_held_128_times_and_refused_beyond_the_keys_limit(gw):
    """Issue 10, defect 2: {"max_tokens":1000,"n":128} was charged $0.256 on a $0.01 balance with a
    $0.005 key limit."""
    email, key = customer(gw, limit_usd="0.005")
    status, body = send(gw, key, CHAT, body_for(CHAT, '"max_tokens":1000,"n":128'))
    assert status == 402
    code, message = error_of(CHAT, status, body)
    assert code == "key_limit_reached"
    assert "$0.2562" in message       # 200,000 + 128 × 1,000 × 2,000 = 256,200,000
    assert "$0.005 " in message       # the key's limit left
    # (5,000,000 − 200,000) / (128 × 2,000) = 18.75
    assert "enough for up to 18 output tokens" in message
    assert gw.balance_nano(email) == CREDIT
    assert_books_hold(gw, email, key)


# -- duplicate and escaped names -------------------------------------------------------------------------------

@pytest.mark.parametrize("path, fields, named", [
    (CHAT, '"model":"hc-claude","max_tokens":10', "model"),
    (CHAT, '"mod\\u0065l":"hc-claude","max_tokens":10', "model"),
    (CHAT, '"stream":false,"stream":true,"max_tokens":10', "stream"),
    (CHAT, ('"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":false},'
            '"max_tokens":10'), "stream_options"),
    (CHAT, '"stream":true,"stream_options":{"include_usage":true,"include_usage":false},"max_tokens":10',
     "include_usage"),
    (CHAT, '"stream":true,"stream\\u005foptions":{"include_usage":false},"max_tokens":10', "stream_options"),
    (CHAT, '"stream":true,"stream_options":{"include\\u005fusage":false},"max_tokens":10', "include_usage"),
    (CHAT, '"max_tokens":10,"max_tokens":100000', "max_tokens"),
    (CHAT, '"max\\u005ftokens":100000', "max_tokens"),
    (CHAT, '"max_completion_tokens":10,"max_completion_tokens":100000', "max_completion_tokens"),
    (CHAT, '"max_tokens":10,"n":1,"n":128', "n"),
    (COMPLETIONS, '"max_tokens":10,"best_of":1,"best_of":20', "best_of"),
    (COMPLETIONS, '"stream":true,"stream_options":{},"stream_options":{"include_usage":false},"max_tokens":10',
     "stream_options"),
    (RESPONSES, '"max_output_tokens":10,"max_output_tokens":100000', "max_output_tokens"),
    (MESSAGES, '"max_tokens":10,"max_tokens":100000', "max_tokens"),
    (MESSAGES, '"max_tokens":10,"stre\\u0061m":true', "stream"),
], ids=["model-twice", "model-escaped", "stream-twice", "stream_options-twice", "include_usage-twice",
        "stream_options-escaped", "include_usage-escaped", "max_tokens-twice", "max_tokens-escaped",
        "max_completion_tokens-twice", "n-twice", "best_of-twice", "completions-stream_options-twice",
        "max_output_tokens-twice", "messages-max_tokens-twice", "messages-stream-escaped"])
@pytest.mark.usefixtures("database_independent")
def test_a_deciding_field_named_twice_or_escaped_is_refused(gw, sim, rich, path, fields, named):
    """Issue 10, defect 5: the gateway read one spelling, the provider another."""
    _, key = rich
    upstream = len(sim.requests)
    status, body = send(gw, key, path, body_for(path, fields))
    assert_invalid_parameter(path, status, body, named)
    assert len(sim.requests) == upstream


def test_other_top_level_fields_may_repeat(gw):
    email, key = customer(gw)
    status, _ = send(gw, key, CHAT, body_for(CHAT, '"max_tokens":10,"temperature":0.1,"temperature":0.2'))
    assert status == 200
    assert_books_hold(gw, email, key)


def test_deciding_names_inside_other_fields_are_not_the_requests(gw):
    email, key = customer(gw)
    fields = ('"max_tokens":10,"metadata":{"n":"1","n":"2","max_tokens":"9"},'
              '"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"properties":'
              '{"stream":{"type":"boolean"}}}}}')
    status, _ = send(gw, key, CHAT, body_for(CHAT, fields, 300))
    assert status == 200
    assert only_row(gw, key)["hold_nano"] == 320_000  # 300 bytes × 1,000 + 10 × 2,000
    assert_books_hold(gw, email, key)


# -- streams that did not ask for usage ------------------------------------------------------------------------

@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
@pytest.mark.parametrize("stream_options", [None, "null", "{}", '{"include_usage":false}', '{"include_usage":null}',
                                            '{"continuous_usage_stats":false}'])
def test_a_stream_that_did_not_ask_for_usage_is_forwarded_asking_for_it_once(gw, sim, path, stream_options):
    email, key = customer(gw)
    fields = '"stream":true,"max_tokens":10' + (f',"stream_options":{stream_options}' if stream_options else "")
    status, _, data = post_raw(gw, path, body_for(path, fields), headers_for("openai", key))
    assert status == 200
    sent = sim.requests[-1].body
    assert sent.count(b'"stream_options"') == 1, sent
    assert sent.count(b'"include_usage"') == 1, sent
    assert json.loads(sent)["stream_options"]["include_usage"] is True
    assert b'"completion_tokens":20' not in data  # the usage chunk is the gateway's, not the client's
    row = only_row(gw, key)
    assert row["billing_basis"] == "provider"
    assert row["cost_nano"] == 50_000  # 10 × 1,000 + 20 × 2,000
    assert_books_hold(gw, email, key)


def test_a_stream_that_asked_for_usage_is_forwarded_unchanged(gw, sim):
    email, key = customer(gw)
    body = body_for(CHAT, '"stream":true,"stream_options":{"include_usage":true},"max_tokens":10')
    status, _, data = post_raw(gw, CHAT, body, headers_for("openai", key))
    assert status == 200
    assert sim.requests[-1].body == body
    assert b'"completion_tokens":20' in data
    assert only_row(gw, key)["cost_nano"] == 50_000
    assert_books_hold(gw, email, key)


# -- what a 402 says -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_a_402_says_how_many_output_tokens_the_balance_pays_for(gw, path):
    email, key = customer(gw)
    status, body = send(gw, key, path, body_for(path, '"max_tokens":100000'))
    assert status == 402
    code, message = error_of(path, status, body)
    assert code == ("billing_error" if path == MESSAGES else "insufficient_balance")
    assert "$0.2002" in message  # 200,000 + 100,000 × 2,000 = 200,200,000
    assert "$0.01 " in message
    assert "100000 output tokens" in message
    # (10,000,000 − 200,000) / 2,000 = 4,900
    assert "enough for up to 4900 output tokens" in message
    assert_books_hold(gw, email, key)


def test_the_402s_figure_is_the_most_the_balance_pays_for(gw):
    email, key = customer(gw)
    assert send(gw, key, CHAT, body_for(CHAT, '"max_tokens":4901'))[0] == 402
    assert send(gw, key, CHAT, body_for(CHAT, '"max_tokens":4900'))[0] == 200
    served, refused = sorted(rows_of(gw, key, 2), key=lambda row: row["status"])
    assert (served["hold_nano"], refused["hold_nano"]) == (CREDIT, 0)  # 200,000 + 4,900 × 2,000: all of it
    assert_books_hold(gw, email, key)


def test_a_402_says_0_output_tokens_when_not_even_the_input_fits(gw):
    email, key = customer(gw, "0.0001")  # 100,000 nano-USD; the 200 request bytes hold 200,000
    status, body = send(gw, key, CHAT, body_for(CHAT, '"max_tokens":1'))
    assert status == 402
    assert "enough for up to 0 output tokens" in error_of(CHAT, status, body)[1]
    assert_books_hold(gw, email, key)


def test_a_402_for_several_choices_counts_each_choice(gw):
    email, key = customer(gw)
    status, body = send(gw, key, CHAT, body_for(CHAT, '"max_tokens":1000,"n":8'))
    assert status == 402
    # (10,000,000 − 200,000) / (8 × 2,000) = 612.5
    assert "enough for up to 612 output tokens" in error_of(CHAT, status, body)[1]
    assert_books_hold(gw, email, key)
