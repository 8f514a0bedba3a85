"""Client libraries a new user tries first, against the gateway's sandbox models: LangChain's
ChatOpenAI and ChatAnthropic and litellm's completion(), streamed and not. Each answer's usage, as
the library reports it, is what the gateway billed. Everything runs offline: a connection to any
host but this one fails the test (tiktoken's encoding downloads, litellm's price-list fetch)."""
from __future__ import annotations

import os
import socket

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm reads its bundled price list, no fetch

import litellm  # noqa: E402
import pytest  # noqa: E402
from helpers import balance_nano, new_customer  # noqa: E402
from langchain_anthropic import ChatAnthropic  # noqa: E402
from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from test_gateway_billing import SANDBOX_CHAT, SANDBOX_REASONER  # noqa: E402
from test_gateway_sdks import (  # noqa: E402
    CACHED_SYSTEM,
    LONG_PROMPT,
    MESSAGES,
    SANDBOX_CLAUDE,
    assert_billed,
    chat_classes,
)

litellm.suppress_debug_info = True
# litellm's own pydantic and deprecation warnings, nothing of ours
# What the clients parse does not depend on the database: once, against the SQLite instance.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning"),
              pytest.mark.usefixtures("database_independent")]
CLAUDE_PROMPT = [SystemMessage(content=CACHED_SYSTEM), HumanMessage(content=LONG_PROMPT)]


@pytest.fixture(autouse=True, scope="module")
def offline():
    """Fails the module if anything connected to a host other than this one."""
    attempts = []
    connect = socket.socket.connect

    def loopback_only(sock, address):
        if isinstance(address, tuple) and not address[0].startswith("127.") and address[0] not in ("::1", "localhost"):
            attempts.append(address)
            raise OSError(f"offline test: no connection to {address}")
        return connect(sock, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", loopback_only)
        yield
    assert attempts == []


@pytest.fixture
def customer(gateway):
    """(key, balance before) of a fresh $10 account."""
    _, key = new_customer(gateway)
    return key, balance_nano(gateway, key)


def classes_of(usage_metadata) -> dict:
    """The disjoint usage classes of LangChain's usage_metadata (its input count includes cache
    reads and writes, its output count reasoning)."""
    inputs = usage_metadata.get("input_token_details", {})
    reasoning = usage_metadata.get("output_token_details", {}).get("reasoning", 0)
    read = inputs.get("cache_read", 0)
    write_1h = inputs.get("ephemeral_1h_input_tokens", 0)
    write = inputs.get("ephemeral_5m_input_tokens", 0) or inputs.get("cache_creation", 0)
    return {"in": usage_metadata["input_tokens"] - read - write - write_1h, "cr": read, "cw": write, "cw1h": write_1h,
            "out": usage_metadata["output_tokens"] - reasoning, "rsn": reasoning}


def summed(chunks):
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


# -- LangChain -----------------------------------------------------------------------------------

def chat_openai(gateway, key, model) -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=20,
                      stream_usage=True)


def chat_anthropic(gateway, key) -> ChatAnthropic:
    return ChatAnthropic(model="sandbox-claude", base_url=gateway.url, api_key=key, max_retries=0, timeout=20,
                         max_tokens=64_000)


def test_langchain_chat_openai_invoke_reports_the_billed_usage(gateway, customer):
    key, before = customer
    answer = chat_openai(gateway, key, "sandbox-reasoner").invoke(LONG_PROMPT)
    assert answer.content.startswith("Tollgate sandbox")
    tokens = classes_of(answer.usage_metadata)
    assert tokens["cr"] > 0 and tokens["rsn"] > 0
    assert_billed(gateway, key, before, tokens, SANDBOX_REASONER, stream=False)


def test_langchain_chat_openai_stream_reports_the_billed_usage(gateway, customer):
    key, before = customer
    answer = summed(list(chat_openai(gateway, key, "sandbox-chat").stream(LONG_PROMPT)))
    assert answer.content.startswith("Tollgate sandbox")
    assert_billed(gateway, key, before, classes_of(answer.usage_metadata), SANDBOX_CHAT, stream=True)


def test_langchain_chat_anthropic_invoke_reports_the_billed_usage(gateway, customer):
    key, before = customer
    answer = chat_anthropic(gateway, key).invoke(CLAUDE_PROMPT)
    assert answer.content.startswith("Tollgate sandbox")
    tokens = classes_of(answer.usage_metadata)
    assert tokens["cr"] > 0 and tokens["cw"] > 0
    assert_billed(gateway, key, before, tokens, SANDBOX_CLAUDE, stream=False)


def test_langchain_chat_anthropic_stream_reports_the_billed_usage(gateway, customer):
    # LangChain reads a stream's usage from message_delta alone, input and cache counts too.
    key, before = customer
    answer = summed(list(chat_anthropic(gateway, key).stream(CLAUDE_PROMPT)))
    assert answer.text.startswith("Tollgate sandbox")
    tokens = classes_of(answer.usage_metadata)
    assert tokens["cr"] > 0 and tokens["cw"] > 0
    assert_billed(gateway, key, before, tokens, SANDBOX_CLAUDE, stream=True)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return "Sunny"


def test_langchain_bound_tools_get_a_tool_call_over_openai(gateway, customer):
    key, _ = customer
    answer = chat_openai(gateway, key, "sandbox-chat").bind_tools([get_weather], tool_choice="any").invoke(
        "Weather in Paris?")
    assert [(call["name"], call["args"]) for call in answer.tool_calls] == [("get_weather", {"city": ""})]


def test_langchain_bound_tools_get_a_tool_call_over_anthropic(gateway, customer):
    key, _ = customer
    answer = chat_anthropic(gateway, key).bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?")
    assert [(call["name"], call["args"]) for call in answer.tool_calls] == [("get_weather", {"city": ""})]


# -- litellm -------------------------------------------------------------------------------------

def litellm_chat(gateway, key, **options):
    return litellm.completion(model="openai/sandbox-chat", api_base=f"{gateway.url}/v1", api_key=key,
                              messages=MESSAGES, num_retries=0, timeout=20, **options)


def litellm_claude(gateway, key, **options):
    return litellm.completion(model="anthropic/sandbox-claude", api_base=gateway.url, api_key=key, max_tokens=64_000,
                              messages=[{"role": "system", "content": CACHED_SYSTEM}, *MESSAGES],
                              num_retries=0, timeout=20, **options)


def litellm_claude_classes(usage) -> dict:
    """litellm's usage of an Anthropic answer: its prompt count includes cache reads and writes."""
    read, write = usage.cache_read_input_tokens, usage.cache_creation_input_tokens
    return {"in": usage.prompt_tokens - read - write, "cr": read, "cw": write, "cw1h": 0,
            "out": usage.completion_tokens, "rsn": 0}


def test_litellm_completion_reports_the_billed_usage(gateway, customer):
    key, before = customer
    answer = litellm_chat(gateway, key)
    assert answer.choices[0].message.content.startswith("Tollgate sandbox")
    assert_billed(gateway, key, before, chat_classes(answer.usage), SANDBOX_CHAT, stream=False)


def test_litellm_streamed_completion_reports_the_billed_usage(gateway, customer):
    key, before = customer
    chunks = list(litellm_chat(gateway, key, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Tollgate sandbox")
    assert_billed(gateway, key, before, chat_classes(chunks[-1].usage), SANDBOX_CHAT, stream=True)


def test_litellm_anthropic_completion_reports_the_billed_usage(gateway, customer):
    key, before = customer
    answer = litellm_claude(gateway, key)
    assert answer.choices[0].message.content.startswith("Tollgate sandbox")
    tokens = litellm_claude_classes(answer.usage)
    assert tokens["cr"] > 0 and tokens["cw"] > 0
    assert_billed(gateway, key, before, tokens, SANDBOX_CLAUDE, stream=False)


def test_litellm_streamed_anthropic_completion_reports_the_billed_usage(gateway, customer):
    key, before = customer
    chunks = list(litellm_claude(gateway, key, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Tollgate sandbox")
    assert_billed(gateway, key, before, litellm_claude_classes(chunks[-1].usage), SANDBOX_CLAUDE, stream=True)
