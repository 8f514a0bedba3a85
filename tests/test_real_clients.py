"""Client libraries a new user tries first, against the gateway's sandbox models: LangChain's
ChatOpenAI and ChatAnthropic and litellm's completion(), streamed and not. Each answer's usage, as
the library reports it, is what the gateway billed: the sandbox's for the body the library sends
(the figures by hand, as helpers.LONG_PROMPT says). Everything runs offline: a connection to any
host but this one fails the test (tiktoken's encoding downloads, litellm's price-list fetch)."""
from __future__ import annotations

import os
import socket

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm reads its bundled price list, no fetch

import litellm  # noqa: E402
import pytest  # noqa: E402
from helpers import CACHED_SYSTEM, LONG_PROMPT, MESSAGES, assert_billed, chat_classes  # noqa: E402
from langchain_anthropic import ChatAnthropic  # noqa: E402
from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

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


def test_langchain_chat_openai_invoke_reports_the_billed_usage(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = chat_openai(gateway, key, "sandbox-reasoner").invoke(LONG_PROMPT)
    assert answer.content.startswith("Tollgate sandbox")
    # A 1,205-byte body: 302 prompt tokens, 128 of them cached; 24 output and 16 reasoning:
    # 174 × 1,100 + 128 × 550 + (24 + 16) × 4,400 = 437,800 nano
    tokens = {"in": 174, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 16}
    assert classes_of(answer.usage_metadata) == tokens
    assert_billed(gateway, key, before, tokens, 437_800, stream=False)


def test_langchain_chat_openai_stream_reports_the_billed_usage(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = summed(list(chat_openai(gateway, key, "sandbox-chat").stream(LONG_PROMPT)))
    assert answer.content.startswith("Tollgate sandbox")
    # A 1,240-byte body: 310 prompt tokens, 128 of them cached; 24 output:
    # 182 × 150 + 128 × 75 + 24 × 600 = 51,300 nano
    tokens = {"in": 182, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}
    assert classes_of(answer.usage_metadata) == tokens
    assert_billed(gateway, key, before, tokens, 51_300, stream=True)


def test_langchain_chat_anthropic_invoke_reports_the_billed_usage(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = chat_anthropic(gateway, key).invoke(CLAUDE_PROMPT)
    assert answer.content.startswith("Tollgate sandbox")
    # A 2,401-byte body: 601 prompt tokens, 256 of them cached, 300 written to the cache; 24
    # output: 45 × 3,000 + 256 × 300 + 300 × 3,750 + 24 × 15,000 = 1,696,800 nano
    tokens = {"in": 45, "cr": 256, "cw": 300, "cw1h": 0, "out": 24, "rsn": 0}
    assert classes_of(answer.usage_metadata) == tokens
    assert_billed(gateway, key, before, tokens, 1_696_800, stream=False)


def test_langchain_chat_anthropic_stream_reports_the_billed_usage(gateway, gw_funded_key):
    # LangChain reads a stream's usage from message_delta alone, input and cache counts too.
    key, before = gw_funded_key
    answer = summed(list(chat_anthropic(gateway, key).stream(CLAUDE_PROMPT)))
    assert answer.text.startswith("Tollgate sandbox")
    # A 2,415-byte body: 604 prompt tokens, 256 of them cached, 302 written to the cache; 24
    # output: 46 × 3,000 + 256 × 300 + 302 × 3,750 + 24 × 15,000 = 1,707,300 nano
    tokens = {"in": 46, "cr": 256, "cw": 302, "cw1h": 0, "out": 24, "rsn": 0}
    assert classes_of(answer.usage_metadata) == tokens
    assert_billed(gateway, key, before, tokens, 1_707_300, stream=True)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return "Sunny"


def test_langchain_bound_tools_get_a_tool_call_over_openai(gateway, gw_funded_key):
    key, _ = gw_funded_key
    answer = chat_openai(gateway, key, "sandbox-chat").bind_tools([get_weather], tool_choice="any").invoke(
        "Weather in Paris?")
    assert [(call["name"], call["args"]) for call in answer.tool_calls] == [("get_weather", {"city": ""})]


def test_langchain_bound_tools_get_a_tool_call_over_anthropic(gateway, gw_funded_key):
    key, _ = gw_funded_key
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


def test_litellm_completion_reports_the_billed_usage(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = litellm_chat(gateway, key)
    assert answer.choices[0].message.content.startswith("Tollgate sandbox")
    # A 1,186-byte body: 297 prompt tokens, 128 of them cached; 24 output:
    # 169 × 150 + 128 × 75 + 24 × 600 = 49,350 nano
    tokens = {"in": 169, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}
    assert chat_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 49_350, stream=False)


def test_litellm_streamed_completion_reports_the_billed_usage(gateway, gw_funded_key):
    key, before = gw_funded_key
    chunks = list(litellm_chat(gateway, key, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Tollgate sandbox")
    # A 1,240-byte body: 310 prompt tokens, 128 of them cached; 24 output:
    # 182 × 150 + 128 × 75 + 24 × 600 = 51,300 nano
    tokens = {"in": 182, "cr": 128, "cw": 0, "cw1h": 0, "out": 24, "rsn": 0}
    assert chat_classes(chunks[-1].usage) == tokens
    assert_billed(gateway, key, before, tokens, 51_300, stream=True)


def test_litellm_anthropic_completion_reports_the_billed_usage(gateway, gw_funded_key):
    key, before = gw_funded_key
    answer = litellm_claude(gateway, key)
    assert answer.choices[0].message.content.startswith("Tollgate sandbox")
    # A 2,445-byte body: 612 prompt tokens, 256 of them cached, 306 written to the cache; 24
    # output: 50 × 3,000 + 256 × 300 + 306 × 3,750 + 24 × 15,000 = 1,734,300 nano
    tokens = {"in": 50, "cr": 256, "cw": 306, "cw1h": 0, "out": 24, "rsn": 0}
    assert litellm_claude_classes(answer.usage) == tokens
    assert_billed(gateway, key, before, tokens, 1_734_300, stream=False)


def test_litellm_streamed_anthropic_completion_reports_the_billed_usage(gateway, gw_funded_key):
    key, before = gw_funded_key
    chunks = list(litellm_claude(gateway, key, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Tollgate sandbox")
    # A 2,461-byte body: 616 prompt tokens, 256 of them cached, 308 written to the cache; 24
    # output: 52 × 3,000 + 256 × 300 + 308 × 3,750 + 24 × 15,000 = 1,747,800 nano
    tokens = {"in": 52, "cr": 256, "cw": 308, "cw1h": 0, "out": 24, "rsn": 0}
    assert litellm_claude_classes(chunks[-1].usage) == tokens
    assert_billed(gateway, key, before, tokens, 1_747_800, stream=True)
