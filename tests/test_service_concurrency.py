"""Requests that touch the same state at the same moment, on two workers sharing Redis, lose nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from conftest import HOME_UA, ts
from kabuguard.engine import Pipeline
from kabuguard.engine.redis_store import StateCodec
from kabuguard.service.app import create_app
from kabuguard.service.decider import INLINE_EVENTS
from kabuguard.service.auth import create_key as new_key
from kabuguard.service.settings import Settings
from test_service_support import ServiceProcess, create_key, pg_url, redis_prefix, redis_url

__all__ = ["pg_url", "redis_prefix", "redis_url"]  # fixtures


def _login(event_id: str, account: str, ip: str, minute: int) -> dict:
    return {"event_id": event_id, "type": "login", "ts": ts(3, 9, minute), "account_id": account,
            "session_id": f"s-{event_id}", "success": True, "ip": ip, "user_agent": HOME_UA,
            "device_id": f"dev-{account}", "mfa": "sms", "channel": "web"}


def _at_once(url: str, key: str, bodies: list[dict]) -> list[httpx.Response]:
    """Every body in its own thread and connection, released together."""
    gate = threading.Barrier(len(bodies))
    answers: list[httpx.Response | None] = [None] * len(bodies)

    def send(n: int) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
            client.get("/healthz")  # connect first, so that the requests leave together
            gate.wait()
            answers[n] = client.post("/v1/events", json=bodies[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [a for a in answers if a is not None]


def _state(url: str, prefix: str, stage: str, key: str) -> dict:
    data = redis.Redis.from_url(url).hget(f"{prefix}s:acme:{stage}:{key}", "d")
    return StateCodec(Pipeline()).decode(stage, data)


def test_concurrent_requests_for_one_account_never_lose_an_update(
        tmp_path: Path, redis_url: str, redis_prefix: str, pg_url: str) -> None:
    service = ServiceProcess(tmp_path, redis_url, pg_url, workers=2, KABUGUARD_REDIS_PREFIX=redis_prefix)
    key = create_key(pg_url)
    service.start()
    try:
        workers = set()
        rounds = 15
        for n in range(rounds):
            pair = [_login(f"lo-{n}-a", "A1", "203.0.113.5", n), _login(f"lo-{n}-b", "A1", "203.0.113.6", n)]
            answers = _at_once(service.url, key, pair)
            assert [a.status_code for a in answers] == [200, 200]
            assert all(a.json()["results"][0]["duplicate"] is False for a in answers)
            workers |= {a.headers["x-kabuguard-worker"] for a in answers}
        # Ten accounts log in from one (hosting) address at the same moment: its state has all ten.
        crowd = [_login(f"crowd-{n}", f"B{n}", "45.32.100.44", 30) for n in range(10)]
        assert all(a.status_code == 200 for a in _at_once(service.url, key, crowd))
    finally:
        service.stop()
    account = _state(redis_url, redis_prefix, "account", "A1")
    assert account["hosting_network"].logins == 2 * rounds  # every login counted once
    assert set(_state(redis_url, redis_prefix, "ip", "45.32.100.44")["shared_ip"].accounts) == {f"B{n}" for n in range(10)}
    assert len(workers) == 2, "both workers took part"
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        ids = conn.exec_driver_sql("SELECT event_id FROM decisions").scalars().all()
    engine.dispose()
    assert len(ids) == len(set(ids)) == 2 * rounds + 10


def test_an_embedded_decision_in_progress_holds_neither_health_checks_nor_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large batch was decided on the event loop: /healthz and other firms waited seconds."""
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9))
    headers = {"X-API-Key": new_key(app.state.service.db, "acme", "test")[1]}
    decider = app.state.service.decider
    entered, release = threading.Event(), threading.Event()
    decide = decider._embedded

    def held(firm: str, events: list) -> object:  # a batch that takes its time
        entered.set()
        release.wait(20)
        return decide(firm, events)

    monkeypatch.setattr(decider, "_embedded", held)
    posted: list[int] = []
    read: list[int] = []
    with TestClient(app) as client:
        batch = [_login(f"e{n}", f"A{n}", "126.1.3.5", n % 60) for n in range(INLINE_EVENTS + 1)]
        poster = threading.Thread(target=lambda: posted.append(
            client.post("/v1/events", json=batch, headers=headers).status_code))
        poster.start()
        assert entered.wait(20)
        reader = threading.Thread(target=lambda: read.extend(
            (client.get("/healthz").status_code, client.get("/v1/alerts", headers=headers).status_code)))
        reader.start()
        reader.join(5)
        waited = reader.is_alive()
        release.set()
        poster.join(20)
        reader.join(20)
    assert not waited and read == [200, 200]
    assert posted == [200]
