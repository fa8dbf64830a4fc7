"""Secrets at rest (the reference's SecureKeyManager): Fernet-encrypted model fields.

FIELD_ENCRYPTION_KEY is a list of Fernet keys; the first encrypts, all decrypt (rotation with
MultiFernet). With no key configured, one is derived from SECRET_KEY with HKDF-SHA256 so that the
embedded default works; changing SECRET_KEY then makes stored secrets unreadable, which is why
production should set FIELD_ENCRYPTION_KEY.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

from costmonitor.errors import ConfigurationError

_HKDF_INFO = b"costmonitor.field-encryption.v1"


def derived_key(secret_key: str) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    try:
        fernets = [Fernet(k.encode() if isinstance(k, str) else k) for k in keys if k]
    except ValueError as exc:
        raise ConfigurationError("FIELD_ENCRYPTION_KEY holds a key that is not a Fernet key "
                                 "(32 url-safe base64 bytes; make one with Fernet.generate_key()).") from exc
    if not fernets:
        fernets = [Fernet(derived_key(secret_key))]
    return MultiFernet(fernets)


def cipher() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEY
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",")]
    return _multifernet(tuple(keys), settings.SECRET_KEY)


def encrypt_text(plain: str) -> str:
    return cipher().encrypt(plain.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return cipher().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ConfigurationError("A stored secret cannot be decrypted: FIELD_ENCRYPTION_KEY (or SECRET_KEY) "
                                 "changed without keeping the old key in the list.") from exc


def rotate_text(token: str) -> str:
    """Re-encrypt a token with the first (current) key."""
    return cipher().rotate(token.encode()).decode()


class EncryptedJSONField(models.TextField):
    """A dict stored as one Fernet token; plain JSON in Python, ciphertext in the database."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("default", None)
        kwargs.pop("blank", None)
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return {}
        return json.loads(decrypt_text(value))

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        if value in (None, ""):
            return {}
        if value.startswith("gAAAA"):  # a Fernet token, e.g. from dumpdata
            return json.loads(decrypt_text(value))
        return json.loads(value)

    def get_prep_value(self, value):
        if value is None:
            value = {}
        return encrypt_text(json.dumps(value, sort_keys=True))

    def value_to_string(self, obj):  # dumpdata writes the ciphertext, never the secret
        return self.get_prep_value(self.value_from_object(obj))
