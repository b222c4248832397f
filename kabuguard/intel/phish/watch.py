"""Follow a stream of new certificates or newly observed domains and alert on brand phishing.

Records arrive as certstream-style JSON lines (``data.leaf_cert.all_domains``), as objects with
a ``domain`` or ``domains`` field, or as bare domain names, from a file, stdin or a websocket.
A record that cannot be read is counted and skipped: one bad line must not stop a monitor.
Every domain is scored once per run; alerts become shareable indicators, optionally joined by
indicators others have already confirmed (a random name with no brand token in it can still be
known as a phish of the brand).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from kabuguard.intel.phish.domains import Target, parse_target, undecodable
from kabuguard.intel.phish.indicators import Indicator, IndicatorStore, indicator
from kabuguard.intel.phish.score import Reason, Scorer, ScoringConfig, Verdict


class RecordError(ValueError):
    """A stream record that holds no usable domain."""


def _first_seen(value: object) -> str:
    """An RFC 3339 instant from epoch seconds or a timestamp with an offset; now when absent.

    Anything else present (an object, a list, true, "") is an error, not now: a stamp silently
    replaced by the time of reading would date old phish as new."""
    if value is None:
        return datetime.now(UTC).isoformat(timespec="seconds")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
        except (OverflowError, OSError, ValueError):  # 1e20, Infinity, NaN
            raise RecordError(f"first-seen time {value!r} is not an instant") from None
    if not isinstance(value, str):
        raise RecordError(f"first-seen time {value!r} is neither epoch seconds nor an RFC 3339 timestamp")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(f"first-seen time {value!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise RecordError(f"first-seen time {value!r} has no UTC offset")
    return value


def domains_of(line: str) -> tuple[list[Any], str]:
    """The domains in one stream record (as the record has them: `watch` judges each) and when
    they were first seen; raises RecordError."""
    text = line.strip()
    if not text.isascii() and undecodable(text):
        raise RecordError("not valid UTF-8")
    if text.startswith("{") and '"heartbeat"' in text:
        try:
            if json.loads(text).get("message_type") == "heartbeat":
                return [], _first_seen(None)  # certstream's keep-alive: no record, nothing wrong
        except (json.JSONDecodeError, AttributeError):
            pass  # judged below
    if not text.startswith("{"):
        if not text or " " in text:
            raise RecordError("not a JSON object or a domain name")
        return [text], _first_seen(None)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(record, dict):
        raise RecordError("a JSON record must be an object")
    data = record.get("data") if isinstance(record.get("data"), dict) else record
    leaf = data.get("leaf_cert") if isinstance(data.get("leaf_cert"), dict) else {}
    found = leaf.get("all_domains") or data.get("domains") or ([data["domain"]] if data.get("domain") else [])
    if not isinstance(found, list) or not found:
        raise RecordError("no domain in the record (expected data.leaf_cert.all_domains, domains or domain)")
    stamps = (data.get("seen"), data.get("first_seen"), leaf.get("not_before"))
    return found, _first_seen(next((s for s in stamps if s is not None), None))


def _websocket(url: str, reconnects: int, backoff: float) -> Iterator[str]:
    """Messages of a websocket; a dropped connection is opened again up to `reconnects` times,
    waiting `backoff` seconds, doubled each time up to a minute (certificate feeds drop often)."""
    from websockets.exceptions import ConnectionClosed, WebSocketException
    from websockets.sync.client import connect

    for attempt in range(reconnects + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), 60.0))
        try:
            ws = connect(url, open_timeout=10, max_size=2**22)
        except (OSError, WebSocketException) as exc:
            if attempt == reconnects:  # the caller reports it like a missing file
                raise OSError(str(exc)) from None
            continue
        with ws:
            try:
                for message in ws:
                    yield message if isinstance(message, str) else message.decode("utf-8", "surrogateescape")
            except ConnectionClosed:
                pass


def read_lines(source: str, stdin: IO[str], reconnects: int = 0, backoff: float = 1.0) -> Iterator[str]:
    """Lines of a file, of stdin ("-"), or messages of a websocket (ws:// or wss://)."""
    if source == "-":
        yield from stdin
    elif source.startswith(("ws://", "wss://")):
        yield from _websocket(source, reconnects, backoff)
    else:
        with Path(source).open(encoding="utf-8", errors="surrogateescape") as f:  # a bad byte rejects its line only
            yield from f


@dataclass
class WatchStats:
    """What the progress line shows and the command reports at the end."""

    records: int = 0
    domains: int = 0
    alerts: int = 0
    rejected: int = 0
    started: float = 0.0

    def line(self) -> str:
        rate = self.domains / max(time.monotonic() - self.started, 1e-9)
        return f"{self.records} records, {self.domains} domains ({rate:,.0f}/s), {self.alerts} alerts, {self.rejected} rejected"


class Monitor:
    """Scores each new domain once and turns alerts into indicators.

    It remembers the last `remember` hosts it scored, oldest forgotten first: a certificate stream
    repeats a host within minutes (precertificate, certificate, renewals), and names millions of
    hosts a day, so a set of every host would grow for the life of the watch. A host seen again
    after it was forgotten is scored, and may alert, again."""

    def __init__(self, scorer: Scorer, threshold: float, known: IndicatorStore | None = None,
                 remember: int = 500_000) -> None:
        self.scorer = scorer
        self.threshold = threshold
        self.known = known
        self.remember = remember
        self.seen: dict[str, None] = {}  # insertion order: the oldest first

    def check(self, domain: str, first_seen: str) -> tuple[Verdict, Indicator] | None:
        """Score a domain not seen lately; the verdict and indicator if it alerts.

        Raises ValueError for a name that is no host, each time it comes: only a parsed host is
        remembered, so a repeated bad name is rejected again rather than skipped unseen."""
        name = domain.strip().removeprefix("*.")
        key = name.lower()  # case kept for the parse: a path's case is part of the URL
        if key in self.seen:
            return None
        target = parse_target(name)
        self.seen[key] = None
        if len(self.seen) > self.remember:
            del self.seen[next(iter(self.seen))]
        verdict = self.scorer.score_target(target)
        if not verdict.alert(self.threshold) and not verdict.official and self.known is not None:
            verdict = self._from_known(verdict, target, self.known)
        if not verdict.alert(self.threshold):
            return None
        return verdict, indicator(verdict, first_seen)

    def _from_known(self, verdict: Verdict, target: Target, known: IndicatorStore) -> Verdict:
        brand = known.brand_for(target)
        if brand not in self.scorer.names:  # unknown, or shared as phishing of a brand not in the registry
            return verdict
        weight = self.scorer.config.weights["shared-indicator"]
        reason = Reason("shared-indicator", weight, "shared by peers", brand, verdict.registered_domain)
        score = 1 - (1 - verdict.score) * (1 - weight)
        return verdict._replace(brand=brand, brand_name=self.scorer.names[brand], score=score, reasons=(reason, *verdict.reasons))


def load_known(path: Path, config: ScoringConfig) -> IndicatorStore:
    """Indicators shared by others, as JSON lines with `url` (or `domain`) and `brand`."""
    store = IndicatorStore(config)
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                store.confirm(parse_target(item.get("url") or item["domain"]), item["brand"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}:{number}: not an indicator ({exc}); expected JSON with url or domain, and brand") from None
    return store


def watch(
    lines: Iterable[str],
    monitor: Monitor,
    emit: Callable[[Verdict, Indicator], None],
    reject: Callable[[int, str], None],
    progress: Callable[[WatchStats], None] | None = None,
    max_records: int | None = None,
) -> WatchStats:
    """Run the monitor over stream lines; calls `emit` per alert and `reject` per bad record."""
    stats = WatchStats(started=time.monotonic())
    shown = stats.started
    for line in lines:
        if not line.strip():
            continue
        stats.records += 1
        try:
            domains, first_seen = domains_of(line)
        except ValueError as exc:  # RecordError
            stats.rejected += 1
            reject(stats.records, str(exc))
            domains = []
        for domain in domains:  # one name that does not parse costs only itself
            stats.domains += 1
            if not isinstance(domain, str):  # a record's names are the feed's JSON: any type
                stats.rejected += 1
                reject(stats.records, f"{json.dumps(domain)[:80]}: not a name (a JSON string)")
                continue
            try:
                hit = monitor.check(domain, first_seen)
            except ValueError as exc:
                stats.rejected += 1
                reject(stats.records, f"{domain[:80]!r}: {exc}")
                continue
            if hit is not None:
                stats.alerts += 1
                emit(*hit)
        if progress is not None and time.monotonic() - shown >= 0.5:  # twice a second is enough to read
            progress(stats)
            shown = time.monotonic()
        if max_records is not None and stats.records >= max_records:
            break
    return stats
