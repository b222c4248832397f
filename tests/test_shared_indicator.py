"""Indicators shared by other firms raise `shared_indicator`, only after they arrived."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Stream, brokerage, ts
from kabuguard.engine import Pipeline
from kabuguard.events import read_file, total_order
from kabuguard.events.reader import ContractError, event_from_dict
from kabuguard.replay import replay
from test_service_support import redis_prefix, redis_url

__all__ = ["redis_prefix", "redis_url"]  # fixtures


def _decide(stream: Stream, tmp_path: Path) -> dict[str, dict]:
    pipeline = Pipeline()
    decisions = {}
    for event in total_order(read_file(stream.write(tmp_path / "e.jsonl"))).events:
        decision, _ = pipeline.process(event)
        if decision:
            decisions[decision["event_id"]] = decision
    return decisions


def _indicator(s: Stream, when: str, kind: str, value: str) -> None:
    s.add("indicator", when, indicator_type=kind, value=value, source="firm-a")


def test_an_address_counts_from_its_arrival_on_never_before(tmp_path: Path) -> None:
    s = brokerage(attack=False)
    before = s.login(ts(20, 9, 0), "A1", "45.32.7.7", "dev-1")
    _indicator(s, ts(20, 9, 30), "ip", "45.32.7.7")
    after = s.login(ts(20, 10, 0), "A2", "45.32.7.7", "dev-2")
    order = s.order(ts(20, 10, 1), "A2", "7203", "sell", 1000, "45.32.7.7", "dev-2", session=after["session_id"])
    elsewhere = s.login(ts(20, 10, 0), "A3", "126.1.3.5", "dev-3")
    decisions = _decide(s, tmp_path)
    assert "shared_indicator" not in decisions[before["event_id"]]["reasons"]
    assert "shared_indicator" in decisions[after["event_id"]]["reasons"]
    assert "shared_indicator" in decisions[order["event_id"]]["reasons"]
    assert "shared_indicator" not in decisions[elsewhere["event_id"]]["reasons"]
    assert decisions[after["event_id"]]["score"] > decisions[before["event_id"]]["score"]


def test_an_indicator_expires_after_max_age(tmp_path: Path) -> None:
    s = brokerage(attack=False)
    _indicator(s, ts(1, 7, 0), "device", "atk-9")  # 30 days is the default; day 1 to day 20 is within
    within = s.login(ts(20, 9, 0), "A1", "126.1.1.5", "atk-9")
    decisions = _decide(s, tmp_path)
    assert "shared_indicator" in decisions[within["event_id"]]["reasons"]
    late = brokerage(attack=False)
    _indicator(late, ts(1, 7, 0), "device", "atk-9")
    expired = late.add("login", "2025-04-02T09:00:00.000+09:00", account_id="A1", session_id="s-x", success=True,
                       ip="126.1.1.5", user_agent="x", device_id="atk-9", mfa="sms", channel="web")
    assert "shared_indicator" not in _decide(late, tmp_path)[expired["event_id"]]["reasons"]


def test_arrival_from_a_reported_phishing_domain_and_a_shared_user_agent(tmp_path: Path) -> None:
    s = brokerage(attack=False)
    _indicator(s, ts(19, 23, 0), "domain", "Kabu-Login.Example.")
    _indicator(s, ts(19, 23, 0), "user_agent", "python-requests/2.31")
    phished = s.login(ts(20, 9, 0), "A1", "126.1.1.5", "dev-1")
    phished["referrer"] = "https://secure.kabu-login.example/jp/login?x=1"
    tool = s.login(ts(20, 9, 5), "A2", "126.1.2.5", "dev-2", ua="python-requests/2.31")
    clean = s.login(ts(20, 9, 6), "A3", "126.1.3.5", "dev-3")
    clean["referrer"] = "https://www.example-broker.jp/"
    decisions = _decide(s, tmp_path)
    assert "shared_indicator" in decisions[phished["event_id"]]["reasons"]
    assert "shared_indicator" in decisions[tool["event_id"]]["reasons"]
    assert "shared_indicator" not in decisions[clean["event_id"]]["reasons"]
    # The customer's own device and network still count: the evidence moves the score a lot,
    # the decision only with other evidence.
    assert decisions[phished["event_id"]]["score"] > 100 * decisions[clean["event_id"]]["score"]


def test_a_replay_cut_before_the_indicator_decides_its_prefix_identically(tmp_path: Path) -> None:
    s = brokerage(attack=True)
    _indicator(s, ts(20, 10, 4), "ip", "45.32.1.3")
    whole = replay([s.write(tmp_path / "all.jsonl")], tmp_path / "whole", quiet=True)
    cut = Stream()
    cut.events = [e for e in s.events if e["ts"] < ts(20, 10, 4)]
    replay([cut.write(tmp_path / "cut.jsonl")], tmp_path / "cut", quiet=True)
    prefix = (tmp_path / "cut" / "decisions.jsonl").read_text().splitlines()
    assert (tmp_path / "whole" / "decisions.jsonl").read_text().splitlines()[:len(prefix)] == prefix
    assert whole.events == len(s.events)
    later = [line for line in (tmp_path / "whole" / "decisions.jsonl").read_text().splitlines()[len(prefix):]
             if "45.32.1.3" in line or "shared_indicator" in line]
    assert later  # the attacker's later events from that address carry the reason


@pytest.mark.parametrize("value,reason", [(" ", "`value` is empty"), (None, "value")])
def test_a_bad_indicator_line_is_refused_naming_the_field(value: object, reason: str) -> None:
    record = {"event_id": "i1", "type": "indicator", "ts": ts(1, 1, 0), "indicator_type": "ip", "value": value}
    with pytest.raises(ContractError, match=reason):
        event_from_dict(record)
    with pytest.raises(ContractError, match="indicator_type"):
        event_from_dict({**record, "value": "1.2.3.4", "indicator_type": "email"})


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_the_service_decides_indicators_as_the_replay(state: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Indicators posted to `kabuguard serve` (embedded, or Redis state) weigh as in the replay."""
    from fastapi.testclient import TestClient

    from kabuguard.service.app import create_app
    from kabuguard.service.auth import create_key
    from kabuguard.service.settings import Settings
    from test_service_equivalence import _send
    from test_service_support import CORRECTNESS_DEADLINE_MS, ordered_stream, replay_reference

    s = brokerage(attack=True)
    for n, (kind, value) in enumerate([("ip", "45.32.1.3"), ("device", "atk-4"), ("user_agent", "kit/1.0")]):
        _indicator(s, ts(20, 10, 2 * n), kind, value)
    s.login(ts(20, 11, 0), "A7", "126.1.7.5", "dev-7", ua="kit/1.0")
    src = s.write(tmp_path / "e.jsonl")
    want_decisions, want_alerts = replay_reference([src], tmp_path / "replay")
    assert sum(b"shared_indicator" in line for line in want_decisions) >= 3
    settings = {"db": f"sqlite:///{tmp_path}/kg.db", "rate_limit": 1e9, "deadline_ms": CORRECTNESS_DEADLINE_MS}
    if state == "redis":
        settings.update(state=request.getfixturevalue("redis_url"), redis_prefix=request.getfixturevalue("redis_prefix"))
    app = create_app(Settings(**settings))
    key = create_key(app.state.service.db, "acme", "test")[1]
    with TestClient(app) as client:
        got = _send(lambda body: client.post("/v1/events", content=body, headers={"X-API-Key": key}),
                    ordered_stream([src]), size=37)
    assert got == (want_decisions, want_alerts)


def test_an_unreadable_referrer_is_no_domain_and_crashes_nothing(tmp_path: Path) -> None:
    s = brokerage(attack=False)
    _indicator(s, ts(20, 9, 0), "domain", "sbi-login.example")
    odd = s.add("login", ts(20, 9, 5), account_id="A1", session_id="s-odd", success=True, ip="126.1.1.5",
                user_agent="x", device_id="dev-1", mfa="sms", channel="web", referrer="http://[fe80::1/login")
    phished = s.add("login", ts(20, 9, 6), account_id="A2", session_id="s-ph", success=True, ip="126.1.2.5",
                    user_agent="x", device_id="dev-2", mfa="sms", channel="web", referrer="https://www.sbi-login.example/x")
    decisions = _decide(s, tmp_path)
    assert "shared_indicator" not in decisions[odd["event_id"]]["reasons"]
    assert "shared_indicator" in decisions[phished["event_id"]]["reasons"]


def test_an_ipv6_indicator_matches_the_address_however_it_is_written(tmp_path: Path) -> None:
    s = brokerage(attack=False)
    _indicator(s, ts(20, 9, 0), "ip", "2406:DA14:0001:0002:0:0:0:5")
    login = s.login(ts(20, 9, 30), "A1", "2406:da14:1:2::5", "dev-1")
    mapped = s.login(ts(20, 9, 31), "A2", "::ffff:45.32.7.7", "dev-2")
    _indicator(s, ts(20, 9, 10), "ip", "45.32.7.7")
    decisions = _decide(s, tmp_path)
    assert "shared_indicator" in decisions[login["event_id"]]["reasons"]
    assert "shared_indicator" in decisions[mapped["event_id"]]["reasons"]


def _shared(stix_id: str, modified: str, **fields: object) -> dict:
    """A peer's STIX indicator of address 45.32.7.7, as `intel pull` reads it."""
    return {"type": "indicator", "spec_version": "2.1", "id": stix_id, "created": "2025-03-01T00:00:00.000Z",
            "modified": modified, "pattern_type": "stix", "pattern": "[ipv4-addr:value = '45.32.7.7']",
            "valid_from": "2025-03-01T00:00:00Z", **fields}


def _pulled(s: Stream, arrival: str, objects: list[dict]) -> list[dict]:
    """The lines `intel pull` writes for `objects` arriving at `arrival`, added to `s`."""
    from kabuguard.intel.pull import PullSummary, indicator_events

    lines = indicator_events(objects, lambda _: arrival, PullSummary())
    return [s.add(line.pop("type"), line.pop("ts"), **line) for line in lines]


def test_an_indicator_counts_until_its_valid_until_and_a_revocation_withdraws_it(tmp_path: Path) -> None:
    """`intel pull` dropped `valid_until` and skipped a revoked version: an indicator past its
    validity (a rented server handed on to a customer) kept matching for max_age_days, and a
    revoked one could not withdraw the line pulled before."""
    one, two = ("indicator--" + d * 8 + f"-{d * 4}-4{d * 3}-8{d * 3}-" + d * 12 for d in "67")
    ending = _shared(one, "2025-03-19T00:00:00.000Z", valid_until="2025-03-20T01:00:00Z")  # 10:00 in Japan
    s = Stream()
    lines = _pulled(s, ts(20, 8, 0), [ending, _shared(two, "2025-03-19T00:00:00.000Z")])
    lines += _pulled(s, ts(20, 12, 0), [_shared(two, "2025-03-20T02:30:00.000Z", revoked=True)])  # revoked 11:30
    assert [(line["stix_id"], line.get("valid_until")) for line in lines] == [
        (one, "2025-03-20T01:00:00.000000+00:00"), (two, None), (two, "2025-03-20T02:30:00.000000+00:00")]
    logins = [s.login(when, f"A{n}", "45.32.7.7", f"dev-{n}") for n, when in enumerate(
        (ts(20, 9, 30), ts(20, 11, 45), ts(20, 13, 0)))]
    decisions = _decide(s, tmp_path)
    # 11:45: after the revocation, before it arrived here (no look-ahead); 13:00: withdrawn.
    assert ["shared_indicator" in decisions[login["event_id"]]["reasons"] for login in logins] == [True, True, False]
    alone = Stream()
    _pulled(alone, ts(20, 8, 0), [ending])
    within, after = (alone.login(when, f"A{n}", "45.32.7.7", f"dev-{n}")
                     for n, when in enumerate((ts(20, 9, 59), ts(20, 10, 0))))
    decisions = _decide(alone, tmp_path)
    assert ["shared_indicator" in decisions[e["event_id"]]["reasons"] for e in (within, after)] == [True, False]


def test_an_unreadable_valid_until_is_refused_naming_the_field() -> None:
    record = {"event_id": "i1", "type": "indicator", "ts": ts(1, 1, 0), "indicator_type": "ip", "value": "1.2.3.4"}
    assert event_from_dict({**record, "valid_until": "2025-04-20T01:00:00Z"}).valid_until == "2025-04-20T01:00:00Z"
    with pytest.raises(ContractError, match="`valid_until` is not an RFC 3339 timestamp"):
        event_from_dict({**record, "valid_until": "next week"})
