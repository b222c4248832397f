"""API keys: scoped to one firm, stored as hashes, created and revoked from the command line.

A key reads `kg_<key id>_<secret>`. The secret is 256 random bits, so a single SHA-256 is as
safe to store as a slow password hash and costs microseconds per request; only the hash is
kept. Verified keys are cached and checked again every `CACHE_S / 2` seconds, used or not, so a
revocation takes effect within `CACHE_S`; while the database does not answer, the keys valid at
its last answer keep working (docs/service.md, "Degraded mode").
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update

from kabuguard.service.storage.database import Database
from kabuguard.service.storage.models import api_keys

CACHE_S = 5.0
RETRY_S = 1.0  # after the database failed to answer, requests do not ask it again for this long
FIRM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKEN = re.compile(r"^kg_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")


@dataclass(frozen=True)
class Principal:
    key_id: str
    firm: str
    rate_limit: float | None


class AuthError(Exception):
    """Missing, malformed, unknown or revoked key."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def create_key(db: Database, firm: str, name: str, rate_limit: float | None = None) -> tuple[str, str]:
    """A new key for `firm`: returns (key id, the key itself, shown once)."""
    if not FIRM.match(firm):
        raise ValueError(f"firm {firm!r}: use letters, digits, '_', '.' or '-' (at most 64)")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with db.engine.begin() as conn:
        conn.execute(api_keys.insert().values(key_id=key_id, firm=firm, name=name, secret_sha256=_digest(secret),
                                              rate_limit=rate_limit, created_at=_now()))
    return key_id, f"kg_{key_id}_{secret}"


def list_keys(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        rows = conn.execute(select(api_keys.c.key_id, api_keys.c.firm, api_keys.c.name, api_keys.c.rate_limit,
                                   api_keys.c.created_at, api_keys.c.revoked_at)
                            .order_by(api_keys.c.created_at, api_keys.c.key_id)).mappings().all()
    return [dict(r) for r in rows]


def revoke_key(db: Database, key_id: str) -> bool:
    with db.engine.begin() as conn:
        result = conn.execute(update(api_keys).where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                              .values(revoked_at=_now()))
    return result.rowcount > 0


class KeyCache:
    """Verifies keys against the database, remembering verified ones; `refresh` checks them again."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Principal]] = {}  # token: (verified at, principal)
        self._retry_at = 0.0

    def fresh(self, token: str) -> Principal | None:
        """The key's principal if verified within `CACHE_S` seconds."""
        hit = self._cache.get(token)
        return hit[1] if hit is not None and hit[0] + CACHE_S > time.monotonic() else None

    def stale(self, token: str) -> Principal | None:
        """The key's principal as last verified: used only while the database does not answer, so
        that an outage does not lock out the platforms. `refresh` drops revoked keys, so this is a
        key that was valid when the database last answered."""
        hit = self._cache.get(token)
        return hit[1] if hit is not None else None

    def answering(self) -> bool:
        """False for `RETRY_S` after the database failed to answer: requests then take the cached
        keys without waiting for it, rather than each waiting out the deadline again."""
        return time.monotonic() >= self._retry_at

    def unanswered(self) -> None:
        self._retry_at = time.monotonic() + RETRY_S

    def verify(self, token: str) -> Principal:
        """Check `token` against the database (raises AuthError, or the database's error)."""
        match = _TOKEN.match(token)
        if match is None:
            raise AuthError("malformed API key: expected kg_<id>_<secret>")
        key_id, secret = match.groups()
        row = self.db.key(key_id)
        if row is None or not hmac.compare_digest(row["secret_sha256"], _digest(secret)):
            self._cache.pop(token, None)
            raise AuthError("unknown API key")
        if row["revoked_at"] is not None:
            self._cache.pop(token, None)
            raise AuthError("revoked API key")
        principal = Principal(key_id, row["firm"], row["rate_limit"])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (time.monotonic(), principal)
        return principal

    def refresh(self) -> None:
        """Check every cached key again in one query: drop the revoked ones, so that revoking a key
        nobody is using takes effect too, and keep the others fresh (raises the database's error)."""
        checked_at = time.monotonic()
        cached = list(self._cache.items())
        valid = self.db.valid_keys({p.key_id for _, (_, p) in cached})
        for token, (_, principal) in cached:
            if principal.key_id in valid:
                self._cache[token] = (checked_at, principal)
            else:
                self._cache.pop(token, None)
