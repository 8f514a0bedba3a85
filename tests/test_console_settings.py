"""The console's Settings page against a running instance: change password (ends the other
sessions), change email (only once the link mailed to the new address is followed, without
telling whether an address is taken), delete account (keys revoked in SQL and Redis, sessions
ended, login closed, ledger and usage kept)."""
from __future__ import annotations

from console_client import PASSWORD, ConsoleClient, account_row, new_email, path_of, signed_in_client
from harness import wait_for
from mail_server import link_in, text_of
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control_plane import db
from control_plane.accounts import api_keys
from control_plane.hot import redis_keys
from control_plane.models import ApiKey, LedgerTransaction, Usage

NEW_PASSWORD = "a different long password"
CHAT = {"model": "sandbox-chat", "messages": [{"role": "user", "content": "Hello"}]}


def _second_browser(gateway, owner: ConsoleClient) -> ConsoleClient:
    other = ConsoleClient(gateway)
    other.log_in(owner.email, owner.password)
    return other


def _signed_out(client: ConsoleClient) -> bool:
    return client.get("/console/settings").url.path == "/console/login"


def test_settings_page_offers_its_forms(gateway, mail_server):
    owner = signed_in_client(gateway, mail_server)
    page = owner.get("/console/settings").text
    for html in ('<label for="current_password">Current password</label>',
                 '<label for="password">New password</label>', '<label for="confirm">Confirm new password</label>',
                 '<label for="new_email">New email address</label>', '<button type="submit">Change password</button>',
                 '<button type="submit">Change email</button>',
                 '<button type="submit" class="danger">Delete account</button>'):
        assert html in page
    owner.close()


def test_change_password_ends_the_other_sessions(gateway, mail_server):
    owner = signed_in_client(gateway, mail_server)
    other = _second_browser(gateway, owner)
    wrong = owner.post_form("/console/settings/password", {"current_password": "not my password",
                                                          "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert wrong.status_code == 400 and "That is not your current password." in wrong.text
    assert not _signed_out(other)

    changed = owner.post_form("/console/settings/password", {"current_password": PASSWORD,
                                                            "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert changed.url.path == "/console/settings" and "Your password is changed." in changed.text
    assert not _signed_out(owner)
    assert _signed_out(other)
    assert other.post_form("/console/login", {"email": owner.email, "password": PASSWORD}).status_code == 401
    other.log_in(owner.email, NEW_PASSWORD)
    owner.close()
    other.close()


def test_change_email_takes_effect_when_the_new_address_follows_its_link(gateway, mail_server):
    owner = signed_in_client(gateway, mail_server)
    old_email, new = owner.email, new_email()
    wrong = owner.post_form("/console/settings/email", {"new_email": new, "email_password": "not my password"})
    assert wrong.status_code == 400 and "That is not your current password." in wrong.text
    asked = owner.post_form("/console/settings/email", {"new_email": new, "email_password": PASSWORD})
    assert f"We sent a link to {new}. Your email changes when you follow it." in asked.text
    link = path_of(link_in(mail_server.wait_for(new, "Confirm your new email"), "/console/change-email/"))
    assert account_row(gateway, old_email).email == old_email  # not before the link is followed

    done = ConsoleClient(gateway).get(link)  # from any browser: the link itself is the proof
    assert done.status_code == 200 and f"Your email is now {new}." in done.text
    assert owner.get(link).status_code == 400  # once
    assert account_row(gateway, new).email_verified_at is not None
    assert f"is now {new} instead of {old_email}" in text_of(mail_server.wait_for(old_email, "email was changed"))
    assert new in owner.get("/console/settings").text  # the session stays
    fresh = ConsoleClient(gateway)
    assert fresh.post_form("/console/login", {"email": old_email, "password": PASSWORD}).status_code == 401
    fresh.log_in(new, PASSWORD)
    owner.close()


def test_change_email_to_a_taken_address_answers_alike(gateway, mail_server):
    owner = signed_in_client(gateway, mail_server)
    taken = signed_in_client(gateway, mail_server)
    asked = owner.post_form("/console/settings/email", {"new_email": taken.email, "email_password": PASSWORD})
    assert f"We sent a link to {taken.email}. Your email changes when you follow it." in asked.text
    notice = mail_server.wait_for(taken.email, "Someone tried to change their email to your address")
    assert "/console/change-email/" not in text_of(notice)
    assert account_row(gateway, owner.email).email == owner.email
    same = owner.post_form("/console/settings/email", {"new_email": owner.email, "email_password": PASSWORD})
    assert same.status_code == 400 and "That is your email already." in same.text
    owner.close()
    taken.close()


def test_delete_account_revokes_keys_ends_sessions_and_keeps_the_ledger(gateway, mail_server):
    owner = signed_in_client(gateway, mail_server)
    other = _second_browser(gateway, owner)
    gateway.cli("credit", owner.email, "1", "--reason", "test credit")
    key = gateway.create_key(owner.email)
    assert gateway.chat(key, CHAT) == 200
    gateway.wait_drained()
    account_id = account_row(gateway, owner.email).id

    wrong = owner.post_form("/console/settings/delete", {"delete_password": "not my password"})
    assert wrong.status_code == 400 and "That is not your current password." in wrong.text
    assert account_row(gateway, owner.email).deleted_at is None

    deleted = owner.post_form("/console/settings/delete", {"delete_password": PASSWORD})
    assert deleted.url.path == "/console/login" and "Your account is deleted" in deleted.text
    account = account_row(gateway, owner.email)
    assert account.deleted_at is not None and account.status == "disabled"
    with Session(db.engine_for(gateway.database_url)) as session:
        stored = session.scalar(select(ApiKey).where(ApiKey.key_hash == api_keys.hash_key(key)))
        assert stored.status == "revoked" and stored.revoked_at is not None
        assert session.scalar(select(func.count()).select_from(Usage).where(Usage.account_id == account_id)) == 1
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)
                              .where(LedgerTransaction.account_id == account_id)) >= 2  # credit, usage
    assert gateway.redis().hget(redis_keys.apikey(api_keys.hash_key(key)), "status") == "revoked"
    wait_for(lambda: gateway.chat(key, CHAT) == 401, 10, "the deleted account's key to be refused")
    assert _signed_out(owner) and _signed_out(other)
    refused = ConsoleClient(gateway).post_form("/console/login", {"email": owner.email, "password": PASSWORD})
    assert refused.status_code == 401 and "Wrong email or password." in refused.text
    owner.close()
    other.close()
