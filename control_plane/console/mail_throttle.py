"""The console's mail cannot be used to flood an address: at most MAX_PER_ADDRESS mails to one
address within an hour (a counter in Redis), however they are asked for (sign-ups, resends,
resets, email changes). A mail over it is not sent and the page answers as if it had been — the
pages never tell whether an email has an account, so they do not tell this either — and the log
says so."""
from __future__ import annotations

import hashlib

from ..hot import redis_keys
from ..hot.connection import client
from ..settings import Settings

WINDOW_SECONDS = 60 * 60
MAX_PER_ADDRESS = 5


def allow(settings: Settings, to: str) -> bool:
    """Count one mail to `to`; False when the address had its MAX_PER_ADDRESS this hour."""
    name = redis_keys.mail_to_address(hashlib.sha256(to.strip().lower().encode()).hexdigest())
    pipe = client(settings).pipeline(transaction=True)  # one key: atomic on a cluster too
    pipe.incr(name)
    pipe.expire(name, WINDOW_SECONDS, nx=True)
    sent, _ = pipe.execute()
    return sent <= MAX_PER_ADDRESS
