"""Evaluate a run against labels: compute metrics.json and report.html, and summarise them.

What the labels cannot support (no `role`, no `group`, no pump episodes...) is named under
`unavailable` instead of being guessed, so that a half-labelled file still gives honest figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import msgspec

from kabuguard.evaluate import campaigns as camp
from kabuguard.evaluate import metrics as m
from kabuguard.evaluate.inputs import Run, load, utc_offset_us
from kabuguard.evaluate.report import duration, percent, render, zero_length_warning

REJECTED = "evaluate-rejected.jsonl"
_EXAMPLES = 5
# Rejected lines listed in metrics.json, the report and on stderr (all are in REJECTED).
REJECTIONS_SHOWN = 20
NO_BARS = "no `market_bar` was read from --bars, so no symbol-day was watched"


def evaluate_run(
    labels_path: Path | str, run_dir: Path | str, out_dir: Path | str, *, progress: bool = False,
    bars: Iterable[Path | str] = (),
) -> dict:
    """Read a run and its labels; write metrics.json, report.html and REJECTED to `out_dir`.

    `out_dir` may be the run folder itself: REJECTED is named apart from the replay's rejected.jsonl.
    `bars`, the market bars the run replayed, give false symbol alerts per symbol-day watched.
    """
    run = load(Path(labels_path), Path(run_dir), progress=progress, bars=[Path(b) for b in bars])
    metrics = compute(run)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics["outputs"] = {
        "metrics": str(out / "metrics.json"),
        "report": str(out / "report.html"),
        "rejected": str(out / REJECTED),
    }
    (out / REJECTED).write_bytes(b"".join(msgspec.json.encode(r.to_dict()) + b"\n" for r in run.rejections))
    (out / "metrics.json").write_bytes(msgspec.json.format(msgspec.json.encode(metrics), indent=2) + b"\n")
    (out / "report.html").write_text(render(metrics), encoding="utf-8")
    return metrics


def _calendar(run: Run) -> m.Calendar:
    instants = [d.ts_us for d in run.decisions] + [a.ts_us for a in run.alerts]
    first = run.decisions[0].ts if run.decisions else run.alerts[0].ts if run.alerts else None
    offset = utc_offset_us(first) if first else 0
    return m.Calendar(offset, min(instants, default=0), max(instants, default=0))


def _period(run: Run, cal: m.Calendar) -> dict:
    if not (run.decisions or run.alerts):
        return {"first": None, "last": None, "days": 0}
    return {"first": cal.iso(cal.first_us), "last": cal.iso(cal.last_us), "days": cal.days}


def _fraud_accounts(run: Run, pairs: list[m.Pair]) -> set[str]:
    """Accounts with a fraudulent event, as decided or as labelled."""
    decided = {run.account_of(d, label) for d, label in pairs if label.fraud}
    labelled = {run.account_of(None, label) for label in run.labels.values() if label.fraud}
    return {a for a in decided | labelled if a}


def _coverage(run: Run, pairs: list[m.Pair]) -> dict:
    unlabelled = [d.event_id for d in run.decisions if run.label_of(d) is None]
    decided = {id(label) for _, label in pairs}
    undecided = [label for label in run.labels.values() if id(label) not in decided]
    return {
        "decisions": len(run.decisions),
        "labelled_decisions": len(pairs),
        "unlabelled_decisions": len(unlabelled),
        "unlabelled_examples": unlabelled[:_EXAMPLES],
        "labels": len(run.labels),
        "labels_without_decision": len(undecided),
        "labels_without_decision_fraud": sum(label.fraud for label in undecided),
        "labels_without_decision_examples": [label.event_id for label in undecided[:_EXAMPLES]],
        "replay_rejected_lines": run.replay_rejected,
    }


def _missing_label_fields(run: Run) -> dict[str, str]:
    """Metrics the labels cannot support, with the field they would need."""
    present = {
        name
        for label in run.labels.values()
        for name in ("role", "group", "attack_style", "campaign_id")
        if getattr(label, name)
    }
    role = ("role", "cannot tell hijacked customers from attackers' own accounts")
    needs = {
        "victims_stopped_before_first_order": role,
        "roles": role,
        "false_positive_rate_by_group": ("group", "cannot name the benign confounders"),
        "attack_styles": ("attack_style", "cannot split by attacker playbook"),
        "campaigns": ("campaign_id", "cannot group fraudulent events into campaigns"),
    }
    return {
        metric: f"labels carry no `{name}`: {why}"
        for metric, (name, why) in needs.items()
        if name not in present
    }


def compute(run: Run) -> dict:
    """Every metric of metrics.json from validated inputs."""
    pairs = [(d, label) for d in run.decisions if (label := run.label_of(d)) is not None]
    decided: m.Decided = {id(label): d for d, label in pairs}
    cal = _calendar(run)
    unavailable = _missing_label_fields(run)
    if not pairs:
        unavailable["detection"] = "no decision has a label: do the labels belong to this run?"
    if not run.episodes:
        unavailable["pump_episodes"] = "labels have no `pump_episode` lines"
    if run.symbol_days == 0:
        unavailable["false_symbol_alerts_per_symbol_day"] = NO_BARS
    if run.files.get("alerts") and run.files["alerts"].missing:
        unavailable["alerts"] = (
            f"{run.files['alerts'].path} not found: no alert counted, delays use decisions only"
        )
    histograms = m.score_histograms(pairs)
    campaign_rows = (
        []
        if "campaigns" in unavailable
        else camp.campaigns(
            run.labels, decided, run.account_of, camp.account_leads(run.alerts), cal
        )
    )
    return {
        "inputs": {
            "files": {role: asdict(info) for role, info in run.files.items()},
            "rejected_lines": len(run.rejections),
            "rejections": [r.to_dict() for r in run.rejections[:REJECTIONS_SHOWN]],
        },
        "coverage": _coverage(run, pairs),
        "period": _period(run, cal),
        "detection": m.detection(pairs),
        "value_stopped": m.order_value(pairs),
        "victims_stopped_before_first_order": None
        if "victims_stopped_before_first_order" in unavailable
        else m.victims_stopped(decided, run.labels.values(), run.account_of),
        "false_positive_rate_by_group": None
        if "false_positive_rate_by_group" in unavailable
        else m.false_positives_by_group(pairs),
        "false_positive_reasons": m.false_positive_reasons(pairs),
        "attack_styles": None if "attack_styles" in unavailable else m.by_attack_style(pairs),
        "roles": None if "roles" in unavailable else m.by_role(pairs, run.labels.values(), decided),
        "campaigns": campaign_rows,
        "campaign_summary": camp.campaign_summary(campaign_rows),
        "workload": m.workload(run.alerts, run.decisions, cal),
        "alert_precision": camp.alert_precision(run.alerts, _fraud_accounts(run, pairs), run.episodes)
        | {"review_decisions": m.review_hits(pairs)},
        "decisions": m.decision_matrix(run.decisions),
        "pump_episodes": camp.pump_episodes(run.episodes, run.alerts, cal, run.symbol_days) if run.episodes else None,
        "decisions_over_time": m.decisions_over_time(run.decisions, run.label_of, cal),
        "score_histograms": histograms,
        "score_thresholds": m.score_thresholds(histograms),
        "unavailable": unavailable,
    }


def summary_lines(metrics: dict) -> list[str]:
    """A few lines with the headline figures, for the terminal."""
    orders, logins = metrics["detection"]["order"], metrics["detection"]["login"]
    value = metrics["value_stopped"]
    victims = metrics["victims_stopped_before_first_order"]
    camps = metrics["campaign_summary"]
    lines = [
        f"orders (review/block): precision {percent(orders['precision'])}, recall {percent(orders['recall'])}"
        f" ({orders['tp']} caught, {orders['fp']} false, {orders['fn']} missed)",
        f"logins (challenge+):   precision {percent(logins['precision'])}, recall {percent(logins['recall'])}"
        f" ({logins['tp']} caught, {logins['fp']} false, {logins['fn']} missed)",
        f"value stopped: ¥{value['stopped_notional_jpy']:,} of ¥{value['fraud_notional_jpy']:,}"
        f" ({percent(value['value_stopped'])})"
        + (f"; {value['fraud_orders_without_notional']} fraud orders without a price are not in it"
           if value["fraud_orders_without_notional"] else ""),
    ]
    if victims is not None:
        lines.append(
            f"hijacked accounts stopped before their first fraudulent order: "
            f"{victims['stopped']}/{victims['victims_with_fraud_order']} ({percent(victims['share'])})"
            + (f", {victims['first_order_undecided']} of the others' first orders not in the run"
               if victims["first_order_undecided"] else "")
        )
    roles = metrics["roles"]
    if roles and {"victim", "attacker"} <= roles.keys():
        line = f"fraud orders held: hijacked accounts {_held(roles['victim'])}, attackers' own {_held(roles['attacker'])}"
        early = roles.get("attacker_before_first_hijack")
        if early:
            line += f"; of theirs placed before their campaign's first hijack, {_held(early)}"
        lines.append(line)
    if camps["campaigns"]:
        delay = camps["median_delay_min"]
        lines.append(
            f"campaigns detected: {camps['detected']}/{camps['campaigns']}"
            + (f", median delay {duration(delay)}" if delay is not None else "")
            + (f" ({camps['detected_after_end']} of them only after they ended)"
               if camps["detected_after_end"] else "")
        )
    lines.append(f"alerts per day: {metrics['workload']['alerts_per_day'] or 0:.1f}")
    coverage = metrics["coverage"]
    if coverage["unlabelled_decisions"] or coverage["labels_without_decision"]:
        lines.append(
            f"warning: {coverage['unlabelled_decisions']} decisions without a label, "
            f"{coverage['labels_without_decision']} labels without a decision (not in the figures above)"
        )
    if "false_symbol_alerts_per_symbol_day" in metrics["unavailable"]:
        lines.append(f"warning: {NO_BARS}")
    pumps = metrics["pump_episodes"]
    if pumps and pumps["zero_length_episodes"]:
        lines.append(f"warning: {zero_length_warning(pumps['zero_length_episodes'])}")
    if metrics["inputs"]["rejected_lines"]:
        lines.append(
            f"warning: {metrics['inputs']['rejected_lines']} input lines rejected, "
            f"see {metrics['outputs']['rejected']}"
        )
    return lines


def _held(value: dict) -> str:
    return f"{value['stopped_orders']}/{value['fraud_orders']} ({percent(value['order_recall'])})"
