"""The admin Deposits page: every deposit with its chain, transaction, account, amount,
confirmations and state, filtered and paged; and a rescan from a block, which moves the chain's
cursor back (audited), shows its progress while the TRON watcher (against tests/fake_tron.py)
scans again, and credits nothing a second time."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from admin_client import signed_in_admin
from bip_utils import Bip32Secp256k1
from console_client import ConsoleClient
from fake_tron import USDT, Log, serve
from helpers import sql_balance
from sqlalchemy import func, select
from test_admin_overview import tables

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.deposits import addresses, cursors, tron_watcher
from control_plane.models import AuditEntry, ChainCursor, Deposit, LedgerTransaction

USDT6 = 1_000_000  # base units of 1 USDT (6 decimals)
POLYGON_USDT = "0xc2132d05d31c914a87c6611c10748aeb04b58e8f"
SEEN = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
HEAD = ["Seen (UTC)", "Chain", "Transaction", "Log index", "Account", "Amount", "Block", "Confirmations", "State"]


def deposit(session, account_id: int, chain: str, number: int, status: str, block: int, amount_usd: int) -> Deposit:
    """A deposit row as a watcher leaves it, SEEN + `number` minutes."""
    row = Deposit(chain=chain, tx_hash=("0x" if chain != "tron" else "") + f"{number:064x}", log_index=number % 3,
                  account_id=account_id, token_contract=USDT if chain == "tron" else POLYGON_USDT,
                  amount=amount_usd * USDT6, amount_nano=amount_usd * 10**9, block_number=block,
                  block_hash=f"{block:064x}", status=status, created_at=SEEN + timedelta(minutes=number))
    session.add(row)
    return row


@pytest.fixture
def listed(settings):
    """One deposit in each status (polygon and tron), the cursors at polygon 1000, tron 500."""
    with db.session_scope(settings) as session:
        alice = accounts.create_account(session, "alice@example.com").id
        bob = accounts.create_account(session, "bob@example.com").id
        deposit(session, alice, "polygon", 1, "credited", 900, 25)
        deposit(session, alice, "polygon", 2, "confirmed", 990, 10)
        deposit(session, bob, "polygon", 3, "seen", 1005, 7)
        deposit(session, bob, "tron", 4, "below_minimum", 450, 3)
        deposit(session, alice, "tron", 5, "orphaned", 499, 40)
        cursors.advance(session, "polygon", 1000)
        cursors.advance(session, "tron", 500)
    return alice, bob


def test_every_deposit_newest_first_with_its_state_and_confirmations(settings, app, listed):
    alice, bob = listed
    page = signed_in_admin(settings, app=app).get("/admin/deposits")
    assert page.status_code == 200
    assert tables(page.text)["Deposits, newest first"] == [
        HEAD,
        ["2026-11-30 08:05:00 UTC", "tron", f"{5:064x}", "2", f"alice@example.com #{alice}", "$40.00", "499", "1",
         "orphaned"],
        ["2026-11-30 08:04:00 UTC", "tron", f"{4:064x}", "1", f"bob@example.com #{bob}", "$3.00", "450", "50",
         "below minimum"],
        ["2026-11-30 08:03:00 UTC", "polygon", f"0x{3:064x}", "0", f"bob@example.com #{bob}", "$7.00", "1005", "0",
         "pending"],
        ["2026-11-30 08:02:00 UTC", "polygon", f"0x{2:064x}", "2", f"alice@example.com #{alice}", "$10.00", "990",
         "10", "pending"],
        ["2026-11-30 08:01:00 UTC", "polygon", f"0x{1:064x}", "1", f"alice@example.com #{alice}", "$25.00", "900",
         "100", "credited"],
    ]
    assert tables(page.text)["Where each chain's watcher is"][1:] == [
        ["polygon", "1000", page_time(page.text, "polygon"), "none"],
        ["tron", "500", page_time(page.text, "tron"), "none"]]


def page_time(page_html: str, chain: str) -> str:
    """The 'last moved' time the page shows for a chain's cursor (now-ish: not a figure under test)."""
    return re.search(rf'<th scope="row">{chain}</th>\s*<td class="num">\d+</td>\s*<td class="mono">([^<]+)</td>',
                     page_html).group(1)


@pytest.mark.parametrize(("query", "numbers"), [
    ("chain=polygon", [3, 2, 1]),
    ("state=pending", [3, 2]),
    ("chain=tron&state=orphaned", [5]),
    ("state=below_minimum", [4]),
    ("chain=bsc", []),
])
def test_filters_by_chain_and_state(settings, app, listed, query, numbers):
    page = signed_in_admin(settings, app=app).get(f"/admin/deposits?{query}")
    assert page.status_code == 200
    rows = tables(page.text).get("Deposits, newest first", [HEAD])[1:]
    assert [int(row[2].removeprefix("0x"), 16) for row in rows] == numbers
    if not numbers:
        assert "No deposits match these filters." in page.text


@pytest.mark.parametrize(("query", "message"), [
    ("chain=ethereum", "&#39;chain&#39; must be one of tron, bsc, polygon."),
    ("state=seen", "&#39;state&#39; must be one of pending, credited, below_minimum, orphaned."),
])
def test_a_bad_filter_is_a_clear_400(settings, app, listed, query, message):
    page = signed_in_admin(settings, app=app).get(f"/admin/deposits?{query}")
    assert page.status_code == 400
    assert message in page.text


def test_pages_by_keyset(settings, app):
    with db.session_scope(settings) as session:
        account_id = accounts.create_account(session, "many@example.com").id
        for number in range(1, 56):
            deposit(session, account_id, "polygon", number, "credited", number, 1)
    admin = signed_in_admin(settings, app=app)
    first = admin.get("/admin/deposits?chain=polygon")
    rows = tables(first.text)["Deposits, newest first"][1:]
    assert [row[6] for row in rows] == [str(n) for n in range(55, 5, -1)]
    older = re.search(r'href="\?([^"]+)" rel="next">Older', first.text).group(1).replace("&amp;", "&")
    assert older.startswith("chain=polygon&before=")
    second = admin.get(f"/admin/deposits?{older}")
    assert [row[6] for row in tables(second.text)["Deposits, newest first"][1:]] == ["5", "4", "3", "2", "1"]
    assert 'rel="prev">← Newer' in second.text and 'rel="next"' not in second.text


# -- rescans, against the fake TRON node --------------------------------------------------------

@pytest.fixture
def fake():
    node, server = serve()
    yield node
    server.shutdown()
    server.server_close()


@pytest.fixture
def tron_settings(tollgate_env, fake):
    xpub = Bip32Secp256k1.FromSeed(bytes(range(32))).PublicKey().ToExtended()
    return settings_module.load({**tollgate_env, "TOLLGATE_XPUB_TRON": xpub, "TOLLGATE_TRON_URL": fake.url,
                                 "TOLLGATE_TRON_START_BLOCK": "90"})


@pytest.fixture
def credited(tron_settings, fake):
    """A TRON deposit of 60 USDT at block 100, credited (with the 2 % tier's bonus) by a scan of
    blocks 90..125: the cursor is at 126. (account id, txid)"""
    with db.session_scope(tron_settings) as session:
        account_id = accounts.create_account(session, "payer@example.com").id
        deposit_address = addresses.address_for(session, tron_settings, account_id, "tron").address
    fake.chain(head=140, solid=125)
    txid = fake.send(100, Log(deposit_address, 60 * USDT6))
    assert tron_watcher.scan(tron_settings).credited == 1
    assert cursor_of(tron_settings) == 126
    return account_id, txid


CREDITED = 60 * 10**9 + 1_200_000_000


def cursor_of(settings, chain: str = "tron") -> int:
    with db.session_scope(settings) as session:
        return cursors.next_block(session, chain)


def ledger_rows(settings, account_id: int) -> list[tuple[str, str]]:
    with db.session_scope(settings) as session:
        return [tuple(row) for row in session.execute(
            select(LedgerTransaction.kind, LedgerTransaction.idempotency_key)
            .where(LedgerTransaction.account_id == account_id).order_by(LedgerTransaction.id))]


def rescan_cell(page_html: str) -> str:
    return tables(page_html)["Where each chain's watcher is"][1][3]


def test_a_rescan_moves_the_cursor_back_and_credits_nothing_twice(tron_settings, app, credited):
    account_id, txid = credited
    before = ledger_rows(tron_settings, account_id)
    assert before == [("deposit", f"deposit:tron:{txid}:0"), ("bonus", f"bonus:deposit:tron:{txid}:0")]
    admin = signed_in_admin(tron_settings, app=app)
    admin.get("/admin/deposits")
    page = admin.post_form("/admin/deposits/rescan", {"chain": "tron", "from_block": "90"})
    assert page.status_code == 200 and str(page.url).endswith("/admin/deposits#rescans")
    assert "tron: its watcher scans again from block 90 up to block 125 and on" in page.text
    assert cursor_of(tron_settings) == 90
    assert rescan_cell(page.text).startswith("0 % Scanning blocks 90 to 125 again: below block 90, 0 %. asked ")
    assert rescan_cell(page.text).endswith(f" by admin {admin.email}")

    report = tron_watcher.scan(tron_settings)  # the watcher's next round
    assert (report.from_block, report.to_block, report.found, report.credited) == (90, 125, 0, 0)
    assert cursor_of(tron_settings) == 126
    assert ledger_rows(tron_settings, account_id) == before
    assert sql_balance(tron_settings, account_id) == CREDITED
    with db.session_scope(tron_settings) as session:
        assert session.scalar(select(func.count()).select_from(Deposit)) == 1
    page = admin.get("/admin/deposits")
    assert "100 % Done: blocks 90 to 125 scanned again." in rescan_cell(page.text)
    assert tables(page.text)["Deposits, newest first"][1][7:] == ["26", "credited"]


def test_a_rescan_is_audited_with_the_cursor_before_and_after(tron_settings, app, credited):
    admin = signed_in_admin(tron_settings, app=app)
    admin.get("/admin/deposits")
    admin.post_form("/admin/deposits/rescan", {"chain": "tron", "from_block": "95"})
    with db.session_scope(tron_settings) as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "rescan"))
        assert (entry.actor, entry.entity, entry.entity_id, json.loads(entry.before), json.loads(entry.after)) == (
            f"admin {admin.email}", "chain_cursor", "tron", {"next_block": 126}, {"next_block": 95})


def test_a_long_rescan_shows_its_progress(tron_settings, app, fake):
    step = tron_watcher.STEP_BLOCKS
    fake.chain(head=3 * step, solid=3 * step - 10)
    tron_watcher.scan(tron_settings)
    end = 3 * step - 9
    assert cursor_of(tron_settings) == end
    admin = signed_in_admin(tron_settings, app=app)
    admin.get("/admin/deposits")
    admin.post_form("/admin/deposits/rescan", {"chain": "tron", "from_block": "90"})

    class Stop(Exception):
        pass

    def stop_after_the_first_step(_done, _total):
        raise Stop

    with pytest.raises(Stop):  # the watcher is part way: one step of 7,200 blocks scanned again
        tron_watcher.scan(tron_settings, progress=stop_after_the_first_step)
    assert cursor_of(tron_settings) == 90 + step
    total = end - 90
    percent = step * 100 // total
    assert percent == 33
    page = admin.get("/admin/deposits")
    assert f"Scanning blocks 90 to {end - 1} again: below block {90 + step}, 33 %." in rescan_cell(page.text)
    assert f'<progress max="{total}" value="{step}"' in page.text
    progress = admin.get("/admin/deposits/rescans.json").json()
    assert [{key: row[key] for key in ("chain", "from_block", "target_block", "next_block", "blocks",
                                       "blocks_scanned", "done", "percent")} for row in progress] == [
        {"chain": "tron", "from_block": 90, "target_block": end, "next_block": 90 + step, "blocks": total,
         "blocks_scanned": step, "done": False, "percent": 33}]

    tron_watcher.scan(tron_settings)
    progress = admin.get("/admin/deposits/rescans.json").json()
    assert (progress[0]["done"], progress[0]["percent"], progress[0]["text"]) == (
        True, 100, f"Done: blocks 90 to {end - 1} scanned again.")


@pytest.mark.parametrize(("fields", "message"), [
    ({"chain": "tron", "from_block": "126"}, ("tron is scanned below block 126 only: blocks from 126 on are not "
                                              "scanned yet, and its watcher scans them anyway.")),
    ({"chain": "bsc", "from_block": "5"}, "bsc has not been scanned yet: its watcher starts at its start block by itself."),
    ({"chain": "tron", "from_block": "ninety"}, "Not a valid integer value."),
    ({"chain": "tron", "from_block": "-1"}, "Number must be between 0 and 9223372036854775807."),
    ({"chain": "tron", "from_block": ""}, "Give the first block to scan again."),
    ({"chain": "ethereum", "from_block": "5"}, "Not a valid choice."),
])
def test_a_rescan_that_cannot_be_made_says_why_and_changes_nothing(tron_settings, app, credited, fields, message):
    admin = signed_in_admin(tron_settings, app=app)
    admin.get("/admin/deposits")
    page = admin.post_form("/admin/deposits/rescan", fields)
    assert page.status_code == 400
    assert message in page.text.replace("&#39;", "'")
    assert cursor_of(tron_settings) == 126
    with db.session_scope(tron_settings) as session:
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "rescan")) is None


def test_the_deposits_pages_are_for_admins_only(settings, app, listed):
    visitor = ConsoleClient(app=app)
    for path in ("/admin/deposits", "/admin/deposits/rescans.json"):
        response = visitor.get(path, follow=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/admin/login")
    response = visitor.post_form("/admin/deposits/rescan", {"chain": "tron", "from_block": "1"}, csrf=False,
                                 follow=False)
    assert response.status_code in (303, 403)
    admin = signed_in_admin(settings, app=app)
    assert admin.post_form("/admin/deposits/rescan", {"chain": "tron", "from_block": "1"},
                           csrf=False).status_code == 403
    with db.session_scope(settings) as session:
        assert session.get(ChainCursor, "tron").next_block == 500
