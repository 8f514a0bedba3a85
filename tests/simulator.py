"""A scriptable fake provider for gateway tests: a threaded HTTP/1.1 server on a free loopback port
that answers with the golden fixtures (tests/fixtures) the way a real provider sends them.

    sim = Simulator().start()
    sim.enqueue("anthropic_stream", chunking="bytes")          # the next request gets this answer
    sim.enqueue("errors/openai_rate_limit", status=429, headers={"retry-after": "1"})
    sim.enqueue_hang()                                         # a request that is never answered
    ... point the gateway's provider at sim.url (or sim.url_unreachable) ...
    sim.requests[-1].json()["stream_options"]                  # what went upstream
    sim.stop()

Answers are taken first in, first out; with none queued, the answer is the default fixture for
the request's path (see DEFAULTS). Streams, and any answer not sent whole, go out with chunked
transfer encoding (HTTP/1.1 requests) and keep-alive; `cut_after=N` closes the connection after N
bytes of body, without the closing chunk.

As a pytest fixture: `from simulator import simulator` in a test module or conftest.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable, Sequence

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


@dataclass
class Request:
    """One request as the simulator received it."""
    method: str
    path: str
    headers: Message
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Answer:
    body: bytes = b""
    status: int = 200
    headers: dict = field(default_factory=dict)
    chunking: str | Sequence[int] = "whole"
    delay: float = 0.0
    cut_after: int | None = None
    hang: bool = False
    stream: bool = False


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
        self._send(answer)

    do_POST = do_GET = do_PUT = do_DELETE = _handle

    def _send(self, answer: Answer):
        sim = self.server.simulator
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        http11 = self.request_version == "HTTP/1.1"
        pieces = split(answer.body, answer.chunking)
        chunked = http11 and (answer.stream or answer.chunking != "whole")
        self.send_response(answer.status)
        headers = {"x-request-id": f"req_sim_{len(sim.requests)}", **answer.headers}
        names = {name.lower() for name in headers}
        for name, value in headers.items():
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
        sent = 0
        for i, piece in enumerate(pieces):
            if answer.cut_after is not None and sent + len(piece) >= answer.cut_after:
                piece = piece[:answer.cut_after - sent]
                if piece:
                    self._write(piece, chunked)
                self._cut()
                return
            if i and delay:
                time.sleep(delay)
            self._write(piece, chunked)
            sent += len(piece)
        if answer.cut_after is not None:
            self._cut()
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write(self, piece: bytes, chunked: bool):
        if chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            self.wfile.write(piece)
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
                headers: dict | None = None, body: bytes | None = None) -> None:
        """Queues the answer to the next request: a fixture (or raw `body`), sent in pieces
        ("whole", "bytes", or a list of sizes) `delay` seconds apart, cut after `cut_after` body
        bytes; `status` and `headers` (added to or replacing the content type) as given."""
        if (fixture is None) == (body is None):
            raise ValueError("give a fixture name or a body")
        if chunking not in ("whole", "bytes") and isinstance(chunking, str):
            raise ValueError(f"unknown chunking {chunking!r}")
        if fixture is not None:
            data, content_type, stream = fixture_answer(fixture)
        else:
            data, content_type, stream = body, "application/json", False
        all_headers = {"content-type": content_type}
        for name, value in (headers or {}).items():
            all_headers = {k: v for k, v in all_headers.items() if k.lower() != name.lower()}
            all_headers[name] = value
        self._push(Answer(data, status, all_headers, chunking, delay, cut_after, stream=stream))

    def enqueue_hang(self) -> None:
        """The next request is read and never answered (until the simulator stops)."""
        self._push(Answer(hang=True))

    def reset(self) -> None:
        """Forgets queued answers and recorded requests."""
        with self._lock:
            self._queue.clear()
        self.requests.clear()

    @property
    def last_request(self) -> Request:
        return self.requests[-1]

    def _push(self, answer: Answer):
        with self._lock:
            self._queue.append(answer)

    def _next_answer(self, request: Request) -> Answer:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return default_answer(request)


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
                return Answer(COUNT_TOKENS_BODY, headers={"content-type": "application/json"})
            data, content_type, stream = fixture_answer(name)
            return Answer(data, headers={"content-type": content_type}, stream=stream)
    return Answer(NOT_FOUND_BODY, 404, {"content-type": "application/json"})


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
