"""Containment: one account, or every account of an alert, in one step.

An action is recorded first (its row, its audit entry and one webhook outbox row per receiver,
in one transaction), then applied to the core's state, so that the account's later events are
decided `block` with reason `contained`, and the deliverer is woken to tell the firm's systems
to suspend the account, revoke its sessions, force a password reset and cancel its open orders.
Playbooks from the policy call the same path when an alert matches them.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from kabuguard.console import audit
from kabuguard.console.cases import alert_accounts, load_alerts
from kabuguard.console.clock import now_iso, now_us
from kabuguard.console.models import containment_actions, webhook_outbox
from kabuguard.console.webhooks import Deliverer
from kabuguard.policy.playbooks import MEASURES, Playbook
from kabuguard.service.decider import Decider

log = logging.getLogger("kabuguard.console")


class ContainmentError(ValueError):
    """No reason given, or unknown measures; the message says which."""


class Containment:
    def __init__(self, engine: Engine, decider: Decider, receivers: Sequence[str], deliverer: Deliverer,
                 playbooks: Sequence[Playbook] = ()) -> None:
        self.engine = engine
        self.decider = decider
        self.receivers = list(receivers)
        self.deliverer = deliverer
        self.playbooks = list(playbooks)

    async def contain(self, actor: str, firm: str, account_ids: Sequence[str], reason: str, *,
                      measures: Sequence[str] = MEASURES, source: str = "console", alert_id: str | None = None,
                      dry_run: bool = False) -> list[str]:
        """Contain `account_ids` of `firm`; returns the action ids (one per account)."""
        if not reason.strip():
            raise ContainmentError("reason: say why the account is contained")
        unknown = set(measures) - set(MEASURES)
        if unknown or not measures:
            raise ContainmentError(f"measures: expected some of {', '.join(MEASURES)}, got {sorted(measures)}")
        accounts = list(dict.fromkeys(account_ids))
        ids = await run_in_threadpool(self._record, actor, firm, accounts, reason, list(measures), source,
                                      alert_id, dry_run)
        if not dry_run:
            # Either form of the account's key: multi-firm feeds key accounts `firm:account`.
            await self.decider.contain(firm, [k for a in accounts for k in (a, f"{firm}:{a}")])
            self.deliverer.wake()
        return ids

    async def contain_alert(self, actor: str, firm: str, alert_id: str, reason: str, *,
                            measures: Sequence[str] = MEASURES) -> list[str]:
        """Contain every account an alert names (a campaign's members, or the alerted account)."""
        with self.engine.connect() as conn:
            (alert,) = load_alerts(conn, firm, [alert_id])
        return await self.contain(actor, firm, alert_accounts(firm, alert), reason, measures=measures,
                                  alert_id=alert_id)

    async def run_playbooks(self, firm: str, alerts: Sequence[dict[str, Any]]) -> None:
        """Apply every playbook an alert matches (called after the alert is recorded)."""
        for alert in alerts:
            for playbook in self.playbooks:
                if not playbook.matches(alert):
                    continue
                # A growing campaign raises an alert per new member: contain each account once.
                accounts = await run_in_threadpool(self._not_yet, firm, alert_accounts(firm, alert), playbook.dry_run)
                if not accounts:
                    continue
                await self.contain(f"playbook:{playbook.name}", firm, accounts,
                                   f"{alert['type']} score {alert.get('score')} >= {playbook.min_score}",
                                   measures=playbook.measures, source=f"playbook:{playbook.name}",
                                   alert_id=alert["alert_id"], dry_run=playbook.dry_run)

    def _not_yet(self, firm: str, accounts: list[str], dry_run: bool) -> list[str]:
        """`accounts` without a containment action (of the same dry-run kind) yet."""
        with self.engine.connect() as conn:
            done = set(conn.execute(select(containment_actions.c.account_id).where(
                containment_actions.c.firm == firm, containment_actions.c.account_id.in_(accounts),
                containment_actions.c.dry_run == int(dry_run))).scalars())
        return [a for a in accounts if a not in done]

    def _record(self, actor: str, firm: str, accounts: list[str], reason: str, measures: list[str], source: str,
                alert_id: str | None, dry_run: bool) -> list[str]:
        at = now_iso()
        ids = []
        with self.engine.begin() as conn:
            for account_id in accounts:
                action_id = secrets.token_hex(8)
                ids.append(action_id)
                conn.execute(containment_actions.insert().values(
                    action_id=action_id, firm=firm, account_id=account_id, measures=",".join(measures),
                    source=source, alert_id=alert_id, actor=actor, reason=reason, at=at, dry_run=int(dry_run)))
                audit.record(conn, actor, "contain.dry_run" if dry_run else "contain", reason, firm=firm,
                             target=f"account:{account_id}",
                             detail={"action_id": action_id, "measures": measures, "alert_id": alert_id})
                if dry_run:
                    continue
                body = json.dumps({"action_id": action_id, "type": "containment", "firm": firm,
                                   "account_id": account_id, "measures": measures, "reason": reason,
                                   "actor": actor, "alert_id": alert_id, "at": at}, sort_keys=True).encode()
                if self.receivers:
                    conn.execute(webhook_outbox.insert(), [
                        {"action_id": action_id, "receiver": url, "body": body, "next_attempt_us": now_us()}
                        for url in self.receivers])
        log.info("containment recorded", extra={"actions": len(ids), "source": source, "dry_run": dry_run})
        return ids


def actions(engine: Engine, firm: str | None = None, account_id: str | None = None,
            limit: int = 500) -> list[dict[str, Any]]:
    """Containment actions, newest first."""
    query = select(containment_actions).order_by(containment_actions.c.at.desc()).limit(limit)
    if firm is not None:
        query = query.where(containment_actions.c.firm == firm)
    if account_id is not None:
        query = query.where(containment_actions.c.account_id == account_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
