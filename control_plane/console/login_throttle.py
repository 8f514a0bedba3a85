"""Guessing passwords through the console is slowed in Redis: after 5 failed logins to one email
(whether it has an account or not) or 20 from one client address within 15 minutes, every
further attempt — right or wrong — is answered 429 until the window ends. A successful login
clears its email's count; an address's count only runs out."""
from __future__ import annotations

import hashlib

from ..hot import redis_keys
from ..hot.connection import client
from ..settings import Settings

WINDOW_SECONDS = 15 * 60
MAX_PER_EMAIL = 5
MAX_PER_IP = 20


def _keys(email: str, ip: str) -> tuple[str, str]:
    email_hash = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return redis_keys.login_failures_of_email(email_hash), redis_keys.login_failures_of_ip(ip)


def blocked(settings: Settings, email: str, ip: str) -> bool:
    """Whether logins to email, or from ip, must wait."""
    pipe = client(settings).pipeline(transaction=False)  # two keys: two slots on a cluster
    for name in _keys(email, ip):
        pipe.get(name)
    by_email, by_ip = pipe.execute()
    return int(by_email or 0) >= MAX_PER_EMAIL or int(by_ip or 0) >= MAX_PER_IP


def failed(settings: Settings, email: str, ip: str) -> None:
    """Count a failed login; the window starts with the first failure. A counter and its expiry
    go in one transaction (a counter never outlives its window), one per counter: a cluster holds
    the two in different slots."""
    for name in _keys(email, ip):
        pipe = client(settings).pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, WINDOW_SECONDS, nx=True)
        pipe.execute()


def succeeded(settings: Settings, email: str, ip: str) -> None:
    client(settings).delete(_keys(email, ip)[0])
