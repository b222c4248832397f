"""`kabuguard phish`: score, watch and evaluate phishing domains imitating securities brands."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

if TYPE_CHECKING:  # the package is imported lazily, when a command runs
    from kabuguard.intel.phish.domains import Target
    from kabuguard.intel.phish.indicators import Indicator
    from kabuguard.intel.phish.score import Scorer, Verdict
    from kabuguard.intel.phish.watch import WatchStats

_REGISTRY_HELP = ("Brand registry: a bundled name (securities-jp, cards-jp) or a YAML file; repeat to merge. "
                  "A firm's own file can `include: [securities-jp]` and add its brands.")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def _scorer(registries: tuple[str, ...], scoring: Path | None) -> Scorer:
    from yaml import YAMLError

    from kabuguard.intel.phish.registry import RegistryError, load_registry
    from kabuguard.intel.phish.score import Scorer, ScoringConfig

    try:
        registry = load_registry(*registries)
        config = ScoringConfig.load(scoring)
    except (RegistryError, OSError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    except (KeyError, TypeError, YAMLError) as exc:
        raise click.UsageError(f"scoring file {scoring}: {exc!r}; start from kabuguard/data/phish/scoring.yaml") from None
    return Scorer(registry, config)


def _log(event: str, **fields: object) -> None:
    """Structured log line on stderr, so stdout stays pure JSON lines."""
    click.echo(json.dumps({"event": event, **fields}, ensure_ascii=False), err=True)


def _inputs(stream: IO[str]) -> Iterator[tuple[int, str | None]]:
    """(line number, domain or URL) from one-a-line text or from CSV with a url/domain column;
    None for a CSV row whose column is empty (a row, unlike a blank line, was meant to hold one)."""
    first = stream.readline().lstrip("\ufeff")  # a byte-order mark, as spreadsheets write CSV
    header = [name.strip().lower() for name in next(csv.reader([first]), [])]
    column = next((i for i, name in enumerate(header) if name in {"url", "domain", "host"}), None)
    if column is not None:
        for number, row in enumerate(csv.reader(stream), 2):
            if row:
                yield number, (row[column].strip() if len(row) > column else "") or None
        return
    yield 1, first.strip()
    for number, line in enumerate(stream, 2):
        yield number, line.strip()


@click.group()
def phish() -> None:
    """Phishing domains imitating securities brands: score, watch, evaluate.

    Scoring runs offline: the Public Suffix List and the brand registries are bundled. Only
    `watch ws://…` or `wss://…` connects out, to the certificate stream it is given.
    """


@phish.command()
@click.argument("source", type=click.File("r", encoding="utf-8", errors="surrogateescape"))  # bad bytes reject their line
@click.option("--out", type=click.File("w", encoding="utf-8"), default="-", help="JSON lines output (default stdout).")
@click.option("--registry", "registries", multiple=True, default=("securities-jp",), show_default=True, help=_REGISTRY_HELP)
@click.option("--scoring", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Scoring YAML replacing the bundled weights and lists.")
def score(source: IO[str], out: IO[str], registries: tuple[str, ...], scoring: Path | None) -> None:
    """Score domains or URLs from SOURCE (a file, or - for stdin).

    SOURCE holds one domain or URL a line, or CSV with a url (or domain) column. Each input gives
    one JSON line: input, host, registered_domain, brand (id or null), brand_name, score in
    [0, 1] and the reasons. Lines without a host are logged on stderr and make the exit code 1.
    """
    scorer = _scorer(registries, scoring)
    rejected = 0
    for number, text in _inputs(source):
        if text is not None and (not text or text.startswith("#")):
            continue
        try:
            if text is None:
                raise ValueError("the row's URL column is empty")
            verdict = scorer.score(text)
        except ValueError as exc:
            rejected += 1
            _log("rejected", line=number, reason=str(exc))
            continue
        out.write(json.dumps(verdict.to_dict(), ensure_ascii=False) + "\n")
    if rejected:
        _log("summary", rejected=rejected)
        sys.exit(1)


@phish.command()
@click.argument("source")
@click.option("--out", type=click.File("w", encoding="utf-8"), default="-", help="Alerts as JSON lines (indicators), default stdout.")
@click.option("--evidence", type=click.File("a", encoding="utf-8"), help="Append a takedown evidence text per alerted domain here.")
@click.option("--registry", "registries", multiple=True, default=("securities-jp",), show_default=True, help=_REGISTRY_HELP)
@click.option("--scoring", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Scoring YAML replacing the bundled weights and lists.")
@click.option("--threshold", type=click.FloatRange(0, 1), help="Alert at or above this score (default: the scoring file's).")
@click.option("--known", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Indicators shared by peers (JSON lines with url or domain, and brand): alert on them even without a brand token.")
@click.option("--max-records", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option("--reconnect", type=click.IntRange(min=0), default=0, show_default=True,
              help="Websocket only: open a dropped connection again up to this many times (backoff 1 s, doubling, at most 60 s).")
@click.option("--quiet", is_flag=True, help="No progress line.")
def watch(source: str, out: IO[str], evidence: IO[str] | None, registries: tuple[str, ...], scoring: Path | None,
          threshold: float | None, known: Path | None, max_records: int | None, reconnect: int, quiet: bool) -> None:
    """Follow new certificates or domains from SOURCE and alert on brand phishing.

    SOURCE is a file, - for stdin, or a ws:// or wss:// URL (certstream-style JSON messages).
    Records may be certstream JSON (data.leaf_cert.all_domains), objects with domain or domains,
    or bare domain names; unreadable records are logged, counted and skipped. Each alert is an
    indicator line: domain, url, brand, score, first_seen and reasons. Exit code 1 if any
    record was rejected.
    """
    from rich.console import Console

    from kabuguard.intel.phish.indicators import takedown_text
    from kabuguard.intel.phish.watch import Monitor, load_known, read_lines
    from kabuguard.intel.phish.watch import watch as run

    scorer = _scorer(registries, scoring)
    if not source.startswith(("ws://", "wss://")) and source != "-" and not Path(source).is_file():
        raise click.UsageError(f"source {source} is neither a file, - (stdin) nor a ws:// or wss:// URL")
    try:
        store = load_known(known, scorer.config) if known else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    monitor = Monitor(scorer, threshold if threshold is not None else scorer.threshold, store)

    def emit(verdict: Verdict, ind: Indicator) -> None:
        out.write(json.dumps(ind.to_dict(), ensure_ascii=False) + "\n")
        out.flush()
        if evidence is not None:
            evidence.write(takedown_text(ind, verdict, scorer.registry.brand(ind.brand).official_domains) + "\n\n")

    console = Console(stderr=True)
    with console.status("watching…", spinner="dots") if not quiet else nullcontext() as status:
        def progress(stats: WatchStats) -> None:
            if status is not None:
                status.update(stats.line())

        try:
            stdin = click.open_file("-", encoding="utf-8", errors="surrogateescape") if source == "-" else sys.stdin
            stats = run(read_lines(source, stdin, reconnect), monitor, emit, lambda n, why: _log("rejected", record=n, reason=why),
                        progress, max_records)
        except OSError as exc:
            raise click.UsageError(f"cannot read {source}: {exc}") from None
    _log("summary", records=stats.records, domains=stats.domains, alerts=stats.alerts, rejected=stats.rejected)
    if stats.rejected:
        sys.exit(1)


@phish.command()
@click.option("--registry", "registries", multiple=True, default=("cards-jp",), show_default=True,
              help="The brand family to measure (tuned on the tuning years only). " + _REGISTRY_HELP)
@click.option("--confirm", "confirm", default="securities-jp", show_default=True,
              help="Registry confirmed on every year after the family (the securities rows); '' to skip.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="JPCERT/CC phishurl-list folder (YYYY/YYYYMM.csv). Default: ../shared/data/jpcert beside the repository.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("phish-eval"), show_default=True,
              help="Folder for metrics.json, report.md and report.html.")
@click.option("--years", help="Comma-separated years to report (default: all in the data).")
@click.option("--scoring", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Scoring YAML replacing the bundled weights and lists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(registries: tuple[str, ...], confirm: str, data_dir: Path | None, out_dir: Path, years: str | None,
             scoring: Path | None, quiet: bool) -> None:
    """Leave-brands-out evaluation on JPCERT/CC's confirmed phishing URLs.

    Per year: recall on URLs of a registry brand (split: host with a brand or lookalike token,
    with only a shared group token, with none), precision against all other phishing URLs in
    the feed, brand attribution accuracy, and official domains flagged; for Kabuguard, Kabuguard
    with indicators shared from earlier confirmations, a dnstwist-style and a
    phishing_catcher-style baseline. 2019-2022 are the tuning years, 2023-2024 held out.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from kabuguard.intel.phish.baselines import CatcherBaseline, DnstwistBaseline
    from kabuguard.intel.phish.evaluate import FeedError, default_data_dir, evaluate as run, read_jpcert
    from kabuguard.intel.phish.report import write_report

    data = data_dir or default_data_dir(_REPO_ROOT)
    if not data.is_dir():
        raise click.UsageError(f"no JPCERT/CC data at {data}; pass --data DIR with the phishurl-list folder (YYYY/YYYYMM.csv)")
    wanted = _years(years)
    try:
        rows = list(read_jpcert(data))
    except (OSError, FeedError) as exc:
        raise click.UsageError(str(exc)) from None
    runs = [(registries, "Brand family measured leave-brands-out: tuned on the tuning years, reported on the held-out years.")]
    if confirm:
        runs.append(((confirm,), "Confirmation on the securities rows of every year (never used for tuning)."))
    sections = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=quiet, transient=True) as bar:
        for regs, role in runs:
            scorer = _scorer(regs, scoring)
            task = bar.add_task(f"evaluating {scorer.registry.name}", total=len(rows))

            def kabuguard(target: Target, scorer: Scorer = scorer) -> str | None:
                verdict = scorer.score_target(target)
                return verdict.brand if verdict.alert(scorer.threshold) else None

            detectors = {"kabuguard": kabuguard, "dnstwist-style": DnstwistBaseline(scorer.registry),
                         "phishing_catcher-style": CatcherBaseline(scorer.registry)}
            rejected: list[dict] = []
            results = run(rows, scorer.registry, detectors, shared_for="kabuguard", scoring=scorer.config, years=wanted,
                          on_row=lambda task=task: bar.advance(task),
                          on_reject=lambda row, why, rejected=rejected: rejected.append({"file": row.file, "line": row.line, "reason": why}))
            sections.append({"registry": scorer.registry.name, "role": role, "detectors": [r.to_dict() for r in results],
                             "rejected_rows": rejected})
    paths = write_report(out_dir, sections)
    for section in sections:
        click.echo(f"registry {section['registry']}")
        for det in section["detectors"]:
            for y in det["years"]:
                click.echo(f"  {det['detector']:<34} {y['year']} {y['split']:<8} recall {_pct(y['recall'])} "
                           f"(token {_pct(y['recall_brand-token'])}, group {_pct(y['recall_group-token'])}, none {_pct(y['recall_no-token'])}, "
                           f"none with a path {_pct(y['recall_no-token_with_path'])}) "
                           f"precision {_pct(y['precision'])} attribution {_pct(y['attribution_accuracy'])} "
                           f"(wrong {y['wrong_attributions']}, label not in the URL {y['wrong_attributions_label_not_in_url']}) "
                           f"positives {y['positives']} flagged {y['flagged']} rejected {y['rejected_rows']}")
            click.echo(f"  {det['detector']:<34} official domains flagged: {len(det['official_domains_flagged'])} of {det['official_domains_checked']}")
    click.echo("report: " + ", ".join(str(p) for p in paths))
    rejected = sections[0]["rejected_rows"]  # every run reads the same rows
    for item in rejected:
        _log("rejected", **item)
    if rejected:
        _log("summary", rejected=len(rejected))
        sys.exit(1)


def _years(text: str | None) -> list[int] | None:
    """`--years` as years, or a usage error naming what was given."""
    try:
        return [int(y) for y in text.split(",")] if text else None
    except ValueError:
        raise click.UsageError(f"--years must be comma-separated years, got {text!r}") from None


def _pct(value: float | None) -> str:
    return "  –  " if value is None else f"{value:.3f}"


@phish.command()
@click.option("--registry", "registries", multiple=True, default=("securities-jp",), show_default=True, help=_REGISTRY_HELP)
def brands(registries: tuple[str, ...]) -> None:
    """List the brands of a registry with their official domains and tokens."""
    for b in _scorer(registries, None).registry.brands:
        click.echo(f"{b.id:<16} {b.name}  official: {', '.join(b.official_domains)}  tokens: {', '.join(b.tokens)}"
                   + (f"  shared: {', '.join(b.shared_tokens)}" if b.shared_tokens else ""))
