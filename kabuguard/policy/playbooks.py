"""Automatic playbooks: containment the detection core applies itself when an alert matches.

Declared in the policy file (`playbooks:`), for example: contain every member of a campaign
alert whose score reaches 0.75. The core decides, so the replay, the service and Spark contain
the same accounts at the same place in the order: a live playbook names itself in the alert's
`playbook` field and contains the accounts in the final stage's state (their later events are
blocked, reason `contained`); with `dry_run: true` it only names itself in `playbook_dry_run`
and no decision changes. The service adds the side effects (containment actions, audit entries,
webhooks) from those fields.
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

    @property
    def field(self) -> str:
        """The alert field that names this playbook when it fires."""
        return DRY_RUN_FIELD if self.dry_run else LIVE_FIELD


# Alert fields naming the playbooks an alert fired: live ones contained its accounts.
LIVE_FIELD, DRY_RUN_FIELD = "playbook", "playbook_dry_run"


def fired(alert: dict[str, Any]) -> list[tuple[str, bool]]:
    """The playbooks the core fired on `alert`, as (name, dry_run)."""
    return [(name, False) for name in alert.get(LIVE_FIELD, ())] + \
        [(name, True) for name in alert.get(DRY_RUN_FIELD, ())]


_KEYS = frozenset({"name", "alert", "min_score", "measures", "dry_run"})


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
        unknown_keys = set(item) - _KEYS
        if unknown_keys:  # `dryrun: false` must not leave a playbook the analyst thinks live in dry run
            raise ValueError(f"{where}: unknown key(s) {sorted(map(str, unknown_keys))}; known: {', '.join(sorted(_KEYS))}")
        if not isinstance(item["name"], str) or not item["name"]:
            raise ValueError(f"{where}.name: a name, got {item['name']!r}")
        if not isinstance(item.get("dry_run", True), bool):  # "false" in quotes is text, and text is true
            raise ValueError(f"{where}.dry_run: true or false, got {item['dry_run']!r}")
        if any(p.name == item["name"] for p in out):
            # Alerts and containment actions name a playbook: the name must say which.
            raise ValueError(f"{where}.name: {item['name']!r} is used by an earlier playbook")
        if item["alert"] not in _ALERTS:
            raise ValueError(f"{where}.alert: expected one of {', '.join(_ALERTS)}, got {item['alert']!r}")
        measures = item.get("measures", MEASURES)
        if not isinstance(measures, (list, tuple)) or not measures:  # none: blocked here, nothing sent to do
            raise ValueError(f"{where}.measures: a non-empty list of {', '.join(MEASURES)}, got {measures!r}")
        unknown = set(measures) - set(MEASURES)
        if unknown:
            raise ValueError(f"{where}.measures: unknown {sorted(map(str, unknown))}; known: {', '.join(MEASURES)}")
        score = item["min_score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise ValueError(f"{where}.min_score: a score in [0, 1], got {score!r}")
        out.append(Playbook(item["name"], item["alert"], float(score), tuple(measures), item.get("dry_run", True)))
    return tuple(out)
