"""Indicators for intel sharing, takedown evidence, and a store of indicators shared by others.

An alert becomes an indicator (domain, URL, brand, score, first seen) that a firm can pass to
JPCERT/CC, an ISAC or its peers, and a short evidence text for the registrar or host. The store
is the other direction: indicators confirmed by others, which catch the phishing hosts that
carry no brand token at all (a random name on a cheap TLD reused across campaigns, the same kit
path on a new host).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kabuguard.intel.phish.domains import Host, Target, web_url
from kabuguard.intel.phish.score import ScoringConfig, Verdict, looks_random

_DIGITS = re.compile(r"[0-9]+")
_QUERY_VALUES = re.compile(r"=[^&#]*")
_MIN_KIT_PATH = 10  # shorter shapes (/login, /jp) are shared by every kit
_MIN_HOST_TEMPLATE = 5
_WWW = re.compile(r"^(?:www|m|web)0?$")
_WORDS = re.compile(r"[\W\d_]+")  # what stands between words: digits, hyphens, dots


@dataclass(frozen=True, slots=True)
class Indicator:
    """One shareable indicator, first seen at `first_seen` (as the source stamped it)."""

    domain: str
    url: str
    brand: str
    brand_name: str
    score: float
    first_seen: str
    reasons: tuple[str, ...]
    domain_ascii: str = ""  # the domain and host in punycode (A-labels): what DNS and registrars look up
    host_ascii: str = ""

    def to_dict(self) -> dict:
        return {
            "type": "phishing-domain",
            "domain": self.domain,
            "domain_ascii": self.domain_ascii,
            "host_ascii": self.host_ascii,
            "url": self.url,
            "brand": self.brand,
            "brand_name": self.brand_name,
            "score": round(self.score, 4),
            "first_seen": self.first_seen,
            "reasons": list(self.reasons),
        }


def indicator(verdict: Verdict, first_seen: str) -> Indicator:
    """The indicator for an alert; call only for verdicts that alert (they carry a brand)."""
    assert verdict.brand is not None and verdict.brand_name is not None
    reasons = tuple(f"{r.code}:{r.detail}" if r.detail else r.code for r in verdict.reasons)
    url = web_url(verdict.input, verdict.host)
    return Indicator(verdict.registered_domain, url, verdict.brand, verdict.brand_name, verdict.score, first_seen, reasons,
                     verdict.registered_domain_ascii, verdict.host_ascii)


_EXPLAIN = {
    "official-domain-in-host": "spells out the official domain {found} inside its own host name",
    "brand-token": "carries the brand name '{found}' in its host name",
    "lookalike": "imitates the brand name by one {detail} ('{found}')",
    "homoglyph": "imitates the brand name with look-alike characters ({detail}: '{found}')",
    "combosquat": "glues the brand name to a lure word ('{found}')",
    "shared-token": "carries the group name '{found}'{edit}",
    "shared-token-corroborated": "carries the group name '{found}'{edit} beside a word of the brand's business",
    "path-brand-token": "serves a path named after the brand ('{found}')",
    "cloned-login-path": "copies the path of the brand's real login page ('{found}')",
    "official-domain-in-path": "writes the brand's official domain {found} into its own URL path",
    "userinfo-in-url": "writes '{found}' before an @ in the URL, where a reader takes it for the host",
    "keyword": "uses lure words ({detail})",
    "suspicious-tld": "is registered under .{detail}, a TLD heavily used for phishing",
    "free-host": "is hosted on the free or dynamic-DNS service {detail}",
    "url-shortener": "hides behind the URL shortener {detail}",
    "random-label": "uses a machine-generated label ('{detail}')",
    "deep-subdomain": "nests {detail} subdomain levels to push the real domain out of view",
    "ip-host": "is a bare IP address",
    "shared-indicator": "was already confirmed as phishing of this brand ({detail})",
}


def takedown_text(ind: Indicator, verdict: Verdict, official_domains: tuple[str, ...]) -> str:
    """A short evidence text for a registrar, host or CERT, one paragraph per domain."""
    lines = [
        f"Domain: {_a_label(ind.domain_ascii, ind.domain)}",
        *([f"Host: {_a_label(ind.host_ascii, verdict.host)}"] if verdict.host not in (ind.domain, ind.host_ascii) else []),
        f"URL: {ind.url}",
        f"Impersonated brand: {ind.brand_name} (official domains: {', '.join(official_domains)})",
        f"First seen: {ind.first_seen}",
        f"Assessment: phishing imitating {ind.brand_name}, score {ind.score:.2f} of 1. The host:",
    ]
    for r in verdict.reasons:
        edit = f" (one {r.detail} away from the real name)" if r.detail and r.code.startswith("shared-token") else ""
        lines.append("  - " + _EXPLAIN.get(r.code, r.code).format(found=r.found, detail=r.detail, edit=edit))
    lines.append("Request: suspend the domain or remove the content; it collects login credentials of the brand's customers.")
    return "\n".join(lines)


def _a_label(ascii_name: str, name: str) -> str:
    """A name as a registrar looks it up, the Unicode a reader sees in brackets when it differs
    (`xn--bisec-g2e.com (ѕbisec.com)`): the homoglyph alone names no domain in DNS."""
    return name if not ascii_name or ascii_name == name else f"{ascii_name} ({name})"


def kit_path(path: str) -> str | None:
    """The shape of a URL path as a phishing kit lays it out, or None when too short to tell kits apart."""
    shape = _QUERY_VALUES.sub("=", _DIGITS.sub("0", path))
    return shape if len(shape) >= _MIN_KIT_PATH else None


def host_template(host: Host, common: frozenset[str]) -> str | None:
    """The subdomain a campaign repeats over fresh registered domains (`sndc-crad-nem-inedx` on
    `x1.cn`, `x2.cn`…), without `www`-like labels, digits as 0, with its public suffix.

    None unless it is specific: a random-looking label, or two words or more of which one is not
    a lure or combosquat keyword. `secure`, `mail` or `secure-login` stand before countless hosts,
    and one shared URL under them would make every such host a phish of the brand.
    """
    labels = [label for label in host.subdomain.split(".") if not _WWW.match(_DIGITS.sub("0", label))]
    template = _DIGITS.sub("0", ".".join(labels))
    if len(template) < _MIN_HOST_TEMPLATE:
        return None
    words = [w for w in _WORDS.split(template) if w]
    if any(looks_random(label) for label in labels) or (len(words) >= 2 and not common.issuperset(words)):
        return f"{template}.*.{host.suffix}"
    return None


class IndicatorStore:
    """Indicators confirmed by others: registered domains (a provider's customer on a free host
    or shortener), IP hosts, kit paths and host templates, per brand (any brand's label: a feed
    shares every phish it confirmed).

    A key confirmed for two different brands is dropped: it no longer says which brand.
    """

    _AMBIGUOUS = ""

    def __init__(self, config: ScoringConfig) -> None:
        self._keys: dict[str, str] = {}
        self._providers = config.providers()
        self._common = config.lure_keywords | frozenset(config.keywords)

    def _keys_of(self, target: Target) -> list[str]:
        keys = [f"domain:{self._providers.owner(target)}"]
        shape = kit_path(target.path)
        if shape is not None:
            keys.append(f"kit:{shape}")
        template = host_template(target.host, self._common)
        if template is not None:
            keys.append(f"host:{template}")
        return keys

    def confirm(self, target: Target, brand: str) -> None:
        for key in self._keys_of(target):
            known = self._keys.get(key)
            if known is None:
                self._keys[key] = brand
            elif known != brand:
                self._keys[key] = self._AMBIGUOUS

    def brand_for(self, target: Target) -> str | None:
        """The brand an earlier confirmation names for this target, if any and unambiguous."""
        for key in self._keys_of(target):
            brand = self._keys.get(key)
            if brand:
                return brand
        return None
