"""The service's API as a platform sees it: keys, firms, idempotency, bad input, limits, logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import HOME_UA, brokerage, ts
from kabuguard.cli import main
from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings, SettingsError, load_settings
from test_service_support import encode, ordered_stream, pg_url, redis_url  # noqa: F401 - fixtures


def _login(event_id: str, account: str = "A1", ip: str = "203.0.113.77", minute: int = 0) -> dict:
    return {"event_id": event_id, "type": "login", "ts": ts(3, 9, minute), "account_id": account,
            "session_id": f"s-{event_id}", "success": True, "ip": ip, "user_agent": HOME_UA,
            "device_id": "dev-1", "mfa": "sms", "channel": "web"}


class Api:
    def __init__(self, client: TestClient, keys: dict[str, str]) -> None:
        self.client = client
        self.keys = keys

    def post(self, body: object, firm: str = "acme", raw: bytes | None = None):
        content = raw if raw is not None else json.dumps(body).encode()
        return self.client.post("/v1/events", content=content, headers={"Authorization": f"Bearer {self.keys[firm]}"})

    def get(self, path: str, firm: str = "acme", **params: object):
        return self.client.get(path, params=params, headers={"X-API-Key": self.keys[firm]})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db", rate_limit=1e9, max_body_bytes=400_000,
                              max_batch=500))
    db = app.state.service.db
    keys = {"acme": create_key(db, "acme", "test")[1], "other": create_key(db, "other", "test")[1],
            "slow": create_key(db, "slow", "test", rate_limit=2)[1],
            "sparse": create_key(db, "sparse", "test", rate_limit=0.4)[1]}
    with TestClient(app) as client:
        yield Api(client, keys)


def test_health_and_readiness_need_no_key(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["state"] == "ok" and ready.json()["db"] == "ok"


def test_every_other_endpoint_needs_a_valid_key(api: Api) -> None:
    for method, path in (("post", "/v1/events"), ("get", "/v1/alerts"), ("get", "/v1/accounts/A1")):
        answer = getattr(api.client, method)(path)
        assert answer.status_code == 401 and "API key" in answer.json()["detail"]
    wrong = api.client.get("/v1/alerts", headers={"Authorization": "Bearer kg_0123456789ab_" + "x" * 43})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown API key"


def test_a_key_of_one_firm_never_sees_another_firms_data(api: Api) -> None:
    stream = ordered_stream_of(brokerage())
    assert api.post(stream).status_code == 200
    assert api.get("/v1/accounts/A0").status_code == 200
    assert api.get("/v1/alerts").json()["alerts"]
    assert api.get("/v1/accounts/A0", firm="other").status_code == 404
    assert api.get("/v1/alerts", firm="other").json() == {"alerts": [], "next_cursor": None}
    # The other firm's state is its own: the same account there starts from nothing.
    fresh = api.post(_login("lo-x", account="A0"), firm="other").json()["results"][0]["decision"]
    assert "new_device" not in fresh["reasons"]
    # An event naming a firm must come with that firm's key.
    answer = api.post({**_login("lo-y"), "firm": "other"})
    assert answer.status_code == 403 and "events[0].firm" in answer.json()["detail"]


def ordered_stream_of(stream) -> list[dict]:  # noqa: ANN001
    return sorted(stream.events, key=lambda e: e["ts"])


def test_same_event_id_twice_returns_the_first_decision_and_updates_state_once(api: Api) -> None:
    first = api.post(_login("lo-1")).json()["results"][0]
    again = api.post({**_login("lo-1"), "ip": "198.51.100.9"}).json()["results"][0]
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["decision"] == first["decision"] and again["alerts"] == first["alerts"]
    # State counted the login once: a later login sees one earlier login, as the replay does.
    later = api.post(_login("lo-2", minute=5)).json()["results"][0]["decision"]
    twice = create_app_replay([_login("lo-1"), _login("lo-2", minute=5)])
    assert encode(later) == twice[-1]
    recent = api.get("/v1/accounts/A1").json()["recent_decisions"]
    assert [d["event_id"] for d in recent] == ["lo-2", "lo-1"]


def create_app_replay(events: list[dict]) -> list[bytes]:
    """The replay's decision lines for `events`."""
    from kabuguard.engine import Pipeline
    from kabuguard.events.reader import event_from_dict

    pipeline = Pipeline()
    return [encode(d) for e in events if (d := pipeline.process(event_from_dict(e))[0])]


def test_bad_input_gets_4xx_naming_the_field(api: Api) -> None:
    cases = [
        (b'{"event_id": "x", "type": "login"', 400, "not valid JSON"),
        (json.dumps({**_login("b1"), "success": "yes"}).encode(), 422, "$.success"),
        (json.dumps([_login("b2"), {**_login("b3"), "ts": "yesterday"}]).encode(), 422, "events[1]: `ts`"),
        (json.dumps({**_login("b4"), "type": "logout"}).encode(), 422, "unknown or missing `type`: 'logout'"),
        (json.dumps({k: v for k, v in _login("b5").items() if k != "account_id"}).encode(), 422, "account_id"),
        (b"42", 422, "expected an event object or an array"),
        # Wider than the database stores it: refused here, never a failed write for the whole batch.
        (json.dumps({**_login("b6"), "event_id": "e" * 201}).encode(), 422, "`$.event_id`"),
        (json.dumps({**_login("b7"), "account_id": "a" * 201}).encode(), 422, "length <= 200"),
        (json.dumps({**_login("b8")})[:-1].encode() + b', "cash": 1e400}', 400, "decoder can hold"),
        (json.dumps({**_login("b9"), "account_id": "A\u0000"}).encode(), 422, "events[0].account_id: a NUL character"),
        (b"[" * 5000 + b"]" * 5000, 400, "nests"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "nests"),
        (json.dumps({**_login("~contain:A1")}).encode(), 422, "events[0].event_id: ids starting with '~contain:'"),
        (b"x" * 500_000, 413, "exceeds the limit"),
        (json.dumps([_login(f"m{n}") for n in range(501)]).encode(), 413, "batch of 501"),
    ]
    for body, status, words in cases:
        answer = api.post(None, raw=body)
        assert answer.status_code == status, (body[:60], answer.text)
        assert words in answer.json()["detail"], answer.text
    bad_query = api.get("/v1/alerts", limit=0)
    assert bad_query.status_code == 422 and "limit" in bad_query.json()["detail"]
    assert api.get("/v1/alerts", since="tomorrow").status_code == 422
    assert api.get("/v1/alerts", type="coffee_alert").status_code == 422
    for account in ("A%00", "a" * 201):
        answer = api.get(f"/v1/accounts/{account}")
        assert answer.status_code == 422 and "account_id" in answer.json()["detail"], answer.text
    # Nothing of the refused batches reached state.
    assert api.get("/v1/accounts/A1").status_code == 404


def test_an_account_id_holding_a_slash_has_its_view(api: Api) -> None:
    """The contract allows any id: `branch1/A0` matched no route, escaped or not."""
    assert api.post(_login("s1", account="branch1/A0")).status_code == 200
    for path in ("/v1/accounts/branch1/A0", "/v1/accounts/branch1%2FA0"):
        view = api.get(path)
        assert view.status_code == 200 and view.json()["account_id"] == "branch1/A0", (path, view.text)


def test_an_account_named_like_another_with_the_firm_before_it_is_its_own(api: Api) -> None:
    """`Z`, never seen, answered with the state of account `acme:Z`, and containing `Z`
    contained `acme:Z` too: a leftover of keying accounts `firm:account` in the service."""
    assert api.post(_login("s1", account="acme:Z")).status_code == 200
    assert api.get("/v1/accounts/Z").status_code == 404
    assert api.post(_login("s2", account="Z")).status_code == 200
    api.client.portal.call(api.client.app.state.service.decider.contain, "acme", ["acme:Z"])
    assert api.get("/v1/accounts/Z").json()["risk"]["contained"] is False
    assert api.get("/v1/accounts/acme:Z").json()["risk"]["contained"] is True
    assert api.post(_login("s3", account="acme:Y")).status_code == 200
    api.client.portal.call(api.client.app.state.service.containment.contain, "hana", "acme", ["Y"], "takeover")
    assert api.get("/v1/accounts/acme:Y").json()["risk"]["contained"] is False


def test_alerts_are_paged_and_filtered_by_time_and_type(api: Api) -> None:
    api.post(ordered_stream_of(brokerage()))
    everything = api.get("/v1/alerts", limit=1000).json()["alerts"]
    assert {a["type"] for a in everything} >= {"account_alert", "campaign_alert"}
    pages, cursor = [], 0
    while True:
        page = api.get("/v1/alerts", limit=3, cursor=cursor).json()
        pages += page["alerts"]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert pages == everything
    campaigns = api.get("/v1/alerts", type="campaign_alert").json()["alerts"]
    assert campaigns and all(a["type"] == "campaign_alert" for a in campaigns)
    assert api.get("/v1/alerts", until=ts(20, 0, 0)).json()["alerts"] == []
    assert len(api.get("/v1/alerts", since=ts(20, 0, 0), limit=1000).json()["alerts"]) == len(everything)


def test_account_view_has_risk_recent_decisions_and_open_alerts(api: Api) -> None:
    api.post(ordered_stream_of(brokerage()))
    view = api.get("/v1/accounts/A0").json()
    assert view["risk"]["latest_decision"] in ("review", "block")
    assert view["risk"]["campaign_id"].startswith("cmp-9999")
    assert view["recent_decisions"][0]["ts"] >= view["recent_decisions"][-1]["ts"]
    assert view["open_alerts"] and all(a["account_id"] == "A0" for a in view["open_alerts"])


def test_rate_limit_per_key(api: Api) -> None:
    statuses = [api.get("/v1/alerts", firm="slow").status_code for _ in range(5)]
    assert statuses[:2] == [200, 200] and 429 in statuses
    limited = api.get("/v1/alerts", firm="slow")
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert api.get("/v1/alerts").status_code == 200  # another key is not limited


def test_retry_after_is_never_sooner_than_the_wait(api: Api) -> None:
    """Retry-After was the wait rounded: 2.49 s said 2, and a client obeying it got a second 429."""
    assert api.get("/v1/alerts", firm="sparse").status_code == 200
    limited = api.get("/v1/alerts", firm="sparse")  # the next token in 2.5 s
    wait = float(limited.json()["detail"].removeprefix("rate limit of this key exceeded; retry in ").removesuffix(" s"))
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= wait > 2


def test_logs_are_json_without_ips_or_account_ids(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db"))
    key = create_key(app.state.service.db, "acme", "t")[1]
    with TestClient(app) as client:
        client.post("/v1/events", content=json.dumps(_login("lo-9", account="SECRET-ACCT", ip="203.0.113.250")),
                    headers={"X-API-Key": key})
        client.get("/v1/accounts/SECRET-ACCT", headers={"X-API-Key": key})
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["msg"] == "request"]
    assert {r["route"] for r in requests} >= {"/v1/events", "/v1/accounts/{account_id}"}
    text = "\n".join(json.dumps(line) for line in lines)
    assert "SECRET-ACCT" not in text and "203.0.113.250" not in text and key not in text


def test_keys_are_created_listed_and_revoked_from_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/keys.db"
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--firm", "acme", "--name", "login-platform", "--db", db])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    key_id = key.split("_")[1]
    listed = runner.invoke(main, ["keys", "list", "--db", db]).output
    assert key_id in listed and "login-platform" in listed and "active" in listed and key not in listed
    app = create_app(Settings(db=db))
    with TestClient(app) as client:
        assert client.get("/v1/alerts", headers={"X-API-Key": key}).status_code == 200
        assert runner.invoke(main, ["keys", "revoke", key_id, "--db", db]).exit_code == 0
        app.state.service.keys._cache.clear()  # revocation reaches every worker within CACHE_S seconds
        answer = client.get("/v1/alerts", headers={"X-API-Key": key})
        assert answer.status_code == 401 and answer.json()["detail"] == "revoked API key"
    assert runner.invoke(main, ["keys", "revoke", key_id, "--db", db]).exit_code == 2
    assert runner.invoke(main, ["keys", "create", "--firm", "a firm", "--db", db]).exit_code == 2
    # Only the hash is stored.
    assert key.split("_", 2)[2].encode() not in (tmp_path / "keys.db").read_bytes()


def test_the_database_commands_read_the_config_file_serve_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """They had no --config: with the database named in serve's file, keys went to ./kabuguard.db
    and every request to the service failed 'unknown API key'."""
    monkeypatch.chdir(tmp_path)  # where ./kabuguard.db would be made
    config = tmp_path / "kabuguard.toml"
    config.write_text(f'[service]\ndb = "sqlite:///{tmp_path}/prod.db"\nwebhook_urls = ["https://h.example/hook"]\n')
    env = {"KABUGUARD_WEBHOOK_SECRET": "test-only-secret"}
    runner = CliRunner(env=env)
    created = runner.invoke(main, ["keys", "create", "--firm", "acme", "--config", str(config)])
    assert created.exit_code == 0, created.output
    for command in (["keys", "list"], ["users", "create", "hana", "--role", "analyst", "--firm", "acme", "--password-stdin"],
                    ["users", "list"], ["cases", "labels", "--out", "l.jsonl"],
                    ["intel", "collections", "create", "shared", "--title", "T"],
                    ["keys", "webhook-secret", "https://h.example/hook"]):
        result = runner.invoke(main, [*command, "--config", str(config)], input="a long enough password\n")
        assert result.exit_code == 0, (command, result.output)
    assert not (tmp_path / "kabuguard.db").exists()
    with TestClient(create_app(load_settings(config, env=env))) as client:
        assert client.get("/v1/alerts", headers={"X-API-Key": created.stdout.strip()}).status_code == 200
    assert "hana" in runner.invoke(main, ["users", "list", "--db", f"sqlite:///{tmp_path}/prod.db"]).output


def test_a_postgres_url_is_postgresql(pg_url: str) -> None:
    """`postgres://`, the scheme many hosts and tools hand out, was refused: 'expected postgresql://'."""
    db = pg_url.replace("postgresql://", "postgres://", 1)
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--firm", "acme", "--db", db])
    assert created.exit_code == 0, created.output
    assert "\tacme\t" in runner.invoke(main, ["keys", "list", "--db", pg_url]).output
    assert load_settings(env={"KABUGUARD_DB": db}).db == db


def test_settings_come_from_file_then_environment_then_options(tmp_path: Path) -> None:
    config = tmp_path / "kabuguard.toml"
    config.write_text('[service]\nport = 9000\nstate = "redis://127.0.0.1:6379/0"\nworkers = 2\n')
    settings = load_settings(config, env={"KABUGUARD_PORT": "9100"}, workers=3)
    assert (settings.port, settings.workers, settings.state) == (9100, 3, "redis://127.0.0.1:6379/0")
    with pytest.raises(SettingsError, match="workers: more than one worker needs shared state"):
        load_settings(env={"KABUGUARD_WORKERS": "2"})
    with pytest.raises(SettingsError, match="KABUGUARD_PORT"):
        load_settings(env={"KABUGUARD_PORT": "eighty"})
    config.write_text("[service]\ncolour = 1\n")
    with pytest.raises(SettingsError, match="unknown setting `colour`"):
        load_settings(config, env={})
    serve = CliRunner().invoke(main, ["serve", "--workers", "2"])
    assert serve.exit_code == 2 and "needs shared state" in serve.output


@pytest.mark.parametrize("text, named", [
    ('[servce]\nport = 9000\n', "unexpected [servce] outside [service]"),
    ('port = 9000\nworkers = 2\n', "unexpected `port`, `workers` outside [service]"),
    ('[service]\nport = 9000\n[console]\nx = 1\n', "unexpected [console] outside [service]"),
    ('service = "port 9000"\n', "no [service] table"),
    ('', "no [service] table"),
])
def test_a_config_file_with_settings_outside_its_service_table_is_refused(tmp_path: Path, text: str, named: str) -> None:
    """Only [service] was read: a misspelt table or settings above it were ignored without a word,
    and the service started on every default (an embedded one in ./kabuguard.db)."""
    config = tmp_path / "kabuguard.toml"
    config.write_text(text)
    with pytest.raises(SettingsError) as refused:
        load_settings(config, env={})
    assert str(refused.value).startswith(f"{config}: {named}")


@pytest.mark.parametrize("env, named", [
    ({"KABUGUARD_LOG_LEVEL": "loud"}, "log_level"),
    ({"KABUGUARD_STATE": "redis://127.0.0.1:notaport/0"}, "Port could not be cast"),
    ({"KABUGUARD_STATE": "redis://127.0.0.1:6379/zero"}, "must be a number"),
    ({"KABUGUARD_STATE": "redis://127.0.0.1:6379/12?db=twelve"}, "must be a number"),  # the client reads ?db= first
    ({"KABUGUARD_DEADLINE_MS": "-1"}, "deadline_ms: must be above 0"),
    ({"KABUGUARD_MAX_BATCH": "0"}, "max_batch: must be above 0"),
    ({"KABUGUARD_MAX_BODY_BYTES": "-1"}, "max_body_bytes: must be above 0"),
    ({"KABUGUARD_WAIT_FOR_DATABASE": "2"}, "wait_for_database: must be 0 or 1"),
])
def test_settings_a_worker_could_not_use_stop_serve_before_it_starts_one(env: dict, named: str) -> None:
    """Each started and failed in its worker (a traceback; with two workers, restarted forever),
    or ran refusing every request while /readyz blamed the database."""
    serve = CliRunner().invoke(main, ["serve"], env=env)
    assert serve.exit_code == 2 and named in serve.output, serve.output


def test_serve_stops_when_redis_refuses_the_urls_password_or_database(redis_url: str) -> None:
    """It ran, answering every event degraded, and said only that Redis was unreachable."""
    host = urlsplit(redis_url).netloc
    for url, named in ((f"redis://:wrong-password@{host}/0", "AUTH"), (f"redis://{host}/99", "DB index")):
        serve = CliRunner().invoke(main, ["serve", "--state", url])
        assert serve.exit_code == 2 and "Redis refused" in serve.output and named in serve.output, serve.output
        assert "wrong-password" not in serve.output


@pytest.mark.parametrize("url, named", [
    ("http://ops:S3cret-pw@127.0.0.1:99999/hook", "port 99999 is out of range"),
    ("https://ops:S3cret-pw@[::1/hook", "not a URL the webhook client can parse"),
    ("acme=http://ops:S3cret-pw@/hook", "no host"),
])
def test_a_webhook_url_the_client_cannot_send_to_is_refused_naming_the_setting(url: str, named: str) -> None:
    """It was taken (`serve` started), and every delivery to the URL failed with an error the outbox
    did not record: the row stayed unsettled, retried each minute, and the log blamed the database."""
    with pytest.raises(SettingsError) as refused:
        load_settings(env={"KABUGUARD_WEBHOOK_URLS": url, "KABUGUARD_WEBHOOK_SECRET": "s" * 32})
    assert str(refused.value).startswith("webhook_urls: ") and named in str(refused.value)
    assert "S3cret-pw" not in str(refused.value)


def test_settings_that_worked_before_their_checks_still_do() -> None:
    """`warn` is a level logging takes; a URL's scheme is case-blind."""
    Settings(log_level="warn").validate()
    Settings(webhook_urls="HTTPS://H.EXAMPLE/x", webhook_secret="s").validate()


def test_serve_with_a_database_it_cannot_open_says_so_in_a_line(tmp_path: Path) -> None:
    for db in ("postgresql://postgres@127.0.0.1:1/kabuguard", f"sqlite:///{tmp_path}/missing/folder/kg.db"):
        serve = CliRunner().invoke(main, ["serve", "--db", db])
        assert serve.exit_code == 1 and serve.output.startswith("Error: cannot open the database"), serve.output
        assert serve.exception is None or isinstance(serve.exception, SystemExit)


def test_a_toml_list_of_webhook_urls_is_the_receivers_and_other_shapes_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "kabuguard.toml"
    config.write_text('[service]\nwebhook_urls = ["https://a.example/hook", "https://b.example/hook"]\n'
                      'webhook_secret = "x"\n')
    assert load_settings(config, env={}).receivers() == ["https://a.example/hook", "https://b.example/hook"]
    for line in ('webhook_urls = [1, 2]', 'db = ["sqlite:///a.db"]', 'log_level = {level = "info"}'):
        config.write_text(f"[service]\n{line}\n")
        with pytest.raises(SettingsError, match=f"kabuguard.toml: `{line.split()[0]}` must be"):
            load_settings(config, env={})


def test_a_refused_setting_never_shows_a_password_or_secret_it_holds(tmp_path: Path) -> None:
    """The message printed the refused value whole: a database URL or the webhook secret in a TOML
    array reached the terminal and CI logs."""
    config = tmp_path / "kabuguard.toml"
    for line, shape in (('db = ["postgresql://kg:hunter2@db.example/kg"]', "an array of 1"),
                        ('webhook_urls = ["https://u:hunter2@h.example/x", 5]', "an array of 2"),
                        ('webhook_secret = ["hunter2"]', "an array of 1"),
                        ('state = {url = "redis://:hunter2@h.example/0"}', "a table"),
                        ('port = "postgresql://kg:hunter2@db.example/kg"', "'postgresql://kg:***@db.example/kg'")):
        config.write_text(f"[service]\n{line}\n")
        with pytest.raises(SettingsError) as refused:
            load_settings(config, env={})
        assert str(refused.value).endswith(f"got {shape}") and "hunter2" not in str(refused.value), refused.value


def test_a_toml_boolean_or_fraction_for_a_number_is_refused_and_a_flag_takes_a_boolean(tmp_path: Path) -> None:
    """`rate_limit = true` ran every key at 1 request a second and `max_batch = 99.9` as 99, without
    a word, where the same values in the environment were refused."""
    config = tmp_path / "kabuguard.toml"
    for line in ("rate_limit = true", "max_batch = 99.9", "port = 8080.5", "deadline_ms = false"):
        config.write_text(f"[service]\n{line}\n")
        with pytest.raises(SettingsError, match=f"kabuguard.toml: `{line.split()[0]}` must be"):
            load_settings(config, env={})
    config.write_text("[service]\nwait_for_database = true\nconsole_secure_cookie = false\nmax_batch = 500.0\n")
    settings = load_settings(config, env={})
    assert (settings.wait_for_database, settings.console_secure_cookie, settings.max_batch) == (1, 0, 500)


def test_openapi_schema_documents_the_contract(api: Api) -> None:
    # Behind a key like everything but the health checks; FastAPI's open pages are off.
    for open_page in ("/openapi.json", "/docs", "/redoc", "/v1/openapi.json"):
        assert api.client.get(open_page).status_code in (401, 404), open_page
    schema = api.get("/v1/openapi.json").json()
    assert set(schema["paths"]) == {"/v1/events", "/v1/accounts/{account_id}", "/v1/alerts", "/healthz", "/readyz"}
    login = schema["components"]["schemas"]["Login"]
    assert "ts_us" not in login["properties"] and "success" in login["required"]
    body = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "anyOf" in body


def test_stream_posted_whole_matches_the_ordered_stream(api: Api, tmp_path: Path) -> None:
    src = brokerage().write(tmp_path / "e.jsonl")
    stream = ordered_stream([src])
    answer = api.post(stream).json()
    assert len(answer["results"]) == len(stream) and answer["degraded"] is False


def test_no_route_reads_a_body_past_the_limit(api: Api) -> None:
    big = b"username=" + b"x" * 500_000  # the limit here is 400,000 bytes
    for path in ("/console/login", "/taxii2/kabuguard/collections/x/objects/", "/v1/intel/stats"):
        refused = api.client.post(path, content=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert refused.status_code == 413 and "exceeds the limit of 400000" in refused.json()["detail"], path

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(50):
            yield b"x" * 10_000

    streamed = api.client.post("/console/login", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413
    assert api.client.get("/healthz").status_code == 200


def test_a_minute_of_bars_in_one_request_answers_each_bar_as_one_at_a_time(api: Api) -> None:
    """The service decides a request's run of bars in batches: each bar's answer (its alerts, no
    decision) is what deciding it alone gives, a bar sent twice is answered as a duplicate."""
    from kabuguard.engine import Pipeline  # noqa: PLC0415
    from kabuguard.events.reader import event_from_dict  # noqa: PLC0415

    symbols = [f"{1000 + i}" for i in range(25)]
    minutes = []
    for minute in range(1, 41):
        bars = []
        for n, symbol in enumerate(symbols):
            close = 1000.0 + (minute % 3) + n
            volume = 1000 + 7 * n
            if symbol == "1000" and minute >= 36:  # a pump on the last minutes
                close, volume = 1000.0 * 1.03 ** (minute - 35), 60_000
            bars.append({"event_id": f"mb-{minute}-{symbol}", "type": "market_bar", "ts": ts(3, 9, minute),
                         "symbol": symbol, "open": close, "high": close, "low": close, "close": close,
                         "volume": volume})
        minutes.append(bars)
    alone = Pipeline()
    want = {bar["event_id"]: alone.process(event_from_dict(bar))[1] for bars in minutes for bar in bars}
    assert any(want.values())  # the pump was alerted
    got: dict[str, list] = {}
    for bars in minutes:
        body = api.post([*bars, bars[3]]).json()  # the fourth bar again, at the end
        results = body["results"]
        assert [r["duplicate"] for r in results] == [False] * len(bars) + [True]
        for result in results[:-1]:
            assert result["decision"] is None
            got[result["event_id"]] = result["alerts"]
    assert got == want


def test_an_event_naming_its_own_firm_is_the_account_an_event_without_it_is(api: Api) -> None:
    """A login platform that sends `firm` and an order platform that does not: the change was
    decided as another account's, without the risk of the session its login opened."""
    login = {**_login("lo-1", ip="52.95.110.1"), "device_id": "dev-new", "firm": "acme"}
    change = {"event_id": "ch-1", "type": "account_change", "ts": ts(3, 9, 2), "account_id": "A1",
              "session_id": "s-lo-1", "field": "email", "ip": "52.95.110.1", "device_id": "dev-new"}
    api.post(login)
    decided = api.post(change).json()["results"][0]["decision"]
    alone = create_app_replay([{k: v for k, v in login.items() if k != "firm"}, change])[-1]
    assert encode(decided) == alone


def test_positions_past_64_bits_are_held_at_its_limit_so_the_service_decides_as_the_replay(api: Api) -> None:
    """Two fills of 2**63 - 1 on a holding of as much (each within the contract) made a position
    msgpack cannot hold: the replay decided, the service answered 500."""
    big = 2**63 - 1
    day = "2025-03-03T0{}:00:00+09:00"
    events = [
        {"event_id": "i1", "type": "instrument", "ts": day.format(8), "symbol": "7203", "adv_shares": 2e7,
         "last_price": 2800.0},
        {"event_id": "a1", "type": "account", "ts": day.format(8), "account_id": "A1",
         "holdings": [{"symbol": "7203", "qty": big}]},
        *({"event_id": f"x{n}", "type": "execution", "ts": day.format(9), "order_id": f"o{n}", "account_id": "A1",
           "symbol": "7203", "side": "buy", "qty": big, "price": 2800.0} for n in range(2)),
        {"event_id": "o3", "type": "order", "ts": day.format(9), "order_id": "o3", "account_id": "A1",
         "symbol": "7203", "side": "sell", "qty": 100}]
    answer = api.post(events)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][-1]["decision"]["decision"] == "allow"
