"""Visitor tokens (signed by the server) and visitor identity (signed by the site's backend)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from itsdangerous import BadSignature, URLSafeSerializer

IDENTITY_FIELDS = ("name", "email", "plan", "community")


class TokenSigner:
    def __init__(self, secret_key: str) -> None:
        self._secret = secret_key
        self._serializer = URLSafeSerializer(secret_key, salt="chatsvc.visitor")

    def issue(self, visitor_id: str, site: str) -> str:
        return self._serializer.dumps({"v": visitor_id, "s": site})

    def sign_purpose(self, purpose: str, value: str) -> str:
        """A token for one purpose (a CSAT link, say) that says nothing else and cannot be reused for another."""
        return URLSafeSerializer(self._secret, salt=f"chatsvc.{purpose}").dumps(value)

    def verify_purpose(self, purpose: str, token: str) -> str | None:
        try:
            value = URLSafeSerializer(self._secret, salt=f"chatsvc.{purpose}").loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def verify(self, token: str, site: str) -> str | None:
        """The visitor id inside a valid token for this site, else None."""
        try:
            payload = self._serializer.loads(token)
        except BadSignature:
            return None
        if not isinstance(payload, dict) or payload.get("s") != site or not isinstance(payload.get("v"), str):
            return None
        return payload["v"]


def canonical_identity(identity: Mapping[str, object]) -> bytes:
    """The bytes the site's backend signs: the non-empty identity fields as compact, key-sorted JSON."""
    fields = {k: identity[k] for k in IDENTITY_FIELDS if identity.get(k) not in (None, "")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_identity(secret: str, identity: Mapping[str, object]) -> str:
    return hmac.new(secret.encode(), canonical_identity(identity), hashlib.sha256).hexdigest()


def identity_valid(secret: str, identity: Mapping[str, object], signature: str | None) -> bool:
    if not secret or not signature:
        return False
    return hmac.compare_digest(sign_identity(secret, identity), signature.lower())


def hash_token(token: str) -> str:
    """Agent API tokens are random 256-bit strings, so a plain SHA-256 is the right hash for lookup."""
    return hashlib.sha256(token.encode()).hexdigest()
