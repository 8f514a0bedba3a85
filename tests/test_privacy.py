"""Prompt and completion text is never stored: a canary sent in prompts appears nowhere in
Redis, SQL, logs or any file under TOLLGATE_HOME afterwards."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import sqlalchemy as sa
from openai import OpenAI


def everything_in_redis(r) -> str:
    parts = []
    for key in r.scan_iter("*", count=10_000):
        kind = r.type(key)
        parts.append(key)
        if kind == "string":
            parts.append(r.get(key) or "")
        elif kind == "hash":
            parts.append(json.dumps(r.hgetall(key)))
        elif kind == "set":
            parts.append(json.dumps(sorted(r.smembers(key))))
        elif kind == "zset":
            parts.append(json.dumps(r.zrange(key, 0, -1, withscores=True)))
        elif kind == "stream":
            parts.append(json.dumps(r.xrange(key)))
        elif kind == "list":
            parts.append(json.dumps(r.lrange(key, 0, -1)))
    return "\n".join(parts)


def everything_in_sql(database_url: str) -> str:
    engine = sa.create_engine(database_url)
    parts = []
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                parts.append(repr(tuple(row)))
    engine.dispose()
    return "\n".join(parts)


def everything_on_disk(home) -> bytes:
    return b"\n".join(p.read_bytes() for p in home.rglob("*") if p.is_file() and not p.is_socket())


def test_prompt_canary_appears_nowhere(gateway, gw_customer):
    _, key = gw_customer
    canary = f"CANARY-{uuid.uuid4().hex}"
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=key)
    prompt = [{"role": "user", "content": f"Please repeat {canary} back to me."}]
    client.chat.completions.create(model="sandbox-chat", messages=prompt)
    list(client.chat.completions.create(model="sandbox-chat", messages=prompt, stream=True))
    # Failing requests must not leak it either: unknown model, malformed JSON, no key. (The name of
    # an unknown model is the customer's log's, as asked: the prompt never is.)
    for body, headers in (
        (json.dumps({"model": "no-such-model", "messages": prompt}).encode(), {"Authorization": f"Bearer {key}"}),
        (f'{{"model": "sandbox-chat", "messages": "{canary}'.encode(), {"Authorization": f"Bearer {key}"}),
        (json.dumps({"model": "sandbox-chat", "messages": prompt}).encode(), {}),
    ):
        req = urllib.request.Request(f"{gateway.url}/v1/chat/completions", data=body, headers=headers)
        try:
            urllib.request.urlopen(req, timeout=10).read()
        except urllib.error.HTTPError as e:
            e.read()
    gateway.wait_drained()
    r = gateway.redis()
    r.execute_command("BGREWRITEAOF")  # whatever Redis persists must be clean too

    assert canary not in everything_in_redis(r)
    assert canary not in everything_in_sql(gateway.database_url)
    assert canary.encode() not in everything_on_disk(gateway.home)
