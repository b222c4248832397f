"""Arrow columns as the Python values the contract reader takes from a Parquet row.

pyarrow turns a column into Python objects only when Python's types can hold every value: not a
timestamp with nanoseconds (pandas' default unit), in a time zone pyarrow does not know (`JST`,
`+0900`) or in a year past 9999 in its zone, nor a string that is not UTF-8. Times are converted
here (nested ones too), in Arrow and a column at a time; a value that still has no Python form
costs its own row, named, never the rest of the file.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


# Seconds from 1970 to 0001-01-01T00:00:00 and to 9999-12-31T23:59:59 (UTC).
_FIRST_SECOND = -62_135_596_800
_LAST_SECOND = 253_402_300_799


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
    # Inside a struct, list or map (a column outside the contract, kept as it is), nanoseconds go
    # to microseconds too: pyarrow gives pandas' objects for them, which no encoder keeps.
    micro = _microseconds(kind)
    return array if micro == kind else array.cast(micro, safe=False)


def _microseconds(kind: pa.DataType) -> pa.DataType:
    """`kind` with every nanosecond timestamp, duration and time of day in it in microseconds."""
    if pa.types.is_timestamp(kind) or pa.types.is_duration(kind) or pa.types.is_time64(kind):
        if kind.unit != "ns":
            return kind
        return (pa.timestamp("us", kind.tz) if pa.types.is_timestamp(kind)
                else pa.duration("us") if pa.types.is_duration(kind) else pa.time64("us"))
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(_microseconds(kind.field(i).type)) for i in range(kind.num_fields)])
    if pa.types.is_map(kind):
        return pa.map_(kind.key_field.with_type(_microseconds(kind.key_type)),
                       kind.item_field.with_type(_microseconds(kind.item_type)))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        value = kind.value_field.with_type(_microseconds(kind.value_type))
        if pa.types.is_fixed_size_list(kind):
            return pa.list_(value, kind.list_size)
        return pa.large_list(value) if pa.types.is_large_list(kind) else pa.list_(value)
    return kind


def _text(array: pa.Array) -> pa.Array:
    """A timestamp column as text: with a time zone, the instant in UTC (`...Z`); without, the local
    time without an offset, which the reader refuses as it refuses such a string. The zone is not
    looked up: Arrow holds the instant in UTC whatever the zone is called, and writing it in the
    zone would fail for a name no library knows (`JST`), a year past 9999 there, or an offset with
    seconds (Tokyo's +09:18:59 before 1888), which RFC 3339 cannot write. Nanoseconds are floored
    to the microsecond, as `parse_ts` reads them; a zero fraction is left out."""
    zone = "UTC" if array.type.tz is not None else None
    unit = array.type.unit
    ticks = array.view(pa.int64())
    if unit == "ns":  # in integers: flooring the time near int64's least value left its range
        whole = pc.divide(ticks, 1000)  # towards zero: a time before 1970 floors one lower
        ticks = pc.subtract(whole, pc.less(ticks, pc.multiply(whole, 1000)).cast(pa.int64()))
        unit = "us"
    text = pc.strftime(ticks.view(pa.timestamp(unit, zone)), format="%Y-%m-%dT%H:%M:%S" + ("Z" if zone else ""))
    text = pc.replace_substring_regex(text, r"\.0+(Z?)$", r"\1")
    # Arrow writes the year in 16 bits: year 67561 came out as 2025. Outside years 1 to 9999 the
    # text says so, and the reader refuses it as it refuses any time it cannot read.
    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000}[unit]
    outside = pc.or_(pc.less(ticks, _FIRST_SECOND * per_second), pc.greater(ticks, _LAST_SECOND * per_second))
    return pc.if_else(outside, pa.scalar("a time outside the years 1 to 9999"), text)


def _one_by_one(name: str, array: pa.Array, unreadable: dict[int, str]) -> list[Any]:
    values = []
    for row in range(len(array)):
        try:
            values.append(array[row].as_py())
        except Exception as exc:  # as in `python_rows`
            values.append(None)
            unreadable.setdefault(row, f"`{name}` cannot be read: {exc}")
    return values
