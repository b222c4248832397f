"""STIX 2.1 vocabulary of Kabuguard: patterns per indicator type, markings, custom objects, stable ids.

Patterns are single comparisons (`[ipv4-addr:value = '203.0.113.9']`), so that a peer's tooling
and `kabuguard intel pull` can read them back without a pattern engine. Kabuguard's own object
types (`x-kabuguard-targeted-symbol`, `x-kabuguard-monthly-report`) and the device fingerprint
observable (`x-kabuguard-device`) follow STIX 2.1's rule for custom objects: each is announced
by an extension definition (`extension_types: new-sdo`) carried in every bundle.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import stix2
from stix2 import v21
from stix2.properties import FloatProperty, IntegerProperty, ListProperty, ReferenceProperty, StringProperty

TLP = {"white": stix2.TLP_WHITE, "green": stix2.TLP_GREEN, "amber": stix2.TLP_AMBER, "red": stix2.TLP_RED}
# Public ids of Kabuguard's own objects (the custom types' definitions), the same in every bundle.
_NAMESPACE = uuid.UUID("6f1d3c9e-2b7a-5e44-9c1a-4b0a7d2e8f31")


def id_from(kind: str, digest: bytes) -> str:
    """The STIX id `kind--UUID` of a digest's first 16 bytes, with the version bits of a v4:
    STIX wants v4 ids for domain objects."""
    return f"{kind}--{uuid.UUID(bytes=digest[:16], version=4)}"


def stable_id(kind: str, *parts: str) -> str:
    """A public STIX id derived from its name: anyone can compute it, so only for objects that are
    the same in every bundle. A firm's objects take ids under its key (`Pseudonymiser.object_id`)."""
    return id_from(kind, uuid.uuid5(_NAMESPACE, "|".join((kind, *parts))).bytes)


# One extension definition per custom object type, as STIX 2.1 asks.
EXTENSIONS = {kind: stable_id("extension-definition", kind, "v1")
              for kind in ("x-kabuguard-targeted-symbol", "x-kabuguard-monthly-report")}

_PATHS = {
    "domain": "domain-name:value",
    "url": "url:value",
    "asn": "autonomous-system:name",
    "user_agent": "network-traffic:extensions.'http-request-ext'.request_header.'User-Agent'",
    "device": "x-kabuguard-device:fingerprint",
}
_KIND_OF_PATH = {path: kind for kind, path in _PATHS.items()} | {"ipv4-addr:value": "ip", "ipv6-addr:value": "ip"}
_COMPARISON = re.compile(r"^\[\s*(?P<path>.+?)\s*=\s*'(?P<value>(?:[^'\\]|\\.)*)'\s*\]$")


def is_address(text: str) -> bool:
    """Whether `text` is an IP address, the only `ip` value a pattern can name: the event
    reader keeps any text an exporter wrote there ('unknown', '1.2.3.4:443')."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def pattern(kind: str, value: str) -> str:
    """The STIX pattern matching one indicator value of Kabuguard's type `kind` (an `ip` value:
    an address, `is_address`)."""
    if kind == "ip":
        path = "ipv6-addr:value" if ipaddress.ip_address(value).version == 6 else "ipv4-addr:value"
    else:
        path = _PATHS[kind]
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"[{path} = '{escaped}']"


def parse_pattern(text: str) -> tuple[str, str] | None:
    """(Kabuguard indicator type, value) of a single-comparison pattern; None for any other pattern."""
    match = _COMPARISON.match(text.strip())
    if match is None:
        return None
    kind = _KIND_OF_PATH.get(match["path"])
    if kind is None:
        return None
    value = re.sub(r"\\(.)", r"\1", match["value"])
    if kind == "ip":
        return _host(value)
    return kind, value


def _host(value: str) -> tuple[str, str] | None:
    """("ip", the address) of an address pattern's value; None when it names no single address.

    STIX allows CIDR blocks there: one of a single host (`/32`, `/128`) is its address, as the
    events spell it; a wider block would match no event's `ip`, however it is written."""
    address, slash, prefix = value.partition("/")
    if not is_address(address):
        return None
    if slash and prefix != str(ipaddress.ip_address(address).max_prefixlen):
        return None
    return "ip", address


@v21.CustomObject("x-kabuguard-targeted-symbol", [
    ("name", StringProperty(required=True)),
    ("symbol", StringProperty(required=True)),
    ("first_seen", stix2.properties.TimestampProperty(required=True)),
    ("last_seen", stix2.properties.TimestampProperty(required=True)),
    # The window of the run the figures cover.
    ("period_start", stix2.properties.TimestampProperty(precision="millisecond")),
    ("period_end", stix2.properties.TimestampProperty(precision="millisecond")),
    ("campaign_refs", ListProperty(ReferenceProperty(valid_types="campaign", spec_version="2.1"))),
    ("accounts", ListProperty(StringProperty)),  # pseudonyms, never account ids
    ("buy_orders", IntegerProperty(min=0)),
    ("buy_notional_jpy", FloatProperty(min=0)),
    ("sell_notional_jpy", FloatProperty(min=0)),
], extension_name=EXTENSIONS["x-kabuguard-targeted-symbol"])
class TargetedSymbol:
    """A symbol the firm's hijacked accounts were spent on: what a regulator ranks pumps by."""


# A monthly report's month is Japan's, as the FSA counts its months.
JST = timezone(timedelta(hours=9))


def month_span(month: str) -> tuple[datetime, datetime]:
    """The first and last instants of a report's month (YYYY-MM, Japan time)."""
    start = datetime.fromisoformat(f"{month}-01T00:00:00+09:00")
    return start, (start + timedelta(days=32)).replace(day=1) - timedelta(microseconds=1)


@v21.CustomObject("x-kabuguard-monthly-report", [
    ("name", StringProperty(required=True)),
    ("month", StringProperty(required=True)),  # YYYY-MM, Japan time
    # The part of the month the figures cover (the run's window in it); none: the whole month.
    ("period_start", stix2.properties.TimestampProperty(precision="millisecond")),
    ("period_end", stix2.properties.TimestampProperty(precision="millisecond")),
    ("unauthorised_access_count", IntegerProperty(min=0, required=True)),  # flagged successful logins
    ("unauthorised_trade_count", IntegerProperty(min=0, required=True)),  # accounts with flagged orders
    ("sell_amount_jpy", FloatProperty(min=0, required=True)),
    ("buy_amount_jpy", FloatProperty(min=0, required=True)),
    ("accounts", ListProperty(StringProperty)),  # pseudonyms of the accounts accessed (no failed login's target)
    ("trading_accounts", ListProperty(StringProperty)),  # pseudonyms of those with flagged orders: the trade count's
], extension_name=EXTENSIONS["x-kabuguard-monthly-report"])
class MonthlyReport:
    """One firm's month in the FSA's terms, from its own decisions (docs/intel.md)."""


_DESCRIPTIONS = {
    "x-kabuguard-targeted-symbol": "A symbol a firm's hijacked accounts bought: buy orders and values, "
                                   "campaigns, pseudonymised accounts.",
    "x-kabuguard-monthly-report": "A firm's month in the FSA's terms: unauthorised access and trade counts, "
                                  "sell and buy amounts, pseudonymised accounts.",
}


def definitions() -> list[Any]:
    """The extension definitions announcing Kabuguard's custom object types, and Kabuguard's
    identity that made them: public and the same in every firm's bundle (no firm's creator or
    marking), so that every firm may post them to a collection where another firm did first."""
    timeless = "1970-01-01T00:00:00.000Z"
    kabuguard = v21.Identity(id=stable_id("identity", "kabuguard"), name="Kabuguard", identity_class="system",
                             created=timeless, modified=timeless)
    return [kabuguard, *(v21.ExtensionDefinition(
        id=ext, created_by_ref=kabuguard.id, created=timeless, modified=timeless, name=kind,
        description=_DESCRIPTIONS[kind], schema="https://github.com/kabuguard/kabuguard/blob/main/docs/intel.md",
        version="1.0.0", extension_types=["new-sdo"]) for kind, ext in EXTENSIONS.items())]
