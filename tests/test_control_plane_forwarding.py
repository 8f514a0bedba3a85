"""The control plane behind nginx: the forwarding headers are nginx's own, never a client's, and no
answer redirects to a host the client named."""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading

import pytest
from flask import request

HOSTILE = {
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "666",
    "X-Forwarded-Proto": "gopher",
    "X-Forwarded-For": "203.0.113.66",
    "X-Forwarded-Prefix": "/evil",
    "Forwarded": "for=203.0.113.66;host=evil.example;proto=https",
}
CANNED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


def raw_get(port: int, path: str, headers: dict) -> tuple[int, http.client.HTTPMessage, bytes]:
    """GET over plain http.client with exactly these headers (Host too, when given)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/api/v1//balance", "/api//healthz", "/api/v1/webhooks//payments",
                                  "//api/v1//balance"])
@pytest.mark.parametrize("headers", [HOSTILE, {"Host": "evil.example"}, {"Host": "evil.example", **HOSTILE}],
                         ids=["forwarding-headers", "host", "both"])
def test_a_double_slash_path_is_a_json_404_never_a_redirect(gateway, path, headers):
    status, response_headers, body = raw_get(gateway.port, path, headers)
    assert status == 404
    assert response_headers["Location"] is None
    assert response_headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "path_not_found"


@pytest.mark.parametrize("path", ["/api/healthz/", "/api/v1/balance/"])
def test_a_trailing_slash_is_answered_in_place_never_redirected(gateway, path):
    status, response_headers, body = raw_get(gateway.port, path, {"Host": "evil.example", **HOSTILE})
    assert status in (200, 401)
    assert response_headers["Location"] is None
    assert json.loads(body)


class RecordingControlPlane:
    """Listens on the gunicorn socket in its place; records the header lines of one request
    and answers it with `{}`."""

    def __init__(self, path):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(30)
        self.header_lines: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self._serve_one)
        self.thread.start()

    def _serve_one(self):
        conn, _ = self.server.accept()
        with conn:
            received = b""
            while b"\r\n\r\n" not in received:
                received += conn.recv(65536)
            head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
            self.header_lines = [(name.lower(), value.strip()) for name, _, value in
                                 (line.partition(":") for line in head)]
            conn.sendall(CANNED)

    def values(self, name: str) -> list[str]:
        return [value for header, value in self.header_lines if header == name]

    def close(self):
        self.thread.join(30)
        self.server.close()


@pytest.fixture
def recorded_request(own_gateway):
    """The header lines nginx sent the control plane for a GET with Host tollgate.example and
    every forwarding header set by the client."""
    socket_path = own_gateway.home / "run" / "gunicorn.sock"
    moved = socket_path.with_name("gunicorn.sock.real")
    os.rename(socket_path, moved)
    try:
        recorder = RecordingControlPlane(socket_path)
        try:
            status, _, _ = raw_get(own_gateway.port, "/api/healthz", {"Host": "tollgate.example", **HOSTILE})
        finally:
            recorder.close()
        assert status == 200
        yield recorder
    finally:
        os.unlink(socket_path)
        os.rename(moved, socket_path)


def test_nginx_sends_its_own_forwarding_headers_in_place_of_the_clients(own_gateway, recorded_request):
    assert recorded_request.values("host") == ["tollgate.example"]
    assert recorded_request.values("x-forwarded-host") == ["tollgate.example"]
    assert recorded_request.values("x-forwarded-port") == [str(own_gateway.port)]
    assert recorded_request.values("x-forwarded-proto") == ["http"]
    assert recorded_request.values("x-forwarded-for") == ["127.0.0.1"]
    assert recorded_request.values("x-forwarded-prefix") == []
    assert recorded_request.values("forwarded") == []


def test_the_app_takes_host_scheme_port_and_client_from_nginxs_headers_and_no_prefix(app):
    app.add_url_rule("/api/test-forwarding", "test_forwarding", lambda: {
        "url": request.url, "script_root": request.script_root, "remote_addr": request.remote_addr})
    nginx_headers = {"Host": "tollgate.example", "X-Forwarded-Host": "tollgate.example",
                     "X-Forwarded-Port": "8443", "X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7",
                     "X-Forwarded-Prefix": "/evil"}
    seen = app.test_client().get("/api/test-forwarding", headers=nginx_headers).get_json()
    assert seen == {"url": "https://tollgate.example:8443/api/test-forwarding", "script_root": "",
                    "remote_addr": "198.51.100.7"}
