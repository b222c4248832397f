"""Containment: one account, or every account of an alert, in one step.

An action is applied to the core's state first, so that the account's later events are decided
`block` with reason `contained`; then it is recorded (its row, its audit entry and one webhook
outbox row per receiver, in one transaction) and the deliverer is woken to tell the firm's
systems to suspend the account, revoke its sessions, force a password reset and cancel its open
orders. In that order a state store that cannot be reached leaves nothing behind (no action
shown as done, no webhook for an account the core does not block); a database that fails after
the state changed leaves the account blocked, and the analyst, told so, contains it again.
Playbooks are decided by the core, which contains their accounts in its own state (so the
replay and Spark decide as the service does); here they get only their record and webhooks.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool

from kabuguard.console import audit
from kabuguard.console.cases import alert_accounts, load_alerts
from kabuguard.console.clock import now_iso, now_us
from kabuguard.console.models import containment_actions, webhook_outbox
from kabuguard.console.webhooks import Deliverer
from kabuguard.events.model import ID_MAX
from kabuguard.policy.playbooks import MEASURES, Playbook, fired
from kabuguard.service.decider import Decider, is_store_error
from kabuguard.service.storage.database import serialised
from kabuguard.service.storage.models import FIRM_MAX

log = logging.getLogger("kabuguard.console")


class ContainmentError(ValueError):
    """No reason given, or unknown measures; the message says which."""


class StateUnavailable(HTTPException):
    """The core's state could not be changed: nothing was contained, recorded or sent."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(503, f"the decision state cannot be reached ({type(cause).__name__}): nothing was "
                              "contained; try again shortly")


# Playbook records one at a time (`serialised`), so that two requests whose alerts name the same
# accounts record each account once.
_playbooks_once = threading.Lock()


class Containment:
    def __init__(self, engine: Engine, decider: Decider, receivers: Callable[[str], list[str]], deliverer: Deliverer,
                 playbooks: Sequence[Playbook] = ()) -> None:
        self.engine = engine
        self.decider = decider
        self.receivers = receivers  # a firm's receivers
        self.deliverer = deliverer
        self.playbooks = {p.name: p for p in playbooks}

    async def contain(self, actor: str, firm: str, account_ids: Sequence[str], reason: str, *,
                      measures: Sequence[str] = MEASURES, alert_id: str | None = None) -> list[str]:
        """Contain `account_ids` of `firm`; returns the action ids (one per account)."""
        if not reason.strip():
            raise ContainmentError("reason: say why the account is contained")
        unknown = set(measures) - set(MEASURES)
        if unknown or not measures:
            raise ContainmentError(f"measures: expected some of {', '.join(MEASURES)}, got {sorted(measures)}")
        accounts = list(dict.fromkeys(account_ids))
        # What the record will hold is checked before the state changes: a refusal after it would
        # leave the account blocked and unrecorded.
        wrong = [a for a in accounts if not 0 < len(a) <= ID_MAX or "\x00" in a]
        if wrong:
            raise ContainmentError(f"account_id: 1 to {ID_MAX} characters and no NUL character, got {wrong[0][:40]!r}")
        if "\x00" in reason or "\x00" in firm:
            raise ContainmentError("reason: a NUL character, which the database cannot store")
        if not 0 < len(firm) <= FIRM_MAX:  # else the record's write would fail after the state changed
            raise ContainmentError(f"firm: 1 to {FIRM_MAX} characters, got {len(firm)}")
        try:
            # The account's key as the service's core knows it: the firm's state is its own.
            await self.decider.contain(firm, accounts)
        except Exception as exc:
            if is_store_error(exc):
                raise StateUnavailable(exc) from exc
            raise
        try:
            ids = await run_in_threadpool(self._record_now, actor, firm, accounts, reason, list(measures),
                                          "console", alert_id, False)
        except Exception as exc:
            log.error("containment applied but not recorded", extra={"accounts": len(accounts),
                                                                    "error": type(exc).__name__})
            raise HTTPException(500, f"the account{'s are' if len(accounts) > 1 else ' is'} contained (later events "
                                     f"are blocked), but recording it failed ({type(exc).__name__}), so no webhook "
                                     "was sent: contain again to record it and notify the firm's systems") from exc
        self.deliverer.wake()
        return ids

    async def contain_alert(self, actor: str, firm: str, alert_id: str, reason: str, *,
                            measures: Sequence[str] = MEASURES) -> list[str]:
        """Contain every account an alert names (a campaign's members, or the alerted account)."""
        with self.engine.connect() as conn:
            (alert,) = load_alerts(conn, firm, [alert_id])
        accounts = alert_accounts(firm, alert)
        if not accounts:
            raise ContainmentError(f"alert {alert_id!r} ({alert['type']}) names no account to contain: "
                                   "contain its buyers from their account pages")
        return await self.contain(actor, firm, accounts, reason, measures=measures, alert_id=alert_id)

    async def record_playbooks(self, firm: str, alerts: Sequence[dict[str, Any]]) -> None:
        """Record what the core's playbooks did on these newly raised alerts, and send its webhooks.

        The core has contained the accounts already (or, in dry run, changed nothing): this adds
        the containment actions and audit entries, as `playbook:<name>`, and the webhooks of a
        live playbook; once per account, however many alerts a growing campaign raises."""
        for alert in alerts:
            for name, dry_run in fired(alert):
                playbook = self.playbooks[name]
                ids = await run_in_threadpool(
                    self._record_once, f"playbook:{name}", firm, alert_accounts(firm, alert),
                    f"{alert['type']} score {alert.get('score')} >= {playbook.min_score}", list(playbook.measures),
                    f"playbook:{name}", alert["alert_id"], dry_run)
                if ids and not dry_run:
                    self.deliverer.wake()

    def _record_once(self, actor: str, firm: str, accounts: list[str], reason: str, measures: list[str],
                     source: str, alert_id: str | None, dry_run: bool) -> list[str]:
        """`_record` for the accounts without a containment action (of the same dry-run kind)
        yet, checked and recorded in one transaction that no other playbook record overlaps."""
        with serialised(self.engine, f"kabuguard.playbook:{firm}", _playbooks_once) as conn:
            done = set(conn.execute(select(containment_actions.c.account_id).where(
                containment_actions.c.firm == firm, containment_actions.c.account_id.in_(accounts),
                containment_actions.c.dry_run == int(dry_run))).scalars())
            fresh = [a for a in dict.fromkeys(accounts) if a not in done]
            ids = self._record(conn, actor, firm, fresh, reason, measures, source, alert_id, dry_run) if fresh else []
        if ids:
            log.info("containment recorded", extra={"actions": len(ids), "source": source, "dry_run": dry_run})
        return ids

    def _record_now(self, actor: str, firm: str, accounts: list[str], reason: str, measures: list[str],
                    source: str, alert_id: str | None, dry_run: bool) -> list[str]:
        with self.engine.begin() as conn:
            ids = self._record(conn, actor, firm, accounts, reason, measures, source, alert_id, dry_run)
        log.info("containment recorded", extra={"actions": len(ids), "source": source, "dry_run": dry_run})
        return ids

    def _record(self, conn: Connection, actor: str, firm: str, accounts: list[str], reason: str,
                measures: list[str], source: str, alert_id: str | None, dry_run: bool) -> list[str]:
        """The actions' rows, audit entries and webhook outbox rows, in the caller's transaction."""
        at = now_iso()
        ids = []
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
            receivers = self.receivers(firm)
            if receivers:
                conn.execute(webhook_outbox.insert(), [
                    {"action_id": action_id, "receiver": url, "body": body, "next_attempt_us": now_us()}
                    for url in receivers])
        return ids


def actions(engine: Engine, firm: str | None = None, account_id: str | None = None,
            limit: int | None = 500, alert_id: str | None = None) -> list[dict[str, Any]]:
    """Containment actions, newest first: the newest `limit` (None: all) of a firm's, an account's or an alert's."""
    query = select(containment_actions).order_by(containment_actions.c.at.desc()).limit(limit)
    if firm is not None:
        query = query.where(containment_actions.c.firm == firm)
    if account_id is not None:
        query = query.where(containment_actions.c.account_id == account_id)
    if alert_id is not None:
        query = query.where(containment_actions.c.alert_id == alert_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
