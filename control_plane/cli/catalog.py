"""`tollgate provider|model`: the upstream providers and the models customers can call."""
from __future__ import annotations

import click

from .. import db
from ..catalog import upstreams
from ..hot import publish
from ..models import PROTOCOLS, Model
from ..money import format_usd
from ..settings import Settings
from .common import REPUBLISH_HINT, USD, publish_after


@click.group()
def provider() -> None:
    """Upstream providers."""


@provider.command("add")
@click.argument("name")
@click.option("--protocol", type=click.Choice(PROTOCOLS), required=True)
@click.option("--base-url", required=True, help="e.g. https://api.openai.com/v1")
@click.option("--api-key", prompt=True, hide_input=True, help="Asked for when left out (so not in shell history).")
@click.pass_obj
def provider_add(settings: Settings, name: str, protocol: str, base_url: str, api_key: str) -> None:
    """Add a provider, or update the one with this name."""
    with db.session_scope(settings) as session:
        saved = upstreams.upsert_provider(session, settings, name, protocol, base_url, api_key)
    publish_after(settings, lambda _session: publish.publish_provider(settings, saved), REPUBLISH_HINT)
    click.echo(f"provider {saved.name} saved ({saved.protocol}, {saved.base_url})")


@click.group()
def model() -> None:
    """Models customers can call."""


@model.command("add")
@click.argument("name")
@click.option("--provider", "provider_name", required=True)
@click.option("--upstream-model", help="The provider's name for it (default: NAME).")
@click.option("--input", "input_price", type=USD, required=True, help="USD per 1M uncached input tokens.")
@click.option("--output", "output_price", type=USD, required=True, help="USD per 1M output tokens.")
@click.option("--cached-input", type=USD, help="USD per 1M cache-read tokens (default: input).")
@click.option("--cache-write", type=USD, help="USD per 1M cache-write tokens (default: input).")
@click.option("--cache-write-1h", type=USD, help="USD per 1M 1-hour cache-write tokens (default: cache write).")
@click.option("--reasoning", type=USD, help="USD per 1M reasoning tokens (default: output).")
@click.option("--max-output", type=click.IntRange(min=1), help="Most output tokens a request may ask for.")
@click.option("--max-input", type=click.IntRange(min=1),
              help="The context window in tokens: what a request whose input the provider fetches or keeps "
                   "(media by URL, files, earlier responses, server tools) is held at (default 200000).")
@click.pass_obj
def model_add(settings: Settings, name: str, provider_name: str, upstream_model: str | None, input_price: int,
              output_price: int, cached_input: int | None, cache_write: int | None, cache_write_1h: int | None,
              reasoning: int | None, max_output: int | None, max_input: int | None) -> None:
    """Add a model, or update it (a price change adds a new price version)."""
    prices = {"input": input_price, "cached_input": cached_input, "cache_write": cache_write,
              "cache_write_1h": cache_write_1h, "output": output_price, "reasoning": reasoning}
    with db.session_scope(settings) as session:
        saved = upstreams.upsert_model(session, name, provider_name, prices, upstream_model, max_output, max_input)
        version = upstreams.current_price(session, saved.id)
    publish_after(settings, lambda session: publish.publish_model(session, settings, session.get(Model, saved.id)),
             REPUBLISH_HINT)
    click.echo(f"model {saved.name} saved: {provider_name}/{saved.upstream_model}, price version {version.id} "
               f"(input {format_usd(input_price)}, output {format_usd(output_price)} per 1M tokens)")
