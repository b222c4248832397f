"""The TAXII 2.1 endpoints of `kabuguard serve`: discovery, one API root, collections, objects,
manifest, versions, status and POST of envelopes.

Every endpoint needs a firm's API key, sent as HTTP Basic's password (what `taxii2-client` and
most TAXII clients send; the user name is not checked) or as `Authorization: Bearer`. A firm
sees the collections it has a right on (`kabuguard intel collections`), reads only where it may
read and posts only where it may write. Answers use TAXII's media type; pages follow `next`.
"""

# No `from __future__ import annotations`: FastAPI must see the dependency types of the routes,
# which are local to `taxii_router`.
import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kabuguard.intel.finite import non_finite
from kabuguard.intel.stats import STATS_TYPES, aggregate
from kabuguard.intel.taxii.store import Page, TaxiiError, TaxiiStore

MEDIA, VERSION = "application/taxii+json", "2.1"
TAXII = f"{MEDIA};version={VERSION}"
_ANY = ("*/*", "application/*")
STIX_VERSION = "2.1"  # of the objects stored (`store._problem`)
_SPEC_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")
API_ROOT = "kabuguard"
MAX_PAGE = 1000
_DEFAULT_PAGE = 100

Authenticate = Callable[[str | None, str | None], Awaitable[Any]]


def _answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status_code=status, media_type=TAXII, headers=headers)


def _error(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return _answer({"title": title, "description": detail, "http_status": str(status)}, status, headers)


class Refused(Exception):
    """A request answered with a TAXII error resource."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """(Authorization header for Bearer, API key from Basic's password)."""
    if authorization is None:
        return None, None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return authorization, None
    try:
        _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Refused(401, "malformed Basic credentials", {"WWW-Authenticate": 'Basic realm="taxii"'}) from None
    return None, password


async def authenticated_firm(request: Request, authenticate: Authenticate, refusal: type[Exception]) -> str:
    """The firm of the request's API key (Basic password, Bearer or X-API-Key); raises Refused."""
    try:
        bearer, key = credentials(request.headers.get("authorization"))
        who = await authenticate(bearer, key or request.headers.get("x-api-key"))
    except refusal as exc:
        headers = dict(getattr(exc, "headers", None) or {})
        if headers.get("WWW-Authenticate"):
            headers["WWW-Authenticate"] = 'Basic realm="taxii", Bearer'
        raise Refused(getattr(exc, "status"), getattr(exc, "detail"), headers) from None
    request.state.principal = who
    return who.firm


def _media_ranges(header: str) -> list[tuple[str, str | None]]:
    """(type/subtype, its `version` parameter or None) of each media range of an Accept or
    Content-Type header."""
    ranges = []
    for part in header.split(","):
        kind, *parameters = (p.strip() for p in part.split(";"))
        versions = [value.strip().strip('"') for name, _, value in (p.partition("=") for p in parameters)
                    if name.strip().lower() == "version"]
        ranges.append((kind.lower(), versions[0] if versions else None))
    return ranges


def _unsupported(header: str) -> str:
    """The TAXII version a header asks for that this server does not speak, said first in a refusal."""
    asked = [version for kind, version in _media_ranges(header) if kind == MEDIA and version not in (None, VERSION)]
    return f"version {asked[0]} of {MEDIA} is not supported; " if asked else ""


def taxii_router(store: TaxiiStore, authenticate: Authenticate, max_content_length: int,
                 refusal: type[Exception]) -> APIRouter:
    """The routes, over `store`, with the service's own key check (`authenticate`, raising `refusal`)."""
    # TAXII 2.1 specifies these routes; the service's OpenAPI schema (and its fuzzing) stays its own.
    router = APIRouter(prefix="/taxii2", tags=["taxii"], include_in_schema=False)

    async def firm(request: Request) -> str:
        accept = request.headers.get("accept")
        if accept and not any(kind in _ANY or (kind == MEDIA and version in (None, VERSION))
                              for kind, version in _media_ranges(accept)):
            raise Refused(406, f"Accept: {_unsupported(accept)}this server answers {TAXII}")
        return await authenticated_firm(request, authenticate, refusal)

    Firm = Annotated[str, Depends(firm)]

    async def readable(who: str, collection_id: str) -> None:
        if not (await run_in_threadpool(store.rights, who, collection_id)).can_read:
            raise Refused(403, f"collection {collection_id!r}: this firm may not read it")

    @router.get("/")
    async def discovery(request: Request, who: Firm) -> Response:
        """TAXII discovery: the one API root."""
        root = str(request.url_for("api_root"))
        return _answer({"title": "Kabuguard TAXII 2.1", "description": "Indicators shared between brokerages "
                        "and the regulator (docs/intel.md).", "default": root, "api_roots": [root]})

    @router.get(f"/{API_ROOT}/", name="api_root")
    async def api_root(who: Firm) -> Response:
        return _answer({"title": "Kabuguard indicators", "versions": [TAXII],
                        "max_content_length": max_content_length})

    @router.get(f"/{API_ROOT}/collections/")
    async def collections(who: Firm) -> Response:
        found = await run_in_threadpool(store.collections, who)
        return _answer({"collections": found} if found else {})

    @router.get(f"/{API_ROOT}/collections/{{collection_id}}/")
    async def collection(collection_id: str, who: Firm) -> Response:
        return _answer(await run_in_threadpool(store.collection, who, collection_id))

    @router.get(f"/{API_ROOT}/collections/{{collection_id}}/objects/")
    async def objects(collection_id: str, request: Request, who: Firm) -> Response:
        await readable(who, collection_id)
        page = await _page(store, collection_id, request)
        return _envelope(page, {"objects": None})

    @router.post(f"/{API_ROOT}/collections/{{collection_id}}/objects/", status_code=202)
    async def add_objects(collection_id: str, request: Request, who: Firm) -> Response:
        if not (await run_in_threadpool(store.rights, who, collection_id)).can_write:
            raise Refused(403, f"collection {collection_id!r}: this firm may not write to it")
        content_type = request.headers.get("content-type", "")
        if list(_media_ranges(content_type)) not in ([(MEDIA, None)], [(MEDIA, VERSION)]):
            raise Refused(415, f"Content-Type: {_unsupported(content_type)}send an envelope as {TAXII}")
        body = await request.body()
        if len(body) > max_content_length:
            raise Refused(413, f"envelope of {len(body)} bytes exceeds max_content_length {max_content_length}")
        try:
            envelope = json.loads(body)
        except ValueError as exc:
            raise Refused(400, f"body is not JSON: {exc}") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("objects"), list):
            raise Refused(422, "expected an envelope: a JSON object with an `objects` array")
        for n, obj in enumerate(envelope["objects"]):
            where = non_finite(obj, f"objects[{n}]")
            if where is not None:  # not JSON (RFC 8259), though Python's json reads it
                name = f" ({obj['id']})" if isinstance(obj, dict) and isinstance(obj.get("id"), str) else ""
                raise Refused(400, f"{where}{name}: NaN or Infinity is not a JSON number; send a finite number")
        status = await run_in_threadpool(store.add, who, collection_id, envelope["objects"])
        return _answer(status, 202)

    @router.get(f"/{API_ROOT}/collections/{{collection_id}}/objects/{{object_id}}/")
    async def one_object(collection_id: str, object_id: str, request: Request, who: Firm) -> Response:
        await readable(who, collection_id)
        page = await _page(store, collection_id, request, object_id)
        if not page.rows:
            raise Refused(404, f"object {object_id!r}: not in collection {collection_id!r}")
        return _envelope(page, {"objects": None})

    @router.get(f"/{API_ROOT}/collections/{{collection_id}}/objects/{{object_id}}/versions/")
    async def versions(collection_id: str, object_id: str, request: Request, who: Firm) -> Response:
        await readable(who, collection_id)
        page = await _page(store, collection_id, request, object_id, versions=["all"])
        if not page.rows:
            raise Refused(404, f"object {object_id!r}: not in collection {collection_id!r}")
        return _envelope(page, {"versions": [version for _, _, version, _ in page.rows]})

    @router.get(f"/{API_ROOT}/collections/{{collection_id}}/manifest/")
    async def manifest(collection_id: str, request: Request, who: Firm) -> Response:
        await readable(who, collection_id)
        page = await _page(store, collection_id, request)
        return _envelope(page, {"objects": [
            {"id": stix_id, "date_added": added, "version": version, "media_type": "application/stix+json;version=2.1"}
            for _, stix_id, version, added in page.rows]})

    @router.get(f"/{API_ROOT}/status/{{status_id}}/")
    async def status(status_id: str, who: Firm) -> Response:
        return _answer(await run_in_threadpool(store.status, who, status_id))

    return router


async def _page(store: TaxiiStore, collection_id: str, request: Request, object_id: str | None = None,
                versions: list[str] | None = None) -> Page:
    query = request.query_params
    try:
        limit = min(MAX_PAGE, int(query.get("limit", _DEFAULT_PAGE)))
        after = int(query.get("next", 0))
    except ValueError:
        raise Refused(400, "limit and next must be integers (next: as the previous page gave it)") from None
    if limit < 1 or not 0 <= after < 2**63:
        raise Refused(400, "limit must be at least 1 and next not negative (as the previous page gave it)")

    def listed(name: str) -> list[str]:
        return [v for raw in query.getlist(f"match[{name}]") for v in raw.split(",") if v]

    specs = listed("spec_version")
    for spec in specs:
        if not _SPEC_VERSION.match(spec):
            raise Refused(400, f"match[spec_version] {spec!r}: not a STIX version (e.g. {STIX_VERSION})")
    if specs and STIX_VERSION not in specs:  # the only version stored
        return Page([], [], False, None)
    return await run_in_threadpool(store.page, collection_id, query.get("added_after"), after, limit,
                                   listed("id"), listed("type"), versions or listed("version"), object_id)


def _envelope(page: Page, fields: dict[str, Any]) -> Response:
    """`objects` None means the stored bytes themselves, joined without decoding them."""
    head: dict[str, Any] = {"more": page.more}
    if page.next is not None:
        head["next"] = page.next
    headers = {}
    if page.rows:
        added = [row[3] for row in page.rows]
        headers = {"X-TAXII-Date-Added-First": min(added), "X-TAXII-Date-Added-Last": max(added)}
    if not page.rows:
        return _answer(head, headers=headers)
    parts = [json.dumps(head, separators=(",", ":"))[:-1].encode()]
    for name, value in fields.items():
        encoded = b"[" + b",".join(page.bodies) + b"]" if value is None else json.dumps(value).encode()
        parts.append(b',"' + name.encode() + b'":' + encoded)
    return _answer(b"".join(parts) + b"}", headers=headers)


def stats_router(store: TaxiiStore, authenticate: Authenticate, refusal: type[Exception]) -> APIRouter:
    """`GET /v1/intel/stats?collection=ID`: the regulator's figures (`intel stats --json`) over a
    collection the key's firm may read, for the console."""
    router = APIRouter(include_in_schema=False)

    @router.get("/v1/intel/stats")
    async def intel_stats(request: Request, collection: str | None = None, top: int = 10) -> Response:
        who = await authenticated_firm(request, authenticate, refusal)
        if not collection:
            raise Refused(422, "collection: name the collection firms report to (?collection=ID)")
        if not (await run_in_threadpool(store.rights, who, collection)).can_read:
            raise Refused(403, f"collection {collection!r}: this firm may not read it")
        shared, posted_by = await run_in_threadpool(store.latest_objects, collection, list(STATS_TYPES))
        return JSONResponse(aggregate(shared, max(1, min(top, 100)), posted_by))

    return router


def install(app: Any, store: TaxiiStore, authenticate: Authenticate, max_content_length: int,
            refusal: type[Exception]) -> None:
    """Mount the TAXII routes and the stats endpoint on the service's app.

    Failures answer as TAXII error resources under /taxii2/, as `{"detail": ...}` elsewhere."""
    app.include_router(taxii_router(store, authenticate, max_content_length, refusal))
    app.include_router(stats_router(store, authenticate, refusal))

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        if request.url.path.startswith("/taxii2/"):
            return _error(exc.status, "refused", exc.detail, exc.headers)
        return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)

    @app.exception_handler(TaxiiError)
    async def taxii_error(request: Request, exc: TaxiiError) -> Response:
        if request.url.path.startswith("/taxii2/"):
            return _error(exc.status, "refused", exc.detail)
        return JSONResponse({"detail": exc.detail}, exc.status)
