"""The batch replay runner: contract files in, decisions, alerts and rejections out.

It reads every file, puts events in the total order, drives the detection core with an
in-memory store and writes `decisions.jsonl`, `alerts.jsonl` and `rejected.jsonl`. All events
are held in memory for the sort; memory grows linearly with the number of events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from kabuguard.engine import Pipeline
from kabuguard.events import DECIDABLE, Event, Rejection, expand_paths, read_file, total_order
from kabuguard.policy import Policy
from kabuguard.progress import progress

_encode = msgspec.json.Encoder().encode


@dataclass
class ReplaySummary:
    files: int = 0
    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    out_dir: Path = Path(".")


def read_events(paths: Iterable[str | Path], quiet: bool = False) -> tuple[list[Event], list[Rejection], int]:
    """Every event of every file (in input order) and every rejected line."""
    files = expand_paths(paths)
    events: list[Event] = []
    rejected: list[Rejection] = []
    with progress(quiet) as bar:
        task = bar.add_task("reading", total=len(files))
        for path in files:
            for item in read_file(path):
                if isinstance(item, Rejection):
                    rejected.append(item)
                else:
                    events.append(item)
            bar.advance(task)
    return events, rejected, len(files)


def replay(paths: Iterable[str | Path], out_dir: str | Path, policy: Policy | None = None,
           quiet: bool = False) -> ReplaySummary:
    """Decide every activity event of `paths` as production would have, into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    events, rejected, n_files = read_events(paths, quiet)
    ordered = total_order(events)
    del events
    summary = ReplaySummary(files=n_files, events=len(ordered.events), duplicates=ordered.duplicates,
                            rejected=len(rejected), out_dir=out)
    pipeline = Pipeline(policy)
    with (out / "decisions.jsonl").open("wb") as decisions, (out / "alerts.jsonl").open("wb") as alerts, \
            progress(quiet) as bar:
        task = bar.add_task("deciding", total=len(ordered.events))
        for n, event in enumerate(ordered.events, start=1):
            decision, raised = pipeline.process(event)
            if decision is not None:
                decisions.write(_encode(decision) + b"\n")
                summary.decisions[decision["decision"]] = summary.decisions.get(decision["decision"], 0) + 1
            for alert in raised:
                alerts.write(_encode(alert) + b"\n")
                summary.alerts[alert["type"]] = summary.alerts.get(alert["type"], 0) + 1
            if n % 50_000 == 0:
                bar.update(task, completed=n)
        bar.update(task, completed=len(ordered.events))
    with (out / "rejected.jsonl").open("wb") as fh:
        for r in rejected:
            fh.write(_encode(r.to_dict()) + b"\n")
    return summary


__all__ = ["DECIDABLE", "ReplaySummary", "read_events", "replay"]
