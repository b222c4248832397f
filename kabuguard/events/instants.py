"""Times in the contract: RFC 3339 with an offset, read as instants (µs since the epoch).

Beside the typed records, which check their own time fields with it (`model.Account`), and
below the reader, which stamps each event's instant.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
# Past the last instant of year 9999 in UTC (`9999-12-31T23:59:59-05:00`) no calendar of a
# later reader (Python's, Arrow's, the STIX export's) can write the time back; nor, on its last
# day, in a zone east of UTC (the STIX export's JST) or rounded up (msgspec, in `evaluate`).
END_US = (datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=timezone.utc) - _EPOCH) // _MICRO
# RFC 3339's shape (the `T` may be a space): `fromisoformat` alone also takes ISO 8601 forms that
# other readers of the same lines refuse (`09:00+09`, week dates, a comma before the fraction).
RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-5][0-9])")


class ContractError(ValueError):
    """One record breaks the contract; the message names the field."""


def normal(value: str) -> str:
    """An RFC 3339 timestamp as every later reader of it reads it. RFC 3339 allows a lower-case
    `z`, which Python 3.11's parser refuses, and a leap second (`23:59:60`), which Python's,
    Arrow's and msgspec's parsers refuse: it is written as the last microsecond before the next
    second, so it keeps its place in the order."""
    if value.endswith("z"):
        value = value[:-1] + "Z"
    if value[17:19] == "60" and (shape := RFC3339.fullmatch(value)):
        value = value[:17] + "59.999999" + shape.group(2)
    return value


def parse_ts(value: str, field: str = "ts") -> int:
    """Microseconds since the epoch for an RFC 3339 timestamp that carries an offset; the error
    names `field`."""
    try:
        dt = datetime.fromisoformat(normal(value))
    except (TypeError, ValueError):
        raise ContractError(f"`{field}` is not an RFC 3339 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        raise ContractError(f"`{field}` has no UTC offset: {value!r}")
    if not RFC3339.fullmatch(value):
        raise ContractError(f"`{field}` is ISO 8601 but not RFC 3339 (date, `T`, hh:mm:ss, offset hh:mm): {value!r}")
    instant = (dt - _EPOCH) // _MICRO
    if instant > END_US:
        raise ContractError(f"`{field}` is past 9999-12-30 in UTC: {value!r}")
    return instant
