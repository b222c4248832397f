"""The database behind the service: migrations, one group-committing writer thread, and reads.

Embedded, a request writes its rows to SQLite itself before it answers. With Redis, the rows
are already safe in Redis's outbox when the answer leaves; the request hands them to the writer
thread, which gathers rows for `linger_s` after the first arrives and commits them all in one
transaction (group commit), so a busy service pays one PostgreSQL commit for many requests
(with `wait_for_database`, the request waits for that commit and nothing lingers). Inserts ignore
rows already present (`firm`, `event_id`), so a record written twice (an outbox flushed after a
crash, a retry) is stored once.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Connection, Engine

from kabuguard.service.storage.models import alerts, api_keys, decisions, events


# PostgreSQL advisory lock key under which alerts are inserted and committed (`Database.insert`).
ALERT_ORDER_LOCK = 0x6B6761_6C657274


def engine_for(url: str, busy_timeout_s: float = 5.0, **kwargs: Any) -> Engine:
    """An engine for `sqlite:///PATH` or `postgresql://…` (or `postgres://…`, as many hosts write
    it; SQLAlchemy knows only the first), driven by psycopg 3."""
    url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            # WAL with synchronous=NORMAL survives a crash of the process (not of the machine).
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8,
                         connect_args={"connect_timeout": 2}, **kwargs)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("kabuguard.service.storage") / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def serialised(engine: Engine, key: str, local: threading.Lock) -> Iterator[Connection]:
    """A transaction that no other one serialised on `key` overlaps: PostgreSQL's advisory lock on
    the key's hash, held to the commit, across processes; and `local` in this process, the whole
    of it on the embedded SQLite (one process), where a read then a write of two transactions at
    once would fail rather than wait."""
    with local, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
        yield conn


@dataclass
class Records:
    """Rows one request (or one outbox record) adds."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: Records) -> None:
        self.decisions += other.decisions
        self.alerts += other.alerts
        self.events += other.events


_PG_ARRAY = {"VARCHAR": "text[]", "BIGINT": "bigint[]", "FLOAT": "float8[]", "BLOB": "bytea[]", "BYTEA": "bytea[]"}


def _insert_ignoring(dialect: str, table: Any) -> str:
    """INSERT that skips rows already present (same firm and id).

    SQLite: named parameters, one row each (`executemany`). PostgreSQL: one statement for the
    whole group, one array parameter per column (`unnest`), so a group commit of many requests
    costs one round trip per table rather than one per row."""
    columns = [c for c in table.columns if c.name != "seq" and c.server_default is None]
    names = ", ".join(c.name for c in columns)
    if dialect == "postgresql":
        arrays = ", ".join(f"%s::{_PG_ARRAY[c.type.compile(dialect=_pg_dialect()).split('(')[0]]}" for c in columns)
        return f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays}) ON CONFLICT DO NOTHING"
    values = ", ".join(f":{c.name}" for c in columns)
    return f"INSERT OR IGNORE INTO {table.name} ({names}) VALUES ({values})"


def _pg_dialect() -> Any:
    from sqlalchemy.dialects import postgresql

    return postgresql.dialect()


class Database:
    """The engine, its writer thread and the reads the API needs."""

    def __init__(self, url: str, busy_timeout_s: float = 5.0, linger_s: float = 0.0) -> None:
        self.url = url
        # How long the writer gathers rows after the first arrives before it commits them.
        self.linger_s = linger_s
        # SQLite (embedded) is written in the request's own thread: no queue, no thread switch.
        self.embedded = url.startswith("sqlite")
        self.engine = engine_for(url, busy_timeout_s)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._sql = {t.name: _insert_ignoring(self.engine.dialect.name, t) for t in (decisions, alerts, events)}
        self._columns = {t.name: [c.name for c in t.columns if c.name != "seq" and c.server_default is None]
                         for t in (decisions, alerts, events)}
        self._writer: Any = None

    # -- writing ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kabuguard-db-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()

    async def write(self, records: Records) -> None:
        """Return once `records` are committed; raises what the database raised."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((records, lambda error: loop.call_soon_threadsafe(_settle, future, error)))
        await future

    def submit(self, records: Records, done: Callable[[BaseException | None], None]) -> None:
        """Queue `records` for the next group commit; `done(error)` runs in the writer thread."""
        self._queue.put((records, done))

    def write_now(self, records: Records) -> None:
        """Insert `records` in one transaction, on a DB-API connection kept open for writing
        (SQLAlchemy's statement layer costs more than the insert itself on this path)."""
        conn = self._writer
        if conn is None:
            conn = self._writer = self.engine.raw_connection()
        try:
            self.insert(conn.cursor(), records)
            conn.commit()
        except Exception:
            self._writer = None
            try:
                conn.invalidate()
            except Exception:  # the connection is gone already
                pass
            raise

    def insert(self, cur: Any, records: Records) -> None:
        """`records`' inserts in the cursor's open transaction (committed by the caller).

        Alerts are read a page at a time after a cursor on their `seq`, which PostgreSQL hands
        out at the insert, not at the commit: two workers' writers could commit numbers 8 then
        7, and a client that read 8 would never see 7. A transaction lock taken before inserting
        alerts, held until the commit, makes their numbers commit in order (SQLite has one
        writer at a time anyway)."""
        for name, rows in (("events", records.events), ("decisions", records.decisions),
                           ("alerts", records.alerts)):
            if not rows:
                continue
            if self.embedded:
                cur.executemany(self._sql[name], rows)
                continue
            if name == "alerts":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [ALERT_ORDER_LOCK])
            cur.execute(self._sql[name], [[row[c] for row in rows] for c in self._columns[name]])

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            waiting = [item]
            until = time.monotonic() + self.linger_s
            while len(waiting) < 512:
                left = until - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                waiting.append(nxt)
            merged = Records()
            for records, _ in waiting:
                merged.extend(records)
            try:
                self.write_now(merged)
                outcomes: list[BaseException | None] = [None] * len(waiting)
            except Exception as exc:  # the database's own errors vary by driver
                # One request's rows the database refuses must not sink the others' with them:
                # each on its own (when the database is down, each fails fast the same way).
                outcomes = [exc] if len(waiting) == 1 else [self._try_write(records) for records, _ in waiting]
            for (_, done), error in zip(waiting, outcomes):
                try:
                    done(error)
                except Exception:  # a callback's failure must not stop the writer
                    pass

    def _try_write(self, records: Records) -> BaseException | None:
        try:
            self.write_now(records)
        except Exception as exc:
            return exc
        return None

    # -- reading ----------------------------------------------------------------------------

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def key(self, key_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).mappings().first()
        return dict(row) if row else None

    def valid_keys(self, key_ids: set[str]) -> set[str]:
        """Those of `key_ids` that exist and are not revoked (a query even for none: a check that
        the database answers)."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(api_keys.c.key_id).where(
                api_keys.c.key_id.in_(key_ids), api_keys.c.revoked_at.is_(None))).scalars())

    def account(self, firm: str, account_id: str, limit: int = 20) -> tuple[list[bytes], list[bytes]]:
        """The account's latest decisions (newest first) and its open alerts (bodies)."""
        with self.engine.connect() as conn:
            recent = conn.execute(
                select(decisions.c.body).where(decisions.c.firm == firm, decisions.c.account_id == account_id)
                .order_by(decisions.c.ts_us.desc(), decisions.c.seq.desc()).limit(limit)).scalars().all()
            open_alerts = conn.execute(
                select(alerts.c.body).where(alerts.c.firm == firm, alerts.c.account_id == account_id,
                                            alerts.c.status == "open")
                .order_by(alerts.c.ts_us.desc(), alerts.c.seq.desc()).limit(limit)).scalars().all()
        return list(recent), list(open_alerts)

    def alerts(self, firm: str, since_us: int | None, until_us: int | None, kind: str | None,
               after: int, limit: int) -> list[tuple[int, bytes]]:
        """Alerts in order of recording, after cursor `after`, filtered by time and type."""
        query = select(alerts.c.seq, alerts.c.body).where(alerts.c.firm == firm, alerts.c.seq > after)
        if since_us is not None:
            query = query.where(alerts.c.ts_us >= since_us)
        if until_us is not None:
            query = query.where(alerts.c.ts_us < until_us)
        if kind is not None:
            query = query.where(alerts.c.type == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(alerts.c.seq).limit(limit)).all()
        return [(seq, body) for seq, body in rows]

    def event_log(self, batch: int = 10_000) -> Any:
        """(firm, event_id, msgpack body) of every logged event in the order applied (embedded
        rebuild); an empty body is a containment."""
        last = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(select(events.c.seq, events.c.firm, events.c.event_id, events.c.body)
                                    .where(events.c.seq > last).order_by(events.c.seq).limit(batch)).all()
            if not rows:
                return
            for seq, firm, event_id, body in rows:
                yield firm, event_id, body
            last = rows[-1][0]


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
