"""The Models and routes page (/admin/models…): models, aliases, routes, prices, margins and price versions.

What a model's page shows is the admin API's `GET /models/<name>` (api/admin_catalog.py
model_detail): its routes in the order tried with their cost, the customer's price and the
margin per class, health per gateway node, and every price version with its source and author.
Its forms change the catalogue through catalog/upstreams.py, as the CLI does, and publish each
change once committed. Prices are typed in USD per 1M tokens and read exactly (money.usd_to_nano).
"""
from __future__ import annotations

from urllib.parse import quote

from flask import flash, g, redirect, render_template
from flask_wtf import FlaskForm
from wtforms import IntegerField, RadioField, SelectField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from ..api import context
from ..api.admin_catalog import model_detail, model_summary, price_range, publish_live
from ..catalog import upstreams
from ..errors import ServiceError
from ..hot import publish
from ..models import Model, Route
from ..money import MAX_PRICE_NANO, MAX_TOKENS, format_usd, usd_to_nano
from ..usage_classes import USAGE_CLASSES
from . import admin, error_page
from .providers import NOT_LIVE
from .sessions import admin_required, read_session, write_scope

PRICE_SOURCE_HINT = ("Its id in the price list `tollgate prices sync` reads, e.g. claude-sonnet-4-20250514 "
                     "(LiteLLM) or anthropic/claude-sonnet-4 (OpenRouter). Optional.")


# Forms -----------------------------------------------------------------------------------------


class PricesForm(FlaskForm):
    """One USD-per-1M-tokens field per usage class (added below, named by its price field); those
    without a default are required unless `prices_required` is False."""

    prices_required = True

    def prices(self) -> dict[str, int | None]:
        """The prices given, nano-USD per 1M tokens (None: the class's default). Call after validate()."""
        return {usage.price: _nano(getattr(self, usage.price).data) for usage in USAGE_CLASSES}

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for usage in USAGE_CLASSES:
            price_field = getattr(self, usage.price)
            text = (price_field.data or "").strip()
            if not text:
                if usage.default is None and self.prices_required:
                    price_field.errors.append("Required: USD per 1M tokens, e.g. 2.50.")
                    valid = False
                continue
            try:
                nano = usd_to_nano(text)
            except (ValueError, ArithmeticError):
                nano = None
            if nano is None or not 0 <= nano <= MAX_PRICE_NANO:
                price_field.errors.append(f"USD per 1M tokens from 0 to {format_usd(MAX_PRICE_NANO)}, with at most "
                                          "9 decimals, e.g. 2.50.")
                valid = False
        return valid


def _nano(text: str | None) -> int | None:
    text = (text or "").strip()
    return usd_to_nano(text) if text else None


for _usage in USAGE_CLASSES:
    _fallback = "" if _usage.default is None else f" Empty: the {_usage.default.replace('_', ' ')} price."
    setattr(PricesForm, _usage.price, StringField(
        f"{_usage.label.capitalize()} (USD per 1M tokens)", description=f"{_usage.description.capitalize()}.{_fallback}"))


def _check_name(_form, field) -> None:
    if not upstreams.NAME.fullmatch(field.data or ""):
        raise ValidationError("1-100 letters, digits and ._:/@+- (no spaces).")


class ModelForm(PricesForm):
    name = StringField("Model name", validators=[InputRequired(), Length(max=100), _check_name],
                       description="What customers call, e.g. gpt-4o.")
    provider = SelectField("Provider", validators=[InputRequired()])
    upstream_model = StringField("Upstream model", validators=[Optional(), Length(max=200)],
                                 description="The provider's name for it. Empty: the model name.")
    max_output = IntegerField("Max output tokens", validators=[Optional(), NumberRange(1, MAX_TOKENS)],
                              description="The most output tokens a request may ask for. Empty: 16384.")
    price_source_id = StringField("Price source id", validators=[Optional(), Length(max=200)],
                                  description=PRICE_SOURCE_HINT)


class OnModelPage:
    """The route and price forms share a model's page, and their price fields' names: each gets a
    prefix (route-input, price-input), and the page one CSRF token, which the blueprint checks
    before every POST (as it does every form's)."""

    class Meta:
        csrf = False


class RouteForm(OnModelPage, PricesForm):
    provider = SelectField("Provider", validators=[InputRequired()])
    upstream_model = StringField("Upstream model", validators=[Optional(), Length(max=200)],
                                 description="The provider's name for the model. Empty: the model name. A route that "
                                             "exists (same provider and upstream model) is updated.")
    priority = IntegerField("Priority", validators=[Optional(), NumberRange(0, upstreams.MAX_ROUTE_WEIGHT)],
                            description="Lower is tried first. Empty: 0 (a new route) or unchanged.")
    weight = IntegerField("Weight", validators=[Optional(), NumberRange(1, upstreams.MAX_ROUTE_WEIGHT)],
                          description="Its share among routes of the same priority. Empty: 1 or unchanged.")
    price_source_id = StringField("Price source id", validators=[Optional(), Length(max=200)],
                                  description=PRICE_SOURCE_HINT + " Empty: unchanged.")


class PriceForm(OnModelPage, PricesForm):
    prices_required = False
    charging = RadioField("Charging", choices=[("at_cost", "At cost: each request at its route's cost"),
                                               ("fixed", "Fixed price: the prices below, whichever route serves it")],
                          validators=[InputRequired(message="Choose at cost or a fixed price.")])

    def validate(self, extra_validators=None) -> bool:
        self.prices_required = self.charging.data == "fixed"
        return super().validate(extra_validators)


class AliasForm(FlaskForm):
    alias = StringField("Alias", validators=[InputRequired(), Length(max=100), _check_name],
                        description="Another name customers may call this model by, e.g. gpt-latest.")


def _with_providers(form):
    form.provider.choices = [(provider.name, provider.name + ("" if provider.disabled_at is None else " (disabled)"))
                             for provider in upstreams.providers(read_session())]
    return form


def _route_form(**kwargs) -> RouteForm:
    return _with_providers(RouteForm(prefix="route", **kwargs))


# Pages -----------------------------------------------------------------------------------------


def _page_of(name: str) -> str:
    return "/admin/models/" + quote(name, safe="/:@+")


def _not_found(name: str):
    return error_page(404, "No such model", f"There is no model named “{name}”.")


def _models_page(form: ModelForm, status: int = 200):
    session = read_session()
    rows = [model_summary(session, model) for model in upstreams.models(session)]
    return render_template("admin/models.html", nav="models", admin=g.admin, rows=rows, form=form, classes=USAGE_CLASSES,
                           shown=_shown_price), status


def _shown_price(summary: dict, field: str) -> str:
    """'$3.00', or at cost the range of its routes' costs: '$2.40–$3.00'."""
    found = price_range(summary, field)
    if found is None:
        return "—"
    low, high = found
    return format_usd(low) if low == high else f"{format_usd(low)}–{format_usd(high)}"


def _model_page(model: Model, status: int = 200, **forms):
    forms = {"route_form": _route_form(formdata=None), "price_form": _price_form(model),
             "alias_form": AliasForm(formdata=None), **forms}
    detail = model_detail(read_session(), context.settings(), model)
    route_names = {route["id"]: f"{route['provider']}/{route['upstream_model']}" for route in detail["routes"]}
    return render_template("admin/model.html", nav="models", admin=g.admin, model=detail, route_names=route_names,
                           classes=USAGE_CLASSES, usd=format_usd, **forms), status


def _price_form(model: Model) -> PriceForm:
    """The customer price form, filled with the current charging and fixed price."""
    form = PriceForm(formdata=None, prefix="price", charging="at_cost" if model.at_cost else "fixed")
    current = upstreams.current_price(read_session(), model.id)
    if current is not None:
        for usage in USAGE_CLASSES:
            value = getattr(current, usage.price)
            getattr(form, usage.price).data = "" if value is None else format_usd(value).lstrip("$")
    return form


def _done(problem: str | None, done: str, name: str):
    if problem is None:
        flash(done, "success")
    else:
        flash(NOT_LIVE.format(problem=problem), "error")
    return redirect(_page_of(name), code=303)


def _publish_model(model_id: int) -> str | None:
    settings = context.settings()
    return publish_live(settings, lambda session: publish.publish_model(session, settings, session.get(Model, model_id)))


def _catalogue_problem(form, exc: ServiceError) -> None:
    """A change the catalogue refused (after the form's own checks): shown above the form."""
    text = str(exc)
    form.form_errors.append(text[0].upper() + text[1:] + ("" if text.endswith(".") else "."))


@admin.get("/models")
@admin_required
def models_page():
    return _models_page(_with_providers(ModelForm(formdata=None)))


@admin.post("/models")
@admin_required
def model_add():
    form = _with_providers(ModelForm())
    if not form.validate():
        return _models_page(form, 400)
    if upstreams.find_model(read_session(), form.name.data) is not None:
        form.name.errors.append("A model of this name exists: change its routes and price on its page.")
        return _models_page(form, 400)
    try:
        with write_scope() as db_session:
            saved = upstreams.upsert_model(db_session, form.name.data, form.provider.data, form.prices(),
                                           form.upstream_model.data or None, form.max_output.data,
                                           price_source_id=form.price_source_id.data or None)
    except ServiceError as exc:
        _catalogue_problem(form, exc)
        return _models_page(form, 400)
    return _done(_publish_model(saved.id), f"Model {saved.name} is added, charged at cost.", saved.name)


@admin.get("/models/<path:name>")
@admin_required
def model_page(name: str):
    model = upstreams.find_model(read_session(), name)
    return _not_found(name) if model is None else _model_page(model)


@admin.post("/models/<path:name>/routes")
@admin_required
def route_save(name: str):
    model = upstreams.find_model(read_session(), name)
    if model is None:
        return _not_found(name)
    form = _route_form()
    if not form.validate():
        return _model_page(model, 400, route_form=form)
    try:
        with write_scope() as db_session:
            saved = upstreams.upsert_route(db_session, model.name, form.provider.data, form.prices(),
                                           form.upstream_model.data or None, form.priority.data, form.weight.data,
                                           form.price_source_id.data or None)
    except ServiceError as exc:
        _catalogue_problem(form, exc)
        return _model_page(model, 400, route_form=form)
    return _done(_publish_model(model.id), f"Route {saved.id} ({form.provider.data}/{saved.upstream_model}) is saved.",
                 model.name)


@admin.post("/models/<path:name>/routes/<int:route_id>/remove")
@admin_required
def route_remove(name: str, route_id: int):
    model = upstreams.find_model(read_session(), name)
    if model is None:
        return _not_found(name)
    route = read_session().get(Route, route_id)
    if route is None or route.model_id != model.id:
        return error_page(404, "No such route", f"Model “{model.name}” has no route {route_id}.")
    try:
        with write_scope() as db_session:
            upstreams.remove_route(db_session, model.name, route_id)
    except ServiceError as exc:  # its last route
        flash(f"{str(exc)[0].upper()}{str(exc)[1:]}.", "error")
        return redirect(_page_of(model.name), code=303)
    return _done(_publish_model(model.id), f"Route {route_id} is removed; its cost versions stay in the history.",
                 model.name)


@admin.post("/models/<path:name>/price")
@admin_required
def model_price(name: str):
    model = upstreams.find_model(read_session(), name)
    if model is None:
        return _not_found(name)
    form = PriceForm(prefix="price")
    if not form.validate():
        return _model_page(model, 400, price_form=form)
    at_cost = form.charging.data == "at_cost"
    with write_scope() as db_session:
        upstreams.set_price(db_session, model.name, None if at_cost else form.prices())
    done = ("is charged at cost: each request at its route's cost." if at_cost
            else "is charged a fixed price: the prices given.")
    return _done(_publish_model(model.id), f"Model {model.name} {done}", model.name)


@admin.post("/models/<path:name>/aliases")
@admin_required
def alias_add(name: str):
    model = upstreams.find_model(read_session(), name)
    if model is None:
        return _not_found(name)
    form = AliasForm()
    if not form.validate():
        return _model_page(model, 400, alias_form=form)
    try:
        with write_scope() as db_session:
            upstreams.add_alias(db_session, form.alias.data, model.name)
    except ServiceError as exc:
        form.alias.errors.append(f"{str(exc)[0].upper()}{str(exc)[1:]}.")
        return _model_page(model, 400, alias_form=form)
    return _done(_publish_model(model.id), f"Customers may call {model.name} as {form.alias.data} too.", model.name)


@admin.post("/aliases/<path:alias>/remove")
@admin_required
def alias_remove(alias: str):
    found = upstreams.find_alias(read_session(), alias)
    if found is None:
        return error_page(404, "No such alias", f"There is no alias named “{alias}”.")
    model_name = found.model.name
    settings = context.settings()
    with write_scope() as db_session:
        upstreams.remove_alias(db_session, alias)
    problem = publish_live(settings, lambda _session: publish.unpublish_alias(settings, alias))
    return _done(problem, f"Alias {alias} is removed: customers calling it get 404 within a second.", model_name)
