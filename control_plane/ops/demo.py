"""The demo: an account with $100, the built-in sandbox providers and models (charged at cost,
one route each) with a few aliases, and a key.

Safe to run any number of times; it never duplicates anything. The demo key is derived from the
installation secret, so every run prints the same key without it being stored anywhere.
"""
from __future__ import annotations

import base64

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import crypto
from ..accounts import accounts, api_keys, links
from ..billing import ledger
from ..catalog import upstreams
from ..models import ApiKey, utcnow
from ..money import usd_to_nano
from ..settings import Settings

DEMO_EMAIL = "demo@tollgate.local"
DEMO_CREDIT_USD = "100"
# name, protocol, path below the gateway's base URL (nginx serves the sandbox itself; it answers
# only requests that carry the provider's key, sandbox_key, which the gateway puts in)
SANDBOX_PROVIDERS = (
    ("sandbox", "openai", "/sandbox/openai/v1"),
    ("sandbox-anthropic", "anthropic", "/sandbox/anthropic"),
)
# name, provider, USD per 1M tokens, most output tokens a request may ask for (None: no output),
# context window (what a request whose input the provider fetches or keeps is held at)
SANDBOX_MODELS = (
    ("sandbox-chat", "sandbox", {"input": "0.15", "cached_input": "0.075", "output": "0.60"}, 16_384, 128_000),
    ("sandbox-reasoner", "sandbox", {"input": "1.10", "cached_input": "0.55", "output": "4.40"}, 100_000, 200_000),
    (
        "sandbox-claude",
        "sandbox-anthropic",
        {"input": "3", "cache_write": "3.75", "cache_write_1h": "6", "cached_input": "0.30", "output": "15"},
        64_000,
        200_000,
    ),
    ("sandbox-embed", "sandbox", {"input": "0.02", "output": "0"}, None, 8_192),
)
# alias, model: the names clients and SDK examples use out of the box, served by the sandbox
SANDBOX_ALIASES = (
    ("claude-opus-4-8", "sandbox-claude"),
    ("claude-sonnet-4-6", "sandbox-claude"),
    ("claude-haiku-4-5", "sandbox-claude"),
    ("gpt-5.5", "sandbox-chat"),
    ("gpt-4o", "sandbox-chat"),
)


def demo_key(settings: Settings) -> str:
    digest = crypto.derive(settings, b"tollgate demo key")
    return api_keys.KEY_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sandbox_key(settings: Settings, provider: str) -> str:
    """The key the gateway sends the sandbox as this provider's: derived from the installation
    secret like the demo key, so no two installations share it and a client cannot guess it."""
    digest = crypto.derive(settings, b"tollgate sandbox provider key " + provider.encode())
    return "sk-sandbox-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def ensure_demo(session: Session, settings: Settings, base_url: str) -> str:
    """Create or update the demo data; returns the demo key."""
    account = accounts.find_by_email(session, DEMO_EMAIL)
    if account is None:
        account = accounts.create_account(session, DEMO_EMAIL)
        account.email_verified_at = utcnow()
    ledger.credit(session, "bonus", account.id, usd_to_nano(DEMO_CREDIT_USD), "demo:credit", "Demo credit")
    for name, protocol, path in SANDBOX_PROVIDERS:
        upstreams.upsert_provider(
            session, settings, name, protocol, base_url.rstrip("/") + path, sandbox_key(settings, name))
    for name, provider, prices, max_output, max_input in SANDBOX_MODELS:
        upstreams.upsert_model(session, name, provider, {field: usd_to_nano(usd) for field, usd in prices.items()},
                             max_output=max_output, max_input=max_input)
    for alias, model in SANDBOX_ALIASES:
        # Only where the name is free: never over an operator's own model or alias of that name.
        if upstreams.find_alias(session, alias) is None and upstreams.find_model(session, alias) is None:
            upstreams.add_alias(session, alias, model)
    plaintext = demo_key(settings)
    if session.scalar(select(ApiKey.id).where(ApiKey.key_hash == api_keys.hash_key(plaintext))) is None:
        api_keys.add_key(session, account, plaintext, name="demo")
    return plaintext


def set_password_link(session: Session, settings: Settings) -> str | None:
    """A link to give the demo account its console password, while it has none."""
    account = accounts.find_by_email(session, DEMO_EMAIL)
    if account is None or account.password_hash is not None:
        return None
    return links.make_link(settings, links.SET_PASSWORD, account)
