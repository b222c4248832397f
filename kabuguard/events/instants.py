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
# later reader (Python's, Arrow's, the STIX export's) can write the time back.
END_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc) - _EPOCH) // _MICRO
# RFC 3339's shape (the `T` may be a space): `fromisoformat` alone also takes ISO 8601 forms that
# other readers of the same lines refuse (`09:00+09`, week dates, a comma before the fraction).
RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-5][0-9])")


class ContractError(ValueError):
    """One record breaks the contract; the message names the field."""


def parse_ts(value: str, field: str = "ts") -> int:
    """Microseconds since the epoch for an RFC 3339 timestamp that carries an offset; the error
    names `field`."""
    try:
        # RFC 3339 allows a lower-case `z`; Python 3.11's parser takes only `Z`.
        dt = datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)
    except (TypeError, ValueError):
        raise ContractError(f"`{field}` is not an RFC 3339 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        raise ContractError(f"`{field}` has no UTC offset: {value!r}")
    if not RFC3339.fullmatch(value):
        raise ContractError(f"`{field}` is ISO 8601 but not RFC 3339 (date, `T`, hh:mm:ss, offset hh:mm): {value!r}")
    instant = (dt - _EPOCH) // _MICRO
    if instant > END_US:
        raise ContractError(f"`{field}` is past the end of year 9999 in UTC: {value!r}")
    return instant
