"""After Redis restarts from its own files, SQL wins.

Redis acknowledges a write before it reaches its append-only file: killed (SIGKILL, the machine
crashing) it can come back without its last second or two of writes, settlements whose records
the worker had already moved into SQL among them. The journal replay settles again what SQL never
got (journal_replay.py); this corrects the rest. Once per Redis run (INFO server run_id), the
worker reconciles and moves each drifting balance and key spend by its drift. Reconcile's drift is
exact on a live gateway, and everything else moves Redis and SQL together, so the correction is
exact too.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from .. import db
from ..hot import connection, redis_keys
from ..money import format_usd
from ..settings import Settings
from . import reconcile

log = logging.getLogger(__name__)

CLAIM_SECONDS = 300  # a worker that dies mid-repair leaves it to another after this

# KEYS: a hash; ARGV: its field and the (signed) integer to add. Never creates the hash.
CORRECT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
end
return false
"""


@dataclass(frozen=True)
class Correction:
    hash: str
    field: str
    added_nano: int

    def describe(self) -> str:
        return f"{self.hash} {self.field} {'+' if self.added_nano > 0 else ''}{format_usd(self.added_nano)}"


def repair_if_restarted(settings: Settings) -> list[Correction]:
    """The corrections made if Redis restarted from its files since its state last agreed with SQL."""
    redis = connection.client(settings)
    run_id = connection.run_id(settings)
    known = redis.get(redis_keys.REDIS_RUN)
    if known == run_id:
        return []
    if known is not None and not redis.set(redis_keys.restart_repair(run_id), "1", nx=True, ex=CLAIM_SECONDS):
        return []  # another worker is at it
    corrections = []
    if known is not None:  # None: a Redis that agreed before this run was recorded
        try:
            with db.read_session(settings) as session:
                report = reconcile.reconcile(session, settings)
        except Exception:
            redis.delete(redis_keys.restart_repair(run_id))  # for the next try
            raise
        correct = redis.register_script(CORRECT)
        wanted = [(redis_keys.account(redis_keys.shard_of(row.account_id, settings.redis_shards), row.account_id),
                   "bal", -row.drift_nano) for row in report.drifting if row.redis_nano is not None]
        wanted += [(redis_keys.key_state(redis_keys.shard_of(row.account_id, settings.redis_shards), row.key_id),
                    "spent", -row.drift_nano) for row in report.keys]
        for name, field, amount in wanted:
            if correct(keys=[name], args=[field, amount]) is not None:
                corrections.append(Correction(name, field, amount))
    redis.set(redis_keys.REDIS_RUN, run_id)
    return corrections
