"""TAXII collections in the service's database: rights per firm, every version of every object.

Each object version is one row holding the object's exact JSON, so a page is the concatenation
of stored bytes (a 1,000-object page is one indexed range scan, no re-encoding). `latest` marks
the newest version of each object, which is what `match[version]=last` (the default) returns.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.engine import Connection, Engine

from kabuguard.intel.stats import problem as report_problem
from kabuguard.intel.stix import definitions
from kabuguard.service.storage.database import serialised
from kabuguard.service.storage.models import taxii_collections, taxii_objects, taxii_rights, taxii_status

ANY_FIRM = "*"
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,248}--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_TYPE = 100  # the stored column's width
# Adds to a collection are taken one at a time (`TaxiiStore.add`, `serialised`).
_adding = threading.Lock()


class TaxiiError(ValueError):
    """A request the TAXII server refuses; `status` is the HTTP status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def timestamp(value: str | None = None) -> str:
    """A TAXII timestamp (UTC, microseconds, `Z`): now, or `value` normalised so strings sort as instants."""
    if value is None:
        moment = datetime.now(timezone.utc)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            raise TaxiiError(400, f"not an RFC 3339 timestamp: {value!r}") from None
        if moment.tzinfo is None:
            raise TaxiiError(400, f"timestamp without a UTC offset: {value!r}")
    try:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError:
        raise TaxiiError(400, f"timestamp out of range: {value!r}") from None


@dataclass(frozen=True)
class Rights:
    can_read: bool
    can_write: bool


@dataclass(frozen=True)
class Page:
    bodies: list[bytes]
    rows: list[tuple[int, str, str, str]]  # seq, stix_id, version, date_added
    more: bool
    next: str | None


class TaxiiStore:
    """Collections, rights, objects and statuses, through SQLAlchemy Core."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- administration (kabuguard intel collections) ---------------------------------------

    def create_collection(self, collection_id: str, title: str, description: str,
                          readers: list[str], writers: list[str]) -> None:
        if not _COLLECTION.match(collection_id):
            raise TaxiiError(400, f"collection id {collection_id!r}: use letters, digits, '_', '.' or '-' (at most 64)")
        with self.engine.begin() as conn:
            conn.execute(taxii_collections.insert().values(collection_id=collection_id, title=title,
                                                           description=description, created_at=timestamp()))
            for firm in sorted(set(readers) | set(writers)):
                conn.execute(taxii_rights.insert().values(collection_id=collection_id, firm=firm,
                                                          can_read=int(firm in readers), can_write=int(firm in writers)))

    # -- reads ------------------------------------------------------------------------------

    def collections(self, firm: str | None) -> list[dict[str, Any]]:
        """Collections `firm` may read or write, with its rights, in id order; None: every
        collection with the rights of any firm (the deployment's own operators, in the console)."""
        query = (select(taxii_collections, taxii_rights.c.can_read, taxii_rights.c.can_write)
                 .join(taxii_rights, taxii_rights.c.collection_id == taxii_collections.c.collection_id)
                 .order_by(taxii_collections.c.collection_id))
        if firm is not None:
            query = query.where(taxii_rights.c.firm.in_((firm, ANY_FIRM)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        merged: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = merged.setdefault(row["collection_id"], {
                "id": row["collection_id"], "title": row["title"], "can_read": False, "can_write": False,
                "media_types": ["application/stix+json;version=2.1"]} | (
                {"description": row["description"]} if row["description"] else {}))
            entry["can_read"] |= bool(row["can_read"])
            entry["can_write"] |= bool(row["can_write"])
        return list(merged.values())

    def collection(self, firm: str, collection_id: str) -> dict[str, Any]:
        """The collection as `firm` sees it; 404 when it does not exist or `firm` has no right on it."""
        for entry in self.collections(firm):
            if entry["id"] == collection_id:
                return entry
        raise TaxiiError(404, f"collection {collection_id!r}: no such collection for this firm")

    def rights(self, firm: str, collection_id: str) -> Rights:
        entry = self.collection(firm, collection_id)
        return Rights(entry["can_read"], entry["can_write"])

    def page(self, collection_id: str, added_after: str | None, after: int, limit: int,
             ids: list[str], types: list[str], versions: list[str], stix_id: str | None = None) -> Page:
        """Objects in order of addition, after cursor `after`, filtered as TAXII's `match[...]` says."""
        t = taxii_objects
        query = select(t.c.seq, t.c.stix_id, t.c.version, t.c.date_added, t.c.body).where(
            t.c.collection_id == collection_id, t.c.seq > after)
        if stix_id is not None:
            query = query.where(t.c.stix_id == stix_id)
        if added_after is not None:
            query = query.where(t.c.date_added > timestamp(added_after))
        if ids:
            query = query.where(t.c.stix_id.in_(ids))
        if types:
            query = query.where(t.c.type.in_(types))
        query = query.where(self._versions(versions or ["last"]))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.seq).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([r[4] for r in rows], [r[:4] for r in rows], more, str(rows[-1][0]) if more else None)

    @staticmethod
    def _versions(versions: list[str]) -> Any:
        t = taxii_objects
        clauses = []
        for version in versions:
            if version == "all":
                return t.c.seq.is_not(None)
            if version == "last":
                clauses.append(t.c.latest == 1)
            elif version == "first":
                other = t.alias("other_version")
                clauses.append(t.c.version == select(func.min(other.c.version)).where(
                    other.c.collection_id == t.c.collection_id, other.c.stix_id == t.c.stix_id).scalar_subquery())
            else:
                clauses.append(t.c.version == timestamp(version))
        return or_(*clauses)

    def latest_objects(self, collection_id: str, types: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The latest version of every object of `types` in the collection (for aggregates), and
        the firm that posted each (object id -> firm)."""
        t = taxii_objects
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.stix_id, t.c.added_by, t.c.body).where(
                t.c.collection_id == collection_id, t.c.latest == 1, t.c.type.in_(types)).order_by(t.c.seq)).all()
        return [json.loads(body) for _, _, body in rows], {stix_id: firm for stix_id, firm, _ in rows}

    def status(self, firm: str, status_id: str) -> bytes:
        with self.engine.connect() as conn:
            row = conn.execute(select(taxii_status.c.body).where(
                taxii_status.c.status_id == status_id, taxii_status.c.firm == firm)).first()
        if row is None:
            raise TaxiiError(404, f"status {status_id!r}: no such status for this firm")
        return row[0]

    # -- writes -----------------------------------------------------------------------------

    def add(self, firm: str, collection_id: str, objects: list[Any]) -> dict[str, Any]:
        """Store an envelope's objects; every version once. Returns the TAXII status resource.

        An object that cannot be stored fails alone, named by its place (`objects[n]`), and the
        rest are stored. Only the firm that first shared an id may add versions of it: a firm
        with write rights cannot rewrite another firm's reports. A version posted again unchanged
        is a success that stores nothing: what every bundle carries alike (the TLP markings,
        Kabuguard's type definitions) is everyone's to post. A version posted again changed is a
        failure: the stored one stays, and a client told "success" would believe it had replaced it.
        An object without `modified` (a cyber-observable, a marking definition) cannot be versioned
        (STIX 2.1, 3.6): it is stored once, at its `created` or else at the time it was first added,
        and posting it again, by any firm, is a success that stores nothing."""
        requested = timestamp()
        failures: list[tuple[int, dict[str, Any]]] = []
        valid: list[tuple[int, dict[str, Any], str]] = []
        for n, obj in enumerate(objects):
            problem = _problem(obj)
            if problem is None:
                try:
                    version = timestamp(obj.get("modified") or obj.get("created") or requested)
                except TaxiiError as exc:
                    problem = exc.detail
                else:
                    valid.append((n, obj, version))
                    continue
            name = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else f"objects[{n}]"
            failures.append((n, {"id": name, "message": f"objects[{n}]: {problem}"}))
        t = taxii_objects
        # One add at a time per collection: two adds reading "no owner yet" at once both claimed
        # a new id; and seq and date_added then commit in their order, so a reader following either
        # never passes an object whose commit is still coming.
        with serialised(self.engine, f"kabuguard.taxii-add:{collection_id}", _adding) as conn:
            signers = {obj["created_by_ref"] for _, obj, _ in valid if isinstance(obj.get("created_by_ref"), str)}
            known, owner = _versions_of(conn, collection_id, sorted({obj["id"] for _, obj, _ in valid} | signers))
            own = _own_identities(conn, collection_id, firm, signers, owner, [obj for _, obj, _ in valid])
            posted = _bodies(conn, collection_id, sorted({(obj["id"], version) for _, obj, version in valid
                                                          if version in known.get(obj["id"], ())}))
            successes: list[dict[str, Any]] = []
            fresh: dict[tuple[str, str], dict[str, Any]] = {}
            first = {stix_id: min(versions) for stix_id, versions in known.items()}
            for n, obj, version in valid:
                if "modified" not in obj and obj["id"] in first:  # immutable: stored once, anyone's to post again
                    successes.append({"id": obj["id"], "version": first[obj["id"]]})
                    continue
                refusal = _refusal(obj, version, firm, owner, posted, own)
                if refusal is not None:
                    failures.append((n, {"id": obj["id"], "message": f"objects[{n}]: {refusal}"}))
                    continue
                successes.append({"id": obj["id"], "version": version})
                posted[obj["id"], version] = obj
                first.setdefault(obj["id"], version)
                fresh.setdefault((obj["id"], version), {
                    "collection_id": collection_id, "stix_id": obj["id"], "version": version, "type": obj["type"],
                    "added_by": firm, "body": json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()})
            failed = [failure for _, failure in sorted(failures, key=lambda item: item[0])]
            rows = [row for key, row in fresh.items() if key[1] not in known.get(key[0], ())]
            newest = {stix_id: max(known.get(stix_id, set()) | {r["version"] for r in rows if r["stix_id"] == stix_id})
                      for stix_id in {r["stix_id"] for r in rows}} if rows else {}
            superseded = sorted(i for i, v in newest.items() if known.get(i) and v > max(known[i]))
            for chunk in _chunks(superseded):
                conn.execute(update(t).where(t.c.collection_id == collection_id, t.c.stix_id.in_(chunk)).values(latest=0))
            added = timestamp()
            for row in rows:
                row.update(date_added=added, latest=int(row["version"] == newest[row["stix_id"]]))
            if rows:
                conn.execute(t.insert(), rows)
            status = {"id": str(uuid.uuid4()), "status": "complete", "request_timestamp": requested,
                      "total_count": len(objects), "success_count": len(successes), "successes": successes,
                      "failure_count": len(failed), "failures": failed, "pending_count": 0, "pendings": []}
            conn.execute(taxii_status.insert().values(status_id=status["id"], firm=firm,
                                                      body=json.dumps(status).encode()))
        return status


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """`values` in slices for one IN (...) each: well under every database's limit on bound parameters."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _versions_of(conn: Connection, collection_id: str, ids: list[str]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """The stored versions of each id, and the firm that first shared it (its owner)."""
    t = taxii_objects
    known: dict[str, set[str]] = {}
    owner: dict[str, str] = {}
    for chunk in _chunks(ids):
        for stix_id, version, added_by in conn.execute(select(t.c.stix_id, t.c.version, t.c.added_by).where(
                t.c.collection_id == collection_id, t.c.stix_id.in_(chunk)).order_by(t.c.seq)):
            known.setdefault(stix_id, set()).add(version)
            owner.setdefault(stix_id, added_by)
    return known, owner


def _bodies(conn: Connection, collection_id: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The stored object of each (id, version), decoded: what a version posted again is compared with."""
    t = taxii_objects
    found: dict[tuple[str, str], Any] = {}
    for chunk in _chunks(keys):
        for stix_id, version, body in conn.execute(select(t.c.stix_id, t.c.version, t.c.body).where(
                t.c.collection_id == collection_id, tuple_(t.c.stix_id, t.c.version).in_(chunk))):
            found[stix_id, version] = json.loads(body)
    return found


def _own_identities(conn: Connection, collection_id: str, firm: str, signers: set[str], owner: dict[str, str],
                    envelope: list[dict[str, Any]]) -> set[str]:
    """The identities among `signers` that are `firm`'s own: shared first by it, and named as it
    (the envelope's copy, else the stored latest version), so that no firm signs as another."""
    t = taxii_objects
    names = {obj["id"]: obj.get("name") for obj in envelope if obj["id"] in signers}
    rest = sorted(signers - names.keys())
    for chunk in _chunks(rest):
        for stix_id, body in conn.execute(select(t.c.stix_id, t.c.body).where(
                t.c.collection_id == collection_id, t.c.latest == 1, t.c.stix_id.in_(chunk))):
            names[stix_id] = json.loads(body).get("name")
    return {i for i in signers if i.startswith("identity--") and owner.get(i, firm) == firm and names.get(i) == firm}


# Kabuguard's own objects, which every bundle carries alike (made by Kabuguard's identity): an
# exact copy is anyone's to post first.
_PUBLIC = {o.id: json.loads(o.serialize()) for o in definitions()}


def _refusal(obj: dict[str, Any], version: str, firm: str, owner: dict[str, str],
             posted: dict[tuple[str, str], Any], own: set[str]) -> str | None:
    """Why `firm` may not add this version, or None. `posted`: the versions stored or taken from
    this envelope already; `own`: the identities it may sign with. The owner's name is never
    said: the id may be in a collection the poster cannot read."""
    same = posted.get((obj["id"], version))
    if same == obj:  # stored already, as it is: nothing to add
        return None
    if owner.get(obj["id"], firm) != firm:
        return f"`id` {obj['id']!r}: not this firm's to write (use the ids of its own export)"
    if same is not None:
        return (f"`id` {obj['id']!r}: version {version} is stored with other content; a changed object "
                "needs a later `modified` (the stored version stays)")
    signer = obj.get("created_by_ref")
    if signer is not None and signer not in own and _PUBLIC.get(obj["id"]) != obj:
        return (f"`created_by_ref` {signer!r}: not this firm's own identity (one it shared, named {firm!r}); "
                "a firm signs only what it posts itself")
    return None


def _problem(obj: Any) -> str | None:
    """Why an object cannot be stored, or None: TAXII stores STIX 2.1 objects with a type and an id."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    kind, stix_id = obj.get("type"), obj.get("id")
    if not isinstance(kind, str) or not isinstance(stix_id, str) or not _ID.match(stix_id):
        return "needs `type` and an `id` of the form <type>--<UUID>"
    if len(kind) > _MAX_TYPE:
        return f"`type` of {len(kind)} characters: this server stores types of at most {_MAX_TYPE}"
    if not stix_id.startswith(f"{kind}--"):
        return f"`id` {stix_id!r} does not start with its type {kind!r}"
    if obj.get("spec_version", "2.1") != "2.1":
        return f"spec_version {obj.get('spec_version')!r}: this server stores STIX 2.1"
    return report_problem(obj)
