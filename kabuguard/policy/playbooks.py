"""Automatic playbooks: containment the service applies itself when an alert matches.

Declared in the policy file (`playbooks:`), for example: contain every member of a campaign
alert whose score reaches 0.75. With `dry_run: true` the service only records what it would
have done (audit log and containment actions marked dry-run; no state change, no webhook).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MEASURES = ("suspend", "revoke_sessions", "force_password_reset", "cancel_open_orders")
_ALERTS = ("account_alert", "campaign_alert")


@dataclass(frozen=True)
class Playbook:
    name: str
    alert: str
    min_score: float
    measures: tuple[str, ...]
    dry_run: bool

    def matches(self, alert: dict[str, Any]) -> bool:
        return alert["type"] == self.alert and float(alert.get("score") or 0.0) >= self.min_score


def parse_playbooks(raw: Any, source: str) -> tuple[Playbook, ...]:
    """The `playbooks` list of a policy file; raises ValueError naming the entry and key."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{source}: `playbooks` must be a list")
    out = []
    for n, item in enumerate(raw):
        where = f"{source}: playbooks[{n}]"
        if not isinstance(item, dict) or not {"name", "alert", "min_score"} <= set(item):
            raise ValueError(f"{where}: needs `name`, `alert` and `min_score`")
        if item["alert"] not in _ALERTS:
            raise ValueError(f"{where}.alert: expected one of {', '.join(_ALERTS)}, got {item['alert']!r}")
        measures = tuple(item.get("measures", MEASURES))
        unknown = set(measures) - set(MEASURES)
        if unknown:
            raise ValueError(f"{where}.measures: unknown {sorted(unknown)}; known: {', '.join(MEASURES)}")
        out.append(Playbook(str(item["name"]), item["alert"], float(item["min_score"]), measures,
                            bool(item.get("dry_run", True))))
    return tuple(out)
