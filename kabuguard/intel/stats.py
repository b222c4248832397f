"""The regulator's view: the FSA's monthly figures and the most targeted symbols, across firms.

Aggregates what firms shared (`x-kabuguard-monthly-report` and `x-kabuguard-targeted-symbol`
objects of their bundles, or of a TAXII collection they post to): per month, unauthorised
accesses, unauthorised trades, sell and buy amounts and the firms affected, in the FSA's terms;
and the symbols ranked by the value hijacked accounts bought, with how many firms saw them. An
object shared twice (the same id) counts once, in its latest version. An object that breaks its
type's definition is left out and listed under `skipped` with the reason; the rest is counted.
Over a TAXII collection each report counts for the firm whose key posted it, not for the
identity it names: a firm may write to the regulator's inbox, never in another firm's name. Only
the server knows who posted what, so `intel stats --taxii` asks it (`remote_figures`).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import stix2

from kabuguard.intel.finite import non_finite
from kabuguard.intel.stix import month_span  # the module defines the report types that `problem` checks against

_OKU = 1e8  # the FSA publishes amounts in oku yen (100 million)
# The object types the figures are made of.
STATS_TYPES = ("identity", "x-kabuguard-monthly-report", "x-kabuguard-targeted-symbol")
_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)

# The JSON type of each property the figures read, as posted: `stix2.parse` checks a coerced copy
# ("5" passes as 5, 202504 as "202504"), but what is stored, summed and compared is the JSON itself.
_JSON_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "text": ("text", lambda v: isinstance(v, str)),
    "whole": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "texts": ("a list of text", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "objects": ("an object of objects", lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values())),
}
_COMMON = {"created": "text", "modified": "text", "created_by_ref": "text", "name": "text", "extensions": "objects",
           "period_start": "text", "period_end": "text"}
_SHAPES = {
    "identity": {"name": "text"},
    "x-kabuguard-monthly-report": _COMMON | {
        "month": "text", "unauthorised_access_count": "whole", "unauthorised_trade_count": "whole",
        "sell_amount_jpy": "number", "buy_amount_jpy": "number", "accounts": "texts", "trading_accounts": "texts"},
    "x-kabuguard-targeted-symbol": _COMMON | {
        "symbol": "text", "first_seen": "text", "last_seen": "text", "campaign_refs": "texts", "accounts": "texts",
        "buy_orders": "whole", "buy_notional_jpy": "number", "sell_notional_jpy": "number"},
}
_ALL_TIME = (_OLDEST, datetime.max.replace(tzinfo=timezone.utc))


def problem(obj: Any) -> str | None:
    """Why a shared report (monthly report, targeted symbol) or identity cannot be counted, or None
    (other types: None). The types' STIX definitions (kabuguard.intel.stix) say what each property
    must be; the JSON types are checked first, since stix2 coerces them."""
    if not isinstance(obj, dict) or obj.get("type") not in STATS_TYPES:
        return None
    for name, expected in _SHAPES[obj["type"]].items():
        what, fits = _JSON_TYPES[expected]
        if name in obj and not fits(obj[name]):
            return f"`{name}` {reprlib.repr(obj[name])}: not {what}"
    if obj["type"] == "identity":
        return None
    where = non_finite(obj)
    if where is not None:  # stix2's FloatProperty takes NaN and infinity; no sum or JSON answer does
        return f"`{where}` is NaN or infinite: a report holds finite numbers"
    try:
        stix2.parse(obj, allow_custom=False)
    except (stix2.exceptions.STIXError, ValueError, TypeError, KeyError) as exc:
        return str(exc) or type(exc).__name__
    if obj["type"] == "x-kabuguard-monthly-report" and not _MONTH.match(obj["month"]):
        return f"month {obj['month']!r}: not YYYY-MM"
    return _period_problem(obj)


def _period_problem(obj: dict[str, Any]) -> str | None:
    """Why a report's period or trading accounts cannot be counted, or None."""
    if ("period_start" in obj) != ("period_end" in obj):
        return "`period_start` and `period_end` go together"
    start, end = _period(obj)
    if start > end:
        return f"period from {obj['period_start']} to {obj['period_end']}: ends before it starts"
    if obj["type"] == "x-kabuguard-monthly-report":
        first, last = month_span(obj["month"])
        if not first <= start <= end <= last:
            return f"period from {obj['period_start']} to {obj['period_end']}: not within month {obj['month']} (Japan time)"
        if "trading_accounts" in obj and len(set(obj["trading_accounts"])) != obj["unauthorised_trade_count"]:
            return "`trading_accounts`: not as many accounts as `unauthorised_trade_count`"
    return None


def _period(obj: dict[str, Any]) -> tuple[datetime, datetime]:
    """The instants a report covers: its period; without one (an export before periods), a
    monthly report its whole month, a targeted symbol all time."""
    if "period_start" in obj:
        return _instant(obj["period_start"]), _instant(obj["period_end"])
    return month_span(obj["month"]) if obj["type"] == "x-kabuguard-monthly-report" else _ALL_TIME


def separate(reports: Iterable[dict[str, Any]], firm: Callable[[dict[str, Any]], str],
             about: Callable[[dict[str, Any]], str]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The reports to add up: per firm and what they are `about` (a month, a symbol), periods
    that do not overlap, the latest `modified` first. One that overlaps a later one is left out:
    silently where the later covers all of its period (the firm exported that period again),
    else listed with the reason (the two cannot both be counted, and neither is the whole)."""
    counted: dict[tuple[str, str], list[tuple[datetime, datetime, dict[str, Any]]]] = {}
    left_out = []
    for obj in sorted(reports, key=lambda o: (_modified(o), o["id"]), reverse=True):
        start, end = _period(obj)
        kept = counted.setdefault((firm(obj), about(obj)), [])
        later = next((k for k in kept if start <= k[1] and k[0] <= end), None)
        if later is None:
            kept.append((start, end, obj))
        elif not later[0] <= start <= end <= later[1]:
            left_out.append({"object": obj["id"], "reason": f"its period overlaps that of {later[2]['id']}, modified "
                             "later: a firm's reports must cover separate periods (export again the whole of both)"})
    return [obj for kept in counted.values() for _, _, obj in kept], left_out


def latest(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One object per id: its latest `modified` version, compared as instants (as text,
    `.120Z` sorts after `.120500Z`, half a millisecond later)."""
    newest: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for obj in objects:
        known = newest.get(obj["id"])
        version = _modified(obj)
        if known is None or version > known[0]:
            newest[obj["id"]] = version, obj
    return [obj for _, obj in newest.values()]


def _modified(obj: dict[str, Any]) -> datetime:
    """The instant of `modified`; the oldest possible when it cannot be read (nothing checks an
    identity's), so that any readable version supersedes it."""
    try:
        return _instant(obj["modified"])
    except (KeyError, TypeError, ValueError):
        return _OLDEST


def _instant(ts: str) -> datetime:
    """A STIX timestamp as an instant (one without an offset is UTC, as STIX writes them all)."""
    moment = datetime.fromisoformat(ts)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def aggregate(objects: Iterable[Any], top: int = 10, posted_by: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Monthly figures and the `top` targeted symbols from shared objects (JSON-ready).

    `posted_by` (object id -> firm), from a TAXII collection: the firm each report counts for;
    without it, the identity its `created_by_ref` names (bundle files).
    """
    usable, skipped = [], []
    for n, obj in enumerate(objects):
        if not isinstance(obj, dict):
            skipped.append({"object": f"objects[{n}]", "reason": "not a JSON object"})
        elif obj.get("type") not in STATS_TYPES:
            continue
        elif not isinstance(obj.get("id"), str):
            skipped.append({"object": f"objects[{n}]", "reason": "no `id`"})
        elif reason := problem(obj):
            skipped.append({"object": obj["id"], "reason": reason})
        else:
            usable.append(obj)
    current = latest(usable)
    firms = {o["id"]: o.get("name", o["id"]) for o in current if o["type"] == "identity"}

    def firm(obj: dict[str, Any]) -> str:
        if posted_by is not None:
            return posted_by.get(obj["id"], "unknown")
        return firms.get(obj.get("created_by_ref", ""), obj.get("created_by_ref", "unknown"))

    reports, overlapping = separate((o for o in current if o["type"] == "x-kabuguard-monthly-report"),
                                    firm, lambda o: o["month"])
    targets, overlapping_targets = separate((o for o in current if o["type"] == "x-kabuguard-targeted-symbol"),
                                            firm, lambda o: o["symbol"])
    skipped += overlapping + overlapping_targets
    months: dict[str, dict[str, Any]] = {}
    for o in reports:
        m = months.setdefault(o["month"], {"month": o["month"], "firms": set(), "trading_firms": set(),
                                           "unauthorised_access_count": 0, "unauthorised_trade_count": 0,
                                           "traders": set(), "sell_amount_jpy": 0.0, "buy_amount_jpy": 0.0})
        if o["unauthorised_access_count"]:  # a firm that only held failed logins was not affected
            m["firms"].add(firm(o))
        if o["unauthorised_trade_count"]:
            m["trading_firms"].add(firm(o))
        for name in ("unauthorised_access_count", "sell_amount_jpy", "buy_amount_jpy"):
            m[name] += o[name]
        if "trading_accounts" in o:  # an account trading in two of a firm's periods is one account
            m["traders"].update((firm(o), account) for account in o["trading_accounts"])
        else:
            m["unauthorised_trade_count"] += o["unauthorised_trade_count"]
    symbols: dict[str, dict[str, Any]] = {}
    for o in targets:
        s = symbols.setdefault(o["symbol"], {"symbol": o["symbol"], "firms": set(), "accounts": set(), "buy_orders": 0,
                                             "buy_notional_jpy": 0.0, "sell_notional_jpy": 0.0, "first_seen": o["first_seen"],
                                             "last_seen": o["last_seen"]})
        s["firms"].add(firm(o))
        s["accounts"].update((firm(o), account) for account in o.get("accounts", ()))
        s["buy_orders"] += o.get("buy_orders", 0)
        s["buy_notional_jpy"] += o.get("buy_notional_jpy", 0.0)
        s["sell_notional_jpy"] += o.get("sell_notional_jpy", 0.0)
        s["first_seen"], s["last_seen"] = min(s["first_seen"], o["first_seen"]), max(s["last_seen"], o["last_seen"])
    ranked = sorted(symbols.values(), key=lambda s: (-s["buy_notional_jpy"], s["symbol"]))[:top]
    return {
        "months": [{"month": m["month"], "firms_affected": len(m["firms"]),
                    "firms_with_unauthorised_trades": len(m["trading_firms"]),
                    "unauthorised_access_count": m["unauthorised_access_count"],
                    "unauthorised_trade_count": m["unauthorised_trade_count"] + len(m["traders"]),
                    "sell_amount_jpy": round(m["sell_amount_jpy"], 2), "buy_amount_jpy": round(m["buy_amount_jpy"], 2),
                    "sell_amount_oku_yen": round(m["sell_amount_jpy"] / _OKU, 4),
                    "buy_amount_oku_yen": round(m["buy_amount_jpy"] / _OKU, 4), "firms": sorted(m["firms"])}
                   for _, m in sorted(months.items())],
        "top_symbols": [{**s, "firms": sorted(s["firms"]), "accounts": len(s["accounts"]),
                         "buy_notional_jpy": round(s["buy_notional_jpy"], 2),
                         "sell_notional_jpy": round(s["sell_notional_jpy"], 2)} for s in ranked],
        "skipped": skipped,
    }


def stats_url(url: str) -> str:
    """`GET /v1/intel/stats` of the `kabuguard serve` whose TAXII discovery or API root is `url`
    (kept behind any path prefix a proxy adds)."""
    parts = urlsplit(url)
    root = parts.path.split("/taxii2", 1)[0].rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"{root}/v1/intel/stats", "", ""))


def remote_figures(url: str, collection_id: str, user: str, key: str, top: int) -> dict[str, Any]:
    """The figures `kabuguard serve` computes over a collection, each report counted for the firm
    whose key posted it. LookupError: the collection is not the key's to read; ValueError: the
    answer is no figures; requests' errors when the server cannot be reached."""
    import requests

    where = stats_url(url)
    answer = requests.get(where, params={"collection": collection_id, "top": top}, auth=(user, key), timeout=60)
    try:
        body = answer.json()
    except requests.JSONDecodeError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if answer.status_code in (403, 404):
        raise LookupError(f"{where}: {detail or f'collection {collection_id!r}: not readable by this firm'}")
    if answer.status_code != 200 or not isinstance(body, dict) or not {"months", "top_symbols", "skipped"} <= body.keys():
        raise ValueError(f"{where}: HTTP {answer.status_code}, {detail or 'not the figures of kabuguard serve'}")
    return body
