"""The Accounts pages (/admin/accounts…): search, an account's money, keys, requests and deposits; credits, refunds,
suspension; its billing profile, invoices and statements.

- /admin/accounts: every account, newest first, searched by part of the email or the id and by
  status, paged by keyset (console/paging.py), with its live balance and active keys.
- /admin/accounts/<id>: its live balance and status; its keys (revoke, change the spend limit and
  rate limits); payments (with what was refunded of each); deposits; newest requests and ledger
  transactions (all of them, paged, at /admin/accounts/<id>/ledger); and the forms that change
  it: credit or debit with a reason (billing/refunds.credit), refund a payment
  (billing/refunds.refund; a USDT payment only once the admin says the USDT went back by hand),
  suspend or reactivate (accounts/suspension.py).
- /admin/accounts/<id>/billing: its billing profile (edited here as by its owner), its invoices and
  credit notes as PDF, and its statements by month or any range as PDF and CSV — the customer's
  Billing page's helpers (console/billing.py), for any account.

Each form's mistakes are shown at its field with status 400; a change redirects back (303) with
a message. The queries the admin API and `tollgate account` share are api/admin_accounts.py's.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import abort, flash, g, redirect, render_template, request
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from ..accounts import api_keys, suspension
from ..accounts.api_keys import MAX_RATE, InvalidKeyField
from ..accounts.balances import current_balance_nano
from ..api import admin_accounts, context
from ..billing import profiles, refunds, usage_log, wallet_history
from ..console import billing
from ..console.paging import below_above, keyset_page
from ..errors import ServiceError
from ..models import ACCOUNT_STATUSES, Account, ApiKey, Deposit, utcnow
from ..money import format_usd, usd_to_nano
from . import admin
from .sessions import admin_required, read_session

RECENT = 20
REASON_FIELD = [InputRequired("Give a reason."), Length(max=refunds.MAX_REASON)]
NOT_LIVE = ("Saved, but the gateway has not taken the change yet (it could not reach Redis); it takes effect once "
            "`tollgate publish` runs (the worker applies a credit by itself).")
REDIS_DOWN = "Nothing was changed: the live balance could not be read (Redis did not answer). Try again in a moment."


class CreditForm(FlaskForm):
    amount = StringField("Amount (USD)", validators=[InputRequired("Give an amount.")],
                         description="Positive credits the account; negative (e.g. -2.50) debits it. Exact, at most "
                                     "9 decimals.")
    reason = StringField("Reason", validators=REASON_FIELD,
                         description="Required. The customer sees it beside the adjustment in their Transactions.")


class RefundForm(FlaskForm):
    # "<payment transaction id>:<its refunds the page showed>", not checked against the choices of
    # now: a repeated request (a double click) finds its refund, a stale page is told why.
    payment = SelectField("Payment", validators=[InputRequired("Choose the payment to refund.")],
                          validate_choice=False)
    amount = StringField("Amount to refund (USD)", validators=[InputRequired("Give an amount.")],
                         description="At most what is left of the payment, and at most the live balance.")
    reason = StringField("Reason", validators=REASON_FIELD,
                         description="Required. Shown to the customer with the refund.")
    sent_back = BooleanField("I have sent the USDT back by hand",
                             description="Required to refund a USDT payment: Tollgate sends no crypto itself. "
                                         "Tick it once you have sent the amount back from your wallet.")

    def validate_payment(self, field):
        parts = (field.data or "").split(":")
        if len(parts) != 2 or not all(part.isascii() and part.isdigit() and len(part) < 19 for part in parts):
            raise ValidationError("Choose the payment to refund.")

    def chosen(self) -> tuple[int, int]:
        """(the payment's transaction id, the number of its refunds the page showed)."""
        payment_id, seen = self.payment.data.split(":")
        return int(payment_id), int(seen)


class SuspendForm(FlaskForm):
    reason = StringField("Reason", validators=REASON_FIELD, description="Required. Kept in the audit log.")


class KeyLimitsForm(FlaskForm):
    limit = StringField("Spend limit (USD)", description="The most it may ever spend. Empty: no limit.")
    rpm = IntegerField("Requests per minute", validators=[Optional(), NumberRange(1, MAX_RATE)],
                       description="Empty: the account's default, if any.")
    tpm = IntegerField("Tokens per minute", validators=[Optional(), NumberRange(1, MAX_RATE)],
                       description="Empty: the account's default, if any.")

    def changes(self) -> dict:
        """The key's new limits (None: none); InvalidKeyField("limit") for an amount it cannot read."""
        text = (self.limit.data or "").strip()
        try:
            limit = usd_to_nano(text) if text else None
        except (ValueError, ArithmeticError):
            raise InvalidKeyField("limit", "give a USD amount such as 5.00, with at most 9 decimals") from None
        return {"limit_nano": limit, "rpm": self.rpm.data, "tpm": self.tpm.data}


@dataclass(frozen=True)
class Search:
    """The list's search, kept by its pager's links (console/_pager.html)."""

    text: str
    status: str

    def params(self) -> dict[str, str]:
        return {name: value for name, value in (("q", self.text), ("status", self.status)) if value}


@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    spent_nano: int
    form: KeyLimitsForm


# The list --------------------------------------------------------------------------------------


@admin.get("/accounts")
@admin_required
def accounts_page():
    status = request.args.get("status", "")
    filters = Search(request.args.get("q", "").strip()[:admin_accounts.MAX_SEARCH],
                     status if status in ACCOUNT_STATUSES else "")
    session = read_session()
    query = admin_accounts.search(filters.text, filters.status or None)
    page = keyset_page(session, below_above(query, Account.id), Account.id)
    found = [row[0] for row in page.rows]
    return render_template("admin/accounts.html", nav="accounts", page=page, accounts=found, filters=filters,
                           balances=admin_accounts.live_balances(context.settings(), found),
                           keys=admin_accounts.active_keys(session, [account.id for account in found]),
                           statuses=ACCOUNT_STATUSES)


# An account --------------------------------------------------------------------------------------


@admin.get("/accounts/<int:account_id>")
@admin_required
def account_page(account_id: int):
    return _account_page(_account(account_id))


@admin.get("/accounts/<int:account_id>/ledger")
@admin_required
def account_ledger(account_id: int):
    account = _account(account_id)
    entries = below_above(wallet_history.wallet_entries(account.id), wallet_history.CURSOR)
    page = keyset_page(read_session(), entries, wallet_history.CURSOR)
    return render_template("admin/accounts_ledger.html", nav="accounts", subject=account, page=page)


@admin.post("/accounts/<int:account_id>/credit")
@admin_required
def account_credit(account_id: int):
    account = _account(account_id)
    form = CreditForm(prefix="credit")
    if form.validate():
        try:
            amount = refunds.parse_amount(form.amount.data)
            moved = refunds.credit(context.settings(), account.id, amount, form.reason.data)
        except refunds.InvalidField as exc:
            _field_error(form, exc)
        except redis.RedisError:
            flash(REDIS_DOWN, "error")
            return _account_page(account, 503, credit_form=form)
        else:
            what = "Credited" if amount > 0 else "Debited"
            _flash_moved(moved, f"{what} {format_usd(abs(amount))} (transaction #{moved.transaction.id}).")
            return _back(account, "money")
    return _account_page(account, 400, credit_form=form)


@admin.post("/accounts/<int:account_id>/refunds")
@admin_required
def account_refund(account_id: int):
    account = _account(account_id)
    form = _refund_form(read_session(), account, sent=True)
    if form.validate():
        payment_id, seen = form.chosen()
        try:
            amount = refunds.parse_amount(form.amount.data)
            moved = refunds.refund(context.settings(), account.id, payment_id, amount, form.reason.data, seen,
                                   sent_back=form.sent_back.data)
        except refunds.InvalidField as exc:
            _field_error(form, exc)
        except redis.RedisError:
            flash(REDIS_DOWN, "error")
            return _account_page(account, 503, refund_form=form)
        else:
            if moved.repeated:
                flash(f"That refund was made already (transaction #{moved.transaction.id}); nothing more was "
                      "refunded.", "success")
            else:
                flash(f"Refunded {format_usd(amount)} of payment #{payment_id} (transaction "
                      f"#{moved.transaction.id}).", "success")
            return _back(account, "money")
    return _account_page(account, 400, refund_form=form)


@admin.get("/accounts/<int:account_id>/billing")
@admin_required
def account_billing(account_id: int):
    return _billing_page(_account(account_id))


@admin.post("/accounts/<int:account_id>/billing/profile")
@admin_required
def account_billing_profile(account_id: int):
    account = _account(account_id)
    form = billing.BillingProfileForm(prefix="profile")
    if not (form.validate() and billing.save_profile(form, account.id)):
        return _billing_page(account, 400, profile_form=form)
    flash("Billing profile saved: invoices issued from now on are made out to it; those issued already keep "
          "theirs.", "success")
    return redirect(f"/admin/accounts/{account.id}/billing#profile", code=303)


@admin.get("/accounts/<int:account_id>/billing/invoices/<number>.pdf")
@admin_required
def account_invoice_pdf(account_id: int, number: str):
    return billing.invoice_download(_account(account_id), number)


@admin.get("/accounts/<int:account_id>/billing/statement.pdf")
@admin_required
def account_statement_pdf(account_id: int):
    return _statement(account_id, "pdf")


@admin.get("/accounts/<int:account_id>/billing/statement.csv")
@admin_required
def account_statement_csv(account_id: int):
    return _statement(account_id, "csv")


@admin.get("/accounts/<int:account_id>/billing/usage.csv")
@admin_required
def account_usage_csv(account_id: int):
    return _statement(account_id, "usage")


@admin.post("/accounts/<int:account_id>/suspend")
@admin_required
def account_suspend(account_id: int):
    return _change_suspension(_account(account_id), suspended=True)


@admin.post("/accounts/<int:account_id>/reactivate")
@admin_required
def account_reactivate(account_id: int):
    return _change_suspension(_account(account_id), suspended=False)


@admin.post("/accounts/<int:account_id>/keys/<int:key_id>/revoke")
@admin_required
def key_revoke(account_id: int, key_id: int):
    account = _account(account_id)
    revoked = api_keys.revoke_for(context.settings(), account.id, key_id)
    if revoked is None:
        abort(404)
    key, live = revoked
    flash(f"Key {key.prefix}… is revoked: the gateway refuses it within 2 seconds." if live else NOT_LIVE,
          "success" if live else "error")
    return _back(account, "keys")


@admin.post("/accounts/<int:account_id>/keys/<int:key_id>/limits")
@admin_required
def key_limits(account_id: int, key_id: int):
    account = _account(account_id)
    if api_keys.owned_key(read_session(), account.id, key_id) is None:
        abort(404)
    form = KeyLimitsForm(prefix=f"key-{key_id}")
    if form.validate():
        try:
            key, live = admin_accounts.change_key_limits(context.settings(), key_id, form.changes())
        except InvalidKeyField as exc:
            getattr(form, exc.field).errors.append(_sentence(exc))
        except ServiceError as exc:  # revoked
            flash(_sentence(exc), "error")
        else:
            flash(f"Limits of key {key.prefix}… saved: the gateway uses them within 2 seconds." if live
                  else NOT_LIVE, "success" if live else "error")
            return _back(account, "keys")
    return _account_page(account, 400, key_forms={key_id: form})


def _statement(account_id: int, what: str):
    account = _account(account_id)
    return billing.statement_download(account, what, lambda status, **forms: _billing_page(account, status, **forms))


def _billing_page(account: Account, status: int = 200, **forms):
    """The account's billing page, with the forms given (those sent with mistakes) and new ones."""
    session = read_session()
    forms = {"profile_form": billing.profile_form(profiles.get(session, account.id), prefix="profile"),
             "range_form": billing.range_form(account), **forms}
    return render_template(
        "admin/accounts_billing.html", nav="accounts", subject=account, zone=account.time_zone,
        invoices=billing.invoice_rows(session, account), months=billing.months(session, account, request.args.get("before")),
        base=f"/admin/accounts/{account.id}/billing", **forms), status


def _change_suspension(account: Account, suspended: bool):
    form = SuspendForm(prefix="standing")
    if form.validate():
        if suspended and account.id == g.admin.id:
            form.reason.errors.append("You cannot suspend your own account.")
        else:
            try:
                change = suspension.change(context.settings(), account.id, suspended, form.reason.data)
            except refunds.InvalidField as exc:
                _field_error(form, exc)
            except ServiceError as exc:  # a deleted account
                flash(_sentence(exc), "error")
            else:
                _flash_suspension(change, suspended)
                return _back(account, "standing")
    return _account_page(account, 400, suspend_form=form)


def _flash_suspension(change: suspension.Change, suspended: bool) -> None:
    if not change.live:
        flash(NOT_LIVE, "error")
    elif not change.changed:
        flash(f"The account was {'suspended' if suspended else 'active'} already.", "success")
    elif suspended:
        flash("Account suspended: its keys are refused within 2 seconds and its sessions ended.", "success")
    else:
        flash("Account reactivated: its keys work again within 2 seconds.", "success")


def _flash_moved(moved: refunds.Moved, message: str) -> None:
    if moved.live:
        flash(message, "success")
    else:
        flash(f"{message} {NOT_LIVE}", "error")


def _field_error(form: FlaskForm, exc: refunds.InvalidField) -> None:
    """The money module's refusal, shown at the form's field it names."""
    field = getattr(form, "payment" if exc.field == "refunds_seen" else exc.field, None) or form.amount
    field.errors = [*field.errors, f"{exc}."]


def _sentence(exc: Exception) -> str:
    """A service's message ("key 3 is revoked; …") as a sentence of the page."""
    text = str(exc)
    return f"{text[0].upper()}{text[1:]}."


def _back(account: Account, section: str):
    return redirect(f"/admin/accounts/{account.id}#{section}", code=303)


def _account(account_id: int) -> Account:
    account = read_session().get(Account, account_id) if 0 < account_id <= admin_accounts.MAX_ACCOUNT_ID else None
    if account is None:
        abort(404)
    return account


def _refund_form(session, account: Account, sent: bool = False) -> RefundForm:
    """The refund form, its payments the account's with something left to refund (of the request's
    POST if sent, else new)."""
    form = RefundForm(prefix="refund", **({} if sent else {"formdata": None}))
    settings, now = context.settings(), utcnow()
    form.payment.choices = [("", "Choose a payment…")] + [
        (f"{paid.transaction_id}:{paid.refunds}", _payment_label(settings, paid, now))
        for paid in refunds.payments(session, account.id) if paid.refundable_nano > 0]
    return form


def _payment_label(settings, paid: refunds.Payment, now) -> str:
    """The payment, what is left to refund of it, and what the refund policy says of it now."""
    label = (f"#{paid.transaction_id} {paid.created_at:%Y-%m-%d} — {paid.description} — "
             f"{format_usd(paid.refundable_nano)} refundable")
    if paid.deposit is not None:
        return f"{label} (USDT: once sent back by hand)"
    ends = refunds.refund_window_end(settings, paid)
    if ends is not None:
        return f"{label} ({'past the refund window' if now > ends else f'until {ends:%Y-%m-%d %H:%M} UTC'})"
    return label


def _account_page(account: Account, status: int = 200, **forms):
    """The account's page, with the forms given (those sent with mistakes) and new ones."""
    session, settings = read_session(), context.settings()
    keys = api_keys.list_keys(session, account.id)
    spent = api_keys.spent_nano(session, settings, keys)
    sent_key_forms = forms.pop("key_forms", {})
    key_rows = [KeyRow(key, spent[key.id], sent_key_forms.get(key.id) or _key_form(key)) for key in reversed(keys)]
    refund_form = forms.pop("refund_form", None) or _refund_form(session, account)
    forms = {"credit_form": CreditForm(formdata=None, prefix="credit"),
             "suspend_form": SuspendForm(formdata=None, prefix="standing"), **forms}
    usage = usage_log.UsageQuery(session, account.id, usage_log.UsageFilters())
    requests = session.execute(usage_log.newest_first(usage.rows(), RECENT)).all()
    ledger_rows = session.execute(wallet_history.wallet_entries(account.id)
                                  .order_by(wallet_history.CURSOR.desc()).limit(RECENT)).all()
    deposits = list(session.scalars(select(Deposit).where(Deposit.account_id == account.id)
                                    .order_by(Deposit.id.desc()).limit(RECENT)))
    payments = refunds.payments(session, account.id)
    return render_template(
        "admin/accounts_detail.html", nav="accounts", subject=account, deleted=suspension.is_deleted(account),
        live_balance=current_balance_nano(settings, account), key_rows=key_rows,
        keys_by_id={key.id: key for key in keys}, payments=payments,
        usdt_refundable=any(paid.deposit and paid.refundable_nano > 0 for paid in payments),
        refund_window_hours=settings.refund_window_hours, profile=profiles.get(session, account.id),
        refund_form=refund_form, requests=requests, ledger_rows=ledger_rows, deposits=deposits, **forms), status


def _key_form(key: ApiKey) -> KeyLimitsForm:
    form = KeyLimitsForm(formdata=None, prefix=f"key-{key.id}")
    form.limit.data = "" if key.limit_nano is None else format_usd(key.limit_nano).removeprefix("$")
    form.rpm.data, form.tpm.data = key.rpm, key.tpm
    return form
