"""The official OpenAI and Anthropic Python SDKs against the gateway's sandbox models: every call
shape they make works (answers, tool calls, JSON formats; every event parses as the SDKs' own
types), each billed call is charged exactly the sandbox's usage for the body the SDK sends (the
figures by hand, as helpers.LONG_PROMPT says), which is the usage the SDK saw, and errors
come back as the SDKs' typed exceptions carrying the gateway's message. The sandbox itself
answers only the gateway."""
from __future__ import annotations

import json
from typing import Literal

import anthropic
import httpx
import openai
import pytest
from anthropic import Anthropic
from anthropic.types import Message, RawMessageStreamEvent
from helpers import (
    CACHED_SYSTEM,
    LONG_PROMPT,
    MESSAGES,
    anthropic_headers,
    api_get,
    assert_billed,
    balance_nano,
    chat_classes,
    new_customer,
)
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city", "unit"]}
CLOCK = {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
WEATHER_ARGUMENTS = {"city": "", "unit": "celsius"}  # what the sandbox fills WEATHER with


class Forecast(BaseModel):
    city: str
    days: int
    sunny: bool
    hours: list[float]
    unit: Literal["celsius", "fahrenheit"]
    note: str | None


FORECAST = Forecast(city="", days=0, sunny=False, hours=[], unit="celsius", note="")  # the sandbox's example


# -- helpers -----------------------------------------------------------------------------------

def openai_client(gateway, key) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20)


def anthropic_client(gateway, key) -> Anthropic:
    return Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20)


def responses_classes(usage) -> dict:
    cached = usage.input_tokens_details.cached_tokens
    reasoning = usage.output_tokens_details.reasoning_tokens
    return {"in": usage.input_tokens - cached, "cr": cached, "cw": 0, "cw1h": 0,
            "out": usage.output_tokens - reasoning, "rsn": reasoning}


def anthropic_classes(usage) -> dict:
    write = usage.cache_creation_input_tokens or 0
    one_hour = usage.cache_creation.ephemeral_1h_input_tokens if usage.cache_creation else 0
    return {"in": usage.input_tokens, "cr": usage.cache_read_input_tokens or 0, "cw": write - one_hour,
            "cw1h": one_hour, "out": usage.output_tokens, "rsn": 0}


def sse_events(gateway, path, headers, body) -> list[tuple[str | None, dict]]:
    """The (event name, data) of each event of a stream through the gateway, as sent."""
    with httpx.stream("POST", gateway.url + path, headers=headers, json=body, timeout=20) as answer:
        assert answer.status_code == 200
        text = answer.read().decode()
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields and fields["data"] != "[DONE]":
            events.append((fields.get("event"), json.loads(fields["data"])))
    return events


def post_json(gateway, path, headers, body) -> dict:
    answer = httpx.post(gateway.url + path, headers=headers, json=body, timeout=20)
    assert answer.status_code == 200, answer.text
    return answer.json()


def chat_tool(name, schema) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"The {name}.", "parameters": schema}}


def anthropic_tool(name, schema) -> dict:
    return {"name": name, "description": f"The {name}.", "input_schema": schema}


# -- OpenAI SDK ----------------------------------------------------------------------------------

def test_openai_chat(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = openai_client(gateway, key).chat.completions.create(model="sandbox-reasoner", messages=MESSAGES)
    assert answer.choices[0].message.content.startswith("Tollgate sandbox")
    # A 1,190-byte body: 298 prompt tokens, 128 of them cached; 24 output and 16 reasoning:
    # 170 × 1,100 + 128 × 550 + (24 + 16) × 4,400 = 433,400 nano
    tokens = {"in": 170, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 16}
    assert chat_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 433_400, stream=False)


def test_openai_chat_streamed(gateway, gw_funded_key):
    key, before = gw_funded_key
    chunks = list(openai_client(gateway, key).chat.completions.create(
        model="sandbox-chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Tollgate sandbox")
    # A 1,240-byte body: 310 prompt tokens, 128 of them cached; 24 output:
    # 182 × 150 + 128 × 75 + 24 × 600 = 51,300 nano
    tokens = {"in": 182, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}
    assert chat_classes(chunks[-1].usage) == tokens
    assert_billed(gateway, key, before, tokens, 51_300, stream=True)


def test_openai_completions(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = openai_client(gateway, key).completions.create(model="sandbox-chat", prompt=LONG_PROMPT)
    assert answer.choices[0].text
    # A 1,156-byte body: 289 prompt tokens (completions report no cached ones); 24 output:
    # 289 × 150 + 24 × 600 = 57,750 nano
    tokens = {"in": 289, "cr": 0, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}
    assert chat_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 57_750, stream=False)


def test_openai_completions_streamed(gateway, gw_funded_key):
    key, before = gw_funded_key
    chunks = list(openai_client(gateway, key).completions.create(
        model="sandbox-chat", prompt=LONG_PROMPT, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    # A 1,210-byte body: 303 prompt tokens (completions report no cached ones); 24 output:
    # 303 × 150 + 24 × 600 = 59,850 nano
    tokens = {"in": 303, "cr": 0, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}
    assert chat_classes(chunks[-1].usage) == tokens
    assert_billed(gateway, key, before, tokens, 59_850, stream=True)


def test_openai_responses(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = openai_client(gateway, key).responses.create(model="sandbox-reasoner", input=LONG_PROMPT)
    assert answer.output_text.startswith("Tollgate sandbox")
    # A 1,159-byte body: 290 prompt tokens, 128 of them cached; 24 output and 16 reasoning:
    # 162 × 1,100 + 128 × 550 + (24 + 16) × 4,400 = 424,600 nano
    tokens = {"in": 162, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 16}
    assert responses_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 424_600, stream=False)


def test_openai_responses_stream_helper_assembles_the_answer(gateway, gw_funded_key):
    key, before = gw_funded_key
    with openai_client(gateway, key).responses.stream(model="sandbox-reasoner", input=LONG_PROMPT) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.output_text == deltas
    assert deltas.startswith("Tollgate sandbox")
    # A 1,173-byte body: 294 prompt tokens, 128 of them cached; 24 output and 16 reasoning:
    # 166 × 1,100 + 128 × 550 + (24 + 16) × 4,400 = 429,000 nano
    tokens = {"in": 166, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 16}
    assert responses_classes(final.usage) == tokens
    assert_billed(gateway, key, before, tokens, 429_000, stream=True)


def responses_stream(gateway, key, body) -> list[dict]:
    """The events of a raw Responses stream, after checking each against the SDK's event types,
    its event name and its sequence number."""
    events = sse_events(gateway, "/v1/responses", {"Authorization": f"Bearer {key}"}, {**body, "stream": True})
    adapter = TypeAdapter(ResponseStreamEvent)
    for number, (name, data) in enumerate(events):
        adapter.validate_python(data)
        assert (name, data["sequence_number"]) == (data["type"], number)
    return [data for _, data in events]


def test_openai_responses_stream_sends_openais_full_event_sequence(gateway, gw_funded_key):
    key, _ = gw_funded_key
    events = responses_stream(gateway, key, {"model": "sandbox-chat", "input": "Hi"})
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 24, "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    item = events[2]["item"]
    assert item["type"] == "message" and item["status"] == "in_progress"
    assert {(e["item_id"], e["output_index"], e["content_index"]) for e in events[3:-2]} == {(item["id"], 0, 0)}
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert events[-4]["text"] == events[-3]["part"]["text"] == text
    assert events[-2]["item"]["content"][0]["text"] == text and events[-2]["item"]["status"] == "completed"
    assert events[-1]["response"]["output"] == [events[-2]["item"]]
    assert events[-1]["response"]["id"] == events[0]["response"]["id"]


def test_openai_responses_stream_of_a_reasoning_model_has_a_reasoning_item_first(gateway, gw_funded_key):
    key, _ = gw_funded_key
    events = responses_stream(gateway, key, {"model": "sandbox-reasoner", "input": "Hi"})
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [(e["output_index"], e["item"]["type"]) for e in done] == [(0, "reasoning"), (1, "message")]
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 16


def test_openai_responses_answer_is_a_complete_response(gateway, gw_funded_key):
    key, _ = gw_funded_key
    body = post_json(gateway, "/v1/responses", {"Authorization": f"Bearer {key}"},
                     {"model": "sandbox-chat", "input": "Hi"})
    answer = Response.model_validate(body)
    assert answer.status == "completed"
    assert answer.output_text.startswith("Tollgate sandbox")
    assert body["usage"]["output_tokens"] == 24


def test_openai_embeddings(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = openai_client(gateway, key).embeddings.create(model="sandbox-embed", input=["ledger", "balance"])
    assert len(answer.data) == 2 and len(answer.data[0].embedding) == 8
    assert answer.usage.prompt_tokens == 4
    # ⌈6 / 4⌉ + ⌈7 / 4⌉ = 4 input tokens at 20 nano (the sandbox counts each input's characters)
    assert_billed(gateway, key, before, {"in": 4, "cr": 0, "cw": 0, "cw1h": 0, "out": 0, "rsn": 0}, 80,
                  stream=False)


# -- tools and JSON formats, OpenAI ---------------------------------------------------------------

def test_openai_chat_calls_the_first_tool_when_tool_choice_requires_one(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = openai_client(gateway, key).chat.completions.create(
        model="sandbox-chat", messages=MESSAGES, tool_choice="required",
        tools=[chat_tool("get_weather", WEATHER), chat_tool("get_time", CLOCK)])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGUMENTS
    # A 1,619-byte body: 405 prompt tokens, 192 of them cached; the 28 bytes of arguments, 7 output:
    # 213 × 150 + 192 × 75 + 7 × 600 = 50,550 nano
    tokens = {"in": 213, "cr": 192, "cw": 0, "cw1h": 0, "out": 7, "rsn": 0}
    assert chat_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 50_550, stream=False)


def test_openai_chat_calls_the_tool_that_tool_choice_names(gateway, gw_funded_key):
    key, _ = gw_funded_key
    answer = openai_client(gateway, key).chat.completions.create(
        model="sandbox-chat", messages=MESSAGES, tool_choice={"type": "function", "function": {"name": "get_time"}},
        tools=[chat_tool("get_weather", WEATHER), chat_tool("get_time", CLOCK)])
    [call] = answer.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_time", {"zone": ""})


def test_openai_chat_answers_text_when_tool_choice_is_auto(gateway, gw_funded_key):
    # as agents expect: they send their tools on every turn
    key, _ = gw_funded_key
    answer = openai_client(gateway, key).chat.completions.create(
        model="sandbox-chat", messages=MESSAGES, tools=[chat_tool("get_weather", WEATHER)])
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content.startswith("Tollgate sandbox")


def test_openai_chat_answers_text_after_a_tool_result(gateway, gw_funded_key):
    key, _ = gw_funded_key
    client = openai_client(gateway, key)
    tools = [chat_tool("get_weather", WEATHER)]
    first = client.chat.completions.create(
        model="sandbox-chat", messages=MESSAGES, tools=tools, tool_choice="required").choices[0].message
    call = first.tool_calls[0]
    answer = client.chat.completions.create(model="sandbox-chat", tools=tools, tool_choice="required", messages=[
        *MESSAGES, first.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}])
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content.startswith("Tollgate sandbox")


def test_openai_chat_stream_helper_assembles_a_tool_call(gateway, gw_funded_key):
    key, before = gw_funded_key
    with openai_client(gateway, key).chat.completions.stream(
            model="sandbox-chat", messages=MESSAGES, tools=[chat_tool("get_weather", WEATHER)], tool_choice="required",
            stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", WEATHER_ARGUMENTS)
    assert final.choices[0].finish_reason == "tool_calls"
    # A 1,501-byte body: 376 prompt tokens, 128 of them cached; the 28 bytes of arguments, 7 output:
    # 248 × 150 + 128 × 75 + 7 × 600 = 51,000 nano
    tokens = {"in": 248, "cr": 128, "cw": 0, "cw1h": 0, "out": 7, "rsn": 0}
    assert chat_classes(final.usage) == tokens
    assert_billed(gateway, key, before, tokens, 51_000, stream=True)


def test_openai_chat_parse_fills_a_json_schema(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = openai_client(gateway, key).chat.completions.parse(
        model="sandbox-chat", messages=MESSAGES, response_format=Forecast)
    assert answer.choices[0].message.parsed == FORECAST
    # A 1,768-byte body: 442 prompt tokens, 192 of them cached; FORECAST's 72 bytes of JSON, 18
    # output: 250 × 150 + 192 × 75 + 18 × 600 = 62,700 nano
    tokens = {"in": 250, "cr": 192, "cw": 0, "cw1h": 0, "out": 18, "rsn": 0}
    assert chat_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 62_700, stream=False)


def test_openai_chat_stream_helper_parses_a_json_schema(gateway, gw_funded_key):
    key, _ = gw_funded_key
    with openai_client(gateway, key).chat.completions.stream(
            model="sandbox-chat", messages=MESSAGES, response_format=Forecast) as stream:
        assert stream.get_final_completion().choices[0].message.parsed == FORECAST


def test_openai_chat_json_object_answer_is_a_json_object(gateway, gw_funded_key):
    key, _ = gw_funded_key
    answer = openai_client(gateway, key).chat.completions.create(
        model="sandbox-chat", messages=MESSAGES, response_format={"type": "json_object"})
    assert json.loads(answer.choices[0].message.content)["answer"].startswith("Tollgate sandbox")


def test_openai_responses_calls_a_function_tool(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = openai_client(gateway, key).responses.create(
        model="sandbox-chat", input=LONG_PROMPT,
        tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}],
        tool_choice="required")
    [call] = answer.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", WEATHER_ARGUMENTS)
    # A 1,385-byte body: 347 prompt tokens, 128 of them cached; the 28 bytes of arguments, 7 output:
    # 219 × 150 + 128 × 75 + 7 × 600 = 46,650 nano
    tokens = {"in": 219, "cr": 128, "cw": 0, "cw1h": 0, "out": 7, "rsn": 0}
    assert responses_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 46_650, stream=False)


def test_openai_responses_stream_helper_assembles_a_function_call(gateway, gw_funded_key):
    key, _ = gw_funded_key
    with openai_client(gateway, key).responses.stream(
            model="sandbox-reasoner", input="Hi",
            tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}],
            tool_choice="required") as stream:
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "function_call"]
    assert json.loads(final.output[1].arguments) == WEATHER_ARGUMENTS


def test_openai_responses_answers_text_after_a_function_call_output(gateway, gw_funded_key):
    key, _ = gw_funded_key
    answer = openai_client(gateway, key).responses.create(
        model="sandbox-chat", tool_choice="required",
        tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}],
        input=[{"role": "user", "content": "Weather?"},
               {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}])
    assert answer.output_text.startswith("Tollgate sandbox")


def test_openai_responses_parse_fills_a_json_schema(gateway, gw_funded_key):
    key, _ = gw_funded_key
    with openai_client(gateway, key).responses.stream(
            model="sandbox-chat", input="Forecast?", text_format=Forecast) as stream:
        assert stream.get_final_response().output_parsed == FORECAST


def test_openai_wrong_key_raises_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError, match="Invalid API key") as info:
        openai_client(gateway, "sk-tg-wrong").chat.completions.create(model="sandbox-chat", messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"


def test_openai_unknown_model_raises_not_found_error(gateway, gw_funded_key):
    key, _ = gw_funded_key
    with pytest.raises(openai.NotFoundError, match="gpt-nonexistent") as info:
        openai_client(gateway, key).chat.completions.create(model="gpt-nonexistent", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    assert "GET /v1/models" in info.value.message


def test_openai_insufficient_balance_raises_a_402_status_error(gateway):
    _, key = new_customer(gateway, "0.000001")
    with pytest.raises(openai.APIStatusError) as info:
        openai_client(gateway, key).chat.completions.create(model="sandbox-chat", messages=MESSAGES, max_tokens=4000)
    assert info.value.status_code == 402
    assert info.value.code == "insufficient_balance"
    # The SDK's 1,204-byte body at sandbox-chat's dearest input price and 4,000 output tokens:
    # 1,204 × 150 + 4,000 × 600 = 2,580,600 nano
    assert "may cost up to $0.0025806 (input estimate plus 4000 output tokens" in info.value.message
    assert "$0.000001 is available" in info.value.message
    assert "max_tokens" in info.value.message


def test_openai_rate_limited_key_raises_rate_limit_error(gateway):
    _, key = new_customer(gateway, "10", "--rpm", "1")
    client = openai_client(gateway, key)
    client.chat.completions.create(model="sandbox-chat", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError, match="Rate limit reached for this key") as info:
        client.chat.completions.create(model="sandbox-chat", messages=MESSAGES)
    assert info.value.code == "rate_limit_exceeded"
    assert "1 requests per minute" in info.value.message


# -- Anthropic SDK -------------------------------------------------------------------------------

CACHED_SYSTEM_1H = [{"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


def test_anthropic_messages(gateway, gw_funded_key):
    key, before = gw_funded_key
    message = anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, system=CACHED_SYSTEM, messages=MESSAGES)
    assert message.content[0].text.startswith("Tollgate sandbox")
    # A 2,398-byte body: 600 prompt tokens, 256 of them cached, 300 written to the cache; 24
    # output: 44 × 3,000 + 256 × 300 + 300 × 3,750 + 24 × 15,000 = 1,693,800 nano
    tokens = {"in": 44, "cr": 256, "cw": 300, "cw1h": 0, "out": 24, "rsn": 0}
    assert anthropic_classes(message.usage) == tokens
    assert_billed(gateway, key, before, tokens, 1_693_800, stream=False)


def test_anthropic_messages_with_one_hour_cache_write(gateway, gw_funded_key):
    key, before = gw_funded_key
    message = anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, system=CACHED_SYSTEM_1H, messages=MESSAGES)
    # A 2,409-byte body: 603 prompt tokens, 256 of them cached, 301 written to the 1-hour cache;
    # 24 output: 46 × 3,000 + 256 × 300 + 301 × 6,000 + 24 × 15,000 = 2,380,800 nano
    tokens = {"in": 46, "cr": 256, "cw": 0, "cw1h": 301, "out": 24, "rsn": 0}
    assert anthropic_classes(message.usage) == tokens
    assert_billed(gateway, key, before, tokens, 2_380_800, stream=False)


def test_anthropic_messages_stream_helper(gateway, gw_funded_key):
    key, before = gw_funded_key
    with anthropic_client(gateway, key).messages.stream(
            model="sandbox-claude", max_tokens=64, system=CACHED_SYSTEM, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text.startswith("Tollgate sandbox")
    # A 2,412-byte body: 603 prompt tokens, 256 of them cached, 301 written to the cache; 24
    # output: 46 × 3,000 + 256 × 300 + 301 × 3,750 + 24 × 15,000 = 1,703,550 nano
    tokens = {"in": 46, "cr": 256, "cw": 301, "cw1h": 0, "out": 24, "rsn": 0}
    assert anthropic_classes(message.usage) == tokens
    assert_billed(gateway, key, before, tokens, 1_703_550, stream=True)


def test_anthropic_messages_create_streamed(gateway, gw_funded_key):
    key, before = gw_funded_key
    events = list(anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, messages=MESSAGES, stream=True))
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = [e for e in events if e.type == "message_delta"][-1].usage
    assert events[-1].type == "message_stop"
    seen = anthropic_classes(start)
    seen["out"] = delta.output_tokens  # message_delta's count is cumulative and final
    # A 1,218-byte body: 305 prompt tokens, 128 of them cached; 24 output:
    # 177 × 3,000 + 128 × 300 + 24 × 15,000 = 929,400 nano
    tokens = {"in": 177, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}
    assert seen == tokens
    assert_billed(gateway, key, before, tokens, 929_400, stream=True)


def test_anthropic_message_delta_repeats_the_input_counts_of_message_start(gateway, gw_funded_key):
    key, _ = gw_funded_key
    events = list(anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, system=CACHED_SYSTEM, messages=MESSAGES, stream=True))
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = next(e for e in events if e.type == "message_delta").usage
    counts = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    assert [getattr(delta, c) for c in counts] == [getattr(start, c) for c in counts]
    assert start.cache_creation_input_tokens > 0 and start.cache_read_input_tokens > 0
    assert (start.output_tokens, delta.output_tokens) == (1, 24)


def test_anthropic_stream_events_parse_as_the_sdk_types(gateway, gw_funded_key):
    key, _ = gw_funded_key
    events = sse_events(gateway, "/v1/messages", anthropic_headers(key), {
        "model": "sandbox-claude", "max_tokens": 64, "messages": MESSAGES, "stream": True,
        "tools": [anthropic_tool("get_weather", WEATHER)], "tool_choice": {"type": "any"}})
    adapter = TypeAdapter(RawMessageStreamEvent)
    for name, data in events:
        if name != "ping":
            adapter.validate_python(data)
        assert name == data["type"]
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]


def test_anthropic_answer_parses_as_the_sdk_message(gateway, gw_funded_key):
    key, _ = gw_funded_key
    message = Message.model_validate(post_json(gateway, "/v1/messages", anthropic_headers(key), {
        "model": "sandbox-claude", "max_tokens": 64, "messages": MESSAGES}))
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 24


# -- tools and JSON formats, Anthropic ------------------------------------------------------------

def test_anthropic_calls_the_first_tool_when_tool_choice_requires_one(gateway, gw_funded_key):
    key, before = gw_funded_key
    message = anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, messages=MESSAGES,
        tools=[anthropic_tool("get_weather", WEATHER), anthropic_tool("get_time", CLOCK)], tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert (block.type, block.name, block.input) == ("tool_use", "get_weather", WEATHER_ARGUMENTS)
    # A 1,583-byte body: 396 prompt tokens, 192 of them cached; the 28 bytes of input, 7 output:
    # 204 × 3,000 + 192 × 300 + 7 × 15,000 = 774,600 nano
    tokens = {"in": 204, "cr": 192, "cw": 0, "cw1h": 0, "out": 7, "rsn": 0}
    assert anthropic_classes(message.usage) == tokens
    assert_billed(gateway, key, before, tokens, 774_600, stream=False)


def test_anthropic_calls_the_tool_that_tool_choice_names(gateway, gw_funded_key):
    key, _ = gw_funded_key
    message = anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, messages=MESSAGES,
        tools=[anthropic_tool("get_weather", WEATHER), anthropic_tool("get_time", CLOCK)],
        tool_choice={"type": "tool", "name": "get_time"})
    assert (message.content[0].name, message.content[0].input) == ("get_time", {"zone": ""})


def test_anthropic_answers_text_when_tool_choice_is_auto(gateway, gw_funded_key):
    # as Claude Code expects: it sends its tools on every turn
    key, _ = gw_funded_key
    message = anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, messages=MESSAGES, tools=[anthropic_tool("get_weather", WEATHER)])
    assert message.stop_reason == "end_turn"
    assert message.content[0].text.startswith("Tollgate sandbox")


def test_anthropic_answers_text_after_a_tool_result(gateway, gw_funded_key):
    key, _ = gw_funded_key
    client = anthropic_client(gateway, key)
    tools, required = [anthropic_tool("get_weather", WEATHER)], {"type": "any"}
    first = client.messages.create(model="sandbox-claude", max_tokens=64, messages=MESSAGES, tools=tools,
                                   tool_choice=required)
    result = {"type": "tool_result", "tool_use_id": first.content[0].id, "content": "Sunny"}
    conversation = [*MESSAGES, {"role": "assistant", "content": [first.content[0].model_dump(exclude_none=True)]},
                    {"role": "user", "content": [result]}]
    message = client.messages.create(model="sandbox-claude", max_tokens=64, tools=tools, tool_choice=required,
                                     messages=conversation)
    assert message.stop_reason == "end_turn"
    assert message.content[0].text.startswith("Tollgate sandbox")


def test_anthropic_stream_helper_assembles_a_tool_call(gateway, gw_funded_key):
    key, before = gw_funded_key
    with anthropic_client(gateway, key).messages.stream(
            model="sandbox-claude", max_tokens=64, messages=MESSAGES,
            tools=[anthropic_tool("get_weather", WEATHER)], tool_choice={"type": "any"}) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert (message.content[0].name, message.content[0].input) == ("get_weather", WEATHER_ARGUMENTS)
    # A 1,454-byte body: 364 prompt tokens, 128 of them cached; the 28 bytes of input, 7 output:
    # 236 × 3,000 + 128 × 300 + 7 × 15,000 = 851,400 nano
    tokens = {"in": 236, "cr": 128, "cw": 0, "cw1h": 0, "out": 7, "rsn": 0}
    assert anthropic_classes(message.usage) == tokens
    assert_billed(gateway, key, before, tokens, 851_400, stream=True)


def test_anthropic_parse_fills_a_json_schema(gateway, gw_funded_key):
    key, _ = gw_funded_key
    message = anthropic_client(gateway, key).messages.parse(
        model="sandbox-claude", max_tokens=256, messages=MESSAGES, output_format=Forecast)
    assert message.parsed_output == FORECAST


def test_anthropic_stream_helper_parses_a_json_schema(gateway, gw_funded_key):
    key, _ = gw_funded_key
    with anthropic_client(gateway, key).messages.stream(
            model="sandbox-claude", max_tokens=256, messages=MESSAGES, output_format=Forecast) as stream:
        assert stream.get_final_message().parsed_output == FORECAST


def test_anthropic_count_tokens_is_answered_and_not_billed(gateway, gw_funded_key):
    key, before = gw_funded_key
    counted = anthropic_client(gateway, key).messages.count_tokens(model="sandbox-claude", messages=MESSAGES)
    assert counted.input_tokens > 0
    gateway.wait_drained()
    assert api_get(gateway, key, "/api/v1/usage")["data"] == []
    assert balance_nano(gateway, key) == before


def test_anthropic_models_list_shows_only_anthropic_protocol_models(gateway, gw_funded_key):
    key, _ = gw_funded_key
    models = list(anthropic_client(gateway, key).models.list())
    ids = {m.id for m in models}
    # Other tests add models to the shared gateway: the sandbox's tell the protocols apart.
    assert "sandbox-claude" in ids
    assert not ids & {"sandbox-chat", "sandbox-reasoner", "sandbox-embed"}
    assert all(m.type == "model" for m in models)


def test_anthropic_models_retrieve_does_not_find_an_openai_protocol_model(gateway, gw_funded_key):
    key, _ = gw_funded_key
    with pytest.raises(anthropic.NotFoundError, match="sandbox-chat"):
        anthropic_client(gateway, key).models.retrieve("sandbox-chat")


def test_anthropic_wrong_key_raises_authentication_error(gateway):
    with pytest.raises(anthropic.AuthenticationError, match="Invalid API key") as info:
        anthropic_client(gateway, "sk-ant-api03-not-ours").messages.create(
            model="sandbox-claude", max_tokens=64, messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.body["error"]["type"] == "authentication_error"


def test_anthropic_unknown_model_raises_not_found_error(gateway, gw_funded_key):
    key, _ = gw_funded_key
    with pytest.raises(anthropic.NotFoundError, match="claude-nonexistent") as info:
        anthropic_client(gateway, key).messages.create(model="claude-nonexistent", max_tokens=64, messages=MESSAGES)
    assert info.value.body["error"]["type"] == "not_found_error"


# -- the sandbox itself ----------------------------------------------------------------------------

def sandbox_post(gateway, path, headers) -> httpx.Response:
    return httpx.post(f"{gateway.url}/sandbox{path}", headers=headers, timeout=10,
                      json={"model": "sandbox-chat", "max_tokens": 64, "messages": MESSAGES})


def test_sandbox_refuses_a_request_without_a_key(gateway):
    answer = sandbox_post(gateway, "/openai/v1/chat/completions", {})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert "only through the gateway" in answer.json()["error"]["message"]


def test_sandbox_refuses_a_customer_key_in_the_anthropic_shape(gateway, gw_funded_key):
    key, _ = gw_funded_key
    answer = sandbox_post(gateway, "/anthropic/v1/messages", anthropic_headers(key))
    assert answer.status_code == 401
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "authentication_error"


def test_sandbox_refuses_the_other_providers_key(gateway):
    openai_key = json.loads(gateway.redis().get("tg:provider:sandbox"))["api_key"]
    answer = sandbox_post(gateway, "/anthropic/v1/messages", {"x-api-key": openai_key})
    assert answer.status_code == 401


def test_sandbox_answers_the_key_the_gateway_sends(gateway):
    provider = json.loads(gateway.redis().get("tg:provider:sandbox"))
    assert provider["api_key"].startswith("sk-sandbox-")
    answer = sandbox_post(gateway, "/openai/v1/chat/completions", {"Authorization": f"Bearer {provider['api_key']}"})
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"].startswith("Tollgate sandbox")


def test_sandbox_answers_a_body_it_cannot_echo_with_a_400(gateway):
    provider = json.loads(gateway.redis().get("tg:provider:sandbox"))
    answer = httpx.post(f"{gateway.url}/sandbox/openai/v1/responses", timeout=10,
                        headers={"Authorization": f"Bearer {provider['api_key']}", "Content-Type": "application/json"},
                        content=b'{"model": "sandbox-chat", "input": "Hi", "instructions": NaN}')
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("sandbox: the body is not a JSON object")


def test_sandbox_lists_its_models_as_each_provider_does(gateway):
    """What a provider "test" call reads: GET …/v1/models with the provider's key."""
    r = gateway.redis()
    openai_key = json.loads(r.get("tg:provider:sandbox"))["api_key"]
    anthropic_key = json.loads(r.get("tg:provider:sandbox-anthropic"))["api_key"]
    listed = httpx.get(f"{gateway.url}/sandbox/openai/v1/models", headers={"Authorization": f"Bearer {openai_key}"})
    assert listed.status_code == 200 and listed.json()["object"] == "list"
    assert [item["id"] for item in listed.json()["data"]] == ["sandbox-chat", "sandbox-reasoner", "sandbox-embed"]
    listed = httpx.get(f"{gateway.url}/sandbox/anthropic/v1/models", headers={"x-api-key": anthropic_key})
    assert listed.status_code == 200 and listed.json()["has_more"] is False
    assert [item["id"] for item in listed.json()["data"]] == ["sandbox-claude"]
    assert httpx.get(f"{gateway.url}/sandbox/openai/v1/models").status_code == 401


def max_outputs(gateway) -> dict:
    r = gateway.redis()
    return {name: json.loads(r.get(f"tg:model:{name}"))["max_output"]
            for name in ("sandbox-chat", "sandbox-reasoner", "sandbox-claude")}


def test_sandbox_models_carry_real_maximum_outputs(gateway):
    assert max_outputs(gateway) == {"sandbox-chat": 16_384, "sandbox-reasoner": 100_000, "sandbox-claude": 64_000}


def test_running_the_demo_again_restores_the_maximum_outputs(gateway):
    gateway.cli("model", "add", "sandbox-claude", "--provider", "sandbox-anthropic", "--input", "3", "--output", "15",
                "--cached-input", "0.30", "--cache-write", "3.75", "--cache-write-1h", "6", "--max-output", "4096")
    assert max_outputs(gateway)["sandbox-claude"] == 4096
    gateway.cli("demo")
    assert max_outputs(gateway)["sandbox-claude"] == 64_000


def test_claude_codes_max_tokens_is_answered(gateway, gw_funded_key):
    key, _ = gw_funded_key
    with anthropic_client(gateway, key).messages.stream(
            model="sandbox-claude", max_tokens=64_000, messages=MESSAGES) as stream:
        assert stream.get_final_message().usage.output_tokens == 24
