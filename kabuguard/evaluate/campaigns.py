"""Campaign-level metrics: how soon each attack was noticed, and whether pumps were caught.

A fraud team loses money by the minute during a takeover wave, so the question per campaign is
not 'was one event flagged' but 'how long after it began did someone have a lead'.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from statistics import median

import msgspec

from kabuguard.evaluate.inputs import (
    MINUTE_US,
    AccountAlert,
    Alert,
    CampaignAlert,
    Decision,
    Label,
    PumpEpisode,
    SymbolAlert,
    alert_type,
)
from kabuguard.evaluate.metrics import AccountOf, Calendar, Decided, order_value, ratio, stopped

# (instant, what raised it) sorted by instant, per account or per symbol.
Leads = dict[str, list[tuple[int, str]]]
_first = itemgetter(0)


@dataclass(slots=True)
class _Campaign:
    labels: list[Label] = field(default_factory=list)
    decided: list[tuple[Decision, Label]] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)
    victims: set[str] = field(default_factory=set)
    start_us: int | None = None
    end_us: int | None = None


def _describe(alert: Alert) -> str:
    return f"{alert_type(alert)} {alert.alert_id or alert.event_id or ''}".strip()


def _index(pairs: list[tuple[str, tuple[int, str]]]) -> Leads:
    leads: Leads = defaultdict(list)
    for key, lead in pairs:
        leads[key].append(lead)
    for items in leads.values():
        items.sort(key=_first)
    return leads


def account_leads(alerts: list[Alert]) -> Leads:
    """Alerts that name an account: account alerts, and every account of a campaign alert."""
    named: list[tuple[str, tuple[int, str]]] = []
    for alert in alerts:
        if isinstance(alert, AccountAlert):
            named.append((alert.account, (alert.ts_us, _describe(alert))))
        elif isinstance(alert, CampaignAlert):
            named.extend((a, (alert.ts_us, _describe(alert))) for a in alert.accounts)
    return _index(named)


def symbol_leads(alerts: list[Alert]) -> Leads:
    """Alerts that name a symbol: symbol alerts (not episodes' end notices), and every symbol of a
    campaign alert."""
    named: list[tuple[str, tuple[int, str]]] = []
    for alert in alerts:
        if isinstance(alert, SymbolAlert):
            if not alert.ended:  # an episode's end notice detects nothing
                named.append((alert.symbol, (alert.ts_us, _describe(alert))))
        elif isinstance(alert, CampaignAlert):
            named.extend((s, (alert.ts_us, _describe(alert))) for s in alert.symbols)
    return _index(named)


def _first_at_or_after(items: list[tuple[int, str]], start_us: int) -> tuple[int, str] | None:
    i = bisect_left(items, start_us, key=_first)
    return items[i] if i < len(items) else None


def _group(labels: dict[str, Label], decisions: Decided, account_of: AccountOf) -> dict[str, _Campaign]:
    """Fraudulent events per campaign; an undecided one still counts, at its labelled time."""
    campaigns: dict[str, _Campaign] = defaultdict(_Campaign)
    for label in labels.values():
        if not (label.fraud and label.campaign_id):
            continue
        c = campaigns[label.campaign_id]
        c.labels.append(label)
        decision = decisions.get(id(label))
        if decision is not None:
            c.decided.append((decision, label))
        ts_us = decision.ts_us if decision else label.ts_us
        if ts_us is not None and (c.start_us is None or ts_us < c.start_us):
            c.start_us = ts_us
        if ts_us is not None and (c.end_us is None or ts_us > c.end_us):
            c.end_us = ts_us
        account = account_of(decision, label)
        if account:
            c.accounts.add(account)
            if label.role == "victim":
                c.victims.add(account)
    return campaigns


def campaigns(
    labels: dict[str, Label], decisions: Decided, account_of: AccountOf, leads: Leads, cal: Calendar
) -> list[dict]:
    """One row per labelled campaign with its detection delay.

    Detected = the first alert at or after the campaign's first fraudulent event that names one
    of its accounts, or the first review/block decision on one of its events, whichever is earlier.
    One that came only after the campaign's last fraudulent event (`after_end`) helped an
    investigation, not the customers: the summary counts those apart.
    """
    rows = []
    for campaign_id, c in sorted(_group(labels, decisions, account_of).items()):
        candidates = [(d.ts_us, f"{d.decision} on {d.event_id}") for d, _ in c.decided if stopped(d)]
        if c.start_us is not None:
            for account in c.accounts:
                lead = _first_at_or_after(leads.get(account, []), c.start_us)
                if lead is not None:
                    candidates.append(lead)
        first = min(candidates, default=None)
        styles = Counter(label.attack_style for label in c.labels if label.attack_style)
        value = order_value(c.decided)
        rows.append(
            {
                "campaign_id": campaign_id,
                "attack_style": styles.most_common(1)[0][0] if styles else None,
                "accounts": len(c.accounts),
                "victim_accounts": len(c.victims),
                "fraud_events": len(c.labels),
                "decided_events": len(c.decided),
                "fraud_orders": value["fraud_orders"],
                "value_stopped": value["value_stopped"],
                "first_fraud_ts": cal.iso(c.start_us) if c.start_us is not None else None,
                "detected_ts": cal.iso(first[0]) if first else None,
                "detected_by": first[1] if first else None,
                "detection_delay_min": _minutes(first[0] - c.start_us)
                if first and c.start_us is not None
                else None,
                "after_end": first is not None and c.end_us is not None and first[0] > c.end_us,
            }
        )
    return rows


def campaign_summary(rows: list[dict]) -> dict:
    delays: list[float] = [r["detection_delay_min"] for r in rows if r["detection_delay_min"] is not None]
    return {
        "campaigns": len(rows),
        "detected": len(delays),
        "share": ratio(len(delays), len(rows)),
        "median_delay_min": _median(delays),
        "max_delay_min": max(delays, default=None),
        "detected_after_end": sum(1 for r in rows if r["after_end"]),
    }


def merge_episodes(episodes: list[PumpEpisode]) -> list[tuple[PumpEpisode, list[str]]]:
    """The market episodes to score, each with the firms whose label lines it joins.

    `simulate --firms N` labels a pump once per firm it reached, each window drawn from that firm's
    own trades: scored apart, one pump would count as several, the later ones late or missed. So
    one campaign's windows on one symbol that overlap or touch are one episode, from the earliest
    start to the latest end. News bursts are kept as labelled."""
    merged: list[tuple[PumpEpisode, set[str]]] = []
    last: dict[tuple[str, str], int] = {}  # (symbol, campaign) -> its latest episode in `merged`
    for ep in sorted(episodes, key=lambda e: (e.start_us, e.end_us, e.symbol)):
        firms = {ep.firm} if ep.firm else set()
        i = last.get((ep.symbol, ep.campaign_id)) if ep.campaign_id is not None else None
        if i is not None and ep.start_us <= merged[i][0].end_us:
            current, seen = merged[i]
            if ep.end_us > current.end_us:
                current = msgspec.structs.replace(current, end=ep.end, end_us=ep.end_us)
            merged[i] = (current, seen | firms)
            continue
        if ep.campaign_id is not None:
            last[ep.symbol, ep.campaign_id] = len(merged)
        merged.append((ep, firms))
    return [(ep, sorted(firms)) for ep, firms in merged]


def pump_episodes(episodes: list[PumpEpisode], alerts: list[Alert], cal: Calendar,
                  symbol_days: int | None = None) -> dict:
    """Was each labelled episode alerted on while it ran, and how many symbol alerts were false.

    Episodes are scored as `merge_episodes` joins them, each window with both ends included (a
    zero-length one, start equal to end, is counted apart: it can only be alerted at that instant).
    A symbol alert is false unless it falls inside a manipulation episode on its symbol; alerts
    during a news burst count as false, since the price move there was genuine. A notice that
    an episode ended is no new alert. Per symbol-day when the symbol-days watched are known.
    """
    leads = symbol_leads(alerts)
    merged = merge_episodes(episodes)
    rows = []
    detected: list[float] = []  # delays of the manipulations alerted on
    for ep, firms in sorted(merged, key=lambda m: (m[0].start_us, m[0].symbol)):
        lead = _first_at_or_after(leads.get(ep.symbol, []), ep.start_us)
        hit = lead if lead is not None and lead[0] <= ep.end_us else None
        delay = _minutes(hit[0] - ep.start_us) if hit else None
        if delay is not None and ep.manipulated:
            detected.append(delay)
        rows.append(
            {
                "symbol": ep.symbol,
                "kind": "manipulation" if ep.manipulated else "news",
                "campaign_id": ep.campaign_id,
                "firms": firms,
                "start": ep.start.isoformat(),
                "end": ep.end.isoformat(),
                "alerted": hit is not None,
                "alerted_by": hit[1] if hit else None,
                "delay_min": delay,
            }
        )
    pumps = [r for r in rows if r["kind"] == "manipulation"]
    news = [r for r in rows if r["kind"] == "news"]
    false_alerts = _false_symbol_alerts(episodes, alerts)
    false_days = {(a.symbol, cal.day(a.ts_us)) for a in false_alerts}
    return {
        "episodes": rows,
        "label_lines": len(episodes),
        "zero_length_episodes": sum(ep.start_us == ep.end_us for ep, _ in merged),
        "manipulation": {
            "episodes": len(pumps),
            "detected": len(detected),
            "share": ratio(len(detected), len(pumps)),
            "median_delay_min": _median(detected),
        },
        "news": {"episodes": len(news), "alerted": sum(r["alerted"] for r in news)},
        "false_symbol_alerts": len(false_alerts),
        "false_symbol_days": len(false_days),
        "false_symbol_alerts_per_day": ratio(len(false_alerts), cal.days),
        "false_symbol_days_per_day": ratio(len(false_days), cal.days),
        "symbol_days": symbol_days,
        "false_symbol_alerts_per_symbol_day": ratio(len(false_alerts), symbol_days) if symbol_days else None,
    }


def alert_precision(alerts: list[Alert], fraud_accounts: set[str], episodes: list[PumpEpisode]) -> dict:
    """Per alert type, how many alerts pointed at real fraud: the analyst's hit rate.

    An account alert hits when its account had a fraudulent event; a campaign alert when one of
    its accounts did or one of its symbols was being manipulated at the time; a symbol alert when
    it fell inside a manipulation episode on its symbol (left out when no episode is labelled).
    """
    false_ids = {id(a) for a in _false_symbol_alerts(episodes, alerts)}
    windows = _manipulation_windows(episodes)
    total: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for alert in alerts:
        if isinstance(alert, AccountAlert):
            hit = alert.account in fraud_accounts
        elif isinstance(alert, CampaignAlert):
            hit = any(a in fraud_accounts for a in alert.accounts) or any(
                _inside(alert.ts_us, windows.get(s, ())) for s in alert.symbols
            )
        elif episodes and not alert.ended:  # a symbol alert; an episode's end notice is no alert
            hit = id(alert) not in false_ids
        else:
            continue
        kind = alert_type(alert)
        total[kind] += 1
        hits[kind] += hit
    return {
        kind: {"alerts": n, "on_fraud": hits[kind], "precision": ratio(hits[kind], n)}
        for kind, n in sorted(total.items())
    }


def _manipulation_windows(episodes: list[PumpEpisode]) -> dict[str, list[tuple[int, int]]]:
    windows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for ep in episodes:
        if ep.manipulated:
            windows[ep.symbol].append((ep.start_us, ep.end_us))
    return windows


def _inside(ts_us: int, windows: Iterable[tuple[int, int]]) -> bool:
    return any(start <= ts_us <= end for start, end in windows)


def _false_symbol_alerts(episodes: list[PumpEpisode], alerts: list[Alert]) -> list[SymbolAlert]:
    windows = _manipulation_windows(episodes)
    return [
        a for a in alerts
        if isinstance(a, SymbolAlert) and not a.ended and not _inside(a.ts_us, windows.get(a.symbol, ()))
    ]


def _median(minutes: list[float]) -> float | None:
    return round(median(minutes), 1) if minutes else None


def _minutes(delta_us: int) -> float:
    return round(delta_us / MINUTE_US, 1)
