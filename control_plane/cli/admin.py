"""`tollgate admin`: admin accounts (who may use the admin console, with a second factor) and
their admin API keys."""
from __future__ import annotations

import click

from .. import db, exact_json
from ..accounts import accounts, admin_keys, second_factor
from ..hot import publish
from ..models import Account, utc_timestamp, utcnow
from ..settings import Settings
from .common import REPUBLISH_HINT, echo_password_link, publish_after


@click.group()
def admin() -> None:
    """Admin accounts and admin API keys."""


def create_admin_account(settings: Settings, email: str) -> None:
    """`admin create` and `account create --admin`: the account, made or made an admin, and a
    one-time link for its owner to set a password (the second factor is enrolled at the first
    admin sign-in)."""
    with db.session_scope(settings) as session:
        existing = accounts.find_by_email(session, email)
        if existing is None:
            made = accounts.create_account(session, email, is_admin=True)
            made.email_verified_at = utcnow()
        else:
            existing.is_admin = True
            made = existing
    publish_after(settings, lambda session: publish.publish_account(session, settings, made.id), REPUBLISH_HINT)
    click.echo(f"{'made' if existing is not None else 'created'} admin account {made.id} ({made.email})")
    echo_password_link(settings, made)
    click.echo("then signs in at /admin/login and enrols a second factor (an authenticator app)")


@admin.command("create")
@click.argument("email")
@click.pass_obj
def admin_create(settings: Settings, email: str) -> None:
    """Create an admin account (or make an account an admin) and print a link to set its password."""
    create_admin_account(settings, email)


@admin.command("reset-2fa")
@click.argument("email")
@click.pass_obj
def admin_reset_second_factor(settings: Settings, email: str) -> None:
    """Forget an admin's second factor and recovery codes (a lost device): they enrol again at
    their next sign-in."""
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        second_factor.reset(session, owner)
    click.echo(f"second factor of {email} reset: it enrols a new one at its next admin sign-in")


@admin.group("key")
def admin_key() -> None:
    """Keys for the admin JSON API (/api/admin/v1)."""


@admin_key.command("create")
@click.argument("email")
@click.option("--name", default="", help="A label for the key.")
@click.option("--read-only", is_flag=True, help="It may only read (GET), never change anything.")
@click.pass_obj
def admin_key_create(settings: Settings, email: str, name: str, read_only: bool) -> None:
    """Create an admin API key of an admin account; it is printed once, alone on the last line."""
    with db.session_scope(settings) as session:
        created, plaintext = admin_keys.create(session, accounts.require_by_email(session, email), name, read_only)
    click.echo(f"created {'read-only ' if read_only else ''}admin key {created.id} for {email}")
    click.echo("Store it now; it is not shown again:")
    click.echo(plaintext)


@admin_key.command("list")
@click.pass_obj
def admin_key_list(settings: Settings) -> None:
    """Every admin API key as JSON (prefixes only)."""
    with db.read_session(settings) as session:
        listed = [{"id": key.id, "account": session.get(Account, key.account_id).email, "name": key.name, "prefix": key.prefix,
                   "read_only": key.read_only, "created_at": utc_timestamp(key.created_at),
                   "revoked_at": key.revoked_at and utc_timestamp(key.revoked_at)}
                  for key in admin_keys.list_keys(session)]
    click.echo(exact_json.dumps(listed))


@admin_key.command("revoke")
@click.argument("key_id", type=int)
@click.pass_obj
def admin_key_revoke(settings: Settings, key_id: int) -> None:
    with db.session_scope(settings) as session:
        revoked = admin_keys.revoke(session, key_id)
    click.echo(f"revoked admin key {revoked.id} ({revoked.prefix}…)")
