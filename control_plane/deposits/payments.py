"""Card top-ups through a hosted checkout page, confirmed by a signed webhook.

Signature: Stripe's scheme. The `Stripe-Signature` header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`
where each v1 is HMAC-SHA256 over `<t>.<raw body>` keyed with TOLLGATE_PAYMENT_WEBHOOK_SECRET
(several v1 values appear while a secret is being rolled; any one matching suffices). Timestamps
more than 300 s from our clock are refused, so a captured request cannot be replayed later;
replays within the window are harmless because each event id credits once (`payment:<event id>`).
"""
from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from ..errors import ServiceError

TOLERANCE_SECONDS = 300
NANO_PER_CENT = 10_000_000


class SignatureError(ValueError):
    pass


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature of a payload (what the provider sends; used by tests and tooling)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, header: str | None, body: bytes, now: float | None = None,
           tolerance: int = TOLERANCE_SECONDS) -> int:
    """Check the header against the raw body; the signed timestamp, or SignatureError."""
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp = None
    candidates = []
    for item in header.split(","):
        name, _sep, value = item.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not timestamp.isdigit() or not candidates:
        raise SignatureError("malformed Stripe-Signature header")
    expected = sign(secret, int(timestamp), body)
    # Compare against every candidate (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.strip().lower().encode())
    if not matched:
        raise SignatureError("signature does not match")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError("timestamp outside the tolerance window")
    return int(timestamp)


def checkout_amount(event_object: dict) -> tuple[int, int]:
    """(account id, nano-USD) of a completed checkout session, or ServiceError."""
    reference = str(event_object.get("client_reference_id") or "").strip()
    if not reference.isdigit():
        raise ServiceError("client_reference_id must be the account id")
    currency = str(event_object.get("currency") or "").lower()
    if currency != "usd":
        raise ServiceError(f"only usd checkouts are credited, got {currency!r}")
    cents = event_object.get("amount_total")
    if type(cents) is not int or cents <= 0:
        raise ServiceError("amount_total must be a positive integer of cents")
    return int(reference), cents * NANO_PER_CENT


def checkout_url(template: str, account_id: int, amount_cents: int) -> str:
    """The operator's hosted-checkout URL for this account and amount. Placeholders:
    {account_id}, {amount_cents}, {amount_usd} (e.g. 25.00)."""
    amount_usd = f"{amount_cents // 100}.{amount_cents % 100:02d}"
    return template.format(account_id=quote(str(account_id)), amount_cents=amount_cents, amount_usd=amount_usd)
