"""Password guessing: a user name's password checks are reserved in the database before they run,
so the limit holds however many guesses arrive at once, in one process or many.

Checking a password takes argon2's time; counting failures before it and recording them after
let every guess that arrived meanwhile through. A reservation is committed first and counted
after: of guesses racing, the one committed last sees all the others, so at most `limit` are
checked. A failed check keeps its row; a refused or successful one gives it back.
"""

from __future__ import annotations

import threading

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection, Engine

from kabuguard.console.clock import now_us
from kabuguard.console.models import login_attempts

_MINUTE_US = 60_000_000
# One process's login writes (reservations, and the caller's failure or success records) one at a
# time: the embedded SQLite takes one writer at a time and waits only a request's deadline for it,
# so a burst of guesses failed with "database is locked" (a 500). The embedded service has one
# process; PostgreSQL needs no lock, and logins are too few for it to cost anything there.
serial = threading.Lock()


def reserve(engine: Engine, username: str, limit: int, minutes: float) -> int | None:
    """The id of a reserved password check for `username`, or None when `limit` checks in the last
    `minutes` have failed or are still running."""
    now = now_us()
    since = now - int(minutes * _MINUTE_US)
    if _taken(engine, username, since) >= limit:  # locked already: refused without a write
        return None
    with serial:
        with engine.begin() as conn:
            attempt_id = int(conn.execute(login_attempts.insert().values(username=username, at_us=now))
                             .inserted_primary_key[0])
            conn.execute(delete(login_attempts).where(login_attempts.c.username == username,
                                                      login_attempts.c.at_us < since))
        if _taken(engine, username, since) > limit:
            with engine.begin() as conn:
                give_back(conn, attempt_id)
            return None
    return attempt_id


def give_back(conn: Connection, attempt_id: int) -> None:
    """Forget a reservation that was no failed guess (refused, or the right password)."""
    conn.execute(delete(login_attempts).where(login_attempts.c.attempt_id == attempt_id))


def _taken(engine: Engine, username: str, since: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(login_attempts).where(
            login_attempts.c.username == username, login_attempts.c.at_us >= since)).scalar_one())
