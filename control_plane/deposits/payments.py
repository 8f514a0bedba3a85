"""Card top-ups through a hosted checkout page, confirmed by a signed webhook.

Signature: Stripe's scheme. The `Stripe-Signature` header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`
where each v1 is HMAC-SHA256 over `<t>.<raw body>` keyed with TOLLGATE_PAYMENT_WEBHOOK_SECRET
(several v1 values appear while a secret is being rolled; any one matching suffices). Timestamps
more than 300 s from our clock are refused, so a captured request cannot be replayed later;
replays within the window are harmless because each event id credits once (`payment:<event id>`).

Every input is checked before it is used: a header that is not ASCII or is too long, a body that is
not a UTF-8 JSON object with a string `id` and `type` and an object `data.object`, and a checkout
whose amount, currency or account reference cannot be credited are all refused with a reason.

With a card top-up fee (TOLLGATE_TOPUP_FEE_PERCENT, billing/topup_fees.py) the checkout charges
the credit asked for plus the fee, and the webhook splits what was paid back into the two.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote

from ..billing import topup_fees
from ..errors import ServiceError
from ..money import format_usd

TOLERANCE_SECONDS = 300
NANO_PER_CENT = 10_000_000
# $1,000,000 a checkout: 10^15 nano-USD, four thousand times inside a signed 64-bit column.
MAX_CHECKOUT_CENTS = 100_000_000
MAX_HEADER_CHARS = 2048
MAX_BODY_BYTES = 1 << 20
MAX_JSON_DEPTH = 64  # Stripe's events nest under ten levels
CHECKOUT_COMPLETED = "checkout.session.completed"

_TIMESTAMP = re.compile(r"[0-9]{1,10}")  # unix seconds, until the year 2286
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,150}")  # printable ASCII, as Stripe's evt_… ids
# A JSON string (skipped whole: brackets in it do not nest) or a bracket.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')
_ACCOUNT_ID = re.compile(r"[0-9]{1,10}")
MAX_ACCOUNT_ID = 2**31 - 1  # accounts.id is a 32-bit integer column


class SignatureError(ValueError):
    pass


class EventError(ValueError):
    """A verified body that is not an event this endpoint can read; the message says why."""


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    object: dict


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature of a payload (what the provider sends; used by tests and tooling)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, header: str | None, body: bytes, now: float | None = None,
           tolerance: int = TOLERANCE_SECONDS) -> int:
    """Check the header against the raw body; the signed timestamp, or SignatureError."""
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    if len(header) > MAX_HEADER_CHARS or not header.isascii():
        raise SignatureError(f"the Stripe-Signature header must be ASCII of at most {MAX_HEADER_CHARS} characters")
    timestamps = []
    candidates = []
    for item in header.split(","):
        name, _sep, value = item.strip().partition("=")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            candidates.append(value.strip().lower())
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]) or not candidates:
        raise SignatureError("malformed Stripe-Signature header: it needs one t=<unix seconds> and a v1=<signature>")
    timestamp = int(timestamps[0])
    expected = sign(secret, timestamp, body).encode()
    # Compare against every candidate (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("signature does not match")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance window")
    return timestamp


def read_event(body: bytes) -> Event:
    """The event a verified body carries, or EventError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise EventError("the body is not UTF-8") from None
    # Bounded before parsing: how deep the parser may recurse depends on the process's limit.
    if _nesting_depth(body) > MAX_JSON_DEPTH:
        raise EventError(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(f"the body is not JSON ({exc})") from None
    except ValueError:
        raise EventError("the body has an integer of over 4300 digits") from None
    if not isinstance(document, dict):
        raise EventError("the body is not a JSON object")
    event_id = document.get("id")
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise EventError("'id' must be a string of 1 to 150 printable ASCII characters")
    kind = document.get("type")
    if not isinstance(kind, str):
        raise EventError("'type' must be a string")
    data = document.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise EventError("'data.object' must be an object")
    return Event(event_id, kind, data["object"])


def _nesting_depth(body: bytes) -> int:
    depth = deepest = 0
    for token in _STRING_OR_BRACKET.findall(body):
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def is_paid(checkout: dict) -> bool:
    """Whether a completed checkout session has been paid (delayed payment methods complete
    unpaid and are paid later, in another event type). EventError if the status is no string."""
    status = checkout.get("payment_status", "paid")
    if not isinstance(status, str):
        raise EventError("'data.object.payment_status' must be a string")
    return status == "paid"


def checkout_amount(checkout: dict, fee_percent: Decimal = Decimal(0)) -> tuple[int, int, int]:
    """(account id, credit, fee), both nano-USD, of a paid checkout session, its total split by
    the top-up fee in force; or ServiceError. The account's existence is checked when it is
    credited."""
    reference = checkout.get("client_reference_id")
    if not isinstance(reference, str) or not _ACCOUNT_ID.fullmatch(reference) \
            or not 0 < int(reference) <= MAX_ACCOUNT_ID:
        raise ServiceError("client_reference_id must be the account id, in ASCII digits")
    currency = checkout.get("currency")
    if not isinstance(currency, str) or currency.lower() != "usd":
        raise ServiceError("only usd checkouts are credited")
    cents = checkout.get("amount_total")
    if type(cents) is not int or not 0 < cents <= MAX_CHECKOUT_CENTS:
        raise ServiceError(f"amount_total must be a whole number of cents from 1 to {MAX_CHECKOUT_CENTS}")
    credit, fee = topup_fees.split_cents(cents, fee_percent)
    return int(reference), credit * NANO_PER_CENT, fee * NANO_PER_CENT


class CheckoutAmountError(ValueError):
    """What a checkout amount must be (e.g. "whole cents between $0.01 and $1,000,000.00")."""


def checkout_cents(amount_nano: int, min_deposit_nano: int) -> int:
    """The whole cents of an amount a customer asks to check out: within the provider's bounds and
    at least the minimum top-up (CheckoutAmountError otherwise). The console and the API both ask."""
    cents, rest = divmod(amount_nano, NANO_PER_CENT)
    if rest or not 0 < cents <= MAX_CHECKOUT_CENTS:
        raise CheckoutAmountError(f"whole cents between $0.01 and {format_usd(MAX_CHECKOUT_CENTS * NANO_PER_CENT)}")
    if amount_nano < min_deposit_nano:
        raise CheckoutAmountError(f"at least the minimum top-up of {format_usd(min_deposit_nano)}")
    return cents


@dataclass(frozen=True)
class Charge:
    """What a checkout charges: the credit asked for and the card top-up fee on it, in cents."""

    credit_cents: int
    fee_cents: int

    @property
    def total_cents(self) -> int:
        return self.credit_cents + self.fee_cents


def checkout_charge(amount_nano: int, min_deposit_nano: int, fee_percent: Decimal) -> Charge:
    """The charge of a checkout for this credit (checked as checkout_cents does; the total, fee
    included, within the provider's bound too), or CheckoutAmountError."""
    credit = checkout_cents(amount_nano, min_deposit_nano)
    charge = Charge(credit, topup_fees.fee_cents(credit, fee_percent))
    if charge.total_cents > MAX_CHECKOUT_CENTS:
        raise CheckoutAmountError(f"at most {format_usd(MAX_CHECKOUT_CENTS * NANO_PER_CENT)} with the card top-up "
                                  f"fee of {fee_percent}%")
    return charge


def checkout_url(template: str, account_id: int, amount_cents: int) -> str:
    """The operator's hosted-checkout URL for this account and amount (what it charges: a
    Charge's total_cents). Placeholders: {account_id}, {amount_cents}, {amount_usd} (e.g. 25.00)."""
    amount_usd = f"{amount_cents // 100}.{amount_cents % 100:02d}"
    return template.format(account_id=quote(str(account_id)), amount_cents=amount_cents, amount_usd=amount_usd)
