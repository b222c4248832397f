"""Containment: the core blocks a contained account's later events, the action reaches every
webhook receiver exactly once even after one was down, and playbooks contain (or only record)."""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException

from conftest import brokerage
from console_support import SECRET, Served, WebhookReceiver, late_login, policy_with, wait_for
from kabuguard.console import audit
from kabuguard.console.clock import now_us
from kabuguard.console.containment import Containment, actions
from kabuguard.console.models import webhook_outbox
from kabuguard.console.webhooks import Deliverer, deliveries, receiver_secret, sign, verify
from kabuguard.policy import PolicyError, load_policy
from kabuguard.policy.playbooks import Playbook
from kabuguard.service.settings import Settings, SettingsError
from kabuguard.service.storage.database import Database, migrate
from test_service_support import ordered_stream, pg_url, redis_prefix, redis_url  # noqa: F401 - fixtures


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    settings = getattr(request, "param", {})
    s = Served(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9, **settings))
    with s.client:
        yield s


def _habits(tmp_path: Path) -> list[dict[str, Any]]:
    return ordered_stream([brokerage(attack=False).write(tmp_path / "e.jsonl")])


def test_contained_account_is_blocked_with_reason_contained_and_stays_so_after_restart(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/kg.db"
    first = Served(Settings(db=db, rate_limit=1e9))
    with first.client:
        first.post(_habits(tmp_path))
        assert first.post([late_login("A3", 1)])[0]["decision"]["decision"] == "allow"
        first.contain(["A3"])
        (result,) = first.post([late_login("A3", 2)])
        assert result["decision"]["decision"] == "block" and result["decision"]["reasons"][0] == "contained"
        assert first.post([late_login("A4", 3)])[0]["decision"]["decision"] == "allow"
        (entry,) = audit.entries(first.service.db.engine, target="account:A3")
        assert (entry["actor"], entry["action"], entry["reason"]) == ("hana", "contain", "confirmed takeover")
    # The embedded state is rebuilt from the event log at start, containment included.
    again = Served(Settings(db=db, rate_limit=1e9))
    with again.client:
        assert again.post([late_login("A3", 4)])[0]["decision"]["reasons"][0] == "contained"
        assert again.post([late_login("A4", 5)])[0]["decision"]["decision"] == "allow"


def test_containment_with_redis_and_postgres_blocks_later_events(tmp_path: Path, redis_url: str,
                                                                redis_prefix: str, pg_url: str) -> None:
    s = Served(Settings(db=pg_url, state=redis_url, redis_prefix=redis_prefix, rate_limit=1e9))
    with s.client:
        s.post(_habits(tmp_path))
        s.contain(["A3"])
        assert s.post([late_login("A3")])[0]["decision"]["reasons"][0] == "contained"
        account = s.client.get("/v1/accounts/A3", headers={"X-API-Key": s.key}).json()
        assert account["risk"]["contained"] is True


def test_outbox_delivers_every_action_exactly_once_per_receiver_after_one_was_down(tmp_path: Path) -> None:
    up, down = WebhookReceiver(), WebhookReceiver()
    up.start()
    settings = Settings(db=f"sqlite:///{tmp_path}/kg.db", webhook_urls=f"{up.url},{down.url}",
                        webhook_secret=SECRET, webhook_backoff_s=0.1, webhook_max_backoff_s=0.4)
    s = Served(settings)
    try:
        with s.client:
            ids = [i for batch in (["A1", "A2"], ["A3"], ["A4", "A5"]) for i in s.contain(batch)]
            wait_for(lambda: len(up.received) == 5, what="the receiver that is up")
            wait_for(lambda: all(r["attempts"] >= 2 for r in deliveries(s.service.db.engine)
                                 if r["receiver"] == down.url), what="failed attempts at the receiver that is down")
            down.start()
            wait_for(lambda: len(down.received) == 5, what="the receiver that came back")
            wait_for(lambda: all(r["delivered_at"] for r in deliveries(s.service.db.engine)), what="all delivered")
            time.sleep(1.0)  # more ticks of the deliverer: nothing is sent again
    finally:
        up.stop()
        down.stop()
    for receiver in (up, down):
        assert sorted(receiver.deliveries()) == sorted(ids)  # each action, once
        assert all(r["signed"] for r in receiver.received)
        assert {r["body"]["account_id"] for r in receiver.received} == {"A1", "A2", "A3", "A4", "A5"}
        assert all(r["body"]["measures"] == ["suspend", "revoke_sessions", "force_password_reset",
                                             "cancel_open_orders"] for r in receiver.received)


def _policy_with_playbook(tmp_path: Path, dry_run: bool) -> Path:
    return policy_with(tmp_path, [{"name": "contain_campaign", "alert": "campaign_alert", "min_score": 0.5,
                               "measures": ["suspend", "revoke_sessions"], "dry_run": dry_run}])


@pytest.mark.parametrize("dry_run", [False, True])
def test_playbook_contains_a_campaigns_members_or_only_records_in_dry_run(tmp_path: Path, dry_run: bool) -> None:
    receiver = WebhookReceiver()
    receiver.start()
    s = Served(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9,
                        policy=str(_policy_with_playbook(tmp_path, dry_run)),
                        webhook_urls=receiver.url, webhook_secret=SECRET))
    try:
        with s.client:
            s.post(ordered_stream([brokerage().write(tmp_path / "e.jsonl")]))
            engine = s.service.db.engine
            done = actions(engine)
            members = [a["account_id"] for a in done]
            assert members and len(set(members)) == len(members) and all(a["source"] == "playbook:contain_campaign" for a in done)
            assert all(a["dry_run"] == int(dry_run) for a in done)
            (result,) = s.post([late_login(sorted(members)[0])])
            entries = audit.entries(engine)
            if dry_run:
                assert result["decision"]["decision"] != "block" or "contained" not in result["decision"]["reasons"]
                assert {e["action"] for e in entries} == {"contain.dry_run"}
                assert deliveries(engine) == []
            else:
                assert result["decision"]["reasons"][0] == "contained"
                assert {e["action"] for e in entries} == {"contain"}
                wait_for(lambda: len(receiver.received) == len(members), what="playbook webhooks")
    finally:
        receiver.stop()


def test_a_receiver_can_tell_a_genuine_delivery_from_a_forged_or_replayed_one() -> None:
    body = b'{"action_id": "a1", "account_id": "A1"}'
    mine, theirs = receiver_secret(SECRET, "https://a.example/hook"), receiver_secret(SECRET, "https://b.example/hook")
    header = sign(mine, body, "a1")
    assert verify(mine, body, header, "a1")
    assert not verify(mine, body.replace(b"A1", b"A2"), header, "a1")  # tampered body
    assert not verify(mine, body, header, "a2")  # the same delivery resent under a new id
    assert not verify(theirs, body, header, "a1")  # another receiver cannot sign for this one
    assert not verify(mine, body, sign(mine, body, "a1", timestamp=int(time.time()) - 3600), "a1")  # replayed later
    assert not verify(mine, body, "v2=deadbeef", "a1")
    assert not verify(mine, body, "t=1,v2=é", "a1")  # not ASCII: refused, not an error


def test_a_malformed_playbook_stops_the_policy_load_naming_the_key(tmp_path: Path) -> None:
    path = policy_with(tmp_path, [{"name": "p", "alert": "campaign_alert", "min_score": 0.5, "measures": ["freeze"]}])
    with pytest.raises(PolicyError, match=r"playbooks\[0\]\.measures: unknown \['freeze'\]"):
        load_policy(path)
    assert load_policy().playbooks[0].dry_run is True  # the bundled playbook only records


@pytest.mark.parametrize(("change", "named"), [
    ({"dryrun": False}, r"unknown key\(s\) \['dryrun'\]"),  # loaded as a dry run the analyst thought live
    ({"dry_run": "false"}, r"dry_run: true or false"),  # text, and text is true
    ({"name": ["a", "b"]}, r"name: a name"),
])
def test_a_playbook_key_misspelt_or_of_the_wrong_kind_stops_the_load(tmp_path: Path, change: dict,
                                                                    named: str) -> None:
    path = policy_with(tmp_path, [{"name": "p", "alert": "campaign_alert", "min_score": 0.5, **change}])
    with pytest.raises(PolicyError, match=r"playbooks\[0\]" + ".*" + named):
        load_policy(path)


def test_the_operator_prints_each_receivers_own_secret() -> None:
    from click.testing import CliRunner

    from kabuguard.cli import main

    env = {"KABUGUARD_WEBHOOK_SECRET": SECRET, "KABUGUARD_WEBHOOK_URLS": "https://a.example/hook, https://b.example/hook"}
    printed = CliRunner().invoke(main, ["keys", "webhook-secret", "https://b.example/hook"], env=env)
    assert printed.exit_code == 0 and printed.output.strip() == receiver_secret(SECRET, "https://b.example/hook")
    unknown = CliRunner().invoke(main, ["keys", "webhook-secret", "https://c.example/hook"], env=env)
    assert unknown.exit_code == 2 and "not among webhook_urls" in unknown.output


def test_a_webhook_url_listed_twice_is_one_receiver() -> None:
    settings = Settings(webhook_urls=" http://a.example/hook,http://b.example/hook, http://a.example/hook")
    assert settings.receivers() == ["http://a.example/hook", "http://b.example/hook"]


def test_a_firms_containment_reaches_its_own_receivers_and_those_of_every_firm_only(tmp_path: Path) -> None:
    """Every receiver got every firm's actions: one firm's customers' ids and the analyst's
    reason at another firm's systems, which might suspend an account of the same id."""
    acme, other, everyone = WebhookReceiver(), WebhookReceiver(), WebhookReceiver()
    for receiver in (acme, other, everyone):
        receiver.start()
    s = Served(Settings(db=f"sqlite:///{tmp_path}/kg.db", webhook_secret=SECRET, webhook_backoff_s=0.1,
                        webhook_urls=f"acme={acme.url}, other = {other.url},{everyone.url}"))
    try:
        with s.client:
            s.contain(["A1"])
            s.client.portal.call(functools.partial(s.service.containment.contain, "olga", "other", ["B1"], "takeover"))
            wait_for(lambda: len(everyone.received) == 2 and acme.received and other.received, what="deliveries")
            time.sleep(0.5)  # more ticks of the deliverer: nothing goes astray later
    finally:
        for receiver in (acme, other, everyone):
            receiver.stop()
    assert [r["body"]["account_id"] for r in acme.received] == ["A1"]
    assert [r["body"]["account_id"] for r in other.received] == ["B1"]
    assert sorted(r["body"]["firm"] for r in everyone.received) == ["acme", "other"]


def test_webhook_urls_scoped_to_a_firm_are_read_and_malformed_entries_refused() -> None:
    settings = Settings(webhook_urls="acme=https://a.example/h?x=1, https://b.example/h?y=2,other=https://a.example/h?x=1",
                        webhook_secret=SECRET).validate()
    assert settings.receivers() == ["https://a.example/h?x=1", "https://b.example/h?y=2"]
    assert settings.receivers("acme") == ["https://a.example/h?x=1", "https://b.example/h?y=2"]
    assert settings.receivers("zeta") == ["https://b.example/h?y=2"]
    for wrong in ("acme=", "=https://a.example/h", "ftp://a.example/h", "acme=a.example/h"):
        with pytest.raises(SettingsError, match="webhook_urls"):
            Settings(webhook_urls=wrong, webhook_secret=SECRET).validate()


def test_containment_that_cannot_reach_the_state_records_and_sends_nothing(tmp_path: Path) -> None:
    """It was recorded, shown as contained and sent by webhook, while the core, whose state was
    down, never blocked the account; a retry recorded it twice."""
    s = Served(Settings(db=f"sqlite:///{tmp_path}/kg.db", state="redis://127.0.0.1:1/0", deadline_ms=100,
                        webhook_urls="http://127.0.0.1:9/hook", webhook_secret=SECRET))
    with s.client:
        for _ in range(2):
            with pytest.raises(HTTPException) as refused:
                s.contain(["A1"])
            assert refused.value.status_code == 503 and "nothing was contained" in refused.value.detail
        assert actions(s.service.db.engine, "acme") == []
        assert deliveries(s.service.db.engine) == []
        assert audit.entries(s.service.db.engine, target="account:A1") == []


def _record_alerts(url: str, rounds: int, first: int) -> None:
    """One worker recording playbook alerts on campaigns another worker records too."""
    engine = Database(url).engine
    playbook = Playbook("contain_campaign", "campaign_alert", 0.5, ("suspend",), False)
    containment = Containment(engine, None, Settings(webhook_urls="http://127.0.0.1:9/hook").receivers, Deliverer(engine, SECRET), [playbook])

    async def run() -> None:
        for r in range(rounds):
            members = [f"R{r}-A{i}" for i in range(4)]
            alerts = [{"alert_id": f"al-{first + 2 * r + n}-0", "type": "campaign_alert", "score": 0.9,
                       "accounts": m, "playbook": ["contain_campaign"]} for n, m in enumerate((members[:3], members))]
            await asyncio.gather(*(containment.record_playbooks("acme", [a]) for a in alerts))

    asyncio.run(run())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_playbook_records_each_account_once_however_many_workers_record_at_once(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """Two requests whose campaign alerts named the same members each passed the check before
    either recorded: 48 of 80 accounts got two actions and two webhooks. On PostgreSQL two
    worker processes record at once as well."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/kg.db"
    engine = Database(url).engine
    migrate(engine)
    if backend == "postgresql":
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.starmap(_record_alerts, [(url, 20, 0), (url, 20, 1000)])
    else:
        _record_alerts(url, 20, 0)
    counts = collections.Counter(a["account_id"] for a in actions(engine, "acme", limit=10_000))
    assert len(counts) == 80 and set(counts.values()) == {1}
    assert len(deliveries(engine)) == 80


def _deliver_for_a_second(deliverer: Deliverer) -> None:
    """Run the deliverer's loop for a second: one try of every due row."""
    async def one_try() -> None:
        task = asyncio.create_task(deliverer.run(poll_s=0.05))
        await asyncio.sleep(1.0)
        task.cancel()

    asyncio.run(one_try())


@pytest.mark.parametrize("receiver", ["http://127.0.0.1:99999/hook", "https://[::1/hook"])
def test_a_delivery_the_client_refuses_is_recorded_and_backed_off(tmp_path: Path, receiver: str) -> None:
    """A row whose URL the client refuses with an error of its own (recorded before the settings
    checked it): the error escaped the send, the row stayed unsettled (no attempt, no error) and
    the log said the outbox was postponed, as for a database outage."""
    db = Database(f"sqlite:///{tmp_path}/kg.db")
    migrate(db.engine)
    with db.engine.begin() as conn:
        conn.execute(webhook_outbox.insert().values(action_id="a1", receiver=receiver, body=b"{}", next_attempt_us=0))
    _deliver_for_a_second(Deliverer(db.engine, SECRET, base_backoff_s=60.0))
    (row,) = deliveries(db.engine)
    assert row["attempts"] == 1 and row["last_error"] and row["delivered_at"] is None
    with db.engine.connect() as conn:
        due = conn.execute(webhook_outbox.select()).mappings().one()["next_attempt_us"]
    assert due > now_us() + 50_000_000


def test_a_receiver_down_for_days_is_still_retried_at_the_longest_backoff(tmp_path: Path) -> None:
    """1024 failed attempts (a receiver down for days at five minutes apart) and one more."""
    db = Database(f"sqlite:///{tmp_path}/kg.db")
    migrate(db.engine)
    down = WebhookReceiver()  # never started: nothing listens
    with db.engine.begin() as conn:
        conn.execute(webhook_outbox.insert().values(action_id="a1", receiver=down.url, body=b"{}",
                                                    attempts=1024, next_attempt_us=0))
    _deliver_for_a_second(Deliverer(db.engine, SECRET, base_backoff_s=1.0, max_backoff_s=300.0))
    (row,) = deliveries(db.engine)
    assert row["attempts"] == 1025 and row["last_error"] and row["delivered_at"] is None
    with db.engine.connect() as conn:
        due = conn.execute(webhook_outbox.select()).mappings().one()["next_attempt_us"]
    assert abs(due - now_us() - 300_000_000) < 10_000_000


def test_the_consoles_logs_are_json_lines_beside_the_services_each_once(tmp_path: Path,
                                                                         capfd: pytest.CaptureFixture[str]) -> None:
    down = WebhookReceiver()  # never started: the delivery fails and is logged
    s = Served(Settings(db=f"sqlite:///{tmp_path}/kg.db", webhook_urls=down.url, webhook_secret=SECRET))
    with s.client:
        s.contain(["A1"])
        wait_for(lambda: deliveries(s.service.db.engine)[0]["attempts"] > 0, what="a failed delivery")
        s.client.get("/healthz")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.strip()]
    said = [(line["logger"], line["msg"]) for line in lines]
    assert said.count(("kabuguard.console", "containment recorded")) == 1  # once: not also propagated
    assert said.count(("kabuguard.service", "service ready")) == 1
    assert ("kabuguard.console", "webhook delivery failed") in said


def test_a_reason_the_record_cannot_hold_is_refused_before_the_state_changes(tmp_path: Path) -> None:
    """A NUL in the reason passed the checks, the core blocked the account, then PostgreSQL refused
    the record: blocked, unrecorded, and the analyst told the request failed."""
    from kabuguard.console.containment import ContainmentError

    s = Served(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9))
    with s.client:
        s.post(_habits(tmp_path))
        with pytest.raises(ContainmentError, match="NUL"):
            s.contain(["A3"], reason="takeover\x00")
        assert s.post([late_login("A3", 1)])[0]["decision"]["decision"] == "allow"


def test_a_record_that_fails_after_the_state_changed_says_the_account_is_contained(tmp_path: Path) -> None:
    s = Served(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9))
    with s.client:
        s.post(_habits(tmp_path))
        with s.service.db.engine.begin() as conn:  # the record's table gone: its insert fails
            conn.exec_driver_sql("DROP TABLE containment_actions")
        with pytest.raises(HTTPException) as failed:
            s.contain(["A3"])
        assert failed.value.status_code == 500 and "is contained" in failed.value.detail
        assert "contain again" in failed.value.detail
        assert s.post([late_login("A3", 1)])[0]["decision"]["reasons"][0] == "contained"
