"""The console over HTTP: sessions, CSRF and roles enforced by the server on every route."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import brokerage
from kabuguard.console import audit
from kabuguard.console.containment import actions
from kabuguard.console.users import create_user
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings
from test_service_support import ordered_stream

PASSWORD = "a long test password"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[TestClient]:
    """The service after a brokerage's campaign, with one user per role."""
    application = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9, console_secure_cookie=0))
    engine = application.state.service.db.engine
    for role in ("analyst", "lead", "admin", "auditor"):
        create_user(engine, role, role, PASSWORD)
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
    create_user(application.state.service.db.engine, "hana", "analyst", PASSWORD)
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


def test_state_changing_requests_need_the_sessions_csrf_token(app: TestClient) -> None:
    csrf = login(app, "analyst")
    firm, alert_id = _campaign(app)
    for data in ({}, {"csrf": "not-the-token"}):
        refused = app.post("/console/cases", data={"firm": firm, "alert_id": alert_id, **data})
        assert refused.status_code == 403 and "CSRF" in refused.text
    opened = app.post("/console/cases", data={"firm": firm, "alert_id": alert_id, "csrf": csrf})
    assert opened.status_code == 200 and "case opened" in opened.text
    via_header = app.post("/console/cases", data={"firm": firm, "alert_id": alert_id},
                          headers={"X-CSRF-Token": csrf})
    assert via_header.status_code == 200


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


def test_repeated_failed_logins_lock_the_user_name_for_a_while(app: TestClient) -> None:
    form = app.get("/console/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    attempt = {"username": "analyst", "csrf": csrf}
    for n in range(10):
        assert app.post("/console/login", data={**attempt, "password": f"guess number {n}"}).status_code == 401
    locked = app.post("/console/login", data={**attempt, "password": PASSWORD})
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    assert login(app, "lead")  # another user is not affected
