"""Wall-clock stamps for the console's records (ISO 8601 UTC) and sessions (microseconds)."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def now_us() -> int:
    return time.time_ns() // 1000
