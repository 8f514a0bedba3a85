"""The installation secret and what is derived from it: encryption of upstream provider keys.

The secret is TOLLGATE_SECRET_KEY, or else generated once into $TOLLGATE_HOME/secret.key (0600).
Losing it makes stored provider keys unreadable (re-enter them with `tollgate provider add`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .settings import Settings


class SecretError(RuntimeError):
    pass


def secret_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.secret_key_file
    if not path.exists():
        _create_secret_file(path)
    value = path.read_text().strip()
    if not value:
        raise SecretError(f"{path} is empty; delete it to generate a new secret")
    return value.encode()


def _create_secret_file(path: Path) -> None:
    """Write a new secret atomically; if another process got there first, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)


def derive(settings: Settings, purpose: bytes) -> bytes:
    """32 bytes for one purpose, so no two uses share key material."""
    return hmac.new(secret_key(settings), purpose, hashlib.sha256).digest()


def _fernet(settings: Settings) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive(settings, b"tollgate provider keys")))


def encrypt(settings: Settings, plaintext: str) -> str:
    return _fernet(settings).encrypt(plaintext.encode()).decode()


def decrypt(settings: Settings, token: str) -> str:
    try:
        return _fernet(settings).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretError(
            "cannot decrypt a stored provider key: the secret key changed; "
            "re-enter it with `tollgate provider add`"
        ) from None
