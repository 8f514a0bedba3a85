"""What the fake provider answers: realistic OpenAI and Anthropic bodies and SSE streams, written
once as files that fake_upstream.lua loads when its nginx starts."""
import json
from pathlib import Path

CREATED = 1732500000
PIECES = ["Load"] + [" " + word for word in (
    "balancers spread the morning rush across quiet servers while every token "
    "is counted twice and billed exactly once today").split()]  # 20 content chunks

OPENAI_USAGE = {
    "prompt_tokens": 1250, "completion_tokens": 36, "total_tokens": 1286,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 16, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
}
ANTHROPIC_INPUT_USAGE = {"input_tokens": 25, "cache_creation_input_tokens": 512,
                         "cache_read_input_tokens": 1024}
ANTHROPIC_OUTPUT_TOKENS = len(PIECES)


def _json(obj):
    return json.dumps(obj, separators=(",", ":"))


def _sse(data, event=None):
    return (f"event: {event}\n" if event else "") + f"data: {_json(data)}\n\n"


def _openai_head(kind):
    return {"id": "chatcmpl-bench", "object": kind, "created": CREATED, "model": "bench-chat",
            "service_tier": "default", "system_fingerprint": "fp_bench"}


def openai_completion():
    message = {"role": "assistant", "content": "".join(PIECES), "refusal": None, "annotations": []}
    return _json({**_openai_head("chat.completion"),
                  "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
                  "usage": OPENAI_USAGE})


def openai_stream(include_usage):
    head = _openai_head("chat.completion.chunk")
    usage_field = {"usage": None} if include_usage else {}  # OpenAI sends "usage":null until the end

    def chunk(delta, finish_reason=None):
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**head, "choices": [choice], **usage_field})

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in PIECES]
    events.append(chunk({}, "stop"))
    if include_usage:
        events.append(_sse({**head, "choices": [], "usage": OPENAI_USAGE}))
    events.append("data: [DONE]\n\n")
    return "".join(events)


def _anthropic_message(content, stop_reason, output_tokens):
    return {"id": "msg_bench", "type": "message", "role": "assistant", "model": "bench-claude",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {**ANTHROPIC_INPUT_USAGE, "output_tokens": output_tokens}}


def anthropic_message():
    return _json(_anthropic_message([{"type": "text", "text": "".join(PIECES)}], "end_turn",
                                    ANTHROPIC_OUTPUT_TOKENS))


def anthropic_stream():
    events = [
        {"type": "message_start", "message": _anthropic_message([], None, 1)},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
          for piece in PIECES),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": ANTHROPIC_OUTPUT_TOKENS}},
        {"type": "message_stop"},
    ]
    return "".join(_sse(event, event["type"]) for event in events)


def write(directory: Path):
    files = {
        "openai.json": openai_completion(),
        "openai_stream.sse": openai_stream(include_usage=False),
        "openai_stream_usage.sse": openai_stream(include_usage=True),
        "anthropic.json": anthropic_message(),
        "anthropic_stream.sse": anthropic_stream(),
    }
    for name, text in files.items():
        (directory / name).write_text(text)
