"""The console's routes at /console: server-rendered pages, a few JSON reads for the charts and
the live queue, and form posts that act. Authentication, CSRF and roles are dependencies, so
each handler is the few lines of what it does.

- `viewer`: a live session (else the login page, or 401 for JSON), any role.
- `checked`: a viewer whose request carries the session's CSRF token (form field `csrf` or
  header `X-CSRF-Token`); every state-changing route has it.
- `actor`: a checked viewer whose role may act (analyst, lead, admin); an auditor gets 403.

A user of one firm sees and acts on that firm's records only: lists are filtered by the user's
firm, and a page or action naming another firm's alert, account or case is refused with 404.
"""


import hmac
import logging
import secrets
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import DataError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders

from kabuguard.console import audit, cases, lockout, queries
from kabuguard.console.cases import CaseError
from kabuguard.console.containment import ContainmentError, actions
from kabuguard.console.models import DISPOSITIONS
from kabuguard.console.sessions import COOKIE, Session, close_session, find_session, open_session
from kabuguard.console.users import PasswordChecksBusy, authenticate, firm_of
from kabuguard.console.webhooks import deliveries
from kabuguard.intel.stats import STATS_TYPES, aggregate
from kabuguard.intel.taxii.store import TaxiiStore
from kabuguard.policy.playbooks import MEASURES

PREFIX = "/console"
# Password guessing: after this many failed logins for one user name from one address, or from
# any, in this many minutes, its logins (from there, or from anywhere) are refused until the window
# has passed (each failure is in the audit log). Checks still running count as failed, so
# concurrent guesses cannot pass together (lockout.py).
AUDIT_PAGE = 200  # audit entries a page
MAX_FAILED_LOGINS = 10  # per user name and client address
MAX_FAILED_LOGINS_ANY_CLIENT = 100  # per user name: guessing spread over many addresses
LOCKOUT_MINUTES = 15
_LOGIN_COOKIE = "kg_login"  # the login form's CSRF token (double submit): no session exists yet
_STATIC = {"cytoscape.min.js": "text/javascript", "uPlot.iife.min.js": "text/javascript",
           "uPlot.min.css": "text/css", "console.css": "text/css", "console.js": "text/javascript"}
_HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "img-src 'self' data:; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


log = logging.getLogger("kabuguard.console")

# What the page after an action says, by the code its redirect carries: never text from the
# link, which a crafted link would have shown as the console's own notice.
_NOTICES = {"contained": "account contained", "contained-alert": "contained {n} accounts",
            "case-opened": "case opened", "assigned": "assigned", "comment": "comment added",
            "linked": "account linked", "closed": "case closed"}


def _notice(request: Request) -> str:
    notice = _NOTICES.get(request.query_params.get("done", ""), "")
    if "{n}" not in notice:
        return notice
    n = request.query_params.get("n", "")
    return notice.format(n=int(n)) if n.isdecimal() and len(n) < 10 else ""


class LoginRequired(Exception):
    """No live session: pages go to the login page, JSON reads get 401."""


def mount_console(app: FastAPI, service: Any, taxii: TaxiiStore) -> None:
    """Add the console's routes and error pages to the service's app."""
    engine = service.db.engine
    settings = service.settings
    containment = service.containment
    templates = Jinja2Templates(directory=str(resources.files("kabuguard.console") / "templates"))
    templates.env.filters["segment"] = _segment
    templates.env.filters["receiver"] = _receiver
    static = resources.files("kabuguard.console") / "static"

    def page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        session = getattr(request.state, "console", None)
        return templates.TemplateResponse(request, name, {"session": session, "measures": MEASURES,
                                                          "done": _notice(request), **context},
                                          status_code=code)

    def viewer(request: Request) -> Session:
        session = find_session(engine, request.cookies.get(COOKIE))
        if session is None:
            raise LoginRequired()
        request.state.console = session
        return session

    async def checked(request: Request, session: Annotated[Session, Depends(viewer)]) -> Session:
        token = request.headers.get("x-csrf-token")
        if token is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            token = (await request.form()).get("csrf")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), session.csrf.encode()):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        return session

    def actor(session: Annotated[Session, Depends(checked)]) -> Session:
        if not session.user.can_act:
            raise HTTPException(403, f"your role ({session.user.role}) can read but not act")
        return session

    Viewer = Annotated[Session, Depends(viewer)]
    CaseId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # what the databases' integer keys hold
    Actor = Annotated[Session, Depends(actor)]
    Checked = Annotated[Session, Depends(checked)]
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    def within(session: Session, firm: str) -> None:
        """Refuse what belongs to a firm the user does not see (as not found: nothing to tell)."""
        if not session.user.sees(firm):
            raise HTTPException(404, f"firm {firm!r}: not found among your firm's records ({session.user.firm})")

    def case_within(session: Session, case_id: int) -> None:
        """Refuse a case of a firm the user does not see as a missing one: ids probed tell nothing."""
        firm = cases.case_firm(engine, case_id)
        if firm is None or not session.user.sees(firm):
            raise HTTPException(404, f"case {case_id}: not found")

    def sent_for(taken: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The webhook deliveries of these containment actions, for their table's Webhooks column."""
        return deliveries(engine, [a["action_id"] for a in taken])

    def back(path: str, done: str, **detail: int) -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}{path}?{urlencode({'done': done, **detail})}", status_code=303)

    # -- login ----------------------------------------------------------------------------

    @router.get("/login")
    def login_page(request: Request, next: str = "") -> HTMLResponse:
        token = request.cookies.get(_LOGIN_COOKIE) or secrets.token_urlsafe(32)
        response = page(request, "login.html", csrf=token, next=next, error="")
        _cookie(response, _LOGIN_COOKIE, token, settings, max_age=3600)
        return response

    refusals = lockout.Refusals(LOCKOUT_MINUTES)

    def refused_login(username: str, action: str, reason: str) -> None:
        """Audit a refused login under the named user's firm, so that the firm's own audit log shows
        guessing at its analysts (a name that is no user's: no firm); the answer tells neither."""
        firm = firm_of(engine, username)
        with lockout.serial, engine.begin() as conn:
            audit.record(conn, username[:64], action, reason, firm=firm)

    @router.post("/login")
    def login(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()],
              csrf: Annotated[str, Form()], next: Annotated[str, Form()] = "") -> Response:
        expected = request.cookies.get(_LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
            raise HTTPException(403, "missing or wrong CSRF token: reload the login page")
        client = lockout.client_key(request.client.host if request.client else "")
        attempt = lockout.reserve(engine, username[:64], client, MAX_FAILED_LOGINS, MAX_FAILED_LOGINS_ANY_CLIENT,
                                  LOCKOUT_MINUTES)
        if attempt is None:
            if refusals.first(username[:64], client):
                refused_login(username, "session.login_locked", "refused: too many failed logins")
            return page(request, "login.html", 429, csrf=expected, next=next,
                        error=f"Too many failed logins for this user: try again in {LOCKOUT_MINUTES} minutes.")
        try:
            user = authenticate(engine, username, password)
        except PasswordChecksBusy:
            with lockout.serial, engine.begin() as conn:
                lockout.give_back(conn, attempt)
            return page(request, "login.html", 429, csrf=expected, next=next,
                        error="Too many logins at once: try again in a moment.")
        if user is None:
            refused_login(username, "session.login_failed", "wrong user name or password")
            return page(request, "login.html", 401, csrf=expected, next=next, error="Wrong user name or password.")
        with lockout.serial, engine.begin() as conn:
            lockout.give_back(conn, attempt)
            audit.record(conn, user.username, "session.login", "logged in", firm=user.firm)
        response = RedirectResponse(next if next.startswith(PREFIX + "/") else f"{PREFIX}/", status_code=303)
        _cookie(response, COOKIE, open_session(engine, user, settings.console_session_hours), settings,
                max_age=int(settings.console_session_hours * 3600))
        response.delete_cookie(_LOGIN_COOKIE, path=PREFIX)
        return response

    @router.post("/logout")
    def logout(request: Request, session: Checked) -> Response:
        close_session(engine, request.cookies[COOKIE])
        with engine.begin() as conn:
            audit.record(conn, session.user.username, "session.logout", "logged out", firm=session.user.firm)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    # -- reading --------------------------------------------------------------------------

    @router.get("/")
    def dashboard(request: Request, session: Viewer) -> HTMLResponse:
        return page(request, "dashboard.html", data=queries.dashboard(engine, session.user.firm))

    @router.get("/api/dashboard")
    def dashboard_data(session: Viewer) -> dict[str, Any]:
        return queries.dashboard(engine, session.user.firm)

    def alert_filter(session: Viewer, type: str = "", firm: str = "", reason: str = "", min_score: float = 0.0,
                     since: str = "", until: str = "",
                     status: Annotated[str, Query(pattern="^(open|closed|)$")] = "",
                     sort: Annotated[str, Query(pattern="^(time|score|type|firm)$")] = "time",
                     order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc") -> queries.AlertFilter:
        for name, day in (("since", since), ("until", until)):
            if day and not queries.is_day(day):
                raise HTTPException(422, f"{name}: {day!r} is not a date (YYYY-MM-DD)")
        return queries.AlertFilter(type, firm, reason, min_score, since, until, sort, order == "desc",
                                   session.user.firm, settings.console_utc_offset_hours, status)

    Filter = Annotated[queries.AlertFilter, Depends(alert_filter)]

    @router.get("/alerts")
    def alert_queue(request: Request, session: Viewer, f: Filter) -> HTMLResponse:
        # Read first: the live poll then brings exactly what is recorded after the rows shown.
        newest = queries.newest_alert_seq(engine, session.user.firm)
        return page(request, "alerts.html", alerts=queries.alert_queue(engine, f, upto_seq=newest), f=f,
                    last_seq=newest, query=request.url.query)

    @router.get("/api/alerts")
    def alert_feed(session: Viewer, f: Filter, after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0) -> dict[str, Any]:
        """Alerts recorded after `after`, in the order recorded (the page polls this, so new alerts
        appear without a reload); `more`: poll again at once."""
        found, more = queries.alert_feed(engine, f, after)
        return {"alerts": found, "more": more}

    @router.get("/alerts/{firm}/{alert_id:path}")
    def alert_page(request: Request, session: Viewer, firm: str, alert_id: str) -> HTMLResponse:
        within(session, firm)
        found = queries.alert(engine, firm, alert_id)
        if found is None:
            raise HTTPException(404, f"alert {alert_id!r} of firm {firm!r}: not found")
        taken = actions(engine, firm, alert_id=alert_id, limit=None)
        return page(request, "alert.html", alert=found, accounts=cases.alert_accounts(firm, found),
                    actions=taken, deliveries=sent_for(taken))

    @router.get("/api/campaign/{firm}/{alert_id:path}")
    def campaign_data(session: Viewer, firm: str, alert_id: str) -> dict[str, Any]:
        within(session, firm)
        found = queries.alert(engine, firm, alert_id)
        if found is None:
            raise HTTPException(404, f"alert {alert_id!r} of firm {firm!r}: not found")
        return queries.campaign(engine, found)

    @router.get("/accounts/{firm}/{account_id:path}")
    def account_page(request: Request, session: Viewer, firm: str, account_id: str) -> HTMLResponse:
        within(session, firm)
        taken = actions(engine, firm, account_id)
        return page(request, "account.html", firm=firm, account_id=account_id,
                    timeline=queries.timeline(engine, firm, account_id, settings.console_utc_offset_hours),
                    actions=taken, deliveries=sent_for(taken))

    @router.get("/cases")
    def case_list(request: Request, session: Viewer, status: str = "") -> HTMLResponse:
        return page(request, "cases.html", cases=cases.list_cases(engine, status or None, session.user.firm),
                    status=status)

    @router.get("/cases/{case_id}")
    def case_page(request: Request, session: Viewer, case_id: CaseId) -> HTMLResponse:
        case_within(session, case_id)
        return page(request, "case.html", case=cases.get_case(engine, case_id),
                    dispositions=DISPOSITIONS, trail=audit.entries(engine, target=f"case:{case_id}"))

    @router.get("/audit")
    def audit_page(request: Request, session: Viewer, action: Annotated[str, Query(max_length=64)] = "",
                   before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None) -> HTMLResponse:
        """Newest first, by kind of action, a page at a time: a burst of failed logins must not
        hide the containments behind it."""
        firm = session.user.firm
        taken = actions(engine, firm, limit=200)
        sent = deliveries(engine, None if firm is None else [a["action_id"] for a in taken], limit=200)
        shown = audit.entries(engine, firm=firm, action=action, before=before, limit=AUDIT_PAGE)
        older = shown[-1]["seq"] if len(shown) == AUDIT_PAGE else None
        return page(request, "audit.html", entries=shown, deliveries=sent, actions=taken, action=action,
                    older=urlencode({"action": action, "before": older}) if older else "")

    @router.get("/intel")
    def intel_page(request: Request, session: Viewer, collection: str = "") -> HTMLResponse:
        """The regulator's view: the FSA's monthly figures and the most targeted symbols, summed
        over the firms' reports in a TAXII collection the user's firm may read."""
        readable = [c for c in taxii.collections(session.user.firm) if c["can_read"]]
        chosen = collection or (readable[0]["id"] if readable else "")
        if chosen and chosen not in {c["id"] for c in readable}:
            raise HTTPException(404, f"collection {chosen!r}: not found among the collections your firm may read")
        stats = None
        if chosen:
            shared, posted_by = taxii.latest_objects(chosen, list(STATS_TYPES))
            stats = aggregate(shared, posted_by=posted_by)
        return page(request, "intel.html", collections=readable, chosen=chosen, stats=stats)

    @router.get("/static/{name}")
    def asset(session: Viewer, name: str) -> FileResponse:
        if name not in _STATIC:
            raise HTTPException(404, f"{name}: no such asset")
        return FileResponse(str(static / name), media_type=_STATIC[name], headers={"Cache-Control": "private, max-age=3600"})

    # -- acting ---------------------------------------------------------------------------

    @router.post("/contain/account")
    async def contain_account(session: Actor, firm: Annotated[str, Form()], account_id: Annotated[str, Form()],
                              reason: Annotated[str, Form()]) -> Response:
        within(session, firm)
        await containment.contain(session.user.username, firm, [account_id], reason)
        return back(f"/accounts/{_segment(firm)}/{_segment(account_id)}", "contained")

    @router.post("/contain/alert")
    async def contain_alert(session: Actor, firm: Annotated[str, Form()], alert_id: Annotated[str, Form()],
                            reason: Annotated[str, Form()]) -> Response:
        within(session, firm)
        ids = await containment.contain_alert(session.user.username, firm, alert_id, reason)
        return back(f"/alerts/{_segment(firm)}/{_segment(alert_id)}", "contained-alert", n=len(ids))

    @router.post("/cases")
    def open_case(session: Actor, firm: Annotated[str, Form()], alert_id: Annotated[str, Form()]) -> Response:
        within(session, firm)
        case_id = cases.open_case(engine, session.user.username, firm, [alert_id])
        return back(f"/cases/{case_id}", "case-opened")

    @router.post("/cases/{case_id}/assign")
    def assign(session: Actor, case_id: CaseId, assignee: Annotated[str, Form()] = "") -> Response:
        case_within(session, case_id)
        cases.assign(engine, session.user.username, case_id, assignee.strip())
        return back(f"/cases/{case_id}", "assigned")

    @router.post("/cases/{case_id}/comment")
    def comment(session: Actor, case_id: CaseId, text: Annotated[str, Form()]) -> Response:
        case_within(session, case_id)
        cases.comment(engine, session.user.username, case_id, text)
        return back(f"/cases/{case_id}", "comment")

    @router.post("/cases/{case_id}/link")
    def link(session: Actor, case_id: CaseId, account_id: Annotated[str, Form()],
             reason: Annotated[str, Form()] = "") -> Response:
        case_within(session, case_id)
        cases.link_account(engine, session.user.username, case_id, account_id.strip(), reason)
        return back(f"/cases/{case_id}", "linked")

    @router.post("/cases/{case_id}/close")
    def close(session: Actor, case_id: CaseId, disposition: Annotated[str, Form()],
              reason: Annotated[str, Form()]) -> Response:
        case_within(session, case_id)
        cases.close(engine, session.user.username, case_id, disposition, reason)
        return back(f"/cases/{case_id}", "closed")

    app.include_router(router)
    app.add_middleware(SecurityHeaders)

    @app.get(PREFIX, include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.startswith(f"{PREFIX}/api/") or request.method != "GET":
            return JSONResponse({"detail": "log in to the console first"}, status_code=401)
        asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")  # a queue link keeps its filters
        return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': asked})}", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if not request.url.path.startswith(PREFIX) or request.url.path.startswith(f"{PREFIX}/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return page(request, "error.html", exc.status_code, message=exc.detail)

    async def bad_input(request: Request, exc: Exception) -> Response:
        """The form's mistake (a closed case, no reason given): say so on a page."""
        return await run_in_threadpool(page, request, "error.html", 400, message=str(exc))

    for error in (CaseError, ContainmentError):
        app.add_exception_handler(error, bad_input)

    service_invalid = app.exception_handlers[RequestValidationError]

    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        """A form sent without a field (a reason cleared) or with a value out of range: the
        console's own error page, naming the field, where the API answers JSON."""
        path = request.url.path
        if not path.startswith(f"{PREFIX}/") or path.startswith(f"{PREFIX}/api/"):
            return await service_invalid(request, exc)
        fields = "; ".join(f"{e['loc'][-1]}: {e.get('msg', 'invalid')}" for e in exc.errors())
        return await run_in_threadpool(page, request, "error.html", 422, message=fields)

    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]

    @app.exception_handler(OperationalError)
    async def unreachable(request: Request, exc: OperationalError) -> Response:
        """The database cannot be reached (an outage): say so, rather than a 500 and a traceback."""
        log.warning("console: the database cannot be reached", extra={"error": type(exc.orig).__name__})
        return await http_error(request, HTTPException(503, "the database cannot be reached; try again shortly"))

    @app.exception_handler(DataError)
    async def unstorable(request: Request, exc: DataError) -> Response:
        """A value the database refuses (PostgreSQL: wider than its column, or a NUL character):
        the request's mistake, not an outage; the driver's text (which quotes the values) is not shown."""
        return await http_error(request, HTTPException(
            400, "a value is longer than its field allows or holds a NUL character"))


class SecurityHeaders:
    """The console's security headers (`_HEADERS`) on every answer under /console: pages, JSON
    reads (customers' account ids, IPs, devices: never cached, never sniffed), redirects and
    errors alike; a header a route set itself (the assets' caching) stands. Plain ASGI, and the
    decision API's paths pass untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(f"{PREFIX}/"):
            await self.app(scope, receive, send)
            return

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, sending)


def _segment(value: str) -> str:
    """`value` as one path segment: ids may hold '/' (the event contract allows it)."""
    return quote(value, safe="")


def _receiver(url: str) -> str:
    """A webhook receiver's URL as pages show it, scheme://host[:port]/path: its user info and query
    may hold a password or token, and every console user, auditors too, reads the audit page."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed address: its scheme alone
        return url.split(":", 1)[0] + "://…"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _cookie(response: Response, name: str, value: str, settings: Any, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="strict",
                        secure=bool(settings.console_secure_cookie))
