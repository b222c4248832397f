"""Read a run's decisions and alerts and a labels file, reporting every bad line.

Evaluation is often run on files that did not come from Kabuguard itself (an analyst's case
dispositions, an older run), so each line is validated here once, a bad one becomes a
`Rejection` naming file, line and reason, and the rest of the file is still read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from kabuguard.events.reader import ContractError, Rejection, parse_ts

DecisionKind = Literal["allow", "challenge", "review", "block"]
DecidedType = Literal["login", "account_change", "order"]

# Below this many bytes a progress bar would only flicker.
_PROGRESS_MIN_BYTES = 8 << 20
_ADVANCE_EVERY = 1 << 20

T = TypeVar("T")


class Decision(msgspec.Struct, kw_only=True):
    """One line of decisions.jsonl; `ts_us` is filled from `ts` so that times compare as instants."""

    event_id: str
    ts: str
    type: DecidedType
    decision: DecisionKind
    score: float
    account_id: str | None = None
    reasons: list[str] | None = None
    notional_jpy: float | None = None
    ts_us: int = 0


class _Alert(msgspec.Struct, kw_only=True, tag_field="type"):
    ts: str
    alert_id: str | None = None
    score: float | None = None
    reasons: list[str] | None = None
    event_id: str | None = None
    ts_us: int = 0


class AccountAlert(_Alert, tag="account_alert", kw_only=True):
    account_id: str


class SymbolAlert(_Alert, tag="symbol_alert", kw_only=True):
    symbol: str


class CampaignAlert(_Alert, tag="campaign_alert", kw_only=True):
    campaign_id: str | None = None
    accounts: list[str] = []
    symbols: list[str] = []
    ips: list[str] = []


Alert = AccountAlert | SymbolAlert | CampaignAlert


class Label(msgspec.Struct, kw_only=True):
    """Ground truth for one activity event; only `event_id` and `fraud` are required."""

    event_id: str
    fraud: bool
    campaign_id: str | None = None
    account_id: str | None = None
    type: str | None = None
    ts: str | None = None
    attack_style: str | None = None
    role: Literal["victim", "attacker"] | None = None
    group: str | None = None
    ts_us: int | None = None


class PumpEpisode(msgspec.Struct, kw_only=True):
    """A labelled market episode: a manipulation (`campaign_id`) or a benign news burst."""

    symbol: str
    start: str
    end: str
    campaign_id: str | None = None
    news: str | bool | None = None
    start_us: int = 0
    end_us: int = 0

    @property
    def manipulated(self) -> bool:
        return self.campaign_id is not None


@dataclass(slots=True)
class InputFile:
    """What was read from one file, for the coverage section of the report."""

    path: str
    lines: int = 0
    read: int = 0
    rejected: int = 0
    missing: bool = False


@dataclass(slots=True)
class Run:
    """Everything evaluation reads, validated; decisions keep file order (the total order)."""

    decisions: list[Decision] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    labels: dict[str, Label] = field(default_factory=dict)
    episodes: list[PumpEpisode] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    files: dict[str, InputFile] = field(default_factory=dict)


_decode_decision = msgspec.json.Decoder(Decision).decode
_decode_alert = msgspec.json.Decoder(Alert).decode
_decode_any = msgspec.json.Decoder().decode


def _instant(value: str, name: str) -> int:
    try:
        return parse_ts(value)
    except ContractError as exc:
        raise ContractError(f"`{name}`: {exc}") from None


def parse_decision(line: bytes) -> Decision:
    decision = _decode_decision(line)
    decision.ts_us = parse_ts(decision.ts)
    return decision


def parse_alert(line: bytes) -> Alert:
    alert = _decode_alert(line)
    alert.ts_us = parse_ts(alert.ts)
    return alert


def parse_label(line: bytes) -> Label | PumpEpisode:
    """A label line, or a pump episode line (`"kind": "pump_episode"`)."""
    obj: Any = _decode_any(line)
    if not isinstance(obj, dict):
        raise ContractError(f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind == "pump_episode":
        episode = msgspec.convert(obj, PumpEpisode)
        episode.start_us = _instant(episode.start, "start")
        episode.end_us = _instant(episode.end, "end")
        if episode.end_us < episode.start_us:
            raise ContractError("pump_episode `end` is before `start`")
        return episode
    if kind is not None:
        raise ContractError(f"unknown `kind`: {kind!r} (expected absent or 'pump_episode')")
    label = msgspec.convert(obj, Label)
    if label.ts is not None:
        label.ts_us = parse_ts(label.ts)
    return label


def read_jsonl(
    path: Path, parse: Callable[[bytes], T], advance: Callable[[int], None]
) -> Iterator[tuple[int, T] | Rejection]:
    """(line number, record) per good line, a Rejection per bad one; `advance` gets bytes read."""
    name = str(path)
    pending = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            pending += len(line)
            if pending >= _ADVANCE_EVERY:
                advance(pending)
                pending = 0
            if not line.strip():
                continue
            try:
                yield number, parse(line)
            except msgspec.ValidationError as exc:
                yield Rejection(name, number, str(exc))
            except msgspec.DecodeError as exc:
                yield Rejection(name, number, f"invalid JSON: {exc}")
            except ContractError as exc:
                yield Rejection(name, number, str(exc))
    advance(pending)


@contextmanager
def _progress(paths: list[Path], enabled: bool) -> Iterator[Callable[[Path], Callable[[int], None]]]:
    """A per-file byte counter shown as a progress bar on stderr when the input is large."""
    size = sum(p.stat().st_size for p in paths if p.is_file())
    if not enabled or size < _PROGRESS_MIN_BYTES:
        yield lambda _path: lambda _n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:

        def for_file(path: Path) -> Callable[[int], None]:
            task = bar.add_task(f"reading {path.name}", total=path.stat().st_size)
            return lambda n: bar.advance(task, n)

        yield for_file


def load(labels_path: Path, run_dir: Path, *, progress: bool = False) -> Run:
    """Read the three inputs; a missing alerts.jsonl is noted (no alerts), a missing decisions.jsonl is an error."""
    decisions_path = run_dir / "decisions.jsonl"
    alerts_path = run_dir / "alerts.jsonl"
    if not decisions_path.is_file():
        raise FileNotFoundError(
            f"{decisions_path}: no decisions.jsonl in the run folder; pass the --out folder of `kabuguard replay`"
        )
    run = Run()
    with _progress([decisions_path, alerts_path, labels_path], progress) as counter:
        for record in _read(run, "decisions", decisions_path, parse_decision, counter, _event_key):
            run.decisions.append(record)
        if alerts_path.is_file():
            run.alerts.extend(_read(run, "alerts", alerts_path, parse_alert, counter, _alert_key))
        else:
            run.files["alerts"] = InputFile(str(alerts_path), missing=True)
        for item in _read(run, "labels", labels_path, parse_label, counter, _label_key):
            if isinstance(item, PumpEpisode):
                run.episodes.append(item)
            else:
                run.labels[item.event_id] = item
    return run


def _event_key(decision: Decision) -> str:
    return decision.event_id


def _alert_key(alert: Alert) -> str | None:
    return alert.alert_id


def _label_key(item: Label | PumpEpisode) -> str | None:
    return item.event_id if isinstance(item, Label) else None


def _read(
    run: Run,
    role: str,
    path: Path,
    parse: Callable[[bytes], T],
    counter: Callable[[Path], Callable[[int], None]],
    key: Callable[[T], str | None],
) -> Iterator[T]:
    """Good records of one file; rejections and duplicates of `key` go to `run.rejections`."""
    info = run.files[role] = InputFile(str(path))
    first_line: dict[str, int] = {}
    for item in read_jsonl(path, parse, counter(path)):
        info.lines += 1
        if isinstance(item, Rejection):
            info.rejected += 1
            run.rejections.append(item)
            continue
        number, record = item
        ident = key(record)
        if ident is not None:
            if ident in first_line:
                info.rejected += 1
                run.rejections.append(
                    Rejection(str(path), number, f"duplicate id {ident!r} (first on line {first_line[ident]})")
                )
                continue
            first_line[ident] = number
        info.read += 1
        yield record


def utc_offset_us(ts: str) -> int:
    """The UTC offset written in a timestamp, so 'per day' means the brokerage's own calendar day."""
    offset = datetime.fromisoformat(ts).utcoffset()
    return 0 if offset is None else int(offset.total_seconds() * 1_000_000)
