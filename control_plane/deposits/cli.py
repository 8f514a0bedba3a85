"""`tollgate deposit address`, `tollgate deposits list`, `tollgate chain scan|watch` (registered by
control_plane/cli/main.py)."""
from __future__ import annotations

import contextlib
import sys

import click
from sqlalchemy import select

from .. import db, exact_json
from ..accounts import accounts
from ..cli.common import UserMistake
from ..errors import ServiceError
from ..models import DEPOSIT_STATUSES, Account, Deposit
from ..money import format_usd, nano_to_decimal
from ..settings import Settings
from . import addresses
from .tokens import CHAINS


@click.group()
def deposit() -> None:
    """A customer's on-chain deposits."""


@deposit.command("address")
@click.argument("email")
@click.option("--chain", type=click.Choice(CHAINS), help="Only this chain's address (alone on its line).")
@click.pass_obj
def deposit_address(settings: Settings, email: str, chain: str | None) -> None:
    """The account's USDT deposit address(es), derived watch-only from the configured xpubs."""
    with db.session_scope(settings) as session:
        owner = accounts.require_by_email(session, email)
        if chain is not None:
            click.echo(addresses.address_for(session, settings, owner.id, chain).address)
            return
        shown = []
        for name in CHAINS:
            try:
                shown.append((name, addresses.address_for(session, settings, owner.id, name).address))
            except ServiceError as exc:
                click.echo(f"{name:<8} - ({exc})", err=True)
    if not shown:
        raise UserMistake("no deposit chain is configured: set TOLLGATE_XPUB_TRON and/or TOLLGATE_XPUB_EVM")
    for name, address in shown:
        click.echo(f"{name:<8} {address}")


@click.group()
def deposits() -> None:
    """On-chain deposits of every account."""


@deposits.command("list")
@click.option("--email", help="Only this account's deposits.")
@click.option("--status", type=click.Choice(DEPOSIT_STATUSES), help="Only deposits in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON array instead of a table.")
@click.pass_obj
def deposits_list(settings: Settings, email: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Newest first."""
    with db.read_session(settings) as session:
        statement = select(Deposit, Account.email).join(Account, Deposit.account_id == Account.id)
        if email is not None:
            statement = statement.where(Deposit.account_id == accounts.require_by_email(session, email).id)
        if status is not None:
            statement = statement.where(Deposit.status == status)
        rows = session.execute(statement.order_by(Deposit.id.desc()).limit(limit)).all()
    if as_json:
        click.echo(exact_json.dumps([
            {"id": row.id, "email": owner, "chain": row.chain, "tx_hash": row.tx_hash, "log_index": row.log_index,
             "token_contract": row.token_contract, "amount_base_units": str(row.amount),
             "amount": nano_to_decimal(row.amount_nano), "amount_nano": row.amount_nano,
             "block_number": row.block_number, "block_hash": row.block_hash, "status": row.status,
             "transaction_id": row.transaction_id, "created_at": row.created_at.isoformat()}
            for row, owner in rows
        ]))
        return
    for row, owner in rows:
        click.echo(f"{row.id:>6} {row.created_at:%Y-%m-%d %H:%M} {row.chain:<8} {row.status:<13} "
                   f"{format_usd(row.amount_nano):>16} {owner:<32} {row.tx_hash}:{row.log_index}")
    click.echo(f"{len(rows)} deposits", err=True)


@click.group()
def chain() -> None:
    """Deposit chain watchers (TRON, BSC, Polygon)."""


@chain.command("scan")
@click.option("--chain", "chain_name", type=click.Choice(CHAINS), required=True)
@click.option("--from-block", type=click.IntRange(0), help="First block (default: the chain's cursor). A rescan "
              "credits nothing twice and never moves the cursor back.")
@click.option("--to-block", type=click.IntRange(0), help="Last block (default: the newest).")
@click.pass_obj
def chain_scan(settings: Settings, chain_name: str, from_block: int | None, to_block: int | None) -> None:
    """Scan a chain once for deposits and credit the confirmed ones; a progress bar on stderr."""
    from .chain_watch import node_errors, scanner

    with contextlib.ExitStack() as stack:
        bars = []

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(click.progressbar(
                    length=total, label=f"{chain_name} blocks", show_pos=True, file=sys.stderr)))
            bars[0].update(done - bars[0].pos)

        try:
            report = scanner(settings, chain_name)(from_block=from_block, to_block=to_block, progress=progress)
        except node_errors(chain_name) as exc:
            raise click.ClickException(f"{chain_name}: the node did not answer ({exc}); the cursor stays, "
                                       "scan again later") from None
    click.echo(f"{chain_name}: blocks {report.from_block}..{report.to_block}: {report.found} new deposits, "
               f"{report.credited} credited, {report.orphaned} orphaned")


@chain.command("watch")
@click.pass_obj
def chain_watch(settings: Settings) -> None:
    """Scan every configured chain every TOLLGATE_CHAIN_POLL_SECONDS (until SIGTERM / Ctrl-C)."""
    from . import chain_watch as watcher

    watcher.run(settings)
