"""`tollgate`: the operator's command line. Settings come from the TOLLGATE_* environment.

A command that changes something commits it to SQL, then publishes it to Redis at once, so a
running gateway sees it within its 1 s caches. Mistakes (unknown email, bad amount) end with a
one-line message and exit status 2; an unreachable Redis or database with status 1.

Every command group is registered here, from the package it belongs to.
"""
from __future__ import annotations

import click
import redis
from sqlalchemy.exc import SQLAlchemyError

from .. import audit, db, logs
from .. import settings as settings_module
from ..crypto import SecretError
from ..deposits import cli as deposits
from ..errors import ServiceError
from . import accounts, admin, audit_log, billing, catalog, documents, operations, prices
from .common import UserMistake


class TollgateGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ServiceError, settings_module.SettingsError, SecretError) as exc:
            raise UserMistake(str(exc)) from None
        except redis.RedisError as exc:
            raise click.ClickException(f"Redis did not answer: {logs.error_summary(exc)}") from None
        except SQLAlchemyError as exc:
            raise click.ClickException(f"database error: {logs.error_summary(exc)}") from None


@click.group(cls=TollgateGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Tollgate: a self-hosted prepaid-credit LLM API gateway."""
    ctx.obj = settings_module.load()
    ctx.call_on_close(db.dispose_engines)
    # Every change a command makes is audited as the OS user's.
    audit.set_actor(audit.cli_actor())
    ctx.call_on_close(lambda: audit.set_actor(None))


for command in (
    operations.up, operations.worker, operations.journal_group, operations.nginx_config, operations.db_group,
    operations.publish_command, operations.demo_command,
    accounts.account, accounts.key, accounts.credit, accounts.balance, admin.admin,
    catalog.provider, catalog.model, catalog.route, catalog.alias, prices.prices, audit_log.audit_command,
    billing.reconcile_command, billing.quarantine, documents.invoice, documents.statement_command,
    deposits.deposit, deposits.deposits, deposits.chain,
):
    main.add_command(command)
