"""The public /models page against the shared instance: every model and alias at its current price
per 1M tokens, exact, per usage class; a price changed with the CLI shows at once."""
import html
import re
import uuid

import httpx
import pytest


def models_row(gateway, name: str) -> list[str]:
    """The cells of the name's row on /models (fetched without signing in), tags stripped."""
    response = httpx.get(f"{gateway.url}/models", timeout=20)
    assert response.status_code == 200
    row = re.search(rf'<tr id="model-{re.escape(name)}">(.*?)</tr>', response.text, re.DOTALL).group(1)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]


@pytest.fixture
def provider(gateway):
    """A provider of this test's own (never called: the page only reads the catalogue)."""
    name = f"p-{uuid.uuid4().hex[:8]}"
    gateway.cli("provider", "add", name, "--protocol", "openai", "--base-url", "http://127.0.0.1:9/v1",
                "--api-key", "unused")
    return name


def test_a_fixed_price_shows_its_current_version_after_a_change(gateway, provider):
    name = f"m-{uuid.uuid4().hex[:8]}"
    gateway.cli("model", "add", name, "--provider", provider, "--input", "1", "--output", "2")
    gateway.cli("model", "price", name, "--input", "0.15", "--cached-input", "0.075", "--output", "0.6")
    gateway.cli("alias", "add", f"{name}-alias", name)
    # input, cached, cache write (= input), cache write 1h (= cache write), output, reasoning (= output)
    assert models_row(gateway, name) == [name, "fixed price", "$0.15", "$0.075", "$0.15", "$0.15", "$0.60", "$0.60"]
    gateway.cli("model", "price", name, "--input", "0.123456789", "--output", "0.7", "--reasoning", "1.5")
    prices = ["$0.123456789", "$0.123456789", "$0.123456789", "$0.123456789", "$0.70", "$1.50"]
    assert models_row(gateway, name) == [name, "fixed price", *prices]
    assert models_row(gateway, f"{name}-alias") == [f"{name}-alias alias of {name}", "fixed price", *prices]


def test_a_model_at_cost_shows_its_routes_cost_range(gateway, provider):
    name = f"m-{uuid.uuid4().hex[:8]}"
    gateway.cli("model", "add", name, "--provider", provider, "--input", "1", "--output", "4")
    assert models_row(gateway, name) == [name, "at provider cost", "$1.00", "$1.00", "$1.00", "$1.00", "$4.00",
                                         "$4.00"]
    gateway.cli("route", "add", name, "--provider", provider, "--upstream-model", "other", "--priority", "1",
                "--input", "1.25", "--output", "3")
    assert models_row(gateway, name) == [name, "at provider cost 2 routes: the serving one's cost", "$1.00–$1.25",
                                         "$1.00–$1.25", "$1.00–$1.25", "$1.00–$1.25", "$3.00–$4.00", "$3.00–$4.00"]


def test_the_demo_models_and_aliases_are_listed_without_a_login(gateway):
    assert models_row(gateway, "sandbox-chat")[2:] == ["$0.15", "$0.075", "$0.15", "$0.15", "$0.60", "$0.60"]
    assert models_row(gateway, "gpt-4o")[0] == "gpt-4o alias of sandbox-chat"
