"""Leave-brands-out evaluation on JPCERT/CC's confirmed phishing URLs, split by year.

Securities phishing is too rare in the feed to learn from, so the monitor is configured for a
brand family that is common there (a registry such as cards-jp), tuned on the tuning years only
and reported on the held-out years as if they were the future; the securities registry is then
confirmed on the few securities rows. Per year: recall on URLs of a registry brand (split into
hosts with and without a brand or lookalike token), precision against every other phishing URL
in the feed, brand attribution accuracy, and official domains flagged.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kabuguard.intel.phish.confusables import skeleton
from kabuguard.intel.phish.domains import Target, parse_target, undecodable
from kabuguard.intel.phish.indicators import IndicatorStore
from kabuguard.intel.phish.lookalike import edit_kind
from kabuguard.intel.phish.registry import Registry
from kabuguard.intel.phish.score import ScoringConfig

# The split is fixed here, not chosen per run: the weights and lists in
# kabuguard/data/phish/scoring.yaml and the registries were tuned looking at TUNING_YEARS only.
# HELD_OUT_YEARS stand for the future: run once, after tuning was frozen, and never inspected.
TUNING_YEARS = (2019, 2020, 2021, 2022)
HELD_OUT_YEARS = (2023, 2024)

_LABEL_SPLIT = re.compile(r"[_/・]")
_FEED_COLUMNS = ("date", "URL", "description")


@dataclass(frozen=True, slots=True)
class Row:
    """One confirmed phishing URL: when, what, and the brand JPCERT/CC says it imitates."""

    year: int
    date: str
    url: str
    label: str
    file: str = ""  # where in the feed (`2021/202101.csv`, line), to name the row if it is rejected
    line: int = 0
    error: str = ""  # why the row could not be read as one (a short row, bytes not UTF-8); "" when it could


class FeedError(ValueError):
    """A feed file that cannot be read at all (columns missing, not CSV); the message names it."""


def read_jpcert(data_dir: Path) -> Iterator[Row]:
    """Rows of every ``YYYY/YYYYMM.csv`` under the folder, in date order; raises FeedError."""
    files = sorted(data_dir.glob("[12][0-9][0-9][0-9]/*.csv"))
    if not files:
        raise FileNotFoundError(f"no YYYY/*.csv files under {data_dir}; pass --data with the JPCERT/CC phishurl-list folder")
    rows = [row for path in files for row in _read_feed_file(path, path.relative_to(data_dir).as_posix())]
    rows.sort(key=lambda r: r.date)
    return iter(rows)


def _read_feed_file(path: Path, name: str) -> list[Row]:
    """One month's rows; a row that is not one (short, long, bad bytes) comes with its `error`, so
    it is counted and named rather than dropped or read with a shifted label."""
    year = int(path.parent.name)
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:  # a bad byte rejects its row only
        reader = csv.reader(f)
        try:
            header = next(reader, [])
            missing = [c for c in _FEED_COLUMNS if c not in header]
            if missing:
                raise FeedError(f"{name}: no column {', '.join(missing)} in the header {header!r}; "
                                f"expected {','.join(_FEED_COLUMNS)} as JPCERT/CC writes it")
            index = [header.index(c) for c in _FEED_COLUMNS]
            return [_feed_row(year, record, index, len(header), name, reader.line_num) for record in reader if record]
        except csv.Error as exc:
            raise FeedError(f"{name}:{reader.line_num}: not CSV: {exc}") from None


def _feed_row(year: int, record: list[str], index: list[int], width: int, file: str, line: int) -> Row:
    if len(record) != width:
        date = record[index[0]] if index[0] < len(record) else ""
        return Row(year, date, "", "", file, line, f"{len(record)} field{'s' * (len(record) != 1)} where the header has {width}")
    date, url, label = (record[i] for i in index)
    if any(undecodable(field) for field in record):
        return Row(year, date, url, label, file, line, "not valid UTF-8")
    return Row(year, date, url, label, file, line)


def _norm_name(name: str) -> str:
    return re.sub(r"[\s\-・.!'’,]", "", unicodedata.normalize("NFKC", name).casefold())


def label_mapper(registry: Registry) -> Callable[[str], str | None]:
    """Map a feed's brand label to a registry brand id through the brand's names and aliases."""
    names = {_norm_name(n): b.id for b in registry.brands for n in b.names}

    def brand_of(label: str) -> str | None:
        for part in [label, *_LABEL_SPLIT.split(label)]:
            brand = names.get(_norm_name(part))
            if brand is not None:
                return brand
        return None

    return brand_of


STRATA = ("brand-token", "group-token", "no-token")


def _words(text: str) -> tuple[str, list[str]]:
    """A text's skeleton with only letters and digits, and its runs of letters; lower-cased first,
    since a URL keeps its case (`/SMBC-Card/`) and the skeleton is of lower-case text."""
    skel = skeleton(text.lower())
    return re.sub(r"[^a-z0-9]", "", skel), [s for s in re.split(r"[^a-z]+", skel) if s]


def _finder(tokens: set[str], min_near: int, neighbours: set[str]) -> Callable[[tuple[str, list[str]]], bool]:
    """Whether a text's `_words` hold one of `tokens`: four letters or more anywhere, a shorter
    one as a whole segment, or a segment one edit from a token of `min_near` letters or more
    (the registry's neighbours, other firms' names and common words, are not lookalikes)."""
    substring = [t for t in tokens if len(t) >= 4]
    near = [t for t in tokens if len(t) >= min_near]

    def found(words: tuple[str, list[str]]) -> bool:
        flat, segments = words
        if any(t in flat for t in substring) or any(s in tokens for s in segments):
            return True
        candidates = [s for s in segments if len(s) >= 4 and s not in neighbours]
        return any(edit_kind(s, t) is not None for s in candidates for t in near)

    return found


def token_oracle(registry: Registry) -> Callable[[str], str]:
    """Which stratum a host falls in, decided apart from the scorer so the split does not
    flatter it: `brand-token` when a brand token appears in it (see `_finder`, five letters
    for a lookalike); `group-token` when only a shared group token (rakuten, smbc) or a one-edit
    variant of it does; `no-token` otherwise."""
    neighbours = {skeleton(n) for n in registry.neighbours}
    brand = _finder({skeleton(t) for b in registry.brands for t in b.tokens}, 5, neighbours)
    group = _finder({skeleton(t) for b in registry.brands for t in b.shared_tokens}, 4, neighbours)

    def stratum(host: str) -> str:
        words = _words(host)
        if brand(words):
            return "brand-token"
        return "group-token" if group(words) else "no-token"

    return stratum


def label_token_oracle(registry: Registry) -> Callable[[str, str], bool]:
    """Whether a URL spells the brand its label names, by the same rules as `token_oracle`:
    a wrong attribution without it is the feed's label against the URL's own words (a kit
    serving several issuers), which nothing read from the URL can settle."""
    neighbours = {skeleton(n) for n in registry.neighbours}
    finders = {b.id: _finder({skeleton(t) for t in b.tokens}, 5, neighbours) for b in registry.brands}
    return lambda brand, url: finders[brand](_words(url))


@dataclass
class YearMetrics:
    """Counts for one year; rates are computed from them so they can be summed and checked."""

    year: int
    split: str
    positives: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STRATA, 0))
    detected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STRATA, 0))
    flagged: int = 0  # flagged as some registry brand, true brand or not
    # False positives whose host itself spells a registry brand token: mostly a label saying
    # another company of the same group (三井住友銀行 on smbc-card.example.com).
    false_positives_brand_token: int = 0
    true_flagged: int = 0
    attributed_right: int = 0
    # Wrong attributions whose URL does not spell the labelled brand at all (`label_token_oracle`).
    misattributed_label_not_in_url: int = 0
    # No-token hosts whose URL has a path: the only ones a path signal can name (a certificate
    # stream, and most feed rows, give the host alone).
    no_token_with_path: int = 0
    no_token_with_path_detected: int = 0
    official_rows_flagged: int = 0
    # Rows read for no detector (short, not UTF-8, no host): out of every denominator, so counted.
    rejected: int = 0

    @staticmethod
    def _rate(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    def to_dict(self) -> dict:
        r = self._rate
        out = {
            "year": self.year,
            "split": self.split,
            "positives": sum(self.positives.values()),
            "recall": r(sum(self.detected.values()), sum(self.positives.values())),
        }
        for stratum in STRATA:
            out[f"recall_{stratum}"] = r(self.detected[stratum], self.positives[stratum])
            out[f"positives_{stratum}"] = self.positives[stratum]
        out |= {
            "positives_no-token_with_path": self.no_token_with_path,
            "recall_no-token_with_path": r(self.no_token_with_path_detected, self.no_token_with_path),
            "flagged": self.flagged,
            "precision": r(self.true_flagged, self.flagged),
            "false_positives_with_brand_token": self.false_positives_brand_token,
            "attribution_accuracy": r(self.attributed_right, self.true_flagged),
            "wrong_attributions": self.true_flagged - self.attributed_right,
            "wrong_attributions_label_not_in_url": self.misattributed_label_not_in_url,
            "official_rows_flagged": self.official_rows_flagged,
            "rejected_rows": self.rejected,
        }
        return out


@dataclass
class Evaluation:
    """One detector's figures per year, plus the official-domain check."""

    detector: str
    years: dict[int, YearMetrics] = field(default_factory=dict)
    official_checked: int = 0
    official_flagged: list[str] = field(default_factory=list)

    def year(self, year: int) -> YearMetrics:
        """The year's counts, started on its first row."""
        return self.years.setdefault(year, YearMetrics(year, _split(year)))

    def to_dict(self) -> dict:
        return {
            "detector": self.detector,
            "official_domains_checked": self.official_checked,
            "official_domains_flagged": self.official_flagged,
            "years": [m.to_dict() for m in sorted(self.years.values(), key=lambda m: m.year)],
        }


# A detector takes a parsed URL and returns the registry brand id it alerts for, or None.
Detector = Callable[[Target], str | None]
SHARED = "+shared-indicators"


def official_probes(registry: Registry) -> list[str]:
    """The official sites as a user would meet them: bare, www, and their login pages."""
    probes = []
    for brand in registry.brands:
        for domain in brand.official_domains:
            probes += [domain, f"www.{domain}", f"https://{domain}/"]
            probes += [f"https://www.{domain}{path}" for path in brand.login_paths]
    return probes


def evaluate(
    rows: Iterable[Row],
    registry: Registry,
    detectors: dict[str, Detector],
    shared_for: str | None = None,
    scoring: ScoringConfig | None = None,
    years: Iterable[int] | None = None,
    on_row: Callable[[], None] | None = None,
    on_reject: Callable[[Row, str], None] | None = None,
) -> list[Evaluation]:
    """Run every detector over the rows and the official probes; years limits the report.

    `shared_for` names a detector to run a second time with shared indicators: the registered
    domains, kit paths and host templates of URLs confirmed on earlier rows, as a firm would get
    them from JPCERT/CC or its peers. Every confirmed row is shared with its label, other brands
    too, so a key seen for two labels says no brand; a row is shared only after it was scored.
    `scoring` gives the free hosts and words the store keys by (the bundled file's by default).
    A row without a host is rejected: counted per year (`rejected_rows`) and passed to `on_reject`
    with the reason, since dropping it unseen would raise recall.
    """
    brand_of = label_mapper(registry)
    stratum_of = token_oracle(registry)
    spells_label = label_token_oracle(registry)
    wanted = set(years) if years else None
    shared = IndicatorStore(scoring or ScoringConfig.load())
    detectors = dict(detectors)
    if shared_for is not None:
        primary = detectors[shared_for]
        ours = {b.id for b in registry.brands}

        def with_shared(target: Target) -> str | None:
            known = shared.brand_for(target)
            return primary(target) or (known if known in ours else None)

        detectors[shared_for + SHARED] = with_shared
    evaluations = {name: Evaluation(name) for name in detectors}
    probes = [parse_target(p) for p in official_probes(registry)]
    for name, detect in detectors.items():
        evaluations[name].official_checked = len(probes)
        evaluations[name].official_flagged = [p.raw for p in probes if detect(p) is not None]
    officials = {d for b in registry.brands for d in b.official_domains}
    for row in rows:
        if on_row:
            on_row()
        reported = wanted is None or row.year in wanted
        try:
            target = _target(row)
        except ValueError as exc:
            if reported:
                for evaluation in evaluations.values():
                    evaluation.year(row.year).rejected += 1
            if on_reject:
                on_reject(row, str(exc))
            continue
        truth = brand_of(row.label)
        if reported:
            predictions = {name: detect(target) for name, detect in detectors.items()}
            needed = truth is not None or any(p is not None for p in predictions.values())
            stratum = stratum_of(target.host.host) if needed else ""  # the oracle is slow: only when counted
            official = target.host.registered in officials
            for name, predicted in predictions.items():
                m = evaluations[name].year(row.year)
                _count(m, truth, predicted, stratum, official, bool(target.path))
                if predicted is not None and truth is not None and predicted != truth:
                    m.misattributed_label_not_in_url += not spells_label(truth, row.url)
        shared.confirm(target, truth or f"other:{row.label}")
    return list(evaluations.values())


def _target(row: Row) -> Target:
    """The row's URL parsed; ValueError with the reason when the row holds none."""
    if row.error:
        raise ValueError(row.error)
    return parse_target(row.url)


def _count(m: YearMetrics, truth: str | None, predicted: str | None, stratum: str, official: bool, path: bool) -> None:
    if predicted is not None:
        m.flagged += 1
        m.official_rows_flagged += official
    if truth is None:
        m.false_positives_brand_token += predicted is not None and stratum == "brand-token"
        return
    m.positives[stratum] += 1
    with_path = path and stratum == "no-token"
    m.no_token_with_path += with_path
    if predicted is not None:
        m.detected[stratum] += 1
        m.no_token_with_path_detected += with_path
        m.true_flagged += 1
        m.attributed_right += predicted == truth


def _split(year: int) -> str:
    if year in TUNING_YEARS:
        return "tuning"
    return "held-out" if year in HELD_OUT_YEARS else "other"


def default_data_dir(repo_root: Path) -> Path:
    """The JPCERT/CC folder beside the repository (../shared/data/jpcert), as laid out for CI."""
    return repo_root.parent / "shared" / "data" / "jpcert"
