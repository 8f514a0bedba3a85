"""`tollgate`: the operator's command line. Settings come from the TOLLGATE_* environment.

A command that changes something commits it to SQL, then publishes it to Redis at once, so a
running gateway sees it within its 2 s caches. Mistakes (unknown email, bad amount) end with a
one-line message and exit status 2; an unreachable Redis or database with status 1.
"""
from __future__ import annotations

import click
import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from . import accounts, catalog, db, demo, exact_json, hot_state, keys, ledger, logs
from . import settings as settings_module
from .balances import balance_document, current_balance_nano
from .crypto import SecretError
from .errors import ServiceError
from .models import PROTOCOLS, ApiKey, LedgerTransaction, Model, UsageQuarantine
from .money import format_usd, nano_to_decimal, usd_to_nano
from .settings import Settings

REPUBLISH_HINT = "run `tollgate publish` once Redis answers"
WORKER_HINT = "the worker applies it once Redis answers"


class UserMistake(click.ClickException):
    exit_code = 2


class UsdAmount(click.ParamType):
    """Decimal USD text ('12.5', '-3') as integer nano-USD; never through a float. Bounded by the
    64-bit columns that store it."""

    name = "usd"
    limit = 2**63 - 1

    def convert(self, value, param, ctx):
        try:
            nano = usd_to_nano(value)
        except (ValueError, ArithmeticError) as exc:  # decimal.Overflow for '1e999999999'
            self.fail(str(exc) if isinstance(exc, ValueError) else f"not a USD amount: {value!r}", param, ctx)
        if abs(nano) > self.limit:
            self.fail(f"{value!r} is beyond ±{format_usd(self.limit)}", param, ctx)
        return nano


USD = UsdAmount()


class TollgateGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ServiceError, settings_module.SettingsError, SecretError) as exc:
            raise UserMistake(str(exc)) from None
        except redis.RedisError as exc:
            raise click.ClickException(f"Redis did not answer: {logs.error_summary(exc)}") from None
        except SQLAlchemyError as exc:
            raise click.ClickException(f"database error: {logs.error_summary(exc)}") from None


@click.group(cls=TollgateGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Tollgate: a self-hosted prepaid-credit LLM API gateway."""
    ctx.obj = settings_module.load()
    ctx.call_on_close(db.dispose_engines)


def _publish(settings: Settings, publish, hint: str) -> None:
    """Run publish(session) after the change is committed; if Redis cannot take it, say so."""
    try:
        with db.session_scope(settings) as session:
            publish(session)
    except (redis.RedisError, ServiceError) as exc:
        raise click.ClickException(f"saved, but not live yet: {logs.error_summary(exc)}; {hint}") from None


@main.command()
@click.pass_obj
def up(settings: Settings) -> None:
    """Start Redis, nginx, the control plane and the worker in the foreground."""
    from control_plane import supervisor

    raise SystemExit(supervisor.run(settings))


@main.command()
@click.option("--consumer", help="Name in the usage streams' consumer group (default: host-pid). A worker "
              "started again under its predecessor's name records at once what that one had read.")
@click.pass_obj
def worker(settings: Settings, consumer: str | None) -> None:
    """Drain usage into SQL and keep Redis in step (until SIGTERM / Ctrl-C)."""
    from control_plane import worker as usage_worker

    usage_worker.run(settings, consumer)


@main.group("db")
def db_group() -> None:
    """The SQL schema."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Migrate the database to the current schema."""
    db.upgrade(settings)
    click.echo("database schema is up to date")


@main.group()
def account() -> None:
    """Customer accounts."""


@account.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="May use the admin console.")
@click.pass_obj
def account_create(settings: Settings, email: str, admin: bool) -> None:
    with db.session_scope(settings) as session:
        created = accounts.create_account(session, email, is_admin=admin)
    _publish(settings, lambda session: hot_state.publish_account(session, settings, created.id), REPUBLISH_HINT)
    click.echo(f"created {'admin ' if admin else ''}account {created.id} ({created.email})")


@account.command("limits")
@click.argument("email")
@click.option("--rpm", type=click.IntRange(min=0), help="Default requests per minute of its keys (0: none).")
@click.option("--tpm", type=click.IntRange(min=0), help="Default tokens per minute of its keys (0: none).")
@click.pass_obj
def account_limits(settings: Settings, email: str, rpm: int | None, tpm: int | None) -> None:
    """Default rate limits for the account's keys that have none of their own."""
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        if rpm is not None:
            owner.rpm = rpm or None
        if tpm is not None:
            owner.tpm = tpm or None
        account_id, shown = owner.id, f"rpm {owner.rpm or 'unlimited'}, tpm {owner.tpm or 'unlimited'}"

    def publish(session):
        for key in session.scalars(select(ApiKey).where(ApiKey.account_id == account_id)):
            hot_state.publish_key(session, settings, key)

    _publish(settings, publish, REPUBLISH_HINT)
    click.echo(f"account {email}: default rate limits {shown}")


@main.group()
def key() -> None:
    """Customer API keys."""


@key.command("create")
@click.argument("email")
@click.option("--name", default="", help="A label for the key.")
@click.option("--limit-usd", type=USD, help="Most the key may ever spend, in USD.")
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute it may make.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens per minute it may use.")
@click.pass_obj
def key_create(settings: Settings, email: str, name: str, limit_usd: int | None, rpm: int | None,
               tpm: int | None) -> None:
    """Create a key; it is printed once, alone on the last line."""
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        created, plaintext = keys.create_key(session, owner, name, keys.KeyLimits(limit_usd, rpm, tpm))
    _publish(settings, lambda session: hot_state.publish_key(session, settings, created), REPUBLISH_HINT)
    limit = "no spend limit" if limit_usd is None else f"spend limit {format_usd(limit_usd)}"
    click.echo(f"created key {created.id} for {owner.email} ({limit})")
    click.echo("Store it now; it is not shown again:")
    click.echo(plaintext)


@key.command("revoke")
@click.argument("key_id", type=int)
@click.pass_obj
def key_revoke(settings: Settings, key_id: int) -> None:
    with db.session_scope(settings) as session:
        revoked = keys.revoke_key(session, key_id)
    _publish(settings, lambda _session: hot_state.revoke_key(settings, revoked), REPUBLISH_HINT)
    click.echo(f"revoked key {revoked.id} ({revoked.prefix}…)")


@key.command("list")
@click.argument("email")
@click.pass_obj
def key_list(settings: Settings, email: str) -> None:
    """The account's keys as JSON (prefixes only; keys themselves are never stored)."""
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        listed = [
            {
                "id": item.id,
                "name": item.name,
                "prefix": item.prefix,
                "status": item.status,
                "limit": None if item.limit_nano is None else nano_to_decimal(item.limit_nano),
                "limit_nano": item.limit_nano,
                "rpm": item.rpm,
                "tpm": item.tpm,
                "created_at": item.created_at.isoformat(),
                "revoked_at": item.revoked_at and item.revoked_at.isoformat(),
            }
            for item in keys.list_keys(session, owner.id)
        ]
    click.echo(exact_json.dumps(listed))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("email")
@click.argument("usd", type=USD)
@click.option("--reason", required=True, help="Why; shown to the customer in their transactions.")
@click.pass_obj
def credit(settings: Settings, email: str, usd: int, reason: str) -> None:
    """Add USD to an account (negative to correct a mistake): an adjustment in the ledger."""
    if usd == 0:
        raise UserMistake("the amount must not be zero")
    if not reason.strip():
        raise UserMistake("--reason must not be empty")
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        transaction = ledger.adjust(session, owner.id, usd, reason.strip())
    _publish(
        settings,
        lambda session: hot_state.apply_credit(session, settings, session.get(LedgerTransaction, transaction.id)),
        WORKER_HINT,
    )
    with db.session_scope(settings) as session:
        balance = current_balance_nano(settings, accounts.require_by_email(session, email))
    click.echo(f"credited {format_usd(usd)} to {owner.email} (transaction {transaction.id}); "
               f"balance {format_usd(balance)}")


@main.command()
@click.argument("email")
@click.pass_obj
def balance(settings: Settings, email: str) -> None:
    """The account's live balance as JSON."""
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        click.echo(exact_json.dumps(balance_document(current_balance_nano(settings, owner))))


@main.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="The whole report as one JSON object.")
@click.pass_obj
def reconcile_command(settings: Settings, as_json: bool) -> None:
    """Compare every account's Redis balance with its SQL ledger and check the money invariants;
    exit 1 on any drift, broken invariant or quarantined usage record."""
    from . import reconcile

    with db.read_session(settings) as session:
        report = reconcile.reconcile(session, settings)
    if as_json:
        click.echo(exact_json.dumps(report.as_dict()))
    else:
        for row in report.accounts:
            redis_text = "missing" if row.redis_nano is None else format_usd(row.redis_nano)
            drift = "-" if row.drift_nano is None else format_usd(row.drift_nano)
            notes = [f"{row.undrained} records not drained yet"]
            if row.quarantined:
                notes.append(f"{row.quarantined} quarantined, costing {format_usd(row.quarantined_nano)}")
            if row.overage_nano:
                notes.append(f"overage {format_usd(row.overage_nano)}")
            click.echo(f"{'ok   ' if row.ok else 'DRIFT'} {row.account_id:>6} {row.email:<32} redis {redis_text:>18} "
                       f"expected {format_usd(row.expected_nano):>18} drift {drift} ({'; '.join(notes)})")
        for violation in report.violations:
            click.echo(f"BROKEN {violation.check}: {violation.describe()}")
        for item in report.quarantined:
            click.echo(f"QUARANTINED {_quarantine_line(item)}")
    click.echo(f"{len(report.accounts)} accounts, {len(report.drifting)} with drift, "
               f"{len(report.violations)} broken invariants, {len(report.quarantined)} quarantined records; "
               f"overage {format_usd(report.overage_nano)}", err=True)
    if not report.ok:
        raise SystemExit(1)


@main.group()
def quarantine() -> None:
    """Usage records the worker could not record."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, with each packed record.")
@click.pass_obj
def quarantine_list(settings: Settings, as_json: bool) -> None:
    """Every quarantined usage record, newest first, with the reason."""
    from .usage_drain import quarantine_item

    with db.read_session(settings) as session:
        listed = [quarantine_item(row) for row in
                  session.scalars(select(UsageQuarantine).order_by(UsageQuarantine.id.desc()))]
    if as_json:
        click.echo(exact_json.dumps(listed))
        return
    for item in listed:
        click.echo(_quarantine_line(item))
    click.echo(f"{len(listed)} quarantined records", err=True)


def _quarantine_line(item: dict) -> str:
    """A quarantined record on one line: where it was, why, and what of it could be read."""
    def shown(name):
        return "?" if item[name] is None else item[name]

    cost = "?" if item["cost_nano"] is None else format_usd(item["cost_nano"])
    return (f"{item['created_at']} {item['stream']} {item['entry_id']} line {item['line']}: {item['reason']} "
            f"(request {shown('request_id')}, account {shown('account_id')}, key {shown('key_id')}, cost {cost})")


@main.group()
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
        saved = catalog.upsert_provider(session, settings, name, protocol, base_url, api_key)
    _publish(settings, lambda _session: hot_state.publish_provider(settings, saved), REPUBLISH_HINT)
    click.echo(f"provider {saved.name} saved ({saved.protocol}, {saved.base_url})")


@main.group()
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
        saved = catalog.upsert_model(session, name, provider_name, prices, upstream_model, max_output, max_input)
        version = catalog.current_price(session, saved.id)
    _publish(settings, lambda session: hot_state.publish_model(session, settings, session.get(Model, saved.id)),
             REPUBLISH_HINT)
    click.echo(f"model {saved.name} saved: {provider_name}/{saved.upstream_model}, price version {version.id} "
               f"(input {format_usd(input_price)}, output {format_usd(output_price)} per 1M tokens)")


@main.command()
@click.pass_obj
def publish(settings: Settings) -> None:
    """Publish everything in SQL to Redis (after Redis lost its data, for instance)."""
    with db.session_scope(settings) as session:
        hot_state.publish_all(session, settings)
    click.echo("published providers, models, balances and keys to Redis")


@main.command("demo")
@click.pass_obj
def demo_command(settings: Settings) -> None:
    """Create the demo account, sandbox models and key; prints the key on the last line."""
    with db.session_scope(settings) as session:
        plaintext = demo.ensure_demo(session, settings, settings.base_url)
    _publish(settings, lambda session: hot_state.publish_all(session, settings), REPUBLISH_HINT)
    click.echo(f"demo account {demo.DEMO_EMAIL} is ready (sandbox models at {settings.base_url}/v1); its key:")
    click.echo(plaintext)
from .deposits import cli as _deposits_cli  # noqa: F401  (registers `deposit` and `deposits`)
