"""A scriptable fake provider for gateway tests: a threaded HTTP/1.1 server on a free loopback port
that answers with the golden fixtures (tests/fixtures) the way a real provider sends them.

    sim = Simulator().start()
    sim.enqueue("anthropic_stream", chunking="bytes")          # the next request gets this answer
    sim.enqueue("errors/openai_rate_limit", status=429, headers={"retry-after": "1"})
    sim.enqueue_hang()                                         # a request that is never answered
    sim.enqueue_reset()                                        # one answered with a TCP reset
    ... point the gateway's provider at sim.url (or sim.url_unreachable) ...
    sim.requests[-1].json()["stream_options"]                  # what went upstream
    sim.stop()

Answers are taken first in, first out; with none queued, the answer is the responder's (see
`answer_with`), else the default fixture for the request's path (see DEFAULTS). Streams, and any
answer not sent whole, go out with chunked transfer encoding (HTTP/1.1 requests) and keep-alive;
`cut_after=N` closes the connection after N bytes of body, without the closing chunk.

A hostile provider too: the builders below (`openai_chat`, `openai_chat_sse`, `anthropic_message`,
`anthropic_sse`, `error_answer`) generate answers whose usage is any JSON text (huge, negative,
fractional, string or duplicated counts, several usage chunks), many choices, and giant events;
`forever=` repeats an event after the body until the gateway closes the connection. `enqueue`
returns the Answer, which records what was sent and when it ended:

    endless = sim.enqueue(body=openai_chat_sse([]), stream=True, forever=sse(filler))
    endless.ended.wait(10); endless.outcome, endless.sent, endless.ended_at   # "peer_closed", bytes

As a pytest fixture: `from simulator import simulator` in a test module or conftest.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Sequence

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Path suffix -> (fixture when the request asks for a stream, fixture otherwise). The first
# suffix that ends the request path wins, so the longer ones come first.
DEFAULTS = (
    ("/messages/count_tokens", (None, None)),
    ("/chat/completions", ("openai_chat_stream", "openai_chat")),
    ("/completions", ("openai_completions_stream", "openai_completions")),
    ("/responses", ("openai_responses_stream", "openai_responses")),
    ("/embeddings", ("openai_embeddings", "openai_embeddings")),
    ("/messages", ("anthropic_stream", "anthropic_message")),
)
COUNT_TOKENS_BODY = b'{"input_tokens":42}'
NOT_FOUND_BODY = b'{"error":{"message":"simulator: no fixture for this path","type":"invalid_request_error"}}'
BYTES_DELAY = 0.0002  # between one-byte writes, unless a delay is given
SEND_BUFFER = 64 * 1024  # answers go out through a small send buffer: `sent` is close to what was read
# A `forever` event goes out repeated into blocks of about 64 KiB, one every 10 ms (6.5 MB/s): a
# reader that keeps up has read about all that was sent when it closes.
FOREVER_BLOCK = 64 * 1024
FOREVER_PACE = 0.01


@dataclass
class Request:
    """One request as the simulator received it."""
    method: str
    path: str
    headers: Message
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass(eq=False)
class Answer:
    """One answer to send, and once sent, what happened: `sent` body bytes written, `outcome`
    ("complete", "cut", "peer_closed" when a write failed, "stopped", "reset"), `ended` set at
    `ended_at` (time.monotonic())."""
    body: bytes = b""
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunking: str | Sequence[int] = "whole"
    delay: float = 0.0
    cut_after: int | None = None
    hang: bool = False
    reset: bool = False
    stream: bool = False
    forever: bytes | None = None
    wait: threading.Event | None = None
    sent: int = 0
    outcome: str | None = None
    ended_at: float | None = None
    ended: threading.Event = field(default_factory=threading.Event)

    def end(self, outcome: str) -> None:
        self.outcome, self.ended_at = outcome, time.monotonic()
        self.ended.set()


def fixture_path(name: str) -> Path:
    """A fixture by name: `anthropic_stream`, `anthropic_stream.sse`, `errors/openai_rate_limit`."""
    direct = FIXTURES / name
    if direct.is_file():
        return direct
    for ext in (".sse", ".json"):
        candidate = FIXTURES / (name + ext)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no fixture {name!r} under {FIXTURES}")


def fixture_answer(name: str) -> tuple[bytes, str, bool]:
    """(body bytes, content type, is a stream) of a fixture; its sidecar names the content type."""
    path = fixture_path(name)
    sidecar = path.with_name(path.name.rsplit(".", 1)[0] + ".expected.json")
    if sidecar.is_file():
        expected = json.loads(sidecar.read_text())
        return path.read_bytes(), expected["content_type"], expected["stream"]
    is_sse = path.suffix == ".sse"
    return path.read_bytes(), "text/event-stream" if is_sse else "application/json", is_sse


def split(body: bytes, chunking: str | Sequence[int]) -> list[bytes]:
    """The body's pieces: whole, one byte each, or the given sizes (the last repeated)."""
    if chunking == "whole":
        return [body] if body else []
    if chunking == "bytes":
        return [body[i:i + 1] for i in range(len(body))]
    sizes = list(chunking)
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError(f"chunk sizes must be positive: {chunking!r}")
    pieces, pos, i = [], 0, 0
    while pos < len(body):
        size = sizes[min(i, len(sizes) - 1)]
        pieces.append(body[pos:pos + size])
        pos, i = pos + size, i + 1
    return pieces


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self):
        body = self._read_body()
        request = Request(self.command, self.path, self.headers, body)
        sim = self.server.simulator
        sim.requests.append(request)
        answer = sim._next_answer(request)
        if answer.hang:
            self.close_connection = True
            sim._stopping.wait()
            return
        if answer.reset:
            self.close_connection = True
            # Closed with a zero linger time: the peer gets an RST, not a FIN, and no byte.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            answer.end("reset")
            return
        if answer.wait is not None:
            while not answer.wait.wait(0.05):
                if sim._stopping.is_set():
                    return
        try:
            answer.end(self._send(answer))
        except OSError:  # the gateway closed the connection
            self.close_connection = True
            answer.end("peer_closed")

    do_POST = do_GET = do_PUT = do_DELETE = _handle

    def _send(self, answer: Answer) -> str:
        """Sends the answer; returns how it ended ("complete", "cut", "stopped")."""
        sim = self.server.simulator
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        http11 = self.request_version == "HTTP/1.1"
        pieces = split(answer.body, answer.chunking)
        chunked = http11 and (answer.stream or answer.chunking != "whole" or answer.forever is not None)
        self.send_response(answer.status)
        headers = [("x-request-id", f"req_sim_{len(sim.requests)}")]
        headers = [(n, v) for n, v in headers if n not in {name.lower() for name, _ in answer.headers}]
        headers += answer.headers
        names = {name.lower() for name, _ in headers}
        for name, value in headers:
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif http11 and "content-length" not in names:
            self.send_header("Content-Length", str(len(answer.body)))
        if not http11:
            self.close_connection = True
        self.end_headers()
        self.wfile.flush()
        delay = answer.delay or (BYTES_DELAY if answer.chunking == "bytes" else 0.0)
        for i, piece in enumerate(pieces):
            if answer.cut_after is not None and answer.sent + len(piece) >= answer.cut_after:
                piece = piece[:answer.cut_after - answer.sent]
                if piece:
                    self._write(answer, piece, chunked)
                self._cut()
                return "cut"
            if i and delay:
                time.sleep(delay)
            self._write(answer, piece, chunked)
        if answer.cut_after is not None:
            self._cut()
            return "cut"
        if answer.forever is not None:
            block = answer.forever * max(1, FOREVER_BLOCK // len(answer.forever))
            while not sim._stopping.wait(FOREVER_PACE):
                self._write(answer, block, chunked)
            self.close_connection = True
            return "stopped"
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return "complete"

    def _write(self, answer: Answer, piece: bytes, chunked: bool):
        """Writes one piece (one chunk when chunked), counting into `answer.sent` what the
        connection took, a send buffer's worth at a time."""
        if chunked:
            self.wfile.write(b"%x\r\n" % len(piece))
        view = memoryview(piece)
        for start in range(0, len(piece), SEND_BUFFER):
            part = view[start:start + SEND_BUFFER]
            self.wfile.write(part)
            self.wfile.flush()
            answer.sent += len(part)
        if chunked:
            self.wfile.write(b"\r\n")
        self.wfile.flush()

    def _cut(self):
        """Ends the connection mid-answer: no closing chunk, fewer bytes than announced."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, simulator: "Simulator"):
        self.simulator = simulator
        super().__init__(("127.0.0.1", 0), _Handler)


class Simulator:
    """A fake provider on 127.0.0.1; see the module docstring."""

    def __init__(self):
        self.requests: list[Request] = []
        self._queue: deque[Answer] = deque()
        self._responder: Callable[[Request], Answer] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closed_port: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Simulator":
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="provider-simulator",
                                        kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._closed_port is not None:
            self._closed_port.close()
            self._closed_port = None

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the simulator is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_unreachable(self) -> str:
        """A loopback URL that refuses connections: a port held bound but never listening."""
        if self._closed_port is None:
            self._closed_port = socket.socket()
            self._closed_port.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{self._closed_port.getsockname()[1]}"

    # -- scripting ---------------------------------------------------------------------------
    def enqueue(self, fixture: str | None = None, chunking: str | Sequence[int] = "whole",
                delay: float = 0.0, cut_after: int | None = None, status: int = 200,
                headers: dict | Sequence[tuple[str, str]] | None = None, body: bytes | None = None,
                stream: bool = False, forever: bytes | None = None,
                wait: threading.Event | None = None) -> Answer:
        """Queues the answer to the next request (see `answer`) and returns it."""
        queued = answer(fixture, chunking, delay, cut_after, status, headers, body, stream, forever, wait)
        with self._lock:
            self._queue.append(queued)
        return queued

    def enqueue_hang(self) -> None:
        """The next request is read and never answered (until the simulator stops)."""
        with self._lock:
            self._queue.append(Answer(hang=True))

    def enqueue_reset(self) -> Answer:
        """The next request is read and its connection reset (an RST) before any answer byte."""
        reset = Answer(reset=True)
        with self._lock:
            self._queue.append(reset)
        return reset

    def answer_with(self, responder: Callable[[Request], Answer] | None) -> None:
        """Requests nothing is queued for get responder(request) (an `answer(...)`), or with
        None the default fixture of their path again."""
        self._responder = responder

    def reset(self) -> None:
        """Forgets queued answers, the responder and recorded requests."""
        with self._lock:
            self._queue.clear()
        self._responder = None
        self.requests.clear()

    @property
    def last_request(self) -> Request:
        return self.requests[-1]

    def _next_answer(self, request: Request) -> Answer:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self._responder is not None:
            return self._responder(request)
        return default_answer(request)


def answer(fixture: str | None = None, chunking: str | Sequence[int] = "whole", delay: float = 0.0,
           cut_after: int | None = None, status: int = 200,
           headers: dict | Sequence[tuple[str, str]] | None = None, body: bytes | None = None,
           stream: bool = False, forever: bytes | None = None,
           wait: threading.Event | None = None) -> Answer:
    """An answer: a fixture (or raw `body`, JSON unless `stream`, then an event stream), sent in
    pieces ("whole", "bytes", or a list of sizes) `delay` seconds apart, cut after `cut_after` body
    bytes, then `forever` repeated until the connection fails; sent once `wait` is set; `status`
    and `headers` (a dict, or pairs to repeat a name; added to or replacing the content type)."""
    if (fixture is None) == (body is None):
        raise ValueError("give a fixture name or a body")
    if chunking not in ("whole", "bytes") and isinstance(chunking, str):
        raise ValueError(f"unknown chunking {chunking!r}")
    if forever is not None and (not forever or cut_after is not None):
        raise ValueError("forever needs a non-empty event and no cut_after")
    if fixture is not None:
        data, content_type, stream = fixture_answer(fixture)
    else:
        data, content_type = body, "text/event-stream" if stream else "application/json"
    pairs = list(headers.items() if isinstance(headers, dict) else headers or ())
    given = {name.lower() for name, _ in pairs}
    all_headers = [("content-type", content_type)] if "content-type" not in given else []
    return Answer(data, status, all_headers + pairs, chunking, delay, cut_after, stream=stream,
                  forever=forever, wait=wait)


def default_answer(request: Request) -> Answer:
    """The answer for a request nothing was queued for: the default fixture of its path."""
    path = request.path.split("?", 1)[0]
    try:
        wants_stream = json.loads(request.body or b"{}").get("stream") is True
    except (ValueError, AttributeError):
        wants_stream = False
    for suffix, (stream_name, whole_name) in DEFAULTS:
        if path.endswith(suffix):
            name = stream_name if wants_stream else whole_name
            if name is None:
                return answer(body=COUNT_TOKENS_BODY)
            return answer(name)
    return answer(body=NOT_FOUND_BODY, status=404)


# -- generated answers: a hostile provider --------------------------------------------------------
# Usage objects are given as JSON text, so any count can be sent exactly as written: 1e300, -5,
# 2.5, "100", a key twice. `usage(...)` writes one from its values (ints, or JSON text as str).

def usage(**counts: int | str) -> str:
    """A usage object's JSON text: `usage(prompt_tokens=10, completion_tokens="1e300")` gives
    {"prompt_tokens":10,"completion_tokens":1e300} (a str value is written as is)."""
    return "{" + ",".join(f'"{name}":{value}' for name, value in counts.items()) + "}"


def sse(data: str, event: str | None = None) -> bytes:
    """One server-sent event."""
    return ((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode()


def openai_chat(usage_text: str | None, choices: int = 1, text: str = "Hi!") -> bytes:
    """A whole OpenAI chat completion with `choices` choices and the usage text (None: none)."""
    listed = ",".join(f'{{"index":{i},"message":{{"role":"assistant","content":{json.dumps(text)}}},'
                      f'"finish_reason":"stop"}}' for i in range(choices))
    tail = f',"usage":{usage_text}' if usage_text is not None else ""
    return (f'{{"id":"chatcmpl-sim","object":"chat.completion","created":1755012400,"model":"sim-model",'
            f'"choices":[{listed}]{tail}}}').encode()


def openai_chat_sse(usage_texts: Sequence[str], choices: int = 1, text: str = "Hi!",
                    giant: int = 0) -> bytes:
    """An OpenAI chat stream: a content chunk per choice, one event whose data is `giant` bytes
    long (when given), a finish chunk per choice, then one usage-only chunk per usage text, [DONE]."""
    head = '{"id":"chatcmpl-sim","object":"chat.completion.chunk","created":1755012400,"model":"sim-model",'

    def chunk(i: int, delta: str, finish: str = "null") -> bytes:
        return sse(head + f'"choices":[{{"index":{i},"delta":{delta},"finish_reason":{finish}}}],"usage":null}}')

    out = b"".join(chunk(i, f'{{"role":"assistant","content":{json.dumps(text)}}}') for i in range(choices))
    if giant:
        out += giant_event(head + '"choices":[{"index":0,"delta":{"content":"', '"},"finish_reason":null}]}', giant)
    out += b"".join(chunk(i, "{}", '"stop"') for i in range(choices))
    out += b"".join(sse(head + f'"choices":[],"usage":{u}}}') for u in usage_texts)
    return out + sse("[DONE]")


def anthropic_message(usage_text: str | None, text: str = "Hi!") -> bytes:
    """A whole Anthropic message with the usage text (None: none)."""
    tail = f',"usage":{usage_text}' if usage_text is not None else ""
    return ('{"id":"msg_sim","type":"message","role":"assistant","model":"sim-claude",'
            f'"content":[{{"type":"text","text":{json.dumps(text)}}}],"stop_reason":"end_turn",'
            f'"stop_sequence":null{tail}}}').encode()


def anthropic_sse(start_usage: str, delta_usages: Sequence[str], text: str = "Hi!", giant: int = 0) -> bytes:
    """An Anthropic stream: message_start carrying `start_usage`, a text block (and one delta
    event whose data is `giant` bytes long, when given), a message_delta per usage text,
    message_stop."""
    out = sse('{"type":"message_start","message":{"id":"msg_sim","type":"message","role":"assistant",'
              f'"model":"sim-claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{start_usage}}}}}',
              "message_start")
    out += sse('{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
               "content_block_start")
    out += sse('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
               f'{json.dumps(text)}}}}}', "content_block_delta")
    if giant:
        out += giant_event('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"',
                           '"}}', giant, "content_block_delta")
    out += sse('{"type":"content_block_stop","index":0}', "content_block_stop")
    out += b"".join(sse('{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
                        f'"usage":{u}}}', "message_delta") for u in delta_usages)
    return out + sse('{"type":"message_stop"}', "message_stop")


def giant_event(before: str, after: str, size: int, event: str | None = None) -> bytes:
    """One event whose data is `size` bytes: `before`, "x"s, `after`."""
    return sse(before + "x" * (size - len(before) - len(after)) + after, event)


def error_answer(protocol: str, usage_text: str | None = None) -> bytes:
    """A provider error object (sent with a 200 by a hostile provider), with a usage text or none."""
    tail = f',"usage":{usage_text}' if usage_text is not None else ""
    if protocol == "anthropic":
        return ('{"type":"error","error":{"type":"api_error","message":"simulated failure"}' + tail + "}").encode()
    return ('{"error":{"message":"simulated failure","type":"server_error","code":null}' + tail + "}").encode()


def iter_fixtures() -> Iterable[str]:
    """Names of the golden answers (not their sidecars, not the error bodies)."""
    return sorted(p.name for p in FIXTURES.iterdir()
                  if p.suffix in (".sse", ".json") and not p.name.endswith(".expected.json"))


try:
    import pytest
except ImportError:  # usable without pytest too
    pytest = None

if pytest is not None:
    @pytest.fixture
    def simulator():
        """A started Simulator, stopped after the test."""
        sim = Simulator().start()
        yield sim
        sim.stop()

    @pytest.fixture(scope="module", name="sim")
    def module_simulator():
        """`sim`: a started Simulator shared by a test module (import this into it)."""
        sim = Simulator().start()
        yield sim
        sim.stop()
