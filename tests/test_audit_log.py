"""The audit log: append-only through the ORM (audit.py) and in SQL (migration 0009's triggers), on
SQLite and PostgreSQL; the admin Audit log page's filters, before → after values and paging, its
CSV, and `tollgate audit`."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from admin_client import signed_in_admin
from console_client import ConsoleClient
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DatabaseError
from test_admin_overview import tables

from control_plane import audit, db
from control_plane.accounts import accounts
from control_plane.billing import ledger
from control_plane.models import AuditEntry

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)
# Four entries of November (the page's and the CLI's literal rows); a test's own sign-in and
# accounts add entries of today, after them.


def _entry(day: int, hour: int, actor: str, action: str, entity: str, entity_id: str, before: dict | None,
           after: dict | None, reason: str = "", ip: str | None = None, account_id: int | None = None) -> dict:
    return {"created_at": datetime(2026, 11, day, hour, tzinfo=UTC), "actor": actor, "actor_account_id": account_id,
            "ip": ip, "action": action, "entity": entity, "entity_id": entity_id, "before": before, "after": after,
            "reason": reason}


ENTRIES = [
    _entry(1, 10, "cli root", "create", "provider", "1", None, {"name": "openai", "api_key_encrypted": "[redacted]"}),
    _entry(2, 11, "admin ops@example.com", "update", "account", "7", {"status": "active"}, {"status": "suspended"},
           "chargeback", ip="203.0.113.9", account_id=7),
    _entry(3, 12, "admin key 3 (ops@example.com)", "post", "ledger_transaction", "42", {"balance_nano": 10_000_000_000},
           {"kind": "adjustment", "account_id": 7, "amount_nano": -2_500_000_000, "balance_nano": 7_500_000_000},
           "goodwill", account_id=7),
    _entry(4, 9, "cli root", "rescan", "chain_cursor", "tron", {"next_block": 126}, {"next_block": 90}),
]


@pytest.fixture
def november(settings) -> list[int]:
    """ENTRIES appended (appending is all anyone may do); their ids."""
    with db.session_scope(settings) as session:
        rows = [AuditEntry(**{**values, "before": _json(values["before"]), "after": _json(values["after"])})
                for values in ENTRIES]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _json(values):
    return None if values is None else json.dumps(values, sort_keys=True)


# -- append-only ----------------------------------------------------------------------------------

@pytest.fixture
def entry_id(settings) -> int:
    """The entry of an account's creation, made as every change is: through the ORM."""
    with audit.acting_as(audit.Actor("cli root", "cli")), db.session_scope(settings) as session:
        account_id = accounts.create_account(session, "kept@example.com").id
    with db.session_scope(settings) as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.entity == "account",
                                                        AuditEntry.entity_id == str(account_id)))
        assert (entry.actor, entry.action) == ("cli root", "create")
        return entry.id


def _unchanged(settings, entry_id: int) -> None:
    with db.session_scope(settings) as session:
        entry = session.get(AuditEntry, entry_id)
        assert entry is not None and (entry.actor, entry.reason) == ("cli root", "")


@pytest.mark.parametrize("attempt", ["delete the row", "change an attribute", "update() statement",
                                     "delete() statement"])
def test_the_orm_refuses_to_change_or_remove_an_entry(settings, entry_id, attempt):
    with pytest.raises(audit.AuditLogIsAppendOnly, match="audit_log is append-only"), \
            db.session_scope(settings) as session:
        entry = session.get(AuditEntry, entry_id)
        if attempt == "delete the row":
            session.delete(entry)
        elif attempt == "change an attribute":
            entry.reason = "tidied up"
        elif attempt == "update() statement":
            session.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(actor="nobody"))
        else:
            session.execute(delete(AuditEntry).where(AuditEntry.id == entry_id))
        session.flush()
    _unchanged(settings, entry_id)


@pytest.mark.parametrize("sql", ["UPDATE audit_log SET actor = 'nobody' WHERE id = :id",
                                 "UPDATE audit_log SET reason = 'tidied up'",
                                 "DELETE FROM audit_log WHERE id = :id",
                                 "DELETE FROM audit_log"])
def test_the_database_refuses_sql_that_changes_or_removes_an_entry(settings, entry_id, sql):
    engine = db.engine_for(settings.database_url)
    with pytest.raises(DatabaseError, match="audit_log is append-only"), engine.begin() as connection:
        connection.execute(text(sql), {"id": entry_id})
    _unchanged(settings, entry_id)


def test_the_database_refuses_sql_through_an_orm_session_too(settings, entry_id):
    with pytest.raises(DatabaseError, match="audit_log is append-only"), db.session_scope(settings) as session:
        session.execute(text("DELETE FROM audit_log"))
    _unchanged(settings, entry_id)


def test_postgresql_refuses_to_truncate_the_log(settings, entry_id):
    engine = db.engine_for(settings.database_url)
    if engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's (SQLite has none; its DELETE is refused above)")
    with pytest.raises(DatabaseError, match="audit_log is append-only"), engine.begin() as connection:
        connection.execute(text("TRUNCATE audit_log"))
    _unchanged(settings, entry_id)


# -- the page --------------------------------------------------------------------------------------

HEAD = ["When (UTC)", "Who", "Action", "What", "Changes (before → after)", "Reason"]
ROWS = [
    ["2026-11-04 09:00:00 UTC", "cli root", "rescan", "chain_cursor tron", "", ""],
    ["2026-11-03 12:00:00 UTC", "admin key 3 (ops@example.com)", "post", "ledger_transaction 42", "", "goodwill"],
    ["2026-11-02 11:00:00 UTC", "admin ops@example.com from 203.0.113.9", "update", "account 7", "", "chargeback"],
    ["2026-11-01 10:00:00 UTC", "cli root", "create", "provider 1", "", ""],
]


def listed(page_html: str) -> list[list[str]]:
    return tables(page_html)["Audit log, newest first"][1:]


def test_the_page_lists_entries_newest_first_with_before_and_after(settings, app, november):
    admin = signed_in_admin(settings, app=app)
    page = admin.get("/admin/audit?to=2026-11-30")
    assert page.status_code == 200
    found = tables(page.text)
    assert found["Audit log, newest first"] == [HEAD, *ROWS]
    rescan, post, suspend, create = november[::-1]
    assert found[f"Entry {rescan}: the values before and after"] == [
        ["Field", "Before", "After"], ["next_block", "126", "90"]]
    assert found[f"Entry {post}: the values before and after"] == [
        ["Field", "Before", "After"],
        ["account_id", "—", "7"],
        ["amount_nano", "—", "-2500000000 (-$2.50)"],
        ["balance_nano", "10000000000 ($10.00)", "7500000000 ($7.50)"],
        ["kind", "—", "adjustment"]]
    assert found[f"Entry {suspend}: the values before and after"] == [
        ["Field", "Before", "After"], ["status", "active", "suspended"]]
    assert found[f"Entry {create}: the values before and after"] == [
        ["Field", "Before", "After"], ["api_key_encrypted", "—", "[redacted]"], ["name", "—", "openai"]]


@pytest.mark.parametrize(("query", "rows"), [
    ("actor=OPS%40example", [1, 2]),  # a part of who, any case
    ("actor=cli", [0, 3]),
    ("entity=account&entity_id=7", [2]),
    ("entity=ledger_transaction", [1]),
    ("action=rescan", [0]),
    ("from=2026-11-02", [0, 1, 2]),
    ("from=2026-11-03&to=2026-11-03", [1]),
    ("since=2026-11-02T11:00:00Z", [0, 1, 2]),
    ("since=2026-11-02T11:00:01Z", [0, 1]),
    ("entity=account&entity_id=8", []),
    ("actor=100%25", []),  # % is a character, not a wildcard
])
def test_the_page_filters(settings, app, november, query, rows):
    # November only: the test's own sign-in adds entries of today.
    page = signed_in_admin(settings, app=app).get(f"/admin/audit?{query}&to=2026-11-30")
    assert page.status_code == 200
    assert tables(page.text).get("Audit log, newest first", [HEAD])[1:] == [ROWS[n] for n in rows]
    if not rows:
        assert "No entries match these filters." in page.text


@pytest.mark.parametrize(("query", "message"), [
    ("from=2026-13-01", "'from' must be a UTC date as YYYY-MM-DD."),
    ("from=2026-11-05&to=2026-11-01", "'to' must be the same day as 'from' or later."),
    ("to=2026-11-1", "'to' must be a UTC date as YYYY-MM-DD."),
    ("since=yesterday", "'since' must be a UTC date (YYYY-MM-DD) or time"),
    ("entity=" + "x" * 65, "'entity' must be at most 64 characters."),
])
def test_a_bad_filter_is_a_clear_400(settings, app, november, query, message):
    page = signed_in_admin(settings, app=app).get(f"/admin/audit?{query}")
    assert page.status_code == 400
    assert message in page.text.replace("&#39;", "'")
    csv = signed_in_admin(settings, app=app).get(f"/admin/audit.csv?{query}")
    assert csv.status_code == 400 and message in csv.text


def test_a_change_made_in_the_console_is_on_the_page_with_who_and_where(settings, app):
    admin = signed_in_admin(settings, app=app)
    with audit.acting_as(audit.Actor(f"admin {admin.email}", "admin console", None, "198.51.100.4")), \
            audit.because("test credit"), db.session_scope(settings) as session:
        account_id = accounts.create_account(session, "credited@example.com").id
        transaction_id = ledger.credit(session, "adjustment", account_id, 1_500_000_000, "test:adjust", "Adjustment").id
    page = admin.get(f"/admin/audit?entity=ledger_transaction&entity_id={transaction_id}")
    rows = listed(page.text)
    assert len(rows) == 1
    assert rows[0][1:4] == [f"admin {admin.email} from 198.51.100.4", "post", f"ledger_transaction {transaction_id}"]
    assert rows[0][5] == "test credit"
    entry = re.search(r'<tr id="entry-(\d+)">', page.text).group(1)
    assert tables(page.text)[f"Entry {entry}: the values before and after"][1:] == [
        ["account_id", "—", str(account_id)], ["amount_nano", "—", "1500000000 ($1.50)"],
        ["balance_nano", "0 ($0.00)", "1500000000 ($1.50)"], ["kind", "—", "adjustment"]]


def test_the_page_is_paged_by_keyset(settings, app):
    with db.session_scope(settings) as session:
        session.add_all([AuditEntry(created_at=NOVEMBER, actor="cli root", action="update", entity="model",
                                    entity_id=str(n), before='{"max_output": 1}', after='{"max_output": 2}')
                         for n in range(1, 56)])
    admin = signed_in_admin(settings, app=app)
    first = admin.get("/admin/audit?entity=model")
    assert [row[3] for row in listed(first.text)] == [f"model {n}" for n in range(55, 5, -1)]
    older = re.search(r'href="\?([^"]+)" rel="next">Older', first.text).group(1).replace("&amp;", "&")
    second = admin.get(f"/admin/audit?{older}")
    assert [row[3] for row in listed(second.text)] == [f"model {n}" for n in range(5, 0, -1)]


def test_the_csv_holds_the_filtered_entries_exactly(settings, app, november):
    response = signed_in_admin(settings, app=app).get("/admin/audit.csv?to=2026-11-30")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="tollgate-audit-')
    rescan, post, suspend, create = november[::-1]
    assert response.text.splitlines() == [
        "id,created_at,actor,actor_account_id,ip,action,entity,entity_id,reason,before,after",
        (f'{rescan},2026-11-04T09:00:00.000Z,cli root,,,rescan,chain_cursor,tron,,"{{""next_block"": 126}}",'
         '"{""next_block"": 90}"'),
        (f'{post},2026-11-03T12:00:00.000Z,admin key 3 (ops@example.com),7,,post,ledger_transaction,42,goodwill,'
         '"{""balance_nano"": 10000000000}","{""account_id"": 7, ""amount_nano"": -2500000000, '
         '""balance_nano"": 7500000000, ""kind"": ""adjustment""}"'),
        (f'{suspend},2026-11-02T11:00:00.000Z,admin ops@example.com,7,203.0.113.9,update,account,7,chargeback,'
         '"{""status"": ""active""}","{""status"": ""suspended""}"'),
        (f'{create},2026-11-01T10:00:00.000Z,cli root,,,create,provider,1,,,'
         '"{""api_key_encrypted"": ""[redacted]"", ""name"": ""openai""}"'),
    ]
    filtered = signed_in_admin(settings, app=app).get("/admin/audit.csv?action=update&to=2026-11-30")
    assert [line.split(",")[0] for line in filtered.text.splitlines()[1:]] == [str(suspend)]


def test_the_csv_streams_every_batch(settings, app, monkeypatch):
    from control_plane.admin import audit_log as page

    monkeypatch.setattr(page, "CSV_BATCH", 7)  # 20 entries: batches of 7, 7 and 6
    with db.session_scope(settings) as session:
        session.add_all([AuditEntry(created_at=NOVEMBER, actor="cli root", action="update", entity="route",
                                    entity_id=str(n)) for n in range(1, 21)])
    lines = signed_in_admin(settings, app=app).get("/admin/audit.csv?entity=route").text.splitlines()
    assert [line.split(",")[7] for line in lines[1:]] == [str(n) for n in range(20, 0, -1)]


def test_the_audit_pages_are_for_admins_only(settings, app, november):
    visitor = ConsoleClient(app=app)
    for path in ("/admin/audit", "/admin/audit.csv"):
        response = visitor.get(path, follow=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/admin/login")


# -- tollgate audit --------------------------------------------------------------------------------

def test_tollgate_audit_json_since_a_date(cli, november):
    result = cli("audit", "--since", "2026-11-03", "--json")
    assert result.exit_code == 0, result.output
    rescan, post, _suspend, _create = november[::-1]
    listed_entries = [entry for entry in json.loads(result.stdout) if entry["created_at"] < "2026-11-30"]
    assert listed_entries == [
        {"id": rescan, "created_at": "2026-11-04T09:00:00.000Z", "actor": "cli root", "actor_account_id": None,
         "ip": None, "action": "rescan", "entity": "chain_cursor", "entity_id": "tron",
         "before": {"next_block": 126}, "after": {"next_block": 90}, "reason": ""},
        {"id": post, "created_at": "2026-11-03T12:00:00.000Z", "actor": "admin key 3 (ops@example.com)",
         "actor_account_id": 7, "ip": None, "action": "post", "entity": "ledger_transaction", "entity_id": "42",
         "before": {"balance_nano": 10_000_000_000},
         "after": {"account_id": 7, "amount_nano": -2_500_000_000, "balance_nano": 7_500_000_000,
                   "kind": "adjustment"}, "reason": "goodwill"},
    ]


@pytest.mark.parametrize(("since", "newest_first"), [
    ("2026-11-03T12:00:00Z", ["rescan", "post"]),  # from that moment on, included
    ("2026-11-03T12:00:00.001Z", ["rescan"]),
    ("2026-11-03T13:00:00+01:00", ["rescan", "post"]),  # 12:00 UTC
    ("2026-11-03T12:00:00", ["rescan", "post"]),  # no offset: UTC
])
def test_tollgate_audit_since_a_time(cli, november, since, newest_first):
    result = cli("audit", "--since", since, "--json")
    assert result.exit_code == 0, result.output
    assert [entry["action"] for entry in json.loads(result.stdout) if entry["created_at"] < "2026-11-30"] == newest_first
    result = cli("audit", "--since", since, "--entity", "LEDGER_TRANSACTION", "--json")
    assert [entry["action"] for entry in json.loads(result.stdout)] == [a for a in newest_first if a == "post"]


def test_tollgate_audit_as_a_table(cli, november):
    result = cli("audit", "--since", "2026-11-01", "--limit", "50")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if " 2026-11-" in line]
    rescan, post, suspend, create = november[::-1]
    assert lines == [
        f"{rescan:>6} 2026-11-04 09:00:00 cli root rescan chain_cursor tron: next_block 126 → 90",
        (f"{post:>6} 2026-11-03 12:00:00 admin key 3 (ops@example.com) post ledger_transaction 42: account_id=7; "
         "amount_nano=-2500000000 (-$2.50); balance_nano 10000000000 ($10.00) → 7500000000 ($7.50); "
         "kind=adjustment (goodwill)"),
        (f"{suspend:>6} 2026-11-02 11:00:00 admin ops@example.com from 203.0.113.9 update account 7: "
         "status active → suspended (chargeback)"),
        f"{create:>6} 2026-11-01 10:00:00 cli root create provider 1: api_key_encrypted=[redacted]; name=openai",
    ]
    assert result.stderr.strip().endswith(" entries")


def test_tollgate_audit_limit_and_entity(cli, november):
    result = cli("audit", "--entity", "account", "--limit", "1", "--json")
    assert result.exit_code == 0
    assert [entry["entity"] for entry in json.loads(result.stdout)] == ["account"]


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "'yesterday': a UTC date (YYYY-MM-DD) or time"),
    (["--since", "2026-02-30"], "'2026-02-30': a UTC date as YYYY-MM-DD"),
    (["--limit", "0"], "0 is not in the range 1<=x<=10000"),
    (["--limit", "many"], "'many' is not a valid integer"),
])
def test_tollgate_audit_bad_input_exits_2(cli, args, message):
    result = cli("audit", *args)
    assert result.exit_code == 2
    assert message in result.stderr
