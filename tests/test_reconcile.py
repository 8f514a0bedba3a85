"""`tollgate reconcile` proves Redis and the SQL ledger agree, and finds drift when they don't."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from openai import OpenAI


def reconcile_rows(gateway, check=True):
    result = gateway.cli("reconcile", "--json", check=check)
    return result, [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_reconcile_reports_no_drift_after_traffic(gateway, gw_customer):
    _, key = gw_customer
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    for _ in range(5):
        client.chat.completions.create(model="sandbox-chat", messages=[{"role": "user", "content": "Hi"}])
    result, rows = reconcile_rows(gateway)  # also correct while records are still undrained
    assert result.returncode == 0
    assert rows and all(row["ok"] and row["drift_nano"] == 0 for row in rows)


def test_reconcile_finds_drift_and_exits_non_zero(gateway):
    key = gateway.create_customer("drifting@example.com", "5")
    r = gateway.redis()
    account_hash = next(k for k in r.scan_iter("tg:{*}:acct:*")
                        if k.endswith(":" + str(_account_id(gateway, "drifting@example.com"))))
    r.hincrby(account_hash, "bal", 7)
    try:
        result, rows = reconcile_rows(gateway, check=False)
        assert result.returncode == 1
        assert [row["drift_nano"] for row in rows if row["email"] == "drifting@example.com"] == [7]
    finally:
        r.hincrby(account_hash, "bal", -7)
    assert reconcile_rows(gateway)[0].returncode == 0


def test_admin_api_reports_reconciliation_and_refuses_customers(gateway, gw_customer):
    _, key = gw_customer
    gateway.cli("account", "create", "admin@example.com", "--admin")
    admin_key = gateway.create_key("admin@example.com")
    body = _get(gateway, admin_key, "/api/v1/admin/reconcile")
    assert body["drifting"] == 0 and body["accounts"]
    try:
        _get(gateway, key, "/api/v1/admin/reconcile")
        raise AssertionError("a customer key read the admin endpoint")
    except urllib.error.HTTPError as e:
        assert e.code == 403


def _get(gateway, key, path):
    req = urllib.request.Request(f"{gateway.url}{path}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())


def _account_id(gateway, email):
    out = gateway.cli("reconcile", "--json").stdout
    return next(json.loads(line)["account_id"] for line in out.splitlines() if json.loads(line)["email"] == email)
