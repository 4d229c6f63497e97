"""A reader profile's key: the secret in `/r/<key>/` that stands for the reader, as the API token
stands for the operator.

A key is 192 random bits, URL-safe (`secrets.token_urlsafe`), and the server keeps only its SHA-256
digest: a fast hash is enough for a random secret of this size (nothing to guess from a dictionary),
and a stolen store gives no key. Digests are compared in constant time. Logs, metrics and `/status`
name a profile by its short id, a few characters of another hash of the digest, which tells profiles
apart without leading back to the key.
"""

import hashlib
import hmac
import re
import secrets

KEY_BYTES = 24
"""192 bits: the issue's floor is 128."""
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,128}")
"""What may be a key at all: URL-safe base64 of at least 128 bits. Other paths are never looked up."""
SHORT_ID_CHARS = 8


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def could_be_key(text: str) -> bool:
    return KEY_PATTERN.fullmatch(text) is not None


def key_digest(key: str) -> str:
    """The stored form of a key (hex SHA-256)."""
    return hashlib.sha256(key.encode("ascii", "replace")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def short_id(digest: str) -> str:
    """A profile's name in logs and counts: a few characters of a hash of the digest, which tell profiles
    apart and lead back neither to the key nor to the digest the store holds."""
    return hashlib.sha256(b"profile-id:" + digest.encode()).hexdigest()[:SHORT_ID_CHARS]
