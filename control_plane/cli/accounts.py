"""`tollgate account|key|credit|balance`: customer accounts (listed, shown, suspended), their API
keys and their money. `account list|show --json` print what the admin API answers
(api/admin_accounts.py)."""
from __future__ import annotations

import click

from .. import db, exact_json
from ..accounts import accounts, api_keys, suspension
from ..accounts.balances import balance_document, current_balance_nano
from ..api import admin_accounts
from ..billing import refunds
from ..hot import publish
from ..models import ACCOUNT_STATUSES, Account, ApiKey, utcnow
from ..money import format_usd, nano_to_decimal
from ..settings import Settings
from .admin import create_admin_account
from .common import REPUBLISH_HINT, USD, WORKER_HINT, UserMistake, echo_password_link, publish_after


@click.group()
def account() -> None:
    """Customer accounts."""


@account.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="May use the admin console (as `tollgate admin create`).")
@click.pass_obj
def account_create(settings: Settings, email: str, admin: bool) -> None:
    """Create an account (its email counts as verified) and print a link to set its password."""
    if admin:
        create_admin_account(settings, email)
        return
    with db.session_scope(settings) as session:
        created = accounts.create_account(session, email)
        created.email_verified_at = utcnow()
    publish_after(settings, lambda session: publish.publish_account(session, settings, created.id), REPUBLISH_HINT)
    click.echo(f"created account {created.id} ({created.email})")
    echo_password_link(settings, created)


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

    publish_after(settings, lambda session: publish.publish_account_keys(session, settings, account_id),
                  REPUBLISH_HINT)
    click.echo(f"account {email}: default rate limits {shown}")


@account.command("list")
@click.option("--search", "text", default="", help="Part of the email (any case), or the account's id.")
@click.option("--status", type=click.Choice(ACCOUNT_STATUSES), help="Only accounts in this state "
              "(disabled: deleted by its owner).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of a table.")
@click.pass_obj
def account_list(settings: Settings, text: str, status: str | None, limit: int, as_json: bool) -> None:
    """Accounts, newest first: id, email, status, live balance, active keys, created."""
    with db.read_session(settings) as session:
        found = list(session.scalars(admin_accounts.search(text, status).order_by(Account.id.desc()).limit(limit)))
        items = admin_accounts.account_items(session, settings, found)
    if as_json:
        click.echo(exact_json.dumps(items))
        return
    _table(("ID", "EMAIL", "STATUS", "BALANCE", "KEYS", "CREATED"),
           [(item["id"], item["email"], item["status"], format_usd(item["balance_nano"]), item["active_keys"],
             item["created_at"]) for item in items], right={0, 3, 4})
    click.echo(f"{len(items)} accounts", err=True)


@account.command("show")
@click.argument("email_or_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (as GET /api/admin/v1/accounts/<id>).")
@click.pass_obj
def account_show(settings: Settings, email_or_id: str, as_json: bool) -> None:
    """An account: its live balance, status, keys, payments and newest ledger transactions."""
    with db.read_session(settings) as session:
        document = admin_accounts.account_document(session, settings, _require(session, email_or_id))
    if as_json:
        click.echo(exact_json.dumps(document))
        return
    click.echo(f"account {document['id']} {document['email']}{' (admin)' if document['is_admin'] else ''}")
    click.echo(f"status   {document['status']}")
    click.echo(f"balance  {format_usd(document['balance_nano'])}")
    click.echo(f"created  {document['created_at']}")
    click.echo("\nkeys")
    _table(("ID", "NAME", "PREFIX", "STATUS", "SPENT", "LIMIT", "RPM", "TPM"),
           [(item["id"], item["name"], item["prefix"] + "…", item["status"], format_usd(item["spent_nano"]),
             "-" if item["limit_nano"] is None else format_usd(item["limit_nano"]), item["rpm"] or "-",
             item["tpm"] or "-") for item in document["keys"]], right={0, 4, 5, 6, 7})
    click.echo("\npayments")
    _table(("TRANSACTION", "CREATED", "AMOUNT", "REFUNDED", "DESCRIPTION"),
           [(item["transaction_id"], item["created_at"], format_usd(item["amount_nano"]),
             format_usd(item["refunded_nano"]), item["description"]) for item in document["payments"]],
           right={0, 2, 3})
    click.echo("\nnewest ledger transactions")
    _table(("TRANSACTION", "CREATED", "TYPE", "AMOUNT", "DESCRIPTION"),
           [(item["id"], item["created_at"], item["type"], format_usd(item["amount_nano"]), item["description"])
            for item in document["transactions"]], right={0, 3})


@account.command("suspend")
@click.argument("email_or_id")
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@click.pass_obj
def account_suspend(settings: Settings, email_or_id: str, reason: str) -> None:
    """Suspend an account: its keys answer 401 account_suspended within 2 s and its console
    sessions end, until it is reactivated."""
    _change_suspension(settings, email_or_id, True, reason)


@account.command("reactivate")
@click.argument("email_or_id")
@click.option("--reason", default="", help="Why; kept in the audit log.")
@click.pass_obj
def account_reactivate(settings: Settings, email_or_id: str, reason: str) -> None:
    """Make a suspended account active again: its keys work within 2 s."""
    _change_suspension(settings, email_or_id, False, reason)


def _change_suspension(settings: Settings, email_or_id: str, suspended: bool, reason: str) -> None:
    with db.read_session(settings) as session:
        account_id = _require(session, email_or_id).id
    change = suspension.change(settings, account_id, suspended, reason)
    if not change.live:
        raise click.ClickException(f"saved, but not live yet: Redis did not take it; {REPUBLISH_HINT}")
    state = "suspended" if suspended else "active"
    if change.changed:
        click.echo(f"account {account_id} ({change.account.email}) is {state}: its keys "
                   f"{'are refused' if suspended else 'work again'} within 2 s")
    else:
        click.echo(f"account {account_id} ({change.account.email}) was {state} already")


def _require(session, email_or_id: str) -> Account:
    found = admin_accounts.find_account(session, email_or_id)
    if found is None:
        raise UserMistake(f"no account with email or id {email_or_id.strip()!r}")
    return found


def _table(headers: tuple[str, ...], rows: list[tuple], right: set[int] = frozenset()) -> None:
    """Rows under their headers, in columns as wide as their widest value (those in `right`
    aligned right: figures); "(none)" for no rows."""
    if not rows:
        click.echo("(none)")
        return
    cells = [tuple(map(str, row)) for row in [headers, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    for row in cells:
        click.echo("  ".join(value.rjust(width) if column in right else value.ljust(width)
                             for column, (value, width) in enumerate(zip(row, widths, strict=True))).rstrip())


@click.group()
def key() -> None:
    """Customer API keys."""


@key.command("create")
@click.argument("email")
@click.option("--name", default="", help="A label for the key.")
@click.option("--limit-usd", type=USD, help="Most the key may ever spend, in USD.")
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute it may make.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens per minute it may use.")
@click.option("--models", help="The only model and alias names it may call, comma-separated (default: every model).")
@click.option("--expires", help="When it stops working: YYYY-MM-DD (00:00 UTC) or YYYY-MM-DDTHH:MM (UTC).")
@click.option("--cap-fallback-price", is_flag=True,
              help="Charge its requests to models charged at cost, when a fallback route serves them, at most "
                   "what the model's first route costs (the operator pays the difference).")
@click.pass_obj
def key_create(settings: Settings, email: str, name: str, limit_usd: int | None, rpm: int | None,
               tpm: int | None, models: str | None, expires: str | None, cap_fallback_price: bool) -> None:
    """Create a key; it is printed once, alone on the last line."""
    allowed = None if models is None else tuple(filter(None, (part.strip() for part in models.split(","))))
    expires_at = None if expires is None else api_keys.parse_expiry(expires)
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        created, plaintext = api_keys.create_key(
            session, owner, name, api_keys.KeyLimits(limit_usd, rpm, tpm, allowed, expires_at), cap_fallback_price)
    publish_after(settings, lambda session: publish.publish_key(session, settings, created), REPUBLISH_HINT)
    limit = "no spend limit" if limit_usd is None else f"spend limit {format_usd(limit_usd)}"
    capped = ", fallback prices capped" if cap_fallback_price else ""
    click.echo(f"created key {created.id} for {owner.email} ({limit}{capped})")
    click.echo("Store it now; it is not shown again:")
    click.echo(plaintext)


@key.command("revoke")
@click.argument("key_id", type=int)
@click.pass_obj
def key_revoke(settings: Settings, key_id: int) -> None:
    with db.session_scope(settings) as session:
        revoked = api_keys.revoke_key(session, key_id)
    publish_after(settings, lambda _session: publish.revoke_key(settings, revoked), REPUBLISH_HINT)
    click.echo(f"revoked key {revoked.id} ({revoked.prefix}…)")


@key.command("rotate")
@click.argument("key_id", type=int)
@click.pass_obj
def key_rotate(settings: Settings, key_id: int) -> None:
    """Give a key a new secret (same id, limits, spend and history); the old one stops working
    within 2 s. The new secret is printed once, alone on the last line."""
    with db.session_scope(settings) as session:
        rotated = session.get(ApiKey, key_id)
        if rotated is None:
            raise UserMistake(f"no key with id {key_id}")
        plaintext, old_hash = api_keys.rotate_key(session, rotated)
    publish_after(settings, lambda session: publish.rotate_key(session, settings, rotated, old_hash), REPUBLISH_HINT)
    click.echo(f"rotated key {rotated.id} ({rotated.prefix}…)")
    click.echo("Store it now; it is not shown again:")
    click.echo(plaintext)


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
                "models": api_keys.allowed_models(item),
                "expires_at": item.expires_at and item.expires_at.isoformat(),
                "cap_fallback_price": item.cap_fallback_price,
                "created_at": item.created_at.isoformat(),
                "revoked_at": item.revoked_at and item.revoked_at.isoformat(),
                "rotated_at": item.rotated_at and item.rotated_at.isoformat(),
            }
            for item in api_keys.list_keys(session, owner.id)
        ]
    click.echo(exact_json.dumps(listed))


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("email")
@click.argument("usd", type=USD)
@click.option("--reason", required=True, help="Why; shown to the customer in their transactions.")
@click.pass_obj
def credit(settings: Settings, email: str, usd: int, reason: str) -> None:
    """Add USD to an account (negative to correct a mistake): an adjustment in the ledger. A debit
    is refused when it is more than the live balance (a balance never goes below zero)."""
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
    moved = refunds.credit(settings, owner.id, usd, reason)
    if not moved.live:
        raise click.ClickException(f"saved, but not live yet: Redis did not take it; {WORKER_HINT}")
    with db.session_scope(settings) as session:
        balance = current_balance_nano(settings, accounts.require_by_email(session, email))
    click.echo(f"credited {format_usd(usd)} to {owner.email} (transaction {moved.transaction.id}); "
               f"balance {format_usd(balance)}")


@click.command()
@click.argument("email")
@click.pass_obj
def balance(settings: Settings, email: str) -> None:
    """The account's live balance as JSON."""
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        click.echo(exact_json.dumps(balance_document(current_balance_nano(settings, owner))))
