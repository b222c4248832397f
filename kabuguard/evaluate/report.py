"""report.html: one self-contained page a fraud team lead can read without the JSON.

Built from metrics.json alone, so the page and the numbers can never disagree. Every string that
came from input (campaign ids, group names, file names, reasons) is escaped.
"""

from __future__ import annotations

import math

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from kabuguard.evaluate import charts
from kabuguard.evaluate.metrics import DECIDED_TYPES, DECISIONS, RULES

DECISION_COLORS = {"allow": "#b8c2cc", "challenge": "#f2b134", "review": "#ef7d22", "block": "#c8102e"}
_INTERVENTIONS = {k: v for k, v in DECISION_COLORS.items() if k != "allow"}
_CLASS_COLORS = {"fraud": "#c8102e", "benign": "#2f6db5"}
_TYPE_COLORS = {"order": "#c8102e", "login": "#2f6db5", "account_change": "#7a4fb0"}

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI','Hiragino Sans',sans-serif;margin:0;color:#1d2329;background:#f5f6f8}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:24px}
h2{margin:32px 0 8px;font-size:19px;border-bottom:1px solid #d5d9de;padding-bottom:4px}
.sub{color:#5b6670;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
.card{background:#fff;border:1px solid #d5d9de;border-radius:6px;padding:12px 14px}
.card .v{font-size:26px;font-weight:650}
.card .k{color:#5b6670;font-size:13px}
.warn{background:#fff7e6;border:1px solid #f2b134;border-radius:6px;padding:8px 14px;margin:12px 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0;font-size:14px}
th,td{border:1px solid #d5d9de;padding:4px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#eef0f3}
.chart{width:100%;height:auto;background:#fff;border:1px solid #d5d9de;border-radius:6px;margin:8px 0}
.chart text{font-size:12px;fill:#1d2329}
.chart .title{font-weight:600;font-size:13px}
.chart .tick{fill:#5b6670;font-size:11px}
.chart .grid{stroke:#e3e6ea}
p.note{color:#5b6670;font-size:13px}
"""


def percent(value: float | None) -> str:
    """One decimal, two significant digits below 1% so that a small but real false-positive rate
    (one in 100,000 reads 0.0010%) never reads 0."""
    if value is None:
        return "n/a"
    if 0 < value < 0.01:
        return f"{100 * value:.{max(2, 1 - math.floor(math.log10(100 * value)))}f}%"
    return f"{value:.1%}"


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if 0 < abs(value) < 0.001:  # 0.000067, not 6.7e-05: two significant digits
            return f"{value:.{1 - math.floor(math.log10(abs(value)))}f}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"  # 14,400, not 1.44e+04
    return str(value)


def duration(minutes: float) -> str:
    """Minutes up to two hours, hours beyond: 2,858 min reads better as 47.6 h."""
    return f"{minutes:g} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def zero_length_warning(count: int) -> str:
    """The warning about pump episodes labelled with `start` equal to `end`."""
    return (
        f"{count:,} pump episode(s) start and end at the same instant: only an alert at that very "
        "instant detects one, so check how they were labelled."
    )


def _yen(value: float | None) -> str:
    return "n/a" if value is None else f"¥{value:,.0f}"


def _when(iso: str) -> str:
    """'2025-04-07 09:53' from an RFC 3339 string: minutes are what a reader compares."""
    return iso[:16].replace("T", " ")


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table whose numeric cells align right; every cell escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            numeric = isinstance(cell, (int, float)) and not isinstance(cell, bool)
            cls = ' class="n"' if numeric else ""
            cells.append(f"<td{cls}>{escape(_num(cell))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _card(key: str, value: str, note: str = "") -> str:
    extra = f'<div class="k">{escape(note)}</div>' if note else ""
    return f'<div class="card"><div class="k">{escape(key)}</div><div class="v">{escape(value)}</div>{extra}</div>'


def _section(title: str, *parts: str) -> str:
    return f"<h2>{escape(title)}</h2>{''.join(parts)}"


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _headline(metrics: dict) -> str:
    det, value = metrics["detection"], metrics["value_stopped"]
    victims, camps = metrics["victims_stopped_before_first_order"], metrics["campaign_summary"]
    orders, logins = det["order"], det["login"]
    cards = [
        _card(
            "Fraudulent orders held (recall)",
            percent(orders["recall"]),
            f"{orders['tp']:,} of {orders['fraud']:,}",
        ),
        _card(
            "Held orders that were fraud (precision)",
            percent(orders["precision"]),
            f"{orders['fp']:,} benign orders held",
        ),
        _card(
            "Takeover logins challenged (recall)",
            percent(logins["recall"]),
            f"precision {percent(logins['precision'])}",
        ),
        _card(
            "Value stopped",
            percent(value["value_stopped"]),
            f"{_yen(value['stopped_notional_jpy'])} of {_yen(value['fraud_notional_jpy'])}"
            + (f"; {value['fraud_orders_without_notional']:,} fraud orders without a price left out"
               if value["fraud_orders_without_notional"] else ""),
        ),
    ]
    if victims is not None:
        cards.append(
            _card(
                "Hijacked accounts stopped before first fraudulent order",
                percent(victims["share"]),
                f"{victims['stopped']:,} of {victims['victims_with_fraud_order']:,}",
            )
        )
    if camps["campaigns"]:
        delay = camps["median_delay_min"]
        cards.append(
            _card(
                "Campaigns detected",
                f"{camps['detected']} / {camps['campaigns']}",
                "median delay " + ("n/a" if delay is None else duration(delay)),
            )
        )
    pumps = metrics["pump_episodes"]
    if pumps and pumps["manipulation"]["episodes"]:
        manip = pumps["manipulation"]
        cards.append(
            _card(
                "Pump episodes alerted while running",
                f"{manip['detected']} / {manip['episodes']}",
                f"{pumps['false_symbol_alerts']:,} symbol alerts outside any",
            )
        )
    cards.append(
        _card(
            "Alerts per day",
            _num(metrics["workload"]["alerts_per_day"] or 0),
            f"over {metrics['period']['days']} day(s)",
        )
    )
    return f'<div class="cards">{"".join(cards)}</div>'


def _warnings(metrics: dict) -> str:
    items = []
    rejected = metrics["inputs"]["rejected_lines"]
    if rejected:
        items.append(f"{rejected:,} input line(s) rejected (listed at the end of this page).")
    cov = metrics["coverage"]
    if cov["unlabelled_decisions"]:
        items.append(
            f"{cov['unlabelled_decisions']:,} decision(s) have no label and are left out of every fraud figure."
        )
    if cov["labels_without_decision"]:
        items.append(
            f"{cov['labels_without_decision']:,} label(s) ({cov['labels_without_decision_fraud']:,} fraudulent) "
            "have no decision: the run did not see these events, and they are left out of precision, recall "
            "and value."
        )
    if cov["replay_rejected_lines"]:
        items.append(
            f"The replay rejected {cov['replay_rejected_lines']:,} input line(s) (its rejected.jsonl): "
            "those events got no decision."
        )
    pumps = metrics["pump_episodes"]
    if pumps and pumps["zero_length_episodes"]:
        items.append(zero_length_warning(pumps["zero_length_episodes"]))
    items += [f"Not computed, {name}: {why}." for name, why in metrics["unavailable"].items()]
    if not items:
        return ""
    return '<div class="warn"><ul>' + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul></div>"


def _time_charts(metrics: dict) -> str:
    series = metrics["decisions_over_time"]
    labels = [_when(start)[5:] for start in series["starts"]]
    width = series["bucket_minutes"]
    return _section(
        "Decisions over time",
        _note(
            f"Each column is {width:,} minutes. The second chart leaves out 'allow' so interventions stay "
            "visible, and draws the labelled fraudulent events as a line: interventions should follow it."
        ),
        charts.stacked_columns("All decisions", labels, series["counts"], DECISION_COLORS),
        charts.stacked_columns(
            "Challenges, reviews and blocks",
            labels,
            series["counts"],
            _INTERVENTIONS,
            line=("fraudulent events", "#1d2329", series["fraud"]),
        ),
    )


def _score_charts(metrics: dict) -> str:
    parts = [
        _note(
            "Share of each class's events per score bin: good separation puts fraud right and benign left. "
            "Each table says what flagging on the score alone would catch and cost, against the policy's "
            "decisions above."
        )
    ]
    for kind, hist in metrics["score_histograms"].items():
        totals = {cls: sum(counts) for cls, counts in hist.items()}
        if not any(totals.values()):
            continue
        shares = {
            cls: [c / totals[cls] if totals[cls] else 0 for c in counts] for cls, counts in hist.items()
        }
        title = f"{kind}: score distribution ({totals['fraud']:,} fraud, {totals['benign']:,} benign)"
        parts.append(charts.step_lines(title, shares, _CLASS_COLORS))
        rows = (
            (
                f"score ≥ {r['threshold']:g}",
                percent(r["recall"]),
                percent(r["false_positive_rate"]),
                percent(r["precision"]),
            )
            for r in metrics["score_thresholds"][kind][::2]
        )
        parts.append(_table((f"{kind}: if flagged at", "recall", "false-positive rate", "precision"), rows))
    return _section("Score distributions, fraud vs benign", *parts)


def _detection_table(metrics: dict) -> str:
    rows = [
        (
            kind,
            d["rule"],
            d["events"],
            d["fraud"],
            d["tp"],
            d["fp"],
            d["fn"],
            percent(d["precision"]),
            percent(d["recall"]),
        )
        for kind, d in metrics["detection"].items()
    ]
    matrix = metrics["decisions"]
    return _section(
        "Detection by event type",
        _table(
            ("type", "flagged when", "events", "fraud", "caught", "false", "missed", "precision", "recall"),
            rows,
        ),
        _note("Decisions by type (all decisions, labelled or not):"),
        _table(
            ("type", *DECISIONS), ([kind, *(matrix[kind][d] for d in DECISIONS)] for kind in DECIDED_TYPES)
        ),
    )


def _fp_section(metrics: dict) -> str:
    groups, reasons = metrics["false_positive_rate_by_group"], metrics["false_positive_reasons"]
    parts = [
        _note(
            "Counted as flagged: "
            + "; ".join(f"{kind.replace('_', ' ')}s on {rule}" for kind, rule in RULES.items())
            + "."
        )
    ]
    if groups is not None:
        names = sorted(groups)
        kinds = [k for k in DECIDED_TYPES if any(k in groups[g] for g in names)]
        series = {k: [groups[g].get(k, {}).get("rate") for g in names] for k in kinds}
        rows = [
            (g, k, groups[g][k]["benign"], groups[g][k]["flagged"], percent(groups[g][k]["rate"]))
            for g in names
            for k in kinds
            if k in groups[g]
        ]
        colors = {k: _TYPE_COLORS[k] for k in kinds}
        parts.append(charts.horizontal_bars("False-positive rate per group", names, series, colors, percent))
        parts.append(_table(("group", "type", "benign events", "flagged", "rate"), rows))
    if reasons:
        parts.append(_note("Reason codes most often behind flagged benign events: where tuning pays first."))
        parts.append(
            _table(
                ("group", "top reasons"),
                ((g, ", ".join(f"{r} ({n:,})" for r, n in top)) for g, top in reasons.items()),
            )
        )
    return _section("False positives", *parts) if len(parts) > 1 else ""


# Row names for the order-value breakdown by account role (metrics.by_role).
_ROLES = {
    "victim": "hijacked accounts",
    "attacker": "attackers' own accounts",
    "attacker_before_first_hijack": "… before their campaign's first hijack",
    "attacker_after_first_hijack": "… after it",
    "attacker_without_campaign": "… labelled with no campaign",
}


def _style_section(metrics: dict) -> str:
    styles = metrics["attack_styles"]
    return _order_value_section("By attack style", "attack style", {s: styles[s] for s in sorted(styles or {})})


def _role_section(metrics: dict) -> str:
    roles = metrics["roles"] or {}
    return _order_value_section("By whose account", "account", {_ROLES[r]: roles[r] for r in _ROLES if r in roles})


def _order_value_section(title: str, what: str, groups: dict[str, dict]) -> str:
    """Fraudulent orders held and value stopped per group (attack style, account role)."""
    if not groups:
        return ""
    names = list(groups)
    rows = [
        (
            name,
            v["fraud_orders"],
            v["stopped_orders"],
            percent(v["order_recall"]),
            _yen(v["fraud_notional_jpy"]),
            _yen(v["stopped_notional_jpy"]),
            percent(v["value_stopped"]),
        )
        for name, v in groups.items()
    ]
    chart = charts.horizontal_bars(
        f"Value stopped {title.lower()}",
        names,
        {
            "value stopped": [groups[n]["value_stopped"] for n in names],
            "order recall": [groups[n]["order_recall"] for n in names],
        },
        {"value stopped": "#c8102e", "order recall": "#2f6db5"},
        percent,
        limit=1.0,
    )
    headers = (what, "fraud orders", "held", "order recall", "fraud value", "value held", "value stopped")
    return _section(title, chart, _table(headers, rows))


def _campaign_section(metrics: dict) -> str:
    rows = metrics["campaigns"]
    if not rows:
        return ""
    delay_chart = charts.horizontal_bars(
        "Detection delay per campaign",
        [r["campaign_id"] for r in rows],
        {"delay": [r["detection_delay_min"] for r in rows]},
        {"delay": "#ef7d22"},
        duration,
        missing="not detected",
    )
    headers = (
        "campaign",
        "attack style",
        "accounts",
        "victims",
        "fraud events",
        "fraud orders",
        "value stopped",
        "first fraud",
        "detected",
        "by",
        "delay (min)",
    )
    table_rows = (
        (
            r["campaign_id"],
            r["attack_style"],
            r["accounts"],
            r["victim_accounts"],
            r["fraud_events"],
            r["fraud_orders"],
            percent(r["value_stopped"]),
            _when(r["first_fraud_ts"] or "n/a"),
            _when(r["detected_ts"] or "never") + (" (after it ended)" if r["after_end"] else ""),
            r["detected_by"],
            r["detection_delay_min"],
        )
        for r in rows
    )
    return _section(
        "Campaigns",
        _note(
            "Delay runs from a campaign's first fraudulent event to the first alert naming one of its accounts "
            "or the first review/block on one of its events; one marked after it ended came after the campaign's "
            "last fraudulent event."
        ),
        _table(headers, table_rows),
        delay_chart,
    )


def _missed_section(metrics: dict) -> str:
    victims = metrics["victims_stopped_before_first_order"]
    if not victims or not victims["missed_accounts"]:
        return ""
    missed = victims["missed_accounts"]
    return _section(
        "Hijacked accounts not stopped in time",
        _note(
            f"Their first fraudulent order went through unheld; the first {len(missed)} are listed, "
            "worth replaying one by one to see which signal came too late."
        ),
        f"<p>{escape(', '.join(missed))}</p>",
    )


def _workload_section(metrics: dict) -> str:
    work, hits = metrics["workload"], metrics["alert_precision"]
    rows = [
        (
            kind.replace("_", " "),
            v["count"],
            v["per_day"],
            v["peak_day"],
            percent(hits.get(kind, {}).get("precision")),
        )
        for kind, v in work["by_type"].items()
    ]
    return _section(
        "Analyst workload",
        _note(
            f"Over {work['days']} calendar day(s). Review decisions are events held for an analyst. "
            "An alert is on fraud when its account had a fraudulent event, or its symbol was being manipulated."
        ),
        _table(("item", "total", "per day", "busiest day", "on fraud"), rows),
    )


def _pump_section(metrics: dict) -> str:
    pumps = metrics["pump_episodes"]
    if pumps is None:
        return ""
    manip, news = pumps["manipulation"], pumps["news"]
    rows = (
        (
            e["symbol"],
            e["kind"],
            e["campaign_id"],
            ", ".join(e["firms"]),
            _when(e["start"]),
            _when(e["end"]),
            e["alerted"],
            e["alerted_by"],
            e["delay_min"],
        )
        for e in pumps["episodes"]
    )
    return _section(
        "Pump episodes",
        _note(
            f"Manipulations alerted while running: {manip['detected']} of {manip['episodes']} "
            + ("(no detection)" if manip["median_delay_min"] is None
               else f"(median delay {duration(manip['median_delay_min'])})")
            + ". News bursts alerted (false alarms): "
            f"{news['alerted']} of {news['episodes']}. "
            + (f"The {pumps['label_lines']:,} episode lines make {len(pumps['episodes']):,} episodes: a campaign's "
               "overlapping windows on one symbol (one line per firm it reached) are one. "
               if pumps["label_lines"] != len(pumps["episodes"]) else "")
            + "Symbol alerts outside any manipulation: "
            f"{pumps['false_symbol_alerts']} on {pumps['false_symbol_days']} symbol-day(s), "
            f"{_num(pumps['false_symbol_alerts_per_day'])} per day"
            + (f", {_num(pumps['false_symbol_alerts_per_symbol_day'])} per symbol-day watched ({pumps['symbol_days']:,})."
               if pumps["symbol_days"] else ".")
        ),
        _table(("symbol", "kind", "campaign", "labelled at", "start", "end", "alerted", "by", "delay (min)"), rows),
    )


def _inputs_section(metrics: dict) -> str:
    files = metrics["inputs"]["files"]
    rows = [(role, f["path"], f["lines"], f["read"], f["rejected"]) for role, f in files.items()]
    cov = metrics["coverage"]
    parts = [
        _table(("input", "file", "lines", "read", "rejected"), rows),
        _note(
            f"{cov['labelled_decisions']:,} of {cov['decisions']:,} decisions have a label; "
            f"{cov['labels_without_decision']:,} of {cov['labels']:,} labels have no decision."
        ),
    ]
    rejections = metrics["inputs"]["rejections"]
    if rejections:
        parts.append(
            _table(("file", "line", "reason"), ((r["file"], r["line"], r["reason"]) for r in rejections))
        )
    return _section("Inputs", *parts)


def render(metrics: dict) -> str:
    """The whole page as one string."""
    period = metrics["period"]
    span = (
        f"{_when(period['first'])} to {_when(period['last'])} (UTC{period['first'][19:]}), {period['days']} day(s)"
        if period["first"]
        else "no decisions or alerts"
    )
    body = "".join(
        (
            "<h1>Kabuguard evaluation</h1>",
            f'<p class="sub">{escape(span)}</p>',
            _warnings(metrics),
            _headline(metrics),
            _campaign_section(metrics),
            _missed_section(metrics),
            _time_charts(metrics),
            _score_charts(metrics),
            _fp_section(metrics),
            _style_section(metrics),
            _role_section(metrics),
            _detection_table(metrics),
            _pump_section(metrics),
            _workload_section(metrics),
            _inputs_section(metrics),
        )
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Kabuguard evaluation</title><style>{_CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
