"""What the console's pages read: the alert queue, an account's timeline, a campaign's graph and
market, the dashboard. Reads only; the records are the service's (decisions, alerts, the
embedded event log) and the console's own (cases, containment)."""

from __future__ import annotations

import heapq
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any

import msgspec
from sqlalchemy import func, select, true
from sqlalchemy.engine import Engine

from kabuguard.console.cases import alert_accounts
from kabuguard.console.models import cases, containment_actions
from kabuguard.events.model import from_log
from kabuguard.netintel import netintel
from kabuguard.service.storage.models import alerts, decisions, events

_HOUR_US = 3_600_000_000
log = logging.getLogger("kabuguard.console")
SORTS = ("time", "score", "type", "firm")


def local_time(ts_us: int, utc_offset_hours: float) -> str:
    """The instant as the firm's analysts read it, in one zone labelled (events may carry any offset)."""
    zone = timezone(timedelta(hours=utc_offset_hours))
    return datetime.fromtimestamp(ts_us / 1e6, zone).strftime("%Y-%m-%d %H:%M:%S ") + f"UTC{utc_offset_hours:+g}"


@dataclass(frozen=True)
class AlertFilter:
    """The queue's filters and order, from the page's query string."""

    type: str = ""
    firm: str = ""
    reason: str = ""
    min_score: float = 0.0
    since: str = ""  # YYYY-MM-DD, event time, a day of the firm's time zone
    until: str = ""
    sort: str = "time"
    descending: bool = True
    scope: str | None = None  # the viewer's firm (None: every firm), beside any `firm` filter
    utc_offset_hours: float = 0.0  # the firm's time zone, in which a day starts
    status: str = ""  # open or closed (closed with the last open case that worked it); "" either


def _day_us(day: str, utc_offset_hours: float = 0.0) -> int:
    """When `day` starts, in a time zone `utc_offset_hours` ahead of UTC."""
    midnight = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp() * 1e6
    return int(midnight) - round(utc_offset_hours * _HOUR_US)


def is_day(text: str) -> bool:
    """A calendar day as the filters take it (YYYY-MM-DD)."""
    try:
        _day_us(text)
    except ValueError:
        return False
    return True


# The queue's orders the database can apply (score lives in the alert's body: ordered here).
_ORDER = {"time": alerts.c.ts_us, "type": alerts.c.type, "firm": alerts.c.firm, "seq": alerts.c.seq}


def alert_queue(engine: Engine, f: AlertFilter, after_seq: int = 0, upto_seq: int | None = None,
                limit: int = 300) -> list[dict[str, Any]]:
    """Alerts matching `f`, in its order, recorded after `after_seq` (polling) and up to `upto_seq`.

    Reasons and scores are in each alert's body, so those filters and the score order read the
    matching rows as they stream; every matching row is considered, however many there are."""
    query = select(alerts.c.seq, alerts.c.firm, alerts.c.status, alerts.c.body).where(alerts.c.seq > after_seq)
    if upto_seq is not None:
        query = query.where(alerts.c.seq <= upto_seq)
    if f.type:
        query = query.where(alerts.c.type == f.type)
    if f.status:
        query = query.where(alerts.c.status == f.status)
    for firm in (f.firm, f.scope):
        if firm:
            query = query.where(alerts.c.firm == firm)
    if f.since:
        query = query.where(alerts.c.ts_us >= _day_us(f.since, f.utc_offset_hours))
    if f.until:
        query = query.where(alerts.c.ts_us < _day_us(f.until, f.utc_offset_hours) + 24 * _HOUR_US)
    column = _ORDER.get(f.sort)
    if column is not None:
        query = query.order_by(*(c.desc() if f.descending else c.asc() for c in (column, alerts.c.seq)))
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=1000).execute(query)
        found = (a for a in (_queued(*row) for row in rows)
                 if (not f.reason or f.reason in a.get("reasons", ())) and _score(a) >= f.min_score)
        if column is not None:
            return list(islice(found, limit))
        best = heapq.nlargest if f.descending else heapq.nsmallest
        return best(limit, found, key=lambda a: (_score(a), a["seq"]))


def alert_feed(engine: Engine, f: AlertFilter, after_seq: int, limit: int = 300) -> tuple[list[dict[str, Any]], bool]:
    """The live queue's poll: alerts matching `f` recorded after `after_seq`, oldest first whatever
    the page's own order, and whether more wait. The page follows the newest seq it got, so a
    page of the best scores would leave the lower seqs behind it unseen for good."""
    found = alert_queue(engine, replace(f, sort="seq", descending=False), after_seq=after_seq, limit=limit + 1)
    return found[:limit], len(found) > limit


def newest_alert_seq(engine: Engine, firm: str | None) -> int:
    """The seq of the newest alert of `firm` (None: of every firm; 0: none): the live queue polls
    for those after it. Another firm's would tell how many alerts it has."""
    query = select(func.max(alerts.c.seq))
    if firm is not None:
        query = query.where(alerts.c.firm == firm)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def _queued(seq: int, firm: str, status: str, body: bytes) -> dict[str, Any]:
    alert = msgspec.json.decode(body)
    alert.update(seq=seq, firm=firm, status=status, subject=_subject(firm, alert))
    return alert


def _score(alert: dict[str, Any]) -> float:
    return float(alert.get("score") or 0.0)


def _subject(firm: str, alert: dict[str, Any]) -> str:
    if alert["type"] == "symbol_alert":
        return f"symbol {alert['symbol']}"
    if alert["type"] == "campaign_alert":
        return f"{len(alert_accounts(firm, alert))} accounts, {', '.join(alert.get('symbols') or []) or 'no symbol'}"
    return f"account {alert.get('account_id')}"


def alert(engine: Engine, firm: str, alert_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(alerts.c.body, alerts.c.ts_us).where(
            alerts.c.firm == firm, alerts.c.alert_id == alert_id)).first()
    if row is None:
        return None
    found = msgspec.json.decode(row[0])
    found.update(firm=firm, ts_us=row[1])
    return found


def _logged(engine: Engine, firm: str, column: Any, values: list[str], start_us: int, end_us: int) -> list[Any]:
    """Typed events of the embedded event log for some accounts or symbols, in a time window."""
    if not values:
        return []
    with engine.connect() as conn:
        bodies = conn.execute(select(events.c.body).where(
            events.c.firm == firm, column.in_(values), events.c.ts_us >= start_us, events.c.ts_us < end_us)
            .order_by(events.c.ts_us, events.c.seq)).scalars().all()
    found = []
    for body in bodies:
        if body:
            try:
                found.append(from_log(body))
            except msgspec.ValidationError as exc:  # logged by an earlier version that checked less
                log.warning("a logged event this version cannot read is left out", extra={"reason": str(exc)})
    return found


def timeline(engine: Engine, firm: str, account_id: str, utc_offset_hours: float = 0.0,
             limit: int = 500) -> dict[str, Any]:
    """The account's activity in time order (of the instants: events may carry any UTC offset),
    shown in the zone `utc_offset_hours`, each decided event with its decision, score and reasons,
    and the devices, IPs, ASNs and countries it used, each marked new at its first use."""
    with engine.connect() as conn:
        recorded = conn.execute(select(decisions.c.body, decisions.c.ts_us).where(
            decisions.c.firm == firm, decisions.c.account_id == account_id)
            .order_by(decisions.c.ts_us.desc(), decisions.c.seq.desc()).limit(limit)).all()
        contained = conn.execute(select(func.count()).select_from(containment_actions).where(
            containment_actions.c.firm == firm, containment_actions.c.account_id == account_id,
            containment_actions.c.dry_run == 0)).scalar_one()
    decided = {d["event_id"]: d for d in (msgspec.json.decode(body) | {"ts_us": ts_us} for body, ts_us in recorded)}
    logged = _logged(engine, firm, events.c.account_id, [account_id], 0, 2**62)
    net = netintel()
    seen: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in ("device", "ip", "asn", "country")}
    rows = []
    for event in logged:
        shown = local_time(event.ts_us, utc_offset_hours)
        row: dict[str, Any] = {"ts": shown, "ts_us": event.ts_us, "type": event.kind, "event_id": event.event_id,
                               "new": []}
        ip = getattr(event, "ip", None)
        if event.kind in ("login", "account_change", "order"):
            network = net.lookup(ip)
            for kind, value in (("device", event.device_id), ("ip", ip), ("asn", network.asn),
                                ("country", network.country)):
                if not value:
                    continue
                first = seen[kind].setdefault(value, {"value": value, "first": shown, "uses": 0})
                first["uses"] += 1
                if first["uses"] == 1 and any(seen[kind][v]["uses"] for v in seen[kind] if v != value):
                    row["new"].append(kind)
            row.update(ip=ip, device=event.device_id, asn=network.asn, country=network.country)
        row["what"] = _what(event)
        decision = decided.pop(event.event_id, None)
        if decision:
            row.update(decision=decision["decision"], score=decision["score"], reasons=decision["reasons"])
        rows.append(row)
    # Without an event log (production), the decisions alone.
    rows += [{"ts": local_time(d["ts_us"], utc_offset_hours), "ts_us": d["ts_us"], "type": d["type"],
              "event_id": d["event_id"], "new": [], "what": "", "decision": d["decision"], "score": d["score"],
              "reasons": d["reasons"]} for d in decided.values()]
    rows.sort(key=lambda r: r["ts_us"])
    return {"rows": rows[-limit:], "seen": {k: list(v.values()) for k, v in seen.items()},
            "contained": contained > 0}


def _what(event: Any) -> str:
    kind = event.kind
    if kind == "login":
        return f"{'success' if event.success else 'failed'} login, {event.channel}, mfa {event.mfa}"
    if kind == "account_change":
        return f"changed {event.field}"
    if kind == "order":
        price = f" @ {event.limit_price:g}" if event.limit_price else ""
        return f"{event.side} {event.qty:,} {event.symbol} {event.order_type}{price}"
    if kind == "execution":
        return f"filled {event.side} {event.qty:,} {event.symbol} @ {event.price:g}"
    if kind == "account":
        return f"account record, {len(event.holdings)} holdings, cash {event.cash:,.0f}"
    return kind


def campaign(engine: Engine, found: dict[str, Any], before_h: float = 24.0, after_h: float = 6.0) -> dict[str, Any]:
    """A campaign alert's graph (accounts, IPs, devices, symbols; cytoscape elements) from the
    members' activity around it, and each symbol's minute bars around the attack window."""
    firm, at = found["firm"], found["ts_us"]
    members = alert_accounts(firm, found)
    start, end = at - int(before_h * _HOUR_US), at + int(after_h * _HOUR_US)
    nodes: dict[str, dict[str, Any]] = {}
    edges: Counter[tuple[str, str]] = Counter()

    def node(kind: str, value: str) -> str:
        nid = f"{kind}:{value}"
        nodes.setdefault(nid, {"data": {"id": nid, "label": value, "kind": kind}})
        return nid

    for account in members:
        node("account", account)
    for event in _logged(engine, firm, events.c.account_id, members, start, end):
        if event.kind not in ("login", "order", "account_change"):
            continue
        a = node("account", event.account_id)
        for kind, value in (("ip", event.ip), ("device", event.device_id),
                            ("symbol", getattr(event, "symbol", None))):
            if value:
                edges[(a, node(kind, value))] += 1
    for ip in found.get("ips") or []:  # what the alert itself names, with or without an event log
        node("ip", ip)
    symbols = list(found.get("symbols") or [])
    for symbol in symbols:
        node("symbol", symbol)
    elements = list(nodes.values()) + [
        {"data": {"id": f"{s}->{t}", "source": s, "target": t, "weight": n}} for (s, t), n in edges.items()]
    bars: dict[str, dict[str, list[float]]] = {}
    for symbol in symbols:
        series: dict[str, list[float]] = defaultdict(list)
        for bar in _logged(engine, firm, events.c.symbol, [symbol], at - 3 * _HOUR_US, at + 3 * _HOUR_US):
            if bar.kind == "market_bar":
                series["t"].append(bar.ts_us / 1e6)
                series["close"].append(bar.close)
                series["volume"].append(bar.volume)
        bars[symbol] = dict(series)
    return {"elements": elements, "bars": bars, "alert_ts": at / 1e6, "members": members}


def dashboard(engine: Engine, firm: str | None = None) -> dict[str, Any]:
    """Decisions per hour by decision, alerts by reason, value held (review) and blocked, open
    cases; of one firm, or of every firm when `firm` is None."""
    def of(table: Any) -> Any:
        return table.c.firm == firm if firm is not None else true()

    with engine.connect() as conn:
        per_hour = conn.execute(select((decisions.c.ts_us // _HOUR_US).label("hour"), decisions.c.decision,
                                       func.count()).where(of(decisions)).group_by("hour", decisions.c.decision)).all()
        order_bodies = conn.execute(select(decisions.c.decision, decisions.c.body).where(
            of(decisions), decisions.c.type == "order", decisions.c.decision.in_(("review", "block")))).all()
        alert_bodies = conn.execute(select(alerts.c.body).where(of(alerts))).scalars().all()
        open_cases = conn.execute(select(func.count()).select_from(cases).where(
            of(cases), cases.c.status == "open")).scalar_one()
    hours = sorted({int(h) for h, _, _ in per_hour})
    index = {h: i for i, h in enumerate(hours)}
    series = {d: [0] * len(hours) for d in ("allow", "challenge", "review", "block")}
    for hour, decision, n in per_hour:
        series[decision][index[int(hour)]] += n
    value = {"review": 0.0, "block": 0.0}
    for decision, body in order_bodies:
        value[decision] += msgspec.json.decode(body).get("notional_jpy") or 0.0
    reasons: Counter[str] = Counter()
    for body in alert_bodies:
        reasons.update(msgspec.json.decode(body).get("reasons") or ())
    return {"hours": [h * 3600 for h in hours], "decisions": series, "value_held_jpy": value["review"],
            "value_blocked_jpy": value["block"], "alerts_by_reason": reasons.most_common(12),
            "open_cases": open_cases, "alerts": len(alert_bodies)}
