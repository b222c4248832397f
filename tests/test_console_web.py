"""The console over HTTP: sessions, CSRF and roles enforced by the server on every route."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import HOME_UA, brokerage
from console_support import SECRET, WebhookReceiver, wait_for
from kabuguard.console import audit, cases
from kabuguard.console.containment import actions
from kabuguard.console.users import create_user
from kabuguard.intel.taxii.store import TaxiiStore
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings
from kabuguard.service.storage.models import alerts
from test_service_support import ordered_stream, pg_url  # noqa: F401 - fixture

PASSWORD = "a long test password"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[TestClient]:
    """The service after a brokerage's campaign, with one user per role."""
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9, console_secure_cookie=0))
    engine = application.state.service.db.engine
    for role in ("analyst", "lead", "admin", "auditor"):
        create_user(engine, role, role, PASSWORD, None)
    key = create_key(application.state.service.db, "acme", "test")[1]
    with TestClient(application) as client:
        client.post("/v1/events", json=ordered_stream([brokerage().write(tmp_path / "e.jsonl")]),
                    headers={"X-API-Key": key})
        yield client


def login(client: TestClient, user: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    form = client.get("/console/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    answer = client.post("/console/login", data={"username": user, "password": password, "csrf": csrf},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return re.search(r'data-csrf="([^"]+)"', client.get("/console/").text).group(1)


def _console(tmp_path: Path, users: tuple[tuple[str, str, str | None], ...] = (("hana", "analyst", "acme"),),
             **settings: Any) -> FastAPI:
    """A service of the test's own, with these users (name, role, firm) and settings."""
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9, console_secure_cookie=0,
                                      **settings))
    for name, role, firm in users:
        create_user(application.state.service.db.engine, name, role, PASSWORD, firm)
    return application


def _flat(routes: list) -> list:
    """Every route, those of included routers too."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out += _flat(inner.routes) if inner is not None else [route]
    return out


def _campaign(client: TestClient) -> tuple[str, str]:
    queue = client.get("/console/alerts", params={"type": "campaign_alert", "sort": "score"}).text
    firm, alert_id = re.search(r'href="/console/alerts/([^/"]+)/([^"]+)"', queue).groups()
    return firm, alert_id


def test_every_console_route_but_the_login_page_requires_a_session(app: TestClient) -> None:
    routes = [(m, r.path) for r in _flat(app.app.routes) if r.path.startswith("/console/")
              and r.path != "/console/login" for m in r.methods if m in ("GET", "POST")]
    assert len(routes) >= 19
    for method, path in routes:
        url = re.sub(r"{[^}]+}", "1", path)
        answer = app.request(method, url, follow_redirects=False)
        if method == "GET" and not path.startswith("/console/api/"):
            assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login"), (method, path)
        else:
            assert answer.status_code == 401, (method, path, answer.status_code)
    assert app.get("/console/login").status_code == 200


def test_login_sets_a_session_cookie_httponly_samesite_and_refuses_a_wrong_password(tmp_path: Path) -> None:
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db"))  # Secure by default
    create_user(application.state.service.db.engine, "hana", "analyst", PASSWORD, None)
    with TestClient(application, base_url="https://testserver") as client:
        form = client.get("/console/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        wrong = client.post("/console/login", data={"username": "hana", "password": "not it at all", "csrf": csrf})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        forged = client.post("/console/login", data={"username": "hana", "password": PASSWORD, "csrf": "forged"})
        assert forged.status_code == 403
        ok = client.post("/console/login", data={"username": "hana", "password": PASSWORD, "csrf": csrf},
                         follow_redirects=False)
        cookie = next(v for k, v in ok.headers.multi_items() if k == "set-cookie" and v.startswith("kg_session="))
        assert {"HttpOnly", "Secure", "SameSite=strict"} <= {p.strip() for p in cookie.split(";")}
        assert client.get("/console/alerts").status_code == 200
        session_csrf = re.search(r'data-csrf="([^"]+)"', client.get("/console/").text).group(1)
        assert client.post("/console/logout", data={"csrf": session_csrf}).status_code == 200
        assert client.get("/console/alerts", follow_redirects=False).status_code == 303
    trail = audit.entries(application.state.service.db.engine, action="session")
    assert [e["action"] for e in trail] == ["session.logout", "session.login", "session.login_failed"]  # newest first


def test_state_changing_requests_need_the_sessions_csrf_token(app: TestClient) -> None:
    csrf = login(app, "analyst")
    firm, alert_id = _campaign(app)
    for data in ({}, {"csrf": "not-the-token"}, {"csrf": "トークン"}):  # non-ASCII: a 403 too, not a 500
        refused = app.post("/console/cases", data={"firm": firm, "alert_id": alert_id, **data})
        assert refused.status_code == 403 and "CSRF" in refused.text
    opened = app.post("/console/cases", data={"firm": firm, "alert_id": alert_id, "csrf": csrf})
    assert opened.status_code == 200 and "case opened" in opened.text
    via_header = app.post("/console/cases", data={"firm": firm, "alert_id": alert_id},
                          headers={"X-CSRF-Token": csrf})
    assert via_header.status_code == 200


def test_the_notice_after_an_action_is_the_consoles_own_text_never_the_links(app: TestClient) -> None:
    """A crafted link printed its own text as the console's green status notice."""
    csrf = login(app, "analyst")
    firm, alert_id = _campaign(app)
    contained = app.post("/console/contain/alert", data={"firm": firm, "alert_id": alert_id, "reason": "takeover",
                                                          "csrf": csrf})
    assert contained.status_code == 200 and '<p class="done" role="status">contained 6 accounts</p>' in contained.text
    spoof = "Security notice: re-verify at https://sso.example"
    for params in ({"done": spoof}, {"done": "contained-alert", "n": spoof}, {"done": "contained-alert", "n": "²"}):
        page = app.get(f"/console/alerts/{firm}/{alert_id}", params=params).text
        assert 'class="done"' not in page and "Security notice" not in page


def test_the_audit_log_filters_by_action_and_pages_past_a_burst_of_failed_logins(app: TestClient) -> None:
    """The page showed the newest 200 entries only: a burst of failed logins hid every
    containment behind it."""
    csrf = login(app, "admin")
    assert app.post("/console/contain/account", data={"firm": "acme", "account_id": "A1", "reason": "takeover",
                                                       "csrf": csrf}).status_code == 200
    engine = app.app.state.service.db.engine
    with engine.begin() as conn:
        for n in range(250):
            audit.record(conn, f"guess{n}", "session.login_failed", "wrong user name or password")
    rows = lambda page: re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>", page)  # noqa: E731
    first = app.get("/console/audit").text
    assert len(rows(first)) == 200 and ("admin", "contain") not in rows(first)
    older = re.search(r'<a href="\?([^"]+)">Older entries</a>', first).group(1).replace("&amp;", "&")
    rest = rows(app.get(f"/console/audit?{older}").text)
    assert ("admin", "contain") in rest and len(rest) < 200
    assert {a for _, a in rows(app.get("/console/audit", params={"action": "contain"}).text)} == {"contain", "contain.dry_run"}
    assert app.get("/console/audit", params={"before": "0"}).status_code == 422


def test_the_audit_page_shows_webhook_receivers_without_their_credentials(tmp_path: Path) -> None:
    """Each receiver's URL was printed whole to every user, auditors too: a password in its user
    info or a token in its query with it."""
    urls = "https://ops:S3cretPassw0rd@127.0.0.1:9/hook,https://127.0.0.1:9/in?token=tok-abcdef123"
    application = _console(tmp_path, (("hana", "analyst", "acme"), ("aiko", "auditor", "acme")),
                           webhook_urls=urls, webhook_secret=SECRET)
    with TestClient(application) as client:
        csrf = login(client, "hana")
        assert client.post("/console/contain/account", data={"firm": "acme", "account_id": "A1", "reason": "takeover",
                                                              "csrf": csrf}).status_code == 200
        login(client, "aiko")
        page = client.get("/console/audit").text
    shown = re.findall(r"<td>(https?://[^<]*)</td>", page)
    assert sorted(shown) == ["https://127.0.0.1:9/hook", "https://127.0.0.1:9/in"]
    assert "S3cretPassw0rd" not in page and "tok-abcdef123" not in page and "ops@" not in page


def test_an_auditor_reads_everything_and_cannot_act(app: TestClient) -> None:
    csrf = login(app, "auditor")
    firm, alert_id = _campaign(app)
    assert app.get(f"/console/alerts/{firm}/{alert_id}").status_code == 200
    assert app.get("/console/audit").status_code == 200
    refused = app.post("/console/contain/alert", data={"firm": firm, "alert_id": alert_id, "reason": "x", "csrf": csrf})
    assert refused.status_code == 403 and "auditor" in refused.text
    assert app.post("/console/cases", data={"firm": firm, "alert_id": alert_id, "csrf": csrf}).status_code == 403
    engine = app.app.state.service.db.engine
    assert all(a["dry_run"] for a in actions(engine))  # the default playbook's records only
    assert [e["action"] for e in audit.entries(engine) if e["actor"] == "auditor"] == ["session.login"]


def test_pages_show_the_run(app: TestClient) -> None:
    login(app, "lead")
    firm, alert_id = _campaign(app)
    page = app.get(f"/console/alerts/{firm}/{alert_id}").text
    assert "campaign-graph" in page and "Contain 6 accounts" in page
    graph = app.get(f"/console/api/campaign/{firm}/{alert_id}").json()
    kinds = {e["data"]["kind"] for e in graph["elements"] if "kind" in e["data"]}
    assert kinds == {"account", "ip", "device", "symbol"}
    timeline = app.get(f"/console/accounts/{firm}/A0").text
    assert "45.32.1.0" in timeline and 'class="new"' in timeline and "block" in timeline
    dashboard = app.get("/console/api/dashboard").json()
    assert dashboard["value_blocked_jpy"] > 0 and sum(map(sum, dashboard["decisions"].values())) > 0
    feed = app.get("/console/api/alerts", params={"after": 0, "type": "campaign_alert"}).json()["alerts"]
    assert feed and all(a["type"] == "campaign_alert" for a in feed)
    assert app.get("/console/cases").status_code == 200
    for bad in ({"since": "2025-13-45"}, {"until": "notadate"}):
        for path in ("/console/alerts", "/console/api/alerts"):
            refused = app.get(path, params=bad)
            assert refused.status_code == 422 and "YYYY-MM-DD" in refused.text, (path, bad)


def test_the_timeline_orders_events_by_their_instant_and_shows_them_in_the_firms_zone(tmp_path: Path) -> None:
    """Rows were sorted by the `ts` text, so events sent with different UTC offsets showed out of
    order, each in its own offset; the devices' 'since' cut the offset off."""
    def login_at(n: int, ts: str) -> dict:
        return {"event_id": f"e{n}", "type": "login", "ts": ts, "account_id": "Z1", "session_id": f"s{n}",
                "success": True, "ip": "126.1.1.1", "user_agent": HOME_UA, "device_id": f"dev-{n}", "mfa": "sms",
                "channel": "web"}

    application = _console(tmp_path, console_utc_offset_hours=9.0)
    key = create_key(application.state.service.db, "acme", "test")[1]
    sent = [login_at(1, "2025-03-01T10:00:00+09:00"), login_at(2, "2025-03-01T02:00:00Z"),
            login_at(3, "2025-03-01T07:30:00+04:30")]  # 01:00, 02:00 and 03:00 UTC
    with TestClient(application) as client:
        assert client.post("/v1/events", json=sent, headers={"X-API-Key": key}).status_code == 200
        login(client, "hana")
        page = client.get("/console/accounts/acme/Z1").text
    rows = re.findall(r"<tr class=\"[^\"]*\">\s*<td>([^<]*)</td>.*?<br>(dev-\d)", page.split('class="timeline"')[1], re.S)
    assert rows == [("2025-03-01 10:00:00 UTC+9", "dev-1"), ("2025-03-01 11:00:00 UTC+9", "dev-2"),
                    ("2025-03-01 12:00:00 UTC+9", "dev-3")]
    assert re.findall(r"<li>(dev-\d) <small>since ([^,]*),", page) == [(d, t) for t, d in rows]


def test_a_symbol_alert_becomes_a_case_from_its_page(tmp_path: Path) -> None:
    """The 'Open a case' form was inside the block shown for alerts naming accounts: a pump's
    symbol alert names none, so it could not become a case."""
    application = _console(tmp_path)
    body = {"alert_id": "sym-1", "type": "symbol_alert", "ts": "2025-03-01T00:00:00+00:00", "symbol": "9999",
            "score": 0.9, "reasons": ["volume_price_surge"]}
    with application.state.service.db.engine.begin() as conn:
        conn.execute(alerts.insert().values(firm="acme", alert_id="sym-1", event_id="b1", ts_us=1, type="symbol_alert",
                                            account_id=None, body=msgspec.json.encode(body)))
    with TestClient(application) as client:
        csrf = login(client, "hana")
        page = client.get("/console/alerts/acme/sym-1").text
        assert 'action="/console/cases"' in page and "Open a case" in page and 'id="contain-alert"' not in page
        opened = client.post("/console/cases", data={"firm": "acme", "alert_id": "sym-1", "csrf": csrf},
                             follow_redirects=False)
    assert opened.status_code == 303
    (case,) = cases.list_cases(application.state.service.db.engine)
    assert case["title"] == "symbol alert sym-1" and case["status"] == "open"


def test_the_account_page_says_when_its_containment_reached_the_receivers(tmp_path: Path) -> None:
    """account.html emptied the deliveries before listing the actions: its Webhooks column was
    blank even once every receiver had the action."""
    receiver = WebhookReceiver()
    receiver.start()
    application = _console(tmp_path, webhook_urls=receiver.url, webhook_secret=SECRET, webhook_backoff_s=0.1)
    try:
        with TestClient(application) as client:
            csrf = login(client, "hana")
            client.post("/console/contain/account", data={"firm": "acme", "account_id": "A1", "reason": "takeover",
                                                           "csrf": csrf})
            wait_for(lambda: len(receiver.received) == 1, what="the delivery")
            wait_for(lambda: "delivered" in client.get("/console/accounts/acme/A1").text, what="the delivery recorded")
            page = client.get("/console/accounts/acme/A1").text
    finally:
        receiver.stop()
    (row,) = re.findall(r'<table class="actions-taken">.*?<tbody>\s*<tr>(.*?)</tr>', page, re.S)
    assert '<span class="ok">delivered</span>' in row


def test_every_console_answer_carries_the_security_headers(app: TestClient) -> None:
    """Pages sent them; the JSON reads under /console/api/ (customers' account ids, IPs and
    devices) sent none: cacheable by a browser or proxy, sniffable."""
    login(app, "analyst")
    firm, alert_id = _campaign(app)
    for path in ("/console/alerts", "/console/api/alerts", "/console/api/dashboard", f"/console/api/campaign/{firm}/{alert_id}",
                 "/console/api/campaign/acme/no-such-alert", "/console"):
        headers = app.get(path, follow_redirects=False).headers
        assert headers.get("cache-control") == "no-store" and headers.get("x-content-type-options") == "nosniff", path
        assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), path
    assert app.get("/console/static/console.js").headers["cache-control"] == "private, max-age=3600"
    assert "cache-control" not in app.get("/healthz").headers


def test_the_queue_shows_each_alerts_status_and_filters_by_it(app: TestClient) -> None:
    """Closing a case closes its alerts, but the queue showed no status and ignored ?status=: a
    closed alert looked exactly like an open one."""
    csrf = login(app, "analyst")
    firm, alert_id = _campaign(app)
    opened = app.post("/console/cases", data={"firm": firm, "alert_id": alert_id, "csrf": csrf}, follow_redirects=False)
    case_id = opened.headers["location"].split("?")[0].rsplit("/", 1)[1]
    app.post(f"/console/cases/{case_id}/close", data={"disposition": "fraud", "reason": "confirmed", "csrf": csrf})

    def shown(**params: str) -> dict[str, str]:
        page = app.get("/console/alerts", params=params).text
        rows = re.findall(r'href="/console/alerts/[^/"]+/([^"]+)">.*?<td class="status">([^<]*)</td>', page, re.S)
        return dict(rows)

    every = shown()
    assert every[alert_id] == "closed" and set(every.values()) == {"open", "closed"}
    assert alert_id not in shown(status="open") and set(shown(status="open").values()) == {"open"}
    assert shown(status="closed") == {alert_id: "closed"}
    assert [a["alert_id"] for a in app.get("/console/api/alerts", params={"status": "closed"}).json()["alerts"]] == [alert_id]
    assert app.get("/console/alerts", params={"status": "shut"}).status_code == 422


def test_repeated_failed_logins_lock_the_user_name_for_a_while(app: TestClient) -> None:
    form = app.get("/console/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    attempt = {"username": "analyst", "csrf": csrf}
    for n in range(10):
        assert app.post("/console/login", data={**attempt, "password": f"guess number {n}"}).status_code == 401
    locked = app.post("/console/login", data={**attempt, "password": PASSWORD})
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    assert login(app, "lead")  # another user is not affected


def test_refused_logins_are_in_the_named_users_firms_audit_log_and_tell_nothing_of_the_name(tmp_path: Path) -> None:
    """A failed login was recorded with no firm, so the firm's lead never saw guessing at its
    analysts; refusals once the name was locked were not recorded at all."""
    application = _console(tmp_path, (("hana", "analyst", "acme"), ("kenji", "lead", "acme")))
    engine = application.state.service.db.engine
    with TestClient(application) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
        answers = {name: [client.post("/console/login", data={"username": name, "password": f"guess {n}", "csrf": csrf})
                          for n in range(25)] for name in ("hana", "nobody")}
        for got in answers.values():
            assert [a.status_code for a in got] == [401] * 10 + [429] * 15
        assert answers["hana"][0].text == answers["nobody"][0].text.replace("nobody", "hana")
        assert answers["hana"][-1].text == answers["nobody"][-1].text.replace("nobody", "hana")
        login(client, "kenji")
        shown = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>",
                           client.get("/console/audit", params={"action": "session.login"}).text)
    assert sorted(set(shown)) == [("hana", "session.login_failed", "acme"), ("hana", "session.login_locked", "acme"),
                                  ("kenji", "session.login", "acme")]
    assert [e["action"] for e in audit.entries(engine, action="session.login_") if e["actor"] == "hana"].count(
        "session.login_failed") == 10
    trail = [(e["action"], e["firm"]) for e in audit.entries(engine) if e["actor"] == "nobody"]
    assert sorted(set(trail)) == [("session.login_failed", None), ("session.login_locked", None)]
    assert trail.count(("session.login_locked", None)) == 1 and len(trail) == 11  # one a lockout, not one a guess


def test_a_user_of_one_firm_sees_and_acts_only_on_that_firms_records(tmp_path: Path) -> None:
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9, console_secure_cookie=0))
    engine = application.state.service.db.engine
    create_user(engine, "hana", "analyst", PASSWORD, "acme")
    create_user(engine, "kaito", "analyst", PASSWORD, "kaede")
    create_user(engine, "root", "admin", PASSWORD, None)
    stream = ordered_stream([brokerage().write(tmp_path / "e.jsonl")])
    with TestClient(application) as client:
        for firm in ("acme", "kaede"):
            key = create_key(application.state.service.db, firm, "test")[1]
            client.post("/v1/events", json=stream, headers={"X-API-Key": key})
        # Firm kaede works its own campaign: a case, a containment, their audit entries.
        csrf = login(client, "kaito")
        firm, theirs = _campaign(client)
        assert firm == "kaede"
        assert client.post("/console/cases", data={"firm": "kaede", "alert_id": theirs, "csrf": csrf},
                           follow_redirects=False).status_code == 303
        (case_id,) = [c["case_id"] for c in cases.list_cases(engine)]
        assert client.post("/console/contain/account", data={"firm": "kaede", "account_id": "A7", "csrf": csrf,
                                                               "reason": "kaede's own reason"},
                           follow_redirects=False).status_code == 303

        csrf = login(client, "hana")
        queue = client.get("/console/alerts").text
        assert "/console/alerts/acme/" in queue and "/console/alerts/kaede/" not in queue
        with engine.connect() as conn:  # the page's poll mark tells nothing of kaede's alerts
            newest = max(conn.execute(select(alerts.c.seq).where(alerts.c.firm == "acme")).scalars())
        assert re.search(r'data-last-seq="(\d+)"', queue).group(1) == str(newest)
        assert "/console/alerts/kaede/" not in client.get("/console/alerts", params={"firm": "kaede"}).text
        assert {a["firm"] for a in client.get("/console/api/alerts").json()["alerts"]} == {"acme"}
        for path in (f"/console/alerts/kaede/{theirs}", f"/console/api/campaign/kaede/{theirs}",
                     "/console/accounts/kaede/A7", f"/console/cases/{case_id}"):
            assert client.get(path).status_code == 404, path
        assert str(case_id) not in re.findall(r'href="/console/cases/(\d+)"', client.get("/console/cases").text)
        audit_page = client.get("/console/audit").text
        assert "kaede&#39;s own reason" not in audit_page and "kaede's own reason" not in audit_page
        for path, data in (("/console/contain/account", {"firm": "kaede", "account_id": "A1", "reason": "x"}),
                           ("/console/contain/alert", {"firm": "kaede", "alert_id": theirs, "reason": "x"}),
                           ("/console/cases", {"firm": "kaede", "alert_id": theirs}),
                           (f"/console/cases/{case_id}/comment", {"text": "x"}),
                           (f"/console/cases/{case_id}/close", {"disposition": "benign", "reason": "x"})):
            assert client.post(path, data={**data, "csrf": csrf}, follow_redirects=False).status_code == 404, path
        assert [a["account_id"] for a in actions(engine, "kaede") if not a["dry_run"]] == ["A7"]
        assert cases.get_case(engine, case_id)["status"] == "open" and not cases.get_case(engine, case_id)["comments"]
        ours = client.get("/console/api/dashboard").json()["alerts"]
        # ... and acts on its own firm as before.
        firm, alert_id = _campaign(client)
        assert firm == "acme" and client.get(f"/console/alerts/acme/{alert_id}").status_code == 200
        assert client.post("/console/contain/account", data={"firm": "acme", "account_id": "A1", "csrf": csrf,
                                                              "reason": "confirmed"},
                           follow_redirects=False).status_code == 303

        login(client, "root")  # a user of every firm sees both
        assert client.get("/console/api/dashboard").json()["alerts"] == 2 * ours
        assert client.get(f"/console/alerts/kaede/{theirs}").status_code == 200
        assert {a["firm"] for a in client.get("/console/api/alerts").json()["alerts"]} == {"acme", "kaede"}


def test_another_firms_case_and_a_missing_one_answer_alike(app: TestClient) -> None:
    """Probing case ids tells a user of one firm neither which exist nor whose they are."""
    engine = app.app.state.service.db.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        alert_id = conn.execute(select(alerts.c.alert_id).where(alerts.c.firm == "acme")).scalars().first()
    theirs = cases.open_case(engine, "analyst", "acme", [alert_id])
    create_user(engine, "kaito", "analyst", PASSWORD, "kaede")
    csrf = login(app, "kaito")
    for case_id in (theirs, theirs + 1000):
        answers = [app.get(f"/console/cases/{case_id}")] + [
            app.post(f"/console/cases/{case_id}/{action}", data={**data, "csrf": csrf}, follow_redirects=False)
            for action, data in (("assign", {"assignee": "kaito"}), ("comment", {"text": "x"}),
                                 ("link", {"account_id": "A1"}), ("close", {"disposition": "benign", "reason": "x"}))]
        for answer in answers:
            assert answer.status_code == 404 and f"case {case_id}: not found" in answer.text, answer.text
            assert "acme" not in answer.text
    assert cases.get_case(engine, theirs)["status"] == "open" and not cases.get_case(engine, theirs)["comments"]


def test_ids_holding_a_slash_open_from_the_queue_and_after_containing(tmp_path: Path) -> None:
    """The contract allows '/' in ids (a platform's `web/…`): every link and redirect still opens."""
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9, console_secure_cookie=0))
    create_user(application.state.service.db.engine, "hana", "analyst", PASSWORD, "acme")
    stream = ordered_stream([brokerage().write(tmp_path / "e.jsonl")])
    for event in stream:
        event["event_id"] = f"web/{event['event_id']}"
        if "account_id" in event:
            event["account_id"] = f"branch1/{event['account_id']}"
    key = create_key(application.state.service.db, "acme", "test")[1]
    with TestClient(application) as client:
        assert client.post("/v1/events", json=stream, headers={"X-API-Key": key}).status_code == 200
        csrf = login(client, "hana")
        firm, alert_id = _campaign(client)
        assert "%2F" in alert_id
        alert_page = client.get(f"/console/alerts/{firm}/{alert_id}")
        assert alert_page.status_code == 200 and "/console/accounts/acme/branch1%2FA0" in alert_page.text
        links = re.findall(r'href="(/console/(?:alerts|accounts)/[^"]+)"', client.get("/console/alerts").text)
        assert links and all(client.get(link).status_code == 200 for link in links)
        graph = re.search(r'data-src="([^"]+)"', alert_page.text).group(1)
        assert "branch1/A0" in client.get(graph).json()["members"]
        contained = client.post("/console/contain/account", follow_redirects=False, data={
            "firm": "acme", "account_id": "branch1/A0", "reason": "confirmed", "csrf": csrf})
        assert contained.headers["location"].startswith("/console/accounts/acme/branch1%2FA0?")
        account_page = client.get(contained.headers["location"])
        assert account_page.status_code == 200 and "<title>Account branch1/A0 " in account_page.text
        assert '<p class="done" role="status">account contained</p>' in account_page.text


def test_the_queue_filters_and_orders_every_alert_and_polls_only_newer_ones(tmp_path: Path) -> None:
    """6000 alerts, more than the queue once read: old ones still match a filter and the score
    order, and the live poll after a page sorted by score brings nothing not recorded since."""
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", console_secure_cookie=0))
    engine = application.state.service.db.engine
    create_user(engine, "hana", "analyst", PASSWORD, "acme")
    rows = []
    for n in range(6000):
        body = {"alert_id": f"al-{n:05d}", "type": "account_alert", "ts": "2025-03-01T00:00:00+00:00",
                "account_id": f"A{n}", "score": 0.999 if n == 7 else round((n % 900) / 1000, 3),
                "reasons": ["rare_reason"] if n < 10 else ["new_device"]}
        rows.append({"firm": "acme", "alert_id": body["alert_id"], "event_id": f"e{n}", "ts_us": n,
                     "type": "account_alert", "account_id": body["account_id"], "body": msgspec.json.encode(body)})
    with engine.begin() as conn:
        conn.execute(alerts.insert(), rows)
    with TestClient(application) as client:
        login(client, "hana")
        page = client.get("/console/alerts", params={"sort": "score"}).text
        assert re.findall(r'href="/console/alerts/acme/([^"]+)"', page)[0] == "al-00007"
        last = int(re.search(r'data-last-seq="(\d+)"', page).group(1))
        assert last == 6000
        assert client.get("/console/api/alerts", params={"sort": "score", "after": last}).json()["alerts"] == []
        rare = client.get("/console/api/alerts", params={"reason": "rare_reason"}).json()["alerts"]
        assert sorted(a["alert_id"] for a in rare) == [f"al-{n:05d}" for n in range(10)]
        high = client.get("/console/api/alerts", params={"min_score": 0.99}).json()["alerts"]
        assert [a["alert_id"] for a in high] == ["al-00007"]
        oldest = client.get("/console/api/alerts", params={"order": "asc"}).json()["alerts"]
        assert [a["seq"] for a in oldest[:3]] == [1, 2, 3]


def _alert_rows(first: int, count: int, ts: str = "2025-03-01T00:00:00+00:00", ts_us: int = 0) -> list[dict]:
    """`count` account alerts of acme as the service stores them, scores rising with n."""
    rows = []
    for n in range(first, first + count):
        body = {"alert_id": f"al-{n:05d}", "type": "account_alert", "ts": ts, "account_id": f"A{n}",
                "score": round(n / (first + count), 4), "reasons": ["new_device"]}
        rows.append({"firm": "acme", "alert_id": body["alert_id"], "event_id": f"e{n}", "ts_us": ts_us or n,
                     "type": "account_alert", "account_id": body["account_id"], "body": msgspec.json.encode(body)})
    return rows


def test_the_live_queue_brings_every_alert_of_a_burst_larger_than_a_poll(tmp_path: Path) -> None:
    """400 alerts arrive between two polls of a page sorted by score: the poll pages through them
    in the order recorded and says when more wait, so the page's newest seq never passes one unseen."""
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", console_secure_cookie=0))
    engine = application.state.service.db.engine
    create_user(engine, "hana", "analyst", PASSWORD, "acme")
    with engine.begin() as conn:
        conn.execute(alerts.insert(), _alert_rows(0, 5))
    with TestClient(application) as client:
        login(client, "hana")
        last = int(re.search(r'data-last-seq="(\d+)"', client.get("/console/alerts", params={"sort": "score"}).text).group(1))
        with engine.begin() as conn:
            conn.execute(alerts.insert(), _alert_rows(5, 400))
        seen, polls, more = [], 0, True
        while more:
            page = client.get("/console/api/alerts", params={"sort": "score", "after": last}).json()
            more, polls = page["more"], polls + 1
            seen += page["alerts"]
            last = max([last, *(a["seq"] for a in page["alerts"])])
        assert polls == 2 and len(seen) == 400
        assert [a["alert_id"] for a in seen] == [f"al-{n:05d}" for n in range(5, 405)]


def test_the_queues_date_filters_are_days_of_the_firms_time_zone(tmp_path: Path) -> None:
    """An alert at 05:00 in Tokyo is the 21st's there, though UTC still says the 20th."""
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", console_secure_cookie=0))
    engine = application.state.service.db.engine
    create_user(engine, "hana", "analyst", PASSWORD, "acme")
    with engine.begin() as conn:
        conn.execute(alerts.insert(), _alert_rows(0, 1, ts="2025-03-21T05:00:00+09:00", ts_us=1742500800 * 10**6))
    with TestClient(application) as client:
        login(client, "hana")
        on = lambda day: [a["alert_id"] for a in client.get(  # noqa: E731
            "/console/api/alerts", params={"since": day, "until": day}).json()["alerts"]]
        assert on("2025-03-21") == ["al-00000"] and on("2025-03-20") == []
        assert "(days of UTC+9)" in client.get("/console/alerts").text


def test_ids_out_of_range_and_alerts_naming_no_account_are_a_4xx_and_contain_nothing(app: TestClient) -> None:
    """A case id past 64 bits gave a 500 on SQLite; a form without its reason showed raw JSON; a
    firm name no table can hold a 503 that said to retry; a symbol alert "contained 0 accounts"."""
    csrf = login(app, "admin")
    huge = "99999999999999999999"
    assert app.get(f"/console/cases/{huge}").status_code == 422
    assert app.post(f"/console/cases/{huge}/comment", data={"text": "x", "csrf": csrf}).status_code == 422
    assert app.get("/console/api/alerts", params={"after": huge}).status_code == 422
    no_reason = app.post("/console/contain/account", data={"firm": "acme", "account_id": "A1", "csrf": csrf})
    assert no_reason.status_code == 422 and "<title>" in no_reason.text and "reason: Field required" in no_reason.text
    engine = app.app.state.service.db.engine
    before = actions(engine, limit=None)
    refused = app.post("/console/contain/account", data={"firm": "f" * 65, "account_id": "A1", "reason": "takeover",
                                                          "csrf": csrf})
    assert refused.status_code == 400 and "firm: 1 to 64 characters" in refused.text
    body = {"alert_id": "sym-1", "type": "symbol_alert", "ts": "2025-03-01T00:00:00+00:00", "symbol": "9999",
            "score": 0.9, "reasons": ["volume_price_surge"]}
    with engine.begin() as conn:
        conn.execute(alerts.insert().values(firm="acme", alert_id="sym-1", event_id="b1", ts_us=1, type="symbol_alert",
                                            account_id=None, body=msgspec.json.encode(body)))
    symbol = app.post("/console/contain/alert", data={"firm": "acme", "alert_id": "sym-1", "reason": "pump",
                                                       "csrf": csrf})
    assert symbol.status_code == 400 and "names no account" in symbol.text
    assert actions(engine, limit=None) == before


def test_filters_survive_the_sort_links_and_the_way_through_the_login_page(app: TestClient) -> None:
    """A reason holding `&` or `#` was pasted raw into the sort links; a queue link opened before
    logging in lost its filters."""
    asked = app.get("/console/alerts", params={"type": "campaign_alert", "reason": "a&b#c"}, follow_redirects=False)
    login_page = app.get(asked.headers["location"]).text
    assert 'name="next" value="/console/alerts?type=campaign_alert&amp;reason=a%26b%23c"' in login_page
    login(app, "analyst")
    page = app.get("/console/alerts", params={"reason": "a&b#c", "min_score": 0.5}).text
    links = [href.replace("&amp;", "&") for href in re.findall(r'<th><a href="\?([^"]+)"', page)]
    assert len(links) == 4 and all("reason=a%26b%23c" in link and "min_score=0.5" in link for link in links)


def test_an_alerts_page_lists_its_containment_after_500_later_actions(app: TestClient) -> None:
    csrf = login(app, "analyst")
    firm, alert_id = _campaign(app)
    assert app.post("/console/contain/alert", data={"firm": firm, "alert_id": alert_id, "reason": "the campaign",
                                                    "csrf": csrf}, follow_redirects=False).status_code == 303
    later = functools.partial(app.app.state.service.containment.contain, "lead", firm,  # type: ignore[attr-defined]
                              [f"Z{n}" for n in range(500)], "later work")
    app.portal.call(later)  # type: ignore[union-attr]
    page = app.get(f"/console/alerts/{firm}/{alert_id}").text
    assert page.count("the campaign") == 6 and "later work" not in page


def _report(firm: str, month: str, accesses: int, trades: int, bought: float) -> list[dict]:
    """A firm's identity, monthly report and one targeted symbol, as `intel export` shares them."""
    ident = f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, firm)}"
    base = {"spec_version": "2.1", "created": "2025-05-01T00:00:00.000Z", "modified": "2025-05-01T00:00:00.000Z",
            "created_by_ref": ident}
    return [{"type": "identity", "id": ident, "name": firm, "identity_class": "organization", **base},
            {"type": "x-kabuguard-monthly-report", "id": f"x-kabuguard-monthly-report--{uuid.uuid4()}",
             "name": f"{firm} {month}", "month": month, "unauthorised_access_count": accesses,
             "unauthorised_trade_count": trades, "sell_amount_jpy": 2 * bought, "buy_amount_jpy": bought, **base},
            {"type": "x-kabuguard-targeted-symbol", "id": f"x-kabuguard-targeted-symbol--{uuid.uuid4()}",
             "name": "9999", "symbol": "9999", "first_seen": "2025-04-08T01:00:00Z", "last_seen": "2025-04-09T01:00:00Z",
             "accounts": ["p1", "p2"], "buy_orders": trades, "buy_notional_jpy": bought, "sell_notional_jpy": 0.0, **base}]


def test_the_regulators_page_sums_the_firms_reports_for_those_who_may_read_them(tmp_path: Path) -> None:
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", console_secure_cookie=0))
    engine = application.state.service.db.engine
    store = TaxiiStore(engine)
    store.create_collection("fsa-inbox", "reports to the regulator", "", readers=["fsa"], writers=["*"])
    store.add("acme", "fsa-inbox", _report("acme", "2025-04", accesses=7, trades=3, bought=2e8))
    store.add("kaede", "fsa-inbox", _report("kaede", "2025-04", accesses=5, trades=2, bought=1e8))
    create_user(engine, "regulator", "auditor", PASSWORD, "fsa")
    create_user(engine, "operator", "admin", PASSWORD, None)
    create_user(engine, "broker", "analyst", PASSWORD, "acme")
    for user in ("regulator", "operator"):
        with TestClient(application) as client:
            login(client, user)
            page = client.get("/console/intel").text
            month = re.search(r'<table id="intel-months".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
            cells = re.findall(r"<td>([^<]*)</td>", month)
            assert cells[:2] == ["2025-04", "12"] and cells[2:] == ["5", "6.0", "3.0", "2", "2"], (user, cells)
            symbols = re.search(r'<table id="intel-symbols".*?<tbody>(.*?)</tbody>', page, re.S).group(1).replace("\n", "")
            assert "<td>9999</td><td>acme, kaede</td><td>4</td><td>5</td><td>300,000,000</td>" in symbols
    with TestClient(application) as client:
        login(client, "broker")  # acme reports to the inbox but may not read it
        assert 'id="no-collection"' in client.get("/console/intel").text
        assert client.get("/console/intel", params={"collection": "fsa-inbox"}).status_code == 404


def test_values_postgresql_cannot_store_are_a_400_naming_no_data(tmp_path: Path, pg_url: str) -> None:
    """A NUL in a path or a value wider than its column made PostgreSQL refuse the query, and the
    console answered 500; a 201-character account was contained in the state, then failed."""
    application = create_app(Settings(db=pg_url, rate_limit=1e9, console_secure_cookie=0))
    create_user(application.state.service.db.engine, "analyst", "analyst", PASSWORD, None)
    key = create_key(application.state.service.db, "acme", "test")[1]
    with TestClient(application, raise_server_exceptions=False) as client:
        client.post("/v1/events", json=ordered_stream([brokerage().write(tmp_path / "e.jsonl")]),
                    headers={"X-API-Key": key})
        csrf = login(client, "analyst")
        firm, alert_id = _campaign(client)
        opened = client.post("/console/cases", data={"firm": firm, "alert_id": alert_id, "csrf": csrf},
                             follow_redirects=False)
        case = opened.headers["location"].split("?")[0].rsplit("/", 1)[1]
        answers = [client.get(f"/console/accounts/{firm}/A%00"),
                   client.get("/console/api/alerts", params={"type": "a\x00"}),
                   client.post(f"/console/cases/{case}/assign", data={"assignee": "x" * 65, "csrf": csrf}),
                   client.post(f"/console/cases/{case}/link", data={"account_id": "x" * 201, "csrf": csrf}),
                   client.post("/console/contain/account", data={"firm": firm, "account_id": "x" * 201,
                                                                "reason": "r", "csrf": csrf})]
        assert [a.status_code for a in answers] == [400] * 5, [(a.status_code, a.text[:80]) for a in answers]
        assert all("SELECT" not in a.text and "INSERT" not in a.text for a in answers)
        assert actions(application.state.service.db.engine, firm, account_id="x" * 201) == []
