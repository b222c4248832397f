"""The database writer on a real PostgreSQL: rows it refuses hold back only their own request."""

from __future__ import annotations

import threading

from kabuguard.service.storage.database import Database, Records, migrate
from test_service_support import pg_url

__all__ = ["pg_url"]  # fixture


def _decision(event_id: str) -> dict:
    return {"firm": "acme", "event_id": event_id, "ts_us": 1, "type": "login", "account_id": "A1",
            "decision": "allow", "score": 0.0, "body": b"{}"}


def test_a_request_whose_rows_the_database_refuses_does_not_sink_the_others_in_its_group_commit(pg_url: str) -> None:
    db = Database(pg_url, linger_s=0.3)  # long enough for the three requests to share one commit
    migrate(db.engine)
    db.start()
    try:
        outcomes: dict[str, BaseException | None] = {}
        settled = threading.Event()

        def done_for(name: str):
            def done(error: BaseException | None) -> None:
                outcomes[name] = error
                if len(outcomes) == 3:
                    settled.set()
            return done

        db.submit(Records(decisions=[_decision("good-1")]), done_for("good-1"))
        db.submit(Records(decisions=[_decision("bad\x00nul")]), done_for("bad"))  # PostgreSQL stores no NUL
        db.submit(Records(decisions=[_decision("good-2")]), done_for("good-2"))
        assert settled.wait(20)
        assert outcomes["good-1"] is None and outcomes["good-2"] is None and outcomes["bad"] is not None
        with db.engine.connect() as conn:
            stored = {row[0] for row in conn.exec_driver_sql("SELECT event_id FROM decisions")}
        assert stored == {"good-1", "good-2"}
    finally:
        db.stop()


def _alert(name: str) -> dict:
    return {"firm": "acme", "alert_id": f"al-{name}-0", "event_id": name, "ts_us": 1, "type": "account_alert",
            "account_id": "A1", "body": name.encode()}


def test_a_reader_paging_alerts_never_passes_one_whose_commit_is_still_coming(pg_url: str) -> None:
    """Two workers' writers: A has inserted its alert, not yet committed, when B writes one. Had
    B's (numbered after A's) become readable first, a client paging after it would never see A's."""
    a, b = Database(pg_url), Database(pg_url)
    migrate(a.engine)
    held = a.engine.raw_connection()
    try:
        a.insert(held.cursor(), Records(alerts=[_alert("first")]))
        writer = threading.Thread(target=b.write_now, args=(Records(alerts=[_alert("second")]),))
        writer.start()
        writer.join(0.5)
        assert [body for _, body in b.alerts("acme", None, None, None, 0, 10)] == []  # what a client reads now
        held.commit()
        writer.join(10)
        assert not writer.is_alive()
        assert [body for _, body in b.alerts("acme", None, None, None, 0, 10)] == [b"first", b"second"]
    finally:
        held.close()
        a.engine.dispose()
        b.engine.dispose()
