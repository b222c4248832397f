"""Event-level metrics: how well decisions separate fraud from benign, and what they cost.

Fraud figures take `pairs`, the decisions that have a label, in decision-file order (the total
order of the replay); workload and chart series take every decision. All return plain JSON-ready
values.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kabuguard.evaluate.inputs import DAY_US, MINUTE_US, Alert, Decision, Label, SymbolAlert, alert_type

Pair = tuple[Decision, Label]
# Each label's decision, by the label's `id()` (`Run.label_of` paired them): built once per run.
Decided = dict[int, Decision]
# An event's account, from its decision when it has one, else from its label (`Run.account_of`).
AccountOf = Callable[[Decision | None, Label], str | None]

DECISIONS = ("allow", "challenge", "review", "block")
DECIDED_TYPES = ("login", "account_change", "order")
_CHALLENGE_OR_STRONGER = frozenset({"challenge", "review", "block"})
_REVIEW_OR_BLOCK = frozenset({"review", "block"})
# An order is only stopped when held or refused; a login or change is already
# interrupted by a step-up challenge, which a phisher without the second factor cannot pass.
FLAGGED: dict[str, frozenset[str]] = {
    "order": _REVIEW_OR_BLOCK,
    "login": _CHALLENGE_OR_STRONGER,
    "account_change": _CHALLENGE_OR_STRONGER,
}
RULES = {
    "order": "review or block",
    "login": "challenge or stronger",
    "account_change": "challenge or stronger",
}
NO_GROUP = "(no group)"
SCORE_BINS = 20
# Bucket widths tried for the decisions-over-time chart, smallest first.
_BUCKET_MINUTES = (5, 15, 60, 180, 360, 1440, 10080)
_MAX_BUCKETS = 72


def flagged(decision: Decision) -> bool:
    return decision.decision in FLAGGED[decision.type]


def stopped(decision: Decision) -> bool:
    """Held or refused, whatever the event type: the strictest sense of 'stopped'."""
    return decision.decision in _REVIEW_OR_BLOCK


def ratio(numerator: float, denominator: float) -> float | None:
    """A share, or None when there is nothing to divide by.

    Six decimals: a false-positive rate of one order in 100,000 must not round to zero.
    """
    return round(numerator / denominator, 6) if denominator else None


@dataclass(frozen=True, slots=True)
class Calendar:
    """Local calendar days of the run, in the UTC offset the brokerage writes its timestamps in."""

    offset_us: int
    first_us: int
    last_us: int

    def day(self, ts_us: int) -> int:
        return (ts_us + self.offset_us) // DAY_US

    @property
    def days(self) -> int:
        return self.day(self.last_us) - self.day(self.first_us) + 1

    def iso(self, ts_us: int) -> str:
        tz = timezone(timedelta(microseconds=self.offset_us))
        return datetime.fromtimestamp(ts_us / 1_000_000, tz).isoformat(timespec="seconds")


def detection(pairs: Iterable[Pair]) -> dict[str, dict]:
    """Confusion counts, precision and recall per decided type, each under its own FLAGGED rule."""
    counts: Counter[tuple[str, bool, bool]] = Counter((d.type, label.fraud, flagged(d)) for d, label in pairs)
    out: dict[str, dict] = {}
    for kind in DECIDED_TYPES:
        tp, fp = counts[kind, True, True], counts[kind, False, True]
        fn, tn = counts[kind, True, False], counts[kind, False, False]
        out[kind] = {
            "rule": RULES[kind],
            "events": tp + fp + fn + tn,
            "fraud": tp + fn,
            "flagged": tp + fp,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
        }
    return out


def order_value(pairs: Iterable[Pair]) -> dict:
    """Fraudulent orders held or refused, by count and by yen notional."""
    orders = [d for d, label in pairs if label.fraud and d.type == "order"]
    held = [d for d in orders if stopped(d)]
    total = sum(d.notional_jpy or 0.0 for d in orders)
    saved = sum(d.notional_jpy or 0.0 for d in held)
    return {
        "fraud_orders": len(orders),
        "stopped_orders": len(held),
        "order_recall": ratio(len(held), len(orders)),
        "fraud_notional_jpy": round(total),
        "stopped_notional_jpy": round(saved),
        "value_stopped": ratio(saved, total),
        "fraud_orders_without_notional": sum(d.notional_jpy is None for d in orders),
    }


def by_attack_style(pairs: list[Pair]) -> dict[str, dict]:
    """order_value per attack style, so a weak spot against one playbook is not averaged away."""
    styles: dict[str, list[Pair]] = defaultdict(list)
    for d, label in pairs:
        if label.fraud and label.attack_style:
            styles[label.attack_style].append((d, label))
    return {style: order_value(group) for style, group in sorted(styles.items())}


def by_role(pairs: list[Pair], labels: Iterable[Label], decided: Decided) -> dict[str, dict]:
    """order_value for hijacked accounts (`victim`) and for the attackers' own accounts
    (`attacker`), the latter split at its campaign's first event in a hijacked account.

    Before that event an attacker's orders (the position built to sell into the pump) come before
    anything of the campaign a decision without look-ahead could have seen at this firm: only the
    account's own trading can give them away. The first hijacked event is the earliest victim
    label of the campaign, decided or not (at its decision's time, else its label's), as the
    campaign table dates campaigns. Attackers' orders labelled with no campaign have no such
    event: they are `attacker_without_campaign`, neither before nor after it.
    """
    first_hijack: dict[str, int] = {}
    for label in labels:
        if label.fraud and label.role == "victim" and label.campaign_id:
            d = decided.get(id(label))
            ts_us = label.ts_us if d is None else d.ts_us
            if ts_us is not None:
                first_hijack[label.campaign_id] = min(ts_us, first_hijack.get(label.campaign_id, ts_us))
    groups: dict[str, list[Pair]] = defaultdict(list)
    for d, label in pairs:
        if not label.fraud or label.role is None:
            continue
        groups[label.role].append((d, label))
        if label.role != "attacker":
            continue
        if label.campaign_id is None:
            groups["attacker_without_campaign"].append((d, label))
            continue
        start = first_hijack.get(label.campaign_id)
        early = start is None or d.ts_us < start
        groups["attacker_before_first_hijack" if early else "attacker_after_first_hijack"].append((d, label))
    return {role: order_value(group) for role, group in sorted(groups.items())}


def victims_stopped(decided: Decided, labels: Iterable[Label], account_of: AccountOf, limit: int = 20) -> dict:
    """Hijacked accounts stopped before their first fraudulent order could go through.

    Only the events labelled `victim` count: an attacker's own orders on an account its campaign
    also attacked are not its owner's loss. Stopped means the first such order was held or
    refused, or an earlier one of the account's fraudulent events (its takeover login, a changed
    e-mail) was blocked. A first order the run did not decide was not stopped; it is counted apart,
    and so is an account with an undecided order of unknown time (no decision, no `ts` in its
    label), which may have been the first.
    """
    events: dict[str, list[tuple[int, Label, Decision | None]]] = defaultdict(list)
    untimed: set[str] = set()  # accounts with an undecided order of unknown time
    for label in labels:
        if not label.fraud or label.role != "victim":
            continue
        d = decided.get(id(label))
        account = account_of(d, label)
        ts_us = d.ts_us if d is not None else label.ts_us
        if account is None:
            continue
        if ts_us is not None:
            events[account].append((ts_us, label, d))
        elif label.type == "order":
            untimed.add(account)
    accounts = events.keys() | untimed
    saved, missed, no_order, undecided = 0, [], 0, 0
    for account in sorted(accounts):
        if account in untimed:
            undecided += 1
            missed.append(account)
            continue
        history = sorted(events[account], key=lambda e: e[0])
        first = next((i for i, (_, label, d) in enumerate(history) if (d.type if d else label.type) == "order"), None)
        if first is None:
            no_order += 1
            continue
        d = history[first][2]
        if d is not None and (stopped(d) or any(e[2] is not None and e[2].decision == "block" for e in history[:first])):
            saved += 1
            continue
        undecided += d is None
        missed.append(account)
    with_order = len(accounts) - no_order
    return {
        "victims_with_fraud_order": with_order,
        "stopped": saved,
        "share": ratio(saved, with_order),
        "victims_without_fraud_order": no_order,
        "first_order_undecided": undecided,
        "missed_accounts": missed[:limit],
    }


def false_positives_by_group(pairs: Iterable[Pair]) -> dict[str, dict[str, dict]]:
    """Share of each benign confounder group's events flagged, per type; NO_GROUP is the baseline."""
    total: Counter[tuple[str, str]] = Counter()
    hit: Counter[tuple[str, str]] = Counter()
    for d, label in pairs:
        if label.fraud:
            continue
        key = (label.group or NO_GROUP, d.type)
        total[key] += 1
        hit[key] += flagged(d)
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for (group, kind), n in sorted(total.items()):
        out[group][kind] = {"benign": n, "flagged": hit[group, kind], "rate": ratio(hit[group, kind], n)}
    return dict(out)


def false_positive_reasons(pairs: Iterable[Pair], top: int = 5) -> dict[str, list[tuple[str, int]]]:
    """The reason codes most often behind flagged benign events, per group: what to tune first."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for d, label in pairs:
        if not label.fraud and flagged(d):
            counts[label.group or NO_GROUP].update(d.reasons or ())
    return {group: c.most_common(top) for group, c in sorted(counts.items())}


def review_hits(pairs: Iterable[Pair]) -> dict:
    """Of the labelled events held for an analyst, how many were fraud: the review queue's hit rate."""
    reviewed = [label.fraud for d, label in pairs if d.decision == "review"]
    return {
        "alerts": len(reviewed),
        "on_fraud": sum(reviewed),
        "precision": ratio(sum(reviewed), len(reviewed)),
    }


def decision_matrix(decisions: Iterable[Decision]) -> dict[str, dict[str, int]]:
    """Counts by type and decision, over every decision, labelled or not."""
    counts: Counter[tuple[str, str]] = Counter((d.type, d.decision) for d in decisions)
    return {kind: {dec: counts[kind, dec] for dec in DECISIONS} for kind in DECIDED_TYPES}


def score_histograms(pairs: Iterable[Pair]) -> dict[str, dict[str, list[int]]]:
    """Score counts in SCORE_BINS equal bins over [0, 1], fraud and benign apart, per type."""
    out = {kind: {"fraud": [0] * SCORE_BINS, "benign": [0] * SCORE_BINS} for kind in DECIDED_TYPES}
    for d, label in pairs:
        index = min(int(d.score * SCORE_BINS), SCORE_BINS - 1)  # a score of 1 joins the top bin
        out[d.type]["fraud" if label.fraud else "benign"][index] += 1
    return out


def score_thresholds(histograms: dict[str, dict[str, list[int]]]) -> dict[str, list[dict]]:
    """What flagging every event scoring at least t would catch and cost, per type and threshold t.

    Read off the histograms, so thresholds fall on bin edges. It shows a policy owner how far the
    current decisions sit from what the scores alone could do, before touching the policy file.
    """
    out: dict[str, list[dict]] = {}
    for kind, hist in histograms.items():
        fraud, benign = sum(hist["fraud"]), sum(hist["benign"])
        rows = []
        for edge in range(SCORE_BINS // 2, SCORE_BINS):
            caught, false = sum(hist["fraud"][edge:]), sum(hist["benign"][edge:])
            rows.append(
                {
                    "threshold": edge / SCORE_BINS,
                    "recall": ratio(caught, fraud),
                    "false_positive_rate": ratio(false, benign),
                    "precision": ratio(caught, caught + false),
                }
            )
        out[kind] = rows
    return out


def decisions_over_time(decisions: list[Decision], label_of: Callable[[Decision], Label | None],
                        cal: Calendar) -> dict:
    """Decisions, and labelled fraudulent ones, per time bucket of a width that keeps under _MAX_BUCKETS.

    Past the widest of _BUCKET_MINUTES (a run over years, a mistyped year) the width grows with
    the span: at a week a column, a mistyped year made metrics.json 32 MB."""
    span_us = cal.last_us - cal.first_us
    width = next((m for m in _BUCKET_MINUTES if span_us / MINUTE_US / m < _MAX_BUCKETS), None)
    if width is None:
        # Whole days from the first day's midnight (counted from the epoch's, the chart would
        # start in 1970), which is up to a day before the first instant.
        days = (span_us + DAY_US) // (_MAX_BUCKETS * DAY_US) + 1
        width, align_us = days * DAY_US // MINUTE_US, DAY_US
    else:
        align_us = width * MINUTE_US
    width_us = width * MINUTE_US
    origin = (cal.first_us + cal.offset_us) // align_us * align_us - cal.offset_us
    n = (cal.last_us - origin) // width_us + 1
    series = {dec: [0] * n for dec in DECISIONS}
    fraud = [0] * n
    for d in decisions:
        bucket = (d.ts_us - origin) // width_us
        series[d.decision][bucket] += 1
        label = label_of(d)
        fraud[bucket] += label is not None and label.fraud
    return {
        "bucket_minutes": width,
        "starts": [cal.iso(origin + i * width_us) for i in range(n)],
        "counts": series,
        "fraud": fraud,
    }


def workload(alerts: list[Alert], decisions: list[Decision], cal: Calendar) -> dict:
    """What lands on an analyst's desk per day: alerts by type, and orders held for review. A
    market episode's end notice closes an alert already counted, and is counted apart."""
    per_type: dict[str, Counter[int]] = defaultdict(Counter)
    notices = 0
    for alert in alerts:
        if isinstance(alert, SymbolAlert) and alert.ended:  # the close of an episode already alerted
            notices += 1
            continue
        per_type[alert_type(alert)][cal.day(alert.ts_us)] += 1
    per_type["review_decisions"] = Counter(cal.day(d.ts_us) for d in decisions if d.decision == "review")
    out: dict = {"days": cal.days, "by_type": {}}
    for kind, days in sorted(per_type.items()):
        count = sum(days.values())
        out["by_type"][kind] = {
            "count": count,
            "per_day": ratio(count, cal.days),
            "peak_day": max(days.values(), default=0),
        }
    out["alerts_per_day"] = ratio(len(alerts) - notices, cal.days)
    out["episode_end_notices"] = notices
    return out
