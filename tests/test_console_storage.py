"""The console's records on SQLite and PostgreSQL: users, cases, dispositions as labels, the audit log."""

from __future__ import annotations

import getpass
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import brokerage
from kabuguard.cli import main
from kabuguard.console import audit, cases, lockout, models, users
from kabuguard.console.users import UserError, authenticate, create_user, disable_user
from kabuguard.evaluate.inputs import load as load_run
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings
from kabuguard.service.storage.models import alerts
from test_service_support import ordered_stream, pg_url  # noqa: F401 - a fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/kg.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def attacked(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The service over `db_url` after a brokerage's two weeks and a campaign on day 20."""
    app = create_app(Settings(db=db_url, rate_limit=1e9))
    key = create_key(app.state.service.db, "acme", "test")[1]
    with TestClient(app) as client:
        stream = ordered_stream([brokerage().write(tmp_path / "e.jsonl")])
        assert client.post("/v1/events", json=stream, headers={"X-API-Key": key}).status_code == 200
        yield client


def _engine(client: TestClient) -> sqlalchemy.Engine:
    return client.app.state.service.db.engine  # type: ignore[attr-defined]


def _campaign_alert(engine: sqlalchemy.Engine) -> dict:
    with engine.connect() as conn:
        bodies = conn.execute(sqlalchemy.text("SELECT body FROM alerts WHERE type = 'campaign_alert'")).scalars()
        return json.loads(list(bodies)[-1])


def test_users_log_in_with_their_password_until_disabled(db_url: str) -> None:
    app = create_app(Settings(db=db_url))
    engine = app.state.service.db.engine
    create_user(engine, "hana", "analyst", "correct horse battery", "acme")
    with pytest.raises(UserError, match="taken"):
        create_user(engine, "hana", "lead", "another long password", None)
    with pytest.raises(UserError, match="role"):
        create_user(engine, "ken", "root", "another long password", None)
    with pytest.raises(UserError, match="at least 12"):
        create_user(engine, "ken", "auditor", "short", None)
    assert authenticate(engine, "hana", "correct horse battery").role == "analyst"
    assert authenticate(engine, "hana", "wrong password!!") is None
    assert authenticate(engine, "nobody", "correct horse battery") is None
    with engine.connect() as conn:
        stored = conn.execute(sqlalchemy.text("SELECT password_hash FROM users")).scalar_one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert disable_user(engine, "hana")
    assert authenticate(engine, "hana", "correct horse battery") is None


def test_concurrent_wrong_passwords_from_two_services_check_at_most_ten(db_url: str) -> None:
    """The lockout's ten failed logins hold when 40 guesses arrive at once at two services (two
    processes' worth of engines) over one database: each guess waits on argon2 meanwhile."""
    apps = [create_app(Settings(db=db_url, console_secure_cookie=0)) for _ in range(2)]
    engine = apps[0].state.service.db.engine
    create_user(engine, "hana", "analyst", "correct horse battery", "acme")
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        forms = [(c, re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text).group(1))
                 for c in (one, two)]

        def guess(n: int, password: str = "") -> int:
            client, csrf = forms[n % 2]
            return client.post("/console/login", data={"username": "hana", "password": password or f"guess {n}",
                                                       "csrf": csrf}, follow_redirects=False).status_code

        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(guess, range(40)))
        # A guess still being checked counts as failed, so a race may refuse one early, never late.
        assert 0 < answers.count(401) <= 10 and answers.count(401) + answers.count(429) == 40, answers
        while (answer := guess(len(answers))) == 401:
            answers.append(answer)
        assert answer == 429 and answers.count(401) == 10
        assert guess(0, "correct horse battery") == 429  # locked, the right password too
        failed = [e for e in audit.entries(engine) if e["action"] == "session.login_failed"]
        assert len(failed) == 10


def test_users_command_creates_lists_and_disables(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/kg.db"
    runner = CliRunner()
    made = runner.invoke(main, ["users", "create", "aiko", "--role", "auditor", "--all-firms", "--password-stdin",
                                "--db", db], input="a long enough password\n")
    assert made.exit_code == 0, made.output
    scoped = runner.invoke(main, ["users", "create", "hana", "--role", "analyst", "--firm", "acme",
                                  "--password-stdin", "--db", db], input="a long enough password\n")
    assert scoped.exit_code == 0, scoped.output
    neither = runner.invoke(main, ["users", "create", "ken", "--role", "analyst", "--password-stdin", "--db", db],
                            input="a long enough password\n")
    assert neither.exit_code == 2 and "--firm FIRM" in neither.output and "--all-firms" in neither.output
    listed = runner.invoke(main, ["users", "list", "--db", db])
    assert "aiko\tauditor\t*\t" in listed.output and "hana\tanalyst\tacme\t" in listed.output
    assert "active" in listed.output and "ken" not in listed.output
    assert runner.invoke(main, ["users", "disable", "aiko", "--db", db]).exit_code == 0
    assert "disabled" in runner.invoke(main, ["users", "list", "--db", db]).output
    again = runner.invoke(main, ["users", "disable", "aiko", "--db", db])
    assert again.exit_code == 2 and "no such active user" in again.output


def test_the_users_command_audits_each_user_it_creates_and_disables(db_url: str) -> None:
    """Users were created and disabled with no audit entry: who gave whom access was not recorded."""
    runner = CliRunner()
    for name in ("hana", "hana"):  # the second is refused (taken) and records nothing
        runner.invoke(main, ["users", "create", name, "--role", "analyst", "--firm", "acme", "--password-stdin",
                             "--db", db_url], input="a long enough password\n")
    assert runner.invoke(main, ["users", "disable", "hana", "--db", db_url]).exit_code == 0
    assert runner.invoke(main, ["users", "disable", "hana", "--db", db_url]).exit_code == 2
    engine = create_app(Settings(db=db_url)).state.service.db.engine
    trail = [(e["actor"], e["action"], e["firm"], e["target"], e["detail"]) for e in audit.entries(engine, action="user")]
    operator = f"cli:{getpass.getuser()}"
    assert trail == [(operator, "user.disable", "acme", "user:hana", None),
                     (operator, "user.create", "acme", "user:hana", '{"firm": "acme", "role": "analyst"}')]


def test_a_case_from_a_campaign_alert_is_worked_closed_and_becomes_labels(attacked: TestClient, db_url: str,
                                                                          tmp_path: Path) -> None:
    engine = _engine(attacked)
    alert = _campaign_alert(engine)
    case_id = cases.open_case(engine, "hana", "acme", [alert["alert_id"]])
    case = cases.get_case(engine, case_id)
    assert case["status"] == "open" and set(case["accounts"]) == {f"A{a}" for a in range(6)}
    cases.assign(engine, "lead1", case_id, "hana")
    cases.comment(engine, "hana", case_id, "same hosting range on all six")
    cases.link_account(engine, "hana", case_id, "A7", "shares the payout bank account")
    with pytest.raises(cases.CaseError, match="disposition"):
        cases.close(engine, "hana", case_id, "maybe", "unsure")
    cases.close(engine, "hana", case_id, "fraud", "confirmed with the customers")
    with pytest.raises(cases.CaseError, match="closed"):
        cases.comment(engine, "hana", case_id, "too late")
    case = cases.get_case(engine, case_id)
    assert (case["assignee"], case["disposition"], len(case["comments"])) == ("hana", "fraud", 1)
    assert "A7" in case["accounts"]
    trail = [e["action"] for e in audit.entries(engine, target=f"case:{case_id}")]
    assert trail == ["case.close", "case.link_account", "case.comment", "case.assign", "case.open"]

    # The dispositions as a labels file that `kabuguard evaluate` reads with its own reader.
    labels = tmp_path / "labels.jsonl"
    written = CliRunner().invoke(main, ["cases", "labels", "--out", str(labels), "--db", db_url])
    assert written.exit_code == 0, written.output
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with engine.connect() as conn:
        bodies = conn.execute(sqlalchemy.text("SELECT body FROM decisions ORDER BY seq")).scalars().all()
    (run_dir / "decisions.jsonl").write_bytes(b"".join(bytes(b) + b"\n" for b in bodies))
    (run_dir / "alerts.jsonl").write_bytes(b"")
    run = load_run(labels, run_dir)
    assert not run.rejections and run.labels
    attack_orders = {d.event_id for d in run.decisions if d.account_id in {f"A{a}" for a in range(6)}
                     and d.ts.day == 20}
    assert attack_orders <= set(run.labels) and all(run.labels[e].fraud for e in attack_orders)
    assert all(label.campaign_id == alert["campaign_id"] for label in run.labels.values())


def test_an_alert_closes_with_the_last_open_case_that_works_it(attacked: TestClient) -> None:
    engine, db = _engine(attacked), attacked.app.state.service.db  # type: ignore[attr-defined]
    with engine.connect() as conn:
        alert_id, account = conn.execute(sqlalchemy.text(
            "SELECT alert_id, account_id FROM alerts WHERE type = 'account_alert'")).first()

    def open_alerts() -> list[str]:
        return [json.loads(body)["alert_id"] for body in db.account("acme", account)[1]]

    first, second = (cases.open_case(engine, "hana", "acme", [alert_id]) for _ in range(2))
    cases.close(engine, "hana", first, "benign", "customer travelling")
    assert alert_id in open_alerts()  # the second case still works it
    cases.close(engine, "ken", second, "benign", "customer travelling")
    assert alert_id not in open_alerts()
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT status FROM alerts WHERE alert_id = :a"),
                            {"a": alert_id}).scalar_one() == "closed"
    closing = [json.loads(e["detail"]) for e in audit.entries(engine, target=f"case:{second}")
               if e["action"] == "case.close"]
    assert closing == [{"disposition": "benign", "alerts_closed": [alert_id]}]
    third = cases.open_case(engine, "ken", "acme", [alert_id])  # the customer calls back: worked again
    assert alert_id in open_alerts()
    cases.close(engine, "ken", third, "fraud", "the customer did not travel")
    assert alert_id not in open_alerts()


def test_a_case_closed_while_another_close_waits_is_refused_not_closed_twice(attacked: TestClient) -> None:
    """Two analysts close one case at once: the second finds it closed, so the audit log and the
    disposition (which becomes a label) tell one story."""
    engine = _engine(attacked)
    with engine.connect() as conn:
        alert_id = conn.execute(sqlalchemy.text("SELECT alert_id FROM alerts WHERE type = 'account_alert'")).scalar()
    case_id = cases.open_case(engine, "hana", "acme", [alert_id])
    outcome: list[str] = []

    def second_close() -> None:
        try:
            cases.close(engine, "ken", case_id, "fraud", "looks like a takeover")
            outcome.append("closed")
        except cases.CaseError as error:
            outcome.append(str(error))

    with engine.begin() as conn:  # the first close, still in its transaction when the second starts
        conn.execute(sqlalchemy.text("UPDATE cases SET status = 'closed', disposition = 'benign' WHERE case_id = :c"),
                     {"c": case_id})
        racing = threading.Thread(target=second_close)
        racing.start()
        racing.join(0.1)  # within the embedded database's wait for a writer (the request deadline)
    racing.join(10)
    assert outcome == [f"case {case_id}: closed (benign)"]
    assert [e["action"] for e in audit.entries(engine, target=f"case:{case_id}")].count("case.close") == 0


def test_a_case_opened_over_an_alert_while_another_case_closes_keeps_it_open(pg_url: str) -> None:
    """PostgreSQL: the close read which open cases still work the alert before the new case
    committed, then set the alert closed once it had: an open case over a closed alert (the
    queue's status and the API's open_alerts said there was nothing left to work)."""
    engine = create_app(Settings(db=pg_url)).state.service.db.engine
    body = {"alert_id": "al-1", "type": "account_alert", "ts": "2025-03-01T00:00:00+00:00", "account_id": "A1",
            "score": 0.9, "reasons": ["new_device"]}
    with engine.begin() as conn:
        conn.execute(alerts.insert().values(firm="acme", alert_id="al-1", event_id="e1", ts_us=1, type="account_alert",
                                            account_id="A1", body=json.dumps(body).encode()))
    first = cases.open_case(engine, "hana", "acme", ["al-1"])
    closing = threading.Thread(target=cases.close, args=(engine, "hana", first, "benign", "false alarm"))
    with engine.begin() as conn:  # a second analyst's case over the alert, still in its transaction
        second = conn.execute(models.cases.insert().values(firm="acme", title="again", status="open", opened_by="ken",
                                                         opened_at="2025-03-02T00:00:00+00:00")).inserted_primary_key[0]
        conn.execute(models.case_alerts.insert().values(case_id=second, alert_id="al-1"))
        conn.execute(sqlalchemy.update(alerts).where(alerts.c.alert_id == "al-1").values(status="open"))
        closing.start()
        _wait_for_a_lock_wait(engine)
    closing.join(10)
    assert cases.get_case(engine, first)["status"] == "closed" and cases.get_case(engine, second)["status"] == "open"
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.select(alerts.c.status).where(alerts.c.alert_id == "al-1")).scalar() == "open"


def _wait_for_a_lock_wait(engine: sqlalchemy.Engine, timeout_s: float = 10.0) -> None:
    """Until a session of the database waits for a row another transaction holds."""
    deadline = time.monotonic() + timeout_s
    query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'")
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(query).scalar():
                return
        time.sleep(0.02)
    raise AssertionError("no session came to wait for the lock")


def test_audit_log_refuses_updates_and_deletes(attacked: TestClient) -> None:
    engine = _engine(attacked)
    with engine.begin() as conn:
        audit.record(conn, "hana", "case.comment", "first entry")
    for statement in ("UPDATE audit_log SET reason = 'rewritten'", "DELETE FROM audit_log"):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text(statement))
    assert audit.entries(engine)[0]["reason"] == "first entry"


def test_guesses_from_one_address_lock_the_name_there_only_and_many_addresses_lock_it_everywhere(
        db_url: str) -> None:
    """An outsider's ten guesses locked the analyst out of the console for 15 minutes, renewably."""
    engine = create_app(Settings(db=db_url)).state.service.db.engine
    outsider, analyst = lockout.client_key("203.0.113.9"), lockout.client_key("10.0.0.7")
    for _ in range(10):
        assert lockout.reserve(engine, "hana", outsider, 10, 30, 15) is not None  # each kept: a failed guess
    assert lockout.reserve(engine, "hana", outsider, 10, 30, 15) is None
    assert lockout.reserve(engine, "hana", analyst, 10, 30, 15) is not None
    for n in range(19):  # guessing spread over addresses meets the name's own limit
        assert lockout.reserve(engine, "hana", lockout.client_key(f"198.51.100.{n}"), 10, 30, 15) is not None
    assert lockout.reserve(engine, "hana", analyst, 10, 30, 15) is None
    assert lockout.reserve(engine, "ken", outsider, 10, 30, 15) is not None  # another name: its own count


def test_a_reservation_forgets_every_attempt_past_the_window_of_any_name(db_url: str) -> None:
    """A name never tried again kept its failures, each with a digest of an address, for ever."""
    from kabuguard.console.clock import now_us
    from kabuguard.console.models import login_attempts

    engine = create_app(Settings(db=db_url)).state.service.db.engine
    with engine.begin() as conn:
        conn.execute(login_attempts.insert().values(username="gone", client=lockout.client_key("203.0.113.9"),
                                                    at_us=now_us() - 20 * 60_000_000))
    assert lockout.reserve(engine, "hana", lockout.client_key("10.0.0.7"), 10, 100, 15) is not None
    with engine.connect() as conn:
        assert [r.username for r in conn.execute(sqlalchemy.select(login_attempts))] == ["hana"]


def test_a_login_waits_a_moment_for_another_password_check_and_is_then_refused_uncounted(tmp_path: Path) -> None:
    """Each login of a flood (a new name each: no lockout) ran argon2 at once, starving the
    decision API in the same process."""
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", console_secure_cookie=0))
    engine = app.state.service.db.engine
    create_user(engine, "hana", "analyst", "correct horse battery", "acme")
    with TestClient(app) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
        form = {"username": "hana", "password": "correct horse battery", "csrf": csrf}
        with users._checks:  # another login's password check is running
            busy = client.post("/console/login", data=form, follow_redirects=False)
        assert busy.status_code == 429 and "Too many logins at once" in busy.text
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM login_attempts")).scalar_one() == 0
        assert client.post("/console/login", data=form, follow_redirects=False).status_code == 303



def test_an_event_log_from_before_the_console_gets_its_accounts_symbols_and_times(db_url: str,
                                                                                    tmp_path: Path) -> None:
    """Revision 0002 added the columns empty: after an upgrade an account's timeline lacked every
    device and address of its earlier events (and their next uses were marked new)."""
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    from kabuguard.events.reader import read_file
    from kabuguard.service.decider import logged
    from kabuguard.service.storage.database import Database, migrate

    engine = Database(db_url).engine
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("kabuguard.service.storage") / "migrations"))
    with engine.begin() as conn:  # the first release's schema, and its log
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        events = [e for e in read_file(brokerage().write(tmp_path / "e.jsonl")) if hasattr(e, "account_id")][:50]
        rows = [{k: v for k, v in logged("acme", e).items() if k in ("firm", "event_id", "body")} for e in events]
        rows.append({"firm": "acme", "event_id": "~contain:A1", "body": b""})
        conn.execute(sqlalchemy.text("INSERT INTO events (firm, event_id, body) VALUES (:firm, :event_id, :body)"), rows)
    migrate(engine)
    with engine.connect() as conn:
        got = {r.event_id: (r.account_id, r.symbol, r.ts_us) for r in conn.execute(
            sqlalchemy.text("SELECT event_id, account_id, symbol, ts_us FROM events"))}
    assert all(got[e.event_id] == (e.account_id, getattr(e, "symbol", None), e.ts_us) for e in events)
    assert got["~contain:A1"] == (None, None, None)


def test_the_console_during_a_database_outage_says_so_with_a_503(pg_url: str) -> None:
    """Its login answered 500, with a traceback in the log."""
    from test_service_support import TcpProxy

    proxy = TcpProxy(int(pg_url.rsplit(":", 1)[1].split("/")[0]))
    proxy.start()
    app = create_app(Settings(db=pg_url.replace(f":{proxy.target[1]}/", f":{proxy.port}/"), console_secure_cookie=0))
    create_user(app.state.service.db.engine, "hana", "analyst", "correct horse battery", "acme")
    try:
        with TestClient(app) as client:
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
            proxy.stop()
            app.state.service.db.engine.dispose()  # connections in the pool were cut too
            answer = client.post("/console/login", data={"username": "hana", "password": "correct horse battery",
                                                         "csrf": csrf})
    finally:
        proxy.stop()
    assert answer.status_code == 503 and "database cannot be reached" in answer.text

