"""Password guessing: a user name's password checks are reserved in the database before they run,
so the limit holds however many guesses arrive at once, in one process or many.

Failures are counted per user name and client address, so that an outsider guessing a name
locks it out from the outsider's own address only, not the analyst's; a far higher limit per
name alone stops guessing spread over many addresses.

Checking a password takes argon2's time; counting failures before it and recording them after
let every guess that arrived meanwhile through. A reservation is committed first and counted
after: of guesses racing, the one committed last sees all the others, so at most `limit` are
checked. A failed check keeps its row; a refused or successful one gives it back.
"""

from __future__ import annotations

import hashlib
import threading

from sqlalchemy import case, delete, func, select
from sqlalchemy.engine import Connection, Engine

from kabuguard.console.clock import now_us
from kabuguard.console.models import login_attempts

_MINUTE_US = 60_000_000
# One process's login writes (reservations, and the caller's failure or success records) one at a
# time: the embedded SQLite takes one writer at a time and waits only a request's deadline for it,
# so a burst of guesses failed with "database is locked" (a 500). The embedded service has one
# process; PostgreSQL needs no lock, and logins are too few for it to cost anything there.
serial = threading.Lock()


def client_key(address: str) -> str:
    """What a reservation keeps of the client's address: a digest, held for the lockout window."""
    return hashlib.sha256(address.encode()).hexdigest()[:32]


def reserve(engine: Engine, username: str, client: str, per_client: int, per_user: int,
            minutes: float) -> int | None:
    """The id of a reserved password check for `username` from `client` (`client_key`), or None
    when, in the last `minutes`, `per_client` checks from this client or `per_user` from any
    have failed or are still running."""
    now = now_us()
    since = now - int(minutes * _MINUTE_US)
    if _locked(engine, username, client, since, per_client, per_user, now=False):  # refused without a write
        return None
    with serial:
        with engine.begin() as conn:
            attempt_id = int(conn.execute(login_attempts.insert().values(username=username, client=client, at_us=now))
                             .inserted_primary_key[0])
            # Past the window, nothing is kept, of any name (a digest of an address is still one).
            conn.execute(delete(login_attempts).where(login_attempts.c.at_us < since))
        if _locked(engine, username, client, since, per_client, per_user, now=True):
            with engine.begin() as conn:
                give_back(conn, attempt_id)
            return None
    return attempt_id


class Refusals:
    """Which refused logins the audit log records: the first for a user name from a client within
    the lockout window, in this process, so that guesses sent on after the lockout cannot flood
    the append-only log (at most one entry a window per name and address, as the lock itself)."""

    def __init__(self, minutes: float) -> None:
        self.window_us = int(minutes * _MINUTE_US)
        self._noted: dict[tuple[str, str], int] = {}  # when each was recorded
        self._lock = threading.Lock()

    def first(self, username: str, client: str) -> bool:
        now = now_us()
        with self._lock:
            for key in [k for k, at in self._noted.items() if at < now - self.window_us]:
                del self._noted[key]
            first = (username, client) not in self._noted
            self._noted.setdefault((username, client), now)
        return first


def give_back(conn: Connection, attempt_id: int) -> None:
    """Forget a reservation that was no failed guess (refused, or the right password)."""
    conn.execute(delete(login_attempts).where(login_attempts.c.attempt_id == attempt_id))


def _locked(engine: Engine, username: str, client: str, since: int, per_client: int, per_user: int,
            now: bool) -> bool:
    """Over the limits, counting (`now`) the caller's own reservation or not."""
    mine = int(now)
    attempts = select(login_attempts.c.client).where(login_attempts.c.username == username,
                                                     login_attempts.c.at_us >= since).subquery()
    query = select(func.count(), func.coalesce(func.sum(case((attempts.c.client == client, 1), else_=0)), 0))
    with engine.connect() as conn:
        by_user, by_client = conn.execute(query.select_from(attempts)).one()
    return by_client - mine >= per_client or by_user - mine >= per_user
