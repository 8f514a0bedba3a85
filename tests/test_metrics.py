"""Prometheus metrics: after a known load on an instance of its own, the gateway node's counters
equal its usage rows (requests by model, provider, status and basis; tokens by class; USD
charged and provider cost, exactly), and the control plane's gauges name the drain, the last
reconciliation and the deposits. /metrics is for loopback or the bearer of the metrics token."""
from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request

import pytest
from harness import Gateway, wait_for
from helpers import CACHE_SECONDS
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

TOKEN = "metrics-token-for-tests"
SERIES = re.compile(r"^([a-z_]+)(\{.*\})? (\S+)$")
CLASSES = {"input": "input_tokens", "cached_input": "cached_input_tokens", "cache_write": "cache_write_tokens",
           "cache_write_1h": "cache_write_1h_tokens", "output": "output_tokens", "reasoning": "reasoning_tokens"}


def scrape(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def parsed(exposition: str) -> dict[tuple[str, str], str]:
    """{(name, labels text): value} of every sample (the text also read by Prometheus's own parser,
    which refuses what Prometheus would)."""
    assert list(text_string_to_metric_families(exposition))
    samples = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            match = SERIES.match(line)
            assert match, line
            samples[(match.group(1), match.group(2) or "")] = match.group(3)
    return samples


def usd(nano: int) -> str:
    return f"{nano // 10**9}.{nano % 10**9:09d}"


def non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: only the route is looked up
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


@pytest.fixture
def metered(tmp_path, own_database, database_independent):
    gw = Gateway(tmp_path / "gw", own_database, {"TOLLGATE_METRICS_TOKEN": TOKEN, "TOLLGATE_LISTEN": "0.0.0.0"})
    gw.start()
    yield gw
    gw.stop()


def chat(gw: Gateway, key: str, model: str = "sandbox-chat", stream: bool = False) -> int:
    return gw.chat(key, {"model": model, "stream": stream, "max_tokens": 20,
                         "messages": [{"role": "user", "content": "count me"}]})


def test_the_gateways_counters_equal_its_usage_rows(metered):
    gw = metered
    key = gw.create_customer("metered@example.com", "10")
    limited = gw.create_customer("limited@example.com", "10", None, "--rpm", "1")
    broke = gw.create_customer("broke@example.com", "0")
    time.sleep(CACHE_SECONDS)
    statuses = [chat(gw, key) for _ in range(4)] + [chat(gw, key, stream=True) for _ in range(2)]
    statuses += [chat(gw, key, model="sandbox-reasoner"), chat(gw, key, model="no-such-model")]
    statuses += [chat(gw, limited), chat(gw, limited), chat(gw, broke)]
    assert statuses == [200] * 7 + [404, 200, 429, 402], statuses
    gw.wait_drained()

    engine = create_engine(gw.database_url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT model, provider, status, billing_basis, COUNT(*) FROM usage "
            "GROUP BY model, provider, status, billing_basis")).all()
        sums = connection.execute(text(
            f"SELECT SUM(cost_nano), SUM(provider_cost_nano), COUNT(*), {', '.join(f'SUM({c})' for c in CLASSES.values())} "
            "FROM usage")).one()
    engine.dispose()
    assert sum(count for *_labels, count in rows) == 11

    def counted() -> dict:
        return parsed(scrape(f"{gw.url}/metrics")[1])

    # Each worker adds its counts into the shared dict every second.
    wait_for(lambda: counted().get(("tollgate_request_duration_seconds_count", ""), "0") == "11", 10, "the flush")
    samples = counted()
    requests = {labels: int(value) for (name, labels), value in samples.items() if name == "tollgate_requests_total"}
    expected = {f'{{model="{model}",provider="{provider}",status="{status}",basis="{basis}"}}': count
                for model, provider, status, basis, count in rows}
    assert requests == expected
    charged, provider_cost, total, *tokens = sums
    assert charged > 0 and tokens[list(CLASSES).index("reasoning")] > 0  # sandbox-reasoner reasons
    assert samples[("tollgate_charged_usd_total", "")] == usd(charged)
    assert samples[("tollgate_provider_cost_usd_total", "")] == usd(provider_cost)
    for (label, _column), amount in zip(CLASSES.items(), tokens, strict=True):
        assert int(samples.get(("tollgate_tokens_total", f'{{class="{label}"}}'), "0")) == amount, label
    assert samples[("tollgate_holds_refused_total", "")] == "1"
    assert samples[("tollgate_rate_limited_total", "")] == "1"
    assert samples[("tollgate_request_duration_seconds_bucket", '{le="+Inf"}')] == str(total)
    assert int(samples[("tollgate_ttfb_seconds_count", "")]) == 8  # the admitted requests
    assert int(samples[("tollgate_upstream_duration_seconds_count", "")]) == 8
    in_flight = [int(value) for (name, _labels), value in samples.items() if name == "tollgate_requests_in_flight"]
    assert in_flight and sum(in_flight) == 0
    assert ("tollgate_lease_dict_free_bytes", "") in samples
    assert not any("acct" in labels or "key" in labels for _name, labels in samples)

    status, body = scrape(f"{gw.url}/metrics/control-plane")
    assert status == 200, body
    control = parsed(body)
    backlog = {labels: value for (name, labels), value in control.items() if name == "tollgate_drain_backlog"}
    assert len(backlog) == 4 and set(backlog.values()) == {"0.0"}
    assert control[("tollgate_redis_up", "")] == "1.0" and control[("tollgate_database_up", "")] == "1.0"
    gw.cli("reconcile")
    control = parsed(scrape(f"{gw.url}/metrics/control-plane")[1])
    assert control[("tollgate_reconcile_ok", "")] == "1.0"
    assert control[("tollgate_reconcile_drift_usd", "")] == "0.0"


def test_metrics_are_for_loopback_or_the_tokens_bearer(metered):
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    outside = f"http://{address}:{metered.port}"
    for path in ("/metrics", "/metrics/control-plane"):
        status, body = scrape(outside + path)
        assert status == 403
        assert json.loads(body)["error"]["code"] == "metrics_forbidden"
        assert scrape(outside + path, "wrong-token")[0] == 403
        assert scrape(outside + path, TOKEN)[0] == 200
