"""Two baselines to measure the scorer against, written here from the tools' public descriptions.

- `DnstwistBaseline`: dnstwist's idea. Generate permutations of each official domain (addition,
  bitsquatting, homoglyph, hyphenation, insertion, omission, repetition, replacement,
  subdomain, transposition, vowel swap, dictionary, any TLD) and flag a host whose registered
  label is one of them. No brand tokens elsewhere in the host, no context.
- `CatcherBaseline`: phishing_catcher's idea. Add keyword weights found in the host (brand names
  weigh most), a suspicious-TLD bonus, ten times the Shannon entropy, a bonus for one-edit
  variants of brand names and for many hyphens or dots; report at a threshold.

Each returns the brand id it alerts for, so both are scored exactly like Kabuguard.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml

from kabuguard.intel.phish.domains import Target, split_host
from kabuguard.intel.phish.lookalike import edit_kind
from kabuguard.intel.phish.registry import Registry, compact


@lru_cache(maxsize=1)
def _config() -> dict[str, Any]:
    return yaml.safe_load(files("kabuguard").joinpath("data/phish/baselines.yaml").read_text("utf-8"))


def _label(domain: str) -> str:
    host = split_host(domain)
    return host.registered.removesuffix("." + host.suffix) if host.suffix else host.registered


class DnstwistBaseline:
    """Flags registered labels that are a dnstwist-style permutation of an official label."""

    name = "dnstwist-style"

    def __init__(self, registry: Registry) -> None:
        cfg = _config()["dnstwist"]
        self.permutations: dict[str, str] = {}
        for brand in registry.brands:
            for domain in brand.official_domains:
                label = _label(domain)
                for variant in self._fuzz(label, cfg):
                    self.permutations.setdefault(variant, brand.id)
        self.officials = {split_host(d).registered for b in registry.brands for d in b.official_domains}

    @staticmethod
    def _fuzz(label: str, cfg: dict[str, Any]) -> set[str]:
        letters = "abcdefghijklmnopqrstuvwxyz0123456789"
        rows: list[str] = cfg["keyboard"]
        near = {c: {row[j] for row in rows for i, r in enumerate(row) if r == c for j in (i - 1, i + 1) if 0 <= j < len(row)} for c in letters}
        out = {label + c for c in letters}
        for i, c in enumerate(label):
            head, tail = label[:i], label[i + 1 :]
            out.add(head + tail)  # omission
            out.add(head + c + c + tail)  # repetition
            out |= {head + k + tail for k in near.get(c, ())}  # replacement
            out |= {head + c + k + tail for k in near.get(c, ())} | {head + k + c + tail for k in near.get(c, ())}  # insertion
            out |= {head + g + tail for g in cfg["glyphs"].get(c, ())}  # homoglyph
            for bit in range(8):
                flipped = chr(ord(c) ^ (1 << bit))
                if flipped in letters or flipped == "-":
                    out.add(head + flipped + tail)  # bitsquatting
            if c in "aeiou":
                out |= {head + v + tail for v in "aeiou"}  # vowel swap
            if 0 < i:
                out.add(label[:i] + "-" + label[i:])  # hyphenation
                out.add(label[:i] + "." + label[i:])  # subdomain
            if i + 1 < len(label):
                out.add(head + label[i + 1] + c + label[i + 2 :])  # transposition
        for word in cfg["dictionary"]:
            out |= {f"{label}{word}", f"{label}-{word}", f"{word}{label}", f"{word}-{label}"}
        out.add(label)  # the label itself under another TLD
        return {v for v in out if v and not v.startswith("-") and not v.endswith("-")}


    def __call__(self, target: Target) -> str | None:
        host = target.host
        if host.is_ip or host.registered in self.officials:
            return None
        return self.permutations.get(_label(host.registered))


class CatcherBaseline:
    """phishing_catcher-style keyword score; attributes the brand whose name contributed."""

    name = "phishing_catcher-style"

    def __init__(self, registry: Registry) -> None:
        cfg = _config()["phishing_catcher"]
        self.threshold = cfg["threshold"]
        self.keywords: dict[str, int] = dict(cfg["keywords"])
        self.tlds = frozenset(cfg["tlds"])
        self.brand_weight = cfg["brand_weight"]
        self.brands: dict[str, str] = {}
        for brand in registry.brands:
            for token in (*brand.tokens, *brand.shared_tokens):
                self.brands.setdefault(compact(token), brand.id)
        self.officials = {d for b in registry.brands for d in b.official_domains}

    @staticmethod
    def _entropy(text: str) -> float:
        counts = Counter(text)
        return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())

    def __call__(self, target: Target) -> str | None:
        host = target.host
        domain = host.host
        if host.is_ip or any(domain == d or domain.endswith("." + d) for d in self.officials):
            return None
        score = 20 if host.tld in self.tlds else 0
        score += int(round(self._entropy(domain) * 10))
        body = domain.removesuffix("." + host.suffix) if host.suffix else domain
        score += sum(w for k, w in self.keywords.items() if k in body)
        found = [t for t in self.brands if t in body]
        brand = self.brands[max(found, key=len)] if found else None
        score += self.brand_weight * bool(found)
        if brand is None:
            for word in re.split(r"\W+", body):
                near = [t for t in self.brands if len(t) >= 4 and edit_kind(word, t) is not None]
                if near:
                    brand = self.brands[near[0]]
                    score += self.brand_weight
                    break
        if "xn--" not in domain and domain.count("-") >= 4:
            score += domain.count("-") * 3
        if domain.count(".") >= 3:
            score += domain.count(".") * 3
        return brand if brand is not None and score >= self.threshold else None
