"""Writes the run: events as gzip JSON Lines per day, market bars as Parquet, and labels.

Files are byte-identical for a seed: gzip headers carry no name or time, ids are assigned in
time order after sorting (so an id says nothing about who made the event), and Parquet row
groups are written in day order.
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kabuguard.sim.brokerage import Recorded
from kabuguard.sim.clock import BARS_PER_DAY, MS_PER_MIN, bar_start_ms, iso
from kabuguard.sim.market import DayBars

BAR_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("type", pa.string()), ("ts", pa.string()), ("symbol", pa.string()),
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()),
    ("volume", pa.int64()),
])


def _write_gzip(path: Path, lines: list[bytes]) -> None:
    # gzip.compress writes no file name, and mtime=0 no time: the bytes depend on content only.
    path.write_bytes(gzip.compress(b"".join(lines), compresslevel=5, mtime=0))


class RunWriter:
    def __init__(self, out: Path) -> None:
        self.events_dir = out / "events"
        self.events_dir.mkdir(parents=True, exist_ok=True)
        self._encoder = msgspec.json.Encoder()
        self._labels = (out / "labels.jsonl").open("wb")
        self._bars = pq.ParquetWriter(self.events_dir / "market_bars.parquet", BAR_SCHEMA, compression="zstd")
        self.counts: dict[str, int] = {}
        self.label_counts: dict[str, int] = {}
        # Per attack style, the victims' accounts the attackers got into, and traded in.
        self.hijacked: dict[str, set[str]] = {}
        self.traded: dict[str, set[str]] = {}
        # Compression and Parquet encoding release the GIL: one thread does them while the
        # simulation goes on with the next day (a second core's worth on big runs).
        self._background = ThreadPoolExecutor(max_workers=1)
        self._pending: list[Future] = []

    def reference(self, events: list[dict]) -> None:
        """Instruments and opening account states, before any activity."""
        for i, event in enumerate(events):
            event["event_id"] = f"ref-{i:07d}"
            self._count(event["type"])
        self._submit(_write_gzip, self.events_dir / "reference.jsonl.gz", [self._encoder.encode(e) + b"\n" for e in events])

    def activity(self, day: dt.date, events: list[Recorded]) -> None:
        """One calendar day's logins, changes, orders and executions, in time order."""
        if not events:
            return
        events.sort(key=lambda r: r.ms)  # stable: same-instant events keep their causal order
        stem = f"{day:%Y%m%d}"
        orders = 0
        for i, r in enumerate(events):
            r.event["event_id"] = f"ev-{stem}-{i:07d}"
            r.event["ts"] = iso(r.ms)
            if r.event["type"] == "order":
                orders += 1
                r.event["order_id"] = f"od-{stem}-{orders:06d}"
        lines = []
        for r in events:
            event = r.event
            if event["type"] == "execution":
                event = event | {"order_id": event["order_id"]["order_id"]}
            self._count(event["type"])
            lines.append(self._encoder.encode(event) + b"\n")
            if r.tag is not None:
                self._label(event, r)
        self._submit(_write_gzip, self.events_dir / f"activity-{day:%Y-%m-%d}.jsonl.gz", lines)

    def _label(self, event: dict, r: Recorded) -> None:
        tag = r.tag
        line = {
            "event_id": event["event_id"], "fraud": tag.fraud, "campaign_id": tag.campaign_id,
            "account_id": event["account_id"], "type": event["type"], "ts": event["ts"],
            "attack_style": tag.attack_style, "role": tag.role, "group": tag.group,
        }
        if "firm" in event:
            line["firm"] = event["firm"]
        key = tag.attack_style or tag.group or "benign"
        self.label_counts[key] = self.label_counts.get(key, 0) + 1
        if tag.role == "victim" and (event["type"] == "order" or event.get("success")):
            seen = self.traded if event["type"] == "order" else self.hijacked
            seen.setdefault(key, set()).add(event["account_id"])
        self._labels.write(self._encoder.encode(line) + b"\n")

    def bars(self, day: dt.date, codes: np.ndarray, bars: DayBars) -> None:
        symbol, minute = np.nonzero(bars.volume > 0)
        stamps = np.array([iso(bar_start_ms(day, m) + MS_PER_MIN) for m in range(BARS_PER_DAY)])
        order = np.lexsort((symbol, minute))  # time first, then symbol
        symbol, minute = symbol[order], minute[order]
        n = len(symbol)
        table = pa.table({
            "event_id": pc.binary_join_element_wise(
                f"mb-{day:%Y%m%d}-", pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 7, "0"), ""
            ),
            "type": ["market_bar"] * n,
            "ts": stamps[minute],
            "symbol": codes[symbol],
            "open": bars.open[symbol, minute],
            "high": bars.high[symbol, minute],
            "low": bars.low[symbol, minute],
            "close": bars.close[symbol, minute],
            "volume": bars.volume[symbol, minute],
        }, schema=BAR_SCHEMA)
        self._submit(self._bars.write_table, table)
        self._count("market_bar", n)

    def episodes(self, lines: list[dict]) -> None:
        for line in lines:
            self._labels.write(self._encoder.encode(line) + b"\n")
        self.label_counts["pump_episode"] = len(lines)

    def close(self) -> None:
        self._submit(self._bars.close)
        self._background.shutdown()
        for job in self._pending:
            job.result()  # re-raise a failed write here
        self._labels.close()

    def _submit(self, fn: Callable[..., None], *args: object) -> None:
        """Run `fn` on the writer thread, in submission order (row groups stay in day order);
        at most a few jobs wait, so memory stays bounded, and a failed write surfaces soon."""
        while len(self._pending) >= 3:
            self._pending.pop(0).result()
        self._pending.append(self._background.submit(fn, *args))

    def _count(self, event_type: str, n: int = 1) -> None:
        self.counts[event_type] = self.counts.get(event_type, 0) + n
