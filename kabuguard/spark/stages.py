"""The core's keyed stages as Spark partitions: one stage at a time, evidence carried per event.

Each stage repartitions the events it handles by its key, sorts every partition by the total
order (`ts_us`, `seq`) and runs the core's own `KeyedStage` over it with a partition-local
`MemoryStore`: a key's events all land in one partition and arrive in the replay's order, so
its state evolves exactly as in the replay. Every event carries its `Evidence` (findings,
session risk, price, alerts, notes) from stage to stage in the replay's stage order, which is
the per-event join by event of the stages' outputs. Events a stage does not handle skip its
shuffle. Notes (campaign members, a live playbook's containment) become notices placed right
after the event that raised them, in the final stage's partitions of the accounts they name.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from kabuguard.detectors.base import Evidence, Finding
from kabuguard.detectors.liquidity import lacks_liquidity, liquidity_by_day, utc_day, with_liquidity
from kabuguard.engine import Pipeline
from kabuguard.events.model import Event
from kabuguard.policy import Policy
from kabuguard.spark.read import STAGE_KEYS

STAGE_COLUMNS = ("seq long, ts_us long, kind string, "
                 + "".join(f"key_{name} string, " for name in STAGE_KEYS)
                 + "event binary, ev binary, noted boolean")
# Column positions in STAGE_COLUMNS rows.
_EVENT = 3 + len(STAGE_KEYS)
_EV = _EVENT + 1
FINAL_IN_COLUMNS = "seq long, ts_us long, sub int, key_final string, event binary, ev binary, note binary"
OUT_COLUMNS = "seq long, ts_us long, decision binary, verdict string, alerts binary, alert_types string"

_Carried = tuple[list[Finding], float, tuple[float, float], float | None, int, float, list[dict[str, Any]],
                 list[tuple[str, Any]]]
_pack = msgspec.msgpack.Encoder().encode
_unpack_event = msgspec.msgpack.Decoder(Event).decode
_unpack_evidence = msgspec.msgpack.Decoder(_Carried).decode
_unpack_note = msgspec.msgpack.Decoder(tuple[str, str, Any]).decode
_json = msgspec.json.Encoder().encode


class References:
    """Instrument records by symbol in the total order: the latest strictly before an event; for
    an order, with the liquidity its symbol's bars gave up to its day where the record has none
    (`traded`: per symbol, the first days of `detectors.liquidity.liquidity_by_day`'s spans and
    their liquidity), as the replay reads it from the symbol stage's state."""

    def __init__(self, by_symbol: dict[str, tuple[list[tuple[int, int]], list[bytes]]],
                 traded: dict[str, tuple[list[int], list[tuple[float, float] | None]]]) -> None:
        self._by_symbol = by_symbol
        self._traded = traded
        self._decoded: dict[tuple[str, int], Any] = {}

    def as_of(self, event: Any, ts_us: int, seq: int) -> Any:
        if event.kind not in ("order", "execution"):
            return None
        record = self._record(event.symbol, ts_us, seq)
        if event.kind == "order" and lacks_liquidity(record):
            spans = self._traded.get(event.symbol)
            at = bisect_right(spans[0], utc_day(ts_us)) - 1 if spans else -1
            if at >= 0:
                record = with_liquidity(record, spans[1][at], event)
        return record

    def _record(self, symbol: str, ts_us: int, seq: int) -> Any:
        found = self._by_symbol.get(symbol)
        if found is None:
            return None
        at = bisect_left(found[0], (ts_us, seq)) - 1
        if at < 0:
            return None
        record = self._decoded.get((symbol, at))
        if record is None:
            record = self._decoded[(symbol, at)] = _unpack_event(found[1][at])
        return record


def liquidity_spans(bars: Iterable[tuple[int, int, bytes]]) -> tuple[list[int], list[tuple[float, float] | None]]:
    """One symbol's bars, as (ts_us, seq, packed event), to its liquidity spans (`References`)."""
    spans = list(liquidity_by_day(_unpack_event(event) for _, _, event in sorted(bars)))
    return [day for day, _ in spans], [found for _, found in spans]


def restore(ev: Evidence, carried: bytes | None) -> None:
    """Put earlier stages' evidence back on a fresh Evidence (network and instrument are recomputed)."""
    if carried is None:
        return
    findings, session_llr, market, price, first_order_us, llr, alerts, notes = _unpack_evidence(carried)
    ev.findings, ev.session_llr, ev.market, ev.price, ev.llr, ev.alerts = findings, session_llr, market, price, llr, alerts
    ev.first_order_us = first_order_us
    ev.notes = [(note, payload) for note, payload in notes]


def carry(ev: Evidence) -> bytes | None:
    """The evidence later stages read, or None while it is still that of a fresh Evidence."""
    if (not ev.findings and not ev.alerts and not ev.notes and ev.price is None and not ev.first_order_us
            and _zero(ev.session_llr) and _zero(ev.llr) and _zero(ev.market[0]) and _zero(ev.market[1])):
        return None
    return _pack((ev.findings, ev.session_llr, ev.market, ev.price, ev.first_order_us, ev.llr, ev.alerts, ev.notes))


def _zero(x: float) -> bool:
    return x == 0.0 and math.copysign(1.0, x) > 0


class StageTask:
    """mapInArrow function running stage `name` over one time-sorted partition.

    A class rather than a closure: Spark pickles it by reference, with only its arguments.
    """

    def __init__(self, name: str, policy: Policy, refs: Any) -> None:
        self.name, self.policy, self.refs = name, policy, refs

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        pipeline = Pipeline(self.policy)  # fresh detectors and state: one per partition
        stage = next(s for s in pipeline.stages if s.name == self.name)
        references = References(*self.refs.value)
        for batch in batches:
            seqs = batch.column(0).to_pylist()
            times = batch.column(1).to_pylist()
            events = batch.column(_EVENT).to_pylist()
            carried = batch.column(_EV).to_pylist()
            out_ev: list[bytes | None] = []
            noted: list[bool] = []
            # Consecutive market bars wait to be decided in batches, as the replay does; every
            # other event's evidence is carried at once, so it is freed as soon as it is written.
            bars: list[Any] = []
            bar_evs: list[Evidence] = []

            def decide_bars() -> None:
                pipeline.run_stage_bars(stage, bars, bar_evs)
                first = len(out_ev) - len(bars)
                for i, ev in enumerate(bar_evs, start=first):
                    out_ev[i], noted[i] = carry(ev), bool(ev.notes)
                bars.clear()
                bar_evs.clear()

            for seq, ts_us, raw, before in zip(seqs, times, events, carried):
                event = _unpack_event(raw)
                ev = pipeline.evidence(event, references.as_of(event, ts_us, seq))
                restore(ev, before)
                if event.kind == "market_bar":
                    bars.append(event)
                    bar_evs.append(ev)
                    out_ev.append(None)
                    noted.append(False)
                    continue
                if bars:
                    decide_bars()
                pipeline.run_stage(stage, event, ev)
                out_ev.append(carry(ev))
                noted.append(bool(ev.notes))
            if bars:
                decide_bars()
            yield pa.RecordBatch.from_arrays(
                batch.columns[:_EV] + [pa.array(out_ev, pa.binary()), pa.array(noted, pa.bool_())],
                schema=batch.schema)


def notice_task(batches: Iterator[Any]) -> Iterator[Any]:
    """Notes raised by an event, one notice per key they name, placed just after the event."""
    import pyarrow as pa

    for batch in batches:
        rows: dict[str, list[Any]] = {"seq": [], "ts_us": [], "sub": [], "key_final": [], "note": []}
        for seq, ts_us, carried in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(),
                                       batch.column(_EV).to_pylist()):
            ev = Evidence()
            restore(ev, carried)
            sub = 0
            for note, payload in ev.notes:
                for key in Pipeline.note_targets(note, payload):
                    sub += 1
                    rows["seq"].append(seq)
                    rows["ts_us"].append(ts_us)
                    rows["sub"].append(sub)
                    rows["key_final"].append(key)
                    rows["note"].append(_pack((key, note, payload)))
        yield pa.RecordBatch.from_pydict({
            "seq": pa.array(rows["seq"], pa.int64()), "ts_us": pa.array(rows["ts_us"], pa.int64()),
            "sub": pa.array(rows["sub"], pa.int32()), "key_final": pa.array(rows["key_final"], pa.string()),
            "event": pa.array([None] * len(rows["seq"]), pa.binary()),
            "ev": pa.array([None] * len(rows["seq"]), pa.binary()),
            "note": pa.array(rows["note"], pa.binary()),
        })


class FinalTask:
    """mapInArrow function running the final stage (decisions) over one time-sorted partition."""

    def __init__(self, policy: Policy, refs: Any) -> None:
        self.policy, self.refs = policy, refs

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        pipeline = Pipeline(self.policy)
        references = References(*self.refs.value)
        final = pipeline.final
        for batch in batches:
            out = _Out()
            for seq, ts_us, raw, before, note in zip(
                    batch.column(0).to_pylist(), batch.column(1).to_pylist(), batch.column(4).to_pylist(),
                    batch.column(5).to_pylist(), batch.column(6).to_pylist()):
                if raw is None:
                    key, name, payload = _unpack_note(note)
                    pipeline.apply_note(key, name, payload)
                    continue
                event = _unpack_event(raw)
                ev = pipeline.evidence(event, references.as_of(event, ts_us, seq))
                restore(ev, before)
                notes = len(ev.notes)
                decision = pipeline.run_stage(final, event, ev)
                # The final stage's own notes (a playbook on an account alert) are for its key,
                # which this partition holds; they apply right after the event, as in `process`.
                for note, payload in ev.notes[notes:]:
                    for key in Pipeline.note_targets(note, payload):
                        if key != final.key_of(event):
                            raise RuntimeError(f"the final stage raised a note for another account ({note}): "
                                               "the Spark runner delivers those only from earlier stages "
                                               "(kabuguard/spark/stages.py)")
                        pipeline.apply_note(key, note, payload)
                out.add(seq, ts_us, event, decision, ev.alerts)
            yield out.batch()


def emit_task(batches: Iterator[Any]) -> Iterator[Any]:
    """Alerts of events the final stage does not see (market bars, executions), stamped as the replay does."""
    for batch in batches:
        out = _Out()
        for seq, ts_us, raw, carried in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(),
                                            batch.column(_EVENT).to_pylist(), batch.column(_EV).to_pylist()):
            ev = Evidence()
            restore(ev, carried)
            if ev.alerts:
                out.add(seq, ts_us, _unpack_event(raw), None, ev.alerts)
        yield out.batch()


class _Out:
    """Output rows: the decision and alert lines exactly as the replay encodes them."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {k: [] for k in ("seq", "ts_us", "decision", "verdict", "alerts", "alert_types")}

    def add(self, seq: int, ts_us: int, event: Any, decision: dict[str, Any] | None,
            alerts: list[dict[str, Any]]) -> None:
        if decision is None and not alerts:
            return
        rows = self.rows
        rows["seq"].append(seq)
        rows["ts_us"].append(ts_us)
        rows["decision"].append(_json(decision) if decision is not None else None)
        rows["verdict"].append(decision["decision"] if decision is not None else None)
        if alerts:
            stamped = Pipeline.stamp(event, alerts)
            rows["alerts"].append(b"\n".join(_json(a) for a in stamped))
            rows["alert_types"].append(",".join(a["type"] for a in stamped))
        else:
            rows["alerts"].append(None)
            rows["alert_types"].append(None)

    def batch(self) -> Any:
        import pyarrow as pa

        r = self.rows
        return pa.RecordBatch.from_pydict({
            "seq": pa.array(r["seq"], pa.int64()), "ts_us": pa.array(r["ts_us"], pa.int64()),
            "decision": pa.array(r["decision"], pa.binary()), "verdict": pa.array(r["verdict"], pa.string()),
            "alerts": pa.array(r["alerts"], pa.binary()), "alert_types": pa.array(r["alert_types"], pa.string()),
        })


def run_stages(events: Any, policy: Policy, refs: Any, partitions: int,
               begin: Callable[[str], None] = lambda step: None) -> Any:
    """Decisions and alerts of `events` (STAGE_COLUMNS without ev/noted), as OUT_COLUMNS rows.

    Each stage's output is persisted before the next reads it: its rows are read twice (the
    handled part through the next shuffle, the rest around it), and an unpersisted plan would
    run every earlier stage's Python again for each read.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    df = events.withColumn("ev", F.lit(None).cast("binary")).withColumn("noted", F.lit(False))
    previous = None
    for name in STAGE_KEYS[:-1]:
        begin(f"stage {name}")
        key = f"key_{name}"
        parts = 1 if name == "market" else partitions  # the market stage has one key
        handled = (df.where(F.col(key).isNotNull()).repartition(parts, key)
                   .sortWithinPartitions("ts_us", "seq")
                   .mapInArrow(StageTask(name, policy, refs), STAGE_COLUMNS))
        df = handled.unionByName(df.where(F.col(key).isNull())).persist(StorageLevel.MEMORY_AND_DISK)
        df.count()
        if previous is not None:
            previous.unpersist()
        previous = df
    begin("stage final")
    notices = df.where("noted").mapInArrow(notice_task, FINAL_IN_COLUMNS)
    decided = (df.where(F.col("key_final").isNotNull())
               .select("seq", "ts_us", F.lit(0).alias("sub"), "key_final", "event", "ev",
                       F.lit(None).cast("binary").alias("note"))
               .unionByName(notices)
               .repartition(partitions, "key_final").sortWithinPartitions("ts_us", "seq", "sub")
               .mapInArrow(FinalTask(policy, refs), OUT_COLUMNS))
    others = (df.where(F.col("key_final").isNull() & F.col("ev").isNotNull())
              .mapInArrow(emit_task, OUT_COLUMNS))
    out = decided.unionByName(others).persist(StorageLevel.MEMORY_AND_DISK)
    out.count()
    df.unpersist()
    return out
