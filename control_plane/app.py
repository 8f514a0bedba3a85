"""The Flask control plane, served by gunicorn behind nginx (`control_plane.app:create_app()`)."""
from __future__ import annotations

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from . import admin, api, audit, console, exact_json, logs
from . import settings as settings_module
from .deposits import api as deposits_api
from .ops.metrics import metrics


class ExactJSONProvider(DefaultJSONProvider):
    """Responses render money Decimals as exact JSON numbers."""

    def dumps(self, obj, **_kwargs) -> str:
        return exact_json.dumps(obj)


def _visitor_actor() -> None:
    """Until a view knows better (a signed-in customer or admin, an admin key), changes a request
    makes are audited as a visitor's from its address."""
    audit.set_actor(audit.Actor("visitor", "web", ip=request.remote_addr))


def create_app(test_config: dict | None = None) -> Flask:
    """test_config may carry TOLLGATE_SETTINGS (a Settings); otherwise they come from the
    TOLLGATE_* environment."""
    app = Flask(__name__)
    # Routing never answers with a redirect: Werkzeug would write its Location from the request's
    # Host, which a client chooses. A path with `//` is a 404; a trailing slash more or less than
    # the route's matches it in place.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.url_map.redirect_defaults = False
    app.config.from_mapping(TOLLGATE_SETTINGS=None)
    if test_config is not None:
        app.config.update(test_config)
    if app.config["TOLLGATE_SETTINGS"] is None:
        app.config["TOLLGATE_SETTINGS"] = settings_module.load()
    if not app.testing:
        logs.configure(app.config["TOLLGATE_SETTINGS"].log_level)
    # nginx is the one proxy in front and sets X-Forwarded-For / -Proto / -Host / -Port itself
    # (proxy/control-plane.conf), dropping the client's; no prefix is trusted.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=0)
    app.json = ExactJSONProvider(app)
    app.register_blueprint(api.api)  # /api/healthz, /api/v1/…
    app.register_blueprint(deposits_api.topups, url_prefix="/api/v1")
    app.register_blueprint(deposits_api.webhooks, url_prefix="/api/v1/webhooks")
    console.register(app)  # /console/…, /models
    admin.register(app)  # /admin/…
    app.register_blueprint(metrics)  # /metrics: nginx serves it as /metrics/control-plane
    app.before_request(_visitor_actor)
    app.teardown_request(lambda _exc: audit.set_actor(None))
    api.handle_errors(app)
    return app
