"""Find a registry brand inside a host or URL path: tokens, lookalikes and their kind of edit.

Matching runs on TR39 skeletons with hyphens and dots removed, so `sb1-sec`, `ѕbisec` and
`sbi.sec` all meet the token `sbisec`. Long tokens are searched as substrings with one compiled
prefix-tree regular expression; short ones (`jcb`, `sbi`) only as whole segments or glued to a
known keyword, because as substrings they occur by chance. Edit-distance-1 lookalikes are found
in a precomputed one-edit neighbourhood of every token, which costs one dictionary look-up per
segment instead of a distance computation per brand.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from kabuguard.intel.phish.confusables import skeleton
from kabuguard.intel.phish.registry import Registry, compact

_VOWELS = frozenset("aeiou")
_SEGMENT = re.compile(r"[^a-z]+")
_SEPARATORS = str.maketrans("", "", ".-_")


class Match(NamedTuple):
    """One piece of brand evidence: which brand, which reason code, and what was seen."""

    brand: str
    reason: str  # a key of the scoring weights: brand-token, lookalike, homoglyph…
    token: str  # the brand's token, as a skeleton
    found: str  # the string seen in the host or path
    detail: str = ""  # kind of edit: insertion, omission, transposition, idn…


@dataclass(frozen=True, slots=True)
class _Owner:
    brand: str
    literal: str  # the token before skeleton mapping, to tell a homoglyph from the real thing
    shared: bool
    official: str  # the official domain this token spells, or ""


def edit_kind(found: str, token: str) -> str | None:
    """The single edit that turns `token` into `found`, or None if it takes more than one."""
    if len(found) == len(token) + 1:
        i = next((k for k in range(len(token)) if found[k] != token[k]), len(token))
        if found[:i] + found[i + 1 :] != token:
            return None
        doubled = (i > 0 and found[i] == found[i - 1]) or (i + 1 < len(found) and found[i] == found[i + 1])
        return "repetition" if doubled else "insertion"
    if len(found) + 1 == len(token):
        return "omission" if edit_kind(token, found) is not None else None
    if len(found) != len(token):
        return None
    diffs = [k for k in range(len(token)) if found[k] != token[k]]
    if len(diffs) == 1:
        k = diffs[0]
        return "vowel-swap" if found[k] in _VOWELS and token[k] in _VOWELS else "substitution"
    if len(diffs) == 2 and diffs[1] == diffs[0] + 1 and found[diffs[0]] == token[diffs[1]] and found[diffs[1]] == token[diffs[0]]:
        return "transposition"
    return None


def _edges(skel: str) -> set[int]:
    """Positions in the separator-free form of a host where a label or segment starts or ends."""
    edges, n, previous_digit = {0}, 0, False
    for c in skel:
        if c in ".-_":
            edges.add(n)
            continue
        digit = c.isdigit()
        if digit != previous_digit:
            edges.add(n)
        previous_digit = digit
        n += 1
    edges.add(n)
    return edges


def _trie_pattern(words: list[str]) -> str:
    """One regular expression for many words, factored by common prefixes (longest first).

    A plain alternation tries every word at every position; a prefix tree lets the regex engine
    reject most positions on their first letter, which is most of the cost per host.
    """
    trie: dict = {}
    for word in words:
        node = trie
        for c in word:
            node = node.setdefault(c, {})
        node[""] = {}

    def pattern(node: dict) -> str:
        ends = "" in node
        branches = [re.escape(c) + pattern(child) for c, child in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return pattern(trie)


def _one_edit(token: str) -> set[str]:
    """Every string one edit from the token: one letter dropped, added, replaced, or two swapped."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = set()
    for i in range(len(token) + 1):
        head, tail = token[:i], token[i:]
        out |= {head + c + tail for c in letters}
        if tail:
            out.add(head + tail[1:])
            out |= {head + c + tail[1:] for c in letters}
            if len(tail) > 1:
                out.add(head + tail[1] + tail[0] + tail[2:])
    out.discard(token)
    return out


class BrandMatcher:
    """Brand evidence in hosts and paths for one registry; build once, call per domain."""

    def __init__(self, registry: Registry, keywords: list[str], min_substring: int, anywhere: int) -> None:
        """`min_substring`: shorter tokens match whole segments only; `anywhere`: tokens at least
        this long match inside a segment, shorter ones only at a segment's start or end."""
        self.anywhere = anywhere
        self.keywords = frozenset(skeleton(compact(k)) for k in keywords)
        self.long_keywords = tuple(k for k in self.keywords if len(k) >= 5)
        self.corroborators = frozenset(skeleton(c) for c in registry.corroborators)
        self.neighbours = frozenset(skeleton(n) for n in registry.neighbours)
        owners: dict[str, list[_Owner]] = defaultdict(list)
        self.login_paths: list[tuple[str, str]] = []
        for brand in registry.brands:
            for token in brand.tokens:
                owners[skeleton(token)].append(_Owner(brand.id, token, False, ""))
            for token in brand.shared_tokens:
                owners[skeleton(token)].append(_Owner(brand.id, token, True, ""))
            for domain in brand.official_domains:
                owners[skeleton(compact(domain))].append(_Owner(brand.id, compact(domain), False, domain))
            self.login_paths += [(path, brand.id) for path in brand.login_paths]
        self.owners = dict(owners)
        long_tokens = sorted((t for t in self.owners if len(t) >= min_substring), key=len, reverse=True)
        self.long = re.compile(_trie_pattern(long_tokens)) if long_tokens else re.compile(r"(?!x)x")
        self.short = {t for t in self.owners if len(t) < min_substring}
        # Short tokens glued to a keyword (myjcb, jcbcard), materialised: one look-up a segment.
        self.combos: dict[str, tuple[str, str]] = {}
        for token in self.short:
            for word in self.keywords:
                self.combos.setdefault(word + token, (token, f"{word}+"))
                self.combos.setdefault(token + word, (token, f"+{word}"))
        # Lookalikes are searched for brand tokens of five letters or more and group tokens of
        # four (those need corroboration anyway); shorter ones have too many one-edit neighbours
        # among ordinary words and random labels (smcc is one letter from smbc). Dropping a
        # letter is only read as a lookalike for tokens of six or more (aplus → plus is a word).
        # The whole one-edit neighbourhood is kept in one dict (some 500 strings a token), so
        # a lookalike costs one look-up per host segment: the hot path of a certificate stream.
        self.near: dict[str, set[str]] = defaultdict(set)
        for token, owners_of in self.owners.items():
            shared = all(o.shared for o in owners_of)
            if len(token) >= (4 if shared else 5) and not any(o.official for o in owners_of):
                for variant in _one_edit(token):
                    if len(variant) >= 4 and (len(variant) >= len(token) or len(token) >= 6):
                        self.near[variant].add(token)
        for word in self.neighbours:
            self.near.pop(word, None)

    def _evidence(self, token: str, found: str, raw: str, reason_if_ok: str, detail: str = "") -> list[Match]:
        matches = []
        for owner in self.owners[token]:
            reason, why, seen = reason_if_ok, detail, found
            if owner.official and reason == "brand-token":
                reason, seen = "official-domain-in-host", owner.official
            elif owner.shared:
                reason = "shared-token"
            if owner.literal not in raw and reason in {"brand-token", "official-domain-in-host"}:
                reason, why = "homoglyph", ("idn" if not raw.isascii() else "ascii-homoglyph")
            matches.append(Match(owner.brand, reason, token, seen, why))
        return matches

    def match_host(self, name: str) -> list[Match]:
        """Evidence in a host name given without its public suffix (`www.sbisec.co.jp.login`)."""
        raw = name.translate(_SEPARATORS)  # what was written, to tell a homoglyph from the token
        skel = skeleton(name)
        flat = skel.translate(_SEPARATORS)
        found: list[Match] = []
        edges: set[int] | None = None
        for m in self.long.finditer(flat):
            token = m.group()
            if len(token) < self.anywhere:
                edges = edges if edges is not None else _edges(skel)
                inside = any(m.start() < e < m.end() for e in edges)
                if m.start() not in edges and (m.end() not in edges or inside):
                    continue  # `dccard` inside `smdc-card` is chance, not a brand
            if self._runs_into_word(token, flat[m.end() :]):
                continue  # `rakutensec` in `rakuten-security` is the group plus a lure word
            found += self._evidence(token, token, raw, "brand-token")
        segments = _SEGMENT.split(skel)
        for seg in segments:
            if seg in self.short or seg in self.combos:
                found += self._short(seg, raw)
        if not any(m.reason != "shared-token" for m in found):
            near = self.near
            candidates = {c for c in segments if c in near} | {c for c in skel.replace("-", "").split(".") if c in near}
            for candidate in candidates:
                found += self._lookalike(candidate)
        return self._corroborate(found, segments) if found else found

    def _runs_into_word(self, token: str, after: str) -> bool:
        """True when the token's last letters and what follows spell a keyword (sec|urity)."""
        return any(
            token.endswith(word[:k]) and after.startswith(word[k : k + 2])
            for word in self.long_keywords
            for k in range(2, len(word) - 1)
        )

    def _short(self, seg: str, raw: str) -> list[Match]:
        if seg in self.short:
            return self._evidence(seg, seg, raw, "brand-token")
        combo = self.combos.get(seg)
        return self._evidence(combo[0], seg, raw, "combosquat", combo[1]) if combo else []

    def _lookalike(self, candidate: str) -> list[Match]:
        tokens = self.near.get(candidate)
        if not tokens or candidate in self.owners:
            return []
        matches = []
        for token in tokens:
            kind = edit_kind(candidate, token)
            if kind is not None:
                matches += self._evidence(token, candidate, candidate, "lookalike", kind)
        return matches

    def _corroborate(self, found: list[Match], segments: list[str]) -> list[Match]:
        """Upgrade a shared token (`sbi`, `rakuten`) when a family word sits beside it, as its
        own segment (`sbi-kabu`) or glued to it (`sbisec`, `smbccard`)."""
        out = []
        for m in found:
            if m.reason == "shared-token" and any(self._corroborates(seg, m.found, m.token) for seg in segments):
                m = Match(m.brand, "shared-token-corroborated", m.token, m.found, m.detail)
            out.append(m)
        return out

    def _corroborates(self, seg: str, found: str, token: str) -> bool:
        if seg in self.corroborators and seg not in {found, token}:  # kabu does not corroborate itself
            return True
        rest = seg.replace(found, "", 1) if found in seg else None
        return rest is not None and rest in self.corroborators

    def match_path(self, path: str) -> list[Match]:
        """Evidence in a URL path: a brand token as a path segment, or a cloned login path."""
        found = [Match(brand, "cloned-login-path", p, p) for p, brand in self.login_paths if p in path]
        for seg in map(skeleton, _SEGMENT.split(path)):
            for o in self.owners.get(seg, ()):
                found.append(Match(o.brand, "shared-token" if o.shared else "path-brand-token", seg, seg))
        return found
