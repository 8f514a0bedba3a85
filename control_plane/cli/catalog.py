"""`tollgate provider|model`: the upstream providers and the models customers can call."""
from __future__ import annotations

import click

from .. import db
from ..catalog import upstreams
from ..hot import publish
from ..models import PROTOCOLS, Model
from ..money import format_usd
from ..settings import Settings
from ..usage_classes import USAGE_CLASSES
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


def price_options(command):
    """--input, --cached-input, … : one USD-per-1M-tokens option per usage class, named by its price
    field; those without a default price are required."""
    for usage in reversed(USAGE_CLASSES):
        when_unset = "" if usage.default is None else f"; default: the {usage.default.replace('_', ' ')} price"
        command = click.option(f"--{usage.price.replace('_', '-')}", usage.price, type=USD,
                               required=usage.default is None,
                               help=f"USD per 1M tokens: {usage.description}{when_unset}.")(command)
    return command


@click.group()
def model() -> None:
    """Models customers can call."""


@model.command("add")
@click.argument("name")
@click.option("--provider", "provider_name", required=True)
@click.option("--upstream-model", help="The provider's name for it (default: NAME).")
@price_options
@click.option("--max-output", type=click.IntRange(min=1), help="Most output tokens a request may ask for.")
@click.option("--max-input", type=click.IntRange(min=1),
              help="The context window in tokens: what a request whose input the provider fetches or keeps "
                   "(media by URL, files, earlier responses, server tools) is held at (default 200000).")
@click.pass_obj
def model_add(settings: Settings, name: str, provider_name: str, upstream_model: str | None,
              max_output: int | None, max_input: int | None, **prices: int | None) -> None:
    """Add a model, or update it (a price change adds a new price version)."""
    with db.session_scope(settings) as session:
        saved = upstreams.upsert_model(session, name, provider_name, prices, upstream_model, max_output, max_input)
        version = upstreams.current_price(session, saved.id)
    publish_after(settings, lambda session: publish.publish_model(session, settings, session.get(Model, saved.id)),
                  REPUBLISH_HINT)
    click.echo(f"model {saved.name} saved: {provider_name}/{saved.upstream_model}, price version {version.id} "
               f"(input {format_usd(prices['input'])}, output {format_usd(prices['output'])} per 1M tokens)")
