"""`kabuguard intel pull`: a peer's or the regulator's TAXII collection into `indicator` events.

Each STIX indicator whose pattern is one comparison Kabuguard can match (`stix.parse_pattern`)
becomes one contract line with `ts` = its arrival at this firm, so that replay and service use it
from then on and never before. Its `source` is the name of the identity the indicator's
`created_by_ref` names: on a `kabuguard serve` the firm that posted it, since that server refuses
an object signed by any identity but the poster's own (`taxii/store.py`). A line carries the
indicator's `valid_until`; a revoked indicator becomes a line whose `valid_until` is its
revocation (its `modified`), which withdraws the value's earlier lines from its arrival on, as does
an expired one (`shared_indicator`). Patterns Kabuguard cannot match are skipped and counted; a
malformed object (not a JSON object, no id, an identity whose name is not text) or indicator (a
pattern or `created_by_ref` that is not text, a `valid_until` or `modified` that is not a
timestamp with an offset) is rejected with its id, or its place, and the reason, and the others
are still written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from requests import PreparedRequest, Response
from requests.auth import HTTPBasicAuth

from kabuguard.intel.stix import parse_pattern


@dataclass
class PullSummary:
    objects: int = 0
    indicators: int = 0
    written: int = 0
    withdrawn: int = 0  # of the written: revoked or expired, lines that end the value's earlier ones
    skipped: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (object, reason)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


class Feed:
    """A TAXII collection as `intel pull` reads it, through taxii2client (`url`: the server's
    discovery URL or an API root)."""

    def __init__(self, url: str, collection_id: str, user: str, key: str) -> None:
        from taxii2client.v21 import ApiRoot, Server

        self._auth = _Noting(user, key)
        server = Server(url, auth=self._auth)
        root = server.default or (server.api_roots[0] if server.api_roots else ApiRoot(url, auth=self._auth))
        matches = [c for c in root.collections if c.id == collection_id]
        if not matches:
            raise LookupError(f"collection {collection_id!r}: not offered to this firm at {url} "
                              f"(offered: {', '.join(c.id for c in root.collections) or 'none'})")
        self._collection = matches[0]

    @property
    def last_added(self) -> str | None:
        """The latest `X-TAXII-Date-Added-Last` of the object pages read: the next pull's `added_after`."""
        return self._auth.last_added

    def objects(self, added_after: str | None = None, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every object of the collection (latest versions) added after `added_after`, page by page."""
        from taxii2client.v21 import as_pages

        filters = {"added_after": added_after} if added_after else {}
        self._auth.noting = True
        try:
            for envelope in as_pages(self._collection.get_objects, per_request=page, **filters):
                yield from envelope.get("objects", [])
        finally:
            self._auth.noting = False

    def identities(self, ids: list[str]) -> Iterator[Any]:
        """The identities of `ids` (`match[id]`), whenever they were added: an increment holds an
        indicator without the identity that made it, posted before."""
        from taxii2client.v21 import as_pages

        for start in range(0, len(ids), _LOOKUP):
            chunk = ",".join(ids[start:start + _LOOKUP])
            for envelope in as_pages(self._collection.get_objects, per_request=_LOOKUP, id=chunk, type="identity"):
                yield from envelope.get("objects", [])


_LOOKUP = 50  # identity ids per request: a query string every server takes


class _Noting(HTTPBasicAuth):
    """HTTP Basic auth that notes each answer's `X-TAXII-Date-Added-Last` while `noting`:
    taxii2client hands back bodies only."""

    def __init__(self, user: str, key: str) -> None:
        super().__init__(user, key)
        self.noting = False
        self.last_added: str | None = None

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request = super().__call__(request)
        if self.noting:
            request.register_hook("response", self._note)
        return request

    def _note(self, response: Response, *args: Any, **kwargs: Any) -> None:
        added = response.headers.get("X-TAXII-Date-Added-Last")
        if added and (self.last_added is None or _instant(added) > _instant(self.last_added)):
            self.last_added = added


def indicator_events(objects: Iterable[dict[str, Any]], arrival: Callable[[dict[str, Any]], str],
                     summary: PullSummary, identities: Callable[[list[str]], Iterable[Any]] | None = None
                     ) -> list[dict[str, Any]]:
    """Contract `indicator` lines for the matchable indicators among `objects`; `identities`
    finds the creators `objects` lack (`Feed.identities`)."""
    readable = _readable(objects, summary)
    names = {o["id"]: o.get("name", "") for o in readable if o.get("type") == "identity"}
    missing = sorted({o["created_by_ref"] for o in readable if o.get("type") == "indicator"
                      and isinstance(o.get("created_by_ref"), str)} - names.keys())
    if missing and identities is not None:
        found = _readable(identities(missing), PullSummary())  # counted once: an unreadable one names no source
        names |= {o["id"]: o.get("name", "") for o in found if o.get("type") == "identity" and o["id"] in missing}
    withdrawals, lines = [], []
    for obj in readable:
        if obj.get("type") != "indicator":
            continue
        summary.indicators += 1
        problem = _problem(obj)
        if problem:
            summary.rejected.append((obj["id"], problem))
            continue
        parsed = parse_pattern(obj.get("pattern", "")) if obj.get("pattern_type", "stix") == "stix" else None
        if parsed is None:
            summary.skip("pattern Kabuguard cannot match")
            continue
        when = arrival(obj)
        kind, value = parsed
        line = {"event_id": f"ind-{obj['id'].split('--', 1)[1]}-{obj.get('modified', '')}", "type": "indicator",
                "ts": when, "indicator_type": kind, "value": value, "stix_id": obj["id"]}
        source = names.get(obj.get("created_by_ref", ""))
        if source:
            line["source"] = source
        until = _until(obj, when)
        if until is not None:
            line["valid_until"] = until.astimezone(timezone.utc).isoformat(timespec="microseconds")
        withdrawn = until is not None and until <= _instant(when)
        (withdrawals if withdrawn else lines).append(line)
        summary.withdrawn += withdrawn
    summary.written = len(withdrawals) + len(lines)
    # Withdrawals first: arriving at the same instant, another sharer's current line of the value counts.
    return withdrawals + lines


def _until(obj: dict[str, Any], when: str) -> datetime | None:
    """When the indicator stops counting: when it was revoked (its `modified`, at the latest its
    arrival here: revoked is revoked now), or its `valid_until`; None: it does not end."""
    if obj.get("revoked"):
        return min(_instant(obj.get("modified") or when), _instant(when))
    return _instant(obj["valid_until"]) if obj.get("valid_until") else None


def _readable(objects: Iterable[Any], summary: PullSummary) -> list[dict[str, Any]]:
    """The objects that can be read; the others rejected in `summary`, named and with the reason."""
    readable = []
    for n, obj in enumerate(objects):
        summary.objects += 1
        if not isinstance(obj, dict):
            summary.rejected.append((f"objects[{n}]", "not a JSON object"))
        elif not isinstance(obj.get("id"), str) or "--" not in obj["id"]:
            summary.rejected.append((f"objects[{n}]", "no STIX `id`"))
        elif obj.get("type") == "identity" and not isinstance(obj.get("name", ""), str):
            summary.rejected.append((obj["id"], "identity `name` is not text"))
        else:
            readable.append(obj)
    return readable


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _instant(ts: str) -> datetime:
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{ts!r} has no UTC offset")
    return moment


def _problem(obj: dict[str, Any]) -> str | None:
    """Why an indicator object (with an id) cannot be read, or None."""
    if not isinstance(obj.get("pattern", ""), str):
        return "`pattern` is not text"
    if not isinstance(obj.get("created_by_ref", ""), str):
        return "`created_by_ref` is not text"
    for name in ("valid_until", "modified"):
        stamp = obj.get(name)
        if stamp is not None:
            try:
                _instant(stamp)
            except (ValueError, TypeError, AttributeError):
                return f"`{name}` {stamp!r} is not an RFC 3339 timestamp with an offset"
    return None
