"""Billing profiles (billing/profiles.py) and the admin API's billing-profile and invoices endpoints:
values cleaned or refused at their field, changes audited, invoices listed with exact figures."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from admin_client import make_admin_key
from sqlalchemy import select

from control_plane import db
from control_plane import settings as settings_module
from control_plane.accounts import accounts
from control_plane.app import create_app
from control_plane.billing import invoices, profiles
from control_plane.deposits import ledger as deposit_ledger
from control_plane.models import AuditEntry, utcnow

API = "/api/admin/v1"
EMPTY = {"legal_name": "", "address": "", "country": "", "tax_id": "", "invoice_email": ""}


@pytest.fixture
def tax_settings(tollgate_env):
    return settings_module.load({**tollgate_env, "TOLLGATE_TAX_RULES": "DE:19,*:0"})


@pytest.fixture
def call(tax_settings):
    client = create_app({"TESTING": True, "TOLLGATE_SETTINGS": tax_settings}).test_client()
    keys = {False: make_admin_key(tax_settings), True: make_admin_key(tax_settings, read_only=True)}

    def call(method: str, path: str, body=None, read_only=False):
        response = client.open(f"{API}{path}", method=method, json=body,
                               headers={"Authorization": f"Bearer {keys[read_only]}"})
        return response.status_code, json.loads(response.get_data(as_text=True), parse_float=Decimal)

    return call


@pytest.fixture
def account_id(tax_settings) -> int:
    with db.session_scope(tax_settings) as session:
        return accounts.create_account(session, "firma@example.com").id


def test_a_profile_is_saved_cleaned(settings, account_id):
    with db.session_scope(settings) as session:
        profile = profiles.save(session, account_id, legal_name="  Firma GmbH ", address="\r\n Str. 1 \r\n\r\n10115 Berlin \n",
                                country=" de", tax_id=" DE123456789 ", invoice_email=" rechnung@firma.test ")
    assert (profile.legal_name, profile.address, profile.country, profile.tax_id, profile.invoice_email) == (
        "Firma GmbH", "Str. 1\n\n10115 Berlin", "DE", "DE123456789", "rechnung@firma.test")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("legal_name", "x" * 201, "The legal name is at most 200 characters"),
    ("legal_name", "two\nlines", "The legal name is one line of printable characters"),
    ("address", "x" * 1001, "The address is at most 1000 characters"),
    ("address", "bell\x07", "The address is lines of printable characters"),
    ("country", "UK", "Give the country's two-letter ISO 3166 code, e.g. DE, or leave it empty"),
    ("country", "DEU", "Give the country's two-letter ISO 3166 code, e.g. DE, or leave it empty"),
    ("tax_id", "x" * 65, "The tax id is at most 64 characters"),
    ("tax_id", "DE\t1", "The tax id is one line of printable characters"),
    ("invoice_email", "not an address", ("Give an e-mail address such as billing@example.com, or leave it empty "
                                        "to use the account's")),
    ("legal_name", 7, "Give text"),
])
def test_a_bad_profile_field_is_refused_by_name(settings, account_id, field, value, message):
    with pytest.raises(profiles.ProfileError) as refused, db.session_scope(settings) as session:
        profiles.save(session, account_id, **{**EMPTY, field: value})
    assert (refused.value.field, str(refused.value)) == (field, message)
    with db.read_session(settings) as session:
        assert profiles.get(session, account_id) is None


def test_the_admin_api_reads_and_replaces_a_profile_and_audits_it(tax_settings, call, account_id):
    assert call("GET", f"/accounts/{account_id}/billing-profile") == (
        200, {"account_id": account_id, **EMPTY, "updated_at": None})
    body = {"legal_name": "Firma GmbH", "address": "Str. 1\n10115 Berlin", "country": "de", "tax_id": "DE1"}
    status, saved = call("PUT", f"/accounts/{account_id}/billing-profile", body)
    assert status == 200
    assert saved | {"updated_at": ""} == {"account_id": account_id, "legal_name": "Firma GmbH",
                                          "address": "Str. 1\n10115 Berlin", "country": "DE", "tax_id": "DE1",
                                          "invoice_email": "", "updated_at": ""}
    assert call("GET", f"/accounts/{account_id}/billing-profile", read_only=True) == (200, saved)
    status, replaced = call("PUT", f"/accounts/{account_id}/billing-profile", {"legal_name": "Firma AG"})
    assert (replaced["legal_name"], replaced["country"], replaced["tax_id"]) == ("Firma AG", "", "")
    with db.read_session(tax_settings) as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.entity == "billing_profile")
                                       .order_by(AuditEntry.id)))
    assert [(entry.action, entry.entity_id) for entry in entries] == [("create", str(account_id)),
                                                                      ("update", str(account_id))]
    assert entries[0].actor.startswith("admin key ")
    assert json.loads(entries[1].before)["legal_name"] == "Firma GmbH"
    assert json.loads(entries[1].after)["legal_name"] == "Firma AG"


@pytest.mark.parametrize(("body", "field"), [({"country": "XX"}, "country"), ({"vat": "DE1"}, "vat"),
                                             ({"invoice_email": "@"}, "invoice_email")])
def test_a_bad_profile_is_a_400_naming_the_field(call, account_id, body, field):
    status, answer = call("PUT", f"/accounts/{account_id}/billing-profile", body)
    assert status == 400 and answer["error"]["code"] == "invalid_parameter"
    assert f"'{field}'" in answer["error"]["message"]
    assert call("GET", f"/accounts/{account_id}/billing-profile")[1]["updated_at"] is None


def test_a_read_only_key_cannot_change_a_profile(call, account_id):
    assert call("PUT", f"/accounts/{account_id}/billing-profile", {"legal_name": "x"}, read_only=True)[0] == 403


def test_an_unknown_account_has_no_profile_or_invoices(call):
    assert call("GET", "/accounts/999999/billing-profile")[0] == 404
    assert call("PUT", "/accounts/999999/billing-profile", {})[0] == 404
    assert call("GET", "/accounts/999999/invoices")[0] == 404


def test_the_admin_api_lists_an_accounts_invoices_newest_first(tax_settings, call, account_id):
    call("PUT", f"/accounts/{account_id}/billing-profile", {"legal_name": "Firma GmbH", "country": "DE"})
    for n, cents in enumerate((5_000, 2_000)):
        with db.session_scope(tax_settings) as session:
            deposit_ledger.credit_topup(session, tax_settings, account_id, cents * 10_000_000, f"payment:evt_{n}",
                                        "Card top-up")
    invoices.issue_pending_now(tax_settings)
    status, page = call("GET", f"/accounts/{account_id}/invoices?limit=1", read_only=True)
    assert status == 200 and page["has_more"] is True
    [newest] = page["data"]
    year = utcnow().year
    assert newest | {"issued_at": "", "paid_at": "", "transaction_id": 0} == {
        "number": f"TG-{year}-000002", "kind": "invoice", "refers_to": None, "transaction_id": 0,
        "issued_at": "", "paid_at": "", "time_zone": "UTC", "currency": "USD",
        "issuer": {"name": "Tollgate", "address": "", "country": "", "tax_id": "", "email": ""},
        "customer": {"name": "Firma GmbH", "address": "", "country": "DE", "tax_id": "", "email": "firma@example.com"},
        "lines": [{"kind": "credit", "description": "Prepaid API credit (payment on account)", "amount": 20,
                   "amount_nano": 20_000_000_000}],
        "tax_rate": "19", "reverse_charge": False, "note": "",
        "net": Decimal("16.806722689"), "net_nano": 16_806_722_689, "tax": Decimal("3.193277311"),
        "tax_nano": 3_193_277_311, "total": 20, "total_nano": 20_000_000_000,
        "payment": {"method": "card", "reference": "evt_1"}}
    _, older = call("GET", f"/accounts/{account_id}/invoices?before={page['next_before']}")
    assert [item["number"] for item in older["data"]] == [f"TG-{year}-000001"]
    assert older["data"][0]["lines"][1] == {"kind": "discount", "description": "Top-up bonus 2%",
                                            "amount": -1, "amount_nano": -1_000_000_000}
