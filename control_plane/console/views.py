"""Every page module of the console, imported once so their views attach to the blueprints."""
from . import (  # noqa: F401
    account_settings,
    billing,
    dashboard,
    keys,
    models_page,
    request_log,
    signin,
    topup,
    transactions,
)
