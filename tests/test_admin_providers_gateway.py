"""A disabled provider through the real gateway: nginx stops using its routes within its 1 s cache
(the model's next route serves), a model left with no route to an enabled provider answers 404
model_not_found and charges nothing, and enabling it brings it back — disabled from the admin
console, the admin API and the CLI in turn. And the Test button against the built-in sandbox."""
from __future__ import annotations

import json
import re
import time
import uuid

from admin_client import make_admin, make_admin_key, signed_in_admin
from console_client import settings_of
from harness import wait_for
from helpers import CACHE_SECONDS, balance_nano, bearer, new_customer, request_json
from simulator import Simulator

HI = {"messages": [{"role": "user", "content": "Hi"}]}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def chat(gateway, key: str, model: str) -> tuple[int, dict]:
    status, _headers, body = request_json(gateway, "POST", "/v1/chat/completions", bearer(key),
                                          {"model": model, **HI})
    return status, body


def served_by(gateway, key: str, model: str, sim: Simulator) -> bool:
    """One request: whether it succeeded and `sim` was the provider that answered it."""
    before = len(sim.requests)
    return chat(gateway, key, model)[0] == 200 and len(sim.requests) > before


def test_a_disabled_provider_is_no_longer_used_and_a_model_without_one_is_404(gateway):
    with Simulator() as first, Simulator() as second:
        p1, p2, model = unique("p"), unique("p"), unique("m")
        for name, sim in ((p1, first), (p2, second)):
            gateway.cli("provider", "add", name, "--protocol", "openai", "--base-url", sim.url + "/v1",
                        "--api-key", f"key-{name}")
        gateway.cli("model", "add", model, "--provider", p1, "--input", "1", "--output", "2")
        gateway.cli("route", "add", model, "--provider", p2, "--priority", "1", "--input", "3", "--output", "6")
        _email, key = new_customer(gateway)
        assert served_by(gateway, key, model, first) and not second.requests

        # From the admin console, through nginx.
        admin = signed_in_admin(settings_of(gateway), gateway=gateway)
        response = admin.post_form(f"/admin/providers/{p1}/disable", {})
        assert f"Provider {p1} is disabled" in response.text
        wait_for(lambda: served_by(gateway, key, model, second), 5, "the second route to serve")
        time.sleep(CACHE_SECONDS)  # every nginx worker's cache has let go of the old document by now
        used = len(first.requests)
        assert all(served_by(gateway, key, model, second) for _ in range(5)) and len(first.requests) == used
        document = json.loads(gateway.redis().get(f"tg:model:{model}"))
        assert [route["provider"] for route in document["routes"]] == [p2]

        # From the admin API: the model has no enabled provider left.
        api_key = make_admin_key(settings_of(gateway), make_admin(settings_of(gateway)))
        status, _headers, body = request_json(gateway, "POST", f"/api/admin/v1/providers/{p2}/disable",
                                              bearer(api_key))
        assert (status, body["enabled"], body["models_not_served"]) == (200, False, [model])
        wait_for(lambda: chat(gateway, key, model)[0] == 404, 5, "the model to be withdrawn")
        time.sleep(CACHE_SECONDS)  # every worker has let go of it, and any request still running settles
        before = balance_nano(gateway, key)
        asked = len(first.requests) + len(second.requests)
        status, body = chat(gateway, key, model)
        assert (status, body["error"]["code"]) == (404, "model_not_found")
        assert f"The model '{model}' does not exist" in body["error"]["message"]
        assert balance_nano(gateway, key) == before and len(first.requests) + len(second.requests) == asked

        # From the CLI: enabled again, the first route serves again.
        gateway.cli("provider", "enable", p1)
        wait_for(lambda: served_by(gateway, key, model, first), 5, "the first route to serve again")


def test_the_test_button_calls_the_sandbox(gateway):
    admin = signed_in_admin(settings_of(gateway), gateway=gateway)
    response = admin.post_form("/admin/providers/sandbox/test", {})
    assert re.search(rf"Test of sandbox \(GET {re.escape(gateway.url)}/sandbox/openai/v1/models\): HTTP 200 OK in "
                     r"\d+ ms \(lists 3 models\)\.", response.text), response.text
    response = admin.post_form("/admin/providers/sandbox-anthropic/test", {})
    assert re.search(r"Test of sandbox-anthropic \(GET \S+/sandbox/anthropic/v1/models\): HTTP 200 OK in \d+ ms "
                     r"\(lists 1 model\)\.", response.text), response.text
    result = gateway.cli("provider", "test", "sandbox", "--json")
    assert json.loads(result.stdout)["status"] == 200
