"""`tollgate up|worker|db|publish|demo`: running the services, the schema, and publishing SQL's
state to Redis."""
from __future__ import annotations

import click

from .. import db
from ..hot import republish
from ..ops import demo
from ..settings import Settings
from .common import REPUBLISH_HINT, publish_after


@click.command()
@click.option("--role", type=click.Choice(("all", "control", "gateway")), default="all", show_default=True,
              help="all: everything on this machine. control: the console, the APIs and the worker "
              "(gunicorn on TOLLGATE_CONTROL_LISTEN). gateway: nginx alone, on the shared Redis and "
              "database, passing the console and the APIs to TOLLGATE_CONTROL_PLANE.")
@click.pass_obj
def up(settings: Settings, role: str) -> None:
    """Start Redis, nginx, the control plane and the worker in the foreground (or a role's share)."""
    from ..ops import supervisor

    raise SystemExit(supervisor.run(settings, role))


@click.command("nginx-config")
@click.option("--openresty/--debian-nginx", default=None,
              help="Render for OpenResty (Lua built in) or Debian's nginx with its Lua module "
              "(default: whichever is installed here).")
@click.pass_obj
def nginx_config(settings: Settings, openresty: bool | None) -> None:
    """Render the gateway's nginx configuration into TOLLGATE_HOME/nginx (what `tollgate up` runs
    nginx with) for an nginx started elsewhere, such as the docker-compose gateway."""
    from ..ops import nginx_conf

    click.echo(nginx_conf.render(settings, openresty))


@click.group("journal")
def journal_group() -> None:
    """The gateway's usage journal (records nginx wrote to disk besides Redis)."""


@journal_group.command("replay")
@click.option("--follow", is_flag=True, help="Keep replaying every few seconds (a gateway node's "
              "`tollgate up --role gateway` runs this) until SIGTERM / Ctrl-C.")
@click.pass_obj
def journal_replay(settings: Settings, follow: bool) -> None:
    """Settle again the journaled usage records that never reached Redis or that it lost."""
    from ..ops import worker as usage_worker

    replayed = usage_worker.replay_journal(settings, follow)
    if not follow:
        click.echo(f"replayed {replayed} journaled usage records")


@click.command()
@click.option("--consumer", help="Name in the usage streams' consumer group (default: host-pid). A worker "
              "started again under its predecessor's name records at once what that one had read.")
@click.pass_obj
def worker(settings: Settings, consumer: str | None) -> None:
    """Drain usage into SQL and keep Redis in step (until SIGTERM / Ctrl-C)."""
    from ..ops import worker as usage_worker

    usage_worker.run(settings, consumer)


@click.group("db")
def db_group() -> None:
    """The SQL schema."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Migrate the database to the current schema."""
    db.upgrade(settings)
    click.echo("database schema is up to date")


@click.command("publish")
@click.pass_obj
def publish_command(settings: Settings) -> None:
    """Publish everything in SQL to Redis (after Redis lost its data, for instance)."""
    with db.session_scope(settings) as session:
        republish.publish_all(session, settings)
    click.echo("published providers, models, balances and keys to Redis")


@click.command("demo")
@click.pass_obj
def demo_command(settings: Settings) -> None:
    """Create the demo account, sandbox models and key; prints the key on the last line."""
    with db.session_scope(settings) as session:
        plaintext = demo.ensure_demo(session, settings, settings.base_url)
    publish_after(settings, lambda session: republish.publish_all(session, settings), REPUBLISH_HINT)
    click.echo(f"demo account {demo.DEMO_EMAIL} is ready (sandbox models at {settings.base_url}/v1); its key:")
    click.echo(plaintext)
