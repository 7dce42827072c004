"""Credentials of a request: ``Bearer <token>`` or Segment's Basic auth (write key, no password).

Returns which configured token matched (its index, a harmless rate-limit key) and never the
secret itself, so nothing downstream can log or label a token by accident.
"""

from __future__ import annotations

import base64
import binascii
import hmac


def presented_secret(authorization: str | None) -> str | None:
    """The secret in an ``Authorization`` header, or ``None`` if absent or malformed."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    if not separator or password:  # Segment's scheme: the write key is the user, no password
        return None
    return user or None


def token_index(authorization: str | None, tokens: tuple[str, ...]) -> int | None:
    """Index of the matching token, compared in constant time; ``None``: refuse (401)."""
    secret = presented_secret(authorization)
    if secret is None:
        return None
    presented = secret.encode()
    match = None
    for index, token in enumerate(tokens):  # no early exit: timing does not reveal which
        if hmac.compare_digest(presented, token.encode()) and match is None:
            match = index
    return match
