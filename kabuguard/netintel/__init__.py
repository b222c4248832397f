"""What an IP address says about where a login comes from: network, owner, country, kind.

Backed by the IP-to-ASN and country data that geoip2fast ships inside its package (derived
from MaxMind GeoLite2, CC BY-SA 4.0), so lookups work offline; `networks.yaml` classifies
autonomous systems as hosting or mobile-only, and `countries.csv` holds approximate country
centres (hand-entered, good to a few hundred km) for travel-speed checks.
"""

from __future__ import annotations

import csv
import ipaddress
import math
import socket
from bisect import bisect_right
from functools import cache, lru_cache
from importlib import resources
from typing import Literal

import msgspec
import yaml

Kind = Literal["hosting", "mobile", "fixed", "private", "unknown"]


class Network(msgspec.Struct, frozen=True):
    """The network an address belongs to, as detection sees it."""

    prefix: str  # the /24 (IPv4) or /48 (IPv6) around the address: a household or office
    asn: str  # the autonomous system's name, or "" when unknown
    country: str  # ISO 3166 alpha-2, or "" when unknown
    kind: Kind


UNKNOWN = Network(prefix="", asn="", country="", kind="unknown")

_V4 = ipaddress.IPv4Address._constants  # type: ignore[attr-defined]


def _reserved_spans() -> list[tuple[int, int]]:
    """Python's reserved IPv4 ranges (`is_private`, `is_loopback`, `is_link_local`) as sorted,
    merged integer spans: a new address is then checked by one bisection, not by `ipaddress`."""
    spans: list[tuple[int, int]] = []
    for net in sorted([*_V4._private_networks, _V4._loopback_network, _V4._linklocal_network],
                      key=lambda n: int(n.network_address)):
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if spans and lo <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(hi, spans[-1][1]))
        else:
            spans.append((lo, hi))
    return spans


_RESERVED_V4 = _reserved_spans()
_RESERVED_STARTS = [lo for lo, _ in _RESERVED_V4]
# IPv4 /24s (first three octets) holding both reserved and public addresses (ranges finer than a
# /24, and the exceptions newer Pythons make inside them): decided address by address.
_MIXED_V4 = frozenset({"192.0.0", "255.255.255"} | {
    str(net.network_address).rsplit(".", 1)[0]
    for net in [*_V4._private_networks, *getattr(_V4, "_private_networks_exceptions", [])]
    if net.prefixlen > 24
})


def _is_octet(text: str) -> bool:
    """A decimal octet as the standard library's IPv4 parser accepts it (no leading zeros)."""
    return text.isascii() and text.isdigit() and len(text) <= 3 and (len(text) == 1 or text[0] != "0") \
        and int(text) <= 255


def _v4_int(ip: str) -> int | None:
    """A dotted-quad IPv4 address as an integer, or None where `ipaddress` would not take it."""
    parts = ip.split(".")
    if len(parts) != 4 or not all(_is_octet(p) for p in parts):
        return None
    a, b, c, d = parts
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


def _reserved_v4(value: int) -> bool:
    """Private, loopback, link-local or otherwise reserved, as Python's `ipaddress` says."""
    i = bisect_right(_RESERVED_STARTS, value) - 1
    return i >= 0 and value <= _RESERVED_V4[i][1]


class NetIntel:
    """Classifies addresses; results are cached since a brokerage sees the same IPs often."""

    def __init__(self) -> None:
        from geoip2fast import GeoIP2Fast

        self._db = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz", verbose=False)
        rules = yaml.safe_load(resources.files(__package__).joinpath("networks.yaml").read_text())
        self._hosting = tuple(name.lower() for name in rules["hosting"])
        self._mobile = tuple(name.lower() for name in rules["mobile"])
        self._cache: dict[str, Network] = {}
        self._prefixes: dict[str, Network] = {}

    def lookup(self, ip: str | None) -> Network:
        if not ip:
            return UNKNOWN
        found = self._cache.get(ip)
        if found is None:
            found = self._classify(ip)
            if len(self._cache) > 1_000_000:  # bounded memory on an endless stream
                self._cache.clear()
                self._prefixes.clear()
            self._cache[ip] = found
        return found

    def _classify(self, ip: str) -> Network:
        # IPv4 outside the mixed /24s: reserved or not is the same for the whole /24, and so are
        # the owner and country unless the database splits it (`_network`), so a new address in
        # a known /24 costs a parse of its octets and one dict lookup.
        head, dot, _ = ip.rpartition(".")
        if dot and head not in _MIXED_V4:
            value = _v4_int(ip)
            if value is not None:
                prefix = head + ".0/24"
                found = self._prefixes.get(prefix)
                if found is None:
                    if _reserved_v4(value):
                        found = self._prefixes[prefix] = Network(prefix=prefix, asn="", country="", kind="private")
                    else:
                        found = self._network(prefix, ip, value, 32, 24)
                return found
        # IPv6, the mixed /24s and anything that may not be an address at all.
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return UNKNOWN
        if addr.version == 4:
            prefix = ip.rsplit(".", 1)[0] + ".0/24"
        else:
            prefix = str(ipaddress.IPv6Network(f"{addr}/48", strict=False))
        mapped = getattr(addr, "ipv4_mapped", None)
        if mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
            return self.lookup(str(mapped))
        if addr.is_private or addr.is_loopback or addr.is_link_local or not addr.is_global:
            return Network(prefix=prefix, asn="", country="", kind="private")
        found = self._prefixes.get(prefix)
        if found is None:
            width = addr.max_prefixlen
            found = self._network(prefix, str(addr), int(addr), width, 24 if width == 32 else 48)
        return found

    def _network(self, prefix: str, ip: str, value: int, width: int, bits: int) -> Network:
        """The owner and country of a public address (`value`, a `width`-bit integer), from the
        bundled database; remembered for its whole /`bits` prefix when the database's ranges for
        it (country and owner) hold all of it.

        Not otherwise: a /24 split between two countries (one /25 each) would get the country
        of whichever address came first, and a decision would depend on what the process had
        seen before (the replay and Spark's workers see addresses in different orders).

        The owner counts only when its range holds the address: with IPv6 data loaded,
        geoip2fast checks an IPv4 address against the IPv6 size of the ASN range before it, so
        an address in a gap between ASN ranges (1.0.2.127, after 1.0.0.0/24) would get that
        range's owner (here CLOUDFLARENET, a hosting network)."""
        row = self._db.lookup(ip)
        first = value >> (width - bits) << (width - bits)
        last = first + (1 << (width - bits)) - 1
        owner = _span(row.asn_cidr)
        owned = owner is not None and owner[0] <= value <= owner[1]
        if getattr(row, "is_private", False):
            # Special-purpose space the database knows (carrier-grade NAT, multicast): no owner, no country.
            found = Network(prefix=prefix, asn="", country="", kind="private")
        else:
            asn = (row.asn_name or "") if owned else ""
            code = row.country_code or ""
            country = code if len(code) == 2 and code.isalpha() else ""  # not the database's "--"
            found = Network(prefix=prefix, asn=asn, country=country, kind=self._kind(asn))
        if owned:
            whole = _holds(owner, first, last)
        else:
            # In a gap between owners: all of the prefix is when the range before it ends before
            # the prefix starts and none starts inside it (its last address sees the same range).
            end = ipaddress.IPv4Address(last) if width == 32 else ipaddress.IPv6Address(last)
            whole = owner is not None and owner[1] < first and self._db.lookup(str(end)).asn_cidr == row.asn_cidr
        if whole and _holds(_span(row.cidr), first, last):
            self._prefixes[prefix] = found
        return found

    @lru_cache(maxsize=65536)
    def _kind(self, asn: str) -> Kind:
        name = asn.lower()
        if not name:
            return "unknown"
        if any(token in name for token in self._hosting):
            return "hosting"
        if any(token in name for token in self._mobile):
            return "mobile"
        return "fixed"


def _span(cidr: str | None) -> tuple[int, int] | None:
    """The first and last address, as integers, of a database range (`a.b.c.d/n` or IPv6), or
    None for no range: compared with the address itself, since geoip2fast's own check is wrong."""
    start, slash, length = (cidr or "").rpartition("/")
    if not slash or not length.isdigit():
        return None
    family, width = (socket.AF_INET6, 128) if ":" in start else (socket.AF_INET, 32)
    try:
        first = int.from_bytes(socket.inet_pton(family, start), "big")  # a third of `_v4_int`'s cost
    except OSError:
        return None
    size = width - int(length)
    return (first, first + (1 << size) - 1) if size >= 0 else None


def _holds(span: tuple[int, int] | None, first: int, last: int) -> bool:
    """Whether a database range holds all of the prefix from `first` to `last`, not merely one
    as wide: a range that does not hold the address must not decide for its prefix."""
    return span is not None and span[0] <= first and last <= span[1]


@cache
def netintel() -> NetIntel:
    """The process-wide instance: loading the database takes a few hundred milliseconds."""
    return NetIntel()


@cache
def _centres() -> dict[str, tuple[float, float]]:
    text = resources.files(__package__).joinpath("countries.csv").read_text()
    return {row["country"]: (float(row["lat"]), float(row["lon"])) for row in csv.DictReader(text.splitlines())}


def country_distance_km(a: str, b: str) -> float | None:
    """Great-circle distance between two countries' centres; None if either is unknown."""
    if a == b:
        return 0.0
    centres = _centres()
    if a not in centres or b not in centres:
        return None
    (lat1, lon1), (lat2, lon2) = centres[a], centres[b]
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))
