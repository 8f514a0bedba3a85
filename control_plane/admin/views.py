"""Every page module of the admin console, imported once so their views attach to the blueprint."""
from . import (  # noqa: F401
    accounts,
    audit_log,
    catalog,
    deposits,
    overview,
    price_holds,
    providers,
    signin,
)
