"""The official OpenAI and Anthropic Python SDKs against the gateway's sandbox models: every call
shape they make works, each billed call costs exactly the sandbox price of the usage the SDK saw,
and errors come back as the SDKs' typed exceptions carrying the gateway's message."""
from __future__ import annotations

import anthropic
import openai
import pytest
from anthropic import Anthropic
from openai import OpenAI

from control_plane.money import cost_nano
from test_gateway_billing import SANDBOX_CHAT, SANDBOX_REASONER, api_get, tokens_of
from test_gateway_streams import balance_nano, new_customer

SANDBOX_CLAUDE = {"input": 3_000_000_000, "cached_input": 300_000_000, "cache_write": 3_750_000_000,
                  "cache_write_1h": 6_000_000_000, "output": 15_000_000_000, "reasoning": 15_000_000_000}
LONG_PROMPT = "Summarise the ledger rules. " * 40  # long enough for a cache hit in the sandbox
MESSAGES = [{"role": "user", "content": LONG_PROMPT}]


# -- helpers -----------------------------------------------------------------------------------

def openai_client(gateway, key) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20)


def anthropic_client(gateway, key) -> Anthropic:
    return Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20)


def chat_classes(usage) -> dict:
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    details = usage.completion_tokens_details
    reasoning = details.reasoning_tokens if details and details.reasoning_tokens else 0
    return {"in": usage.prompt_tokens - (cached or 0), "cr": cached or 0, "cw": 0, "cw1h": 0,
            "out": usage.completion_tokens - reasoning, "rsn": reasoning}


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


def assert_billed(gateway, key, before, expected_tokens, prices, stream):
    """The key's one usage row has the SDK's usage, costs exactly its price, and the balance
    dropped by that."""
    gateway.wait_drained()
    rows = api_get(gateway, key, "/api/v1/usage")["data"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert tokens_of(row) == expected_tokens
    assert row["cost_nano"] == cost_nano(expected_tokens, prices) > 0
    assert row["billing_basis"] == "provider"
    assert row["stream"] is stream
    assert balance_nano(gateway, key) == before - row["cost_nano"]


@pytest.fixture
def customer(gateway):
    """(key, balance before) of a fresh $10 account."""
    _, key = new_customer(gateway)
    return key, balance_nano(gateway, key)


# -- OpenAI SDK ----------------------------------------------------------------------------------

def test_openai_chat(gateway, customer):
    key, before = customer
    answer = openai_client(gateway, key).chat.completions.create(model="sandbox-reasoner", messages=MESSAGES)
    assert answer.choices[0].message.content.startswith("Tollgate sandbox")
    tokens = chat_classes(answer.usage)
    assert tokens["cr"] > 0 and tokens["rsn"] > 0
    assert_billed(gateway, key, before, tokens, SANDBOX_REASONER, stream=False)


def test_openai_chat_streamed(gateway, customer):
    key, before = customer
    chunks = list(openai_client(gateway, key).chat.completions.create(
        model="sandbox-chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Tollgate sandbox")
    assert_billed(gateway, key, before, chat_classes(chunks[-1].usage), SANDBOX_CHAT, stream=True)


def test_openai_completions(gateway, customer):
    key, before = customer
    answer = openai_client(gateway, key).completions.create(model="sandbox-chat", prompt=LONG_PROMPT)
    assert answer.choices[0].text
    assert_billed(gateway, key, before, chat_classes(answer.usage), SANDBOX_CHAT, stream=False)


def test_openai_completions_streamed(gateway, customer):
    key, before = customer
    chunks = list(openai_client(gateway, key).completions.create(
        model="sandbox-chat", prompt=LONG_PROMPT, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert_billed(gateway, key, before, chat_classes(chunks[-1].usage), SANDBOX_CHAT, stream=True)


def test_openai_responses(gateway, customer):
    key, before = customer
    answer = openai_client(gateway, key).responses.create(model="sandbox-reasoner", input=LONG_PROMPT)
    assert answer.output_text.startswith("Tollgate sandbox")
    tokens = responses_classes(answer.usage)
    assert tokens["cr"] > 0 and tokens["rsn"] > 0
    assert_billed(gateway, key, before, tokens, SANDBOX_REASONER, stream=False)


def test_openai_responses_streamed(gateway, customer):
    key, before = customer
    events = list(openai_client(gateway, key).responses.create(
        model="sandbox-reasoner", input=LONG_PROMPT, stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta").startswith("Tollgate sandbox")
    assert_billed(gateway, key, before, responses_classes(events[-1].response.usage), SANDBOX_REASONER, stream=True)


def test_openai_embeddings(gateway, customer):
    key, before = customer
    answer = openai_client(gateway, key).embeddings.create(model="sandbox-chat", input=["ledger", "balance"])
    assert len(answer.data) == 2 and len(answer.data[0].embedding) == 8
    tokens = {"in": answer.usage.prompt_tokens, "cr": 0, "cw": 0, "cw1h": 0, "out": 0, "rsn": 0}
    assert_billed(gateway, key, before, tokens, SANDBOX_CHAT, stream=False)


def test_openai_wrong_key_raises_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError, match="Invalid API key") as info:
        openai_client(gateway, "sk-tg-wrong").chat.completions.create(model="sandbox-chat", messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"


def test_openai_unknown_model_raises_not_found_error(gateway, customer):
    key, _ = customer
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
    assert "$0.000001" in info.value.message
    assert "max_tokens" in info.value.message


def test_openai_rate_limited_key_raises_rate_limit_error(gateway):
    _, key = new_customer(gateway, "10", "--rpm", "1")
    client = openai_client(gateway, key)
    client.chat.completions.create(model="sandbox-chat", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError, match="Rate limit reached for this key") as info:
        client.chat.completions.create(model="sandbox-chat", messages=MESSAGES)
    assert info.value.code == "rate_limited"
    assert "1 requests per minute" in info.value.message


# -- Anthropic SDK -------------------------------------------------------------------------------

CACHED_SYSTEM = [{"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral"}}]
CACHED_SYSTEM_1H = [{"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


def test_anthropic_messages(gateway, customer):
    key, before = customer
    message = anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, system=CACHED_SYSTEM, messages=MESSAGES)
    assert message.content[0].text.startswith("Tollgate sandbox")
    tokens = anthropic_classes(message.usage)
    assert tokens["cr"] > 0 and tokens["cw"] > 0
    assert_billed(gateway, key, before, tokens, SANDBOX_CLAUDE, stream=False)


def test_anthropic_messages_with_one_hour_cache_write(gateway, customer):
    key, before = customer
    message = anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, system=CACHED_SYSTEM_1H, messages=MESSAGES)
    tokens = anthropic_classes(message.usage)
    assert tokens["cw1h"] > 0 and tokens["cw"] == 0
    assert_billed(gateway, key, before, tokens, SANDBOX_CLAUDE, stream=False)


def test_anthropic_messages_stream_helper(gateway, customer):
    key, before = customer
    with anthropic_client(gateway, key).messages.stream(
            model="sandbox-claude", max_tokens=64, system=CACHED_SYSTEM, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text.startswith("Tollgate sandbox")
    assert_billed(gateway, key, before, anthropic_classes(message.usage), SANDBOX_CLAUDE, stream=True)


def test_anthropic_messages_create_streamed(gateway, customer):
    key, before = customer
    events = list(anthropic_client(gateway, key).messages.create(
        model="sandbox-claude", max_tokens=64, messages=MESSAGES, stream=True))
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = [e for e in events if e.type == "message_delta"][-1].usage
    assert events[-1].type == "message_stop"
    tokens = anthropic_classes(start)
    tokens["out"] = delta.output_tokens  # message_delta's count is cumulative and final
    assert_billed(gateway, key, before, tokens, SANDBOX_CLAUDE, stream=True)


def test_anthropic_count_tokens_is_answered_and_not_billed(gateway, customer):
    key, before = customer
    counted = anthropic_client(gateway, key).messages.count_tokens(model="sandbox-claude", messages=MESSAGES)
    assert counted.input_tokens > 0
    gateway.wait_drained()
    assert api_get(gateway, key, "/api/v1/usage")["data"] == []
    assert balance_nano(gateway, key) == before


def test_anthropic_models_list(gateway, customer):
    key, _ = customer
    models = list(anthropic_client(gateway, key).models.list())
    ids = [m.id for m in models]
    assert "sandbox-claude" in ids
    assert all(m.type == "model" for m in models)


def test_anthropic_wrong_key_raises_authentication_error(gateway):
    with pytest.raises(anthropic.AuthenticationError, match="Invalid API key") as info:
        anthropic_client(gateway, "sk-ant-api03-not-ours").messages.create(
            model="sandbox-claude", max_tokens=64, messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.body["error"]["type"] == "authentication_error"


def test_anthropic_unknown_model_raises_not_found_error(gateway, customer):
    key, _ = customer
    with pytest.raises(anthropic.NotFoundError, match="claude-nonexistent") as info:
        anthropic_client(gateway, key).messages.create(model="claude-nonexistent", max_tokens=64, messages=MESSAGES)
    assert info.value.body["error"]["type"] == "not_found_error"
