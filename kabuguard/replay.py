"""The batch replay runner: contract files in, decisions, alerts and rejections out.

It reads every file, puts events in the total order, drives the detection core with an
in-memory store and writes `decisions.jsonl`, `alerts.jsonl` and `rejected.jsonl`. All events
are held in memory for the sort; memory grows linearly with the number of events.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from kabuguard.engine import Pipeline
from kabuguard.events import DECIDABLE, Event, Rejection, expand_paths, read_file, total_order
from kabuguard.policy import Policy
from kabuguard.progress import progress

_encode = msgspec.json.Encoder().encode
_encode_lines = msgspec.json.Encoder().encode_lines
# Events decided between two writes of decisions and two `settle()` calls of `gc_settled`.
CHUNK = 50_000


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


@contextmanager
def gc_settled() -> Iterator[Callable[[], None]]:
    """Runs the cyclic garbage collector only at `settle()`, and only over what is new.

    Detection state grows with the accounts, addresses and symbols seen, and the collector's
    automatic passes walked it again and again: each full pass all of it, so the longer the
    replay, the more each event paid. `settle()`, called every `CHUNK` events, collects the
    garbage cycles among objects made since the last call and moves the survivors out of the
    collector's reach (`gc.freeze`), so each object is examined about once. Frozen objects are
    still freed by reference counting; only a cycle that becomes garbage after its chunk was
    settled waits for the end of the replay (`gc.unfreeze`), and deciding makes almost none.
    """
    enabled = gc.isenabled()

    def settle() -> None:
        gc.collect()
        gc.freeze()

    settle()
    gc.disable()
    try:
        yield settle
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


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
    process = pipeline.process
    with (out / "decisions.jsonl").open("wb") as decisions, (out / "alerts.jsonl").open("wb") as alerts, \
            progress(quiet) as bar, gc_settled() as settle:
        task = bar.add_task("deciding", total=len(ordered.events))
        # Decisions (fresh dicts nothing changes later) are encoded in bulk, one msgspec call per
        # chunk; alerts, which may share lists with detector state, as they are raised.
        decided: list[dict] = []

        def flush(done: int) -> None:
            decisions.write(_encode_lines(decided))
            _count(summary.decisions, (d["decision"] for d in decided))
            decided.clear()
            settle()
            bar.update(task, completed=done)

        for n, event in enumerate(ordered.events, start=1):
            decision, raised = process(event)
            if decision is not None:
                decided.append(decision)
            if raised:
                alerts.write(_encode_lines(raised))
                _count(summary.alerts, (a["type"] for a in raised))
            if n % CHUNK == 0:
                flush(n)
        flush(len(ordered.events))
    with (out / "rejected.jsonl").open("wb") as fh:
        for r in rejected:
            fh.write(_encode(r.to_dict()) + b"\n")
    return summary


def _count(counts: dict[str, int], values: Iterable[str]) -> None:
    for value in values:
        counts[value] = counts.get(value, 0) + 1


__all__ = ["DECIDABLE", "ReplaySummary", "gc_settled", "read_events", "replay"]
