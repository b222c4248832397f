"""Schemathesis fuzzes every operation of the OpenAPI schema: whatever it sends, never a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
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
