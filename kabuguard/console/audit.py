"""The append-only audit log: who did what, when, to what and why.

Every state change the console or a playbook makes writes one entry in the same transaction as
the change itself; the database refuses UPDATE and DELETE on the table (migration 0002).
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from kabuguard.console.clock import now_iso
from kabuguard.console.models import audit_log


def operator() -> str:
    """The actor of a command run on this machine (`kabuguard users`): `cli:` and the OS user."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no name in the environment nor the password database (a container)
        name = f"uid{os.getuid()}"
    return f"cli:{name}"[:64]


def record(conn: Connection, actor: str, action: str, reason: str, *, firm: str | None = None,
           target: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """Append one entry inside the caller's transaction."""
    conn.execute(audit_log.insert().values(
        at=now_iso(), actor=actor, action=action, firm=firm, target=target, reason=reason,
        detail=json.dumps(detail, sort_keys=True) if detail else None))


def entries(engine: Engine, limit: int = 200, target: str | None = None, firm: str | None = None,
            action: str = "", before: int | None = None) -> list[dict[str, Any]]:
    """The newest entries first, optionally for one target, of one firm, of actions starting with
    `action` (`contain`, `case`, `session.login_failed`), older than the entry `before` (paging)."""
    query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if target is not None:
        query = query.where(audit_log.c.target == target)
    if firm is not None:
        query = query.where(audit_log.c.firm == firm)
    if action:
        query = query.where(audit_log.c.action.startswith(action, autoescape=True))
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]

