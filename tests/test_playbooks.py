"""Playbooks are decided by the core: with a live playbook the replay, the embedded service and
the Redis+PostgreSQL service contain the same accounts at the same place and decide byte for
byte alike; the service only records the actions and sends the webhooks, once per account."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Stream, brokerage, ts
from console_support import Served, policy_with
from kabuguard.console import audit
from kabuguard.console.containment import actions
from kabuguard.policy import PolicyError, load_policy
from kabuguard.policy.playbooks import fired
from kabuguard.service.settings import Settings
from test_service_support import (CORRECTNESS_DEADLINE_MS, batches, encode, ordered_stream, pg_url, redis_prefix,
                                  redis_url, replay_reference)

__all__ = ["pg_url", "redis_prefix", "redis_url"]  # fixtures

PLAYBOOK = {"name": "contain_campaign", "alert": "campaign_alert", "min_score": 0.5,
            "measures": ["suspend", "revoke_sessions"]}


def attacked_then_home(tmp_path: Path) -> Path:
    """The attacked brokerage, then every customer back home the next evening (a login and a buy)."""
    s: Stream = brokerage(attack=True)
    for a in range(10):
        ip, dev = f"126.1.{a}.5", f"dev-{a}"
        login = s.login(ts(21, 20, a), f"A{a}", ip, dev)
        s.order(ts(21, 20, a, 30), f"A{a}", "7203", "buy", 100, ip, dev, session=login["session_id"])
    return s.write(tmp_path / "e.jsonl")


def live_policy(tmp_path: Path, dry_run: bool = False) -> Path:
    return policy_with(tmp_path, [{**PLAYBOOK, "dry_run": dry_run}])


def _through(served: Served, stream: list[dict[str, Any]]) -> tuple[list[bytes], list[bytes]]:
    """The service's decisions and alerts for the stream posted in order, as the replay writes them."""
    decisions, alerts = [], []
    for chunk in batches(stream):
        for result in served.post(chunk):
            if result["decision"] is not None:
                decisions.append(encode(result["decision"]))
            alerts += [encode(a) for a in result["alerts"]]
    return decisions, alerts


def _contained(decisions: list[bytes]) -> set[str]:
    return {d["account_id"] for d in map(json.loads, decisions) if "contained" in d["reasons"]}


def test_a_live_playbook_contains_alike_in_replay_embedded_and_redis_postgres_services(
        tmp_path: Path, redis_url: str, redis_prefix: str, pg_url: str) -> None:
    src = attacked_then_home(tmp_path)
    policy = live_policy(tmp_path)
    want_decisions, want_alerts = replay_reference([src], tmp_path / "replay", load_policy(policy))
    fired = [a for a in map(json.loads, want_alerts) if a.get("playbook") == ["contain_campaign"]]
    assert fired and all("playbook_dry_run" not in a for a in fired)
    members = {m for a in fired for m in a["accounts"]}
    # Exactly the members are blocked afterwards (the attack's accounts), the others decide as before.
    assert _contained(want_decisions) == members and members <= {f"A{a}" for a in range(6)}
    home = [d for d in map(json.loads, want_decisions) if d["ts"].startswith("2025-03-21")]
    assert all((d["decision"], d["reasons"][0]) == ("block", "contained") for d in home if d["account_id"] in members)
    assert all("contained" not in d["reasons"] for d in home if d["account_id"] not in members)

    stream = ordered_stream([src])
    common = {"rate_limit": 1e9, "policy": str(policy), "deadline_ms": CORRECTNESS_DEADLINE_MS}
    embedded = Settings(db=f"sqlite:///{tmp_path}/kg.db", **common)
    shared = Settings(db=pg_url, state=redis_url, redis_prefix=redis_prefix, **common)
    for settings in (embedded, shared):
        served = Served(settings)
        with served.client:
            assert _through(served, stream) == (want_decisions, want_alerts)
            engine = served.service.db.engine
            recorded = actions(engine)
            # The side effects only: one action per member, by the playbook, none twice ...
            assert sorted(a["account_id"] for a in recorded) == sorted(members)
            assert {(a["actor"], a["source"], a["dry_run"]) for a in recorded} == \
                {("playbook:contain_campaign", "playbook:contain_campaign", 0)}
            assert {e["action"] for e in audit.entries(engine)} == {"contain"}
            # ... and a retried request changes nothing.
            served.post(stream[-5:])
            assert len(actions(engine)) == len(recorded)


def test_an_embedded_service_rebuilds_a_playbooks_containment_from_its_events(tmp_path: Path) -> None:
    src = attacked_then_home(tmp_path)
    settings = Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9, policy=str(live_policy(tmp_path)))
    first = Served(settings)
    with first.client:
        first.post(ordered_stream([src]))
        members = sorted({a["account_id"] for a in actions(first.service.db.engine)})
    assert members
    again = Served(settings)
    with again.client:
        (result,) = again.post([{"event_id": "next-day", "type": "login", "ts": ts(22, 9, 0), "account_id": members[0],
                                 "session_id": "s-next", "success": True, "ip": "126.1.0.5",
                                 "device_id": "dev-0", "mfa": "sms", "channel": "web"}])
    assert result["decision"]["reasons"][0] == "contained"


def test_a_dry_run_playbook_names_itself_in_the_alert_and_changes_no_decision(tmp_path: Path) -> None:
    src = attacked_then_home(tmp_path)
    plain_decisions, plain_alerts = replay_reference([src], tmp_path / "plain", load_policy(policy_with(tmp_path, [])))
    dry_decisions, dry_alerts = replay_reference([src], tmp_path / "dry", load_policy(live_policy(tmp_path, dry_run=True)))
    assert dry_decisions == plain_decisions and not _contained(dry_decisions)
    marked = [a for a in map(json.loads, dry_alerts) if a.get("playbook_dry_run") == ["contain_campaign"]]
    assert marked and all("playbook" not in a for a in marked)
    assert len(dry_alerts) == len(plain_alerts)


def test_no_playbook_fires_on_a_stuffing_alert_whose_accounts_were_only_tried(tmp_path: Path) -> None:
    """Credential stuffing's `campaign_alert` names every account its list tried and makes none a
    member: a live playbook contained them all, and each owner's own login at home the next
    evening was blocked `contained`."""
    s = brokerage(attack=False)
    for a in range(10):
        s.login(ts(20, 3, a), f"A{a}", "45.32.9.9", "kit", success=False)
    for a in range(10):
        s.login(ts(21, 20, a), f"A{a}", f"126.1.{a}.5", f"dev-{a}")
    low = {**PLAYBOOK, "min_score": 0.2}
    policy = policy_with(tmp_path, [{**low, "dry_run": False}, {**low, "name": "count_campaign", "dry_run": True}])
    decisions, alerts = replay_reference([s.write(tmp_path / "e.jsonl")], tmp_path / "run", load_policy(policy))
    (stuffing,) = [a for a in map(json.loads, alerts) if a["type"] == "campaign_alert"]
    assert stuffing["reasons"] == ["credential_stuffing"] and stuffing["score"] >= low["min_score"]
    assert stuffing["accounts"] == [f"A{a}" for a in range(5)]  # still names the accounts tried
    assert fired(stuffing) == [] and not _contained(decisions)


def test_two_playbooks_of_one_name_stop_the_policy_load_naming_the_entry(tmp_path: Path) -> None:
    path = policy_with(tmp_path, [PLAYBOOK, {**PLAYBOOK, "alert": "account_alert"}])
    with pytest.raises(PolicyError, match=r"playbooks\[1\]\.name: 'contain_campaign' is used by an earlier playbook"):
        load_policy(path)


def test_a_playbook_with_no_measures_stops_the_policy_load(tmp_path: Path) -> None:
    """It loaded: the core blocked the accounts while the firm's systems were sent nothing to do."""
    with pytest.raises(PolicyError, match=r"playbooks\[0\]\.measures: a non-empty list"):
        load_policy(policy_with(tmp_path, [{**PLAYBOOK, "measures": []}]))
