"""The chat completions the load tests send (several nodes, a Redis Cluster): small, each
distinct, of a size the sandbox prices exactly (see the tests' COST figures)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request


def body(i: int, stream: bool = False) -> dict:
    message = {"model": "sandbox-chat", "max_tokens": 30, "messages": [{"role": "user", "content": f"load {i % 1000:03d}"}]}
    if stream:
        message.update(stream=True, stream_options={"include_usage": True})
    return message


def call(url: str, key: str, i: int, stream: bool = False) -> tuple[int, str | None]:
    """(status, the gateway's request id) of body(i) read to its end; status -1 when nothing
    answered (the node was killed)."""
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body(i, stream)).encode(),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status, response.headers.get("x-request-id")
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, error.headers.get("x-request-id")
    except OSError:
        return -1, None
