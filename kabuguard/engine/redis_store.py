"""Stage state in Redis for the online service: msgpack-encoded structs, read and written per batch.

The core's `Pipeline` reads and writes state through the synchronous `Store` protocol; Redis is
a network hop away. So the service works in three steps per request (one event or a batch):

1. `RedisState.load` fetches, in one round trip (a Lua script), every (stage, key) the events
   can touch, each with its version, and the stored result of every `event_id` already decided;
2. the pipeline runs against a `WorkingSet`, a `Store` over those bytes that decodes on first
   use; a key it did not foresee (the members of a new campaign) raises `Missing`, and the
   caller loads it too and starts the request again from the same bytes;
3. `RedisState.commit` writes, in one round trip and atomically (a second Lua script), the
   states that changed, the results by `event_id` and an outbox record for the database, but
   only if no key read in step 1 changed meanwhile. Otherwise nothing is written and the
   caller runs again on fresh state (optimistic concurrency).

Two workers or two requests touching one account, IP, device or symbol therefore serialize on
the commit: none loses another's update, and each decision reads all state committed before
it, exactly as the replay does. Stores hold state, never logic.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import aclosing
from typing import Any, TypedDict

import msgspec
import numpy as np

from kabuguard.engine.pipeline import AccountStatus, Pipeline
from kabuguard.engine.store import Rows
from kabuguard.detectors.liquidity import TradedDays
from kabuguard.detectors.session_risk import SessionMemory
from kabuguard.events.model import Instrument

StageKey = tuple[str, str]

# Bump when a stored state keeps its type but changes its meaning (an order kept inside a
# list, a unit): the format of every slot changes with it, and a Redis holding the old one
# is refused instead of read as the new one.
STATE_REVISION = 1


class Missing(Exception):
    """The pipeline asked for a key that was not loaded: load it and run again."""

    def __init__(self, stage: str, key: str) -> None:
        super().__init__(f"{stage}:{key} not loaded")
        self.stage_key = (stage, key)


_FRESH = ("Start with a fresh prefix (redis_prefix / KABUGUARD_REDIS_PREFIX) and replay the history into "
          "it, or empty this prefix.")


class StateFormatMismatch(Exception):
    """Redis holds state that this version would decode wrongly or not at all."""


class StateCodec:
    """msgpack for each stage's dict of detector name -> state struct, typed per stage."""

    def __init__(self, pipeline: Pipeline) -> None:
        types: dict[str, dict[str, Any]] = {"reference": {"instrument": Instrument}}
        self._widths: dict[str, int] = {}  # floats per row, by row stage: the schema says only "a list"
        for stage in pipeline.stages:
            slots: dict[str, Any] = {}
            for detectors in stage.by_kind.values():
                for detector in detectors:
                    slots[detector.name] = type(detector.initial())
                    # Rows of floats per key (`Store.rows`) are kept under the detector's own name.
                    if getattr(detector, "row_stage", None):
                        types[detector.row_stage] = {"row": list[float]}
                        self._widths[detector.row_stage] = detector.fresh_row.size
            types[stage.name] = slots
        # What the pipeline's own hooks keep beside the detectors' states.
        types["account"]["session"] = SessionMemory
        types["symbol"]["quote"] = float | None
        types["symbol"]["traded"] = TradedDays
        types["final"]["status"] = AccountStatus
        self._decoders = {
            stage: msgspec.msgpack.Decoder(TypedDict(f"{stage}_state", slots, total=False))  # type: ignore[operator]
            for stage, slots in types.items()
        }
        self.encode = msgspec.msgpack.Encoder().encode
        self.types = types

    def formats(self) -> dict[str, str]:
        """Per `stage.slot`, a digest of its type's schema and `STATE_REVISION` (and of a row's
        width: a column added, or a policy's `bucket_minutes` changed, is another format).

        Per slot, not one digest for all: a policy that turns a detector on or off adds or
        leaves a slot, which old state survives; only a slot whose format changed cannot."""
        out = {}
        for stage, slots in self.types.items():
            for slot, tp in slots.items():
                schema = msgspec.json.encode(msgspec.json.schema(tp), order="sorted")
                width = b"/%d" % self._widths[stage] if stage in self._widths else b""
                out[f"{stage}.{slot}"] = hashlib.sha256(schema + b"/%d" % STATE_REVISION + width).hexdigest()[:16]
        return out

    def decode(self, stage: str, data: bytes) -> dict[str, Any]:
        return self._decoders[stage].decode(data)


class WorkingSet:
    """A `Store` over loaded bytes: decodes on first read, remembers what the events touched."""

    live = True

    def __init__(self, codec: StateCodec, raw: dict[StageKey, bytes | None]) -> None:
        self._codec = codec
        self._raw = raw
        self._states: dict[StageKey, dict[str, Any] | None] = {}

    def get(self, stage: str, key: str) -> dict[str, Any] | None:
        sk = (stage, key)
        try:
            return self._states[sk]
        except KeyError:
            pass
        if sk not in self._raw:
            raise Missing(stage, key)
        data = self._raw[sk]
        state = None if data is None else self._codec.decode(stage, data)
        self._states[sk] = state
        return state

    def put(self, stage: str, key: str, state: dict[str, Any]) -> None:
        self._states[(stage, key)] = state

    def rows(self, stage: str, keys: Sequence[str], fresh: np.ndarray) -> Rows:
        """A table of the keys' rows, each stored as a `row` list under its key."""
        table = np.empty((len(keys), fresh.size))
        for i, key in enumerate(keys):
            state = self.get(stage, key)
            if state is None:
                table[i] = fresh
            elif len(state["row"]) != fresh.size:
                raise StateFormatMismatch(f"{stage}:{key} holds {len(state['row'])} values, this policy keeps "
                                          f"{fresh.size} (a detector's parameter changed its width). {_FRESH}")
            else:
                table[i] = state["row"]
        return table, np.arange(len(keys))

    def put_rows(self, stage: str, keys: Sequence[str], rows: Rows) -> None:
        table, at = rows
        for key, i in zip(keys, at.tolist()):
            self.put(stage, key, {"row": table[i].tolist()})

    def changed(self) -> dict[StageKey, bytes]:
        """Encoded states that differ from what was loaded."""
        out = {}
        encode = self._codec.encode
        for sk, state in self._states.items():
            if state is None:
                continue
            data = encode(state)
            if data != self._raw.get(sk):
                out[sk] = data
        return out


class Snapshot(msgspec.Struct):
    """What one load returned: state bytes, their versions, and results already recorded."""

    raw: dict[StageKey, bytes | None]
    versions: dict[StageKey, str]  # "0": not in Redis
    seen: dict[str, bytes]


# KEYS: state hashes..., then seen keys. Returns [version, data] per state key, then the seen values.
_LOAD = """
local out = {}
local n = tonumber(ARGV[1])
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 'v', 'd')
  out[#out + 1] = v[1] or false
  out[#out + 1] = v[2] or false
end
for i = n + 1, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i]) or false
end
return out
"""

# KEYS: read state hashes (n_read), written state hashes (n_write), seen keys (n_seen), outbox,
# the format hash.
# ARGV: n_read, n_write, n_seen, ttl, outbox field, outbox record, version, read versions...,
# write data..., seen values..., write expiries (ms; 0: none)...
# Writes only when every state read still has the version it had, and no event_id was decided
# meanwhile; returns 1 when written, 0 on a conflict, -1 when the formats are not recorded (a
# Redis restarted empty under the service: state written then would refuse the next start). A
# version is a random number per commit, not a count per key: a key that expired and came back
# would count from 1 again, and a request that read the old key's version could then overwrite
# the new key's state.
_COMMIT = """
if redis.call('EXISTS', KEYS[#KEYS]) == 0 then return -1 end
local nr, nw, ns = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local version = ARGV[7]
local a = 8
for i = 1, nr do
  local v = redis.call('HGET', KEYS[i], 'v') or '0'
  if v ~= ARGV[a + i - 1] then return 0 end
end
for i = 1, ns do
  if redis.call('EXISTS', KEYS[nr + nw + i]) == 1 then return 0 end
end
local b = a + nr
local c = b + nw
local x = c + ns
for i = 1, nw do
  local key = KEYS[nr + i]
  redis.call('HSET', key, 'v', version, 'd', ARGV[b + i - 1])
  local ms = tonumber(ARGV[x + i - 1])
  if ms > 0 then
    redis.call('PEXPIRE', key, ms)
  end
end
for i = 1, ns do
  if ttl > 0 then
    redis.call('SET', KEYS[nr + nw + i], ARGV[c + i - 1], 'EX', ttl)
  else
    redis.call('SET', KEYS[nr + nw + i], ARGV[c + i - 1])
  end
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[nr + nw + ns + 1], ARGV[5], ARGV[6])
end
return 1
"""

# KEYS: the format hash. ARGV: slot, format, slot, format... Records the formats of slots new to
# this Redis and returns the slots whose recorded format differs, each with the recorded one.
_FORMATS = """
local bad = {}
for i = 1, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  local had = redis.call('HGET', KEYS[1], ARGV[i])
  if had ~= ARGV[i + 1] then
    bad[#bad + 1] = ARGV[i]
    bad[#bad + 1] = had
  end
end
return bad
"""


log = logging.getLogger(__name__)

_EXPIRY_MARGIN_MS = 86_400_000


def _version() -> str:
    """A commit's version: random, and a whole number below 2**62, so that an earlier Kabuguard on
    the same Redis (a rollback) still reads it with int() and counts on from it with HINCRBY."""
    return str(int.from_bytes(os.urandom(8), "big") >> 2)


class RedisState:
    """State, results and the database outbox of every firm, in one Redis (through the service's
    pipelined client, `kabuguard.service.redis_client`)."""

    def __init__(self, client: Any, formats: dict[str, str], prefix: str = "kg:", seen_ttl_s: int = 7 * 86400,
                 horizons_us: dict[str, int] | None = None) -> None:
        self.client = client
        self.formats = formats
        self.prefix = prefix
        self.seen_ttl_s = seen_ttl_s
        # Per stage, how long a key lives after its last write (`Pipeline.horizons_us`): past its
        # horizon a key scores as a new one. Redis counts wall-clock time, which in a live
        # service runs with event time (a history replayed into it runs behind it); a day more
        # covers events that arrive late or from a clock ahead, so a key does not go before its
        # horizon in event time.
        self.expiry_ms = {stage: -(-us // 1000) + _EXPIRY_MARGIN_MS for stage, us in (horizons_us or {}).items()}
        self.outbox_key = f"{prefix}outbox"
        self.format_key = f"{prefix}format"
        self._load = client.register_script(_LOAD)
        self._commit = client.register_script(_COMMIT)
        self._check = client.register_script(_FORMATS)
        self.format_checked = False
        self.format_error: str | None = None

    async def check_format(self) -> None:
        """Refuse a Redis whose state this version cannot read (`StateFormatMismatch`, which
        names the slots); record this version's formats where Redis has none yet."""
        if self.format_error is None and not await self.client.execute("EXISTS", self.format_key):
            # No formats recorded: an empty prefix, or state from before formats were recorded.
            cursor, found = b"0", []
            while not found:
                cursor, found = await self.client.execute("SCAN", cursor, "MATCH", f"{self.prefix}s:*", "COUNT", 1000)
                if cursor == b"0":
                    break
            if found:
                self.format_error = (f"Redis prefix {self.prefix!r} holds detection state from a version that "
                                     f"did not record its format: {_FRESH}")
        if self.format_error is None:
            await self._record_formats()
        if self.format_error is not None:
            raise StateFormatMismatch(self.format_error)
        self.format_checked = True

    async def _record_formats(self) -> None:
        """Record this version's formats where Redis has none; a slot recorded otherwise is an error."""
        args = [x for slot, digest in sorted(self.formats.items()) for x in (slot, digest)]
        bad = await self._check(keys=[self.format_key], args=args)
        if bad:
            slots = ", ".join(f"{bad[i].decode()} (stored {bad[i + 1].decode()}, "
                              f"this version {self.formats[bad[i].decode()]})" for i in range(0, len(bad), 2))
            self.format_error = (f"Redis prefix {self.prefix!r} holds detection state in a format this "
                                 f"version does not read: {slots}. {_FRESH}")
            raise StateFormatMismatch(self.format_error)

    def state_key(self, firm: str, stage: str, key: str) -> str:
        return f"{self.prefix}s:{firm}:{stage}:{key}"

    def seen_key(self, firm: str, event_id: str) -> str:
        return f"{self.prefix}e:{firm}:{event_id}"

    async def load(self, firm: str, keys: Sequence[StageKey], event_ids: Sequence[str]) -> Snapshot:
        if not self.format_checked:  # Redis was unreachable when the service started
            await self.check_format()
        redis_keys = [self.state_key(firm, s, k) for s, k in keys]
        redis_keys += [self.seen_key(firm, e) for e in event_ids]
        out = await self._load(keys=redis_keys, args=[len(keys)])
        raw: dict[StageKey, bytes | None] = {}
        versions: dict[StageKey, str] = {}
        for i, sk in enumerate(keys):
            version, data = out[2 * i], out[2 * i + 1]
            raw[sk] = data or None
            versions[sk] = version.decode() if version else "0"
        base = 2 * len(keys)
        seen = {e: out[base + i] for i, e in enumerate(event_ids) if out[base + i]}
        return Snapshot(raw, versions, seen)

    async def commit(self, firm: str, snapshot: Snapshot, writes: dict[StageKey, bytes],
                     results: dict[str, bytes], outbox: tuple[str, bytes] | None) -> bool:
        read = list(snapshot.versions)
        written = list(writes)
        keys = [self.state_key(firm, s, k) for s, k in read]
        keys += [self.state_key(firm, s, k) for s, k in written]
        keys += [self.seen_key(firm, e) for e in results]
        keys += [self.outbox_key, self.format_key]
        field, record = outbox or ("", b"")
        args: list[Any] = [len(read), len(written), len(results), self.seen_ttl_s, field, record, _version()]
        args += [snapshot.versions[sk] for sk in read]
        args += [writes[sk] for sk in written]
        args += list(results.values())
        args += [self.expiry_ms.get(stage, 0) for stage, _ in written]
        done = await self._commit(keys=keys, args=args)
        if done == -1:  # Redis lost everything, the formats too: this version's state starts anew
            log.warning("Redis holds no state formats: recorded again (was it restarted empty?)")
            await self._record_formats()
            done = await self._commit(keys=keys, args=args)
        return done == 1

    @staticmethod
    def outbox_field(firm: str, n: int) -> str:
        """A unique outbox field that says when it was written (read back by `outbox`)."""
        return f"{firm}:{time.time_ns()}:{n}"

    async def outbox(self, older_than_s: float, limit: int = 500) -> list[tuple[bytes, bytes]]:
        """Outbox records left longer than `older_than_s` (their database write did not finish)."""
        cutoff = time.time_ns() - int(older_than_s * 1e9)
        found: list[tuple[bytes, bytes]] = []
        # Closed on leaving, after `break` too: a suspended async generator is otherwise closed only
        # when collected, by the event loop.
        async with aclosing(self.client.hscan_iter(self.outbox_key, count=limit)) as records:
            async for field, value in records:
                stamp = int(field.split(b":")[-2])
                if stamp < cutoff:
                    found.append((field, value))
                    if len(found) >= limit:
                        break
        return found

    async def done(self, fields: Iterable[bytes | str]) -> None:
        fields = list(fields)
        if fields:
            await self.client.hdel(self.outbox_key, *fields)

    async def prepare(self) -> None:
        """Check the state's format and load the scripts into Redis ahead of the first request."""
        await self.check_format()
        for script in (self._load, self._commit):
            await self.client.script_load(script.script)

    async def ping(self) -> bool:
        return bool(await self.client.ping())
