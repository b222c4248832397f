"""SIGKILL mid-stream: after a restart and a resend of what was not acknowledged, no decision is lost
or doubled, and state is what the replay's is."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy

from conftest import brokerage, ts
from kabuguard.engine import MemoryStore, Pipeline
from kabuguard.engine.redis_store import StateCodec
from kabuguard.events.reader import event_from_dict
from test_service_support import (ServiceProcess, batches, body_of, create_key, encode, ordered_stream, pg_url,
                                  redis_prefix, redis_url, replay_reference)

__all__ = ["pg_url", "redis_prefix", "redis_url"]  # fixtures


class Sender:
    """Posts chunks in order from a thread, remembering each acknowledged answer; stops at the first failure."""

    def __init__(self, url: str, key: str, chunks: list[list[dict]]) -> None:
        self.url, self.key, self.chunks = url, key, chunks
        self.answers: dict[int, dict] = {}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self, start: int = 0) -> None:
        with httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=10) as client:
            for n in range(start, len(self.chunks)):
                try:
                    answer = client.post("/v1/events", content=body_of(self.chunks[n]))
                except httpx.HTTPError:
                    return
                assert answer.status_code == 200, answer.text
                self.answers[n] = answer.json()

    def unacknowledged(self) -> int:
        return min(set(range(len(self.chunks))) - set(self.answers), default=len(self.chunks))


def _crash_and_resend(service: ServiceProcess, key: str, chunks: list[list[dict]], seed: int) -> Sender:
    sender = Sender(service.url, key, chunks)
    sender.thread.start()
    target = random.Random(seed).randrange(len(chunks) // 4, len(chunks) // 2)
    while len(sender.answers) < target:
        time.sleep(0.001)
    service.kill()  # SIGKILL, most likely with a request in flight
    sender.thread.join(10)
    first = sender.unacknowledged()
    assert 0 < first < len(chunks)
    service.start()
    sender.url = service.url
    sender.run(first)
    assert sender.unacknowledged() == len(chunks)
    return sender


def _decisions(sender: Sender) -> list[bytes]:
    out = []
    for n in sorted(sender.answers):
        for result in sender.answers[n]["results"]:
            assert result["decision"] is None or result["decision"]["reasons"] != ["degraded"]
            if result["decision"] is not None:
                out.append(encode(result["decision"]))
    return out


def _recorded(url: str) -> tuple[list[bytes], list[bytes]]:
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        decisions = [bytes(b) for b in conn.exec_driver_sql("SELECT body FROM decisions").scalars()]
        alerts = [bytes(b) for b in conn.exec_driver_sql("SELECT body FROM alerts").scalars()]
    engine.dispose()
    return decisions, alerts


@pytest.mark.parametrize("wait_for_database", ["0", "1"], ids=["answer-after-redis", "answer-after-postgres"])
def test_sigkill_with_redis_and_postgres_loses_and_doubles_nothing(
        tmp_path: Path, redis_url: str, redis_prefix: str, pg_url: str, wait_for_database: str) -> None:
    s = brokerage()
    for minute in range(1, 31):  # a market too: the rows its bars keep are compared below
        for symbol, close in (("7203", 2500.0 + minute), ("9999", 300.0 - minute % 3)):
            s.add("market_bar", ts(2, 9, minute), symbol=symbol, open=close, high=close, low=close, close=close,
                  volume=1000 + 10 * minute)
    src = s.write(tmp_path / "e.jsonl")
    want_decisions, want_alerts = replay_reference([src], tmp_path / "replay")
    stream = ordered_stream([src])
    chunks = list(batches(stream, 20))
    service = ServiceProcess(tmp_path, redis_url, pg_url, workers=2, KABUGUARD_REDIS_PREFIX=redis_prefix,
                             KABUGUARD_OUTBOX_AFTER_S="0.5", KABUGUARD_WAIT_FOR_DATABASE=wait_for_database)
    key = create_key(pg_url)
    service.start()
    try:
        sender = _crash_and_resend(service, key, chunks, seed=1)
        # A decision whose database write the crash cut short waits in the outbox: flushed shortly.
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 20
        while client.hlen(f"{redis_prefix}outbox") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.hlen(f"{redis_prefix}outbox") == 0
    finally:
        service.stop()
    assert _decisions(sender) == want_decisions  # answers, retries included, are the replay's
    decisions, alerts = _recorded(pg_url)
    assert sorted(decisions) == sorted(want_decisions)  # each recorded once
    assert sorted(alerts) == sorted(want_alerts)
    # State in Redis is exactly the replay's state, key by key.
    pipeline = Pipeline()
    store = pipeline.store
    assert isinstance(store, MemoryStore)
    for event in stream:
        pipeline.process(event_from_dict(event))
    codec = StateCodec(pipeline)
    client = redis.Redis.from_url(redis_url)
    compared = 0
    for stage, states in store._stages.items():
        for k, state in states.items():
            assert client.hget(f"{redis_prefix}s:acme:{stage}:{k}", "d") == codec.encode(state), (stage, k)
            compared += 1
    for stage, table in store._rows.items():
        for k, i in table.at.items():
            row = codec.encode({"row": table.data[i].tolist()})
            assert client.hget(f"{redis_prefix}s:acme:{stage}:{k}", "d") == row, (stage, k)
            compared += 1
    assert compared > 30 and len(store._rows) == 2


def test_sigkill_embedded_rebuilds_state_from_its_log(tmp_path: Path) -> None:
    src = brokerage().write(tmp_path / "e.jsonl")
    want_decisions, want_alerts = replay_reference([src], tmp_path / "replay")
    chunks = list(batches(ordered_stream([src]), 20))
    db = f"sqlite:///{tmp_path}/kg.db"
    service = ServiceProcess(tmp_path, "memory", db)
    key = create_key(db)
    service.start()
    try:
        sender = _crash_and_resend(service, key, chunks, seed=2)
    finally:
        service.stop()
    assert _decisions(sender) == want_decisions
    with sqlite3.connect(tmp_path / "kg.db") as conn:
        decisions = [bytes(r[0]) for r in conn.execute("SELECT body FROM decisions")]
        alerts = [bytes(r[0]) for r in conn.execute("SELECT body FROM alerts")]
    assert decisions == want_decisions  # one process, one order: even the order is the replay's
    assert sorted(alerts) == sorted(want_alerts)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)


def test_a_logged_event_this_version_refuses_is_left_out_of_the_rebuild_named_not_fatal(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """An earlier version logged and decided an order of 0 shares (refused at the boundary since):
    the embedded service's start, which rebuilds state from the log, stopped on it."""
    import msgspec
    from fastapi.testclient import TestClient

    from kabuguard.service.app import create_app
    from kabuguard.service.auth import create_key as make_key
    from kabuguard.service.settings import Settings

    db = tmp_path / "kg.db"
    login = {"event_id": "lo-1", "type": "login", "ts": "2025-03-03T09:00:00+09:00", "account_id": "A1",
             "session_id": "s1", "success": True, "ip": "126.1.2.3", "user_agent": "x", "device_id": "d1",
             "mfa": "sms", "channel": "web"}
    app = create_app(Settings(db=f"sqlite:///{db}", rate_limit=1e9))
    with TestClient(app) as client:
        key = make_key(app.state.service.db, "acme", "t")[1]
        assert client.post("/v1/events", json=login, headers={"X-API-Key": key}).status_code == 200
    old = {"type": "order", "event_id": "or-0", "ts": "2025-03-03T09:01:00+09:00", "ts_us": 1, "order_id": "o",
           "account_id": "A1", "symbol": "7203", "side": "buy", "qty": 0, "order_type": "market"}
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO events (firm, event_id, body, account_id, ts_us) VALUES (?, ?, ?, ?, ?)",
                     ("acme", "or-0", msgspec.msgpack.encode(old), "A1", 1))
    capfd.readouterr()
    with TestClient(create_app(Settings(db=f"sqlite:///{db}", rate_limit=1e9))) as client:
        assert client.get("/healthz").status_code == 200
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    left_out = [r for r in lines if "left out" in r["msg"]]
    assert [r["event_id"] for r in left_out] == ["or-0"] and "qty" in left_out[0]["reason"]
    assert [r["events"] for r in lines if r["msg"] == "state rebuilt from the event log"] == [1]
