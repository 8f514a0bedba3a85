"""Top up /console/topup: deposit addresses with QR codes, card checkout, deposits.

A chain is offered when its xpub is set (TOLLGATE_XPUB_TRON; TOLLGATE_XPUB_EVM for BSC and
Polygon, one address for both); the account's address there is derived and stored on its first
view, as GET /api/v1/deposits does. Each shows the one token contract credited there (matched by
contract, never by symbol) and the rule after which a deposit counts. The QR code holds the bare
address, which every wallet reads, as an inline SVG (no image library).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from flask import flash, g, redirect, render_template, request
from markupsafe import Markup
from sqlalchemy import select

from ..api import context
from ..deposits import addresses, payments, tokens
from ..deposits.chain_watch import watched_chains
from ..models import Deposit, utc_timestamp
from ..money import format_usd, usd_to_nano
from ..settings import Settings
from . import console
from .qr_codes import qr_svg
from .sessions import login_required, read_session, write_scope

# chain: (the token as wallets name it, the network)
NETWORKS = {"tron": ("USDT (TRC-20)", "TRON"), "bsc": ("USDT (BEP-20)", "BNB Smart Chain (BSC)"),
            "polygon": ("USDT", "Polygon PoS")}
DEPOSITS_PAGE = 50


@dataclass(frozen=True)
class Offer:
    chain: str
    token: str
    network: str
    contract: str
    address: str
    qr_svg: Markup
    rule: str  # when a deposit counts
    watched: bool


@console.get("/topup")
@login_required
def topup_page():
    settings = context.settings()
    before = request.args.get("before", type=int)
    statement = select(Deposit).where(Deposit.account_id == g.account.id)
    if before:
        statement = statement.where(Deposit.id < before)
    deposits = list(read_session().scalars(statement.order_by(Deposit.id.desc()).limit(DEPOSITS_PAGE + 1)))
    older = deposits[DEPOSITS_PAGE - 1].id if len(deposits) > DEPOSITS_PAGE else None
    return render_template(
        "console/topup.html", nav="topup", offers=_offers(settings, g.account.id),
        minimum=format_usd(settings.min_deposit_nano), tiers=_tiers(settings),
        checkout=bool(settings.payment_checkout_url), fee_percent=settings.topup_fee_percent,
        deposits=[_deposit_row(settings, row) for row in deposits[:DEPOSITS_PAGE]], older=older)


@console.post("/topup/checkout")
@login_required
def topup_checkout():
    """Off to the card provider's hosted page for this credit and the top-up fee on it (its
    webhook credits the account)."""
    settings = context.settings()
    if not settings.payment_checkout_url:
        flash("Card top-ups are not configured on this server.", "error")
        return redirect("/console/topup", code=303)
    try:
        charge = _checkout_charge(settings, request.form.get("amount", ""))
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect("/console/topup", code=303)
    return redirect(payments.checkout_url(settings.payment_checkout_url, g.account.id, charge.total_cents), code=303)


def _checkout_charge(settings: Settings, raw: str) -> payments.Charge:
    """The charge for a credit of this amount (ValueError: what is wrong, for the customer)."""
    try:
        nano = usd_to_nano(raw)
    except (ValueError, ArithmeticError):
        raise ValueError("Give the amount in USD, e.g. 25.00.") from None
    try:
        return payments.checkout_charge(nano, settings.min_deposit_nano, settings.topup_fee_percent)
    except payments.CheckoutAmountError as exc:
        raise ValueError(f"The amount must be {exc}.") from None


def _offers(settings: Settings, account_id: int) -> list[Offer]:
    configured = [chain for chain in tokens.CHAINS
                  if (settings.xpub_tron if tokens.CHAIN_FAMILY[chain] == "tron" else settings.xpub_evm)]
    if not configured:
        return []
    contracts = {token.chain: token.contract for token in tokens.accepted(settings)}
    watched = set(watched_chains(settings))
    with write_scope() as session:  # an address is stored on its first view
        found = {chain: addresses.address_for(session, settings, account_id, chain).address for chain in configured}
    return [Offer(chain, *NETWORKS[chain], contracts[chain], found[chain], qr_svg(found[chain], f"QR code of {found[chain]}"),
                  _rule(settings, chain), chain in watched) for chain in configured]


def _rule(settings: Settings, chain: str) -> str:
    if chain == "tron":
        return "A deposit counts once its block is solidified (about a minute)."
    confirmations = settings.evm_chain(chain).confirmations
    return f"A deposit counts once its block is final or {confirmations} blocks deep."


def _tiers(settings: Settings) -> list[tuple[str, str]]:
    """(from this top-up, the bonus percent) of each tier that gives one."""
    return [(format_usd(threshold), _percent(percent)) for threshold, percent in settings.topup_bonus_tiers
            if percent > 0]


def _percent(percent: Decimal) -> str:
    text = format(percent.normalize(), "f")
    return f"{text} %"


# What each deposit status means to the customer.
STATES = {
    "confirmed": "confirmed, being credited",
    "credited": "credited",
    "orphaned": "dropped by a chain reorganisation: not credited",
}


def _deposit_row(settings: Settings, row: Deposit) -> dict:
    if row.status == "seen":
        state = ("seen, waiting for its block to be solidified" if row.chain == "tron" else
                 f"seen, waiting for {settings.evm_chain(row.chain).confirmations} confirmations")
    elif row.status == "below_minimum":
        state = (f"confirmed, below the {format_usd(settings.min_deposit_nano)} minimum: credited with your next "
                 "deposits once they add up to it")
    else:
        state = STATES[row.status]
    return {"created": utc_timestamp(row.created_at), "chain": NETWORKS[row.chain][1], "amount": format_usd(
        row.amount_nano), "status": row.status, "state": state, "block": row.block_number, "tx_hash": row.tx_hash}
