"""Credit expiry (TOLLGATE_CREDIT_EXPIRY_DAYS): each top-up's unused rest expires N days after
it, lots used oldest first; a mail a week before; never more than the live balance; once, also
when run twice at once; Redis and SQL still reconcile. Days are passed as `now`, never slept."""
from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from helpers import redis_balance, sql_balance
from mail_server import MailServer
from sqlalchemy import select, update

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts, notices
from control_plane.billing import credit_expiry, ledger, reconcile
from control_plane.deposits import ledger as deposits
from control_plane.hot import credits, publish, redis_keys
from control_plane.models import Account, LedgerTransaction, Notice

USD = 1_000_000_000
DAY0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def expiring(tollgate_env):
    """Settings with credit expiring after 30 days."""
    return settings_module.load({**tollgate_env, "TOLLGATE_CREDIT_EXPIRY_DAYS": "30"})


@pytest.fixture
def account_id(expiring):
    with db.session_scope(expiring) as session:
        account = accounts.create_account(session, f"expiry-{uuid.uuid4().hex[:12]}@example.com")
    with db.session_scope(expiring) as session:
        publish.publish_account(session, expiring, account.id)
    return account.id


def _dated(session, transactions, day: float) -> None:
    session.execute(update(LedgerTransaction).where(LedgerTransaction.id.in_([t.id for t in transactions]))
                    .values(created_at=DAY0 + timedelta(days=day)))


def _lot(settings, account_id: int, amount: int, day: float, kind: str = "deposit") -> int:
    """A credit of the wallet on that day, applied to Redis as every credit is."""
    with db.session_scope(settings) as session:
        transaction = ledger.credit(session, kind, account_id, amount, f"test:{uuid.uuid4()}", f"Test {kind}")
        _dated(session, [transaction], day)
    with db.session_scope(settings) as session:
        credits.apply_unpublished(session, settings)
    return transaction.id


def _use(settings, redis_client, account_id: int, amount: int, day: float) -> None:
    """Usage on that day, debited in Redis and recorded in SQL as the hot path and the drain do."""
    redis_client.hincrby(_hash(settings, account_id), "bal", -amount)
    with db.session_scope(settings) as session:
        transaction = ledger.post(session, "usage", f"usage:{uuid.uuid4()}", account_id,
                                  [(ledger.wallet(account_id), -amount), (ledger.USAGE, amount)], "Test usage",
                                  published=True)
        _dated(session, [transaction], day)


def _hash(settings, account_id: int) -> str:
    return redis_keys.account(redis_keys.shard_of(account_id, settings.redis_shards), account_id)


def _run(settings, day: float) -> credit_expiry.Report:
    return credit_expiry.run(settings, now=DAY0 + timedelta(days=day))


def _expiries(settings, account_id: int) -> list[tuple[str, int]]:
    """(key, amount taken from the wallet) of each expiry, in ledger order."""
    with db.session_scope(settings) as session:
        return [(transaction.idempotency_key, next(-entry.amount for entry in transaction.entries if entry.amount < 0))
                for transaction in session.scalars(select(LedgerTransaction).where(
                    LedgerTransaction.kind == "expiry", LedgerTransaction.account_id == account_id)
                    .order_by(LedgerTransaction.id))]


def _balances(settings, redis_client, account_id: int) -> tuple[int, int]:
    return sql_balance(settings, account_id), redis_balance(settings, redis_client, account_id)


def test_unset_credit_never_expires(settings, redis_client, account_id):
    _lot(settings, account_id, 100 * USD, 0)
    assert credit_expiry.run(settings, now=DAY0 + timedelta(days=3650)) == credit_expiry.Report()
    assert _expiries(settings, account_id) == []
    assert _balances(settings, redis_client, account_id) == (100 * USD, 100 * USD)


def test_used_up_oldest_first_the_first_top_up_leaves_nothing_to_expire(expiring, redis_client, account_id):
    """$100 on day 0, $50 on day 10, $120 used by day 20: the $100 is used up, $30 of the $50 left."""
    first = _lot(expiring, account_id, 100 * USD, 0)
    second = _lot(expiring, account_id, 50 * USD, 10)
    _use(expiring, redis_client, account_id, 70 * USD, 5)
    _use(expiring, redis_client, account_id, 50 * USD, 20)
    assert _run(expiring, 30).expired_nano == 0
    assert _expiries(expiring, account_id) == []
    report = _run(expiring, 40)
    assert (report.expired_nano, report.lots) == (30 * USD, 1)
    assert _expiries(expiring, account_id) == [(f"expiry:{second}", 30 * USD)]
    assert _balances(expiring, redis_client, account_id) == (0, 0)
    assert first != second


def test_the_oldest_top_up_is_used_first_so_its_rest_expires_first(expiring, redis_client, account_id):
    """$100 on day 0 and $50 on day 10; $30 used on day 5 and $20 on day 15: $50 of the first is
    left on day 30 (not $100: the $50 used came out of it). $10 used on day 35: $40 of the second
    expires on day 40."""
    first = _lot(expiring, account_id, 100 * USD, 0)
    _use(expiring, redis_client, account_id, 30 * USD, 5)
    second = _lot(expiring, account_id, 50 * USD, 10)
    _use(expiring, redis_client, account_id, 20 * USD, 15)
    assert _run(expiring, 29.9).expired_nano == 0
    assert _run(expiring, 30).expired_nano == 50 * USD
    assert _balances(expiring, redis_client, account_id) == (50 * USD, 50 * USD)
    _use(expiring, redis_client, account_id, 10 * USD, 35)
    assert _run(expiring, 40).expired_nano == 40 * USD
    assert _expiries(expiring, account_id) == [(f"expiry:{first}", 50 * USD), (f"expiry:{second}", 40 * USD)]
    assert _balances(expiring, redis_client, account_id) == (0, 0)


def test_an_adjustment_is_used_in_its_turn_and_never_expires(expiring, redis_client, account_id):
    """$20 adjustment on day 0, $100 deposit on day 1, $30 used: the adjustment's $20 and $10 of
    the deposit are used; $90 expires on day 31. A later adjustment of $15 stays."""
    _lot(expiring, account_id, 20 * USD, 0, kind="adjustment")
    deposit = _lot(expiring, account_id, 100 * USD, 1)
    _use(expiring, redis_client, account_id, 30 * USD, 2)
    _lot(expiring, account_id, 15 * USD, 3, kind="adjustment")
    assert _run(expiring, 31).expired_nano == 90 * USD
    assert _run(expiring, 400).expired_nano == 0
    assert _expiries(expiring, account_id) == [(f"expiry:{deposit}", 90 * USD)]
    assert _balances(expiring, redis_client, account_id) == (15 * USD, 15 * USD)


def test_a_top_up_and_its_bonus_expire_each_as_its_own_lot(expiring, redis_client, account_id):
    """A $100 card top-up with the default 5 % bonus: lots of $100 and $5. $50 used: $50 of the
    top-up and the $5 bonus expire."""
    with db.session_scope(expiring) as session:
        posted = deposits.credit_topup(session, expiring, account_id, 100 * USD, "payment:evt_expiry", "Card top-up")
        _dated(session, posted, 0)
    with db.session_scope(expiring) as session:
        credits.apply_unpublished(session, expiring)
    _use(expiring, redis_client, account_id, 50 * USD, 3)
    assert _run(expiring, 30).expired_nano == 55 * USD
    assert sorted(_expiries(expiring, account_id)) == sorted([(f"expiry:{posted[0].id}", 50 * USD),
                                                             (f"expiry:{posted[1].id}", 5 * USD)])
    assert _balances(expiring, redis_client, account_id) == (0, 0)


def test_a_week_before_its_expiry_the_owner_is_mailed_once(tollgate_env, redis_client, account_id):
    server = MailServer().start()
    try:
        expiring = settings_module.load({**tollgate_env, "TOLLGATE_CREDIT_EXPIRY_DAYS": "30",
                                         "TOLLGATE_SMTP_URL": server.url,
                                         "TOLLGATE_PUBLIC_URL": "https://console.example.com"})
        lot = _lot(expiring, account_id, 100 * USD, 0)
        _use(expiring, redis_client, account_id, 12_345_678_901, 1)
        assert _run(expiring, 22.9).notices == 0
        assert _run(expiring, 23).notices == 1
        assert _run(expiring, 24).notices == 0
        assert notices.deliver_pending(expiring) == 1
        with db.session_scope(expiring) as session:
            notice = session.scalar(select(Notice))
            assert (notice.kind, notice.dedupe_key) == ("credit_expiring", f"credit_expiring:{lot}")
            address = notice.to_address
        [mailed] = server.sent_to(address)
        assert mailed["Subject"] == "$87.654321099 of your credit expires on 2025-03-31"
        text = mailed.get_body(preferencelist=("plain",)).get_content()
        assert "this expires on 2025-03-31 12:00 (UTC)" in text
        assert "https://console.example.com/console/billing" in text
    finally:
        server.stop()


def test_the_mail_states_the_account_s_time_zone(expiring, redis_client, account_id):
    with db.session_scope(expiring) as session:
        session.execute(update(Account).where(Account.id == account_id)
                        .values(time_zone="Asia/Tokyo"))
    _lot(expiring, account_id, 100 * USD, 0.125)  # 2025-03-02 00:00 in Tokyo
    assert _run(expiring, 25).notices == 1
    with db.session_scope(expiring) as session:
        assert "this expires on 2025-04-01 00:00 (Asia/Tokyo)" in session.scalar(select(Notice.body))


def test_credit_held_by_requests_in_flight_expires_only_once_they_settle(expiring, redis_client, account_id):
    """$100 on day 0, $30 held by a request in flight on day 30: $70 expires. The request is charged
    $20 (out of the oldest credit): the last $10 expires at the next run."""
    lot = _lot(expiring, account_id, 100 * USD, 0)
    redis_client.hincrby(_hash(expiring, account_id), "held", 30 * USD)
    assert _run(expiring, 30).expired_nano == 70 * USD
    assert _balances(expiring, redis_client, account_id) == (30 * USD, 30 * USD)
    redis_client.hincrby(_hash(expiring, account_id), "held", -30 * USD)
    _use(expiring, redis_client, account_id, 20 * USD, 30)
    assert _run(expiring, 31).expired_nano == 10 * USD
    assert _expiries(expiring, account_id) == [(f"expiry:{lot}", 70 * USD), (f"expiry:{lot}:2", 10 * USD)]
    assert _balances(expiring, redis_client, account_id) == (0, 0)


def test_usage_redis_debited_before_sql_recorded_it_is_not_expired(expiring, redis_client, account_id):
    """Redis has debited $25 of usage the worker has not recorded yet: that is not expired."""
    _lot(expiring, account_id, 100 * USD, 0)
    redis_client.hincrby(_hash(expiring, account_id), "bal", -25 * USD)
    assert _run(expiring, 30).expired_nano == 75 * USD
    assert _balances(expiring, redis_client, account_id) == (25 * USD, 0)


def test_running_again_or_twice_at_once_expires_once(expiring, redis_client, account_id):
    lot = _lot(expiring, account_id, 100 * USD, 0)
    _use(expiring, redis_client, account_id, 1 * USD, 1)
    reports = []
    runs = [threading.Thread(target=lambda: reports.append(_run(expiring, 30))) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sorted(report.expired_nano for report in reports) == [0, 99 * USD]
    assert _run(expiring, 30).expired_nano == 0
    assert _run(expiring, 60).expired_nano == 0
    assert _expiries(expiring, account_id) == [(f"expiry:{lot}", 99 * USD)]
    assert _balances(expiring, redis_client, account_id) == (0, 0)


def test_redis_and_sql_reconcile_after_expiry(expiring, redis_client, account_id):
    _lot(expiring, account_id, 100 * USD, 0)
    _lot(expiring, account_id, 40 * USD, 20)
    _use(expiring, redis_client, account_id, 60 * USD, 25)
    assert _run(expiring, 30).expired_nano == 40 * USD
    with db.read_session(expiring) as session:
        report = reconcile.reconcile(session, expiring)
    assert report.ok, report.as_dict()
    assert _balances(expiring, redis_client, account_id) == (40 * USD, 40 * USD)
