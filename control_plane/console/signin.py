"""Sign up, log in, log out, email verification and password reset.

None of these pages tells whether an email has an account: sign-up answers "check your email"
either way (and mails the owner of a known address instead), a failed login says the same for an
unknown email and a wrong password (after as much hashing), and a reset request always says "if
an account exists, we sent a link". Only the right password reveals an account's state.
"""
from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, session
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, ValidationError
from wtforms.validators import EqualTo, InputRequired, Length

from .. import mail
from ..accounts import accounts, links, passwords
from ..api import context
from ..errors import ServiceError
from ..hot import publish
from ..models import Account, utcnow
from . import console, error_page, login_throttle, mail_throttle
from .sessions import current_account, end_all_sessions, read_session, safe_next, sign_in, sign_out, write_scope

log = logging.getLogger(__name__)

WRONG_LOGIN = "Wrong email or password."


def _email_address(_form, field) -> None:
    if not accounts.EMAIL.fullmatch((field.data or "").strip()):
        raise ValidationError("Enter an email address such as you@example.com.")


EMAIL_FIELD = [InputRequired(), Length(max=320), _email_address]
CURRENT_PASSWORD = [InputRequired(), Length(max=passwords.MAX_LENGTH)]


class NewPasswordForm(FlaskForm):
    password = PasswordField("Password", validators=[
        InputRequired(), Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH,
                                message=f"Use at least {passwords.MIN_LENGTH} characters (and at most "
                                        f"{passwords.MAX_LENGTH}).")])
    confirm = PasswordField("Confirm password", validators=[
        InputRequired(), EqualTo("password", "The two passwords differ.")])


class SignupForm(NewPasswordForm):
    email = EmailField("Email", validators=EMAIL_FIELD)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=EMAIL_FIELD)
    password = PasswordField("Password", validators=CURRENT_PASSWORD)


class ResetRequestForm(FlaskForm):
    email = EmailField("Email", validators=EMAIL_FIELD)


class TooManyAttempts(Exception):
    """Too many wrong passwords for this email or from this address lately (login_throttle)."""


@console.errorhandler(TooManyAttempts)
def _too_many_attempts(_error):
    minutes = login_throttle.WINDOW_SECONDS // 60
    return error_page(429, "Too many attempts", f"There were too many wrong passwords. Wait {minutes} minutes, "
                      "then try again, or reset your password.")


@console.errorhandler(mail.MailError)
def _mail_failed(_error):
    return error_page(503, "Mail could not be sent", "The console could not send its mail just now. "
                      "Try again in a few minutes.")


def normalized(email: str) -> str:
    return email.strip().lower()


def send_mail(to: str, subject: str, template: str, link: str | None = None, **values) -> None:
    """Mail templates/console/mail/<template>.txt (given link and values) to one address, unless
    mail_throttle holds it back."""
    settings = context.settings()
    if not mail_throttle.allow(settings, to):
        log.warning("console mail %r not sent: the address had %d this hour", subject, mail_throttle.MAX_PER_ADDRESS)
        return
    text = render_template(f"console/mail/{template}.txt", link=link, login_url=_page_url("/console/login"),
                           reset_url=_page_url("/console/reset"), **values)
    mail.send(settings, to, subject, text, link)


def _page_url(path: str) -> str:
    return context.settings().console_base_url + path


def password_matches(email: str, account: Account | None, password: str) -> bool:
    """Whether password is that of account (the one of email, or None), counting a wrong one
    against the login throttle (which raises TooManyAttempts first when it is exhausted). Every
    password a page asks for goes through here, so a stolen session cannot guess it either."""
    settings = context.settings()
    ip = request.remote_addr or ""
    if login_throttle.blocked(settings, email, ip):
        raise TooManyAttempts
    stored = account.password_hash if account is not None and account.deleted_at is None else None
    if passwords.verify(stored, password):
        return True
    login_throttle.failed(settings, email, ip)
    return False


def set_password(account: Account, password: str) -> None:
    account.password_hash = passwords.hash_password(password)


def _form_page(template: str, form: FlaskForm, **values):
    """The page of a form; 400 when the form was sent with mistakes (shown at their fields)."""
    return render_template(template, form=form, min_length=passwords.MIN_LENGTH, **values), (
        400 if form.is_submitted() else 200)


# -- sign up and verification ---------------------------------------------------------------------
@console.route("/signup", methods=["GET", "POST"])
def signup():
    settings = context.settings()
    if not settings.signup_open:
        return render_template("console/signup.html", nav="signup", closed=True), 403
    form = SignupForm()
    if not form.validate_on_submit():
        return _form_page("console/signup.html", form, nav="signup")
    email = normalized(form.email.data)
    # Hashed whether or not the address is taken: both answers take as long.
    password_hash = passwords.hash_password(form.password.data)
    created_id = None
    with write_scope() as db_session:
        existing = accounts.find_by_email(db_session, email)
        if existing is None:
            try:
                created = accounts.create_account(db_session, email)
            except ServiceError:  # signed up at the same moment by another request
                existing = accounts.find_by_email(db_session, email)
            else:
                created.password_hash = password_hash
                created_id = created.id
                _mail_verification(created)
        if existing is not None:
            _mail_signup_of_known_address(existing)
    if created_id is not None:
        publish.publish_account(read_session(), settings, created_id)  # its keys work at once
    return render_template("console/check_email.html", nav="signup", email=email)


def _mail_verification(account: Account) -> None:
    send_mail(account.email, "Verify your email for Tollgate", "verify",
              links.make_link(context.settings(), links.VERIFY, account), email=account.email)


def _mail_signup_of_known_address(account: Account) -> None:
    """The owner of an address someone signed up with again: a new verification link while it
    is unverified, else a notice (the password given is not used)."""
    if account.deleted_at is not None:
        return
    if account.email_verified_at is None:
        _mail_verification(account)
    else:
        send_mail(account.email, "Someone tried to sign up with your address", "signup_taken", email=account.email)


@console.get("/verify/<token>")
def verify(token: str):
    with write_scope() as db_session:
        try:
            account, _ = links.open_token(context.settings(), db_session, links.VERIFY, token, lock=True)
        except links.LinkError:
            return link_refused()
        account.email_verified_at = utcnow()
        email = account.email
    return render_template("console/verified.html", title="Email verified",
                           message=f"{email} is verified. Log in to use the console.")


@console.post("/verify/resend")
def resend_verification():
    """From the page a correct password of an unverified account shows (it remembers the account)."""
    account_id = session.pop("unverified", None)
    account = read_session().get(Account, account_id) if account_id else None
    if account is not None and account.email_verified_at is None and account.deleted_at is None:
        _mail_verification(account)
        flash(f"We sent a new verification link to {account.email}.", "success")
    return redirect("/console/login", code=303)


def link_refused():
    return error_page(400, "This link does not work", "It has expired, was used already, or is not "
                      "complete. Ask for a new one: log in again, or reset your password.")


# -- log in and out ---------------------------------------------------------------------------------
@console.route("/login", methods=["GET", "POST"])
def login():
    settings = context.settings()
    form = LoginForm()
    next_path = safe_next(request.values.get("next"))
    page = {"nav": "login", "next_path": next_path, "signup_open": settings.signup_open}
    if request.method == "GET" and current_account(read_session()) is not None:
        return redirect(next_path, code=303)
    if not form.validate_on_submit():
        return _form_page("console/login.html", form, **page)
    account = accounts.find_by_email(read_session(), form.email.data)
    if not password_matches(form.email.data, account, form.password.data):
        return render_template("console/login.html", form=form, problem=WRONG_LOGIN, **page), 401
    if account.status != "active":
        state = "suspended" if account.status == "suspended" else "disabled"
        return render_template("console/login.html", form=form, problem=f"This account is {state}. "
                               "Ask the gateway's operator.", **page), 403
    if account.email_verified_at is None:
        session["unverified"] = account.id
        return render_template("console/verify_pending.html", nav="login", email=account.email), 403
    with write_scope() as db_session:
        account = db_session.get(Account, account.id)
        if passwords.needs_rehash(account.password_hash):
            set_password(account, form.password.data)
        sign_in(db_session, account)
    login_throttle.succeeded(settings, account.email, request.remote_addr or "")
    return redirect(next_path, code=303)


@console.post("/logout")
def logout():
    with write_scope() as db_session:
        sign_out(db_session)
    flash("You are logged out.", "success")
    return redirect("/console/login", code=303)


# -- passwords: reset, and the first one of an account an operator made ---------------------------
@console.route("/reset", methods=["GET", "POST"])
def reset_request():
    form = ResetRequestForm()
    if not form.validate_on_submit():
        return _form_page("console/reset_request.html", form, nav="login")
    email = normalized(form.email.data)
    account = accounts.find_by_email(read_session(), email)
    if account is not None and account.status == "active" and account.deleted_at is None:
        send_mail(account.email, "Reset your Tollgate password", "reset",
                  links.make_link(context.settings(), links.RESET, account), email=account.email)
    return render_template("console/reset_request.html", nav="login", sent_to=email)


@console.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str):
    return _new_password(links.RESET, token, "Choose a new password")


@console.route("/set-password/<token>", methods=["GET", "POST"])
def set_first_password(token: str):
    return _new_password(links.SET_PASSWORD, token, "Set your password")


def _new_password(purpose: links.Purpose, token: str, heading: str):
    """A link's password form; sent, it sets the password, verifies the email (the link came
    to it) and ends every session of the account."""
    settings = context.settings()
    form = NewPasswordForm()
    try:
        account, _ = links.open_token(settings, read_session(), purpose, token)
    except links.LinkError:
        return link_refused()
    if not form.validate_on_submit():
        return _form_page("console/reset.html", form, nav="login", heading=heading, email=account.email,
                          action=purpose.path + token)
    with write_scope() as db_session:
        try:  # again in this transaction: of two uses at once, one wins
            account, _ = links.open_token(settings, db_session, purpose, token, lock=True)
        except links.LinkError:
            return link_refused()
        set_password(account, form.password.data)
        account.email_verified_at = account.email_verified_at or utcnow()
        end_all_sessions(db_session, account)
    flash("Your password is set. Log in with it.", "success")
    return redirect("/console/login", code=303)
