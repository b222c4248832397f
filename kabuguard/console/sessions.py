"""Console sessions: a random token in an HttpOnly, SameSite=Strict cookie, a CSRF token per
session. Only the token's SHA-256 is stored, so the table alone opens no session."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from kabuguard.console.clock import now_us
from kabuguard.console.models import sessions
from kabuguard.console.users import User, active_user

COOKIE = "kg_session"


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(engine: Engine, user: User, hours: float) -> str:
    """A new session for `user`; returns the cookie's token."""
    token = secrets.token_urlsafe(32)
    now = now_us()
    with engine.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.expires_us < now))
        conn.execute(sessions.insert().values(token_sha256=_digest(token), user_id=user.user_id,
                                              csrf=secrets.token_urlsafe(32), expires_us=now + int(hours * 3.6e9)))
    return token


def find_session(engine: Engine, token: str | None) -> Session | None:
    """The live session of `token` whose user is still active, else None."""
    if not token:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(sessions).where(sessions.c.token_sha256 == _digest(token),
                                                  sessions.c.expires_us > now_us())).mappings().first()
    if row is None:
        return None
    user = active_user(engine, row["user_id"])
    return Session(user, row["csrf"]) if user else None


def close_session(engine: Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.token_sha256 == _digest(token)))
