"""The batch replay runner: contract files in, decisions, alerts and rejections out.

It reads every file, puts events in the total order, drives the detection core with an
in-memory store and writes `decisions.jsonl`, `alerts.jsonl` and `rejected.jsonl`. Up to
`spill_after` events are sorted in memory; a longer history is sorted in runs on disk and
merged, so memory stays bounded whatever the length of the history.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from kabuguard.engine import Pipeline
from kabuguard.events import DECIDABLE, Event, Rejection, expand_paths, read_file
from kabuguard.events.reader import event_files, is_remote
from kabuguard.events.order import SPILL_AFTER, TotalOrder
from kabuguard.policy import Policy
from kabuguard.progress import progress

_encode = msgspec.json.Encoder().encode
_encode_lines = msgspec.json.Encoder().encode_lines
# Events decided between two writes of decisions (and progress updates).
CHUNK = 50_000
# Market bars decided in one call of `Pipeline.process_bars`, at most.
BAR_BATCH = 4096
# Written into the output folder while a replay runs, removed when it has decided everything:
# decisions and alerts beside it stop at an interruption.
INCOMPLETE = "INCOMPLETE"


@dataclass
class ReplaySummary:
    files: int = 0
    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    # Rejected lines per input file: a whole file rejected is the wrong file, not bad lines.
    rejected_files: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    out_dir: Path = Path(".")


def read_events(paths: Iterable[str | Path], quiet: bool = False) -> tuple[list[Event], list[Rejection], int]:
    """Every event of every file (in input order) and every rejected line."""
    events: list[Event] = []
    rejected: list[Rejection] = []
    n_files = read_into(paths, events.append, rejected, quiet)
    return events, rejected, n_files


def read_into(paths: Iterable[str | Path], add: Callable[[Event], None], rejected: list[Rejection],
              quiet: bool) -> int:
    """Hands every event of every file to `add`, in input order, and appends each rejected line to
    `rejected` as it comes (the caller's list, so an interrupted read keeps those found); returns
    the number of files."""
    files = expand_paths(paths)
    with progress(quiet) as bar:
        task = bar.add_task("reading", total=len(files))
        for path in files:
            for item in read_file(path):
                if isinstance(item, Rejection):
                    rejected.append(item)
                else:
                    add(item)
            bar.advance(task)
    return len(files)


@contextmanager
def collector_off() -> Iterator[None]:
    """The cyclic garbage collector off while deciding, after one pass over what came before.

    Detection state grows with the accounts, addresses and symbols seen, and the collector's
    automatic passes walk it again and again (each full pass all of it), so the longer the replay,
    the more each event would pay; a pass over only what is new, every `CHUNK` events, still cost
    6% of deciding and found nothing. Deciding makes no reference cycles (a test decides a
    simulated history and checks), so reference counting frees all it drops; the compiled bar
    kernels' one-off load leaves a few hundred objects for the collector once it is back on.
    """
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# What a replay writes into its output folder (Spark's --parquet adds the two folders).
OUTPUTS = ("decisions.jsonl", "alerts.jsonl", "rejected.jsonl", "decisions.parquet", "alerts.parquet")


class InputIsOutput(ValueError):
    """An input file is one of the replay's own outputs in `--out`."""


def refuse_outputs(files: Iterable[str | Path], out: Path) -> None:
    """Refuse input that a replay into `out` writes: it would be emptied before it is read (or,
    from an earlier Spark run's Parquet folders, read as events)."""
    outputs = [(out / name).resolve() for name in OUTPUTS]
    for file in files:
        if is_remote(file):  # never a local output
            continue
        path = Path(file).resolve()
        if any(path == o or o in path.parents for o in outputs):
            raise InputIsOutput(f"{file} is an output of a replay into {out}: choose another --out, or move the input")


def replay(paths: Iterable[str | Path], out_dir: str | Path, policy: Policy | None = None,
           quiet: bool = False, spill_after: int | None = SPILL_AFTER) -> ReplaySummary:
    """Decide every activity event of `paths` as production would have, into `out_dir`."""
    paths = list(paths)
    out = Path(out_dir)
    refuse_outputs(event_files(paths), out)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / INCOMPLETE
    marker.write_text("a replay into this folder has not finished: its decisions and alerts stop early\n")
    for name in ("decisions.jsonl", "alerts.jsonl"):  # an earlier run's must not pass for this one's
        (out / name).write_bytes(b"")
    rejected: list[Rejection] = []
    try:
        with TotalOrder(spill_after, workdir=out) as order:
            n_files = read_into(paths, order.add, rejected, quiet)
            summary = ReplaySummary(files=n_files, rejected=len(rejected),
                                    rejected_files=dict(Counter(r.file for r in rejected)), out_dir=out)
            _decide(order, Pipeline(policy), summary, quiet)
    finally:  # an interrupted run still says which lines it rejected
        with (out / "rejected.jsonl").open("wb") as fh:
            for r in rejected:
                fh.write(_encode(r.to_dict()) + b"\n")
    marker.unlink()
    return summary


def _decide(order: TotalOrder, pipeline: Pipeline, summary: ReplaySummary, quiet: bool) -> None:
    """Every event in the total order through the core; decisions and alerts as they come."""
    out = summary.out_dir
    with (out / "decisions.jsonl").open("wb") as decisions, (out / "alerts.jsonl").open("wb") as alerts, \
            progress(quiet) as bar, collector_off():
        # The total counts duplicates too: they are known only once the merge reaches them.
        task = bar.add_task("deciding", total=order.added)
        # Decisions (fresh dicts nothing changes later) are encoded in bulk, one msgspec call per
        # chunk; alerts, which may share lists with detector state, as they are raised.
        decided: list[dict] = []

        def flush(done: int) -> None:
            decisions.write(_encode_lines(decided))
            _count(summary.decisions, (d["decision"] for d in decided))
            decided.clear()
            bar.update(task, completed=done)

        n = done = 0
        try:
            for n, decision, raised in decide(pipeline, order):
                if decision is not None:
                    decided.append(decision)
                if raised:
                    alerts.write(_encode_lines(raised))
                    _count(summary.alerts, (a["type"] for a in raised))
                if n - done >= CHUNK:
                    flush(n)
                    done = n
        finally:  # on an interruption too: the decisions beside the alerts already written
            flush(order.added)
    summary.events = n
    summary.duplicates = order.duplicates


def decide(pipeline: Pipeline, events: Iterable[Event]) -> Iterator[tuple[int, dict | None, list[dict]]]:
    """The core over `events` in their order, as the replay runs it: per event its decision and
    alerts; a run of consecutive market bars (a whole market each minute) in batches
    (`Pipeline.process_bars`), with no decision and the run's alerts. Each comes with the number
    of events decided so far."""
    bars: list[Event] = []
    n = 0
    for n, event in enumerate(events, start=1):
        if event.kind == "market_bar":
            bars.append(event)
            if len(bars) == BAR_BATCH:
                yield n, None, pipeline.process_bars(bars)
                bars = []
            continue
        if bars:
            yield n - 1, None, pipeline.process_bars(bars)
            bars = []
        decision, raised = pipeline.process(event)
        yield n, decision, raised
    if bars:
        yield n, None, pipeline.process_bars(bars)


def _count(counts: dict[str, int], values: Iterable[str]) -> None:
    for value in values:
        counts[value] = counts.get(value, 0) + 1


__all__ = ["DECIDABLE", "InputIsOutput", "ReplaySummary", "collector_off", "decide", "read_events", "refuse_outputs", "replay"]
