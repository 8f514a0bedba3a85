"""Admin sign-in: the password (as the customer console checks it, throttled), then the second
factor. An admin without one enrols first: the page shows a QR code and the secret as text, a code
from the app confirms it, and the recovery codes are shown once. Only then does an admin session
start. Between the password and the code the cookie remembers the account for PENDING_MINUTES.
"""
from __future__ import annotations

import time
from datetime import timedelta

from flask import flash, redirect, render_template, request, session
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from .. import audit, crypto
from ..accounts import accounts, second_factor
from ..api import context
from ..console.qr_codes import qr_svg
from ..console.sessions import sign_in, sign_out
from ..console.signin import WRONG_LOGIN, LoginForm, password_matches
from ..models import Account
from . import admin
from .sessions import admin_actor, read_session, safe_next, write_scope

PENDING_MINUTES = 10


class CodeForm(FlaskForm):
    code = StringField("Code from your authenticator app", validators=[InputRequired(), Length(max=32)])


def _pending_account() -> Account | None:
    """The admin whose password this browser gave in the last PENDING_MINUTES, or None."""
    pending = session.get("admin_pending")
    if not pending or time.time() - pending.get("at", 0) > PENDING_MINUTES * 60:
        return None
    account = read_session().get(Account, pending.get("account_id"))
    if account is None or not account.is_admin or account.status != "active" or account.deleted_at is not None:
        return None
    return account


def _start(account: Account, next_path: str):
    session.pop("admin_pending", None)
    session.pop("admin_enrol_secret", None)
    with write_scope() as db_session:
        sign_in(db_session, db_session.get(Account, account.id),
                timedelta(minutes=context.settings().admin_session_minutes), admin=True)
    return redirect(next_path, code=303)


@admin.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    next_path = safe_next(request.values.get("next"))
    page = {"next_path": next_path}
    if not form.validate_on_submit():
        return render_template("admin/login.html", form=form, **page), 400 if form.is_submitted() else 200
    account = accounts.find_by_email(read_session(), form.email.data)
    if not password_matches(form.email.data, account, form.password.data):
        return render_template("admin/login.html", form=form, problem=WRONG_LOGIN, **page), 401
    if not account.is_admin or account.status != "active":
        return render_template("admin/login.html", form=form, **page,
                               problem="This account cannot use the admin console."), 403
    session["admin_pending"] = {"account_id": account.id, "at": int(time.time()), "next": next_path}
    return redirect("/admin/code" if second_factor.enrolled(account) else "/admin/enrol", code=303)


@admin.route("/code", methods=["GET", "POST"])
def code():
    account = _pending_account()
    if account is None:
        return redirect("/admin/login", code=303)
    if not second_factor.enrolled(account):
        return redirect("/admin/enrol", code=303)
    form = CodeForm()
    if not form.validate_on_submit():
        return render_template("admin/code.html", form=form, email=account.email), 400 if form.is_submitted() else 200
    with write_scope() as db_session:
        locked = db_session.get(Account, account.id, with_for_update=True)
        accepted = second_factor.verify(db_session, context.settings(), locked, form.code.data)
    if not accepted:
        return render_template("admin/code.html", form=form, email=account.email,
                               problem="That code is wrong or was used already. Enter the current code from "
                                       "your app, or one of your recovery codes."), 401
    return _start(account, session["admin_pending"].get("next", "/admin/"))


@admin.route("/enrol", methods=["GET", "POST"])
def enrol():
    account = _pending_account()
    if account is None:
        return redirect("/admin/login", code=303)
    if second_factor.enrolled(account):
        return redirect("/admin/code", code=303)
    settings = context.settings()
    if "admin_enrol_secret" not in session:
        session["admin_enrol_secret"] = crypto.encrypt(settings, second_factor.new_secret())
    secret = crypto.decrypt(settings, session["admin_enrol_secret"])
    form = CodeForm()
    uri = second_factor.provisioning_uri(secret, account.email)
    page = {"form": form, "email": account.email, "secret": secret,
            "qr": qr_svg(uri, "QR code to add Tollgate to an authenticator app")}
    if not form.validate_on_submit():
        return render_template("admin/enrol.html", **page), 400 if form.is_submitted() else 200
    with audit.acting_as(admin_actor(account)), write_scope() as db_session:
        locked = db_session.get(Account, account.id, with_for_update=True)
        codes = None if second_factor.enrolled(locked) else second_factor.enrol(
            db_session, settings, locked, secret, form.code.data)
    if codes is None:
        return render_template("admin/enrol.html", **page, problem="That code is not right. Check that the app "
                               "shows Tollgate and enter the code it shows now."), 401
    next_path = session["admin_pending"].get("next", "/admin/")
    _start(account, next_path)
    return render_template("admin/recovery_codes.html", codes=codes, next_path=next_path)


@admin.post("/logout")
def logout():
    with write_scope() as db_session:
        sign_out(db_session, admin=True)
    flash("You are signed out of the admin console.", "success")
    return redirect("/admin/login", code=303)
