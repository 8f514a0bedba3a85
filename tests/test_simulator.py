"""The provider simulator (tests/simulator.py), exercised with plain http.client and sockets."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
from simulator import (
    FIXTURES,
    Simulator,
    answer,
    anthropic_message,
    anthropic_sse,
    error_answer,
    fixture_path,
    iter_fixtures,  # noqa: F401
    openai_chat,
    openai_chat_sse,
    simulator,
    sse,
    usage,
)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(sim, path, payload=None, headers=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=timeout)
    body = json.dumps(payload if payload is not None else CHAT).encode()
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    return conn, response


def fixture_bytes(name):
    return fixture_path(name).read_bytes()


def raw_exchange(sim, request: bytes, timeout=5) -> bytes:
    """Sends raw request bytes; returns everything the simulator sends until it closes."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=timeout) as s:
        s.sendall(request)
        received = b""
        while True:
            data = s.recv(65536)
            if not data:
                return received
            received += data


def chunk_sizes(raw: bytes) -> tuple[list[int], bytes]:
    """The sizes of the chunks of a chunked HTTP answer, and the joined body."""
    _head, rest = raw.split(b"\r\n\r\n", 1)
    sizes, body = [], b""
    while rest:
        line, rest = rest.split(b"\r\n", 1)
        size = int(line, 16)
        if size == 0:
            break
        sizes.append(size)
        body += rest[:size]
        rest = rest[size + 2:]
    return sizes, body


def chunked_request(path, payload: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload


# -- default answers by path ---------------------------------------------------------------

@pytest.mark.parametrize("path, stream, fixture", [
    ("/v1/chat/completions", True, "openai_chat_stream.sse"),
    ("/v1/chat/completions", False, "openai_chat.json"),
    ("/v1beta/openai/chat/completions", True, "openai_chat_stream.sse"),
    ("/v1/messages", True, "anthropic_stream.sse"),
    ("/v1/messages", False, "anthropic_message.json"),
    ("/v1/responses", True, "openai_responses_stream.sse"),
    ("/v1/responses", False, "openai_responses.json"),
    ("/v1/embeddings", False, "openai_embeddings.json"),
    ("/v1/completions", True, "openai_completions_stream.sse"),
    ("/v1/completions", False, "openai_completions.json"),
])
def test_default_answer_is_the_fixture_for_the_path(simulator, path, stream, fixture):
    _, response = post(simulator, path, {**CHAT, "stream": stream})
    assert response.status == 200
    assert response.read() == fixture_bytes(fixture)
    expected_type = "text/event-stream" if stream else "application/json"
    assert response.getheader("Content-Type").startswith(expected_type)


def test_stream_goes_out_chunked_and_whole_answer_with_content_length(simulator):
    _, response = post(simulator, "/v1/chat/completions", {**CHAT, "stream": True})
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Length") is None
    response.read()
    _, response = post(simulator, "/v1/chat/completions", CHAT)
    assert response.getheader("Content-Length") == str(len(fixture_bytes("openai_chat.json")))
    assert response.getheader("Transfer-Encoding") is None


def test_count_tokens_and_unknown_paths(simulator):
    _, response = post(simulator, "/v1/messages/count_tokens", {"model": "m", "messages": []})
    assert response.status == 200 and json.loads(response.read()) == {"input_tokens": 42}
    _, response = post(simulator, "/v2/nothing")
    assert response.status == 404
    assert "error" in json.loads(response.read())


def test_answer_carries_a_request_id(simulator):
    _, response = post(simulator, "/v1/chat/completions")
    response.read()
    assert response.getheader("x-request-id") == "req_sim_1"


# -- scripted answers ----------------------------------------------------------------------

def test_enqueued_answers_come_first_in_first_out_then_defaults(simulator):
    simulator.enqueue("anthropic_stream_crlf")
    simulator.enqueue("xai_grok_stream")
    bodies = [post(simulator, "/v1/chat/completions")[1].read() for _ in range(3)]
    assert bodies == [fixture_bytes("anthropic_stream_crlf.sse"), fixture_bytes("xai_grok_stream.sse"),
                      fixture_bytes("openai_chat.json")]


@pytest.mark.parametrize("name", iter_fixtures())
def test_every_fixture_arrives_byte_exact_in_uneven_chunks(simulator, name):
    simulator.enqueue(name, chunking=[7, 1, 300])
    _, response = post(simulator, "/v1/chat/completions")
    assert response.read() == fixture_bytes(name)


def test_content_type_comes_from_the_sidecar(simulator):
    simulator.enqueue("xai_grok_stream")
    simulator.enqueue("anthropic_stream.sse")
    assert post(simulator, "/x")[1].getheader("Content-Type") == "text/event-stream"
    assert post(simulator, "/x")[1].getheader("Content-Type") == "text/event-stream; charset=utf-8"


def test_bytes_chunking_sends_one_byte_per_chunk(simulator):
    simulator.enqueue("gemini_chat", chunking="bytes")
    sizes, body = chunk_sizes(raw_exchange(simulator, chunked_request("/v1/chat/completions", b"{}")))
    assert body == fixture_bytes("gemini_chat.json")
    assert set(sizes) == {1} and len(sizes) == len(body)


def test_chunk_size_list_is_followed_and_its_last_size_repeated(simulator):
    simulator.enqueue("openai_completions", chunking=[100, 50])
    sizes, body = chunk_sizes(raw_exchange(simulator, chunked_request("/v1/completions", b"{}")))
    assert body == fixture_bytes("openai_completions.json")
    assert sizes[:3] == [100, 50, 50] and sizes[-1] <= 50 and sum(sizes) == len(body)


def test_delay_spaces_the_chunks_apart(simulator):
    simulator.enqueue(body=b"abcdef", chunking=[1], delay=0.05)
    started = time.monotonic()
    _, response = post(simulator, "/v1/chat/completions")
    assert response.read() == b"abcdef"
    assert time.monotonic() - started >= 0.25


def test_cut_after_closes_mid_stream(simulator):
    data = fixture_bytes("openai_chat_stream.sse")
    simulator.enqueue("openai_chat_stream", chunking=[64], cut_after=1000)
    _, response = post(simulator, "/v1/chat/completions")
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert cut.value.partial == data[:1000]


def test_cut_after_on_a_whole_answer_sends_fewer_bytes_than_announced(simulator):
    simulator.enqueue("anthropic_message", cut_after=10)
    raw = raw_exchange(simulator, chunked_request("/v1/messages", b"{}"))
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d" % len(fixture_bytes("anthropic_message.json")) in head
    assert body == fixture_bytes("anthropic_message.json")[:10]


def test_cut_after_zero_closes_right_after_the_headers(simulator):
    simulator.enqueue("anthropic_stream", cut_after=0)
    raw = raw_exchange(simulator, chunked_request("/v1/messages", b"{}"))
    assert raw.endswith(b"\r\n\r\n") and b"Transfer-Encoding: chunked" in raw


def test_error_status_headers_and_body_pass_through(simulator):
    simulator.enqueue("errors/openai_rate_limit", status=429, headers={"retry-after": "1"})
    _, response = post(simulator, "/v1/chat/completions")
    assert response.status == 429
    assert response.getheader("retry-after") == "1"
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(response.read())["error"]["code"] == "rate_limit_exceeded"


def test_raw_body_with_a_replaced_content_type(simulator):
    simulator.enqueue(body=b"<html>502</html>", status=502, headers={"Content-Type": "text/html"})
    _, response = post(simulator, "/v1/messages")
    assert response.status == 502
    assert response.getheader("Content-Type") == "text/html"
    assert response.read() == b"<html>502</html>"


def test_enqueue_rejects_bad_arguments(simulator):
    with pytest.raises(ValueError):
        simulator.enqueue()
    with pytest.raises(ValueError):
        simulator.enqueue("openai_chat", body=b"{}")
    with pytest.raises(ValueError):
        simulator.enqueue("openai_chat", chunking="lines")
    with pytest.raises(FileNotFoundError):
        simulator.enqueue("no_such_fixture")


# -- what went upstream ----------------------------------------------------------------------

def test_requests_are_recorded(simulator):
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    post(simulator, "/v1/chat/completions?x=1", payload, {"Authorization": "Bearer sk-provider"})[1].read()
    request = simulator.last_request
    assert (request.method, request.path) == ("POST", "/v1/chat/completions?x=1")
    assert request.headers["authorization"] == "Bearer sk-provider"
    assert request.json()["stream_options"] == {"include_usage": True}
    assert request.body == json.dumps(payload).encode()


def test_chunked_request_body_is_recorded(simulator):
    raw_exchange(simulator, b"POST /v1/messages HTTP/1.1\r\nHost: sim\r\nTransfer-Encoding: chunked\r\n"
                            b"Connection: close\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n")
    assert simulator.last_request.json() == {"a": 1}


def test_reset_forgets_requests_and_queue(simulator):
    simulator.enqueue("gemini_chat")
    post(simulator, "/v1/messages")[1].read()
    simulator.enqueue("gemini_chat")
    simulator.reset()
    assert simulator.requests == []
    assert post(simulator, "/v1/messages")[1].read() == fixture_bytes("anthropic_message.json")


# -- connections -----------------------------------------------------------------------------

def test_keep_alive_serves_several_requests_on_one_connection(simulator):
    simulator.enqueue("anthropic_stream", chunking=[33])
    conn, response = post(simulator, "/v1/messages")
    response.read()
    sock = conn.sock
    conn.request("POST", "/v1/messages", body=b"{}")
    assert conn.getresponse().read() == fixture_bytes("anthropic_message.json")
    assert conn.sock is sock


def test_http_1_0_request_gets_no_chunked_encoding(simulator):
    simulator.enqueue("deepseek_reasoner_stream", chunking=[10])
    raw = raw_exchange(simulator, b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head
    assert body == fixture_bytes("deepseek_reasoner_stream.sse")


def test_hang_never_answers_until_stopped():
    sim = Simulator().start()
    sim.enqueue_hang()
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=0.3)
    conn.request("POST", "/v1/chat/completions", body=b"{}")
    with pytest.raises(socket.timeout):
        conn.getresponse()
    assert sim.last_request.path == "/v1/chat/completions"
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 2


def test_reset_answers_with_a_connection_reset_and_no_byte(simulator):
    reset = simulator.enqueue_reset()
    with socket.create_connection(("127.0.0.1", simulator.port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        with pytest.raises(ConnectionResetError):
            s.recv(1)
    assert reset.ended.wait(5) and reset.outcome == "reset"
    assert simulator.last_request.body == b"{}"


def test_url_unreachable_refuses_connections(simulator):
    port = int(simulator.url_unreachable.rsplit(":", 1)[1])
    assert simulator.url_unreachable.endswith(f":{port}")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_url_and_context_manager():
    with Simulator() as sim:
        assert sim.url == f"http://127.0.0.1:{sim.port}"
        assert post(sim, "/v1/embeddings")[1].status == 200


def test_fixtures_directory_holds_every_named_default():
    for name in ("openai_chat_stream.sse", "anthropic_message.json", "errors/openai_rate_limit.json"):
        assert (FIXTURES / name).is_file()


# -- the hostile provider: generated answers, records of what was sent -----------------------------

def sse_data(body: bytes) -> list[str]:
    """The data of each event of a stream."""
    return [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]


def test_usage_is_written_exactly_as_given():
    assert usage(prompt_tokens=10, completion_tokens="1e300") == '{"prompt_tokens":10,"completion_tokens":1e300}'
    assert usage(completion_tokens='"100"') == '{"completion_tokens":"100"}'


def test_openai_chat_carries_every_choice_and_the_usage_text_verbatim():
    text = '{"prompt_tokens":1,"completion_tokens":-5,"completion_tokens":2.5}'
    body = openai_chat(text, choices=3)
    assert text.encode() in body
    assert [c["index"] for c in json.loads(body)["choices"]] == [0, 1, 2]
    assert "usage" not in json.loads(openai_chat(None))


def test_openai_chat_sse_ends_with_one_usage_chunk_per_usage_text():
    data = sse_data(openai_chat_sse([usage(completion_tokens=1), usage(completion_tokens=2)], choices=2))
    assert data[-1] == "[DONE]"
    assert [json.loads(d)["usage"] for d in data[-3:-1]] == [{"completion_tokens": 1}, {"completion_tokens": 2}]
    assert all(json.loads(d)["choices"] == [] for d in data[-3:-1])
    assert {json.loads(d)["choices"][0]["index"] for d in data[:-3]} == {0, 1}


@pytest.mark.parametrize("body, count", [
    (openai_chat_sse([usage(completion_tokens=7)], giant=5_000_000), b'"completion_tokens":7'),
    (anthropic_sse(usage(input_tokens=1), [usage(output_tokens=7)], giant=5_000_000), b'"output_tokens":7'),
], ids=["openai", "anthropic"])
def test_a_giant_event_has_exactly_the_size_asked_and_the_usage_comes_after_it(body, count):
    giant = [d for d in sse_data(body) if len(d) > 1000]
    assert [len(d) for d in giant] == [5_000_000]
    json.loads(giant[0])
    assert body.index(count) > body.index(giant[0].encode()) + 5_000_000


def test_anthropic_sse_puts_the_start_usage_in_message_start_and_each_delta_usage_in_a_message_delta():
    body = anthropic_sse(usage(input_tokens=3), [usage(output_tokens=1), usage(output_tokens=9)])
    events = [json.loads(d) for d in sse_data(body)]
    assert events[0]["message"]["usage"] == {"input_tokens": 3}
    assert [e["usage"] for e in events if e["type"] == "message_delta"] == [{"output_tokens": 1}, {"output_tokens": 9}]
    assert events[-1]["type"] == "message_stop"
    assert b"event: message_delta\n" in body


def test_anthropic_message_and_error_answers():
    assert json.loads(anthropic_message(usage(output_tokens=4)))["usage"] == {"output_tokens": 4}
    assert json.loads(error_answer("openai"))["error"]["type"] == "server_error"
    anthropic_error = json.loads(error_answer("anthropic", usage(output_tokens=2)))
    assert anthropic_error["type"] == "error" and anthropic_error["usage"] == {"output_tokens": 2}


def test_a_generated_stream_goes_out_as_an_event_stream(simulator):
    body = openai_chat_sse([usage(completion_tokens=1)])
    sent = simulator.enqueue(body=body, stream=True)
    _, response = post(simulator, "/v1/chat/completions")
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.read() == body
    assert sent.ended.wait(2) and (sent.outcome, sent.sent) == ("complete", len(body))


def test_a_header_given_twice_is_sent_twice(simulator):
    simulator.enqueue(body=b"{}", headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    _, response = post(simulator, "/v1/chat/completions")
    response.read()
    assert response.headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert response.getheader("Content-Type") == "application/json"


def test_a_cut_answer_records_the_bytes_sent(simulator):
    sent = simulator.enqueue("openai_chat_stream", chunking=[64], cut_after=1000)
    _, response = post(simulator, "/v1/chat/completions")
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    assert sent.ended.wait(2) and (sent.outcome, sent.sent) == ("cut", 1000)


def test_forever_repeats_the_event_until_the_reader_closes(simulator):
    endless = simulator.enqueue(body=sse('{"n":0}'), stream=True, forever=sse('{"n":1}'))
    conn, response = post(simulator, "/v1/chat/completions")
    got = b""
    while len(got) < 1_000_000:
        got += response.read(65536)
    assert got.startswith(b'data: {"n":0}\n\ndata: {"n":1}\n\ndata: {"n":1}')
    assert not endless.ended.is_set()
    response.close()
    conn.close()
    assert endless.ended.wait(5)
    assert endless.outcome == "peer_closed"
    assert endless.sent >= 1_000_000


def test_forever_ends_when_the_simulator_stops():
    sim = Simulator().start()
    endless = sim.enqueue(body=b"", stream=True, forever=sse("x"))
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=b"{}")
    conn.getresponse().read(10)
    sim.stop()
    assert endless.ended.wait(5) and endless.outcome in ("stopped", "peer_closed")


def test_an_answer_waits_for_its_event(simulator):
    go = threading.Event()
    simulator.enqueue(body=b'{"late":true}', wait=go)
    conn = http.client.HTTPConnection("127.0.0.1", simulator.port, timeout=0.3)
    conn.request("POST", "/v1/chat/completions", body=b"{}")
    with pytest.raises(socket.timeout):
        conn.getresponse()
    go.set()
    conn = http.client.HTTPConnection("127.0.0.1", simulator.port, timeout=5)
    simulator.enqueue(body=b'{"next":true}', wait=go)
    conn.request("POST", "/v1/chat/completions", body=b"{}")
    assert conn.getresponse().read() == b'{"next":true}'


def test_the_responder_answers_what_nothing_was_queued_for(simulator):
    simulator.answer_with(lambda request: answer(body=b'{"path":"%s"}' % request.path.encode()))
    simulator.enqueue(body=b'{"queued":true}')
    assert post(simulator, "/v1/messages")[1].read() == b'{"queued":true}'
    assert post(simulator, "/v1/messages")[1].read() == b'{"path":"/v1/messages"}'
    simulator.answer_with(None)
    assert post(simulator, "/v1/messages")[1].read() == fixture_bytes("anthropic_message.json")


def test_forever_refuses_an_empty_event_or_a_cut():
    with pytest.raises(ValueError):
        answer(body=b"", forever=b"")
    with pytest.raises(ValueError):
        answer(body=b"", forever=b"x", cut_after=3)
