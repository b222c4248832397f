"""Read contract files (JSONL, JSONL.gz, Parquet, folders of them) into typed events.

Each line is parsed once, here; a bad line becomes a `Rejection` naming its file, line and
reason, and reading goes on. Nothing past this module re-validates an event.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from kabuguard.events.instants import END_US, RFC3339, ContractError, normal, parse_ts
from kabuguard.events.model import EVENT_TYPES, KNOWN_FIELDS, Event

T = TypeVar("T")
SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
_RESERVED = ("ts_us", "extra")
# Whole-number fields a writer may store as floats or decimals: pandas stores an integer column
# with nulls, which every file of mixed event types has, as floats (in Parquet and in JSON:
# `100.0`); a warehouse exports integers as decimal(38,0). A whole value is read as the integer;
# 1.5 stays as it is and is refused, naming the field (a bar's volume excepted: a coin's fraction).
_WHOLE = ("qty", "volume", "shares_outstanding")
_json_decode = msgspec.json.Decoder().decode
# The fast path: straight into the typed records. It refuses unknown fields and nulls, which
# then take the general path below, so that extras are kept and null reads as absent.
_typed_decode = msgspec.json.Decoder(Event).decode
_msgpack_encode = msgspec.msgpack.Encoder().encode
# A damaged compressed stream: zlib's own error, or the file ending inside it.
UNREADABLE = (OSError, EOFError, zlib.error)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line that could not become an event, and why."""

    file: str
    line: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


def event_instant(value: str) -> int:
    """`parse_ts` for an event's own `ts`, which is not before 1970: no brokerage event is that
    old, so it is a placeholder (`0001-01-01`), not a time. (An account may be older.)"""
    instant = parse_ts(value)
    if instant < 0:
        raise ContractError(f"`ts` is before 1970: {value!r}")
    return instant


def stamped(event: Event, ts_us: int | None = None) -> Event:
    """`event` with its instant (`event_instant` of its `ts`, unless already known), and its `ts`
    as the parsers of every later reader of it need (`normal`). An empty `firm` is none, as an
    exporter writing an empty cell means: one account, one event, not two."""
    ts = event.ts
    event.ts_us = event_instant(ts) if ts_us is None else ts_us
    if ts.endswith("z") or ts[17:19] == "60":
        event.ts = normal(ts)
    if event.firm == "":
        event.firm = None
    return event


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
    ts_us = event_instant(ts)
    # Absent fields may come as nulls (Parquet always does); null means absent.
    known = KNOWN_FIELDS[kind]
    fields = {k: v for k, v in obj.items() if v is not None and k in known}
    _whole_numbers(fields, _WHOLE)  # the type's own fields only: another type's stays an extra
    if isinstance(fields.get("holdings"), list):  # and a holding's `qty`, as pandas writes a list of structs
        for holding in fields["holdings"]:
            if isinstance(holding, dict):
                _whole_numbers(holding, ("qty",))
    try:
        event = msgspec.convert(fields, cls)
    except msgspec.ValidationError as exc:
        raise ContractError(str(exc)) from None
    stamped(event, ts_us)
    if len(fields) + sum(v is None for v in obj.values()) != len(obj):
        event.extra = {k: v for k, v in obj.items() if k not in known or k in _RESERVED}
        if any(_nests_deeper(value, MAX_NESTING) for value in event.extra.values()):
            raise ContractError(f"a field outside the contract nests arrays or objects more than {MAX_NESTING} deep")
        try:  # kept fields travel with the event (a sort spilled to disk, the service's state)
            _msgpack_encode(event.extra)
        except OverflowError:
            raise ContractError("a field outside the contract holds an integer beyond 64 bits") from None
    return event


# Kept fields are encoded and decoded again later (a sort spilled to disk, the service's event
# log), deeper in the stack than where they were read: one nested near the interpreter's
# recursion limit was read, then crashed there. No export nests anywhere near this.
MAX_NESTING = 32


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether arrays and objects in `value` nest more than `limit` deep (without recursing)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        if children and depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_line(line: bytes) -> Event:
    """One JSON line into a typed event; raises DecodeError or ContractError."""
    try:
        event = _typed_decode(line)
    except msgspec.ValidationError:
        return event_from_dict(_json_decode(line))
    if event.extra is not None or event.ts_us:
        return event_from_dict(_json_decode(line))
    return stamped(event)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named, and every contract file inside named folders (`hidden` ones aside), in a stable order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # A broken link is kept: reading it reports the file, where skipping it would say nothing.
            found = sorted(p for p in path.rglob("*") if (p.is_file() or p.is_symlink()) and p.name.endswith(SUFFIXES)
                           and not hidden(p.relative_to(path).parts))
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return out


def hidden(parts: Iterable[str]) -> bool:
    """Whether a file found below a named folder, by its path's `parts` below it, is skipped: a name
    beginning with `_` or `.` anywhere there, Hadoop's listing rule (`_SUCCESS`, `.crc`, the
    `_temporary/` folder of a Spark export still being written, hidden folders). Both runners list
    folders by it, so that they read the same files."""
    return any(part.startswith(("_", ".")) for part in parts)


def is_remote(name: str | Path) -> bool:
    """A URI (hdfs://, s3a://, file://), which only Spark lists and reads, not a local path."""
    return "://" in str(name)


def event_files(paths: Iterable[str | Path], expand: Callable[[list[str | Path]], list[T]] = expand_paths) -> list[T]:
    """`expand` (`expand_paths`, or Spark's, which also lists URIs), refusing to find none: a command
    given no event file has nothing to read, and an empty result would look like a quiet month.
    Raises FileNotFoundError naming the paths."""
    paths = list(paths)
    files = expand(paths)
    if not files:
        raise FileNotFoundError(f"no event files ({', '.join(SUFFIXES)}) in {', '.join(map(str, paths)) or 'no path given'}")
    return files


def _json_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line


def read_file(path: Path) -> Iterator[Event | Rejection]:
    """Events of one file, in file order, with a Rejection in place of each bad line."""
    name = str(path)
    for number, item in numbered(path):
        yield Rejection(name, number, item) if isinstance(item, str) else item


def numbered(path: Path) -> Iterator[tuple[int, Event | str]]:
    """Per line or row of one file, in file order, its number and its event or the reason it is
    rejected: the number places it in the input order (the replay's rejections, Spark's `seq`)."""
    if path.name.endswith(".parquet"):
        yield from _parquet_rows(path)
        return
    number = 0
    try:
        for number, line in _json_lines(path):
            yield number, line_item(line)
    except UNREADABLE as exc:
        # Line 0 when the file cannot be opened at all; else where the stream broke.
        yield number + 1 if number else 0, f"unreadable file from here on: {exc}"


def line_item(line: bytes) -> Event | str:
    """One JSON line's event, or the reason it is rejected."""
    try:
        return decode_line(line)
    except msgspec.DecodeError as exc:
        return f"invalid JSON: {exc}"
    except ContractError as exc:
        return str(exc)
    except RecursionError:
        return "JSON nested too deeply"


def _parquet_rows(path: Path) -> Iterator[tuple[int, Event | str]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        yield 0, f"unreadable Parquet file: {exc}"
        return
    repeated = _repeated_column(parquet.schema_arrow.names)
    if repeated:
        yield 0, repeated
        return
    number = 0
    for group in range(parquet.num_row_groups):
        # Row group by row group: a damaged page costs its own group's rows, not the file's.
        first = number + 1
        try:
            batches = list(parquet.iter_batches(batch_size=65536, row_groups=[group]))
        except Exception as exc:  # pyarrow's errors for damaged data vary (OSError, ArrowInvalid...)
            number += parquet.metadata.row_group(group).num_rows
            yield first, f"unreadable Parquet data, rows {first} to {number} (row group {group}): {exc}"
            continue
        for batch in batches:
            for item in batch_events(batch):
                number += 1
                yield number, item


def batch_events(batch: Any) -> Iterator[Event | str]:
    """Per row of an Arrow record batch of contract columns, in order, its event or the reason it
    is rejected (the replay's and Spark's Parquet readers alike)."""
    import pyarrow as pa

    from kabuguard.events.arrow import python_rows, readable

    batch = readable(batch)
    instants = _instants(batch)
    types = dict(zip(batch.schema.names, batch.schema.types))
    fractions = [n for n in _WHOLE if n in types and (pa.types.is_floating(types[n]) or pa.types.is_decimal(types[n]))]
    rows, unreadable = python_rows(batch)
    for i, row in enumerate(rows):
        if i in unreadable:
            yield unreadable[i]
            continue
        if fractions:  # before the fast path, which takes integers only; another type's field stays an extra
            kind = row.get("type")
            known = KNOWN_FIELDS.get(kind, ()) if isinstance(kind, str) else ()
            _whole_numbers(row, (n for n in fractions if n in known))
        try:
            yield _row_fast(row, instants[i]) if instants else event_from_dict(row)
        except (ContractError, msgspec.ValidationError):
            try:
                yield event_from_dict(row)
            except ContractError as exc:
                yield str(exc)


def _whole_numbers(values: dict[str, Any], names: Iterable[str]) -> None:
    """Those of `names` in `values` that hold a whole float or decimal, as integers (`_WHOLE`)."""
    for name in names:
        value = values.get(name)
        if isinstance(value, float) and value.is_integer():
            values[name] = int(value)
        # A Decimal has no is_integer() before Python 3.13 (and no NaN or infinity from Arrow).
        elif isinstance(value, Decimal) and value == value.to_integral_value():
            values[name] = int(value)


def _repeated_column(names: Iterable[str]) -> str | None:
    """Why a Parquet file that names a column twice is refused (Arrow and Parquet allow it): which
    of the two is the field would be a guess, and a row read with either could be the wrong event."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return f"column `{name}` appears more than once: a Parquet file must name each column once"
        seen.add(name)
    return None


def _instants(batch: Any) -> list[int | None] | None:
    """The batch's `ts` as epoch microseconds, cast by Arrow in one go; None if any is unreadable,
    or not RFC 3339 (Arrow also takes `09:01+09:00` or `+0900`): those rows take the row path,
    which rejects them as a JSON line's would be."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = batch.schema.names
    if "ts" not in names or "ts_us" in names or "extra" in names or not pa.types.is_string(batch.schema.field("ts").type):
        return None
    column = batch.column("ts")
    if not pc.all(pc.match_substring_regex(column, f"^{RFC3339.pattern}$")).as_py():
        return None
    try:
        instants = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    except pa.ArrowInvalid:
        return None
    # Arrow also reads year 0000 and times past year 9999 in UTC, which `event_instant` refuses.
    span = pc.min_max(instants).as_py()  # None for a batch of no rows
    if span["min"] is not None and (span["min"] < 0 or span["max"] > END_US):
        return None
    return instants.to_pylist()


def _row_fast(row: dict[str, Any], ts_us: int | None) -> Event:
    """A complete row of contract columns only: one typed conversion, the instant already known."""
    kind = row.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None or ts_us is None or None in row.values():
        return event_from_dict(row)
    return stamped(msgspec.convert(row, cls), ts_us)
