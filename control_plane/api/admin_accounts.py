"""/api/admin/v1: accounts, their money, keys and suspension (admin keys; see api/admin.py).

- `GET /accounts?q=&status=` — newest first, paged (`limit`, `before`): `q` is part of the email
  (any case) or the account's id; `status` active, suspended or disabled (deleted by its owner).
- `GET /accounts/<id>` — the account with its live balance, keys, payments (each with what was
  refunded of it) and newest ledger transactions.
- `POST /accounts/<id>/credit` `{"amount": "12.50", "reason": "…"}` — a ledger adjustment the
  customer sees with the reason; a negative amount is a debit, refused (nothing changed) when it
  is more than the live balance. Amounts are USD as a string or an exact JSON number.
- `POST /accounts/<id>/suspend` `{"reason"}`, `POST /accounts/<id>/reactivate` `{"reason"?}`.
- `POST /accounts/<id>/refunds` `{"payment": <its ledger transaction id>, "amount", "reason",
  "refunds_seen"?, "sent_back"?}` — pay back (part of) a deposit or card checkout: `payment` is the
  payment's `transaction_id` in GET /accounts/<id>, `refunds_seen` its `refunds` there. A request
  repeated with the same refunds_seen refunds once (the answer says `"repeated": true`); without
  it, each request is a new refund. A USDT deposit is refunded only with `"sent_back": true` (the
  admin sent the USDT back by hand); a card top-up only within TOLLGATE_REFUND_WINDOW_HOURS.
  Each refund issues a credit note.
- `GET /accounts/<id>/billing-profile`; `PUT` it `{"legal_name", "address", "country", "tax_id",
  "invoice_email"}` (a field left out is made empty) — who the account's invoices are made out to.
- `GET /accounts/<id>/invoices` — its invoices and credit notes, newest first, paged.
- `POST /keys/<id>/revoke`; `PATCH /keys/<id>` `{"limit": "5.00" | null, "rpm": 60 | null,
  "tpm": … | null}` (fields left out stay as they are; null: none).

The queries and shapes the admin console's Accounts pages and `tollgate account` share with these
endpoints are here too (search, live_balances, account_item, change_key_limits).
"""
from __future__ import annotations

import logging

import redis
from flask import g, request
from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.orm import Session

from .. import db, logs
from ..accounts import api_keys, suspension
from ..accounts.api_keys import InvalidKeyField
from ..billing import invoices, profiles, refunds, wallet_history
from ..errors import ServiceError
from ..hot import publish, redis_keys
from ..hot.connection import hget_many, shard
from ..models import ACCOUNT_STATUSES, Account, ApiKey, BillingProfile, Invoice, LedgerTransaction, utc_timestamp
from ..money import money_fields, nano_to_decimal
from ..settings import Settings
from . import context
from .admin import admin_v1
from .errors import ApiError, bad_parameter
from .keys import key_item, parse_limit

log = logging.getLogger(__name__)

MAX_ACCOUNT_ID = 2**31 - 1  # accounts.id is a 32-bit integer column
MAX_SEARCH = 320
RECENT_TRANSACTIONS = 20
PROFILE_FIELDS = ("legal_name", "address", "country", "tax_id", "invoice_email")


# What the console's pages and the CLI share with the endpoints ---------------------------------


def search(text: str = "", status: str | None = None) -> Select:
    """select(Account) of the accounts whose email contains text (any case) or whose id it is
    ("7"; "#7": only the id), of the status if one is given; order and limit are the caller's."""
    query = select(Account)
    text = text.strip()
    if text:
        digits = text.removeprefix("#")
        by_id = Account.id == int(digits) if digits.isascii() and digits.isdigit() and len(digits) < 12 else None
        if text.startswith("#"):
            query = query.where(false() if by_id is None else by_id)
        else:
            term = Account.email.contains(text.lower(), autoescape=True)
            query = query.where(term if by_id is None else or_(term, by_id))
    if status:
        query = query.where(Account.status == status)
    return query


def find_account(session: Session, email_or_id: str) -> Account | None:
    """The account of an email, or of an id ("7" or "#7")."""
    text = email_or_id.strip()
    digits = text.removeprefix("#")
    if digits.isascii() and digits.isdigit():
        return session.get(Account, int(digits)) if 0 < int(digits) <= MAX_ACCOUNT_ID else None
    return session.scalar(select(Account).where(Account.email == text.lower()))


def live_balances(settings: Settings, accounts: list[Account]) -> dict[int, int]:
    """account id -> its live balance: Redis `bal`, one pipelined read; for an account Redis does
    not have, or when Redis cannot be reached, the SQL balance (which lags by the usage not
    drained yet), as accounts/balances.current_balance_nano does for one."""
    live = hget_many(settings, [(redis_keys.account(shard(settings, account.id), account.id), "bal")
                                for account in accounts])
    return {account.id: account.balance_nano if value is None else int(value)
            for account, value in zip(accounts, live, strict=True)}


def active_keys(session: Session, account_ids: list[int]) -> dict[int, int]:
    """account id -> how many active keys it has."""
    if not account_ids:
        return {}
    counted = session.execute(select(ApiKey.account_id, func.count()).where(
        ApiKey.account_id.in_(account_ids), ApiKey.status == "active").group_by(ApiKey.account_id))
    return dict(counted.all())


def account_item(account: Account, balance_nano: int, keys: int) -> dict:
    """An account as the admin API and `tollgate account … --json` show it."""
    return {
        "id": account.id,
        "email": account.email,
        "status": account.status,
        "is_admin": account.is_admin,
        "balance": nano_to_decimal(balance_nano),
        "balance_nano": balance_nano,
        "active_keys": keys,
        "created_at": utc_timestamp(account.created_at),
        "deleted_at": account.deleted_at and utc_timestamp(account.deleted_at),
    }


def account_items(session: Session, settings: Settings, accounts: list[Account]) -> list[dict]:
    balances = live_balances(settings, accounts)
    keys = active_keys(session, [account.id for account in accounts])
    return [account_item(account, balances[account.id], keys.get(account.id, 0)) for account in accounts]


def transaction_item(transaction, amount_nano: int) -> dict:
    """A ledger transaction of an account's wallet, as /api/v1/transactions shows it."""
    return {"id": transaction.id, "type": transaction.kind, "amount": nano_to_decimal(amount_nano),
            "amount_nano": amount_nano, "description": transaction.description,
            "created_at": utc_timestamp(transaction.created_at)}


def recent_transactions(session: Session, account_id: int, limit: int = RECENT_TRANSACTIONS) -> list[dict]:
    rows = session.execute(wallet_history.wallet_entries(account_id)
                           .order_by(wallet_history.CURSOR.desc()).limit(limit)).all()
    return [transaction_item(transaction, amount) for transaction, amount in rows]


def payment_item(paid: refunds.Payment) -> dict:
    deposit = paid.deposit
    return {
        "transaction_id": paid.transaction_id,
        "kind": "card" if deposit is None else "deposit",
        "description": paid.description,
        "amount": nano_to_decimal(paid.amount_nano),
        "amount_nano": paid.amount_nano,
        "refunded": nano_to_decimal(paid.refunded_nano),
        "refunded_nano": paid.refunded_nano,
        "refundable": nano_to_decimal(paid.refundable_nano),
        "refundable_nano": paid.refundable_nano,
        "refunds": paid.refunds,
        "deposit": None if deposit is None else {"id": deposit.id, "chain": deposit.chain,
                                                 "tx_hash": deposit.tx_hash, "log_index": deposit.log_index},
        "created_at": utc_timestamp(paid.created_at),
    }


def account_document(session: Session, settings: Settings, account: Account) -> dict:
    """An account with its keys, payments and newest ledger transactions (GET /accounts/<id>,
    `tollgate account show --json`)."""
    return {**account_items(session, settings, [account])[0],
            "keys": key_items(session, settings, api_keys.list_keys(session, account.id)),
            "payments": [payment_item(paid) for paid in refunds.payments(session, account.id)],
            "transactions": recent_transactions(session, account.id)}


def profile_item(account_id: int, profile: BillingProfile | None) -> dict:
    """A billing profile as the admin API shows it (all fields empty while there is none)."""
    fields = {field: getattr(profile, field) if profile is not None else "" for field in PROFILE_FIELDS}
    return {"account_id": account_id, **fields,
            "updated_at": profile and utc_timestamp(profile.updated_at)}


def invoice_item(invoice: Invoice) -> dict:
    """An invoice or credit note as the admin API shows it: its document, money exact."""
    issued = invoices.document(invoice)
    return {
        "number": issued.number, "kind": issued.kind, "refers_to": issued.refers_to,
        "transaction_id": issued.transaction_id, "issued_at": utc_timestamp(issued.issued_at),
        "paid_at": utc_timestamp(issued.paid_at), "time_zone": issued.time_zone, "currency": issued.currency,
        "issuer": issued.issuer, "customer": issued.customer,
        "lines": [{"kind": line["kind"], "description": line["description"], **money_fields(amount=line["amount_nano"])}
                  for line in issued.lines],
        "tax_rate": str(issued.tax_rate), "reverse_charge": issued.reverse_charge, "note": issued.note,
        **money_fields(net=issued.net_nano, tax=issued.tax_nano, total=issued.total_nano),
        "payment": issued.payment,
    }


def change_key_limits(settings: Settings, key_id: int, changes: dict) -> tuple[ApiKey, bool] | None:
    """Set a key's spend limit (`limit_nano`), `rpm` and `tpm` (those in changes; None: no limit),
    commit, publish: (the key, whether the gateway has it), or None for an unknown key.
    InvalidKeyField (field limit, rpm or tpm) for a value that cannot be used; ServiceError for a
    revoked key."""
    api_keys.check_limits(changes.get("limit_nano"), changes.get("rpm"), changes.get("tpm"))
    with db.session_scope(settings) as session:
        key = session.get(ApiKey, key_id) if 0 < key_id <= api_keys.MAX_ID else None
        if key is None:
            return None
        if key.status != "active":
            raise ServiceError(f"key {key.id} is revoked; its limits no longer matter")
        for field, value in changes.items():
            setattr(key, field, value)
    try:
        with db.session_scope(settings) as session:
            publish.publish_key(session, settings, key)
    except (redis.RedisError, ServiceError) as exc:
        log.error("limits of key %s saved but not published: %s", key.id, logs.error_summary(exc))
        return key, False
    return key, True


def key_items(session: Session, settings: Settings, keys: list[ApiKey]) -> list[dict]:
    spent = api_keys.spent_nano(session, settings, keys)
    return [key_item(key, spent[key.id]) for key in keys]


# The endpoints --------------------------------------------------------------------------------


@admin_v1.get("/accounts")
def account_list():
    status = request.args.get("status", "").strip()
    if status and status not in ACCOUNT_STATUSES:
        raise bad_parameter("status", f"one of {', '.join(ACCOUNT_STATUSES)}")
    text = request.args.get("q", "")
    if len(text) > MAX_SEARCH:
        raise bad_parameter("q", f"at most {MAX_SEARCH} characters")
    rows, has_more, next_before = context.page(search(text, status or None), Account.id)
    items = account_items(context.session(), context.settings(), [account for account, _cursor in rows])
    return {"data": items, "has_more": has_more, "next_before": next_before}


@admin_v1.get("/accounts/<int:account_id>")
def account_detail(account_id: int):
    return _detail(_account(account_id))


@admin_v1.post("/accounts/<int:account_id>/credit")
def account_credit(account_id: int):
    account = _account(account_id)
    body = context.json_object('{"amount": "12.50", "reason": "bank transfer"}', ("amount", "reason"))
    amount = _refused(lambda: refunds.parse_amount(_required(body, "amount")))
    moved = _refused(lambda: refunds.credit(context.settings(), account.id, amount, body.get("reason")))
    return _moved(account, moved), 201


@admin_v1.post("/accounts/<int:account_id>/refunds")
def account_refund(account_id: int):
    account = _account(account_id)
    body = context.json_object('{"payment": 41, "amount": "10.00", "reason": "duplicate payment"}',
                               ("amount", "payment", "reason", "refunds_seen", "sent_back"))
    payment_id = _whole(body, "payment", "the payment's transaction_id (GET /accounts/<id> lists them)")
    seen = _whole(body, "refunds_seen", "the payment's refunds count, or left out") \
        if body.get("refunds_seen") is not None else None
    sent_back = body.get("sent_back")
    if sent_back is not None and not isinstance(sent_back, bool):
        raise bad_parameter("sent_back", "true once you sent a USDT deposit back yourself, else false or left out")
    amount = _refused(lambda: refunds.parse_amount(_required(body, "amount")))
    moved = _refused(lambda: refunds.refund(context.settings(), account.id, payment_id, amount, body.get("reason"),
                                            seen, bool(sent_back)))
    return _moved(account, moved), 200 if moved.repeated else 201


@admin_v1.get("/accounts/<int:account_id>/billing-profile")
def billing_profile(account_id: int):
    account = _account(account_id)
    return profile_item(account.id, profiles.get(context.session(), account.id))


@admin_v1.put("/accounts/<int:account_id>/billing-profile")
def billing_profile_save(account_id: int):
    account = _account(account_id)
    body = context.json_object('{"legal_name": "Example GmbH", "country": "DE", "tax_id": "DE123456789"}',
                               PROFILE_FIELDS)
    try:
        with db.session_scope(context.settings()) as session:
            saved = profile_item(account.id, profiles.save(session, account.id, **{
                field: body.get(field) for field in PROFILE_FIELDS}))
    except profiles.ProfileError as exc:
        raise ApiError("invalid_parameter", detail=f"'{exc.field}': {exc}.") from None
    return saved


@admin_v1.get("/accounts/<int:account_id>/invoices")
def invoice_list(account_id: int):
    account = _account(account_id)
    rows, has_more, next_before = context.page(select(Invoice).where(Invoice.account_id == account.id), Invoice.id)
    return {"data": [invoice_item(row) for row, _cursor in rows], "has_more": has_more, "next_before": next_before}


@admin_v1.post("/accounts/<int:account_id>/suspend")
def account_suspend(account_id: int):
    return _suspension(account_id, suspended=True)


@admin_v1.post("/accounts/<int:account_id>/reactivate")
def account_reactivate(account_id: int):
    return _suspension(account_id, suspended=False)


@admin_v1.post("/keys/<int:key_id>/revoke")
def key_revoke(key_id: int):
    key = _key(key_id)
    key, live = api_keys.revoke_for(context.settings(), key.account_id, key.id)
    return {**key_items(context.session(), context.settings(), [key])[0], "live": live}


@admin_v1.patch("/keys/<int:key_id>")
def key_update(key_id: int):
    _key(key_id)
    body = context.json_object('{"limit": "5.00", "rpm": 60}', ("limit", "rpm", "tpm"))
    changes = {}
    if "limit" in body:
        changes["limit_nano"] = parse_limit(body["limit"])
    for field in ("rpm", "tpm"):
        if field in body:
            value = body[field]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise bad_parameter(field, "an integer per minute, or null for none")
            changes[field] = value
    if not changes:
        raise ApiError("invalid_request", detail='Send at least one of "limit", "rpm", "tpm".')
    key, live = _refused(lambda: change_key_limits(context.settings(), key_id, changes))
    return {**key_items(context.session(), context.settings(), [key])[0], "live": live}


def _suspension(account_id: int, suspended: bool):
    account = _account(account_id)
    body = context.json_object('{"reason": "chargeback under review"}', ("reason",))
    reason = body.get("reason") or ""
    if not isinstance(reason, str):
        raise bad_parameter("reason", "a string")
    if suspended and account.id == g.admin.id:
        raise ApiError("invalid_request", detail="An admin cannot suspend their own account.")
    changed = _refused(lambda: suspension.change(context.settings(), account.id, suspended, reason))
    return {**_detail(_reread(changed.account)), "changed": changed.changed, "live": changed.live}


def _reread(account: Account) -> Account:
    """The account as the request's read session sees it after a change committed in another:
    its transaction ended, so the next read is a new snapshot."""
    session = context.session()
    session.rollback()
    return session.get(Account, account.id)


def _detail(account: Account) -> dict:
    return account_document(context.session(), context.settings(), account)


def _moved(account: Account, moved: refunds.Moved) -> dict:
    """What a credit or refund answers: its transaction, the account after it, whether it is live
    and whether an earlier identical request made it."""
    account = _reread(account)
    transaction, amount = context.session().execute(wallet_history.wallet_entries(account.id).where(
        LedgerTransaction.id == moved.transaction.id)).one()
    return {"transaction": transaction_item(transaction, amount), "live": moved.live,
            "repeated": moved.repeated, "account": _detail(account)}


def _refused(change):
    """change() with its refusals as API errors: a field that cannot be used (400
    invalid_parameter, naming it), a change its subject cannot take (400 invalid_request: a
    deleted account, a revoked key), Redis not answering (503; nothing was changed)."""
    try:
        return change()
    except (refunds.InvalidField, InvalidKeyField) as exc:
        raise ApiError("invalid_parameter", detail=f"'{exc.field}': {exc}.") from None
    except ServiceError as exc:
        raise ApiError("invalid_request", detail=f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
    except redis.RedisError as exc:
        log.error("admin change refused, Redis did not answer: %s", logs.error_summary(exc))
        raise ApiError("control_plane_unavailable", request_id=request.headers.get("X-Request-Id")) from None


def _account(account_id: int) -> Account:
    account = context.session().get(Account, account_id) if 0 < account_id <= MAX_ACCOUNT_ID else None
    if account is None:
        raise ApiError("not_found", detail=f"No account {account_id}. GET /api/admin/v1/accounts lists them.")
    return account


def _key(key_id: int) -> ApiKey:
    key = context.session().get(ApiKey, key_id) if 0 < key_id <= api_keys.MAX_ID else None
    if key is None:
        raise ApiError("not_found", detail=f"No key {key_id}. GET /api/admin/v1/accounts/<id> lists an account's.")
    return key


def _required(body: dict, name: str):
    if body.get(name) is None:
        raise ApiError("invalid_parameter", detail=f"'{name}' is required.")
    return body[name]


def _whole(body: dict, name: str, requirement: str) -> int:
    value = _required(body, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= refunds.MAX_TRANSACTION_ID:
        raise bad_parameter(name, requirement)
    return value
