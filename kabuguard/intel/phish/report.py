"""The evaluation report: metrics.json, report.md and report.html with a chart by year.

The chart is inline SVG, so the report is one self-contained file with no plotting dependency.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from kabuguard.intel.phish.evaluate import HELD_OUT_YEARS, STRATA, TUNING_YEARS

_SERIES = (("recall_brand-token", "recall (token hosts)", "#1f77b4"), ("recall_no-token", "recall (no-token hosts)", "#9edae5"),
           ("recall", "recall (all)", "#aec7e8"), ("precision", "precision", "#2ca02c"),
           ("attribution_accuracy", "attribution", "#ff7f0e"))
_COLUMNS = ("year", "split", "positives", "recall", *(f"recall_{s}" for s in STRATA), "recall_no-token_with_path", "flagged", "precision",
            "false_positives_with_brand_token", "attribution_accuracy", "wrong_attributions",
            "wrong_attributions_label_not_in_url", "official_rows_flagged", "rejected_rows")


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(section: dict) -> str:
    """One registry's results as Markdown: a table per detector, then the official-domain check."""
    out = [f"## Registry `{section['registry']}`", "", section["role"], ""]
    for det in section["detectors"]:
        out += [f"### {det['detector']}", "", "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        out += ["| " + " | ".join(_fmt(y.get(c)) for c in _COLUMNS) + " |" for y in det["years"]]
        flagged = det["official_domains_flagged"]
        out += ["", f"Official domains flagged: {len(flagged)} of {det['official_domains_checked']} probes"
                + (f" ({', '.join(flagged)})" if flagged else ""), ""]
    rejected = section.get("rejected_rows", [])
    if rejected:
        out += [f"Rejected rows, counted for no detector: {len(rejected)}", ""]
        out += [f"- `{r['file']}:{r['line']}`: {r['reason']}" for r in rejected] + [""]
    return "\n".join(out)


def chart(det: dict, width: int = 840, height: int = 240) -> str:
    """Grouped bars per year for one detector; held-out years are shaded."""
    years = det["years"]
    if not years:
        return ""
    pad, top, bottom = 40, 20, 40
    group = (width - pad) / len(years)
    bar = group * 0.8 / len(_SERIES)
    scale = height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">']
    for i, y in enumerate(years):
        x0 = pad + i * group
        if y["year"] in HELD_OUT_YEARS:
            parts.append(f'<rect x="{x0:.1f}" y="{top}" width="{group:.1f}" height="{scale}" fill="#f3f3f3"/>')
        for j, (key, _, colour) in enumerate(_SERIES):
            value = y.get(key) or 0.0
            h = value * scale
            parts.append(f'<rect x="{x0 + group * 0.1 + j * bar:.1f}" y="{top + scale - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{y["year"]} {key}: {_fmt(y.get(key))}</title></rect>')
        label = f'{y["year"]}{" (held out)" if y["year"] in HELD_OUT_YEARS else ""}'
        parts.append(f'<text x="{x0 + group / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle">{label}</text>')
    for tick in (0, 0.5, 1.0):
        yy = top + scale - tick * scale
        parts.append(f'<line x1="{pad}" x2="{width}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ccc" stroke-dasharray="2"/>')
        parts.append(f'<text x="{pad - 4}" y="{yy + 4:.1f}" text-anchor="end">{tick}</text>')
    target = top + scale * 0.05  # the 0.95 goal of recall, precision and attribution
    parts.append(f'<line x1="{pad}" x2="{width}" y1="{target:.1f}" y2="{target:.1f}" stroke="#d62728" stroke-dasharray="4 2"/>')
    for j, (_, name, colour) in enumerate(_SERIES):
        parts.append(f'<rect x="{pad + j * 155}" y="{height - 14}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{pad + j * 155 + 14}" y="{height - 5}">{name}</text>')
    parts.append(f'<text x="{width - 4}" y="{height - 5}" text-anchor="end" fill="#d62728">- - 0.95</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(out_dir: Path, sections: list[dict]) -> list[Path]:
    """Write metrics.json, report.md and report.html; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = (f"# Phishing-domain monitor: leave-brands-out evaluation\n\nTuning years: {', '.join(map(str, TUNING_YEARS))}. "
              f"Held-out years (never inspected while tuning): {', '.join(map(str, HELD_OUT_YEARS))}.\n")
    md = header + "\n" + "\n".join(markdown(s) for s in sections)
    body = [f"<h1>Phishing-domain monitor: leave-brands-out evaluation</h1><p>{html.escape(header.split(chr(10), 2)[2])}</p>"]
    for s in sections:
        body.append(f"<h2>Registry {html.escape(s['registry'])}</h2><p>{html.escape(s['role'])}</p>")
        for det in s["detectors"]:
            body.append(f"<h3>{html.escape(det['detector'])}</h3>{chart(det)}")
        body.append(f"<pre>{html.escape(markdown(s))}</pre>")
    paths = [out_dir / "metrics.json", out_dir / "report.md", out_dir / "report.html"]
    paths[0].write_text(json.dumps(sections, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(md + "\n", encoding="utf-8")
    paths[2].write_text("<!doctype html><meta charset='utf-8'><title>Kabuguard phishing evaluation</title>"
                        "<body style='font-family:sans-serif;max-width:72em'>" + "".join(body) + "</body>", encoding="utf-8")
    return paths
