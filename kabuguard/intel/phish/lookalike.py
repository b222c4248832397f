"""Find a registry brand inside a host or URL path: tokens, lookalikes and their kind of edit.

Matching runs on TR39 skeletons with hyphens and dots removed, so `sb1-sec`, `ѕbisec` and
`sbi.sec` all meet the token `sbisec`. Long tokens are searched as substrings with one compiled
prefix-tree regular expression; short ones (`jcb`, `sbi`) only as whole segments or glued to a
known keyword, because as substrings they occur by chance. Edit-distance-1 lookalikes are found
in a precomputed one-edit neighbourhood of every token, which costs one dictionary look-up per
segment instead of a distance computation per brand. Letters that read alike in a URL bar but
are not Unicode confusables (`m`/`n`, `b`/`d`: `sndc-card` for `smbc-card`) are folded before that
one search; a long brand token met only through folded letters counts when nothing written as it
is names a brand.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote

from kabuguard.intel.phish.confusables import skeleton
from kabuguard.intel.phish.registry import Registry, compact

_VOWELS = frozenset("aeiou")
_SEGMENT = re.compile(r"[^a-z]+")
_PATH_SEGMENT = re.compile(r"[^a-z0-9]+")


def _joined(text: str) -> str:
    """The text without dots, hyphens and underscores (`sb1-sec.co` → `sb1secco`); str.replace,
    several times faster than str.translate with a deleting table, once per host."""
    return text.replace(".", "").replace("-", "").replace("_", "")


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
    """Positions in the separator-free form of a host where a label or segment starts or ends.

    Given the host before digits were mapped to letters, a digit after a token ends it too
    (`fmicard12`, whose skeleton reads `fmicardl2`)."""
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


def _trie(words: Iterable[str]) -> dict:
    """A prefix tree of words as nested dicts; "" marks where a word ends."""
    root: dict = {}
    for word in words:
        node = root
        for c in word:
            node = node.setdefault(c, {})
        node[""] = {}
    return root


def _trie_pattern(words: list[str]) -> str:
    """One regular expression for many words, factored by common prefixes (longest first).

    A plain alternation tries every word at every position; a prefix tree lets the regex engine
    reject most positions on their first letter, which is most of the cost per host.
    """
    trie = _trie(words)

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


class _Edges:
    """Where segments start and end in a host's flat form, computed on first use (most hosts
    hold no short token at all)."""

    __slots__ = ("_skel", "_written", "_inner", "_outer")

    def __init__(self, skel: str, written: str) -> None:
        self._skel, self._written = skel, written
        self._inner: set[int] | None = None
        self._outer: set[int] = set()

    def _compute(self) -> set[int]:
        self._inner = _edges(self._skel)
        self._outer = self._inner | _edges(self._written) if self._written is not self._skel else self._inner
        return self._inner

    def bound(self, start: int, end: int) -> bool:
        """True when a match starts at an edge, or ends at one without an edge inside it."""
        inner = self._inner if self._inner is not None else self._compute()
        if start in self._outer:
            return True
        return end in self._outer and not any(start < e < end for e in inner)

    def separates(self, position: int) -> bool:
        """True when a separator, or a change between letters and digits, falls at the position."""
        return position in (self._inner if self._inner is not None else self._compute())


class BrandMatcher:
    """Brand evidence in hosts and paths for one registry; build once, call per domain."""

    def __init__(self, registry: Registry, keywords: list[str], min_substring: int, anywhere: int,
                 visual_folds: tuple[str, ...] = ()) -> None:
        """`min_substring`: shorter tokens match whole segments only; `anywhere`: tokens at least
        this long match inside a segment, shorter ones only at a segment's start or end;
        `visual_folds`: groups of letters read alike (`mn`), folded to the group's first."""
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
        # An official domain written out in a URL path or query, not as part of a longer name.
        self.domain_owner = {d: b.id for b in registry.brands for d in b.official_domains}
        domains = "|".join(re.escape(d) for d in sorted(self.domain_owner, key=len, reverse=True))
        self.domains_in_path = re.compile(rf"(?<![a-z0-9-])(?:{domains})(?![a-z0-9-])")
        self.short = {t for t in self.owners if len(t) < min_substring}
        # Long tokens are searched once, in the host with letters read alike folded; a match
        # whose letters are not a token's own is a homoglyph. Only brand tokens count that way:
        # short and group tokens folded as whole segments were tried on 2019-2022 and dropped
        # (`sndc-crad-nem-inedx` hosts read as smbc beside card, yet JPCERT/CC labelled that host
        # template with six issuers: the kit rotated brands, half the attributions were wrong).
        self.folds = tuple((c, group[0]) for group in visual_folds for c in group[1:])
        self.folded: dict[str, list[str]] = defaultdict(list)
        for token in sorted(t for t in self.owners if t not in self.short):
            self.folded[self._fold(token)].append(token)
        folded_tokens = sorted(self.folded, key=len, reverse=True)
        self.long = re.compile(_trie_pattern(folded_tokens)) if folded_tokens else re.compile(r"(?!x)x")
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
        # A lure word glued before or after a lookalike (`cardsaisons`): the keywords by their
        # first and by their last letter, so a segment is tried against a handful of them.
        self.openings: dict[str, list[str]] = defaultdict(list)
        self.closings: dict[str, list[str]] = defaultdict(list)
        for word in sorted(self.keywords):
            self.openings[word[0]].append(word)
            self.closings[word[-1]].append(word)

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
        raw = _joined(name)  # what was written, to tell a homoglyph from the token
        skel = skeleton(name)
        flat = _joined(skel)
        # For an ASCII name, the same letters with digits kept: a digit ends a token (card1smbc).
        written = name.replace("rn", "m") if name.isascii() else skel
        written = skel if written == skel else written
        found: list[Match] = []
        edges = _Edges(skel, written)
        alike: list[Match] = []
        for m in self.long.finditer(self._fold(flat)):
            if len(m.group()) < self.anywhere and not edges.bound(m.start(), m.end()):
                continue  # `dccard` inside `smdc-card` is chance, not a brand
            seen = flat[m.start() : m.end()]
            if self._runs_into_word(seen, flat[m.end() :]) and not edges.separates(m.end()):
                continue  # `rakutensec` in `rakuten-security` is the group plus a lure word
            if seen in self.owners:
                found += self._evidence(seen, seen, raw, "brand-token")
            else:
                alike += [e for token in self.folded[m.group()] for e in self._evidence(token, seen, raw, "brand-token")
                          if e.reason != "shared-token"]
        segments = _SEGMENT.split(skel)
        if written is not skel:
            segments += [seg for seg in _SEGMENT.split(written) if seg not in segments]
        for seg in segments:
            if seg in self.short or seg in self.combos:
                found += self._short(seg, raw)
        if alike and not any(m.reason != "shared-token" for m in found):
            found += alike  # `sndc-card`: only when the letters as written name no brand
        if not any(m.reason != "shared-token" for m in found):
            near = self.near
            candidates = {c for c in segments if c in near} | {c for c in skel.replace("-", "").split(".") if c in near}
            for seg in segments:
                if len(seg) >= 8:
                    candidates.update(self._unglued(seg))
            for candidate in candidates:
                found += self._lookalike(candidate)
        return self._corroborate(found, segments) if found else found

    def _unglued(self, seg: str) -> list[str]:
        """The lookalikes left when a keyword the segment opens or closes with is cut off."""
        near = self.near
        found = [seg[len(w) :] for w in self.openings.get(seg[0], ()) if seg.startswith(w) and seg[len(w) :] in near]
        return found + [seg[: -len(w)] for w in self.closings.get(seg[-1], ()) if seg.endswith(w) and seg[: -len(w)] in near]

    def _fold(self, text: str) -> str:
        """The text with letters read alike made one (`sndccard` → `smbccarb`)."""
        for letter, like in self.folds:
            text = text.replace(letter, like)
        return text

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
        """Evidence in a URL path and query, percent-decoded: a cloned login path, an official
        domain written out (`/aeon.co.jp/`, `?strURL=https://www.smbc-card.com/…`), a brand
        token as a segment or opening one (`/vpassm/`, `/ts3card/`); a group token counts for
        a brand only with a family word beside it (`/smbc-card/`), as in a host."""
        path = unquote(path)
        found = [Match(brand, "cloned-login-path", p, p) for p, brand in self.login_paths if p in path]
        found += [Match(self.domain_owner[m.group()], "official-domain-in-path", m.group(), m.group())
                  for m in self.domains_in_path.finditer(path)]
        # in the path's order, so that a tie between two brands is settled the same way every run
        segments = [skeleton(seg) for seg in dict.fromkeys([*_PATH_SEGMENT.split(path), *_SEGMENT.split(path)]) if seg]
        for seg in segments:
            opening = self.long.match(self._fold(seg))
            token = seg if seg in self.owners else seg[: opening.end()] if opening else ""
            for o in self.owners.get(token, ()):
                found.append(Match(o.brand, "shared-token" if o.shared else "path-brand-token", token, seg))
        return self._corroborate(found, segments) if found else found
