"""The Deposits page (/admin/deposits): every on-chain deposit, newest first, by chain and state,
with its confirmations; and a rescan from a block.

A deposit's state is its status as the admin reads it: seen and confirmed are *pending*, then
*credited*, *below minimum* (waiting for the account's next deposits) or *orphaned* (a re-org
took its block). Its confirmations are the blocks its chain's watcher has scanned from the
deposit's block on (the cursor, deposits/cursors.py, against its block number).

A rescan moves a chain's cursor back to a block, so the chain's watcher scans from there again
at its next round. Deposits are recorded and credited once per (chain, tx hash, log index), so a
rescan finds what it finds and credits nothing twice. It is audited (action "rescan", entity
"chain_cursor", the cursor before and after), and that entry is also its progress: the rescan is
done when the cursor is back where it was when it was asked for. The admin API's deposit
endpoints (api/admin_ops.py) read and rescan through this module too.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from flask import flash, jsonify, redirect, render_template, request
from flask_wtf import FlaskForm
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from wtforms import IntegerField, SelectField
from wtforms.validators import InputRequired, NumberRange

from .. import audit
from ..billing.usage_log import FilterError
from ..console.paging import below_above, keyset_page
from ..deposits.api import deposit_item as customer_item
from ..models import DEPOSIT_CHAINS, Account, AuditEntry, ChainCursor, Deposit, utc_timestamp
from . import admin
from .sessions import admin_required, read_session, write_scope

# state -> the statuses it stands for (models.DEPOSIT_STATUSES), and how the page names it.
STATES = {"pending": ("seen", "confirmed"), "credited": ("credited",), "below_minimum": ("below_minimum",),
          "orphaned": ("orphaned",)}
STATE_LABELS = {"pending": "pending", "credited": "credited", "below_minimum": "below minimum",
                "orphaned": "orphaned"}
STATE_OF = {status: state for state, statuses in STATES.items() for status in statuses}
MAX_BLOCK = 2**63 - 1


class RescanRefused(ValueError):
    """A rescan that cannot be made (the message says why)."""


@dataclass(frozen=True)
class DepositFilters:
    chain: str = ""
    state: str = ""

    def params(self) -> dict[str, str]:
        """The filters as query parameters (only those set), for links that keep them."""
        return {name: value for name, value in (("chain", self.chain), ("state", self.state)) if value}


def parse_filters(args: Mapping[str, str]) -> DepositFilters:
    """The filters of a request's query parameters; FilterError if one is not valid."""
    chain, state = (args.get("chain") or "").strip().lower(), (args.get("state") or "").strip().lower()
    if chain and chain not in DEPOSIT_CHAINS:
        raise FilterError("chain", f"one of {', '.join(DEPOSIT_CHAINS)}")
    if state and state not in STATES:
        raise FilterError("state", f"one of {', '.join(STATES)}")
    return DepositFilters(chain, state)


def deposits_query(filters: DepositFilters) -> Select:
    """The deposits the filters select, each with its account's email (order and paging are the
    caller's, by Deposit.id)."""
    query = select(Deposit, Account.email).join(Account, Account.id == Deposit.account_id)
    if filters.chain:
        query = query.where(Deposit.chain == filters.chain)
    if filters.state:
        query = query.where(Deposit.status.in_(STATES[filters.state]))
    return query


def chain_cursors(session: Session) -> dict[str, ChainCursor]:
    return {cursor.chain: cursor for cursor in session.scalars(select(ChainCursor).order_by(ChainCursor.chain))}


def confirmations(deposit: Deposit, cursors: Mapping[str, ChainCursor]) -> int:
    """The blocks the chain's watcher has scanned from the deposit's block on (0: not yet past it)."""
    cursor = cursors.get(deposit.chain)
    return 0 if cursor is None else max(0, cursor.next_block - deposit.block_number)


def deposit_item(deposit: Deposit, email: str, cursors: Mapping[str, ChainCursor]) -> dict:
    """A deposit as the admin API shows it."""
    return {**customer_item(deposit), "account_id": deposit.account_id, "email": email,
            "state": STATE_OF[deposit.status], "confirmations": confirmations(deposit, cursors)}


@dataclass(frozen=True)
class Rescan:
    """A chain's newest rescan, as its audit entry asked for it, against its cursor now."""

    chain: str
    from_block: int
    target: int  # where the cursor was when it was asked for: every block below had been scanned
    at: int  # the cursor now
    asked_at: datetime
    actor: str

    @property
    def total(self) -> int:
        return max(0, self.target - self.from_block)

    @property
    def scanned(self) -> int:
        return min(self.total, max(0, self.at - self.from_block))

    @property
    def done(self) -> bool:
        return self.scanned >= self.total

    @property
    def percent(self) -> int:
        return 100 if not self.total else self.scanned * 100 // self.total

    def describe(self) -> str:
        blocks = f"blocks {self.from_block} to {self.target - 1}"
        if self.done:
            return f"Done: {blocks} scanned again."
        return f"Scanning {blocks} again: below block {self.at}, {self.percent} %."

    def as_dict(self) -> dict:
        return {"chain": self.chain, "from_block": self.from_block, "target_block": self.target,
                "next_block": self.at, "blocks": self.total, "blocks_scanned": self.scanned, "done": self.done,
                "percent": self.percent, "text": self.describe(), "asked_at": utc_timestamp(self.asked_at),
                "asked_by": self.actor}


def rescans(session: Session, cursors: Mapping[str, ChainCursor]) -> dict[str, Rescan]:
    """The newest rescan of each chain that has a cursor, by chain."""
    found = {}
    for chain, cursor in cursors.items():
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.entity == "chain_cursor", AuditEntry.entity_id == chain,
                                     AuditEntry.action == "rescan").order_by(AuditEntry.id.desc()).limit(1)).first()
        if entry is not None:
            found[chain] = Rescan(chain, json.loads(entry.after)["next_block"], json.loads(entry.before)["next_block"],
                                  cursor.next_block, entry.created_at, entry.actor)
    return found


def rescan(session: Session, chain: str, from_block: int) -> tuple[int, int]:
    """Move the chain's cursor back to from_block (audited); (the cursor before, after)."""
    if chain not in DEPOSIT_CHAINS:
        raise RescanRefused(f"There is no chain {chain!r}: it is one of {', '.join(DEPOSIT_CHAINS)}.")
    if not 0 <= from_block <= MAX_BLOCK:
        raise RescanRefused(f"The block must be a number from 0 to {MAX_BLOCK}.")
    cursor = session.get(ChainCursor, chain, with_for_update=True)
    if cursor is None:
        raise RescanRefused(f"{chain} has not been scanned yet: its watcher starts at its start block by itself.")
    before = cursor.next_block
    if from_block >= before:
        raise RescanRefused(f"{chain} is scanned below block {before} only: blocks from {from_block} on are "
                            "not scanned yet, and its watcher scans them anyway.")
    cursor.next_block = from_block
    session.flush()
    audit.record(session, "rescan", "chain_cursor", chain, before={"next_block": before},
                 after={"next_block": from_block})
    return before, from_block


class RescanForm(FlaskForm):
    chain = SelectField("Chain", choices=list(DEPOSIT_CHAINS), validators=[InputRequired()])
    from_block = IntegerField("From block", validators=[InputRequired(message="Give the first block to scan again."),
                                                        NumberRange(min=0, max=MAX_BLOCK)])


def _page(form: RescanForm, status: int = 200):
    session = read_session()
    try:
        filters, error = parse_filters(request.args), None
    except FilterError as exc:
        filters, error = DepositFilters(), str(exc)
    cursors = chain_cursors(session)
    page = None if error else keyset_page(session, below_above(deposits_query(filters), Deposit.id), Deposit.id)
    return render_template("admin/deposits.html", nav="deposits", page=page, filters=filters, error=error,
                           cursors=cursors, rescans=rescans(session, cursors), form=form, states=STATE_LABELS,
                           state_of=STATE_OF, chains=DEPOSIT_CHAINS, confirmations=confirmations,
                           ), 400 if error else status


@admin.get("/deposits")
@admin_required
def deposits():
    return _page(RescanForm())


@admin.post("/deposits/rescan")
@admin_required
def deposits_rescan():
    form = RescanForm()
    if not form.validate():
        return _page(form, 400)
    try:
        with write_scope() as session:
            before, after = rescan(session, form.chain.data, form.from_block.data)
    except RescanRefused as exc:
        form.from_block.errors.append(str(exc))
        return _page(form, 400)
    flash(f"{form.chain.data}: its watcher scans again from block {after} up to block {before - 1} and on, "
          "crediting only deposits it had not credited.", "success")
    return redirect("/admin/deposits#rescans", code=303)


@admin.get("/deposits/rescans.json")
@admin_required
def deposits_rescans():
    """The rescans' progress, for the page to follow while they run."""
    session = read_session()
    return jsonify([found.as_dict() for found in rescans(session, chain_cursors(session)).values()])
