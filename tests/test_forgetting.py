"""Stages forget keys idle past their detectors' horizons: the same decisions, bounded state."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import redis
import yaml
from fastapi.testclient import TestClient

import kabuguard.policy
from conftest import HOME_UA, ts
from kabuguard.engine import Pipeline
from kabuguard.engine.redis_store import RedisState, StateCodec
from kabuguard.events import total_order
from kabuguard.events.reader import event_from_dict
from kabuguard.policy import load_policy
from kabuguard.replay import decide, read_events
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.redis_client import Redis
from kabuguard.service.settings import Settings
from test_service_support import redis_prefix, redis_url

__all__ = ["redis_prefix", "redis_url"]  # fixtures

_HOUR_US = 3_600_000_000


def _short_windows(tmp_path: Path) -> Path:
    """The default policy with the address and device windows cut to about an hour, so that a
    ten-day simulated run has plenty of keys idle for longer than their stage's horizon."""
    raw = yaml.safe_load((Path(kabuguard.policy.__file__).parent / "default.yaml").read_text())
    detectors = raw["detectors"]
    detectors["shared_ip"]["window_hours"] = detectors["shared_device"]["window_hours"] = 1
    detectors["ip_reputation"]["window_days"] = detectors["device_reputation"]["window_days"] = 1 / 24
    detectors["shared_indicator"]["max_age_days"] = 2 / 24
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, timezone.utc).isoformat()


def test_forgetting_idle_addresses_and_devices_changes_no_decision_and_bounds_the_keys_held(
        tmp_path: Path, three_firms: Path) -> None:
    policy = load_policy(_short_windows(tmp_path))
    events = read_events([three_firms / "sim" / "events"], quiet=True)[0]
    # Shared indicators (their age, two hours here, sets the horizon): the address and device of
    # every 40th login arrive three hours after it, and a stranger logs in from both just before
    # the indicators are two hours old, so a key forgotten a little early loses a finding.
    for n, login in enumerate([e for e in events if e.kind == "login" and e.ip and e.device_id][::40]):
        arrival = login.ts_us + 3 * _HOUR_US
        for kind, value in (("ip", login.ip), ("device", login.device_id)):
            events.append(event_from_dict({"type": "indicator", "event_id": f"ind-{kind}-{n}", "indicator_type": kind,
                                           "value": value, "ts": _iso(arrival)}))
        events.append(event_from_dict({
            "type": "login", "event_id": f"stranger-{n}", "account_id": f"X{n}", "session_id": f"sx-{n}",
            "success": True, "ip": login.ip, "device_id": login.device_id, "user_agent": login.user_agent,
            "channel": "web", "mfa": "sms", "ts": _iso(arrival + 2 * _HOUR_US - 60_000_000)}))
    events = total_order(events).events
    forgetting, keeping = Pipeline(policy), Pipeline(policy)
    assert forgetting.horizons_us == {"ip": 2 * _HOUR_US, "device": 2 * _HOUR_US}
    for stage in keeping.stages:
        stage.horizon_us = None
    runs = [[d for _, d, _ in decide(p, events) if d is not None] for p in (forgetting, keeping)]
    assert runs[0] == runs[1]
    reasons = {r for d in runs[0] for r in d["reasons"]}
    assert {"shared_ip", "credential_stuffing"} & reasons, "the stages forgetting keys did find something"
    assert "shared_indicator" in reasons
    for stage in ("ip", "device"):
        kept, held = keeping.store.keys(stage), forgetting.store.keys(stage)
        assert held < kept / 2, (stage, held, kept)
    # The stages whose detectors remember for ever (an account's habits) keep every key.
    assert forgetting.store.keys("account") == keeping.store.keys("account")


def test_redis_lets_address_and_device_keys_expire_after_their_horizon_and_keeps_accounts(
        tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    app = create_app(Settings(state=redis_url, redis_prefix=redis_prefix, db=f"sqlite:///{tmp_path}/kg.db",
                              rate_limit=1e9))
    login = {"event_id": "lo-1", "type": "login", "ts": ts(3, 9, 0), "account_id": "A1", "session_id": "s-1",
             "success": True, "ip": "203.0.113.5", "user_agent": HOME_UA, "device_id": "dev-1", "mfa": "sms",
             "channel": "web"}
    with TestClient(app) as client:
        headers = {"X-API-Key": create_key(app.state.service.db, "acme", "t")[1]}
        answer = client.post("/v1/events", json=login, headers=headers)
        assert answer.status_code == 200, answer.text
    r = redis.Redis.from_url(redis_url)
    horizon_ms = Pipeline().horizons_us["ip"] // 1000 + 86_400_000  # a day's margin for late events
    for stage, key in (("ip", "203.0.113.5"), ("device", "dev-1")):
        left = r.pttl(f"{redis_prefix}s:acme:{stage}:{key}")
        assert horizon_ms - 60_000 < left <= horizon_ms, (stage, left)
    assert r.pttl(f"{redis_prefix}s:acme:account:A1") == -1  # exists, never expires
    assert r.pttl(f"{redis_prefix}s:acme:final:A1") == -1


def test_a_key_that_expired_and_came_back_is_a_conflict_for_a_request_that_read_it_before(
        redis_url: str, redis_prefix: str) -> None:
    """Versions counted per key restarted at 1 when a key expired and was written again, so a
    request that had read the old key at version 1 overwrote the new state: a lost update."""
    pipeline = Pipeline()
    state = RedisState(Redis(redis_url), StateCodec(pipeline).formats(), redis_prefix, 60, pipeline.horizons_us)
    sk = ("ip", "203.0.113.5")

    async def run() -> tuple[bool, bool]:
        await state.commit("acme", await state.load("acme", [sk], []), {sk: b"long ago"}, {}, None)
        first = await state.load("acme", [sk], [])  # a request reads the key...
        redis.Redis.from_url(redis_url).delete(state.state_key("acme", *sk))  # ...which then expires
        second = await state.load("acme", [sk], [])  # another request finds none and writes one
        wrote = await state.commit("acme", second, {sk: b"new"}, {}, None)
        return wrote, await state.commit("acme", first, {sk: b"stale"}, {}, None)

    assert asyncio.run(run()) == (True, False)
    assert redis.Redis.from_url(redis_url).hget(state.state_key("acme", *sk), "d") == b"new"
