"""The console's Transactions page: the account's ledger rows newest first, exact, paged by
keyset, the same as /api/v1/transactions; never another account's."""
from __future__ import annotations

import html
import re

from console_client import ConsoleClient
from console_usage import CHAT_COST, chat, console_customer, drained_rows, listed_request_ids, usage_of
from helpers import api_get

ROW = re.compile(r'<td class="mono">#(\d+)</td>\s*<td>(\w+)</td>\s*<td class="num[^"]*">([^<]+)</td>\s*<td>(.*?)</td>',
                 re.DOTALL)


def listed(page_html: str) -> list[tuple[int, str, str, str]]:
    """(transaction id, kind, amount, description text) of each row, in page order."""
    return [(int(tx), kind, amount, html.unescape(re.sub(r"<[^>]+>", "", description)))
            for tx, kind, amount, description in ROW.findall(page_html)]


def test_ledger_rows_newest_first_with_exact_amounts_as_the_api_lists_them(gateway, mail_server):
    customer = console_customer(gateway, mail_server)
    key = customer.keys["main"]
    chat(gateway, key)
    drained_rows(gateway, key, 1)  # drained before the next: a transaction each
    chat(gateway, key)
    rows = drained_rows(gateway, key, 2)
    page = customer.client.get("/console/transactions").text
    api = api_get(gateway, key, "/api/v1/transactions")["transactions"]
    assert [(tx, kind) for tx, kind, _amount, _description in listed(page)] == [
        (item["id"], item["type"]) for item in api]
    assert [(kind, amount, description) for _tx, kind, amount, description in listed(page)] == [
        ("usage", "-$0.00001725", "1 request: sandbox-chat"),
        ("usage", "-$0.00001725", "1 request: sandbox-chat"),
        ("adjustment", "$5.00", "test credit"),
    ]
    assert CHAT_COST == 17_250
    # A usage transaction links to the log of the requests it charged.
    newest = api[0]["id"]
    assert f'href="/console/logs?transaction={newest}"' in page
    charged = customer.client.get(f"/console/logs?transaction={newest}").text
    assert listed_request_ids(charged) == [rows[0]["request_id"]]
    assert f"The requests charged in transaction #{newest}." in charged
    assert [row["request_id"] for row in usage_of(gateway, key, f"transaction={newest}")] == [rows[0]["request_id"]]
    customer.client.close()


def test_the_log_of_a_transaction_is_the_accounts_own(gateway, mail_server):
    mine = console_customer(gateway, mail_server)
    theirs = console_customer(gateway, mail_server)
    chat(gateway, theirs.keys["main"])
    drained_rows(gateway, theirs.keys["main"], 1)
    their_transaction = api_get(gateway, theirs.keys["main"], "/api/v1/transactions")["transactions"][0]["id"]
    assert listed_request_ids(mine.client.get(f"/console/logs?transaction={their_transaction}").text) == []
    assert usage_of(gateway, mine.keys["main"], f"transaction={their_transaction}") == []
    refused = mine.client.get("/console/logs?transaction=twelve")
    assert refused.status_code == 400 and "&#39;transaction&#39; must be a transaction id (an integer)." in refused.text
    mine.client.close()
    theirs.client.close()


def test_pages_go_older_and_newer(gateway, mail_server):
    """56 ledger rows (the first credit and 55 more): a page of 50, an older one of 6, and back."""
    customer = console_customer(gateway, mail_server, credit_usd="1")
    for cents in range(1, 56):
        gateway.cli("credit", customer.client.email, f"0.{cents:02d}", "--reason", f"credit {cents}")
    first = customer.client.get("/console/transactions").text
    newest = listed(first)
    assert len(newest) == 50 and newest[0][2:] == ("$0.55", "credit 55") and newest[-1][3] == "credit 6"
    assert "Newer" not in first
    older_link = html.unescape(re.search(r'href="(\?[^"]+)" rel="next"', first).group(1))
    older = customer.client.get(f"/console/transactions{older_link}").text
    assert [row[3] for row in listed(older)] == [f"credit {n}" for n in range(5, 0, -1)] + ["test credit"]
    assert "Older" not in older
    newer_link = html.unescape(re.search(r'href="(\?[^"]+)" rel="prev"', older).group(1))
    assert listed(customer.client.get(f"/console/transactions{newer_link}").text) == newest
    customer.client.close()


def test_another_accounts_transactions_are_not_listed(gateway, mail_server):
    mine = console_customer(gateway, mail_server, credit_usd="2")
    theirs = console_customer(gateway, mail_server, credit_usd="3")
    their_ids = [item["id"] for item in api_get(gateway, theirs.keys["main"], "/api/v1/transactions")["transactions"]]
    my_ids = [item["id"] for item in api_get(gateway, mine.keys["main"], "/api/v1/transactions")["transactions"]]
    assert len(my_ids) == 1 and my_ids[0] < their_ids[0]
    for path, expected in (("/console/transactions", my_ids), (f"/console/transactions?before={their_ids[0] + 1}", my_ids),
                           (f"/console/transactions?after={their_ids[0] - 1}", [])):
        assert [row[0] for row in listed(mine.client.get(path).text)] == expected, path
    assert "$3.00" not in mine.client.get("/console/transactions").text
    mine.client.close()
    theirs.client.close()


def test_an_empty_account_and_signed_out(gateway, mail_server):
    customer = console_customer(gateway, mail_server, key_names=(), credit_usd="0")
    assert "No transactions yet." in customer.client.get("/console/transactions").text
    customer.client.close()
    client = ConsoleClient(gateway)
    response = client.get("/console/transactions", follow=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login?next=")
    client.close()
