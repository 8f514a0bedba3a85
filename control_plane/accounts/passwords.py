"""Console passwords: argon2id hashes (argon2-cffi's recommended parameters). A hash made with
older parameters is replaced at the next successful login, so raising them needs no migration."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 1000  # argon2 takes any length; this only bounds the work a request can ask for

_hasher = PasswordHasher()
# Verified against when there is no account (or no password): a failed login takes as long
# either way, so its time does not tell whether the email has an account.
_UNUSED = _hasher.hash("no account has this password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """Whether password matches the stored hash; False (after as much work) when there is none."""
    try:
        return _hasher.verify(stored or _UNUSED, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)

