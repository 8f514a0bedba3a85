"""Top-up endpoints.

- `POST /api/v1/webhooks/payments`: the card provider's signed webhook (no API key; see payments.py).
- `POST /api/v1/checkout` (customer key): `{"amount": "25.00"}` (the credit) → `{"url": …}` of the
  hosted page, which charges the credit plus the card top-up fee; the answer states credit
  (`amount`), `fee` and `total`.
- `GET /api/v1/deposits` (customer key): the account's deposits, newest first, and its addresses.

Registered by control_plane/app.py: `webhooks` under /api/v1/webhooks, `topups` under /api/v1 with
the customer API key check of every /api/v1 view.
"""
from __future__ import annotations

import json
import logging
from decimal import Decimal

from flask import Blueprint, g, request
from sqlalchemy import select

from .. import db
from ..api import context
from ..api.errors import ApiError, bad_parameter
from ..billing import invoices, topup_fees
from ..errors import ServiceError
from ..models import Deposit, DepositAddress, utc_timestamp
from ..money import format_usd, money_fields, nano_to_decimal, usd_to_nano
from . import addresses, payments
from .ledger import credit_topup, publish
from .tokens import CHAIN_FAMILY

log = logging.getLogger(__name__)

webhooks = Blueprint("payment_webhooks", __name__)
topups = Blueprint("topups", __name__)
topups.before_request(context.authenticate)


@webhooks.post("/payments")
def payment_webhook():
    """Every input that is not a valid event is a 400 with the reason: `invalid_signature` (the
    header), `invalid_event` (the body), `not_credited` (a paid checkout that cannot be credited).
    A paid checkout credits its total less the card top-up fee, posts the fee, and is invoiced."""
    settings = context.settings()
    if not settings.payment_webhook_secret:
        raise ApiError("not_configured", setting="TOLLGATE_PAYMENT_WEBHOOK_SECRET")
    body = request.get_data(cache=False)
    if len(body) > payments.MAX_BODY_BYTES:
        raise ApiError("invalid_event", detail=f"the body is over {payments.MAX_BODY_BYTES} bytes")
    try:
        payments.verify(settings.payment_webhook_secret, request.headers.get("Stripe-Signature"), body)
    except payments.SignatureError as exc:
        raise ApiError("invalid_signature", detail=str(exc)) from None
    try:
        event = payments.read_event(body)
        paid_checkout = event.type == payments.CHECKOUT_COMPLETED and payments.is_paid(event.object)
    except payments.EventError as exc:
        raise ApiError("invalid_event", detail=str(exc)) from None
    if not paid_checkout:
        return {"received": True, "credited": False}
    try:
        account_id, amount_nano, fee_nano = payments.checkout_amount(event.object, settings.topup_fee_percent)
        key = f"payment:{event.id}"
        with db.session_scope(settings) as session:
            posted = credit_topup(session, settings, account_id, amount_nano, key,
                                  f"Card top-up {format_usd(amount_nano)} (event {event.id})")
            if posted and fee_nano:
                posted.append(topup_fees.post_fee(session, account_id, fee_nano, key, settings.topup_fee_percent,
                                                  amount_nano))
            ids = [transaction.id for transaction in posted]
    except ServiceError as exc:
        log.warning("payment event %s not credited: %s", event.id, exc)
        raise ApiError("not_credited", event=event.id, detail=str(exc)) from None
    publish(settings, ids)
    invoices.issue_pending_now(settings)
    return {"received": True, "credited": bool(ids)}


@topups.post("/checkout")
def checkout():
    settings = context.settings()
    if not settings.payment_checkout_url:
        raise ApiError("not_configured", setting="TOLLGATE_PAYMENT_CHECKOUT_URL")
    try:
        payload = json.loads(request.get_data() or b"null", parse_float=Decimal)
    except (ValueError, RecursionError):
        raise ApiError("invalid_request", detail='The body must be JSON: {"amount": "25.00"}.') from None
    raw = payload.get("amount") if isinstance(payload, dict) else None
    try:
        if raw is None or isinstance(raw, bool):
            raise ValueError
        nano = usd_to_nano(raw)
    except (ValueError, ArithmeticError):
        raise bad_parameter("amount", "a USD amount such as \"25.00\"") from None
    try:
        charge = payments.checkout_charge(nano, settings.min_deposit_nano, settings.topup_fee_percent)
    except payments.CheckoutAmountError as exc:
        raise bad_parameter("amount", str(exc)) from None
    url = payments.checkout_url(settings.payment_checkout_url, g.account.id, charge.total_cents)
    return {"url": url, **money_fields(amount=nano, fee=charge.fee_cents * payments.NANO_PER_CENT,
                                       total=charge.total_cents * payments.NANO_PER_CENT)}


@topups.get("/deposits")
def deposit_list():
    rows, has_more, next_before = context.page(select(Deposit).where(Deposit.account_id == g.account.id), Deposit.id)
    return {
        "data": [deposit_item(row) for row, _cursor in rows],
        "has_more": has_more,
        "next_before": next_before,
        "addresses": _addresses(g.account.id),
        "minimum": nano_to_decimal(context.settings().min_deposit_nano),
    }


def deposit_item(row: Deposit) -> dict:
    return {
        "id": row.id,
        "chain": row.chain,
        "tx_hash": row.tx_hash,
        "log_index": row.log_index,
        "token_contract": row.token_contract,
        "amount_base_units": str(row.amount),
        "amount": nano_to_decimal(row.amount_nano),
        "amount_nano": row.amount_nano,
        "block_number": row.block_number,
        "status": row.status,
        "transaction_id": row.transaction_id,
        "created_at": utc_timestamp(row.created_at),
    }


def _addresses(account_id: int) -> dict:
    """{chain: address} for the chains whose xpub is configured (stored on first request)."""
    settings = context.settings()
    stored = {row.family: row.address for row in context.session().scalars(
        select(DepositAddress).where(DepositAddress.account_id == account_id))}
    result = {}
    for chain, family in CHAIN_FAMILY.items():
        if family not in stored and (settings.xpub_evm if family == "evm" else settings.xpub_tron):
            with db.session_scope(settings) as session:
                stored[family] = addresses.address_for(session, settings, account_id, chain).address
        if family in stored:
            result[chain] = stored[family]
    return result

