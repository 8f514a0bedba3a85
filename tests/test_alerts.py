"""Alert mails through the notices outbox, received by a real SMTP server: a balance below its
threshold and a key at 80 % / 100 % of its limit, each once per crossing; a deposit seen and
credited once each; an SMTP failure retried later, never lost and never sent twice."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from harness import free_port
from mail_server import MailServer
from mail_server import text_of as raw_text
from sqlalchemy import select, update

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import alerts, notices
from control_plane.billing import ledger
from control_plane.deposits import ledger as deposits
from control_plane.hot import publish, redis_keys
from control_plane.models import Account, ApiKey, Deposit, Notice, utcnow

PUBLIC_URL = "https://console.example.com"
TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
USD = 1_000_000_000


@pytest.fixture(scope="module")
def mail_server():
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture
def mailing(tollgate_env, mail_server):
    """Settings that mail through the test SMTP server, with links on PUBLIC_URL."""
    return settings_module.load({**tollgate_env, "TOLLGATE_SMTP_URL": mail_server.url,
                                 "TOLLGATE_PUBLIC_URL": PUBLIC_URL})


@pytest.fixture
def owner(make_customer):
    """A customer with $10 and a key without a limit, at an address no other test mails."""
    return make_customer(email=f"alerts-{uuid.uuid4().hex[:12]}@example.com", deposit_usd="10")


def _spend(settings, account_id: int, amount: int) -> None:
    with db.session_scope(settings) as session:
        ledger.post(session, "usage", f"usage:{uuid.uuid4()}", account_id,
                    [(ledger.wallet(account_id), -amount), (ledger.USAGE, amount)], "Test usage", published=True)


def _credit(settings, account_id: int, amount: int) -> None:
    with db.session_scope(settings) as session:
        ledger.credit(session, "adjustment", account_id, amount, f"test:{uuid.uuid4()}", "Test credit")


def text_of(message) -> str:
    return raw_text(message).replace("\r\n", "\n")


def _check(settings) -> int:
    with db.session_scope(settings) as session:
        return alerts.check(session, settings)


def _subjects(mail_server, address) -> list[str]:
    return [message["Subject"] for message in mail_server.sent_to(address)]


def test_the_balance_alert_mails_once_per_crossing_down(mailing, mail_server, owner):
    address, account_id = owner.account.email, owner.account.id
    with db.session_scope(mailing) as session:
        alerts.set_balance_alert(session, session.get(Account, account_id), 5 * USD)
    _spend(mailing, account_id, 4 * USD)  # $6 left: above the threshold
    assert _check(mailing) == 0
    for _ in range(3):  # $5 (not below), $4, $3: one crossing
        _spend(mailing, account_id, 1 * USD)
        _check(mailing)
        notices.deliver_pending(mailing)
    [mailed] = mail_server.sent_to(address)
    assert mailed["Subject"] == "Your balance is below $5.00"
    assert "Your balance is $4.00, below the alert threshold of $5.00" in text_of(mailed)
    assert f"{PUBLIC_URL}/console/billing" in text_of(mailed) and "{console}" not in text_of(mailed)

    _credit(mailing, account_id, 2 * USD)  # $5, at the threshold: re-armed, without a mail
    assert _check(mailing) == 0
    with db.session_scope(mailing) as session:
        assert session.get(Account, account_id).balance_alert_sent is False
    _spend(mailing, account_id, 1 * USD + 500_000_000)  # $3.50: crossed again
    assert _check(mailing) == 1
    assert _check(mailing) == 0
    assert notices.deliver_pending(mailing) == 1
    assert len(mail_server.sent_to(address)) == 2
    assert "Your balance is $3.50" in text_of(mail_server.sent_to(address)[1])


def test_no_threshold_no_balance_mail(mailing, mail_server, owner):
    _spend(mailing, owner.account.id, 9 * USD)
    assert _check(mailing) == 0
    with db.session_scope(mailing) as session:
        alerts.set_balance_alert(session, session.get(Account, owner.account.id), 2 * USD)
        alerts.set_balance_alert(session, session.get(Account, owner.account.id), None)
    assert _check(mailing) == 0


def test_a_threshold_set_above_the_balance_mails_at_the_next_check(mailing, mail_server, owner):
    with db.session_scope(mailing) as session:
        alerts.set_balance_alert(session, session.get(Account, owner.account.id), 20 * USD)
    assert _check(mailing) == 1
    with db.session_scope(mailing) as session:  # saving the same threshold again arms nothing
        alerts.set_balance_alert(session, session.get(Account, owner.account.id), 20 * USD)
    assert _check(mailing) == 0
    notices.deliver_pending(mailing)
    assert _subjects(mail_server, owner.account.email) == ["Your balance is below $20.00"]


def _set_spent(settings, redis_client, customer, spent: int) -> None:
    name = redis_keys.key_state(customer.shard(settings), customer.key.id)
    redis_client.hset(name, "spent", spent)


def _set_limit(settings, key_id: int, limit: int) -> None:
    with db.session_scope(settings) as session:
        key = session.get(ApiKey, key_id)
        key.limit_nano = limit
        session.flush()
        publish.publish_key(session, settings, key)


def _alerted(settings, key_id: int) -> int:
    with db.session_scope(settings) as session:
        return session.get(ApiKey, key_id).limit_alert_percent


def test_a_key_mails_at_80_and_at_100_percent_once_each_and_a_raised_limit_rearms(
        mailing, mail_server, redis_client, make_customer):
    customer = make_customer(email=f"keys-{uuid.uuid4().hex[:12]}@example.com", deposit_usd="50", limit_usd="10")
    address = customer.account.email
    _set_spent(mailing, redis_client, customer, 7_999_999_999)
    assert (_check(mailing), _alerted(mailing, customer.key.id)) == (0, 0)
    for spent in (8 * USD, 9 * USD):
        _set_spent(mailing, redis_client, customer, spent)
        _check(mailing)
    assert _alerted(mailing, customer.key.id) == 80
    for spent in (10 * USD, 10 * USD):
        _set_spent(mailing, redis_client, customer, spent)
        _check(mailing)
    assert _alerted(mailing, customer.key.id) == 100
    notices.deliver_pending(mailing)
    first, second = mail_server.sent_to(address)
    assert first["Subject"] == 'API key "test key" (' + customer.plaintext[:10] + "…) has used 80% of its spend limit"
    assert "has spent $8.00 of its $10.00 spend limit (80%)" in text_of(first)
    assert "has spent $10.00 of its $10.00 spend limit (100%)" in text_of(second)
    assert f"{PUBLIC_URL}/console/keys" in text_of(second)
    for message in (first, second):
        assert customer.plaintext not in text_of(message) and customer.plaintext not in message["Subject"]

    _set_limit(mailing, customer.key.id, 20 * USD)  # $10 of $20: re-armed, without a mail
    assert (_check(mailing), _alerted(mailing, customer.key.id)) == (0, 0)
    _set_spent(mailing, redis_client, customer, 16 * USD)
    assert (_check(mailing), _alerted(mailing, customer.key.id)) == (1, 80)
    notices.deliver_pending(mailing)
    assert len(mail_server.sent_to(address)) == 3
    assert "has spent $16.00 of its $20.00 spend limit (80%)" in text_of(mail_server.sent_to(address)[2])


def test_a_revoked_key_and_a_key_without_a_limit_are_not_mailed(mailing, redis_client, make_customer, owner):
    limited = make_customer(email=f"revoked-{uuid.uuid4().hex[:12]}@example.com", limit_usd="1")
    with db.session_scope(mailing) as session:
        session.get(ApiKey, limited.key.id).status = "revoked"
    _set_spent(mailing, redis_client, limited, 2 * USD)
    _set_spent(mailing, redis_client, owner, 100 * USD)
    assert _check(mailing) == 0


def _record(settings, account_id: int, status: str) -> int:
    with db.session_scope(settings) as session:
        return deposits.record_deposit(
            session, chain="tron", tx_hash="c0ffee01", log_index=0, account_id=account_id, token_contract=TRON_USDT,
            amount=25_500_000, block_number=100, block_hash="b" * 64, status=status).id


def test_a_deposit_seen_twice_and_credited_twice_mails_once_each(mailing, mail_server, owner):
    deposit_id = _record(mailing, owner.account.id, "seen")
    assert _record(mailing, owner.account.id, "seen") == deposit_id
    with db.session_scope(mailing) as session:
        session.execute(update(Deposit).where(Deposit.id == deposit_id).values(status="confirmed"))
    assert len(deposits.credit_and_publish(mailing, deposit_id)) == 1
    assert deposits.credit_and_publish(mailing, deposit_id) == []
    assert notices.deliver_pending(mailing) == 2
    assert notices.deliver_pending(mailing) == 0
    seen, credited = mail_server.sent_to(owner.account.email)
    assert seen["Subject"] == "Deposit of $25.50 seen on tron"
    assert "USDT deposit of $25.50 on tron (tx c0ffee01)" in text_of(seen)
    assert credited["Subject"] == "$25.50 credited to your balance"
    assert "USDT deposit on tron: $25.50 (tx c0ffee01)" in text_of(credited)


def test_a_card_topup_with_its_bonus_mails_once(mailing, mail_server, owner):
    for _ in range(2):
        with db.session_scope(mailing) as session:
            deposits.credit_topup(session, mailing, owner.account.id, 100 * USD, "payment:evt_alerts",
                                  "Card top-up: $100.00")
    assert notices.deliver_pending(mailing) == 1
    [credited] = mail_server.sent_to(owner.account.email)
    assert credited["Subject"] == "$105.00 credited to your balance"  # the default 5 % tier at $100
    assert "Card top-up: $100.00\nTop-up bonus 5% on $100.00" in text_of(credited)


def test_a_notice_is_queued_once_per_dedupe_key(mailing, owner):
    with db.session_scope(mailing) as session:
        account = session.get(Account, owner.account.id)
        first = notices.queue(session, account, "balance_low", "test:once", "Subject", "Body")
        assert first is not None and first.to_address == owner.account.email
        assert notices.queue(session, account, "balance_low", "test:once", "Other", "Other") is None
    with db.session_scope(mailing) as session:
        assert notices.queue(session, session.get(Account, owner.account.id), "balance_low", "test:once", "S",
                             "B") is None
        assert session.scalars(select(Notice.subject)).all() == ["Subject"]


def test_a_failing_smtp_server_is_retried_later_never_lost_never_doubled(tollgate_env, mailing, mail_server, owner):
    down = settings_module.load({**tollgate_env, "TOLLGATE_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
    with db.session_scope(mailing) as session:
        notices.queue(session, session.get(Account, owner.account.id), "balance_low", "test:retry", "Retried",
                      "Body\n")
    assert notices.deliver_pending(down) == 0
    with db.session_scope(mailing) as session:
        notice = session.scalar(select(Notice))
        assert (notice.attempts, notice.sent_at) == (1, None)
        assert notice.last_error == f"could not send mail through smtp://127.0.0.1:{down.smtp_url.rsplit(':', 1)[1]}"
    assert notices.deliver_pending(mailing) == 0  # not due yet: the next attempt is 5 minutes on
    later = utcnow() + timedelta(minutes=6)
    assert notices.deliver_pending(mailing, now=later) == 1
    assert notices.deliver_pending(mailing, now=later + timedelta(days=2)) == 0
    assert _subjects(mail_server, owner.account.email) == ["Retried"]
    with db.session_scope(mailing) as session:
        notice = session.scalar(select(Notice))
        assert (notice.attempts, notice.last_error, notice.sent_at is not None) == (2, "", True)


def test_a_notice_is_given_up_after_its_last_attempt(tollgate_env, mailing, owner):
    down = settings_module.load({**tollgate_env, "TOLLGATE_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
    with db.session_scope(mailing) as session:
        notices.queue(session, session.get(Account, owner.account.id), "balance_low", "test:give-up", "S", "B")
    for day in range(notices.MAX_ATTEMPTS + 2):
        notices.deliver_pending(down, now=utcnow() + timedelta(days=day))
    with db.session_scope(mailing) as session:
        assert session.scalar(select(Notice.attempts)) == notices.MAX_ATTEMPTS == 8


def test_two_senders_at_once_send_each_notice_once(mailing, mail_server, owner):
    with db.session_scope(mailing) as session:
        account = session.get(Account, owner.account.id)
        for number in range(12):
            notices.queue(session, account, "balance_low", f"test:race:{number}", f"Race {number}", "Body\n")
    counts = []
    senders = [threading.Thread(target=lambda: counts.append(notices.deliver_pending(mailing))) for _ in range(3)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert sum(counts) == 12
    assert sorted(_subjects(mail_server, owner.account.email)) == sorted(f"Race {n}" for n in range(12))
