"""Keys /console/keys: create, rotate, revoke.

A new key's plaintext (and a rotated key's new secret) is in the answer to the POST that made it,
sent with `Cache-Control: no-store`, and nowhere else: SQL has only its hash, the session cookie
never carries it, and the keys page shows its prefix. Another account's key id is a 404, as an
unknown one is.
"""
from __future__ import annotations

from datetime import UTC, datetime, time

from flask import abort, flash, g, make_response, redirect, render_template
from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SelectMultipleField, StringField
from wtforms.validators import NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..accounts import api_keys
from ..accounts.api_keys import MAX_NAME, MAX_RATE, InvalidKeyField, KeyLimits
from ..api import context
from ..catalog import upstreams
from ..errors import ServiceError
from ..models import ApiKey
from ..money import format_usd, usd_to_nano
from . import console
from .sessions import login_required, read_session

NOT_LIVE = ("Saved, but the gateway has not taken the change yet (it could not reach Redis); "
            "it takes effect once the operator runs `tollgate publish`.")


class KeyForm(FlaskForm):
    name = StringField("Name", description="A label for you, e.g. the app that uses it.")
    limit = StringField("Spend limit (USD)", description="The most it may ever spend, e.g. 5.00. Empty: no limit.")
    rpm = IntegerField("Requests per minute", validators=[Optional(), NumberRange(1, MAX_RATE)],
                       description="Empty: your account's default, if any.")
    tpm = IntegerField("Tokens per minute", validators=[Optional(), NumberRange(1, MAX_RATE)],
                       description="Empty: your account's default, if any.")
    models = SelectMultipleField("Allowed models", widget=ListWidget(prefix_label=False),
                                 option_widget=CheckboxInput(),
                                 description="None ticked: every model, also ones added later.")
    expires = DateField("Expires on", validators=[Optional()],
                        description="Optional. It stops working at 00:00 UTC that day.")

    def validate_name(self, field):
        if len((field.data or "").strip()) > MAX_NAME:
            raise ValidationError(f"At most {MAX_NAME} characters.")

    def validate_limit(self, field):
        if (field.data or "").strip():
            try:
                usd_to_nano(field.data)
            except (ValueError, ArithmeticError):
                raise ValidationError("A USD amount such as 5.00, with at most 9 decimals.") from None

    def limits(self) -> KeyLimits:
        expires = self.expires.data
        return KeyLimits(
            spend_nano=usd_to_nano(self.limit.data) if (self.limit.data or "").strip() else None,
            rpm=self.rpm.data, tpm=self.tpm.data, models=tuple(self.models.data) or None,
            expires_at=None if expires is None else datetime.combine(expires, time(0), UTC))


# InvalidKeyField.field -> the form's field it is about.
FORM_FIELD = {"name": "name", "limit": "limit", "rpm": "rpm", "tpm": "tpm", "models": "models",
              "expires_at": "expires"}


def _key_form() -> KeyForm:
    form = KeyForm()
    session = read_session()
    alias_of = {alias.name: alias.model.name for alias in upstreams.aliases(session)}
    form.models.choices = [(name, f"{name} (alias of {alias_of[name]})" if name in alias_of else name)
                           for name in api_keys.catalogue_names(session)]
    return form


@console.get("/keys")
@login_required
def keys_page():
    return _keys_page(_key_form())


@console.post("/keys")
@login_required
def key_create():
    form = _key_form()
    if form.validate():
        try:
            key, plaintext, live = api_keys.create_for(context.settings(), g.account.id, (form.name.data or "").strip(),
                                                       form.limits())
        except InvalidKeyField as exc:
            getattr(form, FORM_FIELD[exc.field]).errors.append(f"{str(exc)[0].upper()}{str(exc)[1:]}.")
        else:
            return _show_secret(key, plaintext, live, rotated=False)
    return _keys_page(form, status=400)


@console.post("/keys/<int:key_id>/rotate")
@login_required
def key_rotate(key_id: int):
    try:
        rotated = api_keys.rotate_for(context.settings(), g.account.id, key_id)
    except ServiceError:  # revoked: there is nothing to rotate
        flash("A revoked key cannot get a new secret; create a new key instead.", "error")
        return redirect("/console/keys", code=303)
    if rotated is None:
        abort(404)
    return _show_secret(*rotated, rotated=True)


@console.post("/keys/<int:key_id>/revoke")
@login_required
def key_revoke(key_id: int):
    revoked = api_keys.revoke_for(context.settings(), g.account.id, key_id)
    if revoked is None:
        abort(404)
    key, live = revoked
    flash(f"Key {_label(key)} is revoked: the gateway refuses it within 2 seconds." if live else NOT_LIVE,
          "success" if live else "error")
    return redirect("/console/keys", code=303)


def _show_secret(key: ApiKey, plaintext: str, live: bool, rotated: bool):
    """The one page that shows the secret; browsers and proxies are told not to keep it."""
    if not live:
        flash(NOT_LIVE, "error")
    response = make_response(render_template("console/key_created.html", nav="keys", key=key, secret=plaintext,
                                             rotated=rotated, label=_label(key)))
    response.headers["Cache-Control"] = "no-store"
    return response


def _label(key: ApiKey) -> str:
    return f"“{key.name}”" if key.name else f"{key.prefix}…"


def _keys_page(form: KeyForm, status: int = 200):
    keys = list(reversed(api_keys.list_keys(read_session(), g.account.id)))  # newest first
    spent = api_keys.spent_nano(read_session(), context.settings(), keys)
    rows = [_row(key, spent[key.id]) for key in keys]
    return render_template("console/keys.html", nav="keys", form=form, rows=rows), status


def _row(key: ApiKey, spent_nano: int) -> dict:
    """What the keys table shows of a key: exact USD, UTC times."""
    models = api_keys.allowed_models(key)
    status = "expired" if key.status == "active" and api_keys.is_expired(key) else key.status
    return {
        "key": key,
        "status": status,
        "spent": format_usd(spent_nano),
        "limit": None if key.limit_nano is None else format_usd(key.limit_nano),
        "models": "all" if models is None else ", ".join(models),
        "expires": _when(key.expires_at) or "never",
        "created": _when(key.created_at),
        "rotated": _when(key.rotated_at) or "—",
    }


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
