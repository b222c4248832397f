"""Console users: a name, a role and an argon2id password hash; disabled, never deleted.

Roles: `analyst` and `lead` work cases and contain accounts, `admin` as well, `auditor` reads
everything and acts on nothing. A user belongs to one firm, or to all of them (`firm` None: a
deployment's own team, or a regulator's auditor), because one deployment can serve several
brokerages whose fraud teams must not see each other's customers. Passwords are hashed with
argon2id (argon2-cffi's defaults, RFC 9106's second recommended profile), so a stolen table does
not yield them.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from kabuguard.console import audit
from kabuguard.console.clock import now_iso
from kabuguard.console.models import ROLES, users

ACTING_ROLES = frozenset({"analyst", "lead", "admin"})
MIN_PASSWORD = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_hasher = PasswordHasher()
# Verifying an unknown name costs as much as a known one: no timing tells which names exist.
_DUMMY_HASH = _hasher.hash("not a password of anyone")
# One password check at a time per process, each waiting at most this long for its turn: a check
# takes 64 MiB and a core for a fifth of a second, and a flood of logins (a new name each, so
# no lockout counts two) starved the decision API in the same process. Past the wait, refused.
_checks = threading.BoundedSemaphore(1)
CHECK_WAIT_S = 0.25


class PasswordChecksBusy(RuntimeError):
    """Other logins' password checks hold the turn: try again in a moment."""


class UserError(ValueError):
    """A bad user name, role or password, or a name taken; the message says which."""


@dataclass(frozen=True)
class User:
    user_id: int
    username: str
    role: str
    firm: str | None  # None: every firm

    @property
    def can_act(self) -> bool:
        return self.role in ACTING_ROLES

    def sees(self, firm: str) -> bool:
        return self.firm is None or self.firm == firm


def create_user(engine: Engine, username: str, role: str, password: str, firm: str | None,
                actor: str | None = None) -> User:
    """A new active user of `firm` (None: of every firm), audited as created by `actor` (by default
    this machine's operator, `audit.operator`)."""
    if firm is not None and not _NAME.match(firm):
        raise UserError(f"firm {firm!r}: use letters, digits, '_', '.', '@' or '-' (at most 64)")
    if not _NAME.match(username):
        raise UserError(f"username {username!r}: use letters, digits, '_', '.', '@' or '-' (at most 64)")
    if role not in ROLES:
        raise UserError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    try:
        with engine.begin() as conn:
            user_id = conn.execute(users.insert().values(
                username=username, role=role, password_hash=_hasher.hash(password),
                created_at=now_iso(), firm=firm)).inserted_primary_key[0]
            audit.record(conn, actor or audit.operator(), "user.create", f"created as {role}", firm=firm,
                         target=f"user:{username}", detail={"role": role, "firm": firm})
    except IntegrityError:
        raise UserError(f"username {username!r}: taken") from None
    return User(int(user_id), username, role, firm)


def list_users(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(users.c.username, users.c.role, users.c.firm, users.c.created_at, users.c.disabled_at)
                            .order_by(users.c.username)).mappings().all()
    return [dict(r) for r in rows]


def disable_user(engine: Engine, username: str, actor: str | None = None) -> bool:
    """Disable `username`: its sessions stop working at their next request. Audited as done by
    `actor` (by default this machine's operator)."""
    with engine.begin() as conn:
        done = conn.execute(update(users).where(users.c.username == username, users.c.disabled_at.is_(None))
                            .values(disabled_at=now_iso()))
        if done.rowcount > 0:
            firm = conn.execute(select(users.c.firm).where(users.c.username == username)).scalar()
            audit.record(conn, actor or audit.operator(), "user.disable", "disabled", firm=firm,
                         target=f"user:{username}")
    return done.rowcount > 0


def firm_of(engine: Engine, username: str) -> str | None:
    """The firm of the user named `username`; None for a user of every firm or no such user."""
    with engine.connect() as conn:
        return conn.execute(select(users.c.firm).where(users.c.username == username)).scalar()


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    """The active user with this name and password, else None."""
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
    if not _checks.acquire(timeout=CHECK_WAIT_S):
        raise PasswordChecksBusy()
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    finally:
        _checks.release()
    if row is None or row["disabled_at"] is not None:
        return None
    return _user(row)


def active_user(engine: Engine, user_id: int) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.user_id == user_id, users.c.disabled_at.is_(None))
                           ).mappings().first()
    return _user(row) if row else None


def _user(row: Any) -> User:
    return User(row["user_id"], row["username"], row["role"], row["firm"])
