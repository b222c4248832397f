"""Cases: alerts an analyst works together, with the accounts they touch, comments, an assignee
and, when closed, a disposition (fraud, benign, unsure) that becomes labels for `kabuguard evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from kabuguard.console import audit
from kabuguard.console.clock import now_iso
from kabuguard.console.models import DISPOSITIONS, case_accounts, case_alerts, case_comments, cases
from kabuguard.service.storage.models import alerts, decisions

# Labels cover a linked account's decisions from this long before the case's first alert to this
# long after its last: the takeover's login precedes the alert that named it.
LABEL_MARGIN_US = 24 * 3_600_000_000


class CaseError(ValueError):
    """No such case or alert, a closed case, a bad disposition; the message says which."""


def alert_accounts(firm: str, alert: dict[str, Any]) -> list[str]:
    """The account ids an alert names (a campaign's members are keyed `firm:account` in multi-firm feeds)."""
    if alert["type"] == "campaign_alert":
        return [a.removeprefix(f"{firm}:") for a in alert.get("accounts", [])]
    return [alert["account_id"]] if alert.get("account_id") else []


def load_alerts(conn: Connection, firm: str, alert_ids: list[str]) -> list[dict[str, Any]]:
    rows = conn.execute(select(alerts.c.body).where(alerts.c.firm == firm, alerts.c.alert_id.in_(alert_ids))).scalars()
    found = [msgspec.json.decode(body) for body in rows]
    missing = set(alert_ids) - {a["alert_id"] for a in found}
    if missing:
        raise CaseError(f"alert(s) {sorted(missing)} not found for firm {firm!r}")
    return found


def open_case(engine: Engine, actor: str, firm: str, alert_ids: list[str], title: str = "") -> int:
    """A new open case over `alert_ids`, linked to every account they name."""
    if not alert_ids:
        raise CaseError("a case starts from at least one alert")
    with engine.begin() as conn:
        _hold_alerts(conn, firm, alert_ids)
        found = load_alerts(conn, firm, alert_ids)
        title = title or f"{found[0]['type'].replace('_', ' ')} {found[0]['alert_id']}"
        case_id = conn.execute(cases.insert().values(
            firm=firm, title=title[:300], status="open", opened_by=actor, opened_at=now_iso())).inserted_primary_key[0]
        conn.execute(case_alerts.insert(), [{"case_id": case_id, "alert_id": a} for a in alert_ids])
        # Worked again: an alert a closed case had closed is open while this case works it.
        conn.execute(update(alerts).where(alerts.c.firm == firm, alerts.c.alert_id.in_(alert_ids))
                     .values(status="open"))
        accounts = sorted({acc for alert in found for acc in alert_accounts(firm, alert)})
        if accounts:
            conn.execute(case_accounts.insert(), [{"case_id": case_id, "account_id": a} for a in accounts])
        audit.record(conn, actor, "case.open", "opened from alerts", firm=firm, target=f"case:{case_id}",
                     detail={"alerts": alert_ids, "accounts": accounts})
    return int(case_id)


def _hold_alerts(conn: Connection, firm: str, alert_ids: Iterable[str]) -> None:
    """Lock the alerts' rows to the commit (PostgreSQL; SQLite has one writer at a time already),
    in id order so that two callers cannot deadlock. A close reads which open cases still work an
    alert and then closes it: without the lock, a case opened over the alert in between (its
    commit after the read) was left open over a closed alert."""
    conn.execute(select(alerts.c.alert_id).where(alerts.c.firm == firm, alerts.c.alert_id.in_(list(alert_ids)))
                 .order_by(alerts.c.alert_id).with_for_update())


def _open_case(conn: Connection, case_id: int) -> dict[str, Any]:
    """The open case `case_id`, its row held by this transaction first (an update that changes
    nothing: a row lock on PostgreSQL, the writer's lock on SQLite), so that a second analyst's
    action on the case waits for the first's commit and then reads it: two closes cannot both pass."""
    conn.execute(update(cases).where(cases.c.case_id == case_id).values(status=cases.c.status))
    row = conn.execute(select(cases).where(cases.c.case_id == case_id)).mappings().first()
    if row is None:
        raise CaseError(f"case {case_id}: no such case")
    if row["status"] != "open":
        raise CaseError(f"case {case_id}: closed ({row['disposition']})")
    return dict(row)


def assign(engine: Engine, actor: str, case_id: int, assignee: str) -> None:
    with engine.begin() as conn:
        case = _open_case(conn, case_id)
        conn.execute(update(cases).where(cases.c.case_id == case_id).values(assignee=assignee or None))
        audit.record(conn, actor, "case.assign", f"assigned to {assignee or 'nobody'}", firm=case["firm"],
                     target=f"case:{case_id}")


def comment(engine: Engine, actor: str, case_id: int, text: str) -> None:
    if not text.strip():
        raise CaseError("comment: empty")
    with engine.begin() as conn:
        case = _open_case(conn, case_id)
        conn.execute(case_comments.insert().values(case_id=case_id, author=actor, at=now_iso(), text=text))
        audit.record(conn, actor, "case.comment", text[:500], firm=case["firm"], target=f"case:{case_id}")


def link_account(engine: Engine, actor: str, case_id: int, account_id: str, reason: str) -> None:
    if not account_id.strip():
        raise CaseError("account_id: empty")
    with engine.begin() as conn:
        case = _open_case(conn, case_id)
        linked = conn.execute(select(case_accounts.c.account_id).where(
            case_accounts.c.case_id == case_id, case_accounts.c.account_id == account_id)).first()
        if linked is None:
            conn.execute(case_accounts.insert().values(case_id=case_id, account_id=account_id))
        audit.record(conn, actor, "case.link_account", reason or "linked", firm=case["firm"],
                     target=f"case:{case_id}", detail={"account_id": account_id})


def close(engine: Engine, actor: str, case_id: int, disposition: str, reason: str) -> None:
    if disposition not in DISPOSITIONS:
        raise CaseError(f"disposition {disposition!r}: expected one of {', '.join(DISPOSITIONS)}")
    if not reason.strip():
        raise CaseError("reason: say why the case is closed")
    with engine.begin() as conn:
        case = _open_case(conn, case_id)
        conn.execute(update(cases).where(cases.c.case_id == case_id).values(
            status="closed", disposition=disposition, closed_at=now_iso()))
        closed = _close_alerts(conn, case)
        audit.record(conn, actor, "case.close", reason, firm=case["firm"], target=f"case:{case_id}",
                     detail={"disposition": disposition, "alerts_closed": closed})


def _close_alerts(conn: Connection, case: dict[str, Any]) -> list[str]:
    """Close the case's alerts that no other open case still works (the API's `open_alerts` and
    the queue's status read it); their ids."""
    ids = set(conn.execute(select(case_alerts.c.alert_id).where(case_alerts.c.case_id == case["case_id"])).scalars())
    _hold_alerts(conn, case["firm"], ids)
    worked = conn.execute(select(case_alerts.c.alert_id).join(cases, cases.c.case_id == case_alerts.c.case_id).where(
        cases.c.firm == case["firm"], cases.c.status == "open", case_alerts.c.alert_id.in_(ids))).scalars()
    closing = sorted(ids - set(worked))
    conn.execute(update(alerts).where(alerts.c.firm == case["firm"], alerts.c.alert_id.in_(closing))
                 .values(status="closed"))
    return closing


def case_firm(engine: Engine, case_id: int) -> str | None:
    """The firm a case belongs to (what decides who may see it), None if there is no such case."""
    with engine.connect() as conn:
        firm = conn.execute(select(cases.c.firm).where(cases.c.case_id == case_id)).scalar()
    return None if firm is None else str(firm)


def get_case(engine: Engine, case_id: int) -> dict[str, Any]:
    """The case with its alerts (bodies), accounts and comments."""
    with engine.connect() as conn:
        row = conn.execute(select(cases).where(cases.c.case_id == case_id)).mappings().first()
        if row is None:
            raise CaseError(f"case {case_id}: no such case")
        case = dict(row)
        ids = list(conn.execute(select(case_alerts.c.alert_id).where(case_alerts.c.case_id == case_id)).scalars())
        case["alerts"] = load_alerts(conn, case["firm"], ids) if ids else []
        case["accounts"] = list(conn.execute(select(case_accounts.c.account_id)
                                             .where(case_accounts.c.case_id == case_id)
                                             .order_by(case_accounts.c.account_id)).scalars())
        case["comments"] = [dict(r) for r in conn.execute(
            select(case_comments).where(case_comments.c.case_id == case_id).order_by(case_comments.c.seq)).mappings()]
    return case


def list_cases(engine: Engine, status: str | None = None, firm: str | None = None) -> list[dict[str, Any]]:
    """Cases, newest first; of one firm when `firm` is given."""
    query = select(cases).order_by(cases.c.case_id.desc())
    if status:
        query = query.where(cases.c.status == status)
    if firm is not None:
        query = query.where(cases.c.firm == firm)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def labels(engine: Engine) -> Iterator[dict[str, Any]]:
    """Labels (`kabuguard evaluate --labels`) from closed cases: each decision of a linked account
    around the case's alerts is fraud (disposition fraud) or not (benign); unsure gives none."""
    with engine.connect() as conn:
        closed = conn.execute(select(cases).where(cases.c.status == "closed",
                                                  cases.c.disposition.in_(("fraud", "benign")))
                              .order_by(cases.c.case_id)).mappings().all()
        for case in closed:
            ids = list(conn.execute(select(case_alerts.c.alert_id).where(case_alerts.c.case_id == case["case_id"])).scalars())
            times = list(conn.execute(select(alerts.c.ts_us).where(alerts.c.firm == case["firm"],
                                                                   alerts.c.alert_id.in_(ids))).scalars())
            campaign = next((a["campaign_id"] for a in load_alerts(conn, case["firm"], ids)
                             if a["type"] == "campaign_alert"), None)
            accounts = list(conn.execute(select(case_accounts.c.account_id)
                                         .where(case_accounts.c.case_id == case["case_id"])).scalars())
            rows = conn.execute(select(decisions.c.body).where(
                decisions.c.firm == case["firm"], decisions.c.account_id.in_(accounts),
                decisions.c.ts_us >= min(times) - LABEL_MARGIN_US, decisions.c.ts_us <= max(times) + LABEL_MARGIN_US)
                .order_by(decisions.c.ts_us, decisions.c.seq)).scalars()
            for body in rows:
                decision = msgspec.json.decode(body)
                label = {"event_id": decision["event_id"], "fraud": case["disposition"] == "fraud",
                         "account_id": decision["account_id"], "type": decision["type"], "ts": decision["ts"],
                         "group": f"case-{case['case_id']}"}
                if campaign and case["disposition"] == "fraud":
                    label["campaign_id"] = campaign
                yield label
