"""What every `tollgate` command group shares: the USD parameter type, the mistake that exits
with status 2, and publishing a committed change to Redis."""
from __future__ import annotations

import click
import redis

from .. import db, logs
from ..errors import ServiceError
from ..money import format_usd, usd_to_nano
from ..settings import Settings

REPUBLISH_HINT = "run `tollgate publish` once Redis answers"
WORKER_HINT = "the worker applies it once Redis answers"


class UserMistake(click.ClickException):
    exit_code = 2


class UsdAmount(click.ParamType):
    """Decimal USD text ('12.5', '-3') as integer nano-USD; never through a float. Bounded by the
    64-bit columns that store it."""

    name = "usd"
    limit = 2**63 - 1

    def convert(self, value, param, ctx):
        try:
            nano = usd_to_nano(value)
        except (ValueError, ArithmeticError) as exc:  # decimal.Overflow for '1e999999999'
            self.fail(str(exc) if isinstance(exc, ValueError) else f"not a USD amount: {value!r}", param, ctx)
        if abs(nano) > self.limit:
            self.fail(f"{value!r} is beyond ±{format_usd(self.limit)}", param, ctx)
        return nano


USD = UsdAmount()


def echo_password_link(settings: Settings, account) -> None:
    """Print the one-time link at which the owner of a new account sets its password."""
    from ..accounts import links

    link = links.make_link(settings, links.SET_PASSWORD, account)
    days = links.SET_PASSWORD.max_age // 86400
    click.echo(f"its owner sets a console password at (works once, within {days} days): {link}")


def publish_after(settings: Settings, publish, hint: str) -> None:
    """Run publish(session) after the change is committed; if Redis cannot take it, say so."""
    try:
        with db.session_scope(settings) as session:
            publish(session)
    except (redis.RedisError, ServiceError) as exc:
        raise click.ClickException(f"saved, but not live yet: {logs.error_summary(exc)}; {hint}") from None
