"""Reconciliation: proves the money invariants on Redis and the SQL ledger.

Drift: Redis `bal` must equal the SQL balance of the transactions already applied to Redis, minus
the usage Redis debited that SQL has not recorded yet (records still in the usage streams), minus
the cost of the account's quarantined records (Redis debited them when it settled them; SQL has no
usage row for them). A key's Redis `spent` must equal Σ cost of its usage, the same way. Each
shard's hot state and stream are read in one Redis script — one atomic snapshot — and SQL after
it, in a new transaction, one statement per account and key; records the worker drains in
between are found in SQL by request id, so a live gateway reconciles exactly.

Besides drift, each invariant that does not hold is a Violation: a balance below zero (Redis,
SQL), `held` below zero (account, key, a node's lease), a key spent above its limit (Redis
`spent`, SQL Σ usage cost), a usage row charged above its hold. Quarantined records fail
reconciliation too. Overage (provider-reported cost above the hold, not charged) is listed per
account, for information.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import total
from ..hot import connection, redis_keys, usage_records
from ..hot.expected import expected_balance, expected_spent
from ..models import Account, ApiKey, Usage, UsageQuarantine
from ..money import format_usd
from ..settings import Settings
from . import usage_drain

# KEYS: the shard's usage stream, its account hashes, then for each of its keys the key hash and
# the key's lease hash (every key the script reads is declared, as Redis Cluster requires).
# ARGV: the number of account hashes.
# Returns {{bal, held} per account, {{spent, limit, held}, lease node/value pairs} per key,
# every stream entry's field/value pairs}; missing values are false.
SNAPSHOT = """
local accounts, keys, entries = {}, {}, {}
local n = tonumber(ARGV[1])
for i = 2, n + 1 do
  accounts[#accounts + 1] = redis.call('HMGET', KEYS[i], 'bal', 'held')
end
for i = n + 2, #KEYS, 2 do
  keys[#keys + 1] = {redis.call('HMGET', KEYS[i], 'spent', 'limit', 'held'), redis.call('HGETALL', KEYS[i + 1])}
end
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  entries[#entries + 1] = entry[2]
end
return {accounts, keys, entries}
"""

# check -> what does not hold
CHECKS = {
    "negative_balance": "a balance below zero",
    "negative_held": "held below zero",
    "key_over_limit": "a key spent above its limit",
    "charged_above_hold": "a request charged above its hold",
}


@dataclass(frozen=True)
class Drift:
    account_id: int
    email: str
    redis_nano: int | None  # None: the account is not in Redis
    expected_nano: int
    undrained: int
    quarantined: int  # the account's quarantined records
    quarantined_nano: int  # Σ cost of those whose cost could be read (in expected_nano)
    overage_nano: int  # Σ overage of its usage rows

    @property
    def drift_nano(self) -> int | None:
        return None if self.redis_nano is None else self.redis_nano - self.expected_nano

    @property
    def ok(self) -> bool:
        return self.drift_nano == 0 or (self.redis_nano is None and self.expected_nano == 0)

    def as_dict(self) -> dict:
        return {"account_id": self.account_id, "email": self.email, "redis_nano": self.redis_nano,
                "expected_nano": self.expected_nano, "drift_nano": self.drift_nano,
                "undrained_records": self.undrained, "quarantined_records": self.quarantined,
                "quarantined_nano": self.quarantined_nano, "overage_nano": self.overage_nano, "ok": self.ok}


@dataclass(frozen=True)
class KeyDrift:
    key_id: int
    account_id: int
    redis_nano: int  # Redis `spent`
    expected_nano: int

    @property
    def drift_nano(self) -> int:
        return self.redis_nano - self.expected_nano

    def as_dict(self) -> dict:
        return {"key_id": self.key_id, "account_id": self.account_id, "redis_nano": self.redis_nano,
                "expected_nano": self.expected_nano, "drift_nano": self.drift_nano}


@dataclass(frozen=True)
class Violation:
    check: str  # a CHECKS key
    store: str  # "redis" or "sql"
    subject: str  # where: a Redis hash and field, or SQL rows
    account_id: int | None
    key_id: int | None
    value_nano: int  # what was found
    bound_nano: int  # what it may be at most (a limit, a hold) or at least (0)

    def describe(self) -> str:
        """'a balance below zero: redis tg:{s0}:acct:3 bal is -$0.000000007 (bound $0.00)'"""
        return (f"{CHECKS[self.check]}: {self.store} {self.subject} is {format_usd(self.value_nano)} "
                f"(bound {format_usd(self.bound_nano)})")

    def as_dict(self) -> dict:
        return {"check": self.check, "store": self.store, "subject": self.subject, "account_id": self.account_id,
                "key_id": self.key_id, "value_nano": self.value_nano, "bound_nano": self.bound_nano}


@dataclass(frozen=True)
class Report:
    accounts: list[Drift]
    keys: list[KeyDrift]  # the keys whose `spent` drifts (keys not in Redis are not listed)
    violations: list[Violation]
    quarantined: list[dict]  # usage_drain.quarantine_item of every quarantined record

    @property
    def drifting(self) -> list[Drift]:
        return [row for row in self.accounts if not row.ok]

    @property
    def overage_nano(self) -> int:
        return sum(row.overage_nano for row in self.accounts)

    @property
    def ok(self) -> bool:
        return not (self.drifting or self.keys or self.violations or self.quarantined)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "accounts": [row.as_dict() for row in self.accounts], "drifting": len(self.drifting),
                "keys_drifting": [row.as_dict() for row in self.keys],
                "violations": [violation.as_dict() for violation in self.violations],
                "quarantined": self.quarantined, "overage_nano": self.overage_nano}


def reconcile(session: Session, settings: Settings) -> Report:
    accounts = session.execute(select(Account.id, Account.email).order_by(Account.id)).all()
    keys = session.execute(select(ApiKey.id, ApiKey.account_id).order_by(ApiKey.id)).all()
    overage = dict(session.execute(
        select(Usage.account_id, total(Usage.overage_nano)).where(Usage.overage_nano > 0).group_by(Usage.account_id)
    ).all())
    members: dict[int, list] = defaultdict(list)
    for account_id, email in accounts:
        members[redis_keys.shard_of(account_id, settings.redis_shards)].append((account_id, email))
    shard_keys: dict[int, list] = defaultdict(list)
    for key_id, account_id in keys:
        shard_keys[redis_keys.shard_of(account_id, settings.redis_shards)].append((key_id, account_id))
    snapshot = connection.client(settings).register_script(SNAPSHOT)
    drifts, key_drifts, violations = [], [], []
    for shard in sorted(members):
        account_hashes = [redis_keys.account(shard, account_id) for account_id, _email in members[shard]]
        key_hashes = [(redis_keys.key_state(shard, key_id), redis_keys.lease(shard, key_id))
                      for key_id, _account_id in shard_keys[shard]]
        account_states, key_states, entries = snapshot(
            keys=[redis_keys.usage_stream(shard), *account_hashes, *(name for pair in key_hashes for name in pair)],
            args=[len(account_hashes)])
        session.rollback()  # SQL's snapshot must be younger than Redis's: start a new one
        pending: dict[int, dict[str, int]] = defaultdict(dict)
        pending_by_key: dict[int, dict[str, int]] = defaultdict(dict)
        for flat in entries:
            for record in usage_records.valid_records(dict(zip(flat[::2], flat[1::2]))):
                pending[record.account_id][record.request_id] = record.cost_nano
                pending_by_key[record.key_id][record.request_id] = record.cost_nano
        quarantined = _quarantined(session, settings, shard, pending)
        for (account_id, email), name, (bal, held) in zip(members[shard], account_hashes, account_states):
            count, quarantined_nano = quarantined.get(account_id, (0, 0))
            expected = expected_balance(session, account_id, pending[account_id])
            drifts.append(Drift(account_id, email, _int(bal), expected, len(pending[account_id]), count,
                                quarantined_nano, overage.get(account_id, 0)))
            violations += _below_zero("negative_balance", f"{name} bal", bal, account_id, None)
            violations += _below_zero("negative_held", f"{name} held", held, account_id, None)
        for (key_id, account_id), (key_name, lease_name), ((spent, limit, held), lease) in zip(
                shard_keys[shard], key_hashes, key_states):
            if spent is not None:
                expected = expected_spent(session, key_id, pending_by_key[key_id])
                if int(spent) != expected:
                    key_drifts.append(KeyDrift(key_id, account_id, int(spent), expected))
            if limit is not None and spent is not None and int(spent) > int(limit):
                violations.append(Violation("key_over_limit", "redis", f"{key_name} spent", account_id, key_id,
                                            int(spent), int(limit)))
            violations += _below_zero("negative_held", f"{key_name} held", held, account_id, key_id)
            for node, leased in zip(lease[::2], lease[1::2]):
                violations += _below_zero("negative_held", f"{lease_name} {node}", leased, account_id, key_id)
    violations += _sql_violations(session)
    listed = session.scalars(select(UsageQuarantine).order_by(UsageQuarantine.id))
    return Report(drifts, key_drifts, violations, [usage_drain.quarantine_item(row) for row in listed])


def _quarantined(session: Session, settings: Settings, shard: int,
                 pending: dict[int, dict[str, int]]) -> dict[int, tuple[int, int]]:
    """account id -> (how many quarantined records, Σ their cost where it could be read) of the
    shard's accounts. A record the snapshot still had in the stream (quarantined since) is counted
    there, among the undrained, not here."""
    rows = session.execute(
        select(UsageQuarantine.account_id, UsageQuarantine.request_id, UsageQuarantine.cost_nano)
        .where(UsageQuarantine.account_id.is_not(None), UsageQuarantine.account_id % settings.redis_shards == shard)
    )
    found: dict[int, tuple[int, int]] = {}
    for account_id, request_id, cost in rows:
        count, nano = found.get(account_id, (0, 0))
        counted = cost is not None and request_id not in pending.get(account_id, {})
        found[account_id] = (count + 1, nano + (cost if counted else 0))
    return found


def _sql_violations(session: Session) -> list[Violation]:
    violations = [
        Violation("negative_balance", "sql", f"account {account_id} balance_nano", account_id, None, balance, 0)
        for account_id, balance in session.execute(
            select(Account.id, Account.balance_nano).where(Account.balance_nano < 0).order_by(Account.id))
    ]
    spent = func.sum(Usage.cost_nano)
    violations += [
        Violation("key_over_limit", "sql", f"key {key_id} Σ usage cost_nano", account_id, key_id, int(key_spent),
                  limit)
        for key_id, account_id, limit, key_spent in session.execute(
            select(ApiKey.id, ApiKey.account_id, ApiKey.limit_nano, spent)
            .join(Usage, Usage.key_id == ApiKey.id)
            .where(ApiKey.limit_nano.is_not(None))
            .group_by(ApiKey.id, ApiKey.account_id, ApiKey.limit_nano)
            .having(spent > ApiKey.limit_nano)
            .order_by(ApiKey.id))
    ]
    violations += [
        Violation("charged_above_hold", "sql", f"usage {request_id} cost_nano", account_id, key_id, cost, hold)
        for request_id, account_id, key_id, cost, hold in session.execute(
            select(Usage.request_id, Usage.account_id, Usage.key_id, Usage.cost_nano, Usage.hold_nano)
            .where(Usage.cost_nano > Usage.hold_nano).order_by(Usage.id))
    ]
    return violations


def _below_zero(check: str, subject: str, value: str | None, account_id: int | None,
                key_id: int | None) -> list[Violation]:
    """The Redis value as a violation if it is below zero."""
    if value is None or int(value) >= 0:
        return []
    return [Violation(check, "redis", subject, account_id, key_id, int(value), 0)]


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)
