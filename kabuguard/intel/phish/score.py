"""Score a domain or URL for phishing of a registry brand, with the reasons an analyst can check.

Brand evidence (tokens, lookalikes, cloned login paths) decides *which* brand; context (lure
keywords, TLD reputation, free hosting, random labels, depth) raises or lowers *how sure*. The
weights live in `kabuguard/data/phish/scoring.yaml` and combine as a noisy-OR, so the score stays in [0, 1] and
every point of it is explained by a listed reason. Official domains score 0 whatever they contain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from kabuguard.intel.phish.confusables import skeleton
from kabuguard.intel.phish.domains import Host, Target, ascii_domain, parse_target, split_host
from kabuguard.intel.phish.lookalike import BrandMatcher, Match
from kabuguard.intel.phish.providers import Providers
from kabuguard.intel.phish.registry import Registry, compact

_HEX = re.compile(r"^[0-9a-f]{16,}$")
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{5,}")
_NOT_LETTERS = re.compile(r"[0-9_-]+")


# Every reason code the scorer and the watch can give (`official` weighs 0 by definition).
REASON_CODES = ("official-domain-in-host", "brand-token", "lookalike", "homoglyph", "combosquat", "shared-token",
                "shared-token-corroborated", "path-brand-token", "cloned-login-path", "official-domain-in-path",
                "userinfo-in-url", "keyword", "suspicious-tld", "free-host", "url-shortener", "random-label",
                "deep-subdomain", "ip-host", "shared-indicator")


def _unit(value: object, what: str, where: str) -> float:
    """A number in [0, 1], or a ValueError naming the file and the entry (checked at load: a
    missing weight would otherwise stop `score` or `watch` at the first host that needs it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"scoring file {where}: {what} must be a number in [0, 1], got {value!r}; "
                         "start from kabuguard/data/phish/scoring.yaml")
    return float(value)


@dataclass(frozen=True)
class ScoringConfig:
    """Weights, word lists and suffix lists; the bundled `kabuguard/data/phish/scoring.yaml` unless given."""

    threshold: float
    weights: dict[str, float]
    min_substring_length: int
    anywhere_length: int
    visual_folds: tuple[str, ...]
    deep_subdomain_labels: int
    lure_keywords: frozenset[str]
    keywords: list[str]
    suspicious_tlds: frozenset[str]
    free_hosts: frozenset[str]
    url_shorteners: frozenset[str]
    tenant_folders: frozenset[str]

    @classmethod
    def load(cls, path: Path | None = None) -> ScoringConfig:
        source = path.read_text("utf-8") if path else files("kabuguard").joinpath("data/phish/scoring.yaml").read_text("utf-8")
        raw = yaml.safe_load(source)
        where = str(path) if path else "bundled"
        weights = raw["weights"]
        missing = [code for code in REASON_CODES if code not in weights]
        if missing:
            raise ValueError(f"scoring file {where}: no weight for reason code {', '.join(missing)}; "
                             "copy them from kabuguard/data/phish/scoring.yaml")
        return cls(
            threshold=_unit(raw["threshold"], "threshold", where),
            weights={code: _unit(weights.get(code), f"the weight of reason code {code}", where) for code in REASON_CODES},
            min_substring_length=int(raw["min_substring_length"]),
            anywhere_length=int(raw["anywhere_length"]),
            visual_folds=tuple(raw.get("visual_folds", ())),
            deep_subdomain_labels=int(raw["deep_subdomain_labels"]),
            lure_keywords=frozenset(raw["lure_keywords"]),
            keywords=list(raw["keywords"]),
            suspicious_tlds=frozenset(raw["suspicious_tlds"]),
            free_hosts=frozenset(raw["free_hosts"]),
            url_shorteners=frozenset(raw["url_shorteners"]),
            tenant_folders=frozenset(raw.get("tenant_folders", ())),
        )

    def providers(self) -> Providers:
        return Providers(self.free_hosts, self.url_shorteners, self.tenant_folders)


class Reason(NamedTuple):
    """One reason code with what triggered it; brand reasons also name the brand and token."""

    code: str
    weight: float
    detail: str = ""
    brand: str | None = None
    found: str = ""


class Verdict(NamedTuple):
    """The score of one input line, as `phish score` writes it."""

    input: str
    host: str
    registered_domain: str
    brand: str | None
    brand_name: str | None
    score: float
    reasons: tuple[Reason, ...] = ()
    official: bool = False
    host_ascii: str = ""  # the host in punycode (A-labels), as DNS and registrars name it
    registered_domain_ascii: str = ""

    def alert(self, threshold: float) -> bool:
        return self.brand is not None and not self.official and self.score >= threshold

    def to_dict(self) -> dict[str, Any]:
        reasons = []
        for r in self.reasons:
            item: dict[str, Any] = {"code": r.code, "weight": r.weight}
            if r.detail:
                item["detail"] = r.detail
            if r.found:
                item["found"] = r.found
            if r.brand:
                item["brand"] = r.brand
            reasons.append(item)
        return {
            "input": self.input,
            "host": self.host,
            "registered_domain": self.registered_domain,
            "host_ascii": self.host_ascii,
            "registered_domain_ascii": self.registered_domain_ascii,
            "brand": self.brand,
            "brand_name": self.brand_name,
            "score": round(self.score, 4),
            "reasons": reasons,
        }


def looks_random(label: str) -> bool:
    """A label a person did not choose: long hex, many digits among letters, long consonant
    runs, or few vowels for its length. Labels under eight characters are too short to tell."""
    if len(label) < 8:
        return False
    if _HEX.match(label):
        return True
    # str.isalpha, str.replace and one regex rather than str.translate: several times faster per label
    letters = label if label.isalpha() else _NOT_LETTERS.sub("", label)
    if len(letters) < 8:
        return len(label) - len(letters) >= 4 and len(letters) >= 3
    vowels = len(letters) - len(letters.replace("a", "").replace("e", "").replace("i", "").replace("o", "").replace("u", ""))
    # consonant runs within a word only: smbc-nikko is two words, not a run of five
    return vowels / len(letters) < 0.2 or any(_CONSONANT_RUN.search(part) for part in label.split("-"))


def _noisy_or(weights: list[float]) -> float:
    keep = 1.0
    for w in weights:
        keep *= 1.0 - w
    return 1.0 - keep


class Scorer:
    """Scores domains and URLs against one registry; build once, then call `score` per line."""

    def __init__(self, registry: Registry, config: ScoringConfig | None = None) -> None:
        self.registry = registry
        self.config = config or ScoringConfig.load()
        c = self.config
        self.matcher = BrandMatcher(registry, c.keywords, c.min_substring_length, c.anywhere_length, c.visual_folds)
        # Keyed by registered domain: a brand hosted on a group domain (kabu.dmm.com, cr.mufg.jp)
        # makes the group domain official too, since dmm.com and mufg.jp are the group's own.
        self.official = {split_host(d).registered: b.id for b in registry.brands for d in b.official_domains}
        self.providers = c.providers()
        self.names = {b.id: b.name for b in registry.brands}
        self.official_labels = {skeleton(compact(split_host(d).registered.split(".")[0])) for b in registry.brands for d in b.official_domains}

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def score(self, raw: str) -> Verdict:
        """Score one domain or URL; raises ValueError when the line holds no host."""
        return self.score_target(parse_target(raw))

    def score_target(self, target: Target) -> Verdict:
        h = target.host
        official = self.official.get(h.registered)
        if official is not None:
            reason = Reason("official", 0.0, h.registered, official)
            return Verdict(target.raw, h.host, h.registered, official, self.names[official], 0.0, (reason,), True,
                           h.ascii_host, ascii_domain(h.registered))
        name = h.host[: -len(h.suffix) - 1] if h.suffix and not h.is_ip else ""
        matches = self.matcher.match_host(name) if name else []
        if target.path:
            matches = [*matches, *self.matcher.match_path(target.path)]
        if target.userinfo:  # `https://www.sbisec.co.jp@evil.example/`: the brand where a reader looks for the host
            matches = [*matches, *(m if m.reason == "shared-token" else m._replace(reason="userinfo-in-url")
                                   for m in self.matcher.match_path(target.userinfo))]
        brand, brand_reasons = self._attribute(matches, name) if matches else (None, [])
        reasons = brand_reasons + self._context(h, name)
        score = _noisy_or([r.weight for r in reasons])
        owner = self.providers.owner(target)
        return Verdict(target.raw, h.host, owner, brand, self.names.get(brand) if brand else None, score,
                       tuple(reasons), False, h.ascii_host, ascii_domain(owner))

    def _attribute(self, matches: list[Match], name: str) -> tuple[str | None, list[Reason]]:
        """Pick the brand with the strongest evidence; keep the best reason per code for it.

        A shared token alone (`rakuten`, `smbc`) names a group, not one of its firms: it is
        kept as a reason but attributes no brand, so it cannot raise an alert by itself.
        """
        w = self.config.weights
        group = [Reason(m.reason, w[m.reason], m.detail, None, m.found) for m in matches if m.reason == "shared-token"][:1]
        by_brand: dict[str, dict[str, Match]] = {}
        for m in matches:
            if m.reason == "shared-token":
                continue
            codes = by_brand.setdefault(m.brand, {})
            if m.reason not in codes or len(m.token) > len(codes[m.reason].token):
                codes[m.reason] = m
        if not by_brand:
            return None, group
        strength = {b: (_noisy_or([w[c] for c in codes]), max(len(m.token) for m in codes.values())) for b, codes in by_brand.items()}
        brand = max(strength, key=lambda b: strength[b])
        registered_label = name.rsplit(".", 1)[-1]
        reasons = []
        for code, m in by_brand[brand].items():
            detail = m.detail
            if code == "brand-token" and m.token in self.official_labels and skeleton(registered_label.replace("-", "")) == m.token:
                detail = "tld-swap"  # the official label under another suffix: click-sec.co
            reasons.append(Reason(code, w[code], detail, brand, m.found))
        return brand, reasons

    def _context(self, h: Host, name: str) -> list[Reason]:
        c, w = self.config, self.config.weights
        reasons: list[Reason] = []
        if h.is_ip:
            return [Reason("ip-host", w["ip-host"], h.host)]
        words = set(name.replace("-", ".").replace("_", ".").split("."))
        lure = sorted(words & c.lure_keywords)
        if lure:
            reasons.append(Reason("keyword", w["keyword"], ",".join(lure)))
        if h.tld in c.suspicious_tlds:
            reasons.append(Reason("suspicious-tld", w["suspicious-tld"], h.tld))
        provider = self.providers.free_host(h)
        if h.registered in c.url_shorteners:
            reasons.append(Reason("url-shortener", w["url-shortener"], h.registered))
        elif provider is not None:
            reasons.append(Reason("free-host", w["free-host"], provider))
        random = [label for label in name.split(".") if len(label) >= 8 and looks_random(label)]
        if random:
            reasons.append(Reason("random-label", w["random-label"], random[0]))
        depth = h.subdomain.count(".") + 1 if h.subdomain else 0
        if depth >= c.deep_subdomain_labels:
            reasons.append(Reason("deep-subdomain", w["deep-subdomain"], str(depth)))
        return reasons
