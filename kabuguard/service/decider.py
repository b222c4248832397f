"""The service's use of the core: decide a request's events against shared state, record, answer.

One request (a single event or a batch) is one unit: its events are decided in the order given,
each reading the state every earlier event left, and the request's state changes, results and
records are committed together or not at all. The same `Pipeline` as the replay decides; only
where state lives differs (`MemoryState` embedded, `RedisState` in production).

Answers are JSON built from stored bytes: the result of an event is recorded once, at its first
decision, and a retry of the same `event_id` gets those bytes back, so the answer to a retry is
byte for byte the first answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgspec

from kabuguard.detectors.market_factor import MARKET_KEY, MarketFactor
from kabuguard.detectors.pump_surveillance import PumpSurveillance
from kabuguard.detectors.shared_indicator import INTEL_KEY, intel_key
from kabuguard.engine.pipeline import Pipeline
from kabuguard.engine.redis_store import (Missing, RedisState, Snapshot, StageKey, StateCodec, StateFormatMismatch,
                                         WorkingSet)
from kabuguard.events.model import DECIDABLE, Event, account_key, from_log, ip_key, log_columns
from kabuguard.service.redis_client import ReplyError
from kabuguard.service.state import MemoryState
from kabuguard.service.storage.database import Database, Records

log = logging.getLogger("kabuguard.service")

# The one reason of a fail-mode answer (docs/reason-codes.md): the policy's fail_mode decided, not the core.
DEGRADED = "degraded"
_ACTIVITY = frozenset({"login", "account_change", "order"})
_WITH_ACCOUNT = frozenset({"login", "account_change", "order", "execution", "account"})
_WITH_SYMBOL = frozenset({"order", "execution", "market_bar"})
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()
_outbox_decode = msgspec.msgpack.Decoder(tuple[list[dict[str, Any]], list[dict[str, Any]]]).decode


class Degraded(Exception):
    """State or database unreachable in time: the policy's fail mode answers."""


class Outcome(msgspec.Struct):
    """A request's answer as JSON bytes, and how it came about."""

    body: bytes
    decided: int = 0
    duplicates: int = 0
    degraded: bool = False
    alerts: list[dict[str, Any]] = []  # the alerts raised, for the playbooks


def keys_of(event: Any) -> list[StageKey]:
    """Every (stage, key) the pipeline may read or write for `event` (except campaign members)."""
    kind = event.kind
    keys: list[StageKey] = []
    if kind in _WITH_ACCOUNT:
        account = account_key(event)
        keys.append(("account", account))
        if kind in DECIDABLE:
            keys.append(("final", account))
    if kind in _ACTIVITY or kind == "indicator":
        if event.ip:
            keys.append(("ip", ip_key(event)))
        if event.device_id:
            keys.append(("device", event.device_id))
        if intel_key(event):
            keys.append(("intel", INTEL_KEY))
    if kind == "market_bar":
        keys.append(("market", MARKET_KEY))
        keys += [(MarketFactor.row_stage, event.symbol), (PumpSurveillance.row_stage, event.symbol)]
    if kind in _WITH_SYMBOL:
        keys.append(("symbol", event.symbol))
    if kind in ("order", "execution", "instrument"):
        keys.append(("reference", event.symbol))
    return keys


# Embedded, a request of at most this many events is decided on the event loop: a few
# milliseconds, where the hop to a thread and back doubled a single event's CPU time (0.49 to
# 0.97 ms a request, `bench/bench_service.py`).
INLINE_EVENTS = 50


class Decider:
    def __init__(self, pipeline: Pipeline, codec: StateCodec, state: MemoryState | RedisState, db: Database,
                 deadline_s: float = 0.25, max_attempts: int = 64, wait_for_database: bool = False) -> None:
        """`codec` is `StateCodec(pipeline)`, built once by the caller, which also needs its formats."""
        self.pipeline = pipeline
        self.codec = codec
        self.state = state
        self.db = db
        self.deadline_s = deadline_s
        self.max_attempts = max_attempts
        self.embedded = isinstance(state, MemoryState)
        self._done: deque[str] = deque()
        # Production: answer after the Redis commit (whose outbox holds the records) or only
        # once PostgreSQL has them too.
        self.wait_for_database = wait_for_database
        self._n = 0
        self.fail_decision = "allow" if pipeline.policy.fail_mode == "fail_open" else "challenge"
        # Embedded: one decision or containment at a time; a large batch in a thread, so that it
        # does not hold the event loop (health checks, reads, the console) while it is decided.
        self._turn = asyncio.Lock()

    # -- the request path -------------------------------------------------------------------

    async def decide(self, firm: str, events: Sequence[Event]) -> Outcome:
        started = time.monotonic()
        try:
            if self.embedded:
                async with self._turn:
                    if len(events) <= INLINE_EVENTS:
                        return self._embedded(firm, events)
                    return await asyncio.to_thread(self._embedded, firm, events)
            outcome, records, field = await self._shared(firm, events)
        except StateFormatMismatch as exc:
            log.error("state format mismatch", extra={"detail": str(exc)})
            return self._degraded(firm, events, exc)
        except Exception as exc:
            if is_store_error(exc):  # any failure to reach a store is degraded mode, never a 500
                return self._degraded(firm, events, exc)
            raise
        if records is not None:
            if not self.wait_for_database:
                # The records are durable in the Redis outbox already (same atomic commit as the
                # state): the database write follows, off the answer's path.
                self.db.submit(records, lambda error: self._written(field, error))
                return outcome
            remaining = max(0.001, self.deadline_s - (time.monotonic() - started))
            try:
                async with asyncio.timeout(remaining):
                    await self.db.write(records)
                self._done.append(field)
            except Exception as exc:
                # The records wait in the Redis outbox; the flusher writes them when it can.
                log.warning("database write deferred to the outbox", extra={"error": type(exc).__name__})
        return outcome

    def _written(self, field: str, error: BaseException | None) -> None:
        """Writer thread: the outbox record can go (or waits for the flusher after an error)."""
        if error is None:
            self._done.append(field)  # deque.append: safe from another thread
        else:
            log.warning("database write deferred to the outbox", extra={"error": type(error).__name__})

    def _embedded(self, firm: str, events: Sequence[Event]) -> Outcome:
        """The embedded path, from load to apply in one turn (`_turn`): no other decision interleaves.

        The SQLite write comes before the state changes, so state never holds an event the
        log lacks; a locked or failing database is degraded mode (after its busy timeout,
        which is the deadline) and changes nothing."""
        state = self.state
        assert isinstance(state, MemoryState)
        outcome, results, writes, records = self._run(firm, events, state.load_now)
        if results:
            records.events = [logged(firm, e) for e in events if e.event_id in results]
            try:
                self.db.write_now(records)
            except Exception as exc:
                raise Degraded(f"database: {type(exc).__name__}") from exc
            state.apply(firm, writes, results)
        return outcome

    async def _shared(self, firm: str, events: Sequence[Event]) -> tuple[Outcome, Records | None, str]:
        """Load, decide, commit; each wait for Redis within the deadline, the deciding between
        them not (a large batch's CPU time: cut short at its commit, the answer said degraded
        while the commit, already sent, went through); a conflict is retried within it."""
        state = self.state
        assert isinstance(state, RedisState)
        keys = _unique(k for e in events for k in keys_of(e))
        event_ids = _unique(e.event_id for e in events)
        started, conflicted = time.monotonic(), False
        for _ in range(self.max_attempts):
            # A conflict is decided again only within the deadline: each round is the batch's
            # CPU time again, on the event loop (64 rounds of 2,000 events held a worker 49 s).
            # (A key found missing is no conflict: the next round only reads it too.)
            if conflicted and time.monotonic() - started > self.deadline_s:
                break
            async with asyncio.timeout(self.deadline_s):
                snapshot = await state.load(firm, keys, event_ids)
            try:
                outcome, results, writes, records = self._decide(firm, events, snapshot)
            except Missing as miss:
                keys.append(miss.stage_key)
                continue
            if not results:
                return outcome, None, ""
            self._n += 1
            field = state.outbox_field(firm, self._n)
            record = _msgpack.encode((records.decisions, records.alerts))
            async with asyncio.timeout(self.deadline_s):
                committed = await state.commit(firm, snapshot, writes, results, (field, record))
            if committed:
                return outcome, records, field
            conflicted = True
        raise Degraded("too many conflicting writers")

    def _run(self, firm: str, events: Sequence[Event], load: Any) -> tuple[Outcome, dict[str, bytes], dict[StageKey, bytes], Records]:
        keys = _unique(k for e in events for k in keys_of(e))
        event_ids = _unique(e.event_id for e in events)
        while True:
            try:
                return self._decide(firm, events, load(firm, keys, event_ids))
            except Missing as miss:
                keys.append(miss.stage_key)

    def _decide(self, firm: str, events: Sequence[Event], snapshot: Snapshot) -> tuple[Outcome, dict[str, bytes], dict[StageKey, bytes], Records]:
        """Every event through the pipeline over one working set; nothing is written here."""
        pipeline = self.pipeline
        work = WorkingSet(self.codec, dict(snapshot.raw))
        pipeline.store = work
        seen = snapshot.seen
        results: dict[str, bytes] = {}
        records = Records()
        parts: list[bytes] = []
        raised: list[dict[str, Any]] = []
        duplicates = 0

        def answer(event: Event, decision: dict[str, Any] | None, alerts: list[dict[str, Any]]) -> None:
            event_id = event.event_id
            record = _json.encode({"decision": decision, "alerts": alerts})
            results[event_id] = record
            parts.append(b'{"event_id":' + _json.encode(event_id) + b',"duplicate":false,' + record[1:])
            if decision is not None:
                records.decisions.append({
                    "firm": firm, "event_id": event_id, "ts_us": event.ts_us, "type": decision["type"],
                    "account_id": decision["account_id"], "decision": decision["decision"],
                    "score": decision["score"], "body": _json.encode(decision)})
            raised.extend(alerts)
            for alert in alerts:
                records.alerts.append({
                    "firm": firm, "alert_id": alert["alert_id"], "event_id": event_id, "ts_us": event.ts_us,
                    "type": alert["type"], "account_id": alert.get("account_id"), "body": _json.encode(alert)})

        def new(event: Event) -> bool:
            return event.event_id not in seen and event.event_id not in results

        i = 0
        while i < len(events):
            event = events[i]
            if not new(event):
                duplicates += 1
                prior = seen.get(event.event_id) or results[event.event_id]
                parts.append(b'{"event_id":' + _json.encode(event.event_id) + b',"duplicate":true,' + prior[1:])
                i += 1
            elif event.kind == "market_bar":
                # A run of new bars (a minute of the market in one request) is decided in
                # batches, as the replay does: the same kernel, far less per bar.
                run, ids = [event], {event.event_id}
                while i + len(run) < len(events):
                    bar = events[i + len(run)]
                    if bar.kind != "market_bar" or bar.event_id in ids or not new(bar):
                        break
                    run.append(bar)
                    ids.add(bar.event_id)
                by_event: dict[str, list[dict[str, Any]]] = {}
                for alert in pipeline.process_bars(run):
                    by_event.setdefault(alert["event_id"], []).append(alert)
                for bar in run:
                    answer(bar, None, by_event.get(bar.event_id, []))
                i += len(run)
            else:
                answer(event, *pipeline.process(event))
                i += 1
        body = b'{"degraded":false,"results":[' + b",".join(parts) + b"]}"
        outcome = Outcome(body, decided=len(records.decisions), duplicates=duplicates, alerts=raised)
        return outcome, results, work.changed(), records

    def _degraded(self, firm: str, events: Sequence[Event], exc: BaseException) -> Outcome:
        log.warning("degraded answer", extra={"error": type(exc).__name__, "events": len(events),
                                              "fail_mode": self.pipeline.policy.fail_mode})
        parts = []
        for event in events:
            decision = None
            if event.kind in DECIDABLE:
                decision = {"event_id": event.event_id, "ts": event.ts, "type": event.kind,  # firm-less: app.py
                            "account_id": event.account_id, "decision": self.fail_decision, "score": None,
                            "reasons": [DEGRADED]}
            parts.append(_json.encode({"event_id": event.event_id, "duplicate": False, "applied": False,
                                       "decision": decision, "alerts": []}))
        body = b'{"degraded":true,"results":[' + b",".join(parts) + b"]}"
        return Outcome(body, degraded=True)

    # -- containment ------------------------------------------------------------------------

    async def contain(self, firm: str, account_keys: Sequence[str]) -> None:
        """Mark accounts contained in the shared state: the core blocks their later events with
        reason `contained`. Embedded, the containment is logged with the events so that the
        rebuild applies it at the same place; with Redis it commits like a request (retried on
        a concurrent change of the same keys)."""
        if self.embedded:
            async with self._turn:
                await asyncio.to_thread(self._contain_logged, firm, account_keys)
            return
        state = self.state
        assert isinstance(state, RedisState)
        keys = [("final", key) for key in account_keys]
        for _ in range(self.max_attempts):
            snapshot = await state.load(firm, keys, [])
            if await state.commit(firm, snapshot, self._contained(snapshot, account_keys), {}, None):
                return
        raise Degraded("too many conflicting writers")

    def _contain_logged(self, firm: str, account_keys: Sequence[str]) -> None:
        self.db.write_now(Records(events=[
            {"firm": firm, "event_id": CONTAIN_PREFIX + key, "body": b"", "account_id": key,
             "symbol": None, "ts_us": None} for key in account_keys]))
        self._contain_now(firm, account_keys)

    def _contain_now(self, firm: str, account_keys: Sequence[str]) -> None:
        state = self.state
        assert isinstance(state, MemoryState)
        snapshot = state.load_now(firm, [("final", key) for key in account_keys], [])
        state.apply(firm, self._contained(snapshot, account_keys), {})

    def _contained(self, snapshot: Snapshot, account_keys: Sequence[str]) -> dict[StageKey, bytes]:
        """The final-stage states of `account_keys` with containment set, by the core's own `contain`."""
        pipeline = self.pipeline
        work = WorkingSet(self.codec, dict(snapshot.raw))
        pipeline.store = work
        for key in account_keys:
            pipeline.contain(None, key)
        return work.changed()

    # -- background work --------------------------------------------------------------------

    async def housekeeping(self, every_s: float = 0.2, outbox_after_s: float = 5.0) -> None:
        """Clear written outbox records; write those a crash or an outage left behind."""
        if self.embedded:
            return
        state = self.state
        assert isinstance(state, RedisState)
        ticks = 0
        while True:
            await asyncio.sleep(every_s)
            ticks += 1
            try:
                if self._done:
                    done = [self._done.popleft() for _ in range(len(self._done))]
                    await state.done(done)
                if ticks % max(1, int(outbox_after_s / every_s / 2)) == 0:
                    await self.flush_outbox(outbox_after_s)
            except Exception as exc:  # a store outage: try again on the next tick
                log.info("housekeeping postponed", extra={"error": type(exc).__name__})

    async def flush_outbox(self, older_than_s: float = 0.0) -> int:
        state = self.state
        assert isinstance(state, RedisState)
        found = await state.outbox(older_than_s)
        if not found:
            return 0
        entries = []
        for field, value in found:
            decisions, alerts = _outbox_decode(value)
            entries.append((field, Records(decisions=decisions, alerts=alerts)))
        merged = Records()
        for _, records in entries:
            merged.extend(records)
        try:
            await self.db.write(merged)
            written = [field for field, _ in entries]
        except Exception:
            # An entry the database refuses stays in the outbox, named in the log, and is tried
            # again; it must not hold back the others (the database down fails them all alike).
            written = []
            for field, records in entries:
                try:
                    await self.db.write(records)
                    written.append(field)
                except Exception as exc:
                    log.error("outbox entry not written", extra={"entry": field.decode("ascii", "replace"),
                                                                 "error": type(exc).__name__})
        if written:
            await state.done(written)
            log.info("outbox flushed", extra={"records": len(written)})
        return len(written)

    def rebuild(self) -> int:
        """Embedded start: apply the database's event log to the empty memory state."""
        state = self.state
        assert isinstance(state, MemoryState)
        n = 0
        firm, batch = None, []
        for row_firm, event_id, body in self.db.event_log():
            if (row_firm != firm or not body) and batch:
                self._replay(firm, batch)
                batch = []
            firm = row_firm
            if not body:  # a containment, at its place in the order
                self._contain_now(firm, [event_id.removeprefix(CONTAIN_PREFIX)])
                continue
            try:
                batch.append(from_log(body))
            except msgspec.ValidationError as exc:
                # Logged and decided by an earlier version that checked less (an order of 0
                # shares): left out of the state, named, rather than the service not starting.
                log.warning("a logged event this version cannot read is left out of the rebuilt state",
                            extra={"firm": firm, "event_id": event_id, "reason": str(exc)})
                continue
            if len(batch) >= 1000:
                self._replay(firm, batch)
                batch = []
            n += 1
        if batch:
            self._replay(firm, batch)
        return n

    def _replay(self, firm: Any, events: list[Event]) -> None:
        state = self.state
        assert isinstance(state, MemoryState)
        _, results, writes, _ = self._run(firm, events, state.load_now)
        state.apply(firm, writes, results)


CONTAIN_PREFIX = "~contain:"


def logged(firm: str, event: Event) -> dict[str, Any]:
    """An event-log row: the typed record, and the account, symbol and time the console reads by."""
    return {"firm": firm, "event_id": event.event_id, "body": _msgpack.encode(event), **log_columns(event)}


def _unique(items: Any) -> list[Any]:
    return list(dict.fromkeys(items))


def is_store_error(exc: BaseException) -> bool:
    """A store that could not be reached in time: ours (Degraded), a timeout or a socket's error, or
    a driver's (redis, SQLAlchemy, which carry no common base)."""
    if isinstance(exc, (Degraded, TimeoutError, OSError, ReplyError)):
        return True
    return type(exc).__module__.startswith(("redis", "sqlalchemy", "psycopg", "sqlite3"))
