"""The audit log: a row for every change to money or configuration, whoever made it and however.

One place writes it, so no code path can forget it:
- configuration (accounts, API keys, admin keys, providers, models, routes, aliases, price
  versions, held price changes, billing profiles) is audited by a flush hook on every SQLAlchemy session: each
  created, changed or deleted row of those tables becomes an entry with the values before and
  after (secrets redacted);
- money is audited by the ledger (billing/ledger.py calls `record_posting`) for every posting
  but usage, with the wallet's balance before and after.

Who: the `Actor` of the current context, set by whoever takes the request — the CLI (`cli
<OS user>`), the admin console (the admin and their IP), the admin API (the admin key), the
customer console (the customer) — and `system` otherwise (the worker, the chain watchers).

Append-only: the ORM refuses to update or delete an entry (also through `update()` and
`delete()` statements), and migration 0009's triggers make the database refuse it too.
"""
from __future__ import annotations

import getpass
import json
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import event, insert, inspect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Delete, Update

from .models import (
    Account,
    AdminApiKey,
    Alias,
    ApiKey,
    AuditEntry,
    BillingProfile,
    Model,
    PriceHold,
    PriceVersion,
    Provider,
    Route,
    utc_timestamp,
    utcnow,
)

REDACTED = "[redacted]"
APPEND_ONLY = "audit_log is append-only"

# The audited tables and what an entry calls each.
ENTITIES = {Account: "account", ApiKey: "api_key", AdminApiKey: "admin_api_key", Provider: "provider",
            Model: "model", Route: "route", Alias: "alias", PriceVersion: "price_version", PriceHold: "price_hold",
            BillingProfile: "billing_profile"}
# Columns whose values never reach the log: a change shows as "[redacted]".
SECRETS = {"password_hash", "key_hash", "api_key_encrypted", "totp_secret_encrypted"}
# Columns that move on their own and are no one's change (a balance moves with the ledger, which
# has its own entries; a TOTP step moves at every admin sign-in; an alert's armed flag moves as
# the balance or the spend crosses its threshold).
UNAUDITED = {(Account, "balance_nano"), (Account, "totp_last_step"), (Account, "balance_alert_sent"),
             (ApiKey, "limit_alert_percent")}


class AuditLogIsAppendOnly(Exception):
    pass


@dataclass(frozen=True)
class Actor:
    """Who makes the changes of the current context. channel: where from (cli, admin console,
    admin api, console, system), also the source of the price versions they make."""

    name: str
    channel: str
    account_id: int | None = None
    ip: str | None = None


SYSTEM = Actor("system", "system")
_actor: ContextVar[Actor | None] = ContextVar("tollgate_audit_actor", default=None)
_reason: ContextVar[str] = ContextVar("tollgate_audit_reason", default="")


def cli_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli {user}", "cli")


def current() -> Actor:
    return _actor.get() or SYSTEM


def set_actor(actor: Actor | None) -> None:
    """For the rest of a request or command (None when it ends: app.py's teardown, the CLI's close)."""
    _actor.set(actor)


@contextmanager
def acting_as(actor: Actor):
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


@contextmanager
def because(reason: str):
    """The reason of the changes made in the block (shown in the log beside them)."""
    token = _reason.set(reason)
    try:
        yield
    finally:
        _reason.reset(token)


def _value(column: str, value):
    if column in SECRETS and value is not None:
        return REDACTED
    if hasattr(value, "isoformat"):
        return utc_timestamp(value) if hasattr(value, "hour") else value.isoformat()
    return value


def _dumps(values: dict | None) -> str | None:
    return None if values is None else json.dumps(values, sort_keys=True, default=str)


def _entry(actor: Actor, action: str, entity: str, entity_id, before: dict | None, after: dict | None,
           reason: str) -> dict:
    return {"created_at": utcnow(), "actor": actor.name, "actor_account_id": actor.account_id, "ip": actor.ip,
            "action": action, "entity": entity, "entity_id": str(entity_id), "before": _dumps(before),
            "after": _dumps(after), "reason": reason[:1000]}


def _columns(kind) -> list[str]:
    return [attr.key for attr in inspect(kind).column_attrs if (kind, attr.key) not in UNAUDITED]


def _changes(kind, row, action: str) -> tuple[dict | None, dict | None]:
    state = inspect(row)
    if action == "create":
        return None, {column: _value(column, getattr(row, column)) for column in _columns(kind)}
    if action == "delete":
        return {column: _value(column, state.attrs[column].loaded_value) for column in _columns(kind)}, None
    before, after = {}, {}
    for column in _columns(kind):
        history = state.attrs[column].history
        if not history.has_changes():
            continue
        old = history.deleted[0] if history.deleted else None
        new = history.added[0] if history.added else None
        if old == new:
            continue
        before[column], after[column] = _value(column, old), _value(column, new)
    return (before, after) if after else (None, None)


def _audited(row):
    return next((kind for kind in ENTITIES if isinstance(row, kind)), None)


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context, _instances) -> None:
    for row in (*session.dirty, *session.deleted):
        if isinstance(row, AuditEntry):
            raise AuditLogIsAppendOnly(APPEND_ONLY)
    actor = current()
    for row in session.new:
        if isinstance(row, PriceVersion):
            row.source = row.source or actor.channel
            row.created_by = row.created_by or actor.name


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context) -> None:
    """Entries for the flushed rows of audited tables (ids are known here), inserted on the same
    connection, in the same transaction."""
    actor, reason = current(), _reason.get()
    rows = []
    for action, changed in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for row in changed:
            kind = _audited(row)
            if kind is None or (action == "update" and not session.is_modified(row, include_collections=False)):
                continue
            before, after = _changes(kind, row, action)
            if action == "update" and after is None:
                continue
            if kind is PriceVersion and action == "create":
                entry_reason = reason or row.source
            else:
                entry_reason = reason
            rows.append(_entry(actor, action, ENTITIES[kind], inspect(kind).primary_key_from_instance(row)[0], before, after, entry_reason))
    if rows:
        session.connection().execute(insert(AuditEntry), rows)


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_changes(execute_state) -> None:
    statement = execute_state.statement
    if isinstance(statement, Update | Delete) and statement.table.name == AuditEntry.__tablename__:
        raise AuditLogIsAppendOnly(APPEND_ONLY)


def record_posting(session: Session, transaction_id: int, kind: str, account_id: int | None, amount: int,
                   balance_before: int | None, description: str) -> None:
    """The ledger's entry for a posting that moves an account's money (not usage): the amount
    and the wallet's balance before and after."""
    after = {"kind": kind, "account_id": account_id, "amount_nano": amount}
    before = None
    if balance_before is not None:
        before = {"balance_nano": balance_before}
        after["balance_nano"] = balance_before + amount
    session.connection().execute(insert(AuditEntry), [
        _entry(current(), "post", "ledger_transaction", transaction_id, before, after, _reason.get() or description)])


def record(session: Session, action: str, entity: str, entity_id, before: dict | None = None,
           after: dict | None = None, reason: str = "") -> None:
    """An entry for a change the flush hook cannot see (one made by a plain SQL statement)."""
    session.connection().execute(insert(AuditEntry), [
        _entry(current(), action, entity, entity_id, before, after, reason or _reason.get())])
