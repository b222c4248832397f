"""The HTTP API: `POST /v1/events` and the read endpoints, each behind a firm-scoped API key.

Handlers stay short: authentication and rate limits are a dependency, parsing is the contract
reader's, deciding is `Decider`'s, reads are `Database`'s. `create_app()` builds the app from
`Settings` (for `uvicorn --factory`, from the environment).
"""


import asyncio
import gc
import logging
import math
import os
import sys
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator, Literal

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from kabuguard import __version__
from kabuguard.console.containment import Containment
from kabuguard.console.web import mount_console
from kabuguard.console.webhooks import Deliverer
from kabuguard.engine.pipeline import Pipeline
from kabuguard.engine.redis_store import RedisState, StateCodec, StateFormatMismatch
from kabuguard.events.model import ID_MAX, Event
from kabuguard.events.reader import ContractError, event_from_dict, parse_ts, stamped
from kabuguard.intel.taxii.server import install as install_taxii
from kabuguard.intel.taxii.store import TaxiiStore
from kabuguard.policy import load_policy
from kabuguard.service import logging as service_logging
from kabuguard.service.auth import CACHE_S, AuthError, KeyCache, Principal
from kabuguard.service.decider import CONTAIN_PREFIX, Decider
from kabuguard.service.ratelimit import RateLimiter, RedisBuckets, TokenBuckets
from kabuguard.service.redis_client import Redis
from kabuguard.service.schemas import AccountAnswer, AlertsPage, EventsAnswer, Problem, event_schemas
from kabuguard.service.settings import Settings, load_settings
from kabuguard.service.state import MemoryState
from kabuguard.service.storage.database import Database, migrate

log = logging.getLogger("kabuguard.service")

_typed = msgspec.json.Decoder(Event | list[Event]).decode
_plain = msgspec.json.Decoder().decode
_json = msgspec.json.Encoder().encode
_msgpack = msgspec.msgpack.Encoder().encode
_PID_BYTES = str(os.getpid()).encode()
_ALERT_TYPES = ("account_alert", "symbol_alert", "campaign_alert")
AlertType = Literal["account_alert", "symbol_alert", "campaign_alert"]


class BadInput(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def parse_events(body: bytes) -> list[Event]:
    """One event object or an array of them, validated against the contract."""
    events = _parse_events(body)
    if b"\\u0000" in body:  # rare: only then look for it where PostgreSQL keeps text
        for n, event in enumerate(events):
            for name in _STORED_TEXT:
                if "\x00" in (getattr(event, name, None) or ""):
                    raise BadInput(422, f"events[{n}].{name}: a NUL character (\\u0000), which the database cannot store")
    for n, event in enumerate(events):
        if event.event_id.startswith(CONTAIN_PREFIX):  # the event log's containment rows
            raise BadInput(422, f"events[{n}].event_id: ids starting with {CONTAIN_PREFIX!r} are reserved")
    return events


# The fields the service's database keeps as text columns.
_STORED_TEXT = ("event_id", "account_id", "firm", "symbol")


def _parse_events(body: bytes) -> list[Event]:
    try:
        parsed = _typed(body)
        events = parsed if isinstance(parsed, list) else [parsed]
        if all(e.extra is None and not e.ts_us for e in events):
            for event in events:
                stamped(event)
            _msgpack(events)  # state holds 64-bit integers: a larger one is refused below
            return events
    except (msgspec.ValidationError, ContractError, OverflowError, RecursionError):
        pass  # the general path below says which event and which field
    except msgspec.DecodeError as exc:
        raise BadInput(400, f"body is not valid JSON: {exc}") from None
    try:
        raw = _plain(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # a number JSON allows but no float holds: 1e400
        raise BadInput(400, f"body is not JSON a decoder can hold: {exc}") from None
    except RecursionError:
        raise BadInput(400, "body nests arrays or objects too deeply") from None
    if isinstance(raw, dict):
        items, where = [raw], "event"
    elif isinstance(raw, list):
        items, where = raw, "events[{}]"
    else:
        raise BadInput(422, f"expected an event object or an array of events, got {type(raw).__name__}")
    out = []
    for n, item in enumerate(items):
        try:
            event = event_from_dict(item)
            _msgpack(event)  # state holds 64-bit integers: refuse larger ones here, not deep inside
        except ContractError as exc:
            raise BadInput(422, f"{where.format(n)}: {exc}") from None
        except OverflowError:
            raise BadInput(422, f"{where.format(n)}: an integer field is out of the 64-bit range") from None
        out.append(event)
    return out


class Refusal(Exception):
    """A request refused with a 4xx (or 503), its message and headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


_BEARER = {"WWW-Authenticate": "Bearer"}
_DEGRADED = {"X-Kabuguard-Degraded": "true"}
_GROUP_COMMIT_S = 0.01


def _refused(status: int, detail: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    return status, _json({"detail": detail}), []


class Service:
    """What the handlers share in one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # With the records safe in the Redis outbox before the answer, the database write is off
        # the answer's path: the writer gathers rows for a few milliseconds and commits them in
        # one transaction (a commit per request cost PostgreSQL and the writer thread more CPU
        # than deciding the request). Answering after PostgreSQL, it commits what is waiting.
        linger_s = _GROUP_COMMIT_S if settings.redis() and not settings.wait_for_database else 0.0
        self.db = Database(settings.db, busy_timeout_s=settings.deadline_ms / 1000, linger_s=linger_s)
        pipeline = Pipeline(load_policy(settings.policy or None))
        codec = StateCodec(pipeline)
        if settings.redis():
            timeout = max(0.05, settings.deadline_ms / 1000)
            client = Redis(settings.state, socket_timeout=timeout, socket_connect_timeout=timeout)
            state: Any = RedisState(client, codec.formats(), settings.redis_prefix, settings.idempotency_ttl_s,
                                    pipeline.horizons_us)
            # A tenth of the deadline at most: the decision needs the rest of it.
            self.buckets: RateLimiter = RedisBuckets(client, settings.redis_prefix, timeout_s=max(0.005, timeout / 10))
        else:
            state = MemoryState()
            self.buckets = TokenBuckets()
        self.decider = Decider(pipeline, codec, state, self.db, deadline_s=settings.deadline_ms / 1000,
                               wait_for_database=bool(settings.wait_for_database))
        self.keys = KeyCache(self.db)
        self.deliverer = Deliverer(self.db.engine, settings.webhook_secret, settings.webhook_backoff_s,
                                   settings.webhook_max_backoff_s)
        self.containment = Containment(self.db.engine, self.decider, settings.receivers, self.deliverer,
                                       pipeline.policy.playbooks)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # The database writer is a thread: let it hand the interpreter back to the event loop
        # within a millisecond (the default 5 ms shows in the p99 latency).
        sys.setswitchinterval(0.001)
        self.db.start()
        await run_in_threadpool(self.decider.pipeline.warm_up)  # the bar kernels, before any bar
        if self.decider.embedded:
            started = time.monotonic()
            n = await run_in_threadpool(self.decider.rebuild)
            log.info("state rebuilt from the event log", extra={"events": n, "seconds": round(time.monotonic() - started, 3)})
        else:
            await self._warm_up()
            self._tasks.append(asyncio.create_task(
                self.decider.housekeeping(outbox_after_s=self.settings.outbox_after_s)))
        self._tasks.append(asyncio.create_task(self.deliverer.run()))
        self._tasks.append(asyncio.create_task(self._refresh_keys()))
        # Everything built so far (modules, the app, the policy, a rebuilt embedded state) lives
        # as long as the worker: out of the collector's reach, a full collection no longer walks
        # it in the middle of a request (a pause of several milliseconds in the tail).
        gc.collect()
        gc.freeze()

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The key's principal, after its rate limit; raises Refusal (401, 429, 503)."""
        token = api_key
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Refusal(401, "malformed Authorization header: expected `Bearer <key>`", _BEARER)
            token = token.strip()
        if not token:
            raise Refusal(401, "missing API key: send `Authorization: Bearer <key>` or `X-API-Key`", _BEARER)
        who = self.keys.fresh(token) or await self._verified(token)
        wait = await self.buckets.take(who.key_id, who.rate_limit or self.settings.rate_limit)
        if wait:
            raise Refusal(429, f"rate limit of this key exceeded; retry in {wait:.3f} s",
                          {"Retry-After": str(math.ceil(wait))})
        return who

    async def _verified(self, token: str) -> Principal:
        """The key checked against the database. While it does not answer (unreachable, or slower
        than the deadline), a key valid at its last answer still works and a new one waits; the
        database is asked again a second later, not by every request (each would wait the deadline)."""
        if self.keys.answering():
            try:
                return await asyncio.wait_for(run_in_threadpool(self.keys.verify, token),
                                              self.settings.deadline_ms / 1000)
            except AuthError as exc:
                raise Refusal(401, str(exc), _BEARER) from None
            except Exception:
                self.keys.unanswered()
        who = self.keys.stale(token)
        if who is None:
            raise Refusal(503, "cannot verify the API key in time: the database is slow or "
                               "unreachable; retry shortly")
        return who

    async def _refresh_keys(self) -> None:
        """Check the cached keys again every half `CACHE_S`: a key revoked while nobody uses it
        is dropped before the database can fail, and a key in use never waits for the database.
        One check at a time, however long a hung database keeps it."""
        while True:
            await asyncio.sleep(CACHE_S / 2)
            check = asyncio.ensure_future(run_in_threadpool(self.keys.refresh))
            try:
                await asyncio.wait_for(asyncio.shield(check), self.settings.deadline_ms / 1000)
            except Exception:
                self.keys.unanswered()
                await asyncio.wait([check])

    async def post_events(self, who: Principal, length: str | None, receive: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
        """`POST /v1/events` from the body on: (status, JSON body, extra headers)."""
        limit = self.settings.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            return _refused(413, f"body of {length} bytes exceeds the limit of {limit}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _refused(400, "the client went away before the body arrived")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _refused(413, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            events = parse_events(b"".join(chunks))
        except BadInput as exc:
            return _refused(exc.status, exc.detail)
        if len(events) > self.settings.max_batch:
            return _refused(413, f"batch of {len(events)} events exceeds the limit of {self.settings.max_batch}")
        for n, event in enumerate(events):
            if event.firm is not None and event.firm != who.firm:
                return _refused(403, f"events[{n}].firm: this API key belongs to another firm")
            # The key says the firm and the firm's state is its own: one account is one key
            # whether or not an event repeats the firm (`acme:A1` and `A1` were two accounts).
            event.firm = None
        outcome = await self.decider.decide(who.firm, events)
        if outcome.alerts and self.containment.playbooks:
            try:
                await self.containment.record_playbooks(who.firm, outcome.alerts)
            except Exception as exc:  # the decisions stand; the playbook's failure is logged
                log.error("playbook failed", extra={"error": type(exc).__name__})
        return 200, outcome.body, list(_DEGRADED.items()) if outcome.degraded else []

    async def _warm_up(self) -> None:
        """Load the Lua scripts and open a database connection, so the first request is not slower."""
        state = self.decider.state
        try:
            await state.prepare()
            await run_in_threadpool(self.db.ping)
        except StateFormatMismatch:
            raise  # deciding on state read wrongly is worse than not starting
        except Exception as exc:  # a store down at start: degraded mode until it is back
            log.warning("store unreachable at start", extra={"error": type(exc).__name__})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.db.stop()


def create_app(settings: Settings | None = None, migrate_db: bool = True) -> FastAPI:
    """The app over `settings`; `migrate_db` brings the schema up to date first (`serve` does
    it once before starting several workers, which then pass False)."""
    settings = settings or load_settings()
    service_logging.configure(settings.log_level)
    if migrate_db:
        migrate_database(settings.db)
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        log.info("service ready", extra={"state": "redis" if settings.redis() else "memory",
                                         "db": settings.db.split(":", 1)[0], "version": __version__})
        yield
        await service.stop()

    # The schema is served behind a key like every other endpoint (/v1/openapi.json); FastAPI's
    # own /openapi.json, /docs and /redoc would be open to anyone, and the pages load a CDN.
    app = FastAPI(title="Kabuguard decision service", version=__version__, lifespan=lifespan,
                  description="Decisions on logins, account changes and orders, as `kabuguard replay` makes "
                              "them. Every endpoint but /healthz and /readyz needs a firm's API key.",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.service = service
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer kg_<id>_<secret>")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: kg_<id>_<secret>")

    async def principal(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
                        api_key: Annotated[str | None, Depends(header)]) -> Principal:
        try:
            who = await service.authenticate(request.headers.get("authorization"), api_key)
        except Refusal as exc:
            raise HTTPException(exc.status, exc.detail, headers=exc.headers) from None
        request.state.principal = who
        return who

    Auth = Annotated[Principal, Depends(principal)]
    body_schema, components = event_schemas()
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": Problem} for code in (400, 401, 403, 413, 422, 429, 503)}

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.post("/v1/events", response_model=EventsAnswer, responses=errors, tags=["events"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}})
    async def post_events(request: Request, who: Auth) -> Response:
        """Decide one event or a batch, in the order given; returns a result per event.

        Logins, account changes and orders get a decision; the other types only feed state.
        An `event_id` seen before gets its first answer again (`duplicate: true`) and changes
        nothing. Send events in `ts` order: then the decisions are those of `kabuguard replay`.
        """
        status, body, headers = await service.post_events(who, request.headers.get("content-length"),
                                                          request.receive)
        return Response(body, status_code=status, media_type="application/json", headers=dict(headers))

    # `:path`: an account id may hold a `/` (the contract allows any text), which routing would
    # otherwise take as a separator, escaped (%2F) or not.
    @app.get("/v1/accounts/{account_id:path}", response_model=AccountAnswer,
             responses={**errors, 404: {"model": Problem}}, tags=["reads"])
    async def get_account(account_id: str, who: Auth) -> Response:
        """The account's risk, its latest decisions (newest first) and its open alerts."""
        if not 0 < len(account_id) <= ID_MAX or "\x00" in account_id:
            return _problem(422, f"account_id: 1 to {ID_MAX} characters and no NUL character")
        try:
            recent, open_alerts = await run_in_threadpool(service.db.account, who.firm, account_id)
        except Exception:
            return _problem(503, "the database is unreachable; retry shortly")
        try:
            status = await _status(service, who.firm, account_id)
            degraded = False
        except Exception:  # state unreadable (Redis down, hung, of another format): unknown, not absent
            status, degraded = {"contained": None, "campaign_id": None}, True
        if not recent and not open_alerts and status is None:
            return _problem(404, f"account_id: no decisions recorded for {account_id!r} in this firm")
        risk: dict[str, Any] = {"latest_score": None, "latest_decision": None}
        if recent:
            latest = msgspec.json.decode(recent[0])
            risk.update(latest_score=latest["score"], latest_decision=latest["decision"])
        if status is not None:
            risk.update(contained=status.get("contained", False), campaign_id=status.get("campaign_id") or None)
        body = (b'{"account_id":' + _json(account_id) + b',"degraded":' + _json(degraded) + b',"risk":' + _json(risk)
                + b',"recent_decisions":[' + b",".join(recent) + b'],"open_alerts":[' + b",".join(open_alerts) + b"]}")
        return Response(body, media_type="application/json", headers=_DEGRADED if degraded else None)

    @app.get("/v1/alerts", response_model=AlertsPage, responses=errors, tags=["reads"])
    async def get_alerts(who: Auth,
                         since: Annotated[str | None, Query(description="RFC 3339; alerts at or after",
                                                            json_schema_extra={"format": "date-time"})] = None,
                         until: Annotated[str | None, Query(description="RFC 3339; alerts before",
                                                            json_schema_extra={"format": "date-time"})] = None,
                         type: Annotated[AlertType | None, Query(description="the alert type")] = None,
                         cursor: Annotated[int, Query(ge=0, le=2**62, description="next_cursor of the previous page")] = 0,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        """Alerts of the key's firm in the order recorded, filtered by time and type, a page at a time."""
        try:
            since_us = parse_ts(since) if since is not None else None
            until_us = parse_ts(until) if until is not None else None
        except ContractError as exc:
            return _problem(422, f"since/until: {str(exc).replace('`ts`', 'the value')}")
        if type is not None and type not in _ALERT_TYPES:
            return _problem(422, f"type: expected one of {', '.join(_ALERT_TYPES)}, got {type!r}")
        try:
            rows = await run_in_threadpool(service.db.alerts, who.firm, since_us, until_us, type, cursor, limit)
        except Exception:
            return _problem(503, "the database is unreachable; retry shortly")
        next_cursor = rows[-1][0] if len(rows) == limit else None
        body = (b'{"alerts":[' + b",".join(body for _, body in rows) + b'],"next_cursor":'
                + _json(next_cursor) + b"}")
        return Response(body, media_type="application/json")

    @app.get("/v1/openapi.json", include_in_schema=False)
    async def openapi_schema(who: Auth) -> JSONResponse:
        """The OpenAPI schema of this API."""
        return JSONResponse(app.openapi())

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up (no authentication)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "a store is unreachable, or Redis holds state of another format"}})
    async def readyz() -> JSONResponse:
        """State and database both reachable (no authentication)."""
        checks = {}
        try:
            async with asyncio.timeout(settings.deadline_ms / 1000):
                await service.decider.state.ping()
            # (An unauthenticated answer: the slots and the prefix are in the log, not here.)
            checks["state"] = "format mismatch" if service.decider.state.format_error else "ok"
        except Exception as exc:
            checks["state"] = f"unreachable ({type(exc).__name__})"
        try:
            await asyncio.wait_for(run_in_threadpool(service.db.ping), settings.deadline_ms / 1000 * 4)
            checks["db"] = "ok"
        except Exception as exc:
            checks["db"] = f"unreachable ({type(exc).__name__})"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # TAXII 2.1 (docs/intel.md): the same keys, the same database; the console reads it too.
    taxii = TaxiiStore(service.db.engine)
    mount_console(app, service, taxii)
    install_taxii(app, taxii, service.authenticate, settings.max_body_bytes, Refusal)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(EventsFastPath, service=service)
    app.add_middleware(AccessLog)
    return app


class EventsFastPath:
    """`POST /v1/events` straight from ASGI, past FastAPI's routing and dependency injection.

    The same `Service.authenticate` and `Service.post_events` as the FastAPI route (which stays,
    for the OpenAPI schema); at a thousand requests a second the framework's share of the CPU
    was the largest single part (bench/bench_service.py --profile)."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/events" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["kabuguard.route"] = "/v1/events"
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization")
        api_key = headers.get(b"x-api-key")
        extra: list[tuple[str, str]] = []
        try:
            who = await self.service.authenticate(authorization.decode("latin-1") if authorization is not None else None,
                                                  api_key.decode("latin-1") if api_key is not None else None)
        except Refusal as exc:
            status, body = exc.status, _json({"detail": exc.detail})
            extra = list((exc.headers or {}).items())
        else:
            scope.setdefault("state", {})["principal"] = who
            length = headers.get(b"content-length")
            status, body, extra = await self.service.post_events(
                who, length.decode("latin-1") if length is not None else None, receive)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in extra)]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Every request body but `POST /v1/events`' (the fast path streams its own) at most `limit`
    bytes: refused with 413 on its Content-Length before a byte is read, or as soon as a body sent
    without one passes the limit, so that no client, signed in or not, makes the server hold more.
    Plain ASGI, behind the events fast path."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        size, started, too_large = 0, False, False

        async def counted() -> dict[str, Any]:
            nonlocal size, too_large
            message = await receive()
            size += len(message.get("body", b""))
            if size > self.limit:
                too_large = True
                raise _TooLarge
            return message

        async def sending(message: dict[str, Any]) -> None:
            nonlocal started
            if too_large:  # a route turned the cut-off body into its own error: answer 413 instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = _json({"detail": f"request body exceeds the limit of {self.limit} bytes"})
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class AccessLog:
    """One structured line per request (route template, status, latency, key id; never the path's
    ids or the client's address) and the worker's pid as a header. Plain ASGI: cheaper than
    Starlette's BaseHTTPMiddleware on every request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-kabuguard-worker", _PID_BYTES)]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if log.isEnabledFor(logging.INFO):
                route = scope.get("kabuguard.route") or getattr(scope.get("route"), "path_format", "unmatched")
                who = scope.get("state", {}).get("principal")
                log.info("request", extra={
                    "method": scope["method"], "route": route, "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                    "key_id": who.key_id if who else None, "firm": who.firm if who else None})


async def _status(service: Service, firm: str, account_id: str) -> dict[str, Any] | None:
    """The final stage's containment and campaign for the account, None when it has no final
    state; raises when state cannot be read within the deadline."""
    decider = service.decider
    key = ("final", account_id)  # the firm's state is its own: events lose their firm on the way in
    async with asyncio.timeout(service.settings.deadline_ms / 1000):
        snapshot = await decider.state.load(firm, [key], [])
    data = snapshot.raw.get(key)
    if not data:
        return None
    status = decider.codec.decode("final", data).get("status")
    return {} if status is None else {"contained": status.contained, "campaign_id": status.campaign_id}


def _problem(status: int, detail: str) -> Response:
    return Response(_json({"detail": detail}), status_code=status, media_type="application/json")


def factory() -> FastAPI:
    """For `uvicorn --factory kabuguard.service.app:factory`: settings from the environment."""
    return create_app(load_settings(), migrate_db=False)


def migrate_database(url: str) -> None:
    engine = Database(url).engine
    try:
        migrate(engine)
    finally:
        engine.dispose()
