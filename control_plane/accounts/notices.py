"""The notices outbox: alert mails to account owners (a low balance, a key near its limit, a
deposit seen or credited, credit about to expire).

Whoever decides that a mail is due queues it with `queue`, in the same SQL transaction as the
decision, so a rolled-back decision mails nothing and a committed one is never lost. Each notice
has a dedupe key (unique), so the same event is queued at most once, however often or however
concurrently it is seen. The worker sends them with `deliver_pending`, after the commit: oldest
first, retried on an SMTP failure after a growing delay, given up after MAX_ATTEMPTS.

Claiming: a sender first takes a notice by raising its attempt count from the value it read
(compare-and-set, committed at once), and only the one whose update changed the row sends it. The
higher count also puts the notice's next attempt RETRY_AFTER_SECONDS later, so a second worker does
not see it as due while the first is sending. A process that dies between the claim and the
record has used an attempt; the notice is sent at a later one.

Links to the console are written as `console_link(path)` and given the console's address
(settings.console_base_url) when the mail is sent, so no caller needs the settings to queue one.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from .. import db, mail
from ..models import Account, Notice, utcnow
from ..settings import Settings

log = logging.getLogger(__name__)

# Seconds after a notice was queued at which its attempt n (from 0) is due: at once, then after
# 5 and 15 minutes, 1, 3, 6, 12 and 24 hours. After the last, it is given up (kept, unsent).
RETRY_AFTER_SECONDS = (0, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600)
MAX_ATTEMPTS = len(RETRY_AFTER_SECONDS)
PAGE = 100
MAX_ERROR = Notice.__table__.c.last_error.type.length
MAX_SUBJECT = Notice.__table__.c.subject.type.length
CONSOLE = "{console}"


def console_link(path: str) -> str:
    """A link to a console page ("/console/billing") in a notice's body."""
    return CONSOLE + path


def queue(session: Session, account: Account, kind: str, dedupe_key: str, subject: str, body: str) -> Notice | None:
    """Queue a mail to the account's address once per dedupe_key; None when that key was queued
    before (in this transaction, an earlier one or a concurrent one)."""
    statement = (
        db.upsert(session, Notice.__table__)
        .values(account_id=account.id, kind=kind, dedupe_key=dedupe_key, to_address=account.email,
                subject=subject[:MAX_SUBJECT], body=body)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Notice.__table__.c.id)
    )
    notice_id = session.scalar(statement)
    return None if notice_id is None else session.get(Notice, notice_id)


def deliver_pending(settings: Settings, now: datetime | None = None) -> int:
    """Send the notices due now, oldest first; how many were sent. An SMTP failure is recorded
    on the notice (its attempts and the error, which names no secret) and retried later."""
    now = now or utcnow()
    sent = 0
    after = 0
    while True:
        with db.read_session(settings) as session:
            page = session.execute(
                select(Notice.id, Notice.attempts).where(Notice.id > after, _due(now)).order_by(Notice.id).limit(PAGE)
            ).all()
        for notice_id, attempts in page:
            sent += _deliver(settings, notice_id, attempts, now)
        if len(page) < PAGE:
            return sent
        after = page[-1].id


def _due(now: datetime):
    """Unsent, not given up, and its next attempt's time has come."""
    return and_(Notice.sent_at.is_(None), or_(*(
        and_(Notice.attempts == attempts, Notice.created_at <= now - timedelta(seconds=delay))
        for attempts, delay in enumerate(RETRY_AFTER_SECONDS))))


def _deliver(settings: Settings, notice_id: int, attempts: int, now: datetime) -> bool:
    with db.session_scope(settings) as session:
        claimed = session.execute(
            update(Notice).where(Notice.id == notice_id, Notice.sent_at.is_(None), Notice.attempts == attempts)
            .values(attempts=attempts + 1)
        ).rowcount
        notice = session.get(Notice, notice_id) if claimed else None
    if notice is None:
        return False  # another sender has it
    try:
        mail.send(settings, notice.to_address, notice.subject, notice.body.replace(CONSOLE, settings.console_base_url))
    except mail.MailError as exc:
        if attempts + 1 == MAX_ATTEMPTS:
            log.error("gave up mailing notice %s (%s) to %s after %s attempts: %s", notice.id, notice.kind,
                      notice.to_address, MAX_ATTEMPTS, exc)
        with db.session_scope(settings) as session:
            session.execute(update(Notice).where(Notice.id == notice_id).values(last_error=str(exc)[:MAX_ERROR]))
        return False
    with db.session_scope(settings) as session:
        session.execute(update(Notice).where(Notice.id == notice_id).values(sent_at=utcnow(), last_error=""))
    return True
