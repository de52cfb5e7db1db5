"""Secrets the database must never hold in the clear, encrypted with keys it never sees.

``SIGNING_KEY_ENCRYPTION_KEY`` (or ``SIGNING_KEY_ENCRYPTION_KEY_FILE``) holds one or more Fernet keys
(``cryptography``: AES-128-CBC with HMAC-SHA256, authenticated), newest first. MultiFernet encrypts with
the first and decrypts with any, so the key can be rotated without downtime (docs/signing-keys.md):

- the token signing keys' private JWKs (``signing_keys.encrypted_jwk``), with the keys as given;
- stored idempotent replies that carry a secret shown once (an app link's ``link_code``), with a key
  derived from each (HKDF-SHA256, its own ``info``), so one ciphertext is never valid for the other use.

A refresh token's successor pair is sealed with a key derived from that refresh token itself
(``sealed_by``): only a caller holding the old token can open it, during the rotation grace.
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.settings import Settings

KEY_FILE_NAME = "signing-key-encryption.key"


class EncryptionKeyError(RuntimeError):
    """SIGNING_KEY_ENCRYPTION_KEY is missing or is not a Fernet key."""


def configured_keys(settings: Settings) -> list[str]:
    """The Fernet keys the settings name, newest first (empty when none is configured)."""
    if settings.signing_key_encryption_key is not None:
        raw = settings.signing_key_encryption_key.get_secret_value().replace("\n", ",").split(",")
    elif settings.signing_key_encryption_key_file is not None:
        try:
            raw = settings.signing_key_encryption_key_file.read_text().split()
        except OSError as exc:
            raise EncryptionKeyError(f"SIGNING_KEY_ENCRYPTION_KEY_FILE cannot be read: {exc.strerror}") from exc
    else:
        return []
    keys = [k.strip() for k in raw if k.strip()]
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except ValueError as exc:
            raise EncryptionKeyError(
                f"SIGNING_KEY_ENCRYPTION_KEY: key {position} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "`strengths-api keys new-encryption-key` prints one)") from exc
    return keys


def new_key() -> str:
    return Fernet.generate_key().decode()


def ensure_key_file(path: Path) -> Path:
    """The embedded default: a key generated once into the data folder (mode 0600), never overwritten.
    Written aside and hard-linked into place, so a concurrent starter reads either nothing or the whole key."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (new_key() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileExistsError):  # another process made it first: its key stands
            os.link(temp, path)
    finally:
        temp.unlink()
    return path


class AtRest:
    """The ciphers made from the configured keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise EncryptionKeyError(
                "SIGNING_KEY_ENCRYPTION_KEY (or SIGNING_KEY_ENCRYPTION_KEY_FILE) must be set when DATABASE_URL is: "
                "the token signing keys are stored encrypted with it (docs/signing-keys.md)")
        self.signing_keys = MultiFernet([Fernet(k) for k in keys])
        self.replies = MultiFernet([Fernet(_derive(base64.urlsafe_b64decode(k), b"idempotent-replies"))
                                    for k in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> AtRest:
        return cls(configured_keys(settings))


def _derive(secret: bytes, purpose: bytes) -> bytes:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"strengths-api/" + purpose).derive(secret)
    return base64.urlsafe_b64encode(key)


def sealed_by(secret: str) -> Fernet:
    """A cipher keyed by a high-entropy secret the caller holds (a refresh token), not by anything stored."""
    return Fernet(_derive(secret.encode(), b"refresh-successor"))
