"""Redis state written by another version is refused, never read as this version's (or a 500)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import HOME_UA, ts
from kabuguard.engine.pipeline import Pipeline
from kabuguard.engine.redis_store import StateCodec, StateFormatMismatch
from kabuguard.policy import load_policy
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings
from test_service_support import RedisServer, redis_prefix, redis_url

__all__ = ["redis_prefix", "redis_url"]  # fixtures


def _app(tmp_path: Path, url: str, prefix: str) -> FastAPI:
    return create_app(Settings(state=url, redis_prefix=prefix, db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9))


def _login(n: int) -> dict:
    return {"event_id": f"lo-{n}", "type": "login", "ts": ts(3, 9, n), "account_id": "A1", "session_id": f"s-{n}",
            "success": True, "ip": "203.0.113.5", "user_agent": HOME_UA, "device_id": "dev-1", "mfa": "sms",
            "channel": "web"}


def test_formats_are_recorded_once_and_a_restart_of_the_same_version_starts(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    formats = StateCodec(Pipeline(load_policy())).formats()
    assert "account.login_profile" in formats and "final.status" in formats
    with TestClient(_app(tmp_path, redis_url, redis_prefix)):
        pass
    stored = {k.decode(): v.decode() for k, v in redis.Redis.from_url(redis_url).hgetall(f"{redis_prefix}format").items()}
    assert stored == formats
    with TestClient(_app(tmp_path, redis_url, redis_prefix)) as client:
        assert client.get("/readyz").json()["state"] == "ok"


def test_a_redis_emptied_under_the_service_gets_the_formats_again_so_the_next_start_starts(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    """Redis restarted without persistence: the service went on writing state with no formats
    recorded, and its next start refused it as state of an unknown version."""
    r = redis.Redis.from_url(redis_url)
    app = _app(tmp_path, redis_url, redis_prefix)
    with TestClient(app) as client:
        key = create_key(app.state.service.db, "acme", "t")[1]
        assert client.post("/v1/events", json=_login(1), headers={"X-API-Key": key}).status_code == 200
        r.delete(*r.keys(f"{redis_prefix}*"))  # what a restart without persistence leaves
        answer = client.post("/v1/events", json=_login(2), headers={"X-API-Key": key}).json()
        assert not answer["degraded"]
    assert r.exists(f"{redis_prefix}format") and r.keys(f"{redis_prefix}s:*")
    with TestClient(_app(tmp_path, redis_url, redis_prefix)) as client:
        assert client.get("/readyz").json()["state"] == "ok"


def test_a_slot_of_another_format_stops_the_start_naming_it(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    redis.Redis.from_url(redis_url).hset(f"{redis_prefix}format", "final.sensitive_change", "0123456789abcdef")
    with pytest.raises(StateFormatMismatch, match=r"final\.sensitive_change \(stored 0123456789abcdef"):
        with TestClient(_app(tmp_path, redis_url, redis_prefix)):
            pass


def test_state_from_before_formats_were_recorded_stops_the_start(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    redis.Redis.from_url(redis_url).hset(f"{redis_prefix}s:acme:account:A1", mapping={"v": 3, "d": b"\x80"})
    with pytest.raises(StateFormatMismatch, match="did not record its format"):
        with TestClient(_app(tmp_path, redis_url, redis_prefix)):
            pass
    assert not redis.Redis.from_url(redis_url).exists(f"{redis_prefix}format"), "nothing recorded over old state"


def test_found_after_a_start_without_redis_it_answers_degraded_not_500(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    app = create_app(Settings(state=server.url, redis_prefix="kg:", db=f"sqlite:///{tmp_path}/kg.db",
                              rate_limit=1e9, deadline_ms=1000))
    headers = {"X-API-Key": create_key(app.state.service.db, "acme", "t")[1]}
    try:
        with TestClient(app) as client:  # Redis is not running yet: the start goes on, degraded
            server.start()
            redis.Redis.from_url(server.url).hset("kg:format", "account.login_profile", "0123456789abcdef")
            answer = client.post("/v1/events", json=_login(1), headers=headers)
            assert answer.status_code == 200
            assert answer.json()["degraded"] is True
            assert client.get("/readyz").json()["state"] == "format mismatch"
    finally:
        server.stop()


def test_a_row_of_another_width_is_another_format() -> None:
    """Rows are lists of floats whatever their width; a version that adds a column to a symbol's
    row, or a policy with other time-of-day buckets, must not start on the old rows."""
    policy = load_policy()
    params = {**policy.detectors["pump_surveillance"], "bucket_minutes": 60}
    wider = dataclasses.replace(policy, detectors={**policy.detectors, "pump_surveillance": params})
    default, other = StateCodec(Pipeline(policy)).formats(), StateCodec(Pipeline(wider)).formats()
    assert default["symbol_tapes.row"] != other["symbol_tapes.row"]
    assert default["market_marks.row"] == other["market_marks.row"]
