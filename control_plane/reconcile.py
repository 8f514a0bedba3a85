"""Reconciliation: every account's Redis balance against its SQL ledger.

Redis `bal` must equal the SQL balance of the transactions already applied to Redis, minus the
usage Redis debited that SQL has not recorded yet (records still in the usage streams). Each
shard's balances and stream are read in one Redis script — one atomic snapshot — and SQL after
it, in a new transaction, one statement per account; records the worker drains in between are found in SQL by
request id, so a live gateway reconciles exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import hot_state, redis_keys, usage_records
from .models import Account
from .settings import Settings

# KEYS: the shard's usage stream. ARGV: the shard's account hash keys.
# Returns {balances (false when missing)..., then every stream entry's packed record}.
SNAPSHOT = """
local out = {}
for i = 1, #ARGV do
  out[i] = redis.call('HGET', ARGV[i], 'bal') or false
end
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'r' then out[#out + 1] = fields[j + 1] end
  end
end
return out
"""


@dataclass(frozen=True)
class Drift:
    account_id: int
    email: str
    redis_nano: int | None  # None: the account is not in Redis
    expected_nano: int
    undrained: int

    @property
    def drift_nano(self) -> int | None:
        return None if self.redis_nano is None else self.redis_nano - self.expected_nano

    @property
    def ok(self) -> bool:
        return self.drift_nano == 0 or (self.redis_nano is None and self.expected_nano == 0)

    def as_dict(self) -> dict:
        return {"account_id": self.account_id, "email": self.email, "redis_nano": self.redis_nano,
                "expected_nano": self.expected_nano, "drift_nano": self.drift_nano,
                "undrained_records": self.undrained, "ok": self.ok}


def reconcile(session: Session, settings: Settings) -> list[Drift]:
    accounts = session.execute(select(Account.id, Account.email).order_by(Account.id)).all()
    by_shard: dict[int, list] = {}
    for account_id, email in accounts:
        by_shard.setdefault(redis_keys.shard_of(account_id, settings.redis_shards), []).append((account_id, email))
    client = hot_state.client(settings)
    snapshot = client.register_script(SNAPSHOT)
    result = []
    for shard, members in sorted(by_shard.items()):
        reply = snapshot(keys=[redis_keys.usage_stream(shard)],
                         args=[redis_keys.account(shard, account_id) for account_id, _ in members])
        balances, packed = reply[:len(members)], reply[len(members):]
        session.rollback()  # SQL's snapshot must be younger than Redis's: start a new one
        pending: dict[int, dict[str, int]] = {}
        for text in packed:
            for line in text.split("\n"):
                try:
                    record = usage_records.parse_packed(line)
                except ValueError:
                    continue
                pending.setdefault(record.account_id, {})[record.request_id] = record.cost_nano
        for (account_id, email), bal in zip(members, balances):
            undrained = pending.get(account_id, {})
            expected = hot_state.expected_balance(session, account_id, undrained)
            result.append(Drift(account_id, email, None if bal is None else int(bal), expected, len(undrained)))
    return result
