"""Arrow columns as the Python values the contract reader takes from a Parquet row.

pyarrow turns a column into Python objects only when Python's types can hold every value: not a
timestamp with nanoseconds (pandas' default unit), in a time zone pyarrow does not know (`JST`,
`+0900`) or in a year past 9999 in its zone, nor a string that is not UTF-8. Times are converted
here, in Arrow and a column at a time; a value that still has no Python form costs its own row,
named, never the rest of the file.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def readable(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with its time columns in forms Python holds: a timestamp as RFC 3339 text (see
    `_text`), a time of day or a duration in nanoseconds cut to the microsecond, as `parse_ts`
    reads a seventh fraction digit and beyond of a JSON line's time."""
    arrays = [_readable(array) for array in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def python_rows(batch: pa.RecordBatch) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Each row as a dict, and for each row holding a value that has no Python form, why (naming
    the first such column). A batch converts in one go; only a column that fails is read value by
    value."""
    try:
        return batch.to_pylist(), {}
    except Exception:  # pyarrow raises ValueError, OverflowError, a time zone's KeyError...
        pass
    columns: dict[str, list[Any]] = {}
    unreadable: dict[int, str] = {}
    for name, array in zip(batch.schema.names, batch.columns):
        try:
            columns[name] = array.to_pylist()
        except Exception:  # as above
            columns[name] = _one_by_one(name, array, unreadable)
    return [{name: values[row] for name, values in columns.items()} for row in range(batch.num_rows)], unreadable


def _readable(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_timestamp(kind):
        return _text(array)
    if pa.types.is_duration(kind) and kind.unit == "ns":
        return array.cast(pa.duration("us"), safe=False)
    if pa.types.is_time64(kind) and kind.unit == "ns":
        return array.cast(pa.time64("us"), safe=False)
    return array


def _text(array: pa.Array) -> pa.Array:
    """A timestamp column as text: with a time zone, the instant in UTC (`...Z`); without, the local
    time without an offset, which the reader refuses as it refuses such a string. The zone is not
    looked up: Arrow holds the instant in UTC whatever the zone is called, and writing it in the
    zone would fail for a name no library knows (`JST`), a year past 9999 there, or an offset with
    seconds (Tokyo's +09:18:59 before 1888), which RFC 3339 cannot write. Nanoseconds are floored
    to the microsecond, as `parse_ts` reads them; a zero fraction is left out."""
    zone = "UTC" if array.type.tz is not None else None
    values = array.view(pa.timestamp(array.type.unit, zone))
    if array.type.unit == "ns":
        values = pc.floor_temporal(values, unit="microsecond").cast(pa.timestamp("us", zone))
    text = pc.strftime(values, format="%Y-%m-%dT%H:%M:%S" + ("Z" if zone else ""))
    return pc.replace_substring_regex(text, r"\.0+(Z?)$", r"\1")


def _one_by_one(name: str, array: pa.Array, unreadable: dict[int, str]) -> list[Any]:
    values = []
    for row in range(len(array)):
        try:
            values.append(array[row].as_py())
        except Exception as exc:  # as in `python_rows`
            values.append(None)
            unreadable.setdefault(row, f"`{name}` cannot be read: {exc}")
    return values
