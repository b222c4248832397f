"""The API's documented shapes: request bodies from the contract's own records, answers as models.

Requests are parsed by the contract reader (msgspec), never by these models: the OpenAPI schema
of `POST /v1/events` is generated from the same typed records, so schema and parser agree.
Answers are written as bytes by the decider; the models below only describe them.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from pydantic import BaseModel, Field

from kabuguard.events.model import MAX_PRICE, Event

_INTERNAL = ("ts_us", "extra")
# What the reader checks beyond types (events/model.py), said in the schema too, as far as a
# schema can: a year's pattern cannot see the offset that moves an instant across 1970 or past
# 9999-12-30 in UTC.
_INSTANT = {"type": "string", "format": "date-time", "pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-",
            "description": "RFC 3339 with an offset, e.g. 2025-03-21T09:14:03.120+09:00; from 1970 to "
                           "9999-12-30 in UTC"}
_PRICE = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_PRICE}
# An account may be older than 1970 (events may not); empty is absent, as an export's cell.
_ACCOUNT_TIME = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "maxLength": 0}]}
_CHECKED = {"ts": _INSTANT, "opened_at": _ACCOUNT_TIME, "last_login_at": _ACCOUNT_TIME,
            "open": _PRICE, "high": _PRICE, "low": _PRICE, "close": _PRICE, "limit_price": _PRICE, "price": _PRICE,
            "last_price": _PRICE, "value": {"type": "string", "pattern": "[^\\s]"}}


def event_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema of the body: one event or an array of events, component schemas)."""
    (body,), components = msgspec.json.schema_components([Event | list[Event]],
                                                         ref_template="#/components/schemas/{name}")
    components = copy.deepcopy(components)
    for schema in components.values():
        props = schema.get("properties", {})
        for name in _INTERNAL:
            props.pop(name, None)
        for name in props.keys() & _CHECKED.keys():
            props[name] = dict(_CHECKED[name])
        # An optional field may come as null, which reads as absent (docs/event-contract.md).
        required = set(schema.get("required", ()))
        for name, prop in props.items():
            if name not in required:
                props[name] = {"anyOf": [prop, {"type": "null"}]}
        # Fields outside the contract are kept, not refused (docs/event-contract.md).
        schema.pop("additionalProperties", None)
        _bound_integers(schema)
    return body, components


def _bound_integers(node: Any) -> None:
    """State keeps 64-bit integers: say so, as the parser refuses larger ones."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node.setdefault("minimum", -(2**63))
            node.setdefault("maximum", 2**63 - 1)
        for value in node.values():
            _bound_integers(value)
    elif isinstance(node, list):
        for value in node:
            _bound_integers(value)


class Decision(BaseModel):
    event_id: str
    ts: str
    type: str
    account_id: str
    firm: str | None = None
    decision: str = Field(description="allow, challenge, review or block")
    score: float | None = Field(description="in [0, 1]; null for a degraded answer")
    reasons: list[str]
    notional_jpy: float | None = None


class Result(BaseModel):
    event_id: str
    duplicate: bool = Field(description="true when this event_id was decided before: the first answer again")
    applied: bool | None = Field(None, description="false for a degraded answer: the event was not decided in time; resend it "
                                  "to get its decision (new, or the recorded one if it completed late)")
    decision: Decision | None = Field(description="null for events that only feed state")
    alerts: list[dict[str, Any]]


class EventsAnswer(BaseModel):
    degraded: bool = Field(description="true when state or the database was unreachable: the policy's fail mode answered")
    results: list[Result]


class AccountAnswer(BaseModel):
    account_id: str
    degraded: bool = Field(description="true when state was unreachable: `risk.contained` and `risk.campaign_id` "
                                       "are null, unknown")
    risk: dict[str, Any]
    recent_decisions: list[dict[str, Any]]
    open_alerts: list[dict[str, Any]]


class AlertsPage(BaseModel):
    alerts: list[dict[str, Any]]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page; null on the last")


class Problem(BaseModel):
    detail: str
