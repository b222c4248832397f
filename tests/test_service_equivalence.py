"""The service decides exactly as `kabuguard replay`: same files, same decisions, byte for byte."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import brokerage, ts
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key as create_key_in
from kabuguard.service.settings import Settings
from test_service_support import (KABUGUARD, ServiceProcess, batches, body_of, create_key, encode, ordered_stream,
                                  pg_url, redis_prefix, redis_url, replay_reference)

__all__ = ["pg_url", "redis_prefix", "redis_url"]  # fixtures


def _send(post, stream, size: int = 200) -> tuple[list[bytes], list[bytes]]:
    """Post the stream in order; the decisions and alerts of the answers, as the replay writes them."""
    decisions, alerts = [], []
    for chunk in batches(stream, size):
        answer = post(body_of(chunk))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["degraded"] is False
        for result in body["results"]:
            assert result["duplicate"] is False
            if result["decision"] is not None:
                decisions.append(encode(result["decision"]))
            alerts += [encode(a) for a in result["alerts"]]
    return decisions, alerts


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated brokerage, as the simulator writes it (several files, gzip and Parquet)."""
    out = tmp_path_factory.mktemp("sim") / "run"
    run = subprocess.run([KABUGUARD, "simulate", "--out", str(out), "--accounts", "150", "--days", "3",
                          "--symbols", "20", "--seed", "5"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return out / "events"


def test_embedded_service_decides_byte_for_byte_as_replay(tmp_path: Path) -> None:
    stream = brokerage()
    for n in range(6):  # IPv6 addresses of one /64: one key of the ip stage
        stream.login(ts(20, 3, n), f"A{n}", f"2a01:4f8:10:20::{n + 1:x}", f"bot-{n}", success=n == 5)
    # 9999 without its instrument record: its liquidity comes from its bars (detectors.liquidity).
    stream.events = [e for e in stream.events if not (e["type"] == "instrument" and e["symbol"] == "9999")]
    for day in range(1, 20):
        stream.add("market_bar", ts(day, 10, 0), symbol="9999", open=300.0, high=300.0, low=300.0, close=300.0,
                   volume=20_000)
    src = stream.write(tmp_path / "e.jsonl")
    want_decisions, want_alerts = replay_reference([src], tmp_path / "replay")
    assert any(b"thin_stock_buy" in d for d in want_decisions)
    got_decisions, got_alerts = _served_embedded(src, tmp_path)
    assert got_decisions == want_decisions
    assert got_alerts == want_alerts


def _served_embedded(src: Path, tmp_path: Path) -> tuple[list[bytes], list[bytes]]:
    """The decisions and alerts of firm acme's embedded service, sent `src` one event at a time."""
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9))
    key = create_key_in(app.state.service.db, "acme", "test")[1]
    with TestClient(app) as client:
        def post(body: bytes) -> httpx.Response:
            return client.post("/v1/events", content=body, headers={"Authorization": f"Bearer {key}"})

        return _send(post, ordered_stream([src]))


def _as_served(line: bytes) -> bytes:
    """A line the replay wrote for firm acme's events, as the service answers them."""
    record = {k: v for k, v in json.loads(line).items() if k != "firm"}
    if "accounts" in record:
        record["accounts"] = [account.removeprefix("acme:") for account in record["accounts"]]
    return encode(record)


def test_events_naming_their_firm_differ_from_the_replay_only_as_documented(tmp_path: Path) -> None:
    """docs/service.md, "Keys and firms": one account whether or not an event names its firm,
    so no `firm` field and campaign members as account ids; nothing else differs."""
    stream = brokerage()
    for event in stream.events:
        event["firm"] = "acme"
    src = stream.write(tmp_path / "e.jsonl")
    want_decisions, want_alerts = replay_reference([src], tmp_path / "replay")
    assert any(b'"accounts":["acme:' in a for a in want_alerts)
    got_decisions, got_alerts = _served_embedded(src, tmp_path)
    assert got_decisions == [_as_served(d) for d in want_decisions]
    assert got_alerts == [_as_served(a) for a in want_alerts]


def test_a_firm_is_served_as_a_replay_of_its_own_events_not_of_a_pooled_feed(tmp_path: Path) -> None:
    """docs/service.md, "Keys and firms": the service keeps every key per firm, so with another
    firm's customers on the same addresses and devices in between, acme's answers are a replay of
    acme's events and the market data alone; a replay of the pooled feed shares IP, device and
    symbol state between the firms and decides otherwise."""
    stream = brokerage()
    market = [e for e in stream.events if "account_id" not in e]
    acme = [{**e, "firm": "acme"} for e in stream.events if "account_id" in e]
    beta = [{**e, "firm": "beta"} for e in acme]
    alone, pooled = tmp_path / "acme.jsonl", tmp_path / "pooled.jsonl"
    alone.write_text("".join(json.dumps(e) + "\n" for e in market + acme))
    pooled.write_text("".join(json.dumps(e) + "\n" for e in market + acme + beta))
    want_decisions, want_alerts = replay_reference([alone], tmp_path / "alone")
    pooled_decisions = [d for d in replay_reference([pooled], tmp_path / "pooled")[0] if b'"firm":"acme"' in d]
    assert pooled_decisions != want_decisions
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9))
    keys = {firm: create_key_in(app.state.service.db, firm, "test")[1] for firm in ("acme", "beta")}
    with TestClient(app) as client:
        def post_to(firm: str) -> Callable[[bytes], httpx.Response]:
            return lambda body: client.post("/v1/events", content=body, headers={"Authorization": f"Bearer {keys[firm]}"})

        got_decisions, got_alerts = [], []
        for event in ordered_stream([pooled]):  # in the total order; the market's data to both firms
            for firm in [event["firm"]] if "firm" in event else keys:
                decisions, alerts = _send(post_to(firm), [event])
                if firm == "acme":
                    got_decisions += decisions
                    got_alerts += alerts
    assert got_decisions == [_as_served(d) for d in want_decisions]
    assert got_alerts == [_as_served(a) for a in want_alerts]


def test_one_batch_decides_as_many_single_requests(tmp_path: Path) -> None:
    src = brokerage().write(tmp_path / "e.jsonl")
    want_decisions, _ = replay_reference([src], tmp_path / "replay")
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9))
    key = create_key_in(app.state.service.db, "acme", "test")[1]
    stream = ordered_stream([src])
    with TestClient(app) as client:
        answer = client.post("/v1/events", content=json.dumps(stream), headers={"X-API-Key": key})
    got = [encode(r["decision"]) for r in answer.json()["results"] if r["decision"]]
    assert got == want_decisions


def test_redis_postgres_two_workers_decide_as_replay_on_a_simulated_run(
        tmp_path: Path, simulated: Path, redis_url: str, redis_prefix: str, pg_url: str) -> None:
    """`serve --workers 2` sharing Redis, requests spread over both workers in `ts` order."""
    want_decisions, want_alerts = replay_reference([simulated], tmp_path / "replay")
    assert want_decisions, "the simulated run has decisions"
    service = ServiceProcess(tmp_path, redis_url, pg_url, workers=2, KABUGUARD_REDIS_PREFIX=redis_prefix)
    key = create_key(pg_url)
    service.start()
    try:
        # The kernel hands each new connection to whichever worker accepts first, so a few
        # connections may all land on one: open connections until each worker holds one, then
        # use them in turn (a keep-alive connection stays with the worker that accepted it).
        headers = {"Authorization": f"Bearer {key}"}
        by_worker: dict[str, httpx.Client] = {}
        deadline = time.monotonic() + 30
        while len(by_worker) < 2 and time.monotonic() < deadline:
            client = httpx.Client(base_url=service.url, headers=headers, timeout=30)
            worker = client.get("/healthz").headers["x-kabuguard-worker"]
            if worker in by_worker:
                client.close()
            else:
                by_worker[worker] = client
        assert len(by_worker) == 2, "both workers accept connections"
        turn = itertools.cycle(by_worker.values())
        pids = set()

        def post(body: bytes) -> httpx.Response:
            answer = next(turn).post("/v1/events", content=body)
            pids.add(answer.headers["x-kabuguard-worker"])
            return answer

        got_decisions, got_alerts = _send(post, ordered_stream([simulated]))
        for c in by_worker.values():
            c.close()
    finally:
        service.stop()
    assert got_decisions == want_decisions
    assert got_alerts == want_alerts
    assert len(pids) == 2, "both workers answered"
