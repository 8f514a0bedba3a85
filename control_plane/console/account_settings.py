"""Settings: time zone, low-balance alert, change password (ends other sessions), change email
(verified), delete account.

Changing the password or the email and deleting the account ask for the current password
(counted by the login throttle like a login). A new email takes effect only when the link mailed
to it is followed; whether another account has it is not told (its owner gets a notice instead).
Deleting an account revokes its keys in SQL and Redis, ends its sessions and closes its login;
its row, ledger and usage stay.

The time zone (an IANA name, UTC by default) is the one statements, invoices and the Billing page
show dates in; the low-balance alert (a USD amount, empty for none) mails the owner once each
time the balance falls below it (accounts/alerts.py).
"""
from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

from flask import flash, g, redirect, render_template, session
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import ValidationError

from ..accounts import accounts, alerts, api_keys, links, passwords
from ..api import context
from ..hot import publish
from ..models import Account, ApiKey, utcnow
from ..money import format_usd, usd_to_nano
from ..settings import time_zone
from . import console
from .sessions import end_all_sessions, end_other_sessions, login_required, read_session, write_scope
from .signin import (
    CURRENT_PASSWORD,
    EMAIL_FIELD,
    NewPasswordForm,
    link_refused,
    normalized,
    password_matches,
    send_mail,
    set_password,
)

WRONG_PASSWORD = "That is not your current password."


class ChangePasswordForm(NewPasswordForm):
    current_password = PasswordField("Current password", validators=CURRENT_PASSWORD)


class ChangeEmailForm(FlaskForm):
    new_email = EmailField("New email address", validators=EMAIL_FIELD)
    email_password = PasswordField("Password (to confirm the change)", validators=CURRENT_PASSWORD)


class DeleteAccountForm(FlaskForm):
    delete_password = PasswordField("Password (to confirm the deletion)", validators=CURRENT_PASSWORD)


class TimeZoneForm(FlaskForm):
    # Any zone settings.time_zone knows is taken (the list is the system's, which may lack a
    # name an older one had).
    time_zone = SelectField("Time zone", validate_choice=False,
                            description="Statements, invoices and the Billing page show dates in it.")

    def validate_time_zone(self, field):
        if time_zone(field.data or "") is None:
            raise ValidationError("Choose a time zone from the list.")


class BalanceAlertForm(FlaskForm):
    balance_alert = StringField("Mail me when my balance falls below (USD)",
                                description="Empty: no alert.")
    amount_nano: int | None = None  # the threshold read, once validated (None: no alert)

    def validate_balance_alert(self, field):
        text = (field.data or "").strip().removeprefix("$")
        if not text:
            self.amount_nano = None
            return
        try:
            nano = usd_to_nano(text)
        except (ValueError, ArithmeticError):
            raise ValidationError("Give a USD amount such as 5.00, with at most 9 decimals.") from None
        if not 0 < nano <= alerts.MAX_THRESHOLD_NANO:
            raise ValidationError(f"Give an amount above $0 and at most {format_usd(alerts.MAX_THRESHOLD_NANO)}, "
                                  "or leave it empty for no alert.")
        self.amount_nano = nano


@cache
def _time_zones() -> list[tuple[str, str]]:
    return [(name, name) for name in ["UTC", *sorted(available_timezones() - {"UTC"})]]


def _time_zone_form(account: Account) -> TimeZoneForm:
    form = TimeZoneForm(formdata=None)
    form.time_zone.choices = _time_zones()
    form.time_zone.data = account.time_zone
    return form


def _balance_alert_form(account: Account) -> BalanceAlertForm:
    form = BalanceAlertForm(formdata=None)
    if account.balance_alert_nano is not None:
        form.balance_alert.data = format_usd(account.balance_alert_nano).removeprefix("$")
    return form


def _page(status: int = 200, **forms):
    """The settings page, with the forms given (those sent with mistakes) and new ones."""
    forms = {"time_zone_form": _time_zone_form(g.account), "balance_alert_form": _balance_alert_form(g.account),
             "password_form": ChangePasswordForm(formdata=None), "email_form": ChangeEmailForm(formdata=None),
             "delete_form": DeleteAccountForm(formdata=None), **forms}
    return render_template("console/settings.html", nav="settings", min_length=passwords.MIN_LENGTH, **forms), status


def _confirmed(form: FlaskForm, field) -> bool:
    """The form is complete and its password field holds the signed-in account's password."""
    if not form.validate_on_submit():
        return False
    if password_matches(g.account.email, g.account, field.data):
        return True
    field.errors = [WRONG_PASSWORD]
    return False


@console.get("/settings")
@login_required
def settings_page():
    return _page()


@console.post("/settings/time-zone")
@login_required
def change_time_zone():
    form = TimeZoneForm()
    form.time_zone.choices = _time_zones()
    if not form.validate_on_submit():
        return _page(400, time_zone_form=form)
    with write_scope() as db_session:
        db_session.get(Account, g.account.id).time_zone = time_zone(form.time_zone.data).key
    flash(f"Your time zone is {form.time_zone.data}: statements and invoices from now on show dates in it.", "success")
    return redirect("/console/settings", code=303)


@console.post("/settings/balance-alert")
@login_required
def change_balance_alert():
    form = BalanceAlertForm()
    if not form.validate_on_submit():
        return _page(400, balance_alert_form=form)
    with write_scope() as db_session:
        alerts.set_balance_alert(db_session, db_session.get(Account, g.account.id), form.amount_nano)
    flash(f"We mail {g.account.email} when your balance falls below {format_usd(form.amount_nano)}."
          if form.amount_nano is not None
          else "The low-balance alert is off.", "success")
    return redirect("/console/settings", code=303)


@console.post("/settings/password")
@login_required
def change_password():
    form = ChangePasswordForm()
    if not _confirmed(form, form.current_password):
        return _page(400, password_form=form)
    with write_scope() as db_session:
        account = db_session.get(Account, g.account.id)
        set_password(account, form.password.data)
        end_other_sessions(db_session, account)
    flash("Your password is changed. Every other browser signed in to this account is signed out.", "success")
    return redirect("/console/settings", code=303)


@console.post("/settings/email")
@login_required
def change_email():
    form = ChangeEmailForm()
    if not _confirmed(form, form.email_password):
        return _page(400, email_form=form)
    new_email = normalized(form.new_email.data)
    if new_email == g.account.email:
        form.new_email.errors = ["That is your email already."]
        return _page(400, email_form=form)
    owner = accounts.find_by_email(read_session(), new_email)
    if owner is None:
        send_mail(new_email, "Confirm your new email for Tollgate", "change_email",
                  links.make_link(context.settings(), links.CHANGE_EMAIL, g.account, new_email),
                  email=g.account.email, new_email=new_email)
    elif owner.deleted_at is None:
        send_mail(new_email, "Someone tried to change their email to your address", "change_email_taken",
                  new_email=new_email)
    flash(f"We sent a link to {new_email}. Your email changes when you follow it.", "success")
    return redirect("/console/settings", code=303)


@console.get("/change-email/<token>")
def confirm_email_change(token: str):
    """The link mailed to the new address: it becomes the account's (verified) email."""
    with write_scope() as db_session:
        try:
            account, new_email = links.open_token(context.settings(), db_session, links.CHANGE_EMAIL, token,
                                                  lock=True)
        except links.LinkError:
            return link_refused()
        if accounts.find_by_email(db_session, new_email) is not None:  # taken since the link was sent
            return link_refused()
        old_email = account.email
        account.email = new_email
        account.email_verified_at = utcnow()
    send_mail(old_email, "Your Tollgate email was changed", "email_changed", email=old_email, new_email=new_email)
    return render_template("console/verified.html", title="Email changed",
                           message=f"Your email is now {new_email}. Log in with it from now on.")


@console.post("/settings/delete")
@login_required
def delete_account():
    form = DeleteAccountForm()
    if not _confirmed(form, form.delete_password):
        return _page(400, delete_form=form)
    with write_scope() as db_session:
        account = db_session.get(Account, g.account.id)
        active = db_session.scalars(select(ApiKey.id).where(ApiKey.account_id == account.id,
                                                            ApiKey.status != "revoked")).all()
        revoked = [api_keys.revoke_key(db_session, key_id) for key_id in active]
        account.status = "disabled"
        account.deleted_at = utcnow()
        account.password_hash = None
        end_all_sessions(db_session, account)
    settings = context.settings()
    for key in revoked:
        publish.revoke_key(settings, key)
    session.clear()
    flash("Your account is deleted: its keys no longer work and it cannot log in. Its ledger stays with the "
          "operator.", "success")
    return redirect("/console/login", code=303)
