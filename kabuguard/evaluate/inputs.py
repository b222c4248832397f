"""Read a run's decisions and alerts and a labels file, reporting every bad line.

Evaluation is often run on files that did not come from Kabuguard itself (an analyst's case
dispositions, an older run), so each line is validated here once, a bad one becomes a
`Rejection` naming file, line and reason, and the rest of the file is still read.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from kabuguard.events.instants import END_US
from kabuguard.events.model import firm_account_key
from kabuguard.events.reader import UNREADABLE, ContractError, Rejection, expand_paths, read_file
from kabuguard.progress import progress
from kabuguard.replay import INCOMPLETE

DecisionKind = Literal["allow", "challenge", "review", "block"]
DecidedType = Literal["login", "account_change", "order"]

# Below this many bytes a progress bar would only flicker.
_PROGRESS_MIN_BYTES = 8 << 20
_ADVANCE_EVERY = 1 << 20
_MB = 1 << 20
# Microseconds in a day and a minute, for every module of the evaluation.
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000

T = TypeVar("T")
# RFC 3339 with an offset, parsed by msgspec while it decodes the line (far faster than
# datetime.fromisoformat on a million lines).
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
_MICRO = timedelta(microseconds=1)
Score = Annotated[float, msgspec.Meta(ge=0, le=1)]
# An order's notional: at most a thousand trillion yen, about what the whole Tokyo market is
# worth, so that no sum of them overflows to infinity (which a report cannot round).
MAX_YEN = 1e15
Yen = Annotated[float, msgspec.Meta(ge=0, le=MAX_YEN)]


def micros(ts: datetime) -> int:
    """Microseconds since the epoch: instants compare as integers whatever their offset."""
    # Whole seconds from the float of the instant without its microseconds (a whole number, exact:
    # with them, a float past year ~2500 rounds .999999 up to the next second), microseconds from
    # the field: several times faster than timedelta arithmetic at a million lines.
    return math.floor(ts.replace(microsecond=0).timestamp()) * 1_000_000 + ts.microsecond


# A day inside the years 1 to 9999 in UTC: the report writes every instant in the offset of the
# run's first one, and a calendar a day off (any offset) must still have a year for it.
_FIRST_US = micros(datetime(1, 1, 2, tzinfo=timezone.utc))


def instant_us(ts: datetime, name: str) -> int:
    """`micros` of the field `name`, or a ContractError when no calendar could write it back."""
    us = micros(ts)
    if not _FIRST_US <= us <= END_US:
        raise ContractError(f"`{name}` is outside 0001-01-02 to 9999-12-30 in UTC: {ts.isoformat()}")
    return us


# gc=False: these records hold no cycles, and a million tracked objects make every
# garbage collection pass crawl.
class Decision(msgspec.Struct, kw_only=True, gc=False):
    """One line of decisions.jsonl; `ts_us` is filled from `ts` so that times compare as instants."""

    event_id: str
    ts: Instant
    type: DecidedType
    decision: DecisionKind
    score: Score
    account_id: str | None = None
    firm: str | None = None
    reasons: list[str] | None = None
    notional_jpy: Yen | None = None
    ts_us: int = 0

    @property
    def key(self) -> str:
        """The event's identity: its id at its firm (firms of a pooled run number theirs alike)."""
        return firm_account_key(self.firm, self.event_id)


class _Alert(msgspec.Struct, kw_only=True, tag_field="type", gc=False):
    ts: Instant
    alert_id: str | None = None
    score: float | None = None
    event_id: str | None = None
    firm: str | None = None
    ts_us: int = 0


class AccountAlert(_Alert, tag="account_alert", kw_only=True):
    account_id: str

    @property
    def account(self) -> str:
        """The account as the engine keys it: `firm:account_id` in a pooled feed (campaign alerts
        name their accounts so), so two firms' customers with one id stay two accounts."""
        return firm_account_key(self.firm, self.account_id)


class SymbolAlert(_Alert, tag="symbol_alert", kw_only=True):
    symbol: str
    reasons: list[str] = []

    @property
    def ended(self) -> bool:
        """A notice that an episode alerted earlier is over (`volume_price_surge_ended`), not a new alert."""
        return "volume_price_surge_ended" in self.reasons


class CampaignAlert(_Alert, tag="campaign_alert", kw_only=True):
    campaign_id: str | None = None
    accounts: list[str] = []
    symbols: list[str] = []
    ips: list[str] = []


Alert = AccountAlert | SymbolAlert | CampaignAlert


def alert_type(alert: Alert) -> str:
    """`account_alert`, `symbol_alert` or `campaign_alert`, as written in the file."""
    return type(alert).__struct_config__.tag  # type: ignore[return-value]


class Label(msgspec.Struct, kw_only=True, gc=False):
    """Ground truth for one activity event; only `event_id` and `fraud` are required."""

    event_id: str
    fraud: bool
    campaign_id: str | None = None
    account_id: str | None = None
    firm: str | None = None
    type: str | None = None
    ts: Instant | None = None
    attack_style: str | None = None
    role: Literal["victim", "attacker"] | None = None
    group: str | None = None
    ts_us: int | None = None

    @property
    def key(self) -> str:
        return firm_account_key(self.firm, self.event_id)


class PumpEpisode(msgspec.Struct, kw_only=True):
    """A labelled market episode: a manipulation (`campaign_id`) or a benign news burst.

    `firm`: the firm whose trades the window was drawn from (`simulate --firms N` labels a pump
    once per firm it reached); evaluation merges such lines into one market episode."""

    symbol: str
    start: Instant
    end: Instant
    campaign_id: str | None = None
    news: str | bool | None = None
    firm: str | None = None
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
    replay_rejected: int = 0  # lines of the replay's own rejected.jsonl: events that got no decision
    symbol_days: int | None = None  # symbol-days watched (a market bar), when the bars were given

    # Labels by id alone, where only one label has that id, when only one side of the run names
    # firms (labels written without the decisions' `firm` field, or the other way round): there
    # a decision finds its label by id (`label_of`). Empty otherwise. Filled by `load`.
    by_id: dict[str, Label] = field(default_factory=dict)
    # There too, the run's key (`firm:account_id` or `account_id`) of each account id that the
    # decisions name under one key only, so that a label's account is keyed as the run keys it
    # (`account_of`). None when both sides name firms, or neither. Filled by `load`.
    run_accounts: dict[str, str] | None = None

    def label_of(self, decision: Decision) -> Label | None:
        """A decision's label: by its id at its firm, or by its id alone where only one side names
        firms (`by_id`)."""
        label = self.labels.get(decision.key)
        return self.by_id.get(decision.event_id) if label is None else label

    def account_of(self, decision: Decision | None, label: Label) -> str | None:
        """The account as the product saw it, else as the label says; `firm:account_id` when the
        run names firms, as the engine keys accounts in a pooled feed (and its alerts name them).

        Where only one side names firms, a label's account takes the run's key: keyed by its own
        firm, one account's decided and undecided events would count as two accounts."""
        if decision is not None and decision.account_id:
            return firm_account_key(decision.firm, decision.account_id)
        if not label.account_id:
            return None
        if self.run_accounts is None:
            return firm_account_key(label.firm, label.account_id)
        return self.run_accounts.get(label.account_id, label.account_id)


_decode_decision = msgspec.json.Decoder(Decision).decode
_decode_alert = msgspec.json.Decoder(Alert).decode
_decode_any = msgspec.json.Decoder().decode


def parse_decision(line: bytes) -> Decision:
    decision = _decode_decision(line)
    decision.ts_us = instant_us(decision.ts, "ts")
    if decision.decision == "allow":
        # Reasons are only read on flagged events, and an allow is flagged under no rule:
        # dropping them here saves most of the memory of a large run.
        decision.reasons = None
    return decision


def parse_alert(line: bytes) -> Alert:
    alert = _decode_alert(line)
    alert.ts_us = instant_us(alert.ts, "ts")
    return alert


def parse_label(line: bytes) -> Label | PumpEpisode:
    """A label line, or a pump episode line (`"kind": "pump_episode"`)."""
    obj: Any = _decode_any(line)
    if not isinstance(obj, dict):
        raise ContractError(f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind == "pump_episode":
        episode = msgspec.convert(obj, PumpEpisode)
        episode.start_us, episode.end_us = instant_us(episode.start, "start"), instant_us(episode.end, "end")
        if episode.end_us < episode.start_us:
            raise ContractError("pump_episode `end` is before `start`")
        return episode
    if kind is not None:
        raise ContractError(f"unknown `kind`: {kind!r} (expected absent or 'pump_episode')")
    label = msgspec.convert(obj, Label)
    label.ts_us = instant_us(label.ts, "ts") if label.ts is not None else None
    return label


@contextmanager
def _progress(paths: list[Path], enabled: bool) -> Iterator[Callable[[Path], Callable[[int], None]]]:
    """A per-file counter of megabytes read, shown on stderr when the input is large."""
    size = sum(p.stat().st_size for p in paths if p.is_file())
    with progress(quiet=not enabled or size < _PROGRESS_MIN_BYTES) as bar:

        def for_file(path: Path) -> Callable[[int], None]:
            # Bytes counted are uncompressed: a gzip file's size is no total for them.
            total = None if path.name.endswith(".gz") else path.stat().st_size / _MB
            task = bar.add_task(f"reading {path.name} (MB)", total=total)
            return lambda n: bar.advance(task, n / _MB)

        yield for_file


class IncompleteRun(ValueError):
    """The run folder holds the replay's INCOMPLETE marker: its decisions and alerts stop early."""


def load(labels_path: Path, run_dir: Path, *, progress: bool = False, bars: Iterable[Path] = ()) -> Run:
    """Read the three inputs; a missing alerts.jsonl is noted (no alerts), a missing decisions.jsonl
    is an error, and so is a run folder a replay has not finished (`IncompleteRun`).

    `bars` (the market bars the run replayed, optional) give the symbol-days watched."""
    decisions_path = run_dir / "decisions.jsonl"
    alerts_path = run_dir / "alerts.jsonl"
    if not decisions_path.is_file():
        raise FileNotFoundError(
            f"{decisions_path}: no decisions.jsonl in the run folder; pass the --out folder of `kabuguard replay`"
        )
    if (run_dir / INCOMPLETE).exists():  # its figures would read as the whole run's
        raise IncompleteRun(
            f"{run_dir / INCOMPLETE}: a replay into this folder has not finished (interrupted, or still running), "
            "so its decisions and alerts stop early; run the replay to the end, then evaluate"
        )
    run = Run()
    with _progress([decisions_path, alerts_path, labels_path], progress) as counter:
        run.decisions = _read(run, "decisions", decisions_path, parse_decision, counter, _event_key)
        if alerts_path.is_file():
            run.alerts = _read(run, "alerts", alerts_path, parse_alert, counter, _alert_key)
        else:
            run.files["alerts"] = InputFile(str(alerts_path), missing=True)
        for item in _read(run, "labels", labels_path, parse_label, counter, _label_key):
            if isinstance(item, PumpEpisode):
                run.episodes.append(item)
            else:
                run.labels[item.key] = item
    if any(label.firm for label in run.labels.values()) != any(d.firm for d in run.decisions):
        ids = Counter(label.event_id for label in run.labels.values())
        run.by_id = {label.event_id: label for label in run.labels.values() if ids[label.event_id] == 1}
        run.run_accounts = _run_accounts(run.decisions)
    bars = list(bars)
    if bars:
        info = run.files["bars"] = InputFile(", ".join(map(str, bars)))
        run.symbol_days = symbol_days(bars, run.rejections, info)
    replay_rejected = run_dir / "rejected.jsonl"
    if replay_rejected.is_file():
        with replay_rejected.open("rb") as fh:
            run.replay_rejected = sum(1 for line in fh if line.strip())
    return run


def _run_accounts(decisions: Iterable[Decision]) -> dict[str, str]:
    """The run's key of each account id the decisions name, where they name it at one firm only
    (at several, a label without a firm cannot tell which customer it means)."""
    keys: dict[str, set[str]] = defaultdict(set)
    for d in decisions:
        if d.account_id:
            keys[d.account_id].add(firm_account_key(d.firm, d.account_id))
    return {account: next(iter(named)) for account, named in keys.items() if len(named) == 1}


def _event_key(decision: Decision) -> str:
    return decision.key


def _alert_key(alert: Alert) -> str | None:
    """An alert's id at its firm: ids derive from event ids, which firms number alike."""
    return firm_account_key(alert.firm, alert.alert_id) if alert.alert_id else None


def _label_key(item: Label | PumpEpisode) -> str | None:
    """An event's id; an episode's firm, symbol and window, so that one listed twice counts once
    (two firms' lines of one pump are no duplicate: `campaigns.merge_episodes` joins them)."""
    if isinstance(item, Label):
        return item.key
    return f"pump_episode {item.firm or ''} {item.symbol} {item.start_us}-{item.end_us}"


def _read(
    run: Run,
    role: str,
    path: Path,
    parse: Callable[[bytes], T],
    counter: Callable[[Path], Callable[[int], None]],
    key: Callable[[T], str | None],
) -> list[T]:
    """Good records of one file, in file order; bad lines and repeated `key`s go to `run.rejections`,
    and so does a damaged file, from where it breaks (what came before it is kept)."""
    info = run.files[role] = InputFile(str(path))
    advance = counter(path)
    records: list[T] = []
    first_line: dict[str, int] = {}
    pending = 0
    number = 0
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                pending += len(line)
                if pending >= _ADVANCE_EVERY:
                    advance(pending)
                    pending = 0
                if not line.strip():
                    continue
                info.lines += 1
                reason = None
                try:
                    record = parse(line)
                except msgspec.ValidationError as exc:
                    reason = str(exc)
                except msgspec.DecodeError as exc:
                    reason = f"invalid JSON: {exc}"
                except ContractError as exc:
                    reason = str(exc)
                else:
                    ident = key(record)
                    if ident is not None and ident in first_line:
                        reason = f"duplicate id {ident!r} (first on line {first_line[ident]})"
                    elif ident is not None:
                        first_line[ident] = number
                if reason is None:
                    records.append(record)
                else:
                    run.rejections.append(Rejection(str(path), number, reason))
    except UNREADABLE as exc:  # damaged or truncated (gzip), or not readable
        info.lines += 1
        run.rejections.append(Rejection(str(path), number + 1, f"unreadable file from here on: {exc}"))
    advance(pending)
    info.rejected = info.lines - len(records)
    info.read = len(records)
    return records


def symbol_days(paths: Iterable[Path], rejections: list[Rejection], info: InputFile) -> int:
    """Distinct (symbol, local day) pairs with a market bar in `paths`: the symbol-days watched,
    each day in the UTC offset of the first bar (the market's own calendar). Bad lines and files
    go to `rejections`, and the counts of lines read and rejected to `info` (the report's inputs)."""
    days: set[tuple[str, int]] = set()
    offset: int | None = None
    for path in expand_paths(paths):
        for item in read_file(path):
            info.lines += 1
            if isinstance(item, Rejection):
                info.rejected += 1
                rejections.append(item)
                continue
            info.read += 1
            if item.kind != "market_bar":
                continue
            if offset is None:
                offset = utc_offset_us(datetime.fromisoformat(item.ts))
            days.add((item.symbol, (item.ts_us + offset) // DAY_US))
    return len(days)


def utc_offset_us(ts: datetime) -> int:
    """The UTC offset a timestamp was written in, so 'per day' means the brokerage's own calendar day."""
    return (ts.utcoffset() or timedelta(0)) // _MICRO
