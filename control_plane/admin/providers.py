"""The Providers page (/admin/providers…): add, edit, disable and test upstream providers.

A provider's key is typed into a password field, stored encrypted (crypto.py) and never shown
again: pages show "…" and its last four characters (upstreams.key_hint), and a form that fails
validation is shown again without it. Disabling a provider republishes every model with a route
to it without that route (hot/publish.py), so the gateway stops using it within its 1 s cache.
The Test button makes one real call with the key (catalog/provider_check.py).
"""
from __future__ import annotations

from urllib.parse import quote

from flask import flash, g, redirect, render_template
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import InputRequired, Length, ValidationError

from ..api import context
from ..api.admin_catalog import provider_item, publish_live
from ..catalog import provider_check, upstreams
from ..errors import ServiceError
from ..hot import publish
from ..models import PROTOCOLS, Provider
from . import admin, error_page
from .sessions import admin_required, read_session, write_scope

PROTOCOL_LABELS = {"openai": "OpenAI (chat completions, completions, responses, embeddings)",
                   "anthropic": "Anthropic (messages)"}
NOT_LIVE = "Saved, but the gateway does not have it yet ({problem}); it takes effect once `tollgate publish` runs."


def _check_base_url(_form, field) -> None:
    try:
        upstreams.parse_base_url(field.data or "")
    except ServiceError as exc:
        raise ValidationError(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None


class ProviderForm(FlaskForm):
    name = StringField("Name", validators=[InputRequired(), Length(max=100)],
                       description="How routes name it, e.g. openai: letters, digits and ._:/@+-.")
    protocol = SelectField("Protocol", choices=[(protocol, PROTOCOL_LABELS[protocol]) for protocol in PROTOCOLS],
                           description="The API it speaks. A model's routes all speak the same one.")
    base_url = StringField("Base URL", validators=[InputRequired(), Length(max=2000), _check_base_url],
                           description="e.g. https://api.openai.com/v1 (OpenAI) or https://api.anthropic.com "
                                       "(Anthropic).")
    api_key = PasswordField("API key", validators=[InputRequired()],
                            description="Stored encrypted. It is never shown again: only its last four characters.")

    def validate_name(self, field) -> None:
        if not upstreams.NAME.fullmatch(field.data or ""):
            raise ValidationError("1-100 letters, digits and ._:/@+- (no spaces).")
        if upstreams.find_provider(read_session(), field.data) is not None:
            raise ValidationError("A provider of this name exists: edit it below instead.")


class ProviderEditForm(FlaskForm):
    base_url = StringField("Base URL", validators=[InputRequired(), Length(max=2000), _check_base_url])
    api_key = PasswordField("New API key", description="Leave it empty to keep the current key.")


def _provider_or_404(name: str) -> Provider | None:
    return upstreams.find_provider(read_session(), name)


def _page_of(name: str) -> str:
    return "/admin/providers/" + quote(name, safe="/:@+")


def _not_found(name: str):
    return error_page(404, "No such provider", f"There is no provider named “{name}”.")


def _providers_page(form: ProviderForm, status: int = 200):
    session, settings = read_session(), context.settings()
    rows = [provider_item(session, settings, provider) for provider in upstreams.providers(session)]
    return render_template("admin/providers.html", nav="providers", admin=g.admin, rows=rows, form=form), status


def _provider_page(provider: Provider, form: ProviderEditForm, status: int = 200):
    item = provider_item(read_session(), context.settings(), provider)
    return render_template("admin/provider.html", nav="providers", admin=g.admin, provider=item, form=form,
                           protocol_label=PROTOCOL_LABELS[provider.protocol]), status


def _published(problem: str | None, done: str) -> None:
    flash(done if problem is None else NOT_LIVE.format(problem=problem), "success" if problem is None else "error")


@admin.get("/providers")
@admin_required
def providers_page():
    return _providers_page(ProviderForm())


@admin.post("/providers")
@admin_required
def provider_add():
    form = ProviderForm()
    if not form.validate():
        return _providers_page(form, 400)
    settings = context.settings()
    try:
        with write_scope() as db_session:
            saved = upstreams.upsert_provider(db_session, settings, form.name.data, form.protocol.data,
                                              form.base_url.data, form.api_key.data)
    except ServiceError as exc:
        form.api_key.errors.append(f"{str(exc)[0].upper()}{str(exc)[1:]}.")
        return _providers_page(form, 400)
    problem = publish_live(settings, lambda _session: publish.publish_provider(settings, saved))
    _published(problem, f"Provider {saved.name} is added. Add a model that it serves on the Models and routes page.")
    return redirect("/admin/providers", code=303)


@admin.get("/providers/<path:name>")
@admin_required
def provider_page(name: str):
    provider = _provider_or_404(name)
    if provider is None:
        return _not_found(name)
    return _provider_page(provider, ProviderEditForm(base_url=provider.base_url))


@admin.post("/providers/<path:name>")
@admin_required
def provider_edit(name: str):
    provider = _provider_or_404(name)
    if provider is None:
        return _not_found(name)
    form = ProviderEditForm()
    if not form.validate():
        return _provider_page(provider, form, 400)
    settings = context.settings()
    new_key = (form.api_key.data or "").strip() or None
    with write_scope() as db_session:
        saved = upstreams.upsert_provider(db_session, settings, provider.name, provider.protocol, form.base_url.data,
                                          new_key)
    problem = publish_live(settings, lambda _session: publish.publish_provider(settings, saved))
    _published(problem, f"Provider {saved.name} is saved" + (" with its new key." if new_key else "."))
    return redirect(_page_of(saved.name), code=303)


def _switch(name: str, enabled: bool):
    if _provider_or_404(name) is None:
        return _not_found(name)
    settings = context.settings()
    with write_scope() as db_session:
        saved = upstreams.set_provider_enabled(db_session, name, enabled)
    unserved: list[str] = []
    problem = publish_live(settings, lambda session: unserved.extend(
        publish.publish_provider_change(session, settings, session.get(Provider, saved.id))))
    if enabled:
        done = f"Provider {name} is enabled: the gateway uses its routes again within a second."
    else:
        done = f"Provider {name} is disabled: the gateway stops using its routes within a second."
        if unserved:
            done += (f" Not served until one of their providers is enabled (customers get 404 model_not_found): "
                     f"{', '.join(unserved)}.")
    _published(problem, done)
    return redirect("/admin/providers", code=303)


@admin.post("/providers/<path:name>/disable")
@admin_required
def provider_disable(name: str):
    return _switch(name, enabled=False)


@admin.post("/providers/<path:name>/enable")
@admin_required
def provider_enable(name: str):
    return _switch(name, enabled=True)


@admin.post("/providers/<path:name>/test")
@admin_required
def provider_test(name: str):
    """One real call with the provider's key; the status and latency (never the key) come back
    as a message on the page the button was on."""
    provider = _provider_or_404(name)
    if provider is None:
        return _not_found(name)
    result = provider_check.check(context.settings(), provider)
    flash(f"Test of {provider.name} (GET {result.url}): {result.summary()}.", "success" if result.ok else "error")
    return redirect(_page_of(provider.name), code=303)
