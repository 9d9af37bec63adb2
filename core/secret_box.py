"""Seals secrets (platform tokens) for the database with Fernet, so no row holds one in clear."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from core.errors import ConfigError


class SecretBox:
    """Encrypts and authenticates bytes with a key from THREADLINE_SECRET_KEY.

    The setting may be a Fernet key (32 url-safe base64 bytes) or any passphrase of at least
    32 characters, from which a key is derived (SHA-256). Sealed values carry a timestamp and
    an HMAC; a value sealed under another key does not open.
    """

    SETTING = "THREADLINE_SECRET_KEY"

    def __init__(self, secret: str) -> None:
        self._fernet = Fernet(_key_of(secret))

    def seal(self, plain: bytes) -> bytes:
        return self._fernet.encrypt(plain)

    def open(self, sealed: bytes) -> bytes:
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken:
            raise ConfigError(
                self.SETTING, "a stored secret does not open with this key (was the key changed?)"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"


def _key_of(secret: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(secret.encode())
        if len(raw) == 32:
            return secret.encode()
    except ValueError:
        pass
    if len(secret) < 32:
        raise ConfigError(
            SecretBox.SETTING,
            "must be a Fernet key or a passphrase of at least 32 characters",
        )
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
