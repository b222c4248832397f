"""The core's detection figures (issue #3's must-show) on several simulated seeds, and their spread.

Run: .venv/bin/python bench/eval_detection.py --seeds 31001,31002 [--accounts 20000] [--days 35]
     [--json out.json]

One seed is one draw of campaigns: a few dozen attackers' own orders more or less caught move
order recall by half a point. So a figure near its target says little from one seed; this
simulates each seed (cached under bench/.data/, not committed), replays it, evaluates it and
prints the figures per seed with their mean, lowest and highest (a figure a seed has no data for,
null in its row, is left out of them, and the table says so). Only seeds never used in
development measure the detectors; say which seeds were. Not a test: it reports figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".data"

# (label, target, how the figure is read from metrics.json: None where the seed gives no data)
FIGURES = [
    ("order recall", 0.95, lambda m: m["detection"]["order"]["recall"]),
    ("order precision", 0.90, lambda m: m["detection"]["order"]["precision"]),
    ("value stopped", 0.95, lambda m: m["value_stopped"]["value_stopped"]),
    ("hijacked stopped first", 0.90, lambda m: (m["victims_stopped_before_first_order"] or {}).get("share")),
    ("news-burst FP rate", 0.01, lambda m: _news_fp(m)),
]


def _news_fp(metrics: dict) -> float | None:
    """False positives among the news crowd's logins, changes and orders together; None without
    a news burst (no data is not a rate of 0, which would meet the target)."""
    by_type = (metrics["false_positive_rate_by_group"] or {}).get("news_burst", {})
    benign = sum(t["benign"] for t in by_type.values())
    return sum(t["flagged"] for t in by_type.values()) / benign if benign else None


def replay_and_evaluate(events: Path, labels: Path, base: Path) -> tuple[dict, float]:
    """Replays `events` into `base/run` and evaluates it against `labels` into `base/eval`: the
    metrics, and the replay's CPU seconds."""
    from kabuguard.evaluate import evaluate_run  # noqa: PLC0415
    from kabuguard.replay import replay  # noqa: PLC0415

    started = time.process_time()
    replay([events], base / "run", quiet=True)
    cpu = time.process_time() - started
    return evaluate_run(labels, base / "run", base / "eval"), cpu


def rows_as_they_come(items: list, run: Callable[[Any], dict]) -> list[dict]:
    """`run` on each item, its row printed as JSON as soon as it is done (a run of minutes each
    shows how it goes, and a stopped one what it got)."""
    rows = []
    for item in items:
        rows.append(run(item))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def save_rows(path: Path | None, rows: list[dict]) -> None:
    """The rows as JSON at `path`, where the command line asked for them."""
    if path:
        path.write_text(json.dumps(rows, indent=1) + "\n")


def run_seed(seed: int, accounts: int, days: int) -> dict:
    from kabuguard.sim import Config, simulate  # noqa: PLC0415

    base = CACHE / f"detection-{seed}-{accounts}-{days}"
    sim = base / "sim"
    if not (sim / "labels.jsonl").exists():
        simulate(Config(accounts=accounts, days=days, seed=seed), sim)
    metrics, cpu = replay_and_evaluate(sim / "events", sim / "labels.jsonl", base)
    row = {"seed": seed, "replay_cpu_s": round(cpu, 1)}
    row.update({label: None if (value := read(metrics)) is None else round(value, 4) for label, _, read in FIGURES})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, help="comma-separated simulation seeds")
    parser.add_argument("--accounts", type=int, default=20000)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = rows_as_they_come(seeds, lambda seed: run_seed(seed, args.accounts, args.days))
    print(f"\n{len(rows)} seeds, {args.accounts:,} accounts, {args.days} days")
    print(f"{'figure':<24}{'target':>8}{'mean':>8}{'lowest':>8}{'highest':>8}  seeds meeting it")
    for label, target, _ in FIGURES:
        # A seed without data for a figure (None: nothing to divide by) is left out of its spread.
        values = [r[label] for r in rows if r[label] is not None]
        # The FP rate is a ceiling; every other figure a floor.
        met = sum(v <= target if label.endswith("FP rate") else v >= target for v in values)
        spread = (f"{statistics.fmean(values):>8.4f}{min(values):>8.4f}{max(values):>8.4f}" if values
                  else f"{'n/a':>8}{'n/a':>8}{'n/a':>8}")
        left_out = len(rows) - len(values)
        print(f"{label:<24}{target:>8.3f}{spread}  {met} of {len(values)}"
              + (f" ({left_out} seed(s) without data left out)" if left_out else ""))
    save_rows(args.json, rows)


if __name__ == "__main__":
    main()
