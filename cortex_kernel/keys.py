"""API keys: hashed for storage in configuration, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def key_digest(key: str) -> str:
    """The form a key is stored in ``[auth]``: ``sha256:HEX``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class KeySet:
    """A set of key digests that answers "is this presented key one of them?"."""

    def __init__(self, digests: Iterable[str]) -> None:
        self._digests = [d.encode() for d in digests]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        candidate = key_digest(presented).encode()
        # Compare against every digest so timing does not reveal which one matched.
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key a client sent, as ``Authorization: Bearer KEY`` or ``x-api-key: KEY``."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return key or None
