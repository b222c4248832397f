"""Schemathesis fuzzes every operation of the OpenAPI schema: whatever it sends, never a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import jsonschema
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from schemathesis.specs.openapi.checks import positive_data_acceptance

from kabuguard.service.app import create_app
from kabuguard.service.auth import create_key
from kabuguard.service.settings import Settings

# Built at import, as schemathesis parametrizes at collection: an embedded app on a temporary file.
_APP = create_app(Settings(db=f"sqlite:///{tempfile.mkdtemp(prefix='kg-schema-')}/kg.db", rate_limit=1e9,
                           max_body_bytes=256_000, log_level="warning"))
_KEY = {"key": create_key(_APP.state.service.db, "acme", "fuzz")[1]}
schema = schemathesis.openapi.from_asgi("/v1/openapi.json", _APP, headers={"X-API-Key": _KEY["key"]})


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(headers={"X-API-Key": _KEY["key"]})
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.json()["detail"], "a 4xx says what is wrong"
    # Every check but one: JSON Schema counts 0.0 as an integer, the contract's reader (strict
    # msgspec) does not, so a schema-valid `"qty": 0.0` gets a 422 naming the field, by design.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


def test_the_schema_is_served(tmp_path: Path) -> None:
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db"))
    key = create_key(app.state.service.db, "acme", "schema")[1]
    loaded = schemathesis.openapi.from_asgi("/v1/openapi.json", app, headers={"X-API-Key": key})
    operations = {(op.ok().method.upper(), op.ok().path) for op in loaded.get_all_operations()}
    assert ("POST", "/v1/events") in operations and ("GET", "/v1/alerts") in operations


def test_what_the_reader_refuses_beyond_types_the_schema_refuses_too(tmp_path: Path) -> None:
    """Bodies valid by the published schema got 422: a client generated from it could not know."""
    app = create_app(Settings(db=f"sqlite:///{tmp_path}/kg.db"))
    key = create_key(app.state.service.db, "acme", "schema")[1]
    with TestClient(app) as client:
        spec = client.get("/v1/openapi.json", headers={"X-API-Key": key}).json()
        # A key first used while the database is slow or down gets a 503 on each operation.
        assert all("503" in op["responses"] for name, path in spec["paths"].items() if name.startswith("/v1/")
                   for op in path.values())
        body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        valid = jsonschema.Draft202012Validator({**body, "components": spec["components"]},
                                                format_checker=jsonschema.FormatChecker()).is_valid
        bar = {"event_id": "b1", "type": "market_bar", "ts": "2025-03-03T09:01:00+09:00", "symbol": "7203",
               "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100}
        indicator = {"event_id": "i1", "type": "indicator", "ts": "2025-03-03T09:01:00+09:00",
                     "indicator_type": "ip", "value": "203.0.113.7"}
        account = {"event_id": "a1", "type": "account", "ts": "2025-03-03T09:01:00+09:00", "account_id": "A1",
                   "opened_at": ""}
        for good in (bar, indicator, account, {**account, "opened_at": "2019-08-29T10:47:26+09:00"},
                     {**account, "opened_at": "1965-04-01T09:00:00+09:00"}):  # an account may be older than 1970
            answer = client.post("/v1/events", json=good, headers={"X-API-Key": key})
            assert valid(good) and answer.status_code == 200, (good, answer.text)
        for bad in ({**bar, "ts": "1969-12-31T23:59:59+00:00"}, {**bar, "close": 0.0}, {**bar, "high": -1.0},
                    {**bar, "low": 2e12}, {**indicator, "value": "  "}, {**account, "opened_at": "yesterday"}):
            answer = client.post("/v1/events", json={**bad, "event_id": "x"}, headers={"X-API-Key": key})
            assert answer.status_code == 422 and not valid(bad), (bad, answer.text)

