"""Invoices, credit notes and statements as PDF (WeasyPrint, from the templates): pdftotext of each
holds its number and exact figures, and its first page is kept as a PNG in docs/screenshots/;
statements and their usage as CSV; the `tollgate invoice` and `tollgate statement` commands."""
from __future__ import annotations

import json
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import update
from test_statements import Books, local

from control_plane import db
from control_plane.billing import documents, invoices, ledger, profiles, statements
from control_plane.models import Account, Deposit, LedgerTransaction

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
YEAR = datetime.now(UTC).year
TX_HASH = "7c1f0e5b9a2d4c6e8f01234567890abcdef1234567890abcdef1234567890abcd"


@pytest.fixture
def tollgate_env(tollgate_env):
    """An operator in Germany taxing German customers at 19 %, reverse charge for French businesses."""
    return {**tollgate_env,
            "TOLLGATE_INVOICE_ISSUER_NAME": "Tollgate Test GmbH",
            "TOLLGATE_INVOICE_ISSUER_ADDRESS": "Hauptstraße 1\n10115 Berlin",
            "TOLLGATE_INVOICE_ISSUER_COUNTRY": "DE",
            "TOLLGATE_INVOICE_ISSUER_TAX_ID": "DE123456789",
            "TOLLGATE_INVOICE_ISSUER_EMAIL": "billing@tollgate.test",
            "TOLLGATE_TAX_RULES": "DE:19,*:0",
            "TOLLGATE_TAX_REVERSE_CHARGE": "FR",
            "TOLLGATE_TAX_REVERSE_CHARGE_NOTE": "Reverse charge: VAT to be accounted for by the recipient."}


def at(transaction_id: int, moment: datetime, session) -> None:
    session.execute(update(LedgerTransaction).where(LedgerTransaction.id == transaction_id)
                    .values(created_at=moment))


@pytest.fixture
def issued(settings):
    """A card payment of $103 (credit $100, bonus $5, fee $3) by a German business, $40 of it
    refunded, and a USDT deposit of 100.5 USDT on Tron by a French one: two invoices and a credit
    note, issued by invoices.issue_pending."""
    with db.session_scope(settings) as session:
        card = Books(session, "buyer@example.com", "Europe/Berlin")
        profiles.save(session, card.account.id, legal_name="Käufer Analytics GmbH",
                      address="Friedrichstraße 100\n10117 Berlin", country="DE", tax_id="DE999999999",
                      invoice_email="invoices@kaeufer.example")
        payment = ledger.credit(session, "deposit", card.account.id, 100_000_000_000, "payment:evt_card_1",
                                "Card payment")
        bonus = ledger.credit(session, "bonus", card.account.id, 5_000_000_000, "bonus:payment:evt_card_1",
                              "Top-up bonus 5%")
        fee = ledger.post(session, "fee", "fee:payment:evt_card_1", card.account.id,
                          [("system:fees", 3_000_000_000), (ledger.DEPOSITS, -3_000_000_000)], "Card top-up fee 3%",
                          published=True)
        for transaction in (payment, bonus, fee):
            at(transaction.id, local("Europe/Berlin", 2026, 1, 2, 9, 30), session)
        refund = ledger.post(session, "refund", f"refund:payment:{payment.id}:1", card.account.id,
                             [(ledger.wallet(card.account.id), -40_000_000_000), (ledger.DEPOSITS, 40_000_000_000)],
                             "Refund of a card payment")
        at(refund.id, local("Europe/Berlin", 2026, 1, 20, 16, 0), session)

        usdt = Books(session, "acheteur@example.com", "Europe/Paris")
        profiles.save(session, usdt.account.id, legal_name="Acheteur SAS", address="1 rue de Rivoli\n75001 Paris",
                      country="FR", tax_id="FR12345678901", invoice_email="")
        deposit = ledger.credit(session, "deposit", usdt.account.id, 100_500_000_000, f"deposit:tron:{TX_HASH}:0",
                                "USDT deposit")
        at(deposit.id, local("Europe/Paris", 2026, 1, 5, 12, 0), session)
        session.add(Deposit(chain="tron", tx_hash=TX_HASH, log_index=0, account_id=usdt.account.id,
                            token_contract=settings.tron_usdt_contract, amount=100_500_000, amount_nano=100_500_000_000,
                            block_number=1, block_hash="00", status="credited", transaction_id=deposit.id))
        session.flush()
        issued = invoices.issue_pending(session, settings)
        return {invoice.kind + (":usdt" if invoice.account_id == usdt.account.id else ""): invoice for invoice in issued}


def pdf_text(tmp_path: Path, pdf: bytes, name: str) -> str:
    """The PDF's text (pdftotext -layout); its first page kept as docs/screenshots/<name>.png."""
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    assert pdf.startswith(b"%PDF-")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-singlefile", str(path), str(SCREENSHOTS / name)], check=True)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def test_an_invoice_pdf_holds_its_number_parties_lines_and_tax(settings, issued, tmp_path):
    invoice = issued["invoice"]
    assert invoice.number == f"TG-{YEAR}-000001"
    text = pdf_text(tmp_path, documents.invoice_pdf(settings, invoice), "invoice")
    for expected in (f"TG-{YEAR}-000001", "Invoice", "Payment date", "2 January 2026", "Europe/Berlin", "USD",
                     "Tollgate Test GmbH", "Hauptstraße 1", "10115 Berlin", "DE123456789",
                     "Käufer Analytics GmbH", "Friedrichstraße 100", "DE999999999", "invoices@kaeufer.example",
                     "Prepaid API credit (payment on account)", "$105.00", "Top-up bonus 5%", "-$5.00",
                     "Card top-up fee 3%", "$3.00", "Net", "$86.554621849", "Tax 19%", "$16.445378151",
                     "Total USD", "$103.00", "Card", "evt_card_1"):
        assert expected in text, expected
    assert "Reverse charge" not in text


def test_a_usdt_invoice_names_the_chain_hash_and_rate_and_the_reverse_charge(settings, issued, tmp_path):
    invoice = issued["invoice:usdt"]
    assert invoice.number == f"TG-{YEAR}-000002"
    text = pdf_text(tmp_path, documents.invoice_pdf(settings, invoice), "invoice-usdt")
    for expected in (f"TG-{YEAR}-000002", "5 January 2026", "Europe/Paris", "Acheteur SAS", "FR12345678901",
                     "acheteur@example.com", "$100.50", "Tax 0% (reverse charge)", "$0.00", "Tron", TX_HASH,
                     "100.5 USDT", "1 USDT = 1 USD", "Reverse charge: VAT to be accounted for by the recipient."):
        assert expected in text, expected


def test_a_credit_note_pdf_names_the_invoice_it_corrects(settings, issued, tmp_path):
    note = issued["credit_note"]
    assert note.number == f"TG-CN-{YEAR}-000001"
    text = pdf_text(tmp_path, documents.invoice_pdf(settings, note), "credit-note")
    for expected in (f"TG-CN-{YEAR}-000001", "Credit note", "Corrects invoice", f"TG-{YEAR}-000001",
                     "20 January 2026", f"Refund of prepaid API credit (invoice TG-{YEAR}-000001)", "-$40.00",
                     "-$33.613445378", "Tax 19%", "-$6.386554622", "Käufer Analytics GmbH"):
        assert expected in text, expected


@pytest.fixture
def singapore(settings):
    """A month of an account in Singapore: opening $20, a payment, a bonus, usage on two keys and
    two models, a refund, a negative adjustment and an expiry."""
    zone = "Asia/Singapore"
    with db.session_scope(settings) as session:
        books = Books(session, "lion@example.com", zone, ("production", "staging"))
        books.post("deposit", 20_000_000_000, local(zone, 2026, 2, 28, 23, 59), "Payment")
        books.post("deposit", 50_000_000_000, local(zone, 2026, 3, 1, 0, 0), "Card payment (payment:evt_2)")
        books.post("bonus", 1_000_000_000, local(zone, 2026, 3, 1, 0, 0), "Top-up bonus 2%")
        books.post("usage", -12_345_678, local(zone, 2026, 3, 3, 10, 0), model="claude-sonnet", tokens=(2000, 300))
        books.post("usage", -17_250, local(zone, 2026, 3, 4, 11, 0), model="gpt-mini", key=1, tokens=(19, 24))
        books.post("usage", -1_500_000_000, local(zone, 2026, 3, 5, 12, 0), model="claude-sonnet", key=1)
        books.post("refund", 12_345_678, local(zone, 2026, 3, 6, 9, 0), "Refund of request req-4")
        books.post("adjustment", -2_000_000_000, local(zone, 2026, 3, 7, 9, 0), "Correction of a duplicate credit")
        books.post("expiry", -250_000_000, local(zone, 2026, 3, 31, 23, 59, 59), "Unused credit expired")
        books.post("usage", -5, local(zone, 2026, 4, 1, 0, 0), model="gpt-mini")
        statement = statements.statement(session, books.account, date(2026, 3, 1), date(2026, 3, 31))
        return books, statement


def test_a_statement_pdf_holds_every_figure(settings, singapore, tmp_path):
    books, statement = singapore
    assert (statement.opening_nano, statement.usage_nano, statement.closing_nano) == (
        20_000_000_000, -1_512_362_928, 67_249_982_750)
    text = pdf_text(tmp_path, documents.statement_pdf(settings, books.account, statement), "statement")
    prefixes = [key.prefix for key in books.keys]
    for expected in ("Statement", "lion@example.com", "1 March 2026 to 31 March 2026", "Asia/Singapore",
                     "Opening balance", "$20.00", "2026-03-01 00:00", "Card payment (payment:evt_2)", "$50.00",
                     "Top-up bonus 2%", "$1.00", "Refund of request req-4", "$0.012345678",
                     "Correction of a duplicate credit", "-$2.00", "Unused credit expired", "-$0.25",
                     "2026-03-31 23:59", "claude-sonnet", "-$1.512345678", "gpt-mini", "-$0.00001725",
                     f"production ({prefixes[0]}…)", "-$0.012345678", f"staging ({prefixes[1]}…)", "-$1.50001725",
                     "-$1.512362928", "3 requests", "Closing balance", "$67.24998275"):
        assert expected in text, expected


def test_a_statement_csv_lists_each_line_exactly(singapore):
    books, statement = singapore
    ids = [movement.transaction_id for movement in statement.credits + statement.bonuses + statement.refunds
           + statement.adjustments + statement.expiries]
    prefixes = [key.prefix for key in books.keys]
    assert documents.statement_csv(statement).splitlines() == [
        "section,time,transaction,description,requests,amount_usd,amount_nano",
        "opening balance,2026-03-01T00:00:00+08:00,,Balance in Asia/Singapore,,20,20000000000",
        f"credit,2026-03-01T00:00:00+08:00,{ids[0]},Card payment (payment:evt_2),,50,50000000000",
        f"bonus,2026-03-01T00:00:00+08:00,{ids[1]},Top-up bonus 2%,,1,1000000000",
        f"refund,2026-03-06T09:00:00+08:00,{ids[2]},Refund of request req-4,,0.012345678,12345678",
        f"adjustment,2026-03-07T09:00:00+08:00,{ids[3]},Correction of a duplicate credit,,-2,-2000000000",
        f"expiry,2026-03-31T23:59:59+08:00,{ids[4]},Unused credit expired,,-0.25,-250000000",
        "usage by model,,,claude-sonnet,2,-1.512345678,-1512345678",
        "usage by model,,,gpt-mini,1,-0.00001725,-17250",
        f"usage by key,,,production ({prefixes[0]}…),1,-0.012345678,-12345678",
        f"usage by key,,,staging ({prefixes[1]}…),2,-1.50001725,-1500017250",
        "closing balance,2026-04-01T00:00:00+08:00,,Balance in Asia/Singapore,,67.24998275,67249982750",
    ]


def test_a_usage_csv_has_a_row_per_charged_request(settings, singapore):
    books, _statement = singapore
    with db.read_session(settings) as session:
        account = session.get(Account, books.account.id)
        lines = "".join(documents.usage_csv(session, account, date(2026, 3, 1), date(2026, 3, 31))).splitlines()
    prefixes = [key.prefix for key in books.keys]
    assert lines[0] == ("charged_at,request_id,requested_at,model,key_name,key_prefix,input_tokens,"
                        "cached_input_tokens,cache_write_tokens,cache_write_1h_tokens,output_tokens,reasoning_tokens,"
                        "cost_usd,cost_nano,transaction")
    rows = [line.split(",") for line in lines[1:]]
    # Without the request ids, request times and transaction ids (checked below).
    assert [row[:1] + row[3:-1] for row in rows] == [
        ["2026-03-03T10:00:00+08:00", "claude-sonnet", "production", prefixes[0], "2000", "0", "0", "0", "300", "0",
         "0.012345678", "12345678"],
        ["2026-03-04T11:00:00+08:00", "gpt-mini", "staging", prefixes[1], "19", "0", "0", "0", "24", "0",
         "0.00001725", "17250"],
        ["2026-03-05T12:00:00+08:00", "claude-sonnet", "staging", prefixes[1], "1000", "0", "0", "0", "100", "0",
         "1.5", "1500000000"]]
    assert [(row[1], int(row[-1])) for row in rows] == books.charges[:3]
    assert rows[0][2] == "2026-03-03T09:59:58+08:00"


def test_the_templates_render_in_the_web_app_too(app, settings, issued):
    """One set of templates: the app's Jinja environment renders the same document."""
    with app.app_context():
        in_app = documents.invoice_html(issued["invoice"])
    assert in_app.replace("\n", "").replace(" ", "") == documents.invoice_html(issued["invoice"]).replace(
        "\n", "").replace(" ", "")
    assert f"TG-{YEAR}-000001" in in_app and "$16.445378151" in in_app


def test_cli_lists_invoices_as_a_table_and_as_json(cli, issued):
    listed = cli("invoice", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NUMBER", "KIND", "ISSUED", "ACCOUNT", "NET", "TAX", "TOTAL", "CORRECTS"]
    # Newest first: issued in ledger order, the refund (20 January) was posted before the USDT deposit.
    assert [line.split()[0] for line in lines[1:]] == [f"TG-{YEAR}-000002", f"TG-CN-{YEAR}-000001",
                                                       f"TG-{YEAR}-000001"]
    assert "-$40.00" in lines[2] and lines[2].split()[-1] == f"TG-{YEAR}-000001"
    own = cli("invoice", "list", "buyer@example.com", "--json")
    assert own.exit_code == 0, own.output
    items = json.loads(own.stdout)
    assert [(item["number"], item["kind"], item["total_nano"], item["tax_nano"], item["net_nano"])
            for item in items] == [
        (f"TG-CN-{YEAR}-000001", "credit_note", -40_000_000_000, -6_386_554_622, -33_613_445_378),
        (f"TG-{YEAR}-000001", "invoice", 103_000_000_000, 16_445_378_151, 86_554_621_849)]
    assert items[0]["refers_to"] == f"TG-{YEAR}-000001" and items[1]["tax_rate"] == "19"
    assert items[1]["total"] == 103 and items[1]["email"] == "buyer@example.com"
    unknown = cli("invoice", "list", "nobody@example.com")
    assert unknown.exit_code == 2 and "no account with email 'nobody@example.com'" in unknown.output


def test_cli_writes_an_invoice_pdf(cli, issued, tmp_path):
    output = tmp_path / "invoice.pdf"
    written = cli("invoice", "pdf", f"TG-{YEAR}-000001", "--output", str(output))
    assert written.exit_code == 0, written.output
    assert output.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", str(output), "-"], check=True, capture_output=True, text=True).stdout
    assert f"TG-{YEAR}-000001" in text and "$103.00" in text
    unknown = cli("invoice", "pdf", "TG-1999-000001", "--output", str(tmp_path / "none.pdf"))
    assert unknown.exit_code == 2 and "no invoice or credit note numbered 'TG-1999-000001'" in unknown.output
    assert not (tmp_path / "none.pdf").exists()


def test_cli_statement_as_text_csv_and_pdf(cli, singapore, tmp_path):
    _books, statement = singapore
    args = ("statement", "lion@example.com", "--from", "2026-03-01", "--to", "2026-03-31")
    summary = cli(*args)
    assert summary.exit_code == 0, summary.output
    assert "times in Asia/Singapore" in summary.stdout
    assert "opening balance  $20.00" in summary.stdout and "closing balance  $67.24998275" in summary.stdout
    assert "usage            -$1.512362928 (3 requests)" in summary.stdout
    as_csv = cli(*args, "--csv")
    assert as_csv.exit_code == 0 and as_csv.stdout == documents.statement_csv(statement)
    output = tmp_path / "statement.pdf"
    as_pdf = cli(*args, "--pdf", "--output", str(output))
    assert as_pdf.exit_code == 0, as_pdf.output
    text = subprocess.run(["pdftotext", str(output), "-"], check=True, capture_output=True, text=True).stdout
    assert "$67.24998275" in text


@pytest.mark.parametrize(("args", "message"), [
    (("nobody@example.com", "--from", "2026-03-01", "--to", "2026-03-31"), "no account with email"),
    (("lion@example.com", "--from", "2026-03-32", "--to", "2026-03-31"), "'2026-03-32' does not match"),
    (("lion@example.com", "--from", "2026-04-01", "--to", "2026-03-31"), "--from 2026-04-01 is after --to 2026-03-31"),
    (("lion@example.com", "--from", "2026-03-01", "--to", "2026-03-31", "--pdf"), "--pdf needs --output FILE"),
    (("lion@example.com", "--from", "2026-03-01", "--to", "2026-03-31", "--csv", "--pdf"), "not both"),
])
def test_cli_statement_mistakes(cli, singapore, args, message):
    result = cli("statement", *args)
    assert result.exit_code == 2 and message in result.output, result.output
