"""Read contract files (JSONL, JSONL.gz, Parquet, folders of them) into typed events.

Each line is parsed once, here; a bad line becomes a `Rejection` naming its file, line and
reason, and reading goes on. Nothing past this module re-validates an event.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec

from kabuguard.events.model import EVENT_TYPES, KNOWN_FIELDS, Event

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
_RESERVED = ("ts_us", "extra")
_json_decode = msgspec.json.Decoder().decode
# The fast path: straight into the typed records. It refuses unknown fields and nulls, which
# then take the general path below, so that extras are kept and null reads as absent.
_typed_decode = msgspec.json.Decoder(Event).decode


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line that could not become an event, and why."""

    file: str
    line: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


class ContractError(ValueError):
    """One record breaks the contract; the message names the field."""


def parse_ts(value: str) -> int:
    """Microseconds since the epoch for an RFC 3339 timestamp that carries an offset."""
    try:
        dt = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ContractError(f"`ts` is not an RFC 3339 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        raise ContractError(f"`ts` has no UTC offset: {value!r}")
    return (dt - _EPOCH) // _MICRO


def event_from_dict(obj: Any) -> Event:
    """Validate one decoded record against the contract; raise ContractError naming the field."""
    if not isinstance(obj, dict):
        raise ContractError(f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ContractError(f"unknown or missing `type`: {kind!r}")
    ts = obj.get("ts")
    if not isinstance(ts, str):
        raise ContractError("missing or non-string `ts`")
    ts_us = parse_ts(ts)
    # Absent fields may come as nulls (Parquet always does); null means absent.
    known = KNOWN_FIELDS[kind]
    fields = {k: v for k, v in obj.items() if v is not None and k in known}
    try:
        event = msgspec.convert(fields, cls)
    except msgspec.ValidationError as exc:
        raise ContractError(str(exc)) from None
    event.ts_us = ts_us
    if len(fields) + sum(v is None for v in obj.values()) != len(obj):
        event.extra = {k: v for k, v in obj.items() if k not in known or k in _RESERVED}
    return event


def decode_line(line: bytes) -> Event:
    """One JSON line into a typed event; raises DecodeError or ContractError."""
    try:
        event = _typed_decode(line)
    except msgspec.ValidationError:
        return event_from_dict(_json_decode(line))
    if event.extra is not None or event.ts_us:
        return event_from_dict(_json_decode(line))
    event.ts_us = parse_ts(event.ts)
    return event


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, and every contract file inside named folders, in a stable order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return out


def _json_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line


def read_file(path: Path) -> Iterator[Event | Rejection]:
    """Events of one file, in file order, with a Rejection in place of each bad line."""
    name = str(path)
    if path.name.endswith(".parquet"):
        yield from _read_parquet(path)
        return
    try:
        for number, line in _json_lines(path):
            try:
                yield decode_line(line)
            except msgspec.DecodeError as exc:
                yield Rejection(name, number, f"invalid JSON: {exc}")
            except ContractError as exc:
                yield Rejection(name, number, str(exc))
    except (OSError, EOFError) as exc:
        yield Rejection(name, 0, f"unreadable file: {exc}")


def _read_parquet(path: Path) -> Iterator[Event | Rejection]:
    import pyarrow.parquet as pq

    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        yield Rejection(name, 0, f"unreadable Parquet file: {exc}")
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=65536):
        instants = _instants(batch)
        for i, row in enumerate(batch.to_pylist()):
            number += 1
            try:
                yield _row_fast(row, instants[i]) if instants else _row(row)
            except (ContractError, msgspec.ValidationError):
                try:
                    yield _row(row)
                except ContractError as exc:
                    yield Rejection(name, number, str(exc))


def _instants(batch: Any) -> list[int | None] | None:
    """The batch's `ts` as epoch microseconds, cast by Arrow in one go; None if any is unreadable."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.schema.names
    if "ts" not in names or "ts_us" in names or "extra" in names or not pa.types.is_string(batch.schema.field("ts").type):
        return None
    try:
        return pc.cast(batch.column("ts"), pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    except pa.ArrowInvalid:
        return None


def _row_fast(row: dict[str, Any], ts_us: int | None) -> Event:
    """A complete row of contract columns only: one typed conversion, the instant already known."""
    cls = EVENT_TYPES.get(row.get("type"))  # type: ignore[arg-type]
    if cls is None or ts_us is None or None in row.values():
        return _row(row)
    event = msgspec.convert(row, cls)
    event.ts_us = ts_us
    return event


def _row(row: dict[str, Any]) -> Event:
    ts = row.get("ts")
    if isinstance(ts, datetime):
        row["ts"] = ts.isoformat()
    return event_from_dict(row)
